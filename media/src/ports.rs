//! The relay's port range: pairs of an even RTP port and the RTCP port
//! after it, handed out in a ring so a port just freed is the last to be
//! reused (a late packet of an ended call does not reach the next one).

use std::collections::VecDeque;

#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    total: usize,
}

impl PortPool {
    /// Every even port from `first` whose odd partner is ≤ `last`.
    pub fn new(first: u16, last: u16) -> PortPool {
        let start = first.saturating_add(first % 2);
        let free: VecDeque<u16> = (start..last)
            .step_by(2)
            .filter(|p| p.checked_add(1).is_some_and(|q| q <= last))
            .collect();
        PortPool {
            total: free.len(),
            free,
        }
    }

    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub fn give(&mut self, port: u16) {
        if self.free.len() < self.total && !self.free.contains(&port) {
            self.free.push_back(port);
        }
    }

    /// Pairs handed out.
    pub fn in_use(&self) -> usize {
        self.total - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_pairs_in_a_ring() {
        let mut p = PortPool::new(20001, 20008);
        assert_eq!(p.take(), Some(20002));
        assert_eq!(p.take(), Some(20004));
        p.give(20002);
        assert_eq!(p.take(), Some(20006));
        assert_eq!(p.take(), Some(20002), "20008 has no partner in range");
        assert_eq!(p.take(), None);
        assert_eq!(p.in_use(), 3);
        p.give(20004);
        p.give(20004);
        assert_eq!(p.in_use(), 2);
        assert_eq!(PortPool::new(65534, 65535).take(), Some(65534));
    }
}
