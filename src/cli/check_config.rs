//! `edgecam check-config`: the configuration checked as `run` would, short of streaming.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::exit::Failure;

// No doc comment here: the subcommand's help text is the `Cmd::CheckConfig` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Configuration file (default /etc/edgecam/edgecam.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also connect to the MQTT broker (and log in) once.
    #[arg(long)]
    pub connect: bool,
}

/// Checks the configuration, the source and (with `--connect`) the broker; prints what it found.
/// Errors carry the exit status: 78 configuration, 69 source or broker unavailable.
pub fn run(args: &CheckConfigArgs) -> Result<()> {
    let unavailable = |e: anyhow::Error| anyhow::Error::new(Failure::Unavailable(e));
    let cfg = crate::config::Config::load(args.config.as_deref())?;
    let mut prepared = crate::app::prepare(&cfg).map_err(crate::exit::config)?;
    println!(
        "configuration OK: model {} ({} labels), base topic {}",
        cfg.detector.model.display(),
        prepared.infer.labels().len(),
        cfg.base_topic()
    );
    // The source: opens, and delivers a frame within the stall timeout.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let src = &mut prepared.source;
    src.open(&stop)
        .with_context(|| format!("source: {}", src.describe()))
        .map_err(unavailable)?;
    // As the daemon allows a freshly opened source for its first frame.
    let stall = std::time::Duration::from_secs_f64(cfg.source.stall_timeout_s)
        + crate::app::pipeline::FIRST_FRAME_GRACE;
    let t0 = std::time::Instant::now();
    loop {
        use crate::capture::Read;
        match src
            .read(crate::capture::READ_WAIT)
            .with_context(|| format!("source: {}", src.describe()))
            .map_err(unavailable)?
        {
            Read::Frame(img) => {
                println!(
                    "source OK: {} delivered a {}x{} frame",
                    src.describe(),
                    img.width(),
                    img.height()
                );
                break;
            }
            Read::Pending if t0.elapsed() < stall => {}
            Read::Pending => {
                return Err(unavailable(anyhow::anyhow!(
                    "source: {} opened but sent no frame within {stall:?} (source.stall_timeout_s + 10 s)",
                    src.describe()
                )))
            }
            Read::Skipped(e) => println!("source: skipping an unusable frame: {e:#}"),
            Read::Eof | Read::Truncated(_) => {
                return Err(unavailable(anyhow::anyhow!(
                    "source: {} has no frame",
                    src.describe()
                )))
            }
        }
    }
    if cfg.mqtt.host.is_empty() {
        println!("broker: none configured (run starts an embedded one on 127.0.0.1)");
    } else if args.connect {
        let settings = crate::app::mqtt_settings(&cfg);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match rt.block_on(crate::publish::mqtt::probe(
            &settings,
            std::time::Duration::from_secs(10),
        )) {
            Ok(()) => println!(
                "broker OK: connected to {}:{}",
                settings.host, settings.port
            ),
            Err((cause, e)) => {
                return Err(unavailable(anyhow::anyhow!(
                    "broker {}:{}: connection failed ({}): {e}; {}",
                    settings.host,
                    settings.port,
                    cause.as_str(),
                    cause.hint()
                )))
            }
        }
    } else {
        println!(
            "broker: {}:{} (not contacted; --connect tries it)",
            cfg.mqtt.host, cfg.mqtt.port
        );
    }
    Ok(())
}
