//! Stage: postprocess — raw SSD outputs → detections (box decoding against
//! anchors, scores, per-class or class-agnostic NMS), the mapping back to
//! source-frame pixels, and the IoU tracker behind the events topic.

pub mod boxes;
pub mod nms;
pub mod tracker;

pub use boxes::{bbox_to_pixels, BoxCoder, DecodeParams, Decoder, Detection, RawOutput, Scoring};
