//! `edgecam infer`: one .npy input through a model, every output written as .npy.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::engine::{tflite, Interpreter, InterpreterOptions, KernelRequest};
use crate::npy::NpyArray;

// No doc comment here: the subcommand's help text is the `Cmd::Infer` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct InferArgs {
    /// The .tflite model to run.
    #[arg(long)]
    pub model: PathBuf,
    /// Inference threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Input tensor as .npy, of the dtype and shape of the model's first input.
    #[arg(long)]
    pub input: PathBuf,
    /// Output directory (created if missing): one <index>.npy per model output.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the model once on `--input` and writes its outputs to `--out`.
pub fn run(args: &InferArgs) -> Result<()> {
    let InferArgs {
        model,
        threads,
        input,
        out,
    } = args;
    let graph = tflite::load_file(model)?;
    let mut it = Interpreter::with_options(
        graph,
        &InterpreterOptions::resolve(KernelRequest::Auto, *threads, &[])?,
    )?;
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
