//! Stage: publish. Messages for MQTT topics (`detections`, `counts/<label>`,
//! `events`, `stats`, `availability`, Home Assistant discovery) and the
//! connection that carries them. See docs/MQTT.md.

pub mod homeassistant;
pub mod mqtt;
pub mod outbox;
pub mod time;

pub use outbox::{Message, Outbox};
