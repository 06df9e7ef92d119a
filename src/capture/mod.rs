//! Stage: capture. Frame sources behind one trait, and the capture thread that
//! paces them, reconnects with back-off, and hands frames on (latest wins).

pub mod mjpeg;
pub mod sources;
#[cfg(feature = "v4l2")]
pub mod v4l2;

use std::time::{Instant, SystemTime};

use anyhow::Result;
use image::RgbImage;

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Sequence number, from 1, counting every frame the source delivered.
    pub seq: u64,
    /// Monotonic capture time.
    pub ts: Instant,
    /// Wall-clock capture time (for message timestamps).
    pub wall: SystemTime,
    pub image: RgbImage,
}

/// What a source returns for one read.
pub enum Read {
    Frame(RgbImage),
    /// A finite source ended (file without looping).
    Eof,
}

/// A source of RGB frames. `open` may be called again after an error or EOF
/// (reconnect); `read` blocks until a frame is available.
pub trait FrameSource: Send {
    fn open(&mut self) -> Result<()>;
    fn read(&mut self) -> Result<Read>;
    /// A short description for logs and stats.
    fn describe(&self) -> String;
    /// Whether the source paces itself in real time (cameras, live streams);
    /// file sources are paced by the capture thread at `source.fps`.
    fn live(&self) -> bool {
        false
    }
}
