//! `edgecam run`: the daemon.

use std::path::PathBuf;

use anyhow::Result;

// No doc comment here: the subcommand's help text is the `Cmd::Run` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (default /etc/edgecam/edgecam.toml); EDGECAM__SECTION__KEY variables override keys.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Loads the configuration and runs the daemon until it is stopped.
pub fn run(args: &RunArgs) -> Result<()> {
    crate::config::Config::load(args.config.as_deref()).and_then(crate::app::run)
}
