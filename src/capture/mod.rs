//! Stage: capture (arrives with its issue).

pub mod mjpeg;
