use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use edgecam::engine::{tflite, Interpreter};
use edgecam::npy::NpyArray;

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
    /// Run the daemon: capture → int8 detector → MQTT (config: /etc/edgecam/edgecam.toml).
    Run {
        /// Configuration file (default /etc/edgecam/edgecam.toml); EDGECAM__SECTION__KEY variables override keys.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration (and that the model loads) without starting.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a model on one .npy input and write every output as DIR/<index>.npy.
    Infer {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn infer(model: &Path, input: &Path, out: &Path) -> Result<()> {
    let graph = tflite::load_file(model)?;
    let mut it = Interpreter::new(graph)?;
    let x = NpyArray::read(input)?;
    let info = it.input_info(0)?.clone();
    if x.dtype != info.dtype || x.shape != info.shape {
        anyhow::bail!(
            "input {} is {} {:?}, the model's input '{}' is {} {:?}",
            input.display(),
            x.dtype.name(),
            x.shape,
            info.name,
            info.dtype.name(),
            info.shape
        );
    }
    it.input_bytes_mut(0)?.copy_from_slice(&x.data);
    it.invoke()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for i in 0..it.output_count() {
        let t = it.output(i)?;
        let arr = NpyArray {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            data: t.bytes.to_vec(),
        };
        arr.write(&out.join(format!("{i}.npy")))?;
    }
    Ok(())
}

fn check_config(path: Option<&Path>) -> Result<()> {
    let cfg = edgecam::config::Config::load(path)?;
    let graph = tflite::load_file(&cfg.detector.model)
        .with_context(|| format!("detector.model: {}", cfg.detector.model.display()))?;
    Interpreter::new(graph).with_context(|| format!("detector.model: {}", cfg.detector.model.display()))?;
    if let (true, Some(m)) = (cfg.shadow.enabled, &cfg.shadow.model) {
        let g = tflite::load_file(m).with_context(|| format!("shadow.model: {}", m.display()))?;
        Interpreter::new(g).with_context(|| format!("shadow.model: {}", m.display()))?;
    }
    println!(
        "configuration OK: source {:?} {}, model {}, broker {}:{}, base topic {}",
        cfg.source.kind,
        cfg.source.uri,
        cfg.detector.model.display(),
        if cfg.mqtt.host.is_empty() { "(embedded)" } else { &cfg.mqtt.host },
        cfg.mqtt.port,
        cfg.base_topic()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    edgecam::telemetry::init(cli.log_json, cli.verbose);
    let r = match &cli.cmd {
        Cmd::Run { config } => {
            edgecam::config::Config::load(config.as_deref()).and_then(edgecam::app::run)
        }
        Cmd::CheckConfig { config } => check_config(config.as_deref()),
        Cmd::Infer { model, input, out } => infer(model, input, out),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecam: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
