//! Control over MQTT: `<base>/detect/set` (`ON` / `OFF`) switches detection, and
//! `<base>/threshold/set` (a number in [`THRESHOLD_MIN`]..=1) sets the default score threshold.
//! Each is echoed, retained, on its `/state` topic (at start too). Only exact, bounded payloads
//! are accepted; anything else is logged and ignored. The commands arrive from the MQTT task
//! through a bounded channel and are applied on the supervisor's tick; the detection thread
//! reads the settings from [`Shared`] before each frame.

use std::sync::atomic::Ordering;

use crossbeam_channel::Receiver;

use super::pipeline::Shared;
use crate::publish::mqtt::Incoming;
use crate::publish::Publisher;

/// The lowest threshold `threshold/set` accepts.
pub const THRESHOLD_MIN: f32 = 0.01;
/// The longest payload looked at.
const MAX_PAYLOAD: usize = 16;

/// A parsed command.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Command {
    Detect(bool),
    Threshold(f32),
}

/// `ON` / `OFF` exactly (white space around allowed).
pub fn parse_detect(payload: &[u8]) -> Option<bool> {
    match std::str::from_utf8(payload).ok()?.trim() {
        "ON" => Some(true),
        "OFF" => Some(false),
        _ => None,
    }
}

/// A finite number in `THRESHOLD_MIN..=1`, at most [`MAX_PAYLOAD`] bytes.
pub fn parse_threshold(payload: &[u8]) -> Option<f32> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let v: f32 = std::str::from_utf8(payload).ok()?.trim().parse().ok()?;
    (v.is_finite() && (THRESHOLD_MIN..=1.0).contains(&v)).then_some(v)
}

/// The control topics and what applies their commands.
pub struct Control {
    detect_topic: String,
    threshold_topic: String,
    rx: Receiver<Incoming>,
    out: Publisher,
}

impl Control {
    /// Topics of `base`; `rx` receives what the MQTT task gets on them.
    pub fn new(base: &str, rx: Receiver<Incoming>, out: Publisher) -> Self {
        Control {
            detect_topic: Publisher::detect_command_topic(base),
            threshold_topic: Publisher::threshold_command_topic(base),
            rx,
            out,
        }
    }

    pub fn topics(&self) -> [String; 2] {
        [self.detect_topic.clone(), self.threshold_topic.clone()]
    }

    /// Publish the current settings (at start).
    pub fn announce(&self, shared: &Shared) {
        self.out
            .detect_state(shared.detect_enabled.load(Ordering::Relaxed));
        self.out.threshold_state(shared.threshold());
    }

    /// Apply every pending command.
    pub fn poll(&self, shared: &Shared) {
        while let Ok(m) = self.rx.try_recv() {
            match self.parse(&m) {
                Some(Command::Detect(on)) => {
                    tracing::info!(on, "detection switched {}", if on { "on" } else { "off" });
                    shared.detect_enabled.store(on, Ordering::Relaxed);
                    self.out.detect_state(on);
                }
                Some(Command::Threshold(t)) => {
                    tracing::info!(threshold = t, "score threshold set");
                    shared.set_threshold(t);
                    self.out.threshold_state(t);
                }
                None => tracing::warn!(
                    topic = %m.topic,
                    "ignoring {:?}: {} takes ON or OFF, {} a number in {THRESHOLD_MIN}..1",
                    String::from_utf8_lossy(&m.payload[..m.payload.len().min(64)]),
                    self.detect_topic,
                    self.threshold_topic
                ),
            }
        }
    }

    fn parse(&self, m: &Incoming) -> Option<Command> {
        if m.topic == self.detect_topic {
            parse_detect(&m.payload).map(Command::Detect)
        } else if m.topic == self.threshold_topic {
            parse_threshold(&m.payload).map(Command::Threshold)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_bounded_payloads() {
        assert_eq!(parse_detect(b"ON"), Some(true));
        assert_eq!(parse_detect(b" OFF\n"), Some(false));
        for bad in [&b"on"[..], b"", b"ONN", b"1", b"\xff"] {
            assert_eq!(parse_detect(bad), None, "{bad:?}");
        }
        assert_eq!(parse_threshold(b"0.6"), Some(0.6));
        assert_eq!(parse_threshold(b"1"), Some(1.0));
        for bad in [
            &b"0"[..],
            b"1.5",
            b"-0.2",
            b"nan",
            b"inf",
            b"0.5 0.6",
            b"0.500000000000000000001",
            b"",
            b"abc",
        ] {
            assert_eq!(parse_threshold(bad), None, "{bad:?}");
        }
    }
}
