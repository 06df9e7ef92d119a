//! Repair the quantization loss: calibrate an int8 model from a source's own
//! frames (`edgecam calibrate`).
//!
//! 1. Pick frames spread over the source, duplicates dropped
//!    ([`frames::select`]); every fifth is held out for scoring.
//! 2. Run the float model over the calibration frames and gather statistics
//!    ([`crate::engine::quantizer::Calibration`]).
//! 3. Build one candidate per range method, score each against the float
//!    model on the held-out frames (agreement F1 and pseudo-mAP@0.5, as the
//!    drift monitor measures them), add empirical bias correction to the two
//!    best, and keep the best of all.
//! 4. Write it, and compare it with the shipped int8 model (if any) on the
//!    held-out frames: F1, pseudo-mAP, per-layer SQNR.

pub mod frames;
pub mod service;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;

use crate::detect::model_desc::{desc_path_for_model, load_labels, ModelDesc};
use crate::detect::Detector;
use crate::drift::compare::{round, FrameComparison};
use crate::drift::evaluate::{EvalOptions, Evaluator};
use crate::drift::window::Pooled;
use crate::drift::{output_indices, raw_outputs, Comparator};
use crate::engine::quant::choose_qparams;
use crate::engine::quantizer::{self, BuildOptions, Calibration, Method, Quantized};
use crate::engine::{tflite, Graph, Interpreter, InterpreterOptions, KernelRequest};
use crate::preprocess::ResizeMode;

/// Frames used for bias correction at most (a subset of the calibration frames).
const BIAS_FRAMES: usize = 64;
/// One held-out frame in this many selected frames.
const HOLDOUT_EVERY: usize = 5;

/// What `calibrate` does.
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    pub float: PathBuf,
    pub source: String,
    pub out: PathBuf,
    pub desc: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    /// The int8 model in use, for the before/after table.
    pub baseline: Option<PathBuf>,
    /// Calibration frames (held-out frames come on top: one in five selected).
    pub frames: usize,
    /// Range methods to try (`auto`: all of them).
    pub methods: Vec<Method>,
    /// Try empirical bias correction on the two best candidates.
    pub bias_correction: bool,
    pub span: frames::Span,
    pub score_threshold: f32,
    /// Skip the per-layer view of the before/after table.
    pub layers: bool,
}

impl CalibrateOptions {
    pub fn new(float: impl Into<PathBuf>, source: &str, out: impl Into<PathBuf>) -> Self {
        CalibrateOptions {
            float: float.into(),
            source: source.to_string(),
            out: out.into(),
            desc: None,
            labels: None,
            baseline: None,
            frames: 200,
            methods: Method::ALL.to_vec(),
            bias_correction: true,
            span: frames::Span::default(),
            score_threshold: crate::config::ShadowConfig::default().score_threshold,
            layers: true,
        }
    }
}

/// One candidate model and its score on the held-out frames.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub method: Method,
    pub bias_corrected: bool,
    pub f1: f64,
    pub map50: f64,
    pub graph: Graph,
}

impl Candidate {
    pub fn label(&self) -> String {
        format!(
            "{}{}",
            self.method.name(),
            if self.bias_corrected { "+bias" } else { "" }
        )
    }
    /// The ranking score: the mean of F1 and pseudo-mAP@0.5.
    pub fn score(&self) -> f64 {
        (self.f1 + self.map50) / 2.0
    }
}

/// What happened, for the table and the JSON report.
pub struct Outcome {
    pub candidates: Vec<Candidate>,
    pub chosen: usize,
    /// The shipped model (`before`, when there is a baseline) and the written one (`after`)
    /// against float on the held-out frames.
    pub compared: Vec<(String, Pooled)>,
    pub report: serde_json::Value,
    pub table: String,
}

/// Progress steps shown to the user.
pub enum Step<'a> {
    Reading(u64),
    Calibrating(usize, usize),
    Scoring(&'a str),
    Comparing(&'a str),
}

/// `(scale, zero_point)` of the int8 input from the description's normalisation:
/// pixel 0..255 maps to `(p − mean) / std`.
pub fn input_params(desc: &ModelDesc) -> (f32, i32) {
    let i = &desc.input;
    let lo = (0..3)
        .map(|c| (0.0 - i.mean[c]) / i.std[c])
        .fold(f32::INFINITY, f32::min);
    let hi = (0..3)
        .map(|c| (255.0 - i.mean[c]) / i.std[c])
        .fold(f32::NEG_INFINITY, f32::max);
    choose_qparams(lo, hi, -128, 127)
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct Setup {
    desc: ModelDesc,
    desc_path: PathBuf,
    labels: Vec<String>,
}

fn setup(o: &CalibrateOptions) -> Result<Setup> {
    let desc_path = match &o.desc {
        Some(p) => p.clone(),
        None => desc_path_for_model(&o.float)?,
    };
    let desc = ModelDesc::load(&desc_path)?;
    let labels = match (&o.labels, desc.labels_path(&desc_path)) {
        (Some(p), _) => load_labels(p)?,
        (None, Some(p)) => load_labels(&p)?,
        (None, None) => Vec::new(),
    };
    Ok(Setup {
        desc,
        desc_path,
        labels,
    })
}

fn detector(g: Graph, s: &Setup, name: &str, keep: bool) -> Result<Detector> {
    let mut io = InterpreterOptions::resolve(KernelRequest::Auto, 1, &[])?;
    io.keep_intermediates = keep;
    let interp = Interpreter::with_options(g, &io)?;
    Detector::new(
        interp,
        s.desc.clone(),
        s.labels.clone(),
        name.to_string(),
        ResizeMode::Stretch,
    )
}

/// Score an int8 graph against the cached float outputs of the held-out frames.
fn score(
    g: &Graph,
    s: &Setup,
    held: &[(u64, RgbImage)],
    float_raw: &[[Vec<f32>; 2]],
    cmp: &mut Comparator,
) -> Result<Pooled> {
    let mut det = detector(g.clone(), s, "candidate", false)?;
    let idx = output_indices(&det)?;
    let mut raw: [Vec<f32>; 2] = Default::default();
    let mut dets = Vec::new();
    let mut cs: Vec<FrameComparison> = Vec::new();
    for ((seq, img), f) in held.iter().zip(float_raw) {
        det.detect_into(img, &mut dets)?;
        raw_outputs(&det, idx, &mut raw)?;
        cs.push(cmp.compare(*seq, &raw, f)?);
    }
    Ok(Pooled::of(cs.iter()))
}

/// Stop early when asked to (the daemon's shutdown).
fn check(stop: &AtomicBool) -> Result<()> {
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        bail!("calibration interrupted");
    }
    Ok(())
}

/// Run the whole calibration; `step` reports progress. `stop` interrupts it between steps.
pub fn run(o: &CalibrateOptions, stop: &AtomicBool, mut step: impl FnMut(Step)) -> Result<Outcome> {
    let t0 = Instant::now();
    let s = setup(o)?;
    if o.methods.is_empty() {
        bail!("no range method to try");
    }
    let raw =
        tflite::load_file(&o.float).with_context(|| format!("loading {}", o.float.display()))?;
    let float =
        quantizer::prepare_float(raw).map_err(|e| anyhow!("--float {}: {e}", o.float.display()))?;

    // Frames.
    let mut src = crate::drift::evaluate::open_source(&o.source)?;
    let want = o.frames + o.frames.div_ceil(HOLDOUT_EVERY - 1);
    let size = (s.desc.input.width as u32, s.desc.input.height as u32);
    let sel = frames::select(src.as_mut(), want, o.span, size, stop, |n| {
        step(Step::Reading(n))
    })?;
    drop(src);
    if sel.frames.len() < 2 {
        bail!(
            "--source {}: {} usable frame(s), calibration needs at least 2",
            o.source,
            sel.frames.len()
        );
    }
    let (mut calib, mut held) = (Vec::new(), Vec::new());
    for (k, f) in sel.frames.into_iter().enumerate() {
        if k % HOLDOUT_EVERY == HOLDOUT_EVERY / 2 {
            held.push(f);
        } else {
            calib.push(f);
        }
    }
    let t_frames = t0.elapsed().as_secs_f64();

    // Statistics of the float model.
    let t1 = Instant::now();
    let mut fdet = detector(float.clone(), &s, "float", true)?;
    let mut cal = Calibration::new(float.clone());
    let bias_every = calib.len().div_ceil(BIAS_FRAMES).max(1);
    let bias_frames: Vec<usize> = (0..calib.len()).step_by(bias_every).collect();
    let mut dets = Vec::new();
    let mut float_ms = 0.0;
    for (k, (_, img)) in calib.iter().enumerate() {
        step(Step::Calibrating(k + 1, calib.len()));
        check(stop)?;
        fdet.detect_into(img, &mut dets)?;
        float_ms += fdet.inference_time().as_secs_f64() * 1e3;
        cal.observe(fdet.interpreter(), bias_frames.binary_search(&k).is_ok())
            .map_err(|e| anyhow!(e))?;
    }
    let fidx = output_indices(&fdet)?;
    let mut float_raw: Vec<[Vec<f32>; 2]> = Vec::new();
    for (_, img) in &held {
        fdet.detect_into(img, &mut dets)?;
        let mut r: [Vec<f32>; 2] = Default::default();
        raw_outputs(&fdet, fidx, &mut r)?;
        float_raw.push(r);
    }
    let mut cmp = Comparator::new(&fdet, o.score_threshold)?;
    drop(fdet);
    let t_stats = t1.elapsed().as_secs_f64();

    // Candidates.
    let t2 = Instant::now();
    let input = input_params(&s.desc);
    let stem = o
        .float
        .file_stem()
        .and_then(|x| x.to_str())
        .unwrap_or("model");
    let means = cal.input_means();
    let build = |method: Method, bias: Option<HashMap<usize, Vec<f32>>>| -> Result<Quantized> {
        let opts = BuildOptions {
            inputs: vec![input],
            float_outputs: false,
            input_means: if bias.is_some() {
                means.clone()
            } else {
                HashMap::new()
            },
            bias_shift: bias.clone().unwrap_or_default(),
            description: format!(
                "edgecam {} calibrate: int8 from {stem}, {} ranges{}, {} frames",
                env!("CARGO_PKG_VERSION"),
                method.name(),
                if bias.is_some() {
                    ", bias correction"
                } else {
                    ""
                },
                cal.frames
            ),
        };
        quantizer::quantize(&cal.float, &cal.ranges(method), &opts).map_err(|e| anyhow!(e))
    };
    let mut cands: Vec<Candidate> = Vec::new();
    for &m in &o.methods {
        step(Step::Scoring(m.name()));
        check(stop)?;
        let q = build(m, None)?;
        let p = score(&q.graph, &s, &held, &float_raw, &mut cmp)?;
        cands.push(Candidate {
            method: m,
            bias_corrected: false,
            f1: p.f1,
            map50: p.map50,
            graph: q.graph.clone(),
        });
    }
    if o.bias_correction {
        let mut order: Vec<usize> = (0..cands.len()).collect();
        order.sort_by(|&a, &b| cands[b].score().total_cmp(&cands[a].score()));
        for &i in order.iter().take(2) {
            let m = cands[i].method;
            step(Step::Scoring(&format!("{}+bias", m.name())));
            check(stop)?;
            // The weight-error part first, then the heads' remaining error measured
            // on the bias-correction frames.
            let q = build(m, Some(HashMap::new()))?;
            let mut det = detector(q.graph.clone(), &s, "bias", true)?;
            let ts = cal.head_tensors(&q);
            let mut sums = HashMap::new();
            for &k in &bias_frames {
                det.detect_into(&calib[k].1, &mut dets)?;
                quantizer::accumulate_int8_sums(det.interpreter(), &ts, &mut sums)
                    .map_err(|e| anyhow!(e))?;
            }
            drop(det);
            let qb = build(m, Some(cal.head_shift(&q, &sums)))?;
            let p = score(&qb.graph, &s, &held, &float_raw, &mut cmp)?;
            cands.push(Candidate {
                method: m,
                bias_corrected: true,
                f1: p.f1,
                map50: p.map50,
                graph: qb.graph,
            });
        }
    }
    let chosen = (0..cands.len())
        .max_by(|&a, &b| cands[a].score().total_cmp(&cands[b].score()))
        .expect("at least one candidate");
    let t_cands = t2.elapsed().as_secs_f64();
    let bytes = tflite::writer::write_model(&cands[chosen].graph);
    if let Some(dir) = o.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = o.out.with_extension("tflite.part");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &o.out).with_context(|| format!("writing {}", o.out.display()))?;
    let t_total_calibration = t0.elapsed().as_secs_f64();

    // Before / after on the held-out frames.
    let mut compared: Vec<(String, Evaluator)> = Vec::new();
    let mut models: Vec<(String, PathBuf)> = Vec::new();
    if let Some(b) = &o.baseline {
        models.push(("before".into(), b.clone()));
    }
    models.push(("after".into(), o.out.clone()));
    for (name, path) in &models {
        step(Step::Comparing(name));
        check(stop)?;
        let mut eo = EvalOptions::new(path, &o.float);
        eo.desc = Some(s.desc_path.clone());
        eo.labels = o.labels.clone();
        eo.layers = o.layers;
        eo.score_threshold = o.score_threshold;
        let mut ev = Evaluator::new(eo).with_context(|| format!("comparing {}", path.display()))?;
        ev.source = o.source.clone();
        for (seq, img) in &held {
            ev.push(*seq, img)?;
        }
        compared.push((name.clone(), ev));
    }

    let n_calib = calib.len();
    let report = report_json(
        o,
        &cands,
        chosen,
        &compared,
        serde_json::json!({
            "read": sel.read,
            "duplicates": sel.duplicates,
            "calibration": n_calib,
            "held_out": held.len(),
            "bias_correction": bias_frames.len(),
        }),
        serde_json::json!({
            "reading_s": round(t_frames),
            "statistics_s": round(t_stats),
            "candidates_s": round(t_cands),
            "calibration_s": round(t_total_calibration - t_frames),
            "float_inference_ms_mean": round(float_ms / n_calib.max(1) as f64),
            "calibration_vs_float_inferences": round(
                (t_total_calibration - t_frames) / (float_ms / 1e3).max(1e-9)
            ),
            "peak_rss_mib": peak_rss_mib().map(round),
        }),
    );
    let table = table(o, &cands, chosen, &compared);
    Ok(Outcome {
        compared: compared
            .iter()
            .map(|(n, ev)| (n.clone(), ev.summary()))
            .collect(),
        candidates: cands,
        chosen,
        report,
        table,
    })
}

fn summary_json(ev: &Evaluator) -> serde_json::Value {
    let p = ev.summary();
    serde_json::json!({
        "model": ev.opts.int8.display().to_string(),
        "f1": round(p.f1),
        "map50": round(p.map50),
        "map50_95": round(p.map50_95),
        "precision": round(p.precision),
        "recall": round(p.recall),
        "float_objects": p.float_objects,
        "int8_objects": p.int8_objects,
    })
}

fn report_json(
    o: &CalibrateOptions,
    cands: &[Candidate],
    chosen: usize,
    compared: &[(String, Evaluator)],
    frames: serde_json::Value,
    timing: serde_json::Value,
) -> serde_json::Value {
    let mut cmp = serde_json::Map::new();
    for (name, ev) in compared {
        cmp.insert(name.clone(), summary_json(ev));
    }
    // Per-layer SQNR side by side, by tensor name.
    let mut layers: Vec<serde_json::Value> = Vec::new();
    if let Some((_, after)) = compared.iter().find(|(n, _)| n == "after") {
        let before = compared.iter().find(|(n, _)| n == "before").map(|(_, e)| e);
        for l in &after.layer_stats {
            let b = before.and_then(|e| e.layer_stats.iter().find(|x| x.name == l.name));
            layers.push(serde_json::json!({
                "name": l.name,
                "op": l.op,
                "sqnr_db_after": round(l.sqnr_db()),
                "sqnr_db_before": b.map(|x| round(x.sqnr_db())),
            }));
        }
    }
    serde_json::json!({
        "float": o.float.display().to_string(),
        "source": o.source,
        "out": o.out.display().to_string(),
        "frames": frames,
        "candidates": cands.iter().map(|c| serde_json::json!({
            "method": c.method.name(),
            "bias_correction": c.bias_corrected,
            "f1": round(c.f1),
            "map50": round(c.map50),
        })).collect::<Vec<_>>(),
        "chosen": cands[chosen].label(),
        "held_out": cmp,
        "layers": layers,
        "timing": timing,
    })
}

fn table(
    o: &CalibrateOptions,
    cands: &[Candidate],
    chosen: usize,
    compared: &[(String, Evaluator)],
) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "candidates scored against {} on held-out frames:\n",
        o.float.display()
    ));
    t.push_str("  method             F1      pseudo-mAP@0.5\n");
    for (i, c) in cands.iter().enumerate() {
        t.push_str(&format!(
            "  {:<16} {:>7.4} {:>9.4}{}\n",
            c.label(),
            c.f1,
            c.map50,
            if i == chosen { "   <- written" } else { "" }
        ));
    }
    t.push_str("before / after, against the float model on the held-out frames:\n");
    t.push_str("  model    F1      pseudo-mAP@0.5  worst layer SQNR (dB)\n");
    for (name, ev) in compared {
        let p = ev.summary();
        let worst = ev
            .worst_layers()
            .first()
            .map(|l| format!("{:.2}", l.sqnr_db()))
            .unwrap_or_else(|| "-".into());
        t.push_str(&format!(
            "  {:<8} {:>7.4} {:>9.4}       {:>7}   {}\n",
            name,
            p.f1,
            p.map50,
            worst,
            ev.opts.int8.display()
        ));
    }
    t
}

/// A self-contained HTML page of the report.
pub fn html(report: &serde_json::Value) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut h = String::from(
        "<!doctype html><meta charset=utf-8><title>edgecam calibrate</title>\
         <style>body{font:14px sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}\
         td:first-child,th:first-child{text-align:left}</style>",
    );
    h.push_str(&format!(
        "<h1>Calibration of {}</h1><p>source {}, written to {}; chosen: <b>{}</b></p>",
        esc(report["float"].as_str().unwrap_or("")),
        esc(report["source"].as_str().unwrap_or("")),
        esc(report["out"].as_str().unwrap_or("")),
        esc(report["chosen"].as_str().unwrap_or(""))
    ));
    h.push_str(
        "<h2>Candidates</h2><table><tr><th>method<th>bias correction<th>F1<th>pseudo-mAP@0.5",
    );
    for c in report["candidates"].as_array().into_iter().flatten() {
        h.push_str(&format!(
            "<tr><td>{}<td>{}<td>{}<td>{}",
            c["method"], c["bias_correction"], c["f1"], c["map50"]
        ));
    }
    h.push_str("</table><h2>Before / after (held-out frames)</h2><table><tr><th>model<th>F1<th>pseudo-mAP@0.5<th>mAP@[.5:.95]");
    if let Some(m) = report["held_out"].as_object() {
        for (k, v) in m {
            h.push_str(&format!(
                "<tr><td>{} ({})<td>{}<td>{}<td>{}",
                esc(k),
                esc(v["model"].as_str().unwrap_or("")),
                v["f1"],
                v["map50"],
                v["map50_95"]
            ));
        }
    }
    h.push_str(
        "</table><h2>Per-layer SQNR (dB)</h2><table><tr><th>tensor<th>op<th>before<th>after",
    );
    for l in report["layers"].as_array().into_iter().flatten() {
        h.push_str(&format!(
            "<tr><td>{}<td>{}<td>{}<td>{}",
            esc(l["name"].as_str().unwrap_or("")),
            esc(l["op"].as_str().unwrap_or("")),
            l["sqnr_db_before"],
            l["sqnr_db_after"]
        ));
    }
    h.push_str(&format!(
        "</table><h2>Cost</h2><pre>{}</pre>",
        esc(&serde_json::to_string_pretty(&report["timing"]).unwrap_or_default())
    ));
    h
}

/// The shipped int8 model next to a float one (`x_fp32.tflite` → `x_int8.tflite`).
pub fn sibling_int8(float: &Path) -> Option<PathBuf> {
    let stem = float.file_stem()?.to_str()?;
    let base = stem
        .strip_suffix("_fp32")
        .or_else(|| stem.strip_suffix("_fp16"))
        .or_else(|| stem.strip_suffix("_float"))?;
    let p = float.with_file_name(format!("{base}_int8.tflite"));
    p.exists().then_some(p)
}
