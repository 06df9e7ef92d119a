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

use anyhow::{anyhow, bail, Context, Result};

use crate::config::ModelType;
use crate::detect::model_desc::{desc_path_for_model, load_labels, ModelDesc};
use crate::detect::{decoder_for, raw_output, Detector};
use crate::engine::{tflite, Interpreter, InterpreterOptions};
use crate::postprocess::{Decoder, Detection, RawOutput};
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
        None => match desc_path_for_model(model) {
            Ok(p) => p,
            // A model that decodes itself needs no description.
            Err(e) => {
                let mut c = crate::detect::DetectorConfig::new(model);
                c.labels = labels.map(Path::to_path_buf);
                c.engine = opts.clone();
                c.model_type = ModelType::SsdPostprocess;
                return Detector::from_config(&c).map_err(|pe| {
                    anyhow!("{e:#} (nor does it end in TFLite_Detection_PostProcess: {pe:#})")
                });
            }
        },
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

/// The description of a raw-output detector: its raw outputs are what drift compares; a
/// model ending in TFLite_Detection_PostProcess has none (its detections are compared, see
/// [`decodes_itself`]).
pub fn raw_desc(det: &Detector) -> Result<&crate::detect::model_desc::ModelDesc> {
    det.desc().ok_or_else(|| {
        anyhow!(
            "{} is a {} model: it has no raw SSD outputs to compare with a float model (drift \
             compares a raw-output SSD with its description, or two models ending in \
             TFLite_Detection_PostProcess)",
            det.name(),
            det.model_type().name()
        )
    })
}

/// Whether drift compares `det`'s detections (a graph ending in TFLite_Detection_PostProcess,
/// no description) rather than its raw outputs.
pub fn decodes_itself(det: &Detector) -> bool {
    det.desc().is_none() && det.model_type() == ModelType::SsdPostprocess
}

/// The detections of `det`'s last run (a model that decodes itself) down to
/// [`RANK_THRESHOLD`]: the quantized side of a comparison, ranked for pseudo-AP.
pub fn ranked_detections(det: &Detector) -> Result<Vec<Detection>> {
    let mut out = Vec::new();
    if !det.postprocess_detections(RANK_THRESHOLD, &mut out)? {
        bail!(
            "{} does not end in TFLite_Detection_PostProcess",
            det.name()
        );
    }
    Ok(out)
}

/// A drift pair of a raw-output model and one that decodes itself: they cannot be compared.
/// (The daemon runs on without drift when its detector decodes itself and the float model does
/// not: Coral's model has no float twin.)
#[derive(Debug)]
pub struct MixedPair(pub String);

impl std::fmt::Display for MixedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MixedPair {}

/// Whether the quantized and float models of a drift pair both decode themselves (their
/// detections are compared) or both have raw outputs (compared raw, then decoded alike); a
/// mixed pair is a [`MixedPair`] error naming both.
pub fn pair_decodes_itself(int8: &Detector, float: &Detector) -> Result<bool> {
    let (a, b) = (decodes_itself(int8), decodes_itself(float));
    if a != b {
        let kind = |d: &Detector, own: bool| {
            if own {
                format!("{} (ending in TFLite_Detection_PostProcess)", d.name())
            } else {
                format!("{} (a {} model)", d.name(), d.model_type().name())
            }
        };
        bail!(MixedPair(format!(
            "cannot compare {} with {}: drift compares like with like (both raw-output SSDs \
             with a description, or both ending in TFLite_Detection_PostProcess)",
            kind(int8, a),
            kind(float, b)
        )));
    }
    if !a {
        raw_desc(float)?;
        raw_desc(int8)?;
    }
    Ok(a)
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

/// Turns the raw outputs (or, for models that decode themselves, the detections) of both
/// models into a [`FrameComparison`].
pub struct Comparator {
    /// `None` for models that decode themselves.
    decoder: Option<Decoder>,
    pub score_threshold: f32,
    pub output_names: [String; 2],
}

impl Comparator {
    /// `det` supplies the description and labels (either model of the pair).
    pub fn new(det: &Detector, score_threshold: f32) -> Result<Self> {
        if decodes_itself(det) {
            return Ok(Comparator {
                decoder: None,
                score_threshold,
                output_names: Default::default(),
            });
        }
        let desc = raw_desc(det)?;
        let decoder = decoder_for(desc, det.labels().to_vec())?;
        let o = &desc.outputs;
        Ok(Comparator {
            decoder: Some(decoder),
            score_threshold,
            output_names: [o.boxes.name.clone(), o.scores.name.clone()],
        })
    }

    /// Both models decode themselves: the int8 detections of a run ranked down to
    /// [`RANK_THRESHOLD`] ([`ranked_detections`]) against the float ones of the same frame
    /// (read here at the score threshold). No raw-output fidelity: there are no raw outputs.
    pub fn compare_detections(
        &self,
        seq: u64,
        ranked: Vec<Detection>,
        float: &Detector,
    ) -> Result<FrameComparison> {
        let mut truth = Vec::new();
        if !float.postprocess_detections(self.score_threshold, &mut truth)? {
            bail!(
                "{} does not end in TFLite_Detection_PostProcess",
                float.name()
            );
        }
        Ok(FrameComparison::new(
            seq,
            ranked,
            truth,
            self.score_threshold,
            Vec::new(),
        ))
    }

    pub fn compare(
        &mut self,
        seq: u64,
        int8: &[Vec<f32>; 2],
        float: &[Vec<f32>; 2],
    ) -> Result<FrameComparison> {
        let decoder = self
            .decoder
            .as_mut()
            .ok_or_else(|| anyhow!("these models decode themselves: compare their detections"))?;
        decoder.set_score_threshold(RANK_THRESHOLD);
        let ranked = decoder.decode(RawOutput::F32(&int8[0]), RawOutput::F32(&int8[1]))?;
        decoder.set_score_threshold(self.score_threshold);
        let truth = decoder.decode(RawOutput::F32(&float[0]), RawOutput::F32(&float[1]))?;
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
