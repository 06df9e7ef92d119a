//! `edgecam evaluate`: an int8 model, or several int8 candidates, against the float
//! version over a source (offline drift).

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::drift::evaluate::{self, EvalOptions};

// No doc comment here: the subcommand's help text is the `Cmd::Evaluate` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// The int8 .tflite model; repeat it (`--int8 a.tflite --int8 b.tflite`) to compare
    /// several candidates against the same float model over the same frames, in one report.
    #[arg(long, required = true)]
    pub int8: Vec<PathBuf>,
    /// Its float .tflite version, the reference.
    #[arg(long)]
    pub float: PathBuf,
    /// A video file or stream (ffmpeg), a directory of images, an MJPEG clip or one image.
    #[arg(long)]
    pub source: String,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML page with plots here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Model description JSON (default: next to the int8 model).
    #[arg(long)]
    pub desc: Option<PathBuf>,
    /// Label file (default: the description's `labels`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Skip this many frames of the source first (e.g. the part a model was calibrated on).
    #[arg(long, default_value_t = 0)]
    pub skip: u64,
    /// Compare every k-th frame of the source.
    #[arg(long, default_value_t = 1)]
    pub every: usize,
    /// Stop after this many compared frames (0 = the whole source).
    #[arg(long, default_value_t = 0)]
    pub max_frames: usize,
    /// Score threshold of the comparison (default: shadow.score_threshold's default).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Skip the per-layer view (saves memory).
    #[arg(long)]
    pub no_layers: bool,
}

/// Runs the comparison, showing progress (frames, rate, ETA, and each compared frame's
/// figures) on standard error; writes the reports asked for and prints the summary table.
/// With one `--int8` the reports are the single-model ones; with several, one report with a
/// `candidates` array and a table with a row per candidate. Ctrl-C stops after the current
/// frame: the reports and table then cover the frames compared (`"partial": true`), and the
/// exit status is 130.
pub fn run(args: &EvaluateArgs) -> Result<()> {
    let stop = super::progress::stop_on_signals();
    let mut opts = Vec::new();
    for int8 in &args.int8 {
        let mut o = EvalOptions::new(int8, &args.float);
        o.desc = args.desc.clone();
        o.labels = args.labels.clone();
        o.every = args.every.max(1);
        o.skip = args.skip;
        o.max_frames = args.max_frames;
        o.layers = !args.no_layers;
        if let Some(t) = args.threshold {
            anyhow::ensure!((0.0..=1.0).contains(&t), "--threshold must be in 0..1");
            o.score_threshold = t;
        }
        opts.push(o);
    }
    let several = args.int8.len() > 1;
    let total = super::progress::frames_taken(
        super::progress::source_frames(&args.source),
        args.skip,
        args.every.max(1) as u64,
        args.max_frames as u64,
    );
    let bar = super::progress::Progress::new(total);
    let evs = evaluate::run_many_until(opts, &args.source, &stop, |k, c, n| {
        let (p, r, f) = c.prf();
        let who = if several {
            format!("{}: ", args.int8[k].display())
        } else {
            String::new()
        };
        bar.show(
            n as u64,
            &format!(
                "{who}frame {:>5}: F1 {f:.3} (P {p:.3} R {r:.3}), float {} / int8 {} objects",
                c.seq,
                c.float.len(),
                c.int8.len()
            ),
        );
    })?;
    bar.finish();
    let report = if several {
        evaluate::report_many(&evs)
    } else {
        evs[0].report()
    };
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.html {
        let page = if several {
            crate::drift::html::render_many(&report)
        } else {
            crate::drift::html::render(&report)
        };
        std::fs::write(p, page).with_context(|| format!("writing {}", p.display()))?;
    }
    if several {
        print!("{}", evaluate::candidates_table(&evs));
    } else {
        print!("{}", evs[0].summary_table());
    }
    if evs[0].interrupted {
        eprintln!(
            "interrupted after {} compared frames: the report covers them",
            evs[0].frames.len()
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(super::progress::INTERRUPTED);
    }
    Ok(())
}
