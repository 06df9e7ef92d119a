//! Stage: capture. Frame sources behind one trait; the capture thread
//! (`app::pipeline::capture_loop`) paces them, notices stalls, reopens them with back-off and
//! jitter, and hands frames on (latest wins).

pub mod http;
pub mod mjpeg;
pub mod sources;
#[cfg(feature = "v4l2")]
pub mod v4l2;

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

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
#[derive(Debug)]
pub enum Read {
    Frame(RgbImage),
    /// No frame within the wait: call again. The capture thread counts the time since the
    /// last frame and reopens a source that stays silent beyond `source.stall_timeout_s`.
    Pending,
    /// One item of the source could not be used (an empty or corrupt image or frame); the
    /// source goes on with the next one.
    Skipped(anyhow::Error),
    /// A finite source ended (file without looping).
    Eof,
    /// A finite source ended before its end: a file cut short, a decoder that gave up.
    Truncated(String),
}

/// How long a read may wait for a frame before it returns [`Read::Pending`]: the capture
/// thread sees the stop flag and the stall clock at least this often.
pub const READ_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A source of RGB frames. `open` may be called again after an error, a stall or EOF
/// (reconnect); `read` waits at most `wait` for a frame.
pub trait FrameSource: Send {
    /// Open (or reopen) the source. Long steps (probing a stream) give up once `stop` is set.
    fn open(&mut self, stop: &AtomicBool) -> Result<()>;
    fn read(&mut self, wait: Duration) -> Result<Read>;
    /// A short description for logs and stats.
    fn describe(&self) -> String;
    /// Whether the source paces itself in real time (cameras, live streams);
    /// file sources are paced by the capture thread at `source.fps`.
    fn live(&self) -> bool {
        false
    }
}
