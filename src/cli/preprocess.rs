//! `edgecam preprocess`: an image preprocessed as `detect` does, written as a float32 .npy.

use std::path::PathBuf;

use anyhow::Result;

use super::{load_rgb, resize_mode};
use crate::detect::model_desc::{Colour, ModelDesc};
use crate::engine::DType;
use crate::npy::NpyArray;
use crate::preprocess::Preprocessor;

// No doc comment here: the subcommand's help text is the `Cmd::Preprocess` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct PreprocessArgs {
    /// Model description JSON (input size and normalisation).
    #[arg(long)]
    pub desc: PathBuf,
    /// Keep the aspect ratio (pad) instead of stretching to the model size.
    #[arg(long)]
    pub letterbox: bool,
    /// Write the float32 NHWC tensor here (.npy).
    #[arg(long)]
    pub out: PathBuf,
    /// The image to preprocess (JPEG or PNG).
    pub image: PathBuf,
}

/// Preprocesses `image` and writes the tensor to `--out`.
pub fn run(args: &PreprocessArgs) -> Result<()> {
    let d = ModelDesc::load(&args.desc)?;
    let i = &d.input;
    let mut pre = Preprocessor::new(
        i.width,
        i.height,
        i.mean,
        i.std,
        i.colour == Colour::Bgr,
        resize_mode(args.letterbox),
    )?;
    let img = load_rgb(&args.image)?;
    let mut buf = vec![0f32; pre.len()];
    pre.to_f32(&img, &mut buf)?;
    NpyArray {
        dtype: DType::F32,
        shape: vec![1, i.height, i.width, 3],
        data: bytemuck::cast_slice(&buf).to_vec(),
    }
    .write(&args.out)
}
