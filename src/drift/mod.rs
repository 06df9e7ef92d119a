//! Quantization drift: the float "shadow" model runs beside the int8 one on
//! sampled frames and the two are compared, with the float detections as
//! pseudo ground truth.
//!
//! - [`compare`]: one frame — matching, agreement precision/recall/F1, IoU,
//!   class flips, score deltas, count differences, raw-output SQNR/cosine,
//!   pseudo-AP.
//! - [`window`]: rolling window + EWMA, pooled metrics (pseudo-mAP@0.5 and
//!   @[.5:.95]) and the alarm with hysteresis.
//! - [`layers`]: per-layer SQNR / scale-normalised RMSE (QuantizationDebugger-like).
//! - [`shadow`]: the daemon side — sampling, CPU budget, the low-priority
//!   shadow thread, `<base>/drift` messages, the disagreement-frame store.
//! - [`evaluate`]: the offline twin (`edgecam evaluate`), JSON and HTML reports.

pub mod compare;
pub mod evaluate;
pub mod html;
pub mod layers;
pub mod shadow;
pub mod store;
pub mod window;

use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::detect::model_desc::{desc_path_for_model, load_labels, ModelDesc};
use crate::detect::{decoder_for, raw_output, Detector};
use crate::engine::{tflite, Interpreter, InterpreterOptions};
use crate::postprocess::{Decoder, RawOutput};
use crate::preprocess::ResizeMode;
use compare::{Energy, FrameComparison, OutputFidelity};

/// Int8 detections are ranked down to this score for pseudo-AP.
pub const RANK_THRESHOLD: f32 = 0.05;

/// Load a detector like [`Detector::from_config`], with interpreter options.
pub fn load_detector(
    model: &Path,
    desc: Option<&Path>,
    labels: Option<&Path>,
    opts: &InterpreterOptions,
) -> Result<Detector> {
    let desc_path = match desc {
        Some(p) => p.to_path_buf(),
        None => desc_path_for_model(model)?,
    };
    let d = ModelDesc::load(&desc_path)?;
    let labels = match (labels, d.labels_path(&desc_path)) {
        (Some(p), _) => load_labels(p)?,
        (None, Some(p)) => load_labels(&p)?,
        (None, None) => Vec::new(),
    };
    let graph = tflite::load_file(model).with_context(|| format!("loading {}", model.display()))?;
    let interp = Interpreter::with_options(graph, opts)?;
    let name = model
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model")
        .to_string();
    Detector::new(interp, d, labels, name, ResizeMode::Stretch)
}

/// The description of a raw-output detector: drift compares raw outputs, which a model
/// ending in TFLite_Detection_PostProcess does not have.
pub fn raw_desc(det: &Detector) -> Result<&crate::detect::model_desc::ModelDesc> {
    det.desc().ok_or_else(|| {
        anyhow!(
            "{} is a {} model: it has no raw SSD outputs to compare with a float model (drift \
             needs a raw-output SSD and its description)",
            det.name(),
            det.model_type().name()
        )
    })
}

/// Graph output indices of the box and class tensors of a detector.
pub fn output_indices(det: &Detector) -> Result<[usize; 2]> {
    let it = det.interpreter();
    let o = &raw_desc(det)?.outputs;
    let find = |r: &crate::detect::model_desc::OutputRef| -> Result<usize> {
        match it.output_index(&r.name) {
            Ok(k) => Ok(k),
            Err(_) if r.index < it.output_count() => Ok(r.index),
            Err(_) => Err(anyhow!("model has no output '{}'", r.name)),
        }
    };
    Ok([find(&o.boxes)?, find(&o.scores)?])
}

/// The dequantized box and class outputs of the detector's last run.
pub fn raw_outputs(det: &Detector, idx: [usize; 2], out: &mut [Vec<f32>; 2]) -> Result<()> {
    for (k, &i) in idx.iter().enumerate() {
        let t = det.interpreter().output(i)?;
        raw_output(&t)?.dequantize_into(&mut out[k]);
    }
    Ok(())
}

/// Turns the raw outputs of both models into a [`FrameComparison`].
pub struct Comparator {
    decoder: Decoder,
    pub score_threshold: f32,
    pub output_names: [String; 2],
}

impl Comparator {
    /// `det` supplies the description and labels (either model of the pair).
    pub fn new(det: &Detector, score_threshold: f32) -> Result<Self> {
        let desc = raw_desc(det)?;
        let decoder = decoder_for(desc, det.labels().to_vec())?;
        let o = &desc.outputs;
        Ok(Comparator {
            decoder,
            score_threshold,
            output_names: [o.boxes.name.clone(), o.scores.name.clone()],
        })
    }

    pub fn compare(
        &mut self,
        seq: u64,
        int8: &[Vec<f32>; 2],
        float: &[Vec<f32>; 2],
    ) -> Result<FrameComparison> {
        self.decoder.set_score_threshold(RANK_THRESHOLD);
        let ranked = self
            .decoder
            .decode(RawOutput::F32(&int8[0]), RawOutput::F32(&int8[1]))?;
        self.decoder.set_score_threshold(self.score_threshold);
        let truth = self
            .decoder
            .decode(RawOutput::F32(&float[0]), RawOutput::F32(&float[1]))?;
        let outputs = (0..2)
            .map(|k| OutputFidelity {
                name: self.output_names[k].clone(),
                energy: Energy::of(&float[k], &int8[k]),
            })
            .collect();
        Ok(FrameComparison::new(
            seq,
            ranked,
            truth,
            self.score_threshold,
            outputs,
        ))
    }
}
