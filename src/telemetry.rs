//! Logging set-up: `tracing` with an env filter (`RUST_LOG`, default `info`),
//! human-readable by default, JSON lines with `--log-json`.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(json: bool, verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: not in the journal, a pipe or a file.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second init (tests) is not an error worth failing over.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Whether the `n`-th occurrence (from 1) of a repeated warning is logged: the first ten, then
/// every hundredth, so that a broken camera or a bad label cannot fill the journal.
pub fn worth_logging(n: u64) -> bool {
    n <= 10 || n.is_multiple_of(100)
}
