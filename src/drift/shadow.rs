//! The daemon's shadow: the float model on its own low-priority thread, fed
//! from the detection thread through a one-slot hand-off.
//!
//! Sampling happens on the detection thread ([`ShadowFeed::offer`]): every
//! `shadow.every_n`-th processed frame is a candidate; it is skipped (and
//! counted) when the shadow is still busy with an earlier frame or when the
//! CPU budget says to wait. Otherwise the int8 outputs (dequantized) and the
//! frame go to the shadow thread, which preprocesses the same frame as float,
//! runs the float model, compares, updates the window and alarm, publishes
//! `<base>/drift` and optionally stores the frame.
//!
//! CPU budget: after a comparison that took `t` seconds of wall time the next
//! one may start only `t * (100 / budget - 1)` seconds later, so the shadow
//! is busy at most `budget` percent of the time (of one core).
//!
//! Priority: the shadow thread lowers its own nice value (`shadow.nice`) by
//! running `renice` on its thread id (read from `/proc/thread-self`), which
//! needs no `unsafe` and no extra dependency; if that fails it logs a warning
//! and runs at normal priority (the budget still bounds it).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use image::RgbImage;

use super::compare::round;
use super::store::Store;
use super::window::{Alarm, Window};
use super::{
    decodes_itself, load_detector, output_indices, pair_decodes_itself, ranked_detections,
    raw_outputs, Comparator,
};
use crate::config::Config;
use crate::detect::Detector;
use crate::engine::InterpreterOptions;
use crate::publish::{DriftFigures, Publisher};

/// Counters shared by the detection thread and the shadow thread.
#[derive(Default)]
pub struct ShadowStats {
    /// Frames chosen by `every_n`.
    pub sampled: AtomicU64,
    /// Sampled frames handed to the shadow.
    pub submitted: AtomicU64,
    pub skipped_busy: AtomicU64,
    pub skipped_budget: AtomicU64,
    pub compared: AtomicU64,
    pub errors: AtomicU64,
    /// Total shadow wall time per comparison, microseconds.
    pub busy_us: AtomicU64,
}

struct State {
    busy: AtomicBool,
    epoch: Instant,
    /// Earliest start of the next comparison, microseconds after `epoch`.
    next_ok_us: AtomicU64,
    stats: ShadowStats,
    /// The window's figures after the latest comparison (None before the first).
    latest: Mutex<Option<DriftLatest>>,
}

/// The drift figures after the latest comparison, for `/metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct DriftLatest {
    /// Comparisons in the window.
    pub window_frames: usize,
    /// Pooled over the window: `(name, value)`, names as in `<base>/drift`'s `metrics`.
    pub window: Vec<(&'static str, f64)>,
    /// The EWMA of the per-frame figures, `(name, value)` (SQNR per output left out).
    pub ewma: Vec<(String, f64)>,
    pub alarm_active: bool,
    /// Times the alarm fired since start.
    pub alarm_fired: u64,
}

/// Counters and latest figures of the running shadow, shared with the HTTP endpoint.
#[derive(Clone)]
pub struct DriftMonitor {
    state: Arc<State>,
}

impl DriftMonitor {
    pub fn stats(&self) -> &ShadowStats {
        &self.state.stats
    }
    /// The figures after the latest comparison (None before the first).
    pub fn latest(&self) -> Option<DriftLatest> {
        self.state
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The figures of `pooled` that are numbers, with names.
fn window_figures(p: &super::window::Pooled) -> Vec<(&'static str, f64)> {
    let mut v = vec![
        ("precision", p.precision),
        ("recall", p.recall),
        ("f1", p.f1),
        ("map50", p.map50),
        ("map50_95", p.map50_95),
    ];
    let opt = [
        ("mean_iou", p.mean_iou),
        ("class_flip_rate", p.class_flip_rate),
        ("sqnr_db_min", p.sqnr_min()),
        ("cosine_min", p.cosine_min()),
    ];
    v.extend(opt.into_iter().filter_map(|(k, x)| Some((k, x?))));
    v.retain(|(_, x)| x.is_finite());
    v
}

/// What the shadow compares of the int8 model's run.
enum Quantized {
    /// Its raw box and class outputs (decoded alike for both models).
    Raw([Vec<f32>; 2]),
    /// Its detections down to the ranking threshold (a model ending in
    /// TFLite_Detection_PostProcess).
    Detections(Vec<crate::postprocess::Detection>),
}

/// One sampled frame for the shadow.
struct Job {
    seq: u64,
    wall: SystemTime,
    image: RgbImage,
    int8: Quantized,
    /// The int8 model that produced `int8` (it changes when calibration promotes one).
    int8_model: String,
}

/// The detection thread's end: decides which frames the shadow sees.
pub struct ShadowFeed {
    tx: Sender<Job>,
    every_n: u64,
    processed: u64,
    /// The int8 model's raw outputs; `None`: it decodes itself.
    idx: Option<[usize; 2]>,
    state: Arc<State>,
}

impl ShadowFeed {
    /// Offer the frame the int8 `det` has just processed.
    pub fn offer(&mut self, seq: u64, wall: SystemTime, image: &RgbImage, det: &Detector) {
        self.processed += 1;
        if !self.processed.is_multiple_of(self.every_n) {
            return;
        }
        let st = &self.state;
        st.stats.sampled.fetch_add(1, Ordering::Relaxed);
        if st.busy.load(Ordering::Acquire) {
            st.stats.skipped_busy.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now_us = st.epoch.elapsed().as_micros() as u64;
        if now_us < st.next_ok_us.load(Ordering::Acquire) {
            st.stats.skipped_budget.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let int8 = match self.idx {
            Some(idx) => {
                let mut raw = [Vec::new(), Vec::new()];
                raw_outputs(det, idx, &mut raw).map(|()| Quantized::Raw(raw))
            }
            None => ranked_detections(det).map(Quantized::Detections),
        };
        let int8 = match int8 {
            Ok(v) => v,
            Err(e) => {
                st.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("shadow: reading the int8 outputs: {e:#}");
                return;
            }
        };
        st.busy.store(true, Ordering::Release);
        let job = Job {
            seq,
            wall,
            image: image.clone(),
            int8,
            int8_model: det.name().to_string(),
        };
        match self.tx.try_send(job) {
            Ok(()) => {
                st.stats.submitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                st.busy.store(false, Ordering::Release);
                st.stats.skipped_busy.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &ShadowStats {
        &self.state.stats
    }

    /// A handle on the shadow's counters and latest figures (for `/metrics`).
    pub fn monitor(&self) -> DriftMonitor {
        DriftMonitor {
            state: self.state.clone(),
        }
    }

    /// Follow a new int8 detector (a promoted model): its output tensors may sit elsewhere.
    /// Its outputs were checked against the float model's when it was calibrated from it.
    pub fn retarget(&mut self, det: &Detector) -> Result<()> {
        if decodes_itself(det) != self.idx.is_none() {
            bail!(
                "shadow: {} is not the kind of model the shadow compares",
                det.name()
            );
        }
        if self.idx.is_some() {
            self.idx = Some(output_indices(det)?);
        }
        Ok(())
    }
}

/// Lower the calling thread's scheduling priority to `nice` (0..=19).
pub fn lower_thread_priority(nice: i32) -> Result<()> {
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    let tid = link
        .file_name()
        .and_then(|s| s.to_str())
        .context("no thread id in /proc/thread-self")?
        .to_string();
    let out = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p", &tid])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running renice")?;
    if !out.status.success() {
        bail!(
            "renice -n {nice} -p {tid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The nice value of the calling thread (from `/proc/thread-self/stat`).
pub fn thread_nice() -> Result<i32> {
    let s = std::fs::read_to_string("/proc/thread-self/stat")?;
    // Fields after the parenthesised command name; nice is field 19 overall.
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f.get(16).context("short stat line")?.parse()?)
}

/// Everything the shadow thread owns.
struct Worker {
    float: Detector,
    cmp: Comparator,
    window: Window,
    store: Option<Store>,
    out: Publisher,
    state: Arc<State>,
    budget: f64,
    float_name: String,
    /// The float model's raw outputs; `None`: both models decode themselves.
    idx: Option<[usize; 2]>,
    float_raw: [Vec<f32>; 2],
    scratch: Vec<crate::postprocess::Detection>,
}

/// Load the float model and start the shadow thread. `int8` is the daemon's
/// detector (for its output layout); `out` publishes `<base>/drift`. Returns the feed for the
/// detection thread.
pub fn start(
    cfg: &Config,
    int8: &Detector,
    out: Publisher,
) -> Result<(ShadowFeed, JoinHandle<()>)> {
    let sh = &cfg.shadow;
    let model: PathBuf = sh
        .model
        .clone()
        .context("shadow.model is required when shadow.enabled = true")?;
    let float = load_detector(
        &model,
        cfg.detector.desc.as_deref(),
        cfg.detector.labels.as_deref(),
        // The shadow's own engine: `shadow.threads` threads, the detector's kernel path.
        &InterpreterOptions::resolve(cfg.detector.kernels, sh.threads, &[])?,
    )
    .with_context(|| format!("shadow.model: loading {}", model.display()))?;
    let fin = float.interpreter().input_info(0)?;
    let iin = int8.interpreter().input_info(0)?;
    if fin.shape != iin.shape {
        bail!(
            "shadow.model: input shape {:?} differs from the int8 model's {:?}",
            fin.shape,
            iin.shape
        );
    }
    // Two models ending in TFLite_Detection_PostProcess: their detections are compared.
    let own = pair_decodes_itself(int8, &float).context("shadow.model")?;
    let (idx, int8_idx) = if own {
        (None, None)
    } else {
        let idx = output_indices(&float)?;
        let int8_idx = output_indices(int8)?;
        for k in 0..2 {
            let a = float.interpreter().output_info(idx[k])?.shape.clone();
            let b = int8.interpreter().output_info(int8_idx[k])?.shape.clone();
            if a != b {
                bail!("shadow.model: output shape {a:?} differs from the int8 model's {b:?}");
            }
        }
        (Some(idx), Some(int8_idx))
    };
    let metric = sh.alarm_metric;
    let alarm = Alarm::new(
        metric,
        sh.alarm_threshold,
        sh.alarm_hysteresis,
        sh.alarm_min_frames,
    );
    let store = match &sh.store_dir {
        Some(d) => Some(Store::new(
            d,
            sh.store_max_frames,
            sh.store_max_bytes,
            sh.store_min_disagreement,
        )?),
        None => None,
    };
    let state = Arc::new(State {
        busy: AtomicBool::new(false),
        epoch: Instant::now(),
        next_ok_us: AtomicU64::new(0),
        stats: ShadowStats::default(),
        latest: Mutex::new(None),
    });
    let cmp = Comparator::new(&float, sh.score_threshold)?;
    let worker = Worker {
        float_name: float.name().to_string(),
        float,
        idx,
        cmp,
        window: Window::new(sh.window, sh.ewma_alpha, alarm),
        store,
        out,
        state: state.clone(),
        budget: sh.cpu_budget,
        float_raw: [Vec::new(), Vec::new()],
        scratch: Vec::new(),
    };
    let (tx, rx) = bounded::<Job>(1);
    let nice = sh.nice;
    let handle = std::thread::Builder::new()
        .name("edgecam-shadow".into())
        .spawn(move || {
            if nice > 0 {
                match lower_thread_priority(nice) {
                    Ok(()) => tracing::info!(nice, "shadow thread priority lowered"),
                    Err(e) => tracing::warn!("shadow: cannot lower the thread priority: {e:#}"),
                }
            }
            worker.run(rx)
        })?;
    Ok((
        ShadowFeed {
            tx,
            every_n: sh.every_n.max(1) as u64,
            processed: 0,
            idx: int8_idx,
            state,
        },
        handle,
    ))
}

impl Worker {
    fn run(mut self, rx: Receiver<Job>) {
        loop {
            let job = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(j) => j,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let t0 = Instant::now();
            if let Err(e) = self.process(&job, t0) {
                self.state.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(seq = job.seq, "shadow comparison failed: {e:#}");
            }
            let took = t0.elapsed();
            let st = &self.state;
            st.stats
                .busy_us
                .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
            if self.budget > 0.0 {
                let wait = took.as_secs_f64() * (100.0 / self.budget - 1.0);
                let next = st.epoch.elapsed().as_secs_f64() + wait;
                st.next_ok_us.store((next * 1e6) as u64, Ordering::Release);
            }
            st.busy.store(false, Ordering::Release);
        }
    }

    fn process(&mut self, job: &Job, t0: Instant) -> Result<()> {
        self.float.detect_into(&job.image, &mut self.scratch)?;
        let float_ms = self.float.inference_time().as_secs_f64() * 1e3;
        let c = match (&job.int8, self.idx) {
            (Quantized::Raw(int8), Some(idx)) => {
                raw_outputs(&self.float, idx, &mut self.float_raw)?;
                self.cmp.compare(job.seq, int8, &self.float_raw)?
            }
            (Quantized::Detections(int8), None) => {
                self.cmp
                    .compare_detections(job.seq, int8.clone(), &self.float)?
            }
            _ => bail!("the int8 and float models are not of one kind"),
        };
        let frame = c.to_json();
        if let Some(s) = &self.store {
            if let Err(e) = s.offer(&job.image, &c, &self.float.transform(), job.wall) {
                tracing::warn!("shadow: storing frame {}: {e:#}", job.seq);
            }
        }
        let (pooled, change) = self.window.push(c);
        match change {
            Some(true) => tracing::warn!(
                metric = self.window.alarm.metric.name(),
                value = self.window.alarm.value,
                "quantization drift alarm"
            ),
            Some(false) => tracing::info!("quantization drift alarm cleared"),
            None => {}
        }
        let latest = DriftLatest {
            window_frames: self.window.items.len(),
            window: window_figures(&pooled),
            ewma: self
                .window
                .ewma
                .values
                .iter()
                .filter(|(k, v)| !k.contains('/') && v.is_finite())
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            alarm_active: self.window.alarm.active,
            alarm_fired: self.window.alarm.fired,
        };
        *self.state.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(latest);
        let st = &self.state.stats;
        let compared = st.compared.fetch_add(1, Ordering::Relaxed) + 1;
        let uptime = self.state.epoch.elapsed().as_secs_f64().max(1e-9);
        let busy_s = (st.busy_us.load(Ordering::Relaxed) as f64 / 1e6) + t0.elapsed().as_secs_f64();
        let skipped_busy = st.skipped_busy.load(Ordering::Relaxed);
        let skipped_budget = st.skipped_budget.load(Ordering::Relaxed);
        self.out.drift(&DriftFigures {
            wall: job.wall,
            seq: job.seq,
            int8_model: &job.int8_model,
            float_model: &self.float_name,
            score_threshold: self.cmp.score_threshold,
            window_size: self.window.size,
            window_frames: self.window.items.len(),
            sampled: st.sampled.load(Ordering::Relaxed),
            compared,
            skipped_busy,
            skipped_budget,
            errors: st.errors.load(Ordering::Relaxed),
            frame,
            metrics: pooled.to_json(),
            ewma: self.window.ewma.to_json(),
            alarm: self.window.alarm.to_json(),
            inference_ms: round(float_ms),
            busy_percent: round(100.0 * busy_s / uptime),
            cpu_budget_percent: self.budget,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_thread_can_lower_its_priority() {
        let h = std::thread::spawn(|| {
            let before = thread_nice().unwrap();
            lower_thread_priority(before.max(7)).unwrap();
            (before, thread_nice().unwrap())
        });
        let (before, after) = h.join().unwrap();
        assert_eq!(after, before.max(7));
        // Only that thread changed.
        assert_eq!(thread_nice().unwrap(), before);
    }
}
