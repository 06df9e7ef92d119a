//! Stage: postprocess — raw SSD outputs → detections (box decoding against
//! anchors, scores, per-class or class-agnostic NMS) and the mapping back to
//! source-frame pixels.

pub mod boxes;
pub mod nms;

pub use boxes::{bbox_to_pixels, BoxCoder, DecodeParams, Decoder, Detection, RawOutput, Scoring};
