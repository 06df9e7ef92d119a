//! The `edgecam` command line, one module per subcommand: its arguments (`XArgs`, a
//! `clap::Args` struct) beside the code that runs it (`run`). `src/main.rs` only parses
//! and dispatches.

use std::path::Path;

use anyhow::{Context, Result};

use crate::preprocess::ResizeMode;

pub mod bench;
pub mod calibrate;
pub mod check_config;
pub mod detect;
pub mod evaluate;
pub mod infer;
pub mod preprocess;
pub mod progress;
pub mod run;

pub use bench::BenchArgs;
pub use calibrate::CalibrateArgs;
pub use check_config::CheckConfigArgs;
pub use detect::DetectArgs;
pub use evaluate::EvaluateArgs;
pub use infer::InferArgs;
pub use preprocess::PreprocessArgs;
pub use run::RunArgs;

/// `--letterbox` as a resize mode.
fn resize_mode(letterbox: bool) -> ResizeMode {
    if letterbox {
        ResizeMode::Letterbox { pad: [0, 0, 0] }
    } else {
        ResizeMode::Stretch
    }
}

fn load_rgb(path: &Path) -> Result<image::RgbImage> {
    Ok(image::open(path)
        .with_context(|| format!("reading image {}", path.display()))?
        .to_rgb8())
}
