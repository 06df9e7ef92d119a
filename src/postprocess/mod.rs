//! Stage: postprocess (box decoding, non-max suppression, tracking).

pub mod tracker;
