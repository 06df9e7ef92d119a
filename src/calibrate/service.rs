//! On-device calibration in the daemon (`[calibration]`).
//!
//! A thread of its own, at low priority and within a CPU budget:
//!
//! 1. **Collect.** The detection thread offers a frame every `calibration.interval_s`
//!    ([`CalibrationFeed::offer`], a clone into a one-slot channel, only while frames are
//!    wanted). Frames too close to the last kept one are skipped; the rest are written as
//!    JPEG under `<dir>/frames`, bounded by count and bytes (the oldest go first). The count
//!    survives a restart.
//! 2. **Calibrate.** Once `frames` + one in four more are collected (or on `start`), the
//!    float model (`shadow.model`) is re-quantized from them by [`super::run`]: every range
//!    method is scored on the held-out frames (one in five), the best is written as a
//!    candidate under `<dir>/candidates`.
//! 3. **Evaluate (A/B).** On the same held-out frames, never used for calibration, the
//!    running model and the candidate are both compared with the float model: agreement F1
//!    and pseudo-mAP@0.5. The gain is the difference of their means.
//! 4. **Promote.** A gain of at least `calibration.margin` promotes the candidate
//!    (`promote = "auto"`) or leaves it for `promote` on the command topic (`manual`).
//!    The model moves to `<dir>/models`, is loaded here, and goes to the detection thread,
//!    which takes it between two frames ([`Swap`]). The model it replaces is kept for
//!    `rollback`. `<dir>/history.json` records every promotion and rollback; the daemon
//!    starts on the promoted model ([`startup_model`]).
//!
//! State goes to `<base>/calibration` (retained); `<base>/calibration/set` takes `start`,
//! `promote` and `rollback` and nothing else. Commands that arrive while a calibration runs
//! wait for its end.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{frames, CalibrateOptions, Step};
use crate::config::{CalibrationConfig, Config, Promote};
use crate::detect::{Detector, DetectorConfig};
use crate::drift::compare::round;
use crate::drift::window::Pooled;
use crate::engine::quantizer::Method;
use crate::publish::mqtt::Incoming;
use crate::publish::time::rfc3339;
use crate::publish::Publisher;

/// `start` calibrates with what has been collected when at least this many frames are there.
pub const MIN_FRAMES: usize = 8;
/// Entries kept in `history.json`.
const HISTORY_MAX: usize = 200;
/// How often progress is published while a calibration runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A command of `<base>/calibration/set`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Start,
    Promote,
    Rollback,
}

impl Command {
    /// Exactly `start`, `promote` or `rollback` (surrounding white space allowed); anything
    /// else is no command.
    pub fn parse(payload: &[u8]) -> Option<Command> {
        match std::str::from_utf8(payload).ok()?.trim() {
            "start" => Some(Command::Start),
            "promote" => Some(Command::Promote),
            "rollback" => Some(Command::Rollback),
            _ => None,
        }
    }
}

/// A model for the detection thread to take between two frames.
pub struct Swap {
    pub detector: Detector,
    pub path: PathBuf,
}

/// The detection thread's end of the collector.
pub struct CalibrationFeed {
    tx: Sender<RgbImage>,
    wanted: Arc<AtomicBool>,
    interval: Duration,
    last: Option<Instant>,
}

impl CalibrationFeed {
    /// Offer the frame captured at `ts`: taken (cloned) only while frames are wanted and
    /// `interval_s` has passed since the last one taken.
    pub fn offer(&mut self, ts: Instant, img: &RgbImage) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        if let Some(l) = self.last {
            if ts.saturating_duration_since(l) < self.interval {
                return;
            }
        }
        self.last = Some(ts);
        // Full: the collector is still writing the previous frame; the next interval counts.
        let _ = self.tx.try_send(img.clone());
    }
}

/// One promotion, rollback or rejection in `history.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub time: String,
    pub action: String,
    pub model: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<serde_json::Value>,
}

/// `<dir>/history.json`: which model runs, which one `rollback` returns to, and what happened.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    /// The `detector.model` these promotions replace: a different configured model
    /// (the user changed it) makes the history void for start-up.
    pub base: Option<PathBuf>,
    /// The model that runs (None: `detector.model`).
    pub active: Option<PathBuf>,
    /// The model `rollback` returns to (None: none).
    pub previous: Option<PathBuf>,
    /// The last cycle ended (promoted, rejected, rolled back): collect again only on `start`.
    pub cycle_done: bool,
    /// The state shown after a restart when the cycle is done.
    #[serde(default)]
    pub last_state: String,
    /// The candidate not promoted (yet): `ready`, or `rejected` but promotable on purpose.
    #[serde(default)]
    pub candidate: Option<CandidateModel>,
    pub entries: Vec<HistoryEntry>,
}

impl History {
    fn path(dir: &Path) -> PathBuf {
        dir.join("history.json")
    }
    /// The history in `dir` (empty when there is none; an unreadable one is an error).
    pub fn load(dir: &Path) -> Result<History> {
        let p = Self::path(dir);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("reading {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(History::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }
    fn save(&self, dir: &Path) -> Result<()> {
        let p = Self::path(dir);
        let tmp = p.with_extension("json.part");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))
    }
    fn record(&mut self, action: &str, model: &Path, figures: Option<serde_json::Value>) {
        self.entries.push(HistoryEntry {
            time: rfc3339(SystemTime::now()),
            action: action.into(),
            model: model.to_path_buf(),
            figures,
        });
        if self.entries.len() > HISTORY_MAX {
            let n = self.entries.len() - HISTORY_MAX;
            self.entries.drain(..n);
        }
    }
}

/// The promoted model the daemon should start on, if `[calibration]` is enabled, its history
/// names one for this `detector.model` and the file is there.
pub fn startup_model(cfg: &Config) -> Option<PathBuf> {
    if !cfg.calibration.enabled {
        return None;
    }
    let h = match History::load(&cfg.calibration.dir) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("calibration: {e:#}; starting on detector.model");
            return None;
        }
    };
    let active = h.active?;
    if h.base.as_deref() != Some(cfg.detector.model.as_path()) {
        tracing::info!(
            "calibration: detector.model changed since the last promotion; starting on it, not on {}",
            active.display()
        );
        return None;
    }
    if !active.is_file() {
        tracing::warn!(
            "calibration: the promoted model {} is gone; starting on detector.model",
            active.display()
        );
        return None;
    }
    Some(active)
}

/// The description file of the configured model (a calibrated model lives elsewhere and
/// has the same outputs).
pub fn description_path(cfg: &Config) -> Result<PathBuf> {
    match &cfg.detector.desc {
        Some(p) => Ok(p.clone()),
        None => crate::detect::model_desc::desc_path_for_model(&cfg.detector.model),
    }
}

/// Where the cycle stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Collecting,
    Calibrating,
    Evaluating,
    /// A candidate beat the running model; `promote = "manual"` waits for the command.
    Ready,
    Promoted,
    Rejected,
    RolledBack,
    Failed,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Collecting => "collecting",
            State::Calibrating => "calibrating",
            State::Evaluating => "evaluating",
            State::Ready => "ready",
            State::Promoted => "promoted",
            State::Rejected => "rejected",
            State::RolledBack => "rolled_back",
            State::Failed => "failed",
        }
    }
    fn parse(s: &str) -> Option<State> {
        [
            State::Ready,
            State::Promoted,
            State::Rejected,
            State::RolledBack,
            State::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// The calibrated candidate and its A/B figures: (F1, pseudo-mAP@0.5) of the running model
/// (`before`) and of the candidate (`after`) against float on the held-out frames.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CandidateModel {
    pub path: PathBuf,
    pub method: String,
    pub before: Option<(f64, f64)>,
    pub after: (f64, f64),
}

impl CandidateModel {
    fn gain(&self) -> f64 {
        let s = |(f1, map): (f64, f64)| (f1 + map) / 2.0;
        s(self.after) - self.before.map(s).unwrap_or(0.0)
    }
    fn figures(&self) -> serde_json::Value {
        let fig = |(f1, map): (f64, f64)| json!({"f1": round(f1), "map50": round(map)});
        json!({
            "method": self.method,
            "before": self.before.map(fig),
            "after": fig(self.after),
            "gain": round(self.gain()),
        })
    }
}

/// Everything the calibration thread owns.
pub struct Service {
    cfg: CalibrationConfig,
    float: PathBuf,
    desc: PathBuf,
    labels: Option<PathBuf>,
    score_threshold: f32,
    /// How the detection thread's detector is loaded (its model path replaced).
    template: DetectorConfig,
    configured: PathBuf,
    frames_dir: PathBuf,
    models_dir: PathBuf,
    candidates_dir: PathBuf,
    history: History,
    state: State,
    message: String,
    progress: f64,
    collected: Vec<(PathBuf, u64)>,
    needed: usize,
    skipped_similar: u64,
    last_thumb: Option<Vec<u8>>,
    next_index: u64,
    candidate: Option<CandidateModel>,
    out: Publisher,
    swap: Sender<Swap>,
    wanted: Arc<AtomicBool>,
    frames: Receiver<RgbImage>,
    commands: Receiver<Incoming>,
    last_progress: Instant,
}

/// The channels the daemon wires: the feed for the detection thread, the swap receiver for
/// it, and the command sender for the MQTT inbox.
pub struct Wiring {
    pub feed: CalibrationFeed,
    pub swaps: Receiver<Swap>,
    pub commands: Sender<Incoming>,
}

impl Service {
    /// Set up the directories and read the history; `template` loads models the way the
    /// detection thread's detector was loaded.
    pub fn new(cfg: &Config, template: DetectorConfig, out: Publisher) -> Result<(Self, Wiring)> {
        let c = cfg.calibration.clone();
        let float = cfg
            .shadow
            .model
            .clone()
            .context("calibration needs shadow.model (the float model)")?;
        let frames_dir = c.dir.join("frames");
        let models_dir = c.dir.join("models");
        let candidates_dir = c.dir.join("candidates");
        for d in [&frames_dir, &models_dir, &candidates_dir] {
            std::fs::create_dir_all(d)
                .with_context(|| format!("calibration.dir: creating {}", d.display()))?;
        }
        let history = History::load(&c.dir).context("calibration.dir")?;
        let desc = description_path(cfg)?;
        let (ftx, frx) = bounded(1);
        let (stx, srx) = bounded(1);
        let (ctx, crx) = bounded(8);
        let wanted = Arc::new(AtomicBool::new(false));
        let needed = c.frames + c.frames.div_ceil(4);
        let mut s = Service {
            float,
            desc,
            labels: cfg.detector.labels.clone(),
            score_threshold: cfg.shadow.score_threshold,
            template,
            configured: cfg.detector.model.clone(),
            frames_dir,
            models_dir,
            candidates_dir,
            history,
            state: State::Collecting,
            message: String::new(),
            progress: 0.0,
            collected: Vec::new(),
            needed,
            skipped_similar: 0,
            last_thumb: None,
            next_index: 0,
            candidate: None,
            out,
            swap: stx,
            wanted: wanted.clone(),
            frames: frx,
            commands: crx,
            last_progress: Instant::now(),
            cfg: c,
        };
        // A history made for another detector.model starts afresh.
        if s.history.base.as_deref() != Some(s.configured.as_path()) {
            s.history.base = Some(s.configured.clone());
            s.history.active = None;
            s.history.previous = None;
            s.history.cycle_done = false;
        }
        s.rescan()?;
        // The candidate left by the last run, if its file is still there; any other file in
        // the candidates directory is a leftover.
        s.candidate = s.history.candidate.clone().filter(|c| c.path.is_file());
        if let Ok(rd) = std::fs::read_dir(&s.candidates_dir) {
            for e in rd.flatten() {
                if s.candidate.as_ref().map(|c| c.path.as_path()) != Some(e.path().as_path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if s.history.cycle_done {
            s.state = State::parse(&s.history.last_state).unwrap_or(State::Promoted);
            s.message = "cycle done: send start to collect again".into();
        }
        let feed = CalibrationFeed {
            tx: ftx,
            wanted,
            interval: Duration::from_secs_f64(s.cfg.interval_s),
            last: None,
        };
        Ok((
            s,
            Wiring {
                feed,
                swaps: srx,
                commands: ctx,
            },
        ))
    }

    /// The model that runs now.
    fn active(&self) -> PathBuf {
        self.history
            .active
            .clone()
            .unwrap_or_else(|| self.configured.clone())
    }

    /// Read the collected frames from disk (a restart resumes the count).
    fn rescan(&mut self) -> Result<()> {
        let mut v: Vec<(PathBuf, u64)> = std::fs::read_dir(&self.frames_dir)
            .with_context(|| format!("reading {}", self.frames_dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
            .filter_map(|p| {
                let n = std::fs::metadata(&p).ok()?.len();
                Some((p, n))
            })
            .collect();
        v.sort();
        self.next_index = v
            .iter()
            .filter_map(|(p, _)| p.file_stem()?.to_str()?.parse::<u64>().ok())
            .max()
            .map_or(0, |m| m + 1);
        self.collected = v;
        Ok(())
    }

    fn bytes(&self) -> u64 {
        self.collected.iter().map(|x| x.1).sum()
    }

    /// Publish the state (retained).
    fn publish(&mut self) {
        let mut v = json!({
            "state": self.state.as_str(),
            "timestamp": rfc3339(SystemTime::now()),
            "frames": {
                "collected": self.collected.len(),
                "needed": self.needed,
                "skipped_similar": self.skipped_similar,
                "bytes": self.bytes(),
            },
            "model": model_name(&self.active()),
            "rollback_to": self.history.previous.as_deref().map(model_name),
            "promote": self.cfg.promote.name(),
            "margin": self.cfg.margin,
        });
        if self.state == State::Calibrating || self.state == State::Evaluating {
            v["progress"] = json!(round(self.progress));
        }
        // The figures of the candidate, else of the last promotion or rejection.
        let figures = match &self.candidate {
            Some(c) => {
                v["candidate"] = json!(model_name(&c.path));
                Some(c.figures())
            }
            None => self.history.entries.last().and_then(|e| e.figures.clone()),
        };
        for (k, x) in figures.iter().flat_map(|f| f.as_object()).flatten() {
            v[k] = x.clone();
        }
        if !self.message.is_empty() {
            v["message"] = json!(self.message);
        }
        self.out.calibration(&v);
        self.last_progress = Instant::now();
    }

    fn set(&mut self, state: State, message: impl Into<String>) {
        self.state = state;
        self.message = message.into();
        self.wanted.store(
            state == State::Collecting && self.collected.len() < self.needed,
            Ordering::Relaxed,
        );
        self.publish();
    }

    /// Run until `stop`.
    pub fn run(mut self, stop: &AtomicBool) {
        if self.cfg.nice > 0 {
            if let Err(e) = crate::drift::shadow::lower_thread_priority(self.cfg.nice) {
                tracing::warn!("calibration: cannot lower the thread's priority: {e:#}");
            }
        }
        let st = self.state;
        let msg = self.message.clone();
        self.set(st, msg);
        tracing::info!(
            collected = self.collected.len(),
            needed = self.needed,
            state = self.state.as_str(),
            model = %self.active().display(),
            "calibration: started"
        );
        while !stop.load(Ordering::Relaxed) {
            if self.state == State::Collecting
                && self.collected.len() >= self.needed
                && self.cfg.auto_start
            {
                self.calibrate(stop);
                continue;
            }
            crossbeam_channel::select! {
                recv(self.frames) -> f => if let Ok(img) = f { self.collect(&img) },
                recv(self.commands) -> c => if let Ok(m) = c { self.command(&m, stop) },
                default(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Keep one offered frame unless it repeats the last one.
    fn collect(&mut self, img: &RgbImage) {
        if self.state != State::Collecting || self.collected.len() >= self.needed {
            return;
        }
        let t = frames::thumb(img);
        if let Some(last) = &self.last_thumb {
            if frames::mad(&t, last) < self.cfg.min_difference {
                self.skipped_similar += 1;
                return;
            }
        }
        let path = self.frames_dir.join(format!("{:08}.jpg", self.next_index));
        match write_jpeg(&path, img) {
            Ok(n) => {
                self.next_index += 1;
                self.last_thumb = Some(t);
                self.collected.push((path, n));
                // Bounded on disk: the oldest frames go first.
                while self.bytes() > self.cfg.max_bytes && self.collected.len() > 1 {
                    let (p, _) = self.collected.remove(0);
                    let _ = std::fs::remove_file(p);
                }
            }
            Err(e) => {
                tracing::warn!("calibration: {e:#}");
                self.message = format!("{e:#}");
            }
        }
        let left = self.needed.saturating_sub(self.collected.len());
        let msg = if left == 0 && !self.cfg.auto_start {
            "frames collected: send start to calibrate".to_string()
        } else {
            String::new()
        };
        self.set(State::Collecting, msg);
    }

    fn command(&mut self, m: &Incoming, stop: &AtomicBool) {
        let Some(c) = Command::parse(&m.payload) else {
            tracing::warn!(
                topic = %m.topic,
                "calibration: ignoring {:?} (expected start, promote or rollback)",
                String::from_utf8_lossy(&m.payload.iter().copied().take(64).collect::<Vec<u8>>())
            );
            return;
        };
        tracing::info!(command = ?c, state = self.state.as_str(), "calibration: command");
        match c {
            Command::Start => match self.state {
                State::Collecting if self.collected.len() >= MIN_FRAMES => self.calibrate(stop),
                State::Collecting => {
                    let msg = format!(
                        "start: {} frame(s) collected, at least {MIN_FRAMES} needed",
                        self.collected.len()
                    );
                    self.set(State::Collecting, msg)
                }
                _ => self.new_cycle(),
            },
            Command::Promote => match self.candidate.clone() {
                Some(c) => self.promote(c),
                None => {
                    let st = self.state;
                    self.set(st, "promote: no candidate to promote");
                }
            },
            Command::Rollback => self.rollback(),
        }
    }

    /// Forget the frames and the candidate; collect again.
    fn new_cycle(&mut self) {
        for (p, _) in self.collected.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        if let Some(c) = self.candidate.take() {
            let _ = std::fs::remove_file(c.path);
        }
        self.last_thumb = None;
        self.skipped_similar = 0;
        self.history.cycle_done = false;
        self.save_history();
        self.set(State::Collecting, "");
    }

    fn save_history(&mut self) {
        self.history.candidate = self.candidate.clone();
        if let Err(e) = self.history.save(&self.cfg.dir) {
            tracing::error!("calibration: {e:#}");
            self.message = format!("{e:#}");
        }
    }

    /// End the cycle in `state`: the frames are deleted, the outcome kept over restarts.
    fn finish_cycle(&mut self, state: State, message: String) {
        for (p, _) in self.collected.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        self.last_thumb = None;
        self.history.cycle_done = true;
        self.history.last_state = state.as_str().into();
        self.save_history();
        self.set(state, message);
    }

    /// Calibrate from the collected frames, A/B the candidate, decide.
    fn calibrate(&mut self, stop: &AtomicBool) {
        let t0 = Instant::now();
        self.progress = 0.0;
        self.set(State::Calibrating, "");
        // `20261206T210128`: the time to the second, UTC.
        let stamp: String = rfc3339(SystemTime::now())
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(15)
            .collect();
        let stem = model_name(&self.configured);
        let out = self
            .candidates_dir
            .join(format!("{stem}-cal-{stamp}.tflite"));
        let mut o =
            CalibrateOptions::new(&self.float, &self.frames_dir.to_string_lossy(), out.clone());
        o.desc = Some(self.desc.clone());
        o.labels = self.labels.clone();
        o.baseline = Some(self.active());
        // The source holds exactly the collected frames: four in five calibrate.
        o.frames = (self.collected.len() * 4 / 5).max(1);
        o.methods = Method::parse_list(&self.cfg.method).unwrap_or_else(|_| Method::ALL.to_vec());
        o.score_threshold = self.score_threshold;
        o.layers = false;
        let budget = self.cfg.cpu_budget;
        let mut work_since = Instant::now();
        let result = super::run(&o, stop, |s| {
            let (state, p) = match s {
                Step::Reading(_) => (State::Calibrating, 0.0),
                Step::Calibrating(k, n) => (State::Calibrating, 60.0 * k as f64 / n.max(1) as f64),
                Step::Scoring(_) => (State::Calibrating, 80.0),
                Step::Comparing(_) => (State::Evaluating, 90.0),
            };
            if state != self.state || self.last_progress.elapsed() >= PROGRESS_EVERY {
                self.state = state;
                self.progress = p;
                self.publish();
            }
            // The CPU budget: rest in proportion to the work since the last step.
            if budget > 0.0 && budget < 100.0 {
                let rest = work_since.elapsed().mul_f64(100.0 / budget - 1.0);
                let end = Instant::now() + rest;
                while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
                }
            }
            work_since = Instant::now();
        });
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                tracing::error!("calibration failed: {e:#}");
                let _ = std::fs::remove_file(&out);
                self.finish_cycle(State::Failed, format!("{e:#}"));
                return;
            }
        };
        let fig = |n: &str| {
            outcome
                .compared
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, p): &(String, Pooled)| (p.f1, p.map50))
        };
        let cand = CandidateModel {
            path: out,
            method: outcome.candidates[outcome.chosen].label(),
            before: fig("before"),
            after: fig("after").unwrap_or((0.0, 0.0)),
        };
        let gain = cand.gain();
        tracing::info!(
            method = %cand.method,
            before = ?cand.before,
            after = ?cand.after,
            gain,
            secs = t0.elapsed().as_secs_f64(),
            "calibration: candidate evaluated against the running model"
        );
        self.candidate = Some(cand.clone());
        if gain >= self.cfg.margin {
            match self.cfg.promote {
                Promote::Auto => self.promote(cand),
                Promote::Manual => {
                    let msg = format!(
                        "candidate beats the running model by {gain:.3}: send promote to use it"
                    );
                    self.finish_cycle(State::Ready, msg)
                }
            }
        } else {
            let msg = format!(
                "candidate gains {gain:.3}, below calibration.margin {}",
                self.cfg.margin
            );
            self.history
                .record("rejected", &cand.path, Some(cand.figures()));
            self.finish_cycle(State::Rejected, msg);
        }
    }

    /// Load `path` as the detector and hand it to the detection thread.
    fn swap_to(&self, path: &Path) -> Result<()> {
        let mut dc = self.template.clone();
        dc.model = path.to_path_buf();
        dc.desc = Some(self.desc.clone());
        let detector =
            Detector::from_config(&dc).with_context(|| format!("loading {}", path.display()))?;
        let mut job = Swap {
            detector,
            path: path.to_path_buf(),
        };
        // One swap waits at a time; a pending one is replaced by this newer decision.
        loop {
            match self.swap.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(j)) => {
                    job = j;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(TrySendError::Disconnected(_)) => bail!("the detection thread has ended"),
            }
        }
    }

    fn promote(&mut self, c: CandidateModel) {
        let dest = self.models_dir.join(c.path.file_name().unwrap_or_default());
        let moved = if c.path == dest {
            Ok(())
        } else {
            std::fs::rename(&c.path, &dest)
                .with_context(|| format!("moving {} to {}", c.path.display(), dest.display()))
        };
        if let Err(e) = moved.and_then(|_| self.swap_to(&dest)) {
            tracing::error!("calibration: promotion failed: {e:#}");
            self.finish_cycle(State::Failed, format!("promotion failed: {e:#}"));
            return;
        }
        let old = self.active();
        self.history.previous = Some(old.clone());
        self.history.active = Some(dest.clone());
        self.history.record("promoted", &dest, Some(c.figures()));
        tracing::info!(
            model = %dest.display(),
            replaces = %old.display(),
            gain = c.gain(),
            "calibration: promoted"
        );
        // The promoted model is no longer a candidate (its figures stay in the history).
        self.candidate = None;
        self.prune_models();
        let msg = format!("now running {}", model_name(&self.active()));
        self.finish_cycle(State::Promoted, msg);
    }

    fn rollback(&mut self) {
        let Some(prev) = self.history.previous.clone() else {
            let st = self.state;
            self.set(st, "rollback: no previous model");
            return;
        };
        if let Err(e) = self.swap_to(&prev) {
            tracing::error!("calibration: rollback failed: {e:#}");
            let st = self.state;
            self.set(st, format!("rollback failed: {e:#}"));
            return;
        }
        let cur = self.active();
        self.history.previous = Some(cur.clone());
        self.history.active = (prev != self.configured).then(|| prev.clone());
        self.history.record("rolled_back", &prev, None);
        tracing::info!(model = %prev.display(), from = %cur.display(), "calibration: rolled back");
        if let Some(c) = self.candidate.take() {
            let _ = std::fs::remove_file(c.path);
        }
        let msg = format!("now running {}", model_name(&prev));
        self.finish_cycle(State::RolledBack, msg);
    }

    /// Keep in `<dir>/models` only the active and the previous model.
    fn prune_models(&self) {
        let keep = [self.history.active.clone(), self.history.previous.clone()];
        if let Ok(rd) = std::fs::read_dir(&self.models_dir) {
            for e in rd.flatten() {
                let p = e.path();
                if !keep.iter().any(|k| k.as_deref() == Some(p.as_path())) {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// A model's name in payloads and detections: its file stem.
pub fn model_name(p: &Path) -> String {
    p.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string()
}

/// Write `img` as JPEG (quality 90) through a temporary file; returns its size.
fn write_jpeg(path: &Path, img: &RgbImage) -> Result<u64> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
        .encode_image(img)
        .map_err(|e| anyhow!("encoding a calibration frame: {e}"))?;
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, &buf).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(buf.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_three_words_are_commands() {
        assert_eq!(Command::parse(b"start"), Some(Command::Start));
        assert_eq!(Command::parse(b" promote\n"), Some(Command::Promote));
        assert_eq!(Command::parse(b"rollback"), Some(Command::Rollback));
        for bad in [
            &b"Start"[..],
            b"",
            b"start now",
            b"{\"cmd\":\"start\"}",
            b"\xff\xfe",
            b"promote;rollback",
        ] {
            assert_eq!(Command::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn history_round_trips_and_bounds_its_entries() {
        let dir = std::env::temp_dir().join(format!("edgecam-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(History::load(&dir).unwrap(), History::default());
        let mut h = History {
            base: Some("/m/int8.tflite".into()),
            active: Some(dir.join("models/a.tflite")),
            ..Default::default()
        };
        for k in 0..(HISTORY_MAX + 5) {
            h.record("promoted", Path::new(&format!("m{k}")), None);
        }
        assert_eq!(h.entries.len(), HISTORY_MAX);
        assert_eq!(h.entries[0].model, PathBuf::from("m5"));
        h.save(&dir).unwrap();
        assert_eq!(History::load(&dir).unwrap(), h);
        std::fs::write(dir.join("history.json"), b"{not json").unwrap();
        let e = History::load(&dir).unwrap_err();
        assert!(format!("{e:#}").contains("history.json"), "{e:#}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
