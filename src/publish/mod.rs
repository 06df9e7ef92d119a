//! Stage: publish. publish owns every topic and payload of docs/MQTT.md (`detections`,
//! `counts/<label>`, `events`, `<label>/snapshot`, `stats`, `availability`, `drift`, Home
//! Assistant discovery):
//! the [`Publisher`] handle builds them from plain figures handed over by the app and the
//! shadow, and nothing else names a topic. Below it: the [`Outbox`] buffer, the connection
//! that drains it ([`mqtt`]) and the embedded broker of first-run mode ([`broker`]).
//! publish depends on neither `app` nor `drift`; they wire it and call it.

pub mod broker;
pub mod homeassistant;
pub mod mqtt;
pub mod outbox;
pub mod publisher;
pub mod time;

pub use outbox::{Message, Outbox};
pub use publisher::{
    DriftFigures, Entities, FrameReport, Publisher, SnapshotFigures, StatsFigures,
};

/// `s` as one level of an MQTT topic: the wildcards `+` and `#`, the level separator `/`,
/// NUL and other control characters become `_` (a label such as "C++" or "#1" must not
/// make a topic that the broker refuses or that spans levels).
pub fn topic_level(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if matches!(c, '+' | '#' | '/') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if clean.is_empty() {
        "_".into()
    } else {
        clean
    }
}

/// The largest MQTT packet the connection sends and receives, and the embedded broker takes:
/// 1 MiB. rumqttc fails the whole connection on a larger outgoing packet, so nothing larger is
/// ever queued ([`fits_packet`]).
pub const MAX_PACKET: usize = 1 << 20;

/// Whether a PUBLISH of `payload_len` bytes on `topic` fits in [`MAX_PACKET`] (fixed header of
/// at most 5 bytes, the topic with its 2-byte length, a 2-byte packet id).
pub fn fits_packet(topic: &str, payload_len: usize) -> bool {
    topic.len().saturating_add(payload_len).saturating_add(9) <= MAX_PACKET
}

/// The largest snapshot payload: it fits in one packet with any valid topic.
pub const MAX_SNAPSHOT_BYTES: usize = MAX_PACKET - 65535 - 9;

/// Whether a broker accepts `topic` for a PUBLISH: non-empty, at most 65535 bytes, no
/// wildcard and no NUL.
pub fn valid_publish_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 65535 && !topic.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_levels_are_safe() {
        assert_eq!(topic_level("Person"), "Person");
        assert_eq!(topic_level("C++ book"), "C__ book");
        assert_eq!(topic_level("a/b#\0"), "a_b__");
        assert_eq!(topic_level(""), "_");
        assert!(valid_publish_topic(&format!(
            "edgecam/x/counts/{}",
            topic_level("+#/")
        )));
        assert!(!valid_publish_topic("edgecam/x/counts/+"));
        assert!(!valid_publish_topic("a\0b"));
        assert!(!valid_publish_topic(""));
    }

    #[test]
    fn packet_sizes() {
        assert!(fits_packet("a/b", MAX_PACKET - 12));
        assert!(!fits_packet("a/b", MAX_PACKET - 11));
        assert!(!fits_packet("a/b", usize::MAX));
        assert!(fits_packet(&"t".repeat(65535), MAX_SNAPSHOT_BYTES));
    }
}
