//! Between the receiver's request handlers (on the network runtime) and the
//! driver (on the engine's thread): requests waiting to be evaluated, and a
//! budget of bytes that bounds the memory they hold, whatever the senders
//! do. A handler reserves its body's bytes before reading it (a full budget
//! is a `429`), the bytes are given back when the request is answered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// How a request ended, sent back to its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Evaluated, and its alerts handed to the flushed outputs.
    Done { events: u64 },
    /// The receiver is shutting down before evaluating it.
    Unavailable,
}

/// A request waiting for the engine.
#[derive(Debug)]
pub struct Pending {
    /// Its messages of documents, evaluated in order (an audit body is
    /// one; a Firehose delivery has one per record).
    pub docs: Vec<Vec<u8>>,
    pub respond: oneshot::Sender<Outcome>,
    /// The bytes reserved for it.
    pub reserved: u64,
}

/// The bytes in flight, bounded.
#[derive(Debug)]
pub struct Budget {
    cap: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(cap: u64) -> Self {
        Budget {
            cap,
            used: AtomicU64::new(0),
        }
    }

    /// Takes `n` bytes if they fit.
    pub fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                (used.saturating_add(n) <= self.cap).then_some(used + n)
            })
            .is_ok()
    }

    pub fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Relaxed, Relaxed, |used| Some(used.saturating_sub(n)));
    }

    pub fn used(&self) -> u64 {
        self.used.load(Relaxed)
    }
}

/// Requests in arrival order.
#[derive(Debug, Default)]
pub struct Queue {
    items: Mutex<VecDeque<Pending>>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Pending>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, p: Pending) {
        self.lock().push_back(p);
        self.ready.notify_one();
    }

    /// The next request, waiting at most `wait`.
    pub fn pop(&self, wait: Duration) -> Option<Pending> {
        let mut items = self.lock();
        if items.is_empty() && !wait.is_zero() {
            items = self
                .ready
                .wait_timeout_while(items, wait, |i| i.is_empty())
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        items.pop_front()
    }

    /// Every request still waiting (at shutdown).
    pub fn drain(&self) -> Vec<Pending> {
        self.lock().drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_goes_over_its_cap() {
        let b = Budget::new(100);
        assert!(b.reserve(60));
        assert!(!b.reserve(41));
        assert!(b.reserve(40));
        assert_eq!(b.used(), 100);
        b.release(60);
        assert!(b.reserve(60));
        b.release(1000);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn requests_come_out_in_order_and_pop_waits() {
        let q = Queue::default();
        assert!(q.pop(Duration::from_millis(5)).is_none());
        for n in 0..3u8 {
            let (tx, _rx) = oneshot::channel();
            q.push(Pending {
                docs: vec![vec![n]],
                respond: tx,
                reserved: 1,
            });
        }
        let got: Vec<u8> = (0..3)
            .filter_map(|_| q.pop(Duration::ZERO))
            .map(|p| p.docs[0][0])
            .collect();
        assert_eq!(got, [0, 1, 2]);
    }
}
