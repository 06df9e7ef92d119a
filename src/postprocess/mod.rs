//! Stage: postprocess — raw SSD outputs → detections (anchor generation, box
//! decoding against the anchors, scores, per-class or class-agnostic NMS), the
//! mapping back to source-frame pixels, and the IoU tracker behind the events
//! topic.
//!
//! Downstream of `detect` and `engine`, so it imports neither: `detect` uses
//! this module (anchors, decoder), and the engine's
//! `TFLite_Detection_PostProcess` operator uses the leaf [`nms`] module (the
//! crate's one IoU and greedy NMS).

pub mod anchors;
pub mod bbox;
pub mod boxes;
pub mod labels;
pub mod nms;
pub mod tracker;
pub mod yolo;

pub use bbox::{NormBox, PixelBox};
pub use boxes::{bbox_to_pixels, BoxCoder, DecodeParams, Decoder, Detection, RawOutput, Scoring};
