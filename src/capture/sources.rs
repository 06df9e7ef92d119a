//! The frame sources: V4L2 cameras (nokhwa), ffmpeg child processes (files,
//! RTSP/HTTP), image directories, MJPEG clips and a synthetic test pattern.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use image::{Rgb, RgbImage};

use super::{FrameSource, Read};
use crate::config::{SourceConfig, SourceKind};

/// Build the source the configuration asks for.
pub fn from_config(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>> {
    Ok(match cfg.kind {
        SourceKind::Synthetic => Box::new(Synthetic::new(
            if cfg.width > 0 { cfg.width } else { 640 },
            if cfg.height > 0 { cfg.height } else { 480 },
        )),
        SourceKind::Images => Box::new(ImageDir::new(PathBuf::from(&cfg.uri), cfg.looping)),
        SourceKind::Mjpeg => Box::new(MjpegFile::new(PathBuf::from(&cfg.uri), cfg.looping)),
        SourceKind::Ffmpeg => Box::new(Ffmpeg::new(cfg)),
        SourceKind::V4l2 => v4l2_source(cfg)?,
    })
}

#[cfg(feature = "v4l2")]
fn v4l2_source(cfg: &SourceConfig) -> Result<Box<dyn FrameSource>> {
    Ok(Box::new(super::v4l2::V4l2::new(cfg)?))
}

#[cfg(not(feature = "v4l2"))]
fn v4l2_source(_cfg: &SourceConfig) -> Result<Box<dyn FrameSource>> {
    bail!("source.kind = v4l2: this build of edgecam has no V4L2 support (cargo feature `v4l2`)")
}

/// A moving test pattern: a gradient background with a bright square that
/// travels across the frame, so detection and tracking have something to see.
pub struct Synthetic {
    w: u32,
    h: u32,
    t: u32,
}

impl Synthetic {
    pub fn new(w: u32, h: u32) -> Self {
        Synthetic { w, h, t: 0 }
    }
}

impl FrameSource for Synthetic {
    fn open(&mut self, _stop: &AtomicBool) -> Result<()> {
        Ok(())
    }
    fn read(&mut self, _wait: Duration) -> Result<Read> {
        let (w, h, t) = (self.w, self.h, self.t);
        self.t = self.t.wrapping_add(1);
        let side = (w.min(h) / 4).max(1);
        let x0 = (t * 7) % w.max(1);
        let y0 = h / 2 - side / 2;
        Ok(Read::Frame(RgbImage::from_fn(w, h, |x, y| {
            if x >= x0 && x < x0 + side && y >= y0 && y < y0 + side {
                Rgb([250, 240, 30])
            } else {
                Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, 96])
            }
        })))
    }
    fn describe(&self) -> String {
        format!("synthetic {}x{}", self.w, self.h)
    }
}

fn decode_image(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<RgbImage> {
    Ok(image::load_from_memory(bytes)
        .with_context(|| format!("decoding {what}"))?
        .to_rgb8())
}

/// Every `.jpg`/`.jpeg`/`.png` of a directory, in name order. A file that cannot be read or
/// decoded (an empty JPEG, a file half-copied) is skipped and counted; a reopen after an error
/// resumes after the last image handed on, never from the first again.
pub struct ImageDir {
    dir: PathBuf,
    looping: bool,
    files: Vec<PathBuf>,
    next: usize,
    last: Option<PathBuf>,
}

impl ImageDir {
    pub fn new(dir: PathBuf, looping: bool) -> Self {
        ImageDir {
            dir,
            looping,
            files: vec![],
            next: 0,
            last: None,
        }
    }
}

impl FrameSource for ImageDir {
    fn open(&mut self, _stop: &AtomicBool) -> Result<()> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("source.uri: reading directory {}", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension()
                        .and_then(|e| e.to_str())
                        .map(|e| e.to_ascii_lowercase())
                        .as_deref(),
                    Some("jpg" | "jpeg" | "png")
                )
            })
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("source.uri: no .jpg/.png images in {}", self.dir.display());
        }
        self.next = match &self.last {
            Some(last) => files.partition_point(|p| p <= last),
            None => 0,
        };
        self.files = files;
        Ok(())
    }
    fn read(&mut self, _wait: Duration) -> Result<Read> {
        if self.next >= self.files.len() {
            if !self.looping || self.files.is_empty() {
                return Ok(Read::Eof);
            }
            self.next = 0;
        }
        let p = self.files[self.next].clone();
        self.next += 1;
        self.last = Some(p.clone());
        let image = std::fs::read(&p)
            .with_context(|| format!("reading {}", p.display()))
            .and_then(|bytes| decode_image(&bytes, &p.display()));
        Ok(match image {
            Ok(img) => Read::Frame(img),
            Err(e) => Read::Skipped(e),
        })
    }
    fn describe(&self) -> String {
        format!("images {}", self.dir.display())
    }
}

/// A file of concatenated JPEG frames (the bundled clip). A frame that does not decode is
/// skipped; a file whose last frame is cut off ends as truncated.
pub struct MjpegFile {
    path: PathBuf,
    looping: bool,
    data: Vec<u8>,
    frames: Vec<(usize, usize)>,
    next: usize,
    /// Bytes of a frame begun after the last complete one (the file was cut short).
    cut: Option<usize>,
}

impl MjpegFile {
    pub fn new(path: PathBuf, looping: bool) -> Self {
        MjpegFile {
            path,
            looping,
            data: vec![],
            frames: vec![],
            next: 0,
            cut: None,
        }
    }
}

impl FrameSource for MjpegFile {
    fn open(&mut self, _stop: &AtomicBool) -> Result<()> {
        let data = std::fs::read(&self.path)
            .with_context(|| format!("source.uri: reading {}", self.path.display()))?;
        let base = data.as_ptr() as usize;
        let frames: Vec<(usize, usize)> = super::mjpeg::split_mjpeg(&data)
            .iter()
            .map(|f| (f.as_ptr() as usize - base, f.len()))
            .collect();
        if frames.is_empty() {
            bail!("source.uri: no JPEG frames in {}", self.path.display());
        }
        let end = frames.last().map(|&(o, l)| o + l).unwrap_or(0);
        self.cut = data[end..]
            .windows(2)
            .position(|w| w == [0xFF, 0xD8])
            .map(|i| data.len() - end - i);
        self.data = data;
        self.frames = frames;
        self.next = 0;
        Ok(())
    }
    fn read(&mut self, _wait: Duration) -> Result<Read> {
        if self.next >= self.frames.len() {
            if !self.looping || self.frames.is_empty() {
                if let Some(n) = self.cut {
                    return Ok(Read::Truncated(format!(
                        "{}: the last frame is cut off after {n} bytes",
                        self.path.display()
                    )));
                }
                return Ok(Read::Eof);
            }
            self.next = 0;
        }
        let (off, len) = self.frames[self.next];
        self.next += 1;
        let what = format!("frame {} of {}", self.next, self.path.display());
        Ok(match decode_image(&self.data[off..off + len], &what) {
            Ok(img) => Read::Frame(img),
            Err(e) => Read::Skipped(e),
        })
    }
    fn describe(&self) -> String {
        format!("mjpeg {}", self.path.display())
    }
}

/// What the ffmpeg reader thread hands over.
enum Chunk {
    Frame(Vec<u8>),
    /// ffmpeg closed its output; `partial` bytes of a frame were left over.
    End {
        partial: usize,
    },
    Failed(std::io::Error),
}

/// A running ffmpeg child, the thread that reads its frames and the one that logs its stderr.
struct Running {
    child: Child,
    frames: Receiver<Chunk>,
    last_error: Arc<Mutex<String>>,
    count: u64,
}

impl Running {
    /// Reap the child (killing it if it has not exited within a moment): its exit status.
    fn finish(mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    return self.child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Video files and RTSP/HTTP streams decoded by an `ffmpeg` child process that writes raw
/// RGB frames to its stdout. A reader thread moves whole frames into a small channel, so a
/// read never blocks past its wait: a stream that stops sending shows up as a stall (the
/// capture thread reopens it) and shutdown never waits on a silent pipe. ffmpeg's own
/// network timeout (`-rw_timeout`) is set to the stall timeout too. A file that ends short of
/// its declared frame count, or whose decoder fails, ends as truncated.
pub struct Ffmpeg {
    uri: String,
    width: u32,
    height: u32,
    fps: f64,
    looping: bool,
    stall: Duration,
    running: Option<Running>,
    size: (u32, u32),
    /// The container's declared frame count (files), from ffprobe.
    declared: Option<u64>,
}

impl Ffmpeg {
    pub fn new(cfg: &SourceConfig) -> Self {
        Ffmpeg {
            uri: cfg.uri.clone(),
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            looping: cfg.looping,
            stall: Duration::from_secs_f64(cfg.stall_timeout_s),
            running: None,
            size: (0, 0),
            declared: None,
        }
    }

    fn is_stream(&self) -> bool {
        [
            "rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://",
        ]
        .iter()
        .any(|p| self.uri.starts_with(p))
    }

    /// ffmpeg's network I/O timeout in microseconds: twice the stall timeout, so that the
    /// capture thread's own stall detection acts first and ffmpeg's is the backstop.
    fn rw_timeout(&self) -> String {
        ((self.stall * 2).as_micros().max(1)).to_string()
    }

    /// The stream's native size and declared frame count, from ffprobe; gives up after
    /// twice the stall timeout (at least 10 s) or once `stop` is set.
    fn probe(&self, stop: &AtomicBool) -> Result<(u32, u32, Option<u64>)> {
        let mut cmd = Command::new("ffprobe");
        cmd.args(["-v", "error"]);
        if self.is_stream() {
            cmd.args(["-rw_timeout", &self.rw_timeout()]);
        }
        cmd.args([
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height,nb_frames",
            "-of",
            "csv=p=0:s=x",
        ])
        .arg(&self.uri)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running ffprobe (install ffmpeg)")?;
        let limit = (self.stall * 2).max(Duration::from_secs(10));
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if stop.load(Ordering::SeqCst) || t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ffprobe {}: no answer within {limit:?}", self.uri);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        if !status.success() {
            bail!("ffprobe {}: {}", self.uri, err.trim());
        }
        let line = out.lines().next().unwrap_or("").trim();
        let mut parts = line.split('x');
        let (Some(w), Some(h)) = (parts.next(), parts.next()) else {
            bail!("ffprobe {}: no video size in '{line}'", self.uri);
        };
        let declared = parts.next().and_then(|n| n.trim().parse::<u64>().ok());
        Ok((w.trim().parse()?, h.trim().parse()?, declared))
    }

    /// Why the child's output ended, once it has.
    fn ended(&mut self, partial: usize) -> Result<Read> {
        let Some(run) = self.running.take() else {
            bail!("ffmpeg is not running");
        };
        let (count, last) = (run.count, run.last_error.clone());
        let status = run.finish();
        let last = last.lock().map(|s| s.clone()).unwrap_or_default();
        let why = if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        };
        if self.is_stream() || self.looping {
            // A stream, or a looping file, has no end: this is a failure (reopen).
            bail!("ffmpeg {} ended ({status:?}){why}", self.uri);
        }
        let clean = status.map(|s| s.success()).unwrap_or(false);
        if !clean {
            return Ok(Read::Truncated(format!(
                "ffmpeg {} failed after {count} frames ({status:?}){why}",
                self.uri
            )));
        }
        if partial > 0 {
            return Ok(Read::Truncated(format!(
                "{}: the last frame is cut off ({partial} bytes)",
                self.uri
            )));
        }
        if let Some(n) = self.declared {
            // Declared counts can be off by a frame or two (edit lists, B-frames).
            if count + 2 < n {
                return Ok(Read::Truncated(format!(
                    "{}: ended after {count} of {n} frames{why}",
                    self.uri
                )));
            }
        }
        Ok(Read::Eof)
    }
}

/// The reader thread: whole frames from ffmpeg's stdout into `tx` until the pipe ends or the
/// source is closed (the receiver is gone).
fn read_frames(mut out: ChildStdout, frame_bytes: usize, tx: crossbeam_channel::Sender<Chunk>) {
    loop {
        let mut buf = vec![0u8; frame_bytes];
        let mut filled = 0;
        while filled < frame_bytes {
            match out.read(&mut buf[filled..]) {
                Ok(0) => {
                    let _ = tx.send(Chunk::End { partial: filled });
                    return;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Chunk::Failed(e));
                    return;
                }
            }
        }
        if tx.send(Chunk::Frame(buf)).is_err() {
            return;
        }
    }
}

/// The stderr thread: ffmpeg's messages at warn (the first few of each run; a flood of
/// decoder complaints must not fill the journal), the last one kept for the error message.
fn log_stderr(err: std::process::ChildStderr, uri: String, last: Arc<Mutex<String>>) {
    use std::io::BufRead;
    let mut shown = 0u32;
    for line in std::io::BufReader::new(err).lines() {
        let Ok(line) = line else { break };
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        shown += 1;
        if shown <= 5 {
            tracing::warn!(source = %uri, "ffmpeg: {line}");
        } else if shown == 6 {
            tracing::warn!(source = %uri, "ffmpeg: more messages follow (not logged)");
        }
        if let Ok(mut l) = last.lock() {
            *l = line;
        }
    }
}

impl FrameSource for Ffmpeg {
    fn open(&mut self, stop: &AtomicBool) -> Result<()> {
        self.running = None;
        // Probe for the size when it is not configured, and for the declared frame count of
        // a regular file; never a stream or a pipe whose size is known (probing would eat
        // its first frames, or wait on it).
        let sized = self.width > 0 && self.height > 0;
        let regular = !self.is_stream() && Path::new(&self.uri).is_file();
        let (pw, ph, declared) = if sized && !regular {
            (self.width, self.height, None)
        } else {
            self.probe(stop)?
        };
        let size = if self.width > 0 && self.height > 0 {
            (self.width, self.height)
        } else {
            (pw, ph)
        };
        if size.0 == 0 || size.1 == 0 || size.0 > 16384 || size.1 > 16384 {
            bail!(
                "ffmpeg {}: unusable frame size {}x{}",
                self.uri,
                size.0,
                size.1
            );
        }
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
        if self.is_stream() {
            cmd.args(["-rw_timeout", &self.rw_timeout()]);
            if self.uri.starts_with("rtsp") {
                cmd.args(["-rtsp_transport", "tcp"]);
            }
        } else if self.looping {
            cmd.args(["-stream_loop", "-1"]);
        }
        cmd.arg("-i").arg(&self.uri);
        let mut vf = format!("scale={}:{}", size.0, size.1);
        if self.fps > 0.0 && self.is_stream() {
            vf = format!("fps={},{vf}", self.fps);
        }
        cmd.args([
            "-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-an", "-",
        ]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting ffmpeg (install ffmpeg)")?;
        let (out, err) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ffmpeg: no output pipes");
            }
        };
        let frame_bytes = size.0 as usize * size.1 as usize * 3;
        let (tx, rx) = crossbeam_channel::bounded(2);
        let last_error = Arc::new(Mutex::new(String::new()));
        let spawned = std::thread::Builder::new()
            .name("edgecam-ffmpeg".into())
            .spawn(move || read_frames(out, frame_bytes, tx))
            .and_then(|_| {
                let (uri, last) = (self.uri.clone(), last_error.clone());
                std::thread::Builder::new()
                    .name("edgecam-ffmpeg-log".into())
                    .spawn(move || log_stderr(err, uri, last))
            });
        let running = Running {
            child,
            frames: rx,
            last_error,
            count: 0,
        };
        spawned.context("starting the ffmpeg reader thread")?;
        self.running = Some(running);
        self.size = size;
        self.declared = declared;
        Ok(())
    }
    fn read(&mut self, wait: Duration) -> Result<Read> {
        let (w, h) = self.size;
        let Some(run) = self.running.as_mut() else {
            bail!("ffmpeg is not running");
        };
        match run.frames.recv_timeout(wait) {
            Ok(Chunk::Frame(buf)) => {
                run.count += 1;
                Ok(Read::Frame(
                    RgbImage::from_raw(w, h, buf).context("frame size")?,
                ))
            }
            Err(RecvTimeoutError::Timeout) => Ok(Read::Pending),
            Ok(Chunk::End { partial }) => self.ended(partial),
            Err(RecvTimeoutError::Disconnected) => self.ended(0),
            Ok(Chunk::Failed(e)) => {
                self.running = None;
                Err(e).with_context(|| format!("reading from ffmpeg {}", self.uri))
            }
        }
    }
    fn describe(&self) -> String {
        format!("ffmpeg {}", self.uri)
    }
    fn live(&self) -> bool {
        self.is_stream()
    }
}

/// Whether `path` looks like a file the ffmpeg source should handle.
pub fn is_video_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("avi" | "mp4" | "mkv" | "mov" | "webm" | "h264" | "mjpeg")
    )
}
