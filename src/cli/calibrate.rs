//! `edgecam calibrate`: a full-integer int8 model calibrated on a source's own frames.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};

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
    let tty = std::io::stderr().is_terminal();
    let stop = AtomicBool::new(false);
    let out = calibrate::run(&o, &stop, |s| {
        let line = match s {
            Step::Reading(n) if tty && n % 10 == 0 => format!("reading the source: {n} frames"),
            Step::Reading(_) => return,
            Step::Calibrating(k, n) if tty || k == n => {
                format!("calibrating: {k}/{n} frames ({}%)", 100 * k / n.max(1))
            }
            Step::Calibrating(..) => return,
            Step::Scoring(m) => format!("scoring candidate {m}"),
            Step::Comparing(m) => format!("comparing {m} with the float model"),
        };
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    })?;
    if tty {
        eprintln!();
    }
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
