//! The frame sources: V4L2 cameras (nokhwa), ffmpeg child processes (files,
//! RTSP/HTTP), image directories, MJPEG clips and a synthetic test pattern.

use std::collections::VecDeque;
use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::mjpeg::{MjpegReader, Piece, MAX_FRAME};
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
        SourceKind::Mjpeg if MjpegStream::handles(&cfg.uri) => Box::new(MjpegStream::new(cfg)?),
        SourceKind::Mjpeg => Box::new(MjpegFile::new(PathBuf::from(&cfg.uri), cfg.looping)),
        SourceKind::Ffmpeg => Box::new(Ffmpeg::new(cfg)),
        SourceKind::Libcamera => Box::new(Libcamera::new(cfg)),
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
        if std::fs::metadata(&self.path).is_ok_and(|m| !m.is_file()) {
            // Reading it whole would wait forever on a FIFO: pipes are MjpegStream's, chosen
            // at start-up.
            bail!(
                "source.uri: {} is not a regular file (a pipe made after start-up is read once \
                 edgecam restarts)",
                self.path.display()
            );
        }
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

/// What a reader thread hands over.
enum Chunk {
    Frame(Vec<u8>),
    /// An item of the stream that could not be used (an oversize frame); the stream goes on.
    Skipped(String),
    /// The input ended; `partial` bytes of a frame were left over.
    End {
        partial: usize,
    },
    Failed(std::io::Error),
}

/// "exit status: 1", "signal: 9 (SIGKILL)", or "not reaped".
fn status_text(s: Option<std::process::ExitStatus>) -> String {
    s.map(|s| s.to_string())
        .unwrap_or_else(|| "not reaped".into())
}

/// How many of a child's last stderr lines are kept for the error message, and how long each.
const STDERR_LINES: usize = 5;
const STDERR_LINE_CHARS: usize = 300;

/// The last lines a child wrote to stderr (bounded).
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: &str) {
        if let Ok(mut t) = self.0.lock() {
            if t.len() == STDERR_LINES {
                t.pop_front();
            }
            t.push_back(line.chars().take(STDERR_LINE_CHARS).collect());
        }
    }
    /// `": line | line"`, or empty.
    fn suffix(&self) -> String {
        let lines = self.0.lock().map(|t| t.clone()).unwrap_or_default();
        if lines.is_empty() {
            String::new()
        } else {
            format!(": {}", Vec::from(lines).join(" | "))
        }
    }
}

/// The sending end of a reader thread.
struct Out {
    tx: Sender<Chunk>,
    /// Live sources: when the channel is full the oldest chunk is dropped (latest wins)
    /// rather than the reader waiting.
    drop_oldest: Option<Receiver<Chunk>>,
    closed: Arc<AtomicBool>,
}

impl Out {
    /// Hand `c` on; false once the source is closed.
    fn send(&self, mut c: Chunk) -> bool {
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        let Some(rx) = &self.drop_oldest else {
            return self.tx.send(c).is_ok();
        };
        loop {
            match self.tx.try_send(c) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => {
                    let _ = rx.try_recv();
                    c = back;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

/// A running input: the reader thread's channel, and what to stop when the source closes
/// (a child process, a socket).
struct Running {
    child: Option<Child>,
    /// Shut down on close, so that a read blocked on it returns.
    socket: Option<TcpStream>,
    closed: Arc<AtomicBool>,
    frames: Receiver<Chunk>,
    /// A chunk that followed the newest frame (live sources read ahead to the newest).
    next: Option<Chunk>,
    stderr: Tail,
    /// The thread reading the child's stderr.
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    count: u64,
}

impl Running {
    /// A channel for a reader thread: `cap` chunks; live inputs drop the oldest when full.
    fn channel(cap: usize, live: bool) -> (Out, Running) {
        let (tx, rx) = crossbeam_channel::bounded(cap);
        let closed = Arc::new(AtomicBool::new(false));
        let out = Out {
            tx,
            drop_oldest: live.then(|| rx.clone()),
            closed: closed.clone(),
        };
        let run = Running {
            child: None,
            socket: None,
            closed,
            frames: rx,
            next: None,
            stderr: Tail::default(),
            stderr_thread: None,
            count: 0,
        };
        (out, run)
    }

    /// Start `cmd` with its stdout and stderr piped: `pump` runs on its stdout in a thread,
    /// another keeps the tail of its stderr and logs its first lines (at warn when `warn`,
    /// else at debug).
    fn spawn(
        mut cmd: Command,
        program: &str,
        what: &str,
        live: bool,
        warn: bool,
        pump: impl FnOnce(ChildStdout, Out) + Send + 'static,
    ) -> Result<Running> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {program} (is it installed, on PATH?)"))?;
        let (out, err) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{program}: no output pipes");
            }
        };
        let (tx, mut run) = Running::channel(2, live);
        run.child = Some(child);
        let (name, tail, what) = (program.to_string(), run.stderr.clone(), what.to_string());
        let log = std::thread::Builder::new()
            .name("edgecam-capture".into())
            .spawn(move || pump(out, tx))
            .and_then(|_| {
                std::thread::Builder::new()
                    .name("edgecam-capture-log".into())
                    .spawn(move || log_stderr(err, name, what, tail, warn))
            })
            .with_context(|| format!("starting the {program} reader thread"))?;
        run.stderr_thread = Some(log);
        Ok(run)
    }

    /// The next chunk within `wait`. With `latest`, frames queued behind the first are
    /// dropped for the newest (a live source delivers the present, not a backlog).
    fn recv(&mut self, wait: Duration, latest: bool) -> Result<Chunk, RecvTimeoutError> {
        let first = match self.next.take() {
            Some(c) => c,
            None => self.frames.recv_timeout(wait)?,
        };
        let Chunk::Frame(mut newest) = first else {
            return Ok(first);
        };
        if latest {
            loop {
                match self.frames.try_recv() {
                    Ok(Chunk::Frame(f)) => newest = f,
                    Ok(other) => {
                        self.next = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        Ok(Chunk::Frame(newest))
    }

    /// Reap the child (killing it if it has not exited within a moment): its exit status.
    /// Its last stderr lines are in [`Running::stderr`] once this returns (waiting a moment
    /// for the stderr thread to read them: the child's stdout may close first).
    fn finish(mut self) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + Duration::from_millis(500);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        let deadline = Instant::now() + Duration::from_millis(500);
        if let Some(t) = &self.stderr_thread {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(s) = &self.socket {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(child) = self.child.as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
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
    /// `source.hwaccel_args` and `source.input_args`, before `-i`.
    hwaccel_args: Vec<String>,
    input_args: Vec<String>,
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
            hwaccel_args: cfg.hwaccel_args.clone(),
            input_args: cfg.input_args.clone(),
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
        let (count, tail) = (run.count, run.stderr.clone());
        let status = run.finish();
        let why = tail.suffix();
        let clean = status.map(|s| s.success()).unwrap_or(false);
        if count == 0 && !clean {
            // Not one frame: ffmpeg refused its arguments or its input (a bad input_args or
            // hwaccel_args, an unreadable file). An error, retried with back-off.
            bail!(
                "ffmpeg {} exited ({}) before its first frame{why}",
                self.uri,
                status_text(status)
            );
        }
        if self.is_stream() || self.looping {
            // A stream, or a looping file, has no end: this is a failure (reopen).
            bail!("ffmpeg {} ended ({}){why}", self.uri, status_text(status));
        }
        if !clean {
            return Ok(Read::Truncated(format!(
                "ffmpeg {} failed after {count} frames ({}){why}",
                self.uri,
                status_text(status)
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

/// The reader thread: whole frames from ffmpeg's stdout until the pipe ends or the source
/// is closed.
fn read_frames(mut out: ChildStdout, frame_bytes: usize, tx: Out) {
    loop {
        let mut buf = vec![0u8; frame_bytes];
        let mut filled = 0;
        while filled < frame_bytes {
            match out.read(&mut buf[filled..]) {
                Ok(0) => {
                    tx.send(Chunk::End { partial: filled });
                    return;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tx.send(Chunk::Failed(e));
                    return;
                }
            }
        }
        if !tx.send(Chunk::Frame(buf)) {
            return;
        }
    }
}

/// The reader thread of a JPEG stream: frames split from `input` until it ends, fails or the
/// source is closed. `input` is opened here, as opening a FIFO waits for its writer.
fn pump_jpegs(input: impl FnOnce() -> std::io::Result<JpegReader>, tx: Out) {
    let mut r = match input() {
        Ok(r) => r,
        Err(e) => {
            tx.send(Chunk::Failed(e));
            return;
        }
    };
    loop {
        let c = match r.next_piece() {
            Ok(Piece::Frame(f)) => Chunk::Frame(f),
            Ok(Piece::Oversize(n)) => Chunk::Skipped(format!(
                "a frame of {n} bytes or more, beyond the {} MiB cap",
                MAX_FRAME >> 20
            )),
            Ok(Piece::End { partial }) => {
                tx.send(Chunk::End { partial });
                return;
            }
            Err(e) => {
                tx.send(Chunk::Failed(e));
                return;
            }
        };
        if !tx.send(c) {
            return;
        }
    }
}

/// The stderr thread: the child's messages, the first few of each run logged (at warn for
/// ffmpeg, which runs at `-loglevel error`; at debug for chatty camera apps; a flood must not
/// fill the journal), the last few kept for the error message.
fn log_stderr(
    err: std::process::ChildStderr,
    program: String,
    uri: String,
    tail: Tail,
    warn: bool,
) {
    use std::io::BufRead;
    let mut shown = 0u32;
    let mut r = std::io::BufReader::new(err);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        // Lines are capped: a child that writes without newlines cannot grow memory.
        match (&mut r).take(4096).read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        shown += 1;
        if shown <= 5 {
            if warn {
                tracing::warn!(source = %uri, "{program}: {line}");
            } else {
                tracing::debug!(source = %uri, "{program}: {line}");
            }
        } else if shown == 6 && warn {
            tracing::warn!(source = %uri, "{program}: more messages follow (not logged)");
        }
        tail.push(line);
    }
}

/// Decode a JPEG chunk for a JPEG source's `read`: `Ok(Err(partial))` when the input ended.
fn jpeg_read(
    run: &mut Running,
    wait: Duration,
    latest: bool,
    what: &str,
) -> Result<std::result::Result<Read, usize>> {
    Ok(Ok(match run.recv(wait, latest) {
        Ok(Chunk::Frame(bytes)) => {
            run.count += 1;
            match decode_image(&bytes, &format!("frame {} of {what}", run.count)) {
                Ok(img) => Read::Frame(img),
                Err(e) => Read::Skipped(e),
            }
        }
        Ok(Chunk::Skipped(why)) => Read::Skipped(anyhow::anyhow!("{what}: {why}")),
        Err(RecvTimeoutError::Timeout) => Read::Pending,
        Ok(Chunk::End { partial }) => return Ok(Err(partial)),
        Err(RecvTimeoutError::Disconnected) => return Ok(Err(0)),
        Ok(Chunk::Failed(e)) => return Err(e).with_context(|| format!("reading {what}")),
    }))
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
        cmd.args(&self.hwaccel_args).args(&self.input_args);
        cmd.arg("-i").arg(&self.uri);
        let mut vf = format!("scale={}:{}", size.0, size.1);
        if self.fps > 0.0 && self.is_stream() {
            vf = format!("fps={},{vf}", self.fps);
        }
        cmd.args([
            "-vf", &vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-an", "-",
        ]);
        let frame_bytes = size.0 as usize * size.1 as usize * 3;
        let running = Running::spawn(cmd, "ffmpeg", &self.uri, false, true, move |out, tx| {
            read_frames(out, frame_bytes, tx)
        })?;
        self.running = Some(running);
        self.size = size;
        // Input options such as -ss or -t change how many frames come: the declared count no
        // longer tells a truncated file.
        self.declared = declared.filter(|_| self.input_args.is_empty());
        Ok(())
    }
    fn read(&mut self, wait: Duration) -> Result<Read> {
        let (w, h) = self.size;
        let Some(run) = self.running.as_mut() else {
            bail!("ffmpeg is not running");
        };
        match run.recv(wait, false) {
            Ok(Chunk::Frame(buf)) => {
                run.count += 1;
                Ok(Read::Frame(
                    RgbImage::from_raw(w, h, buf).context("frame size")?,
                ))
            }
            Ok(Chunk::Skipped(why)) => Ok(Read::Skipped(anyhow::anyhow!("{why}"))),
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

/// A byte stream split into JPEG frames.
type JpegReader = MjpegReader<Box<dyn std::io::Read + Send>>;
/// Opens a stream's input, in its reader thread.
type OpenInput = Box<dyn FnOnce() -> std::io::Result<JpegReader> + Send>;

/// Where a Motion-JPEG stream comes from.
#[derive(Clone, Debug)]
enum StreamInput {
    Stdin,
    /// A FIFO (or another non-regular file): opened in the reader thread, as opening a FIFO
    /// waits for its writer.
    Pipe(PathBuf),
    Http(super::http::Url),
}

/// A Motion-JPEG stream that is not a regular file: standard input (`-`), a FIFO, or an
/// `http://` URL serving `multipart/x-mixed-replace` (IP cameras). A reader thread splits
/// frames off as they arrive into a small channel, so a silent input shows up as a stall.
/// Pipes are paced by the capture thread (the writer waits on the pipe); an HTTP stream
/// cannot be made to wait, so its reader drops the oldest frames and a read takes the newest.
/// An HTTP stream that ends or fails is reopened with back-off; a pipe ends like a file,
/// unless `loop` is set on a FIFO (reopened for its next writer).
pub struct MjpegStream {
    uri: String,
    input: StreamInput,
    looping: bool,
    stall: Duration,
    running: Option<Running>,
}

impl MjpegStream {
    /// Whether `uri` is for this source rather than [`MjpegFile`].
    pub fn handles(uri: &str) -> bool {
        uri == "-"
            || uri.starts_with("http://")
            || std::fs::metadata(uri).is_ok_and(|m| !m.is_file() && !m.is_dir())
    }

    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        let input = if cfg.uri == "-" {
            StreamInput::Stdin
        } else if cfg.uri.starts_with("http://") {
            StreamInput::Http(super::http::Url::parse(&cfg.uri).context("source.uri")?)
        } else {
            StreamInput::Pipe(PathBuf::from(&cfg.uri))
        };
        Ok(MjpegStream {
            uri: cfg.uri.clone(),
            input,
            looping: cfg.looping,
            stall: Duration::from_secs_f64(cfg.stall_timeout_s),
            running: None,
        })
    }

    fn is_http(&self) -> bool {
        matches!(self.input, StreamInput::Http(_))
    }
}

/// [`super::http::open`] in a helper thread, giving up once `stop` is set: an unanswered
/// connect or response head must not hold up shutdown (the thread ends by its own timeouts).
fn http_open(
    url: &super::http::Url,
    timeout: Duration,
    read_timeout: Duration,
    stop: &AtomicBool,
) -> Result<super::http::Stream> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let u = url.clone();
    std::thread::Builder::new()
        .name("edgecam-http-open".into())
        .spawn(move || {
            let _ = tx.send(super::http::open(&u, timeout, read_timeout));
        })
        .context("starting the HTTP connect thread")?;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(r) => return r,
            Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::SeqCst) => {}
            Err(RecvTimeoutError::Timeout) => bail!("{url}: stopped while connecting"),
            Err(RecvTimeoutError::Disconnected) => bail!("{url}: the connect thread died"),
        }
    }
}

impl FrameSource for MjpegStream {
    fn open(&mut self, stop: &AtomicBool) -> Result<()> {
        self.running = None;
        let (tx, mut run) = Running::channel(4, self.is_http());
        let input: OpenInput = match self.input.clone() {
            StreamInput::Stdin => Box::new(|| {
                Ok(MjpegReader::new(
                    Box::new(std::io::stdin()) as Box<dyn std::io::Read + Send>
                ))
            }),
            StreamInput::Pipe(p) => Box::new(move || {
                let f = std::fs::File::open(&p)?;
                Ok(MjpegReader::new(
                    Box::new(f) as Box<dyn std::io::Read + Send>
                ))
            }),
            StreamInput::Http(url) => {
                // Connect and read the head here, so a refused connection, a wrong status
                // or content type is an open error (logged, retried with back-off).
                let timeout = self.stall.max(Duration::from_secs(1));
                let st = http_open(&url, timeout, self.stall * 2, stop)?;
                run.socket = Some(st.socket);
                let reader = match st.kind {
                    super::http::Body::Multipart(b) => MjpegReader::multipart(st.body, &b),
                    super::http::Body::Jpegs => MjpegReader::new(st.body),
                };
                Box::new(move || Ok(reader))
            }
        };
        std::thread::Builder::new()
            .name("edgecam-mjpeg".into())
            .spawn(move || pump_jpegs(input, tx))
            .context("starting the MJPEG reader thread")?;
        self.running = Some(run);
        Ok(())
    }
    fn read(&mut self, wait: Duration) -> Result<Read> {
        let latest = self.is_http();
        let Some(run) = self.running.as_mut() else {
            bail!("{} is not open", self.uri);
        };
        let got = jpeg_read(run, wait, latest, &self.uri);
        let partial = match got {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(partial)) => partial,
            Err(e) => {
                self.running = None;
                return Err(e);
            }
        };
        let count = self.running.take().map(|r| r.count).unwrap_or(0);
        match &self.input {
            StreamInput::Http(url) => bail!("{url}: the stream ended after {count} frames"),
            StreamInput::Pipe(p) if self.looping => {
                bail!("{}: the writer closed the pipe; reopening", p.display())
            }
            _ if partial > 0 => Ok(Read::Truncated(format!(
                "{}: the last frame is cut off after {partial} bytes",
                self.uri
            ))),
            _ => Ok(Read::Eof),
        }
    }
    fn describe(&self) -> String {
        match &self.input {
            StreamInput::Stdin => "mjpeg standard input".into(),
            StreamInput::Pipe(p) => format!("mjpeg pipe {}", p.display()),
            StreamInput::Http(url) => format!("mjpeg {url}"),
        }
    }
}

/// The Raspberry Pi camera (libcamera; no V4L2 node on current Raspberry Pi OS) through
/// `rpicam-vid` (or the older `libcamera-vid`, or `source.command`) writing MJPEG to its
/// stdout, split by the same reader as MJPEG pipes. The camera app runs until it fails or the
/// camera goes away; then the capture thread reopens it with back-off, and the error carries
/// the app's last stderr lines. The app is killed when the source closes.
pub struct Libcamera {
    command: String,
    camera: String,
    width: u32,
    height: u32,
    fps: f64,
    extra_args: Vec<String>,
    running: Option<Running>,
    /// The program of the last launch.
    program: String,
}

impl Libcamera {
    pub fn new(cfg: &SourceConfig) -> Self {
        Libcamera {
            command: cfg.command.clone(),
            camera: cfg.uri.clone(),
            width: cfg.width,
            height: cfg.height,
            fps: cfg.fps,
            extra_args: cfg.extra_args.clone(),
            running: None,
            program: String::new(),
        }
    }

    /// `source.command`, else `rpicam-vid`, else `libcamera-vid`, whichever is on PATH.
    fn program(&self) -> Result<String> {
        if !self.command.is_empty() {
            return Ok(self.command.clone());
        }
        ["rpicam-vid", "libcamera-vid"]
            .into_iter()
            .find(|p| on_path(p))
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "neither rpicam-vid nor libcamera-vid is on PATH (install rpicam-apps, or set source.command)"
                )
            })
    }

    /// The camera app's arguments: run forever, no preview, MJPEG to stdout.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-t", "0", "-n", "--codec", "mjpeg", "--flush"]
            .map(String::from)
            .to_vec();
        if self.width > 0 && self.height > 0 {
            a.extend(["--width".into(), self.width.to_string()]);
            a.extend(["--height".into(), self.height.to_string()]);
        }
        if self.fps > 0.0 {
            a.extend(["--framerate".into(), self.fps.to_string()]);
        }
        if !self.camera.is_empty() {
            a.extend(["--camera".into(), self.camera.clone()]);
        }
        a.extend(self.extra_args.iter().cloned());
        a.extend(["-o".into(), "-".into()]);
        a
    }
}

/// Whether an executable file `name` is in one of PATH's directories.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join(name))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

impl FrameSource for Libcamera {
    fn open(&mut self, _stop: &AtomicBool) -> Result<()> {
        self.running = None;
        let program = self.program()?;
        let mut cmd = Command::new(&program);
        cmd.args(self.args());
        let what = self.describe();
        self.running = Some(Running::spawn(
            cmd,
            &program,
            &what,
            true,
            false,
            |out, tx| {
                pump_jpegs(
                    || {
                        Ok(MjpegReader::new(
                            Box::new(out) as Box<dyn std::io::Read + Send>
                        ))
                    },
                    tx,
                )
            },
        )?);
        self.program = program;
        Ok(())
    }
    fn read(&mut self, wait: Duration) -> Result<Read> {
        let what = self.program.clone();
        let Some(run) = self.running.as_mut() else {
            bail!("{what} is not running");
        };
        match jpeg_read(run, wait, true, &what) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => {
                let Some(run) = self.running.take() else {
                    bail!("{what} is not running");
                };
                let (count, tail) = (run.count, run.stderr.clone());
                let status = run.finish();
                bail!(
                    "{what} ended ({}) after {count} frames{}",
                    status_text(status),
                    tail.suffix()
                )
            }
            Err(e) => {
                self.running = None;
                Err(e)
            }
        }
    }
    fn describe(&self) -> String {
        let cam = if self.camera.is_empty() {
            "0"
        } else {
            &self.camera
        };
        format!("libcamera camera {cam}")
    }
    fn live(&self) -> bool {
        true
    }
}

/// Whether `path` looks like a file the ffmpeg source should handle.
pub fn is_video_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("avi" | "mp4" | "mkv" | "mov" | "webm" | "h264" | "mjpeg")
    )
}
