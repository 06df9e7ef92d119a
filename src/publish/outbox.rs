//! The bounded buffer between the pipeline and the MQTT connection. While the
//! broker is away, messages wait here; beyond `cap` messages or `max_bytes` bytes (snapshots
//! are large) the oldest are dropped and counted. The pipeline never blocks on it.

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

impl Message {
    /// What the message holds in memory, for the byte bound.
    fn bytes(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// The queue and the bytes its messages hold.
#[derive(Default)]
struct Queue {
    q: VecDeque<Message>,
    bytes: usize,
}

/// The default byte bound of [`Outbox::new`]: 32 MiB.
pub const DEFAULT_MAX_BYTES: usize = 32 << 20;

pub struct Outbox {
    queue: Mutex<Queue>,
    cap: usize,
    max_bytes: usize,
    dropped: AtomicU64,
    pushed: AtomicU64,
    invalid: AtomicU64,
    pub(crate) notify: Notify,
}

impl Outbox {
    /// At most `cap` messages and [`DEFAULT_MAX_BYTES`].
    pub fn new(cap: usize) -> Self {
        Self::with_max_bytes(cap, DEFAULT_MAX_BYTES)
    }

    /// At most `cap` messages and `max_bytes` bytes of topics and payloads (one message is
    /// always kept, however large: a packet is at most 1 MiB).
    pub fn with_max_bytes(cap: usize, max_bytes: usize) -> Self {
        Outbox {
            queue: Mutex::new(Queue {
                q: VecDeque::with_capacity(cap.min(4096)),
                bytes: 0,
            }),
            cap: cap.max(1),
            max_bytes,
            dropped: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
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
            let mut guard = self.lock();
            let Queue { q, bytes } = &mut *guard;
            let size = m.bytes();
            if let Some(old) = q.iter_mut().rev().find(|o| replace && o.topic == m.topic) {
                *bytes = *bytes - old.bytes() + size;
                *old = m;
                self.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                if q.len() >= self.cap {
                    if let Some(old) = q.pop_front() {
                        *bytes -= old.bytes();
                    }
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                *bytes += size;
                q.push_back(m);
            }
            // The byte bound: oldest first, never the newest.
            while *bytes > self.max_bytes && q.len() > 1 {
                if let Some(old) = q.pop_front() {
                    *bytes -= old.bytes();
                }
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.pushed.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_one();
    }

    pub fn pop(&self) -> Option<Message> {
        let mut g = self.lock();
        let m = g.q.pop_front()?;
        g.bytes -= m.bytes();
        Some(m)
    }

    /// Bytes of the queued messages' topics and payloads.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Put a message back at the front (the connection could not take it).
    pub fn unpop(&self, m: Message) {
        let mut g = self.lock();
        if g.q.len() >= self.cap || (!g.q.is_empty() && g.bytes + m.bytes() > self.max_bytes) {
            // Keep the bounds: the message handed back is older than everything queued.
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        g.bytes += m.bytes();
        g.q.push_front(m);
    }

    pub fn len(&self) -> usize {
        self.lock().q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().q.is_empty()
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
    fn large_messages_are_bounded_by_bytes_too() {
        let big = |i: usize| Message {
            payload: vec![i as u8; 400_000],
            ..m(i)
        };
        let o = Outbox::with_max_bytes(100, 1_000_000);
        for i in 0..10 {
            o.push(big(i));
            assert!(o.bytes() <= 1_000_000, "{} bytes after {i}", o.bytes());
        }
        assert_eq!(o.len(), 2, "two of 400 kB fit in 1 MB");
        assert_eq!(o.dropped(), 8);
        assert_eq!(o.pop().unwrap().payload[0], 8, "the newest kept");
        o.push(m(20));
        assert_eq!(o.bytes(), 400_003 + 4, "topics and payloads");
        o.unpop(big(7));
        assert_eq!(
            (o.len(), o.dropped()),
            (3, 8),
            "handed back within the bound"
        );
        o.unpop(big(6));
        assert_eq!(
            (o.len(), o.dropped()),
            (3, 9),
            "handed back past the bound: dropped"
        );
        while o.pop().is_some() {}
        assert_eq!(o.bytes(), 0);
        // One message larger than the bound still goes (alone).
        let o = Outbox::with_max_bytes(10, 100);
        o.push(big(1));
        assert_eq!(o.len(), 1);
        o.unpop(big(2));
        assert_eq!(o.len(), 1);
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
