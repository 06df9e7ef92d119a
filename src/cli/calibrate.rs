//! `edgecam calibrate`: a full-integer int8 model calibrated on a source's own frames.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};

use super::progress::{self, Progress};
use crate::calibrate::{self, frames::Span, CalibrateOptions, Step};
use crate::engine::quantizer::Method;

// No doc comment here: the subcommand's help text is the `Cmd::Calibrate` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The float model (.tflite: float32, float16 weights, weight-only or dynamic-range int8).
    #[arg(long)]
    pub float: PathBuf,
    /// Frames to calibrate on: a video file or stream (ffmpeg), a directory of images,
    /// an MJPEG clip or one image.
    #[arg(long)]
    pub source: String,
    /// Where to write the int8 model.
    #[arg(long)]
    pub out: PathBuf,
    /// Calibration frames, picked spread over the source with duplicates dropped
    /// (one more in four is held out for scoring).
    #[arg(long, default_value_t = 200)]
    pub frames: usize,
    /// Range method: auto tries every one and keeps the best on the held-out frames.
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// Do not try empirical bias correction.
    #[arg(long)]
    pub no_bias_correction: bool,
    /// The int8 model in use, for the before/after table (default: the `_int8` sibling
    /// of a `_fp32`/`_fp16` float model, if present).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Skip this many frames of the source first.
    #[arg(long, default_value_t = 0)]
    pub skip: u64,
    /// Read at most this many frames of the source (after --skip; 0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: u64,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Model description JSON (default: next to the float model).
    #[arg(long)]
    pub desc: Option<PathBuf>,
    /// Label file (default: the description's `labels`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Skip the per-layer SQNR of the before/after table (saves memory).
    #[arg(long)]
    pub no_layers: bool,
}

pub fn run(a: &CalibrateArgs) -> Result<()> {
    let mut o = CalibrateOptions::new(&a.float, &a.source, &a.out);
    o.frames = a.frames;
    if o.frames < 4 {
        bail!("--frames must be at least 4");
    }
    o.methods = Method::parse_list(&a.method).map_err(|e| anyhow::anyhow!("--method {e}"))?;
    o.bias_correction = !a.no_bias_correction;
    o.baseline = a
        .baseline
        .clone()
        .or_else(|| calibrate::sibling_int8(&a.float));
    o.span = Span {
        skip: a.skip,
        limit: a.limit,
    };
    o.desc = a.desc.clone();
    o.labels = a.labels.clone();
    o.layers = !a.no_layers;
    let stop = progress::stop_on_signals();
    let t0 = std::time::Instant::now();
    let source_total =
        progress::frames_taken(progress::source_frames(&a.source), a.skip, 1, a.limit);
    // One bar per phase: reading (ETA over the source's frames), calibrating (over the
    // frames kept); then one line per candidate.
    let mut bar = Progress::new(source_total);
    let mut phase = "";
    let mut last = String::from("starting");
    let result = calibrate::run(&o, &stop, |s| {
        let (name, done, detail) = match s {
            Step::Reading(n) => ("reading", n, "reading the source".to_string()),
            Step::Calibrating(k, n) => {
                if phase != "calibrating" {
                    bar = Progress::new(Some(n as u64));
                }
                (
                    "calibrating",
                    k as u64,
                    format!("calibrating on {n} frames"),
                )
            }
            Step::Scoring(m) => ("scoring", 0, format!("scoring candidate {m}")),
            Step::Comparing(m) => (
                "comparing",
                0,
                format!("comparing {m} with the float model"),
            ),
        };
        if phase != name && !phase.is_empty() {
            bar.finish();
        }
        phase = name;
        last = format!("{detail} ({done})");
        match s {
            // Not every frame on a log: every 10th read, every 10 % calibrated.
            Step::Reading(n) if !bar.tty() && n % 10 != 0 => {}
            Step::Calibrating(k, n) if !bar.tty() && k != n && k % (n / 10).max(1) != 0 => {}
            Step::Reading(_) | Step::Calibrating(..) => bar.show(done, &detail),
            _ => eprintln!("{detail}"),
        }
    });
    bar.finish();
    let out = match result {
        Ok(out) => out,
        Err(e) if stop.load(Ordering::SeqCst) => {
            // Interrupted: no model is written; the report says how far it got.
            let report = serde_json::json!({
                "partial": true,
                "interrupted_at": last,
                "elapsed_s": (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                "float": a.float.display().to_string(),
                "source": a.source,
                "out": null,
            });
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            eprintln!(
                "calibration interrupted while {last} after {:.1} s ({e:#}): {} not written",
                t0.elapsed().as_secs_f64(),
                a.out.display()
            );
            std::process::exit(progress::INTERRUPTED);
        }
        Err(e) => return Err(e),
    };
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_vec_pretty(&out.report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.html {
        std::fs::write(p, calibrate::html(&out.report))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    print!("{}", out.table);
    let t = &out.report["timing"];
    println!(
        "wrote {} ({}); calibration {} s = {}x the float inference time of its frames, peak memory {} MiB",
        a.out.display(),
        out.candidates[out.chosen].label(),
        t["calibration_s"],
        t["calibration_vs_float_inferences"],
        t["peak_rss_mib"]
    );
    Ok(())
}
