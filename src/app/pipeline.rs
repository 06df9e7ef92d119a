//! The stage threads: capture → detect → publish, joined by bounded crossbeam
//! channels where the latest frame wins.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use image::RgbImage;

use super::latest::LatestSender;
use super::stats::{cpu_temperature, rss_bytes, thread_cpu_seconds, Stats};
use crate::backoff::Backoff;
use crate::capture::{Frame, FrameSource, Read, READ_WAIT};
use crate::config::Config;
use crate::postprocess::labels::slug;
use crate::postprocess::tracker::{Object, Tracker};
use crate::publish::{FrameReport, Publisher, SnapshotFigures, StatsFigures, MAX_SNAPSHOT_BYTES};
use crate::snapshot::Snapshots;
use crate::telemetry::worth_logging;

/// Shared run state of the stage threads.
pub struct Shared {
    pub stop: AtomicBool,
    /// Set by the capture thread when a finite source has ended (or `pipeline.max_frames`
    /// was reached).
    pub source_done: AtomicBool,
    /// Set with `source_done` when the daemon should drain the pipeline and exit
    /// (`pipeline.exit_on_eof`, `pipeline.max_frames`); without it the daemon stays up idle.
    pub finish: AtomicBool,
    pub stats: Stats,
    /// Detection switched on (`<base>/detect/set`).
    pub detect_enabled: AtomicBool,
    /// The default score threshold's bits (`<base>/threshold/set`; NaN: the configured one).
    threshold: std::sync::atomic::AtomicU32,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            source_done: AtomicBool::new(false),
            finish: AtomicBool::new(false),
            stats: Stats::default(),
            detect_enabled: AtomicBool::new(true),
            threshold: std::sync::atomic::AtomicU32::new(f32::NAN.to_bits()),
        })
    }
    /// The default score threshold set over MQTT (NaN: none, the configured one holds).
    pub fn threshold(&self) -> f32 {
        f32::from_bits(self.threshold.load(Ordering::Relaxed))
    }
    pub fn set_threshold(&self, t: f32) {
        self.threshold.store(t.to_bits(), Ordering::Relaxed);
    }
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    pub fn finishing(&self) -> bool {
        self.finish.load(Ordering::SeqCst)
    }
    pub fn source_state(&self) -> SourceState {
        SourceState::from_u8(self.stats.source_state.load(Ordering::Relaxed))
    }
    fn set_source_state(&self, s: SourceState) {
        self.stats.source_state.store(s as u8, Ordering::Relaxed);
    }
    /// Whether the pipeline has nothing to do by design (the watchdog is fed meanwhile):
    /// a file source that has ended.
    pub fn legitimately_idle(&self) -> bool {
        self.source_done.load(Ordering::SeqCst)
    }
}

/// Where the source stands, for `stats` and the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SourceState {
    Opening = 0,
    Streaming = 1,
    /// Opening failed or the source failed: waiting to reopen.
    Reconnecting = 2,
    /// No frame within `source.stall_timeout_s`: waiting to reopen.
    Stalled = 3,
    /// A file source ended.
    Ended = 4,
    /// A file source ended short of its end.
    Truncated = 5,
}

impl SourceState {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => SourceState::Streaming,
            2 => SourceState::Reconnecting,
            3 => SourceState::Stalled,
            4 => SourceState::Ended,
            5 => SourceState::Truncated,
            _ => SourceState::Opening,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Opening => "opening",
            SourceState::Streaming => "streaming",
            SourceState::Reconnecting => "reconnecting",
            SourceState::Stalled => "stalled",
            SourceState::Ended => "ended",
            SourceState::Truncated => "truncated",
        }
    }
}

/// Sleep up to `d`, waking early when the pipeline stops.
fn nap(shared: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !shared.stopping() {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The capture thread: opens the source (again, with back-off and jitter, after errors and
/// stalls), paces file sources at `source.fps`, and hands frames on. A source silent for
/// `source.stall_timeout_s` is reopened (a reopened one has [`FIRST_FRAME_GRACE`] more for
/// its first frame); the back-off starts again from its floor only once
/// a reopened source has delivered a frame. At the end of a file it stays (idle, holding the
/// pipeline open) unless the daemon should finish.
pub fn capture_loop(
    cfg: &Config,
    mut source: Box<dyn FrameSource>,
    out: LatestSender<Frame>,
    shared: &Shared,
) {
    let s = &cfg.source;
    let st = &shared.stats;
    let period = if s.fps > 0.0 {
        Some(Duration::from_secs_f64(1.0 / s.fps))
    } else {
        None
    };
    let stall = Duration::from_secs_f64(s.stall_timeout_s);
    let mut backoff = Backoff::from_secs(s.backoff_min_s, s.backoff_max_s);
    let mut seq = 0u64;
    let mut opened = false;
    let mut ever_opened = false;
    // A frame arrived since the source was (re)opened.
    let mut delivering = false;
    // Since when a read has found nothing (None while frames flow).
    let mut silent_since: Option<Instant> = None;
    let mut next_due = Instant::now();
    // Give up on the source: note it, wait (waking at stop), reopen.
    let retry = |backoff: &mut Backoff,
                 state: SourceState,
                 what: &str,
                 e: &dyn std::fmt::Display| {
        shared.set_source_state(state);
        let n = st.source_errors.fetch_add(1, Ordering::Relaxed) + 1;
        let wait = backoff.next_wait();
        if worth_logging(n) {
            tracing::warn!(source = %source_name(cfg), "{what}: {e}; retrying in {:.1} s", wait.as_secs_f64());
        }
        nap(shared, wait);
    };
    while !shared.stopping() {
        if !opened {
            shared.set_source_state(SourceState::Opening);
            if ever_opened {
                st.reopens.fetch_add(1, Ordering::Relaxed);
            }
            match source.open(&shared.stop) {
                Ok(()) => {
                    tracing::info!(source = %source.describe(), "source opened");
                    opened = true;
                    ever_opened = true;
                    delivering = false;
                    silent_since = None;
                }
                Err(e) => {
                    if shared.stopping() {
                        break;
                    }
                    retry(
                        &mut backoff,
                        SourceState::Reconnecting,
                        "cannot open the source",
                        &format!("{e:#}"),
                    );
                    continue;
                }
            }
        }
        if let (Some(p), false) = (period, source.live()) {
            let now = Instant::now();
            if next_due > now {
                nap(shared, next_due - now);
            }
            next_due = next_due.max(now - p) + p;
        }
        match source.read(READ_WAIT) {
            Ok(Read::Frame(image)) => {
                if !delivering {
                    delivering = true;
                    backoff.reset();
                    shared.set_source_state(SourceState::Streaming);
                }
                silent_since = None;
                seq += 1;
                st.captured.fetch_add(1, Ordering::Relaxed);
                let frame = Frame {
                    seq,
                    ts: Instant::now(),
                    wall: SystemTime::now(),
                    image,
                };
                out.send(frame);
                st.capture_queue.store(out.len() as u64, Ordering::Relaxed);
                if cfg.pipeline.max_frames > 0 && seq >= cfg.pipeline.max_frames {
                    tracing::info!(frames = seq, "pipeline.max_frames reached");
                    shared.source_done.store(true, Ordering::SeqCst);
                    shared.finish.store(true, Ordering::SeqCst);
                    break;
                }
            }
            Ok(Read::Pending) => {
                let since = *silent_since.get_or_insert_with(Instant::now);
                // A freshly opened source may take longer for its first frame (a stream
                // decoder probes its input first); after that, silence is a stall.
                let limit = if delivering {
                    stall
                } else {
                    stall + FIRST_FRAME_GRACE
                };
                if since.elapsed() >= limit {
                    st.stalls.fetch_add(1, Ordering::Relaxed);
                    opened = false;
                    retry(
                        &mut backoff,
                        SourceState::Stalled,
                        "stalled",
                        &format!("no frame for {:.1} s", since.elapsed().as_secs_f64()),
                    );
                }
            }
            Ok(Read::Skipped(e)) => {
                // The source is alive; one of its items is not usable.
                silent_since = None;
                let n = st.skipped_items.fetch_add(1, Ordering::Relaxed) + 1;
                st.source_errors.fetch_add(1, Ordering::Relaxed);
                if worth_logging(n) {
                    tracing::warn!(source = %source.describe(), skipped = n, "skipping an unusable frame: {e:#}");
                }
            }
            Ok(end @ (Read::Eof | Read::Truncated(_))) => {
                if let Read::Truncated(why) = &end {
                    st.source_errors.fetch_add(1, Ordering::Relaxed);
                    shared.set_source_state(SourceState::Truncated);
                    tracing::warn!(source = %source.describe(), frames = seq, "source ended early: {why}");
                } else {
                    shared.set_source_state(SourceState::Ended);
                    tracing::info!(source = %source.describe(), frames = seq, "source ended");
                }
                shared.source_done.store(true, Ordering::SeqCst);
                if cfg.pipeline.exit_on_eof {
                    shared.finish.store(true, Ordering::SeqCst);
                } else {
                    // Stay up, idle, holding the pipeline open until told to stop.
                    while !shared.stopping() {
                        nap(shared, Duration::from_millis(200));
                    }
                }
                break;
            }
            Err(e) => {
                opened = false;
                retry(
                    &mut backoff,
                    SourceState::Reconnecting,
                    "source failed",
                    &format!("{e:#}"),
                );
            }
        }
        st.cpu_capture.set(thread_cpu_seconds());
    }
    st.cpu_capture.set(thread_cpu_seconds());
    // Dropping the source here ends its child processes and threads.
    drop(source);
}

/// How much longer than `source.stall_timeout_s` a (re)opened source may take for its first
/// frame: ffmpeg probes a stream (up to 5 s of it by default) before it decodes.
pub const FIRST_FRAME_GRACE: Duration = Duration::from_secs(10);

/// The configured source, for logs.
fn source_name(cfg: &Config) -> String {
    format!("{:?} {}", cfg.source.kind, cfg.source.uri).to_lowercase()
}

/// A processed frame on its way to the publisher.
pub struct Processed {
    pub seq: u64,
    pub ts: Instant,
    pub wall: SystemTime,
    pub width: u32,
    pub height: u32,
    pub inference_ms: f64,
    /// The model that processed the frame (it changes when calibration promotes one).
    pub model: Arc<str>,
    pub objects: Vec<Object>,
    /// The frame itself, with `snapshots.enabled` or `http.enabled` only (moved, not copied).
    pub image: Option<Arc<RgbImage>>,
}

/// Filters of the configuration applied to decoded detections.
pub struct Filter {
    pub default_threshold: f32,
    pub thresholds: BTreeMap<String, f32>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub min_area: f32,
}

impl Filter {
    pub fn from_config(cfg: &Config) -> Self {
        let d = &cfg.detector;
        Filter {
            default_threshold: d.score_threshold,
            thresholds: d.thresholds.iter().map(|(k, v)| (slug(k), *v)).collect(),
            allow: d.labels_allow.iter().map(|l| slug(l)).collect(),
            deny: d.labels_deny.iter().map(|l| slug(l)).collect(),
            min_area: d.min_box_area,
        }
    }
    /// The lowest threshold of any label: what the decoder must keep.
    pub fn min_threshold(&self) -> f32 {
        self.thresholds
            .values()
            .copied()
            .fold(self.default_threshold, f32::min)
    }
    pub fn keep(&self, o: &Object, frame_w: u32, frame_h: u32) -> bool {
        if !self.allow.is_empty() && !self.allow.contains(&o.label) {
            return false;
        }
        if self.deny.contains(&o.label) {
            return false;
        }
        let t = self
            .thresholds
            .get(&o.label)
            .copied()
            .unwrap_or(self.default_threshold);
        if o.score < t {
            return false;
        }
        let area = (o.bbox[2] - o.bbox[0]).max(0.0) * (o.bbox[3] - o.bbox[1]).max(0.0);
        let frame = (frame_w as f32 * frame_h as f32).max(1.0);
        area / frame >= self.min_area
    }
}

/// Inference behind the detect stage (the int8 detector in the daemon; tests may substitute).
pub trait Infer: Send {
    /// Detect objects in `frame`, boxes in its pixels; returns inference milliseconds.
    fn infer(&mut self, frame: &Frame, out: &mut Vec<Object>) -> Result<f64>;
    /// The lowest score the decoder keeps.
    fn set_score_threshold(&mut self, t: f32);
    /// The model's name, for `detections`.
    fn model(&self) -> Arc<str>;
}

/// The detection thread.
pub fn detect_loop(
    cfg: &Config,
    infer: &mut dyn Infer,
    input: Receiver<Frame>,
    out: LatestSender<Processed>,
    shared: &Shared,
) {
    let mut filter = Filter::from_config(cfg);
    // The threshold applied last (NaN: the configured one).
    let mut applied = f32::NAN;
    let min_gap = if cfg.detector.max_fps > 0.0 {
        Some(Duration::from_secs_f64(1.0 / cfg.detector.max_fps))
    } else {
        None
    };
    let mut last_run: Option<Instant> = None;
    let mut objects = Vec::new();
    loop {
        let frame = match input.recv_timeout(Duration::from_millis(100)) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => {
                if shared.stopping() || (shared.finishing() && input.is_empty()) {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // Real progress: a frame reached detection (the watchdog's signal).
        shared.stats.note_progress();
        if !shared.detect_enabled.load(Ordering::Relaxed) {
            shared
                .stats
                .skipped_disabled
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let t = shared.threshold();
        if !t.is_nan() && t.to_bits() != applied.to_bits() {
            filter.default_threshold = t;
            infer.set_score_threshold(filter.min_threshold());
            applied = t;
        }
        if let (Some(gap), Some(last)) = (min_gap, last_run) {
            if frame.ts.duration_since(last) < gap {
                shared.stats.skipped_rate.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        }
        last_run = Some(frame.ts);
        objects.clear();
        match infer.infer(&frame, &mut objects) {
            Ok(ms) => {
                shared.stats.inference_ms.push(ms);
                shared.stats.inference_hist.observe_ms(ms);
                shared.stats.processed.fetch_add(1, Ordering::Relaxed);
                let (w, h) = frame.image.dimensions();
                let kept: Vec<Object> =
                    objects.drain(..).filter(|o| filter.keep(o, w, h)).collect();
                // Moved, not copied: snapshots and the HTTP endpoint keep an `Arc` of it.
                let image =
                    (cfg.snapshots.enabled || cfg.http.enabled).then(|| Arc::new(frame.image));
                out.send(Processed {
                    seq: frame.seq,
                    ts: frame.ts,
                    wall: frame.wall,
                    width: w,
                    height: h,
                    inference_ms: ms,
                    model: infer.model(),
                    objects: kept,
                    image,
                });
                shared
                    .stats
                    .result_queue
                    .store(out.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                shared.stats.detect_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(seq = frame.seq, "detection failed: {e:#}");
            }
        }
        shared.stats.cpu_detect.set(thread_cpu_seconds());
    }
    shared.stats.cpu_detect.set(thread_cpu_seconds());
}

/// What the publish stage needs beside its [`Publisher`].
pub struct PublishCtx {
    /// The kernel path, for `stats`.
    pub kernels: String,
    pub stats_interval: Duration,
    /// Where the latest frame and its objects go for the HTTP endpoint (`http.enabled`).
    pub latest: Option<crate::http::LatestSlot>,
}

/// The pipeline's figures for `stats`: frame rates over the last `dt` seconds (since the
/// counts `last_captured` and `last_processed`).
fn stats_figures(
    shared: &Shared,
    kernels: &str,
    dt: f64,
    last_captured: u64,
    last_processed: u64,
    snapshots: Option<&Snapshots>,
) -> StatsFigures {
    let st = &shared.stats;
    let cap = st.captured.load(Ordering::Relaxed);
    let pro = st.processed.load(Ordering::Relaxed);
    StatsFigures {
        capture_fps: (cap - last_captured) as f64 / dt,
        processed_fps: (pro - last_processed) as f64 / dt,
        captured: cap,
        processed: pro,
        dropped_capture: st.dropped_capture.load(Ordering::Relaxed),
        dropped_rate_cap: st.skipped_rate.load(Ordering::Relaxed),
        dropped_results: st.dropped_results.load(Ordering::Relaxed),
        source_errors: st.source_errors.load(Ordering::Relaxed),
        detect_errors: st.detect_errors.load(Ordering::Relaxed),
        source_state: shared.source_state().as_str(),
        stalls: st.stalls.load(Ordering::Relaxed),
        reopens: st.reopens.load(Ordering::Relaxed),
        skipped: st.skipped_items.load(Ordering::Relaxed),
        inference_ms: st.inference_ms.percentiles().unwrap_or((0.0, 0.0)),
        latency_ms: st.latency_ms.percentiles().unwrap_or((0.0, 0.0)),
        capture_queue: st.capture_queue.load(Ordering::Relaxed),
        result_queue: st.result_queue.load(Ordering::Relaxed),
        cpu_capture: st.cpu_capture.get(),
        cpu_detect: st.cpu_detect.get(),
        cpu_publish: st.cpu_publish.get(),
        rss_bytes: rss_bytes(),
        kernels: kernels.to_string(),
        cpu_temp_c: cpu_temperature(),
        snapshots: snapshots.map(|s| {
            let c = s.counters();
            SnapshotFigures {
                published: c.published,
                shrunk: c.shrunk,
                failed: c.failed,
            }
        }),
        uptime_s: st.started.elapsed().as_secs_f64(),
    }
}

/// The publish thread: tracking, counts, events, snapshots, stats → the [`Publisher`].
/// Snapshots of a frame are published before its events (a subscriber that fetches the
/// retained snapshot on `new` finds that object's).
pub fn publish_loop(
    cfg: &Config,
    ctx: &PublishCtx,
    input: Receiver<Processed>,
    publisher: &Publisher,
    shared: &Shared,
) {
    let mut tracker = Tracker::new(cfg.tracker);
    let mut snapshots = cfg
        .snapshots
        .enabled
        .then(|| Snapshots::new(&cfg.snapshots, MAX_SNAPSHOT_BYTES));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_stats = Instant::now();
    let mut last_captured = 0u64;
    let mut last_processed = 0u64;
    let mut announced_end = false;
    let mut detecting = true;
    loop {
        // Detection switched off: every live object leaves, every count goes to 0.
        let on = shared.detect_enabled.load(Ordering::Relaxed);
        if detecting && !on {
            for e in tracker.finish() {
                if let Some(shot) = snapshots.as_mut().and_then(|s| s.end(e.track)) {
                    publisher.snapshot(&shot.label, &shot.jpeg);
                }
                publisher.event(&e, Some(SystemTime::now()));
            }
            let zeros: BTreeMap<String, u64> = counts.keys().map(|k| (k.clone(), 0)).collect();
            publisher.counts_changed(&counts, &zeros);
            counts = zeros;
        }
        detecting = on;
        // A file source that ended leaves the daemon up but idle: say so to subscribers
        // (Home Assistant marks the entities unavailable) instead of staying "online".
        if !announced_end && shared.legitimately_idle() && !shared.finishing() {
            announced_end = true;
            tracing::info!(
                state = shared.source_state().as_str(),
                "the source has ended: availability offline; the daemon stays up until stopped \
                 (pipeline.exit_on_eof = true ends it instead)"
            );
            publisher.availability_offline_at_end();
        }
        let r = input.recv_timeout(Duration::from_millis(100));
        match r {
            Ok(p) => {
                publisher.detections(&FrameReport {
                    seq: p.seq,
                    wall: p.wall,
                    width: p.width,
                    height: p.height,
                    model: &p.model,
                    inference_ms: p.inference_ms,
                    objects: &p.objects,
                });
                if let (Some(slot), Some(image)) = (&ctx.latest, &p.image) {
                    slot.offer(p.seq, p.wall, image.clone(), &p.objects);
                }
                let at = p
                    .wall
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let events = tracker.update(p.seq, at, &p.objects);
                // Counts of the objects past the tracker's false-positive gate, on change
                // (including back to zero).
                let mut now: BTreeMap<String, u64> =
                    counts.keys().map(|k| (k.clone(), 0)).collect();
                for label in tracker.reported_labels(&p.objects) {
                    *now.entry(label.to_string()).or_default() += 1;
                }
                publisher.counts_changed(&counts, &now);
                counts = now;
                if let (Some(s), Some(image)) = (snapshots.as_mut(), &p.image) {
                    let shots = s.frame(p.ts, image, &p.objects, tracker.assigned(), &events);
                    for shot in shots {
                        publisher.snapshot(&shot.label, &shot.jpeg);
                    }
                }
                for e in &events {
                    publisher.event(e, Some(p.wall));
                }
                shared
                    .stats
                    .latency_ms
                    .push(p.ts.elapsed().as_secs_f64() * 1000.0);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        shared.stats.cpu_publish.set(thread_cpu_seconds());
        if last_stats.elapsed() >= ctx.stats_interval {
            let dt = last_stats.elapsed().as_secs_f64();
            last_stats = Instant::now();
            let figures = stats_figures(
                shared,
                &ctx.kernels,
                dt,
                last_captured,
                last_processed,
                snapshots.as_ref(),
            );
            last_captured = figures.captured;
            last_processed = figures.processed;
            publisher.stats(&figures);
        }
    }
    // Shutdown: the final figures (every frame of a finished source accounted for), then end
    // live tracks so subscribers see every object leave (with its best snapshot), and every
    // count is 0.
    let dt = last_stats.elapsed().as_secs_f64().max(1e-3);
    publisher.stats(&stats_figures(
        shared,
        &ctx.kernels,
        dt,
        last_captured,
        last_processed,
        snapshots.as_ref(),
    ));
    for e in tracker.finish() {
        if let Some(shot) = snapshots.as_mut().and_then(|s| s.end(e.track)) {
            publisher.snapshot(&shot.label, &shot.jpeg);
        }
        publisher.event(&e, None);
    }
    let zeros: BTreeMap<String, u64> = counts.keys().map(|k| (k.clone(), 0)).collect();
    publisher.counts_changed(&counts, &zeros);
}
