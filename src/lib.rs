//! edgecam: camera → int8 detector → MQTT, with a float shadow model that
//! measures quantization drift live.
//!
//! Stages, one module each: [`capture`] → [`preprocess`] → [`detect`] →
//! [`postprocess`] → [`publish`], with [`drift`] beside the detector.
//! The inference engine lives in [`engine`].
//!
//! `unsafe` is denied everywhere but in the engine's kernels and thread pool (and the
//! generated flatbuffer accessors), where each block carries a `// SAFETY:` comment.
#![deny(unsafe_code)]

pub mod app;
pub mod backoff;
pub mod calibrate;
pub mod capture;
pub mod cli;
pub mod config;
pub mod detect;
pub mod drift;
pub mod engine;
pub mod exit;
pub mod http;
pub mod npy;
pub mod percentile;
pub mod postprocess;
pub mod preprocess;
pub mod publish;
pub mod snapshot;
pub mod telemetry;
