//! V4L2/USB cameras through nokhwa: device by index or path, resolution, fps,
//! MJPEG or YUYV negotiation.
//!
//! nokhwa's camera handle is not `Send`, so each opened camera lives on its
//! own thread that pushes decoded frames into a small channel; `read` waits on
//! that channel for at most the capture thread's wait. A camera that disappears shows up as
//! an error and one that stalls as silence; the capture thread reopens either with back-off
//! (which retires the old camera thread).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};
use image::RgbImage;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::Camera;

use super::{FrameSource, Read};
use crate::config::SourceConfig;

#[derive(Clone)]
struct Params {
    index: u32,
    width: u32,
    height: u32,
    fps: u32,
    format: FrameFormat,
    uri: String,
}

pub struct V4l2 {
    p: Params,
    stall: Duration,
    frames: Option<Receiver<Result<RgbImage>>>,
    stop: Arc<AtomicBool>,
}

impl V4l2 {
    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        let uri = if cfg.uri.is_empty() {
            "0".to_string()
        } else {
            cfg.uri.clone()
        };
        let index = match uri.parse::<u32>() {
            Ok(i) => i,
            // /dev/videoN → N (nokhwa's V4L2 backend opens devices by number).
            Err(_) => uri
                .strip_prefix("/dev/video")
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| {
                    anyhow!("source.uri: expected a camera index or /dev/videoN, got '{uri}'")
                })?,
        };
        Ok(V4l2 {
            p: Params {
                index,
                width: if cfg.width > 0 { cfg.width } else { 640 },
                height: if cfg.height > 0 { cfg.height } else { 480 },
                fps: if cfg.fps > 0.0 {
                    cfg.fps.round().max(1.0) as u32
                } else {
                    30
                },
                format: if cfg.format == crate::config::PixelFormat::Yuyv {
                    FrameFormat::YUYV
                } else {
                    FrameFormat::MJPEG
                },
                uri,
            },
            stall: Duration::from_secs_f64(cfg.stall_timeout_s),
            frames: None,
            stop: Arc::new(AtomicBool::new(false)),
        })
    }

    fn retire(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.frames = None;
    }
}

impl Drop for V4l2 {
    fn drop(&mut self) {
        self.retire();
    }
}

/// The camera thread: open, stream, push frames until told to stop or the camera fails.
fn camera_thread(
    p: Params,
    tx: crossbeam_channel::Sender<Result<RgbImage>>,
    ready: crossbeam_channel::Sender<Result<()>>,
    stop: Arc<AtomicBool>,
) {
    let want = CameraFormat::new(Resolution::new(p.width, p.height), p.format, p.fps);
    let req = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(want));
    let mut cam = match Camera::new(CameraIndex::Index(p.index), req) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(anyhow!("opening camera {}: {e}", p.uri)));
            return;
        }
    };
    if let Err(e) = cam.open_stream() {
        let _ = ready.send(Err(anyhow!("starting camera {}: {e}", p.uri)));
        return;
    }
    tracing::info!(camera = %p.uri, format = %cam.camera_format(), "camera streaming");
    let _ = ready.send(Ok(()));
    while !stop.load(Ordering::SeqCst) {
        let r = cam
            .frame()
            .map_err(|e| anyhow!("camera {}: {e}", p.uri))
            .and_then(|buf| {
                let img = buf
                    .decode_image::<RgbFormat>()
                    .map_err(|e| anyhow!("camera {}: decoding frame: {e}", p.uri))?;
                let (w, h) = (img.width(), img.height());
                RgbImage::from_raw(w, h, img.into_raw()).ok_or_else(|| anyhow!("camera frame size"))
            });
        let failed = r.is_err();
        // Latest frame wins here too: a full channel means the reader is busy.
        if tx.try_send(r).is_err() && tx.is_empty() {
            break;
        }
        if failed {
            break;
        }
    }
    let _ = cam.stop_stream();
}

impl FrameSource for V4l2 {
    fn open(&mut self, stop_all: &AtomicBool) -> Result<()> {
        self.retire();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = bounded(2);
        let (rtx, rrx) = bounded(1);
        let (p, s) = (self.p.clone(), stop.clone());
        std::thread::Builder::new()
            .name("edgecam-camera".into())
            .spawn(move || camera_thread(p, tx, rtx, s))?;
        let limit = std::time::Instant::now() + self.stall.max(Duration::from_secs(5));
        loop {
            match rrx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(())) => break,
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout)
                    if !stop_all.load(Ordering::SeqCst) && std::time::Instant::now() < limit => {}
                Err(_) => {
                    stop.store(true, Ordering::SeqCst);
                    bail!("camera {}: no answer while opening", self.p.uri);
                }
            }
        }
        self.stop = stop;
        self.frames = Some(rx);
        Ok(())
    }

    fn read(&mut self, wait: Duration) -> Result<Read> {
        let rx = self
            .frames
            .as_ref()
            .ok_or_else(|| anyhow!("camera is not open"))?;
        match rx.recv_timeout(wait) {
            Ok(Ok(img)) => Ok(Read::Frame(img)),
            Ok(Err(e)) => {
                self.retire();
                Err(e)
            }
            // The capture thread counts the silence and reopens a stalled camera.
            Err(RecvTimeoutError::Timeout) => Ok(Read::Pending),
            Err(RecvTimeoutError::Disconnected) => {
                self.retire();
                bail!("camera {}: stream ended", self.p.uri)
            }
        }
    }

    fn describe(&self) -> String {
        format!("v4l2 {}", self.p.uri)
    }

    fn live(&self) -> bool {
        true
    }
}
