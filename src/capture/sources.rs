//! The frame sources: V4L2 cameras (nokhwa), ffmpeg child processes (files,
//! RTSP/HTTP), image directories, MJPEG clips and a synthetic test pattern.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use anyhow::{bail, Context, Result};
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
        SourceKind::Ffmpeg => Box::new(Ffmpeg::new(
            &cfg.uri,
            cfg.width,
            cfg.height,
            cfg.fps,
            cfg.looping,
        )),
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
    fn open(&mut self) -> Result<()> {
        Ok(())
    }
    fn read(&mut self) -> Result<Read> {
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

/// Every `.jpg`/`.jpeg`/`.png` of a directory, in name order.
pub struct ImageDir {
    dir: PathBuf,
    looping: bool,
    files: Vec<PathBuf>,
    next: usize,
}

impl ImageDir {
    pub fn new(dir: PathBuf, looping: bool) -> Self {
        ImageDir {
            dir,
            looping,
            files: vec![],
            next: 0,
        }
    }
}

impl FrameSource for ImageDir {
    fn open(&mut self) -> Result<()> {
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
        self.files = files;
        self.next = 0;
        Ok(())
    }
    fn read(&mut self) -> Result<Read> {
        if self.next >= self.files.len() {
            if !self.looping || self.files.is_empty() {
                return Ok(Read::Eof);
            }
            self.next = 0;
        }
        let p = &self.files[self.next];
        self.next += 1;
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(Read::Frame(decode_image(&bytes, &p.display())?))
    }
    fn describe(&self) -> String {
        format!("images {}", self.dir.display())
    }
}

/// A file of concatenated JPEG frames (the bundled clip).
pub struct MjpegFile {
    path: PathBuf,
    looping: bool,
    data: Vec<u8>,
    frames: Vec<(usize, usize)>,
    next: usize,
}

impl MjpegFile {
    pub fn new(path: PathBuf, looping: bool) -> Self {
        MjpegFile {
            path,
            looping,
            data: vec![],
            frames: vec![],
            next: 0,
        }
    }
}

impl FrameSource for MjpegFile {
    fn open(&mut self) -> Result<()> {
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
        self.data = data;
        self.frames = frames;
        self.next = 0;
        Ok(())
    }
    fn read(&mut self) -> Result<Read> {
        if self.next >= self.frames.len() {
            if !self.looping || self.frames.is_empty() {
                return Ok(Read::Eof);
            }
            self.next = 0;
        }
        let (off, len) = self.frames[self.next];
        self.next += 1;
        let what = format!("frame {} of {}", self.next, self.path.display());
        Ok(Read::Frame(decode_image(
            &self.data[off..off + len],
            &what,
        )?))
    }
    fn describe(&self) -> String {
        format!("mjpeg {}", self.path.display())
    }
}

/// Video files and RTSP/HTTP streams decoded by an `ffmpeg` child process that
/// writes raw RGB frames to its stdout. A dead child is restarted by the
/// capture thread's reconnect loop.
pub struct Ffmpeg {
    uri: String,
    width: u32,
    height: u32,
    fps: f64,
    looping: bool,
    child: Option<(Child, ChildStdout)>,
    size: (u32, u32),
}

impl Ffmpeg {
    pub fn new(uri: &str, width: u32, height: u32, fps: f64, looping: bool) -> Self {
        Ffmpeg {
            uri: uri.to_string(),
            width,
            height,
            fps,
            looping,
            child: None,
            size: (0, 0),
        }
    }

    fn is_stream(&self) -> bool {
        [
            "rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://",
        ]
        .iter()
        .any(|p| self.uri.starts_with(p))
    }

    /// The stream's native size, from ffprobe.
    fn probe(&self) -> Result<(u32, u32)> {
        let out = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height",
                "-of",
                "csv=p=0:s=x",
            ])
            .arg(&self.uri)
            .stdin(Stdio::null())
            .output()
            .context("running ffprobe (install ffmpeg)")?;
        if !out.status.success() {
            bail!(
                "ffprobe {}: {}",
                self.uri,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let s = String::from_utf8_lossy(&out.stdout);
        let line = s.lines().next().unwrap_or("").trim();
        let (w, h) = line
            .split_once('x')
            .with_context(|| format!("ffprobe {}: no video size in '{line}'", self.uri))?;
        Ok((w.trim().parse()?, h.trim().parse()?))
    }

    fn kill(&mut self) {
        if let Some((mut c, _)) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        self.kill();
    }
}

impl FrameSource for Ffmpeg {
    fn open(&mut self) -> Result<()> {
        self.kill();
        let size = if self.width > 0 && self.height > 0 {
            (self.width, self.height)
        } else {
            self.probe()?
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
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("starting ffmpeg (install ffmpeg)")?;
        let out = child.stdout.take().context("ffmpeg stdout")?;
        self.child = Some((child, out));
        self.size = size;
        Ok(())
    }
    fn read(&mut self) -> Result<Read> {
        let (w, h) = self.size;
        let Some((_, out)) = self.child.as_mut() else {
            bail!("ffmpeg is not running");
        };
        let mut buf = vec![0u8; w as usize * h as usize * 3];
        let mut filled = 0;
        while filled < buf.len() {
            let n = out
                .read(&mut buf[filled..])
                .context("reading from ffmpeg")?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled < buf.len() {
            let status = self.child.as_mut().and_then(|(c, _)| c.wait().ok());
            self.child = None;
            if filled == 0 && !self.is_stream() && status.map(|s| s.success()).unwrap_or(false) {
                return Ok(Read::Eof);
            }
            bail!("ffmpeg {} ended ({:?})", self.uri, status);
        }
        Ok(Read::Frame(
            RgbImage::from_raw(w, h, buf).context("frame size")?,
        ))
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
