//! The bounded buffer between the pipeline and the MQTT connection. While the
//! broker is away, messages wait here; beyond `cap` the oldest are dropped and
//! counted. The pipeline never blocks on it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub qos: u8,
}

pub struct Outbox {
    queue: Mutex<VecDeque<Message>>,
    cap: usize,
    dropped: AtomicU64,
    pushed: AtomicU64,
    invalid: AtomicU64,
    pub(crate) notify: Notify,
}

impl Outbox {
    pub fn new(cap: usize) -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::with_capacity(cap.min(4096))),
            cap: cap.max(1),
            dropped: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Message>> {
        // A panic while holding the lock cannot leave the deque inconsistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a message, dropping the oldest one if the buffer is full. A message whose
    /// topic no broker accepts is refused here, counted and logged: queued, it would block
    /// every message behind it.
    pub fn push(&self, m: Message) {
        if !super::valid_publish_topic(&m.topic) {
            let n = self.invalid.fetch_add(1, Ordering::Relaxed) + 1;
            if crate::telemetry::worth_logging(n) {
                tracing::warn!(topic = ?m.topic, refused = n, "not publishing: the topic is not a valid MQTT topic");
            }
            return;
        }
        {
            let mut q = self.lock();
            if q.len() >= self.cap {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(m);
        }
        self.pushed.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }

    pub fn pop(&self) -> Option<Message> {
        self.lock().pop_front()
    }

    /// Put a message back at the front (the connection could not take it).
    pub fn unpop(&self, m: Message) {
        let mut q = self.lock();
        if q.len() >= self.cap {
            // Keep the bound: the message handed back is older than everything queued.
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_front(m);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages refused for an invalid topic.
    pub fn invalid(&self) -> u64 {
        self.invalid.load(Ordering::Relaxed)
    }

    pub fn pushed(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize) -> Message {
        Message {
            topic: format!("t/{i}"),
            payload: vec![],
            retain: false,
            qos: 0,
        }
    }

    #[test]
    fn stays_bounded_and_drops_oldest() {
        let o = Outbox::new(3);
        for i in 0..10 {
            o.push(m(i));
        }
        assert_eq!(o.len(), 3);
        assert_eq!(o.dropped(), 7);
        assert_eq!(o.pop().unwrap().topic, "t/7");
        o.unpop(m(7));
        assert_eq!(o.len(), 3);
        o.unpop(m(6));
        assert_eq!(o.len(), 3, "unpop never exceeds the bound");
        assert_eq!(o.dropped(), 8);
    }

    #[test]
    fn an_invalid_topic_never_blocks_the_queue() {
        let o = Outbox::new(10);
        o.push(m(1));
        for bad in ["t/+", "t/#", "", "t/\0"] {
            o.push(Message {
                topic: bad.into(),
                ..m(0)
            });
        }
        o.push(m(2));
        assert_eq!(o.invalid(), 4);
        assert_eq!(o.pop().unwrap().topic, "t/1");
        assert_eq!(o.pop().unwrap().topic, "t/2");
        assert!(o.pop().is_none());
    }
}
