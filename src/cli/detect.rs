//! `edgecam detect`: objects in images, one JSON line per image.

use std::path::PathBuf;

use anyhow::Result;

use super::{load_rgb, resize_mode};
use crate::detect::{detections_json, Detector, DetectorConfig};
use crate::engine::{InterpreterOptions, KernelRequest};

// No doc comment here: the subcommand's help text is the `Cmd::Detect` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// The .tflite detection model.
    #[arg(long)]
    pub model: PathBuf,
    /// Label file (default: the description's `labels`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Model description JSON (default: `<base>.json` next to the model, then `models/<base>.json`;
    /// none for a model ending in TFLite_Detection_PostProcess).
    #[arg(long)]
    pub desc: Option<PathBuf>,
    /// How the outputs are read: auto, ssd, ssd_postprocess, yolov5 or yolov8.
    #[arg(long, default_value = "auto", value_parser = parse_model_type)]
    pub model_type: crate::config::ModelType,
    /// Score threshold (default: the description's).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Keep the aspect ratio (pad) instead of stretching to the model size.
    #[arg(long)]
    pub letterbox: bool,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Images to detect objects in (JPEG or PNG), one output line each, in this order.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

fn parse_model_type(s: &str) -> Result<crate::config::ModelType, String> {
    crate::config::ModelType::parse(s)
}

/// Detects objects in every image and prints one JSON line per image.
pub fn run(args: &DetectArgs) -> Result<()> {
    let cfg = DetectorConfig {
        model: args.model.clone(),
        desc: args.desc.clone(),
        labels: args.labels.clone(),
        resize: resize_mode(args.letterbox),
        score_threshold: args.threshold,
        engine: InterpreterOptions::resolve(KernelRequest::Auto, args.threads, &[])?,
        model_type: args.model_type,
    };
    let mut det = Detector::from_config(&cfg)?;
    let mut found = Vec::new();
    for path in &args.images {
        let img = load_rgb(path)?;
        det.detect_into(&img, &mut found)?;
        let line = detections_json(
            &path.display().to_string(),
            img.width(),
            img.height(),
            det.name(),
            det.inference_time().as_secs_f64() * 1e3,
            &found,
            &det.transform(),
        );
        println!("{line}");
    }
    Ok(())
}
