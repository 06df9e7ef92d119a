//! Stage: publish. publish owns every topic and payload of docs/MQTT.md (`detections`,
//! `counts/<label>`, `events`, `stats`, `availability`, `drift`, Home Assistant discovery):
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
pub use publisher::{DriftFigures, FrameReport, Publisher, StatsFigures};

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
}
