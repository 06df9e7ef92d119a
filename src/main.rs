//! The `edgecam` binary: parses the command line and dispatches to [`edgecam::cli`], where
//! each subcommand's arguments and code live.
#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use edgecam::cli::{
    self, BenchArgs, CalibrateArgs, CheckConfigArgs, DetectArgs, EvaluateArgs, InferArgs,
    PreprocessArgs, RunArgs,
};

/// edgecam: int8 object detection on the edge, with live quantization-drift monitoring.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time a model on a fixed input after warm-up: median and p95 milliseconds.
    Bench(BenchArgs),
    /// Run the daemon: capture → int8 detector → MQTT (config: /etc/edgecam/edgecam.toml).
    Run(RunArgs),
    /// Check the configuration as `run` would, short of streaming: the keys and values, the
    /// model with its labels and description, the CA and password files, and that the
    /// source opens and delivers a frame. Exit status: 0 good, 78 a configuration error,
    /// 69 the source (or, with --connect, the broker) is unavailable.
    CheckConfig(CheckConfigArgs),
    /// Run a model on one .npy input and write every output as DIR/<index>.npy.
    Infer(InferArgs),
    /// Detect objects in images; prints one JSON line per image.
    Detect(DetectArgs),
    /// Compare an int8 model (or several int8 candidates, side by side) with its float
    /// version over a source (quantization drift, offline): agreement F1, pseudo-mAP,
    /// raw-output SQNR, per-layer error.
    Evaluate(EvaluateArgs),
    /// Calibrate a full-integer int8 model from a source's own frames: every range
    /// method is scored against the float model on held-out frames and the best is
    /// written, with a before/after table (F1, pseudo-mAP, per-layer SQNR).
    Calibrate(CalibrateArgs),
    /// Preprocess an image exactly as `detect` does and write the float32
    /// NHWC tensor (normalised, before any quantisation) as .npy.
    Preprocess(PreprocessArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell (the
    /// Debian package installs them; scripts/package writes them from this).
    #[command(hide = true)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages, edgecam.1 and one edgecam-<subcommand>.1 per subcommand, into a
    /// directory (the Debian package installs them; scripts/package writes them from this).
    #[command(hide = true)]
    Manpages {
        /// The directory (created if missing).
        dir: std::path::PathBuf,
    },
}

/// The command line as clap sees it, with the options of every subcommand: what completions
/// and man pages are generated from.
fn command() -> clap::Command {
    Cli::command()
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    clap_complete::generate(shell, &mut command(), "edgecam", &mut std::io::stdout());
    Ok(())
}

fn manpages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Hidden subcommands (these two) get no page of their own.
    let cmd = command();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    edgecam::telemetry::init(cli.log_json, cli.verbose);
    let r = match &cli.cmd {
        Cmd::Bench(a) => cli::bench::run(a),
        Cmd::Run(a) => cli::run::run(a),
        Cmd::CheckConfig(a) => cli::check_config::run(a),
        Cmd::Infer(a) => cli::infer::run(a),
        Cmd::Detect(a) => cli::detect::run(a),
        Cmd::Evaluate(a) => cli::evaluate::run(a),
        Cmd::Calibrate(a) => cli::calibrate::run(a),
        Cmd::Preprocess(a) => cli::preprocess::run(a),
        Cmd::Completions { shell } => completions(*shell),
        Cmd::Manpages { dir } => manpages(dir),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecam: error: {e:#}");
            ExitCode::from(edgecam::exit::status(&e))
        }
    }
}
