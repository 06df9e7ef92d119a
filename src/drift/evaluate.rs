//! The offline twin of the shadow: run both models over a whole source
//! (video, image directory, MJPEG clip or one image), compare every frame
//! like the daemon does, follow the same window and alarm, and add the
//! per-layer view. Produces a JSON report (and, through [`super::html`], an
//! HTML page).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use image::RgbImage;

use super::compare::{round, FrameComparison};
use super::layers::{LayerMap, LayerStat};
use super::window::{Alarm, AlarmMetric, Pooled, Window};
use super::{
    load_detector, output_indices, pair_decodes_itself, ranked_detections, raw_outputs, Comparator,
};
use crate::capture::sources::{is_video_file, Ffmpeg, ImageDir, MjpegFile};
use crate::capture::{FrameSource, Read};
use crate::config::ShadowConfig;
use crate::detect::Detector;
use crate::engine::{InterpreterOptions, KernelRequest};

/// What to compare and how.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub int8: PathBuf,
    pub float: PathBuf,
    pub desc: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub score_threshold: f32,
    pub window: usize,
    pub ewma_alpha: f64,
    pub alarm_metric: AlarmMetric,
    pub alarm_threshold: f64,
    pub alarm_hysteresis: f64,
    pub alarm_min_frames: usize,
    /// Skip this many frames of the source first.
    pub skip: u64,
    /// Compare every k-th frame of the source (counted after the skipped ones).
    pub every: usize,
    /// Stop after this many compared frames (0 = the whole source).
    pub max_frames: usize,
    /// Collect the per-layer view (keeps every intermediate tensor).
    pub layers: bool,
}

impl EvalOptions {
    /// The daemon's defaults (`[shadow]` section) for the comparison and alarm.
    pub fn new(int8: impl Into<PathBuf>, float: impl Into<PathBuf>) -> Self {
        let d = ShadowConfig::default();
        EvalOptions {
            int8: int8.into(),
            float: float.into(),
            desc: None,
            labels: None,
            score_threshold: d.score_threshold,
            window: d.window,
            ewma_alpha: d.ewma_alpha,
            alarm_metric: d.alarm_metric,
            alarm_threshold: d.alarm_threshold,
            alarm_hysteresis: d.alarm_hysteresis,
            alarm_min_frames: d.alarm_min_frames,
            skip: 0,
            every: 1,
            max_frames: 0,
            layers: true,
        }
    }
}

/// One compared frame on the timeline.
#[derive(Clone, Debug)]
pub struct TimelinePoint {
    pub seq: u64,
    pub frame: serde_json::Value,
    pub window_f1: f64,
    pub window_map50: f64,
    pub alarm: bool,
}

/// Both models, the comparison state and everything collected so far.
pub struct Evaluator {
    pub opts: EvalOptions,
    int8: Detector,
    float: Detector,
    idx: [[usize; 2]; 2],
    /// Both models decode themselves: detections compared, no raw outputs.
    own: bool,
    cmp: Comparator,
    layer_map: Option<LayerMap>,
    pub layer_stats: Vec<LayerStat>,
    window: Window,
    pub frames: Vec<FrameComparison>,
    pub timeline: Vec<TimelinePoint>,
    /// Number of compared frames when the alarm first fired (1-based).
    pub alarm_first: Option<usize>,
    raw: [[Vec<f32>; 2]; 2],
    scratch: Vec<f32>,
    dets: Vec<crate::postprocess::Detection>,
    ms: [f64; 2],
    pub source: String,
    /// Stopped before the end of the source (Ctrl-C): the report covers the frames compared.
    pub interrupted: bool,
}

impl Evaluator {
    pub fn new(opts: EvalOptions) -> Result<Self> {
        // Kernel path from EDGECAM_KERNELS (default: the best this CPU has); one thread.
        let mut io = InterpreterOptions::resolve(KernelRequest::Auto, 1, &[])?;
        io.keep_intermediates = opts.layers;
        let int8 = load_detector(
            &opts.int8,
            opts.desc.as_deref(),
            opts.labels.as_deref(),
            &io,
        )
        .with_context(|| format!("--int8 {}", opts.int8.display()))?;
        let float = load_detector(
            &opts.float,
            opts.desc.as_deref(),
            opts.labels.as_deref(),
            &io,
        )
        .with_context(|| format!("--float {}", opts.float.display()))?;
        if int8.interpreter().input_info(0)?.shape != float.interpreter().input_info(0)?.shape {
            bail!("the int8 and float models have different input shapes");
        }
        // Models ending in TFLite_Detection_PostProcess: their detections are compared.
        let own = pair_decodes_itself(&int8, &float)?;
        let idx = if own {
            [[0; 2]; 2]
        } else {
            [output_indices(&int8)?, output_indices(&float)?]
        };
        for (k, (&i, &f)) in idx[0].iter().zip(&idx[1]).enumerate().filter(|_| !own) {
            let a = &int8.interpreter().output_info(i)?.shape;
            let b = &float.interpreter().output_info(f)?.shape;
            if a != b {
                bail!("output {k}: int8 shape {a:?} differs from float shape {b:?}");
            }
        }
        let cmp = Comparator::new(&float, opts.score_threshold)?;
        let layer_map = opts
            .layers
            .then(|| LayerMap::new(int8.interpreter(), float.interpreter()));
        let layer_stats = layer_map.as_ref().map(|m| m.stats()).unwrap_or_default();
        let alarm = Alarm::new(
            opts.alarm_metric,
            opts.alarm_threshold,
            opts.alarm_hysteresis,
            opts.alarm_min_frames,
        );
        Ok(Evaluator {
            window: Window::new(opts.window, opts.ewma_alpha, alarm),
            opts,
            int8,
            float,
            idx,
            own,
            cmp,
            layer_map,
            layer_stats,
            frames: Vec::new(),
            timeline: Vec::new(),
            alarm_first: None,
            raw: Default::default(),
            scratch: Vec::new(),
            dets: Vec::new(),
            ms: [0.0; 2],
            source: String::new(),
            interrupted: false,
        })
    }

    /// Compare both models on one frame.
    pub fn push(&mut self, seq: u64, img: &RgbImage) -> Result<&FrameComparison> {
        self.int8.detect_into(img, &mut self.dets)?;
        self.ms[0] += self.int8.inference_time().as_secs_f64() * 1e3;
        self.float.detect_into(img, &mut self.dets)?;
        self.ms[1] += self.float.inference_time().as_secs_f64() * 1e3;
        if !self.own {
            let [ri, rf] = &mut self.raw;
            raw_outputs(&self.int8, self.idx[0], ri)?;
            raw_outputs(&self.float, self.idx[1], rf)?;
        }
        if let Some(m) = &self.layer_map {
            m.accumulate(
                self.int8.interpreter(),
                self.float.interpreter(),
                &mut self.layer_stats,
                &mut self.scratch,
            )?;
        }
        let c = if self.own {
            self.cmp
                .compare_detections(seq, ranked_detections(&self.int8)?, &self.float)?
        } else {
            self.cmp.compare(seq, &self.raw[0], &self.raw[1])?
        };
        let frame = c.to_json();
        let (pooled, _) = self.window.push(c.clone());
        if self.window.alarm.active && self.alarm_first.is_none() {
            self.alarm_first = Some(self.frames.len() + 1);
        }
        self.timeline.push(TimelinePoint {
            seq,
            frame,
            window_f1: pooled.f1,
            window_map50: pooled.map50,
            alarm: self.window.alarm.active,
        });
        self.frames.push(c);
        Ok(self.frames.last().expect("just pushed"))
    }

    /// Whether the alarm is on after the last frame.
    pub fn alarm_active(&self) -> bool {
        self.window.alarm.active
    }

    /// Metrics pooled over every compared frame.
    pub fn summary(&self) -> Pooled {
        Pooled::of(self.frames.iter())
    }

    /// Layers sorted by SQNR, worst first.
    pub fn worst_layers(&self) -> Vec<&LayerStat> {
        let mut v: Vec<&LayerStat> = self.layer_stats.iter().collect();
        v.sort_by(|a, b| a.sqnr_db().total_cmp(&b.sqnr_db()));
        v
    }

    /// Per-label agreement over every frame: float count, int8 count, matched.
    pub fn labels(&self) -> BTreeMap<String, (usize, usize, usize)> {
        let mut m: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for c in &self.frames {
            for d in &c.float {
                m.entry(d.label.to_string()).or_default().0 += 1;
            }
            for d in &c.int8 {
                m.entry(d.label.to_string()).or_default().1 += 1;
            }
            for (_, t, _) in &c.matches {
                m.entry(c.float[*t].label.to_string()).or_default().2 += 1;
            }
        }
        m
    }

    /// The JSON report.
    pub fn report(&self) -> serde_json::Value {
        let s = self.summary();
        let n = self.frames.len().max(1) as f64;
        let mut summary = s.to_json();
        summary["alarm"] = serde_json::json!({
            "metric": self.opts.alarm_metric.name(),
            "threshold": self.opts.alarm_threshold,
            "hysteresis": self.opts.alarm_hysteresis,
            "fired": self.alarm_first.is_some(),
            "first_fired_after_frames": self.alarm_first,
            "active_at_end": self.alarm_active(),
        });
        summary["inference_ms"] = serde_json::json!({
            "int8_mean": round(self.ms[0] / n),
            "float_mean": round(self.ms[1] / n),
        });
        let labels: Vec<serde_json::Value> = self
            .labels()
            .into_iter()
            .map(|(l, (f, i, m))| {
                serde_json::json!({
                    "label": l, "float": f, "int8": i, "matched": m,
                    "recall": if f > 0 { Some(round(m as f64 / f as f64)) } else { None },
                    "precision": if i > 0 { Some(round(m as f64 / i as f64)) } else { None },
                })
            })
            .collect();
        let frames: Vec<serde_json::Value> = self
            .timeline
            .iter()
            .map(|t| {
                let mut v = t.frame.clone();
                v["window_f1"] = round(t.window_f1).into();
                v["window_map50"] = round(t.window_map50).into();
                v["alarm"] = t.alarm.into();
                v
            })
            .collect();
        serde_json::json!({
            "int8": self.opts.int8.display().to_string(),
            "float": self.opts.float.display().to_string(),
            "source": self.source,
            "partial": self.interrupted,
            "settings": {
                "score_threshold": self.opts.score_threshold,
                "match_iou": super::compare::MATCH_IOU,
                "rank_threshold": super::RANK_THRESHOLD,
                "window": self.opts.window,
                "every": self.opts.every,
                "skip": self.opts.skip,
            },
            "summary": summary,
            "labels": labels,
            "frames": frames,
            "layers": self.layer_stats.iter().map(|l| l.to_json()).collect::<Vec<_>>(),
            "worst_layers": self.worst_layers().iter().take(5).map(|l| l.name.clone()).collect::<Vec<_>>(),
        })
    }

    /// A short text table of the summary.
    pub fn summary_table(&self) -> String {
        let s = self.summary();
        let mut t = String::new();
        let row = |t: &mut String, k: &str, v: String| t.push_str(&format!("  {k:<24} {v}\n"));
        t.push_str(&format!(
            "drift of {} against {} on {}\n",
            self.opts.int8.display(),
            self.opts.float.display(),
            self.source
        ));
        let compared = if self.interrupted {
            format!("{} (partial: interrupted)", s.frames)
        } else {
            s.frames.to_string()
        };
        row(&mut t, "frames compared", compared);
        row(&mut t, "agreement F1", format!("{:.4}", s.f1));
        row(
            &mut t,
            "precision / recall",
            format!("{:.4} / {:.4}", s.precision, s.recall),
        );
        row(&mut t, "pseudo-mAP@0.5", format!("{:.4}", s.map50));
        row(&mut t, "pseudo-mAP@[.5:.95]", format!("{:.4}", s.map50_95));
        row(
            &mut t,
            "mean IoU (matched)",
            s.mean_iou.map(|v| format!("{v:.4}")).unwrap_or("-".into()),
        );
        row(
            &mut t,
            "class flip rate",
            s.class_flip_rate
                .map(|v| format!("{v:.4}"))
                .unwrap_or("-".into()),
        );
        row(
            &mut t,
            "score delta mean / p95",
            format!(
                "{} / {}",
                s.score_delta_mean
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or("-".into()),
                s.score_delta_p95
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or("-".into())
            ),
        );
        row(
            &mut t,
            "objects float / int8",
            format!("{} / {}", s.float_objects, s.int8_objects),
        );
        for (n, e) in &s.outputs {
            row(
                &mut t,
                &format!("SQNR {n}"),
                format!("{:.2} dB (cosine {:.5})", e.sqnr_db(), e.cosine()),
            );
        }
        row(
            &mut t,
            "alarm",
            match self.alarm_first {
                Some(k) => format!(
                    "fired after {k} frames ({} {} {})",
                    self.opts.alarm_metric.name(),
                    if self.opts.alarm_metric.higher_is_better() {
                        "<"
                    } else {
                        ">"
                    },
                    self.opts.alarm_threshold
                ),
                None => "no".into(),
            },
        );
        let worst = self.worst_layers();
        if !worst.is_empty() {
            t.push_str("  worst layers (SQNR dB, RMSE in steps):\n");
            for l in worst.iter().take(5) {
                t.push_str(&format!(
                    "    {:>7.2}  {:>6.2}  {} {}\n",
                    l.sqnr_db(),
                    l.rmse_scaled(),
                    l.op,
                    short_name(&l.name)
                ));
            }
        }
        t
    }
}

/// The first `;`-separated part of a fused TFLite tensor name.
pub fn short_name(n: &str) -> &str {
    n.split(';').next().unwrap_or(n)
}

/// One image file as a source.
struct OneImage {
    path: PathBuf,
    done: bool,
}

impl FrameSource for OneImage {
    fn open(&mut self, _stop: &AtomicBool) -> Result<()> {
        self.done = false;
        Ok(())
    }
    fn read(&mut self, _wait: Duration) -> Result<Read> {
        if self.done {
            return Ok(Read::Eof);
        }
        self.done = true;
        Ok(Read::Frame(
            image::open(&self.path)
                .with_context(|| format!("reading {}", self.path.display()))?
                .to_rgb8(),
        ))
    }
    fn describe(&self) -> String {
        format!("image {}", self.path.display())
    }
}

/// An ffmpeg source of `uri` at its own size, giving up after 30 s without a frame.
fn ffmpeg_config(uri: &str) -> crate::config::SourceConfig {
    crate::config::SourceConfig {
        kind: crate::config::SourceKind::Ffmpeg,
        uri: uri.to_string(),
        fps: 0.0,
        looping: false,
        stall_timeout_s: SILENCE.as_secs_f64(),
        ..Default::default()
    }
}

/// How long `evaluate` waits for a frame before it gives up on the source.
const SILENCE: Duration = Duration::from_secs(30);

/// Open `--source`: a directory of images, an MJPEG clip (`.mjpeg`/`.mjpg`),
/// an image file, or anything else ffmpeg reads (video files, streams).
pub fn open_source(s: &str) -> Result<Box<dyn FrameSource>> {
    let p = Path::new(s);
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase());
    let mut src: Box<dyn FrameSource> = if p.is_dir() {
        Box::new(ImageDir::new(p.to_path_buf(), false))
    } else if matches!(ext.as_deref(), Some("mjpeg" | "mjpg")) {
        Box::new(MjpegFile::new(p.to_path_buf(), false))
    } else if matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
        Box::new(OneImage {
            path: p.to_path_buf(),
            done: false,
        })
    } else if is_video_file(p) || s.contains("://") {
        Box::new(Ffmpeg::new(&ffmpeg_config(s)))
    } else if !p.exists() {
        bail!("--source {s}: no such file or directory");
    } else {
        Box::new(Ffmpeg::new(&ffmpeg_config(s)))
    };
    src.open(&AtomicBool::new(false))
        .with_context(|| format!("--source {s}"))?;
    Ok(src)
}

/// Run the comparison over a whole source; `progress` sees each compared frame.
pub fn run(
    opts: EvalOptions,
    source: &str,
    mut progress: impl FnMut(&FrameComparison, usize),
) -> Result<Evaluator> {
    let mut evs = run_many(vec![opts], source, |_, c, n| progress(c, n))?;
    Ok(evs.pop().expect("one evaluator"))
}

/// Several int8 candidates against the same float model over one pass of a
/// source: one [`Evaluator`] per candidate, each fed the same frames as they
/// are read (the source is read once, no frame is kept). The frames compared
/// (`skip`, `every`, `max_frames`) are those of the first options.
/// `progress` sees the candidate's index, its comparison and the number of
/// frames compared so far.
pub fn run_many(
    opts: Vec<EvalOptions>,
    source: &str,
    progress: impl FnMut(usize, &FrameComparison, usize),
) -> Result<Vec<Evaluator>> {
    run_many_until(opts, source, &AtomicBool::new(false), progress)
}

/// [`run_many`], stopping before the next frame once `stop` is raised: the evaluators then
/// cover the frames compared so far and are marked [`Evaluator::interrupted`].
pub fn run_many_until(
    opts: Vec<EvalOptions>,
    source: &str,
    stop: &AtomicBool,
    mut progress: impl FnMut(usize, &FrameComparison, usize),
) -> Result<Vec<Evaluator>> {
    let first = opts.first().context("no int8 model to evaluate")?;
    let (skip, every, max_frames) = (first.skip, first.every.max(1) as u64, first.max_frames);
    let mut src = open_source(source)?;
    let mut evs = Vec::with_capacity(opts.len());
    for o in opts {
        let mut ev = Evaluator::new(o)?;
        ev.source = source.to_string();
        evs.push(ev);
    }
    let mut seq = 0u64;
    let mut compared = 0usize;
    let t0 = Instant::now();
    let mut silent = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            for ev in &mut evs {
                ev.interrupted = true;
            }
            break;
        }
        let img = match src.read(crate::capture::READ_WAIT)? {
            Read::Frame(i) => i,
            Read::Pending if silent.elapsed() < SILENCE => continue,
            Read::Pending => bail!("--source {source}: no frame for {SILENCE:?}"),
            Read::Skipped(e) => {
                tracing::warn!("--source {source}: skipping an unusable frame: {e:#}");
                continue;
            }
            Read::Eof => break,
            Read::Truncated(why) => {
                tracing::warn!("--source {source} ended early: {why}");
                break;
            }
        };
        silent = Instant::now();
        seq += 1;
        if seq <= skip || !(seq - 1 - skip).is_multiple_of(every) {
            continue;
        }
        compared += 1;
        for (k, ev) in evs.iter_mut().enumerate() {
            let c = ev.push(seq, &img)?;
            progress(k, c, compared);
        }
        if max_frames > 0 && compared >= max_frames {
            break;
        }
    }
    if compared == 0 {
        bail!("--source {source}: no frames");
    }
    tracing::debug!(secs = t0.elapsed().as_secs_f64(), "evaluation done");
    Ok(evs)
}

/// Short names of the candidates for tables: their file names, or their paths
/// where two file names are the same.
pub fn candidate_names(evs: &[Evaluator]) -> Vec<String> {
    let file = |e: &Evaluator| {
        e.opts
            .int8
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| e.opts.int8.display().to_string())
    };
    let files: Vec<String> = evs.iter().map(file).collect();
    evs.iter()
        .zip(&files)
        .map(|(e, f)| {
            if files.iter().filter(|g| *g == f).count() > 1 {
                e.opts.int8.display().to_string()
            } else {
                f.clone()
            }
        })
        .collect()
}

/// The JSON report of several candidates: the float model, the source, and a
/// `candidates` array of [`Evaluator::report`]s, each with its `name`.
pub fn report_many(evs: &[Evaluator]) -> serde_json::Value {
    let names = candidate_names(evs);
    let candidates: Vec<serde_json::Value> = evs
        .iter()
        .zip(names)
        .map(|(e, n)| {
            let mut r = e.report();
            r["name"] = n.into();
            r
        })
        .collect();
    serde_json::json!({
        "float": evs.first().map(|e| e.opts.float.display().to_string()),
        "source": evs.first().map(|e| e.source.clone()),
        "candidates": candidates,
    })
}

/// One row per candidate: F1, precision, recall, pseudo-mAP@0.5,
/// pseudo-mAP@[.5:.95] and the lowest raw-output SQNR.
pub fn candidates_table(evs: &[Evaluator]) -> String {
    let names = candidate_names(evs);
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0).max(9);
    let mut t = String::new();
    if let Some(e) = evs.first() {
        t.push_str(&format!(
            "{} int8 candidates against {} on {} ({} frames compared):\n",
            evs.len(),
            e.opts.float.display(),
            e.source,
            e.frames.len()
        ));
    }
    t.push_str(&format!(
        "  {:<w$}  {:>7}  {:>9}  {:>7}  {:>14}  {:>19}  {:>17}\n",
        "candidate",
        "F1",
        "precision",
        "recall",
        "pseudo-mAP@0.5",
        "pseudo-mAP@[.5:.95]",
        "min out SQNR (dB)"
    ));
    for (e, n) in evs.iter().zip(&names) {
        let s = e.summary();
        let sqnr = s
            .outputs
            .iter()
            .map(|(_, e)| e.sqnr_db())
            .min_by(|a, b| a.total_cmp(b))
            .map(|v| format!("{v:.2}"))
            .unwrap_or("-".into());
        t.push_str(&format!(
            "  {n:<w$}  {:>7.4}  {:>9.4}  {:>7.4}  {:>14.4}  {:>19.4}  {sqnr:>17}\n",
            s.f1, s.precision, s.recall, s.map50, s.map50_95
        ));
    }
    t
}
