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
    /// topic no broker accepts, or too large for one packet ([`super::MAX_PACKET`]), is
    /// refused here, counted and logged: queued, it would block every message behind it (or
    /// break the connection).
    pub fn push(&self, m: Message) {
        self.push_inner(m, false);
    }

    /// As [`Outbox::push`], for a retained state whose newer value supersedes the older: a
    /// message of the same topic still queued is replaced in place (and counted as dropped),
    /// so that such a topic holds at most one place in the buffer (snapshots).
    pub fn push_latest(&self, m: Message) {
        self.push_inner(m, true);
    }

    fn refuse(&self, m: &Message) -> bool {
        let why = if !super::valid_publish_topic(&m.topic) {
            "the topic is not a valid MQTT topic"
        } else if !super::fits_packet(&m.topic, m.payload.len()) {
            "the message is larger than an MQTT packet may be (1 MiB)"
        } else {
            return false;
        };
        let n = self.invalid.fetch_add(1, Ordering::Relaxed) + 1;
        if crate::telemetry::worth_logging(n) {
            tracing::warn!(topic = ?m.topic, bytes = m.payload.len(), refused = n, "not publishing: {why}");
        }
        true
    }

    fn push_inner(&self, m: Message, replace: bool) {
        if self.refuse(&m) {
            return;
        }
        {
            let mut q = self.lock();
            if let Some(old) = q.iter_mut().rev().find(|o| replace && o.topic == m.topic) {
                *old = m;
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                if q.len() >= self.cap {
                    q.pop_front();
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                q.push_back(m);
            }
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

    #[test]
    fn too_large_messages_are_refused_and_latest_replaces() {
        let o = Outbox::new(10);
        o.push(Message {
            payload: vec![0; super::super::MAX_PACKET],
            ..m(1)
        });
        assert_eq!((o.len(), o.invalid()), (0, 1));
        let snap = |b: u8| Message {
            topic: "t/Person/snapshot".into(),
            payload: vec![b; 1000],
            retain: true,
            qos: 0,
        };
        o.push(m(1));
        o.push_latest(snap(1));
        o.push(m(2));
        o.push_latest(snap(2));
        o.push_latest(snap(3));
        assert_eq!(o.len(), 3, "one snapshot queued");
        assert_eq!(o.dropped(), 2);
        assert_eq!(o.pop().unwrap().topic, "t/1");
        assert_eq!(
            o.pop().unwrap().payload,
            vec![3; 1000],
            "the latest, in the first's place"
        );
        assert_eq!(o.pop().unwrap().topic, "t/2");
        // Once sent, the next one queues again.
        o.push_latest(snap(4));
        assert_eq!(o.len(), 1);
    }
}
