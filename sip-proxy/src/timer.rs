//! One timer queue for every transaction and call timer of the node: a
//! min-heap on tokio time (so tests run it with paused time), woken early when
//! a sooner timer is added. Cancelled timers are not removed; their targets
//! ignore them (state machines check their state, Weak references die).
//!
//! The queue's task runs at most once per [`GRANULARITY`]: a lone timer
//! fires on time, while thousands of timers a second (a dozen per call) are
//! fired in batches instead of waking a thread for each millisecond that
//! has one. SIP's timers start at 500 ms; a few milliseconds late is nothing.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

struct Entry<T> {
    at: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .at
            .cmp(&self.at)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// The queue's task runs at most this often.
pub const GRANULARITY: Duration = Duration::from_millis(10);

pub struct TimerQueue<T> {
    heap: Mutex<BinaryHeap<Entry<T>>>,
    wake: Notify,
    seq: AtomicU64,
}

impl<T: Send> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            heap: Mutex::new(BinaryHeap::new()),
            wake: Notify::new(),
            seq: AtomicU64::new(0),
        }
    }
}

impl<T: Send> TimerQueue<T> {
    /// Fires `item` after `delay`.
    pub fn schedule(&self, delay: Duration, item: T) {
        let at = Instant::now() + delay;
        let seq = self.seq.fetch_add(1, AtomicOrdering::Relaxed);
        let earliest = {
            let mut heap = self.heap.lock().unwrap_or_else(|p| p.into_inner());
            let earliest = heap.peek().is_none_or(|e| at < e.at);
            heap.push(Entry { at, seq, item });
            earliest
        };
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Timers waiting (including cancelled ones not yet due).
    pub fn len(&self) -> usize {
        self.heap.lock().map(|h| h.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs forever, calling `fire` for each due timer in order.
    pub async fn run(&self, mut fire: impl FnMut(T)) {
        let mut last_run: Option<Instant> = None;
        loop {
            let next = self.heap.lock().ok().and_then(|h| h.peek().map(|e| e.at));
            // Not sooner than GRANULARITY after the last run.
            let next = next.map(|at| last_run.map_or(at, |last| at.max(last + GRANULARITY)));
            match next {
                None => self.wake.notified().await,
                Some(at) if at > Instant::now() => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.wake.notified() => {}
                    }
                }
                Some(_) => {}
            }
            let now = Instant::now();
            last_run = Some(now);
            let due: Vec<T> = {
                let mut heap = self.heap.lock().unwrap_or_else(|p| p.into_inner());
                let mut due = Vec::new();
                while heap.peek().is_some_and(|e| e.at <= now) {
                    if let Some(e) = heap.pop() {
                        due.push(e.item);
                    }
                }
                due
            };
            for item in due {
                fire(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn fires_in_order_at_the_right_time() {
        let q = Arc::new(TimerQueue::<u32>::default());
        let fired = Arc::new(Mutex::new(Vec::new()));
        let (q2, f2) = (q.clone(), fired.clone());
        let start = Instant::now();
        tokio::spawn(async move {
            q2.run(|n| {
                f2.lock()
                    .expect("lock")
                    .push((n, start.elapsed().as_millis()))
            })
            .await;
        });
        q.schedule(Duration::from_millis(500), 2);
        q.schedule(Duration::from_millis(100), 1);
        q.schedule(Duration::from_secs(32), 3);
        tokio::time::sleep(Duration::from_secs(40)).await;
        assert_eq!(
            *fired.lock().expect("lock"),
            vec![(1, 100), (2, 500), (3, 32_000)]
        );
    }
}
