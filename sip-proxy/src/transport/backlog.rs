//! Whether the node's UDP receivers have fallen behind. A receiver that
//! handles [`BACKLOG`] datagrams in a row without once finding its socket
//! empty is behind until it does find it empty; the node counts as behind
//! while any receiver is, and for [`HOLD`] after the last one fell behind,
//! so that shedding does not switch off the moment shed requests have made
//! the queue short again. The dispatcher sheds new requests meanwhile.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Datagrams handled in a row, the socket never empty, that make a receiver
/// behind.
pub const BACKLOG: u32 = 1000;

/// How long the node stays behind after a receiver fell behind: long enough
/// not to flap within one burst, short enough not to shed while the queue is
/// already empty (200 ms cost half the calls an overloaded node completes).
pub const HOLD: Duration = Duration::from_millis(20);

/// "Never" for the time a receiver last fell behind.
const NEVER: u64 = u64::MAX;

pub struct Backlog {
    receivers_behind: AtomicUsize,
    started: Instant,
    /// Milliseconds after `started` when a receiver last fell behind.
    last_fell_behind: AtomicU64,
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog {
            receivers_behind: AtomicUsize::new(0),
            started: Instant::now(),
            last_fell_behind: AtomicU64::new(NEVER),
        }
    }
}

impl Backlog {
    pub fn is_behind(&self) -> bool {
        if self.receivers_behind.load(Ordering::Relaxed) > 0 {
            return true;
        }
        let last = self.last_fell_behind.load(Ordering::Relaxed);
        last != NEVER && self.now_ms().saturating_sub(last) < HOLD.as_millis() as u64
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }
}

/// One receiver's count. Dropped with its task, it gives back its part.
pub struct Receiver {
    backlog: Arc<Backlog>,
    in_a_row: u32,
    behind: bool,
}

impl Receiver {
    pub fn new(backlog: Arc<Backlog>) -> Receiver {
        Receiver {
            backlog,
            in_a_row: 0,
            behind: false,
        }
    }

    /// A datagram was handled and the socket may hold more.
    pub fn handled(&mut self) {
        self.in_a_row = self.in_a_row.saturating_add(1);
        if self.in_a_row >= BACKLOG && !self.behind {
            self.behind = true;
            self.backlog
                .receivers_behind
                .fetch_add(1, Ordering::Relaxed);
            let now = self.backlog.now_ms();
            self.backlog.last_fell_behind.store(now, Ordering::Relaxed);
        }
    }

    /// The socket was found empty.
    pub fn emptied(&mut self) {
        self.in_a_row = 0;
        self.catch_up();
    }

    fn catch_up(&mut self) {
        if self.behind {
            self.behind = false;
            self.backlog
                .receivers_behind
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.catch_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_while_any_receiver_is_and_for_a_while_after() {
        let backlog = Arc::new(Backlog::default());
        let mut a = Receiver::new(backlog.clone());
        let mut b = Receiver::new(backlog.clone());
        for _ in 1..BACKLOG {
            a.handled();
        }
        assert!(!backlog.is_behind(), "one short of the backlog");
        a.handled();
        assert!(backlog.is_behind());
        // Another receiver finding its socket empty does not clear a's.
        b.emptied();
        for _ in 0..5000 {
            a.handled();
        }
        assert!(backlog.is_behind());
        a.emptied();
        // Held a while, then clear.
        assert!(backlog.is_behind());
        std::thread::sleep(HOLD + Duration::from_millis(50));
        assert!(!backlog.is_behind());
        // A receiver task that ends gives back its part.
        let mut c = Receiver::new(backlog.clone());
        for _ in 0..BACKLOG {
            c.handled();
        }
        drop(c);
        std::thread::sleep(HOLD + Duration::from_millis(50));
        assert!(!backlog.is_behind());
    }
}
