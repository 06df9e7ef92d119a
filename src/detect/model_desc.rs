//! Model description: everything about a detector that is not in the `.tflite`
//! file (input normalisation, output roles, box coder, anchors, thresholds).
//!
//! The description lives next to the model as JSON. For `foo_int8.tflite`,
//! `foo_fp32.tflite`, `foo_fp16.tflite`, the other quantization schemes (`foo_int16`,
//! `foo_dynamic`, `foo_dynamic_legacy`, `foo_weight_only`) or plain `foo.tflite` it is `foo.json`;
//! see [`desc_path_for_model`]. Unknown keys are an error.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use crate::postprocess::anchors::{AnchorDesc, AnchorKind};

/// Memory layout of the input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nhwc,
}

/// Channel order of the input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Rgb,
    Bgr,
}

/// Input geometry and normalisation: `real = (pixel - mean) / std` per channel
/// (channels in the model's colour order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDesc {
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
    pub colour: Colour,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// One output tensor: its position among the graph outputs and its name
/// (signature or tensor name). The name wins when the model has it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRef {
    pub index: usize,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputsDesc {
    /// Box encodings `[1, N, 4]`.
    pub boxes: OutputRef,
    /// Class scores (logits) `[1, N, C]`.
    pub scores: OutputRef,
}

/// How raw class outputs become scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScoreFn {
    /// `1 / (1 + exp(-x))`
    Sigmoid,
    /// Outputs are already scores.
    Identity,
}

/// Coordinate order of box encodings and anchors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BoxOrder {
    /// `(ty, tx, th, tw)` encodings against `(yc, xc, h, w)` anchors.
    Yxhw,
}

/// Faster-RCNN style centre/size box coder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoxCoderDesc {
    pub order: BoxOrder,
    pub y_scale: f32,
    pub x_scale: f32,
    pub h_scale: f32,
    pub w_scale: f32,
}

/// The description of one detection model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDesc {
    pub name: String,
    pub input: InputDesc,
    pub outputs: OutputsDesc,
    pub score_fn: ScoreFn,
    pub box_coder: BoxCoderDesc,
    pub anchors: AnchorDesc,
    /// Number of class columns in the score output, background included.
    pub num_classes: usize,
    /// Column of the background class, if the model has one.
    pub background_class: Option<usize>,
    /// Label file (one label per line, line i = class i), relative to the description.
    #[serde(default)]
    pub labels: Option<String>,
    pub score_threshold: f32,
    pub nms_iou_threshold: f32,
    #[serde(default)]
    pub class_agnostic_nms: bool,
    pub max_detections: usize,
}

impl ModelDesc {
    /// Parse a description from JSON text and validate it.
    pub fn from_json(text: &str) -> Result<Self> {
        let d: ModelDesc = serde_json::from_str(text)?;
        d.validate()?;
        Ok(d)
    }

    /// Load and validate a description file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading model description {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("model description {}", path.display()))
    }

    /// Check value ranges that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let i = &self.input;
        if i.width == 0 || i.height == 0 {
            bail!("input size must be positive");
        }
        if i.std.iter().any(|&s| !(s.is_finite() && s != 0.0))
            || i.mean.iter().any(|m| !m.is_finite())
        {
            bail!("input mean/std must be finite and std non-zero");
        }
        let c = &self.box_coder;
        for s in [c.y_scale, c.x_scale, c.h_scale, c.w_scale] {
            if !(s.is_finite() && s > 0.0) {
                bail!("box coder scales must be positive");
            }
        }
        if self.num_classes == 0 {
            bail!("num_classes must be positive");
        }
        if let Some(b) = self.background_class {
            if b >= self.num_classes {
                bail!("background_class {b} >= num_classes {}", self.num_classes);
            }
            if self.num_classes < 2 {
                bail!("a model with a background class needs at least 2 classes");
            }
        }
        if !(0.0..=1.0).contains(&self.nms_iou_threshold) {
            bail!("nms_iou_threshold must be in [0, 1]");
        }
        if !self.score_threshold.is_finite() {
            bail!("score_threshold must be finite");
        }
        if self.outputs.boxes.index == self.outputs.scores.index {
            bail!("boxes and scores must be different outputs");
        }
        let a = &self.anchors;
        if a.num_layers == 0 || a.feature_maps.len() != a.num_layers {
            bail!(
                "anchors: {} feature maps for {} layers",
                a.feature_maps.len(),
                a.num_layers
            );
        }
        if a.feature_maps.contains(&0) {
            bail!("anchors: feature map sizes must be positive");
        }
        if a.aspect_ratios.is_empty()
            || a.aspect_ratios.iter().any(|&r| !(r.is_finite() && r > 0.0))
        {
            bail!("anchors: aspect ratios must be positive");
        }
        for s in [a.min_scale, a.max_scale, a.lowest_layer_min_scale] {
            if !(s.is_finite() && s > 0.0) {
                bail!("anchors: scales must be positive");
            }
        }
        if !a.anchor_offset.is_finite() {
            bail!("anchors: anchor_offset must be finite");
        }
        Ok(())
    }

    /// The labels file, resolved relative to the directory of the description.
    pub fn labels_path(&self, desc_path: &Path) -> Option<PathBuf> {
        let l = self.labels.as_ref()?;
        let dir = desc_path.parent().unwrap_or(Path::new("."));
        Some(dir.join(l))
    }
}

/// The model's base name: `foo` for `foo_int8.tflite`, `foo_fp32.tflite`, `foo_fp16.tflite`,
/// the other schemes' `foo_int16`, `foo_dynamic`, `foo_dynamic_legacy`, `foo_weight_only`, and
/// `foo.tflite`.
pub fn model_base_name(model: &Path) -> Option<String> {
    let stem = model.file_stem()?.to_str()?;
    for suffix in [
        "_int8",
        "_fp32",
        "_fp16",
        "_int16",
        "_dynamic",
        "_dynamic_legacy",
        "_weight_only",
    ] {
        if let Some(base) = stem.strip_suffix(suffix) {
            if !base.is_empty() {
                return Some(base.to_string());
            }
        }
    }
    Some(stem.to_string())
}

/// Where the description of `model` is by convention: `<base>.json` next to the
/// model, else `models/<base>.json` under the current directory (the repository's
/// `models/`). Returns the first that exists, or an error listing the candidates.
pub fn desc_path_for_model(model: &Path) -> Result<PathBuf> {
    let base = model_base_name(model)
        .with_context(|| format!("cannot derive a base name from {}", model.display()))?;
    let file = format!("{base}.json");
    let dir = model.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join(&file), Path::new("models").join(&file)];
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no model description for {} (looked for {} and {}); pass --desc",
        model.display(),
        candidates[0].display(),
        candidates[1].display()
    )
}

/// Read a label file: one label per line (line i = class i), or Coral's `id  name` lines
/// (ids in any order, with gaps, which stay empty labels). Trailing empty lines are dropped.
pub fn load_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading labels {}", path.display()))?;
    parse_labels(&text).with_context(|| format!("labels {}", path.display()))
}

/// [`load_labels`] on text.
pub fn parse_labels(text: &str) -> Result<Vec<String>> {
    // `id<white space>name` on every non-empty line: the id format.
    let ids: Option<Vec<(usize, &str)>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (id, name) = l.split_once(|c: char| c.is_whitespace())?;
            Some((id.parse::<usize>().ok()?, name.trim()))
        })
        .collect();
    if let Some(ids) = ids.filter(|v| !v.is_empty()) {
        let max = ids.iter().map(|x| x.0).max().unwrap_or(0);
        if max >= 100_000 {
            bail!("class id {max} is too large");
        }
        let mut labels = vec![String::new(); max + 1];
        for (id, name) in ids {
            if !labels[id].is_empty() {
                bail!("class id {id} appears twice");
            }
            labels[id] = name.to_string();
        }
        return Ok(labels);
    }
    let mut labels: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_in_both_formats() {
        assert_eq!(
            parse_labels("???\nPerson\nCar\n\n").unwrap(),
            ["???", "Person", "Car"]
        );
        let l = load_labels(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/coco_labels.txt"))
            .unwrap();
        assert_eq!(l.len(), 90);
        assert_eq!(l.iter().filter(|x| !x.is_empty()).count(), 80);
        assert_eq!(l[0], "person");
        assert_eq!(l[2], "car");
        assert_eq!(l[12], "stop sign");
        assert_eq!(l[11], "", "a gap stays empty");
        assert!(parse_labels("1 a\n1 b\n")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        // A plain file whose labels merely start with digits stays plain.
        assert_eq!(parse_labels("3d printer\n2 wheeler\n").unwrap().len(), 2);
    }

    fn repo_desc() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ssd_mobilenetv2_oidv4.json")
    }

    #[test]
    fn loads_repo_description() {
        let d = ModelDesc::load(&repo_desc()).unwrap();
        assert_eq!(d.input.width, 300);
        assert_eq!(d.input.height, 300);
        assert_eq!(d.input.mean, [127.5; 3]);
        assert_eq!(d.score_fn, ScoreFn::Sigmoid);
        assert_eq!(d.box_coder.y_scale, 10.0);
        assert_eq!(d.box_coder.w_scale, 5.0);
        assert_eq!(d.anchors.feature_maps, vec![19, 10, 5, 3, 2, 1]);
        assert_eq!(d.background_class, Some(0));
        assert_eq!(d.num_classes, 24);
        assert_eq!(d.outputs.boxes.index, 0);
        assert_eq!(d.outputs.scores.index, 1);
        let labels = load_labels(&d.labels_path(&repo_desc()).unwrap()).unwrap();
        assert_eq!(labels.len(), 24);
        assert_eq!(labels[4], "Person");
        assert_eq!(labels[20], "Dog");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let text = std::fs::read_to_string(repo_desc()).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["bogus"] = serde_json::json!(1);
        assert!(ModelDesc::from_json(&v.to_string()).is_err());
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["anchors"]["extra"] = serde_json::json!(true);
        assert!(ModelDesc::from_json(&v.to_string()).is_err());
    }

    #[test]
    fn invalid_values_are_errors() {
        let text = std::fs::read_to_string(repo_desc()).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["box_coder"]["h_scale"] = serde_json::json!(0.0);
        assert!(ModelDesc::from_json(&v.to_string()).is_err());
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["anchors"]["num_layers"] = serde_json::json!(5);
        assert!(ModelDesc::from_json(&v.to_string()).is_err());
    }

    #[test]
    fn base_name_convention() {
        for m in [
            "x/ssd_mobilenetv2_oidv4_int8.tflite",
            "x/ssd_mobilenetv2_oidv4_fp32.tflite",
            "x/ssd_mobilenetv2_oidv4_fp16.tflite",
            "x/ssd_mobilenetv2_oidv4_int16.tflite",
            "x/ssd_mobilenetv2_oidv4_dynamic.tflite",
            "x/ssd_mobilenetv2_oidv4_dynamic_legacy.tflite",
            "x/ssd_mobilenetv2_oidv4_weight_only.tflite",
            "x/ssd_mobilenetv2_oidv4.tflite",
        ] {
            assert_eq!(
                model_base_name(Path::new(m)).as_deref(),
                Some("ssd_mobilenetv2_oidv4")
            );
        }
        assert_eq!(
            model_base_name(Path::new("_int8.tflite")).as_deref(),
            Some("_int8")
        );
    }
}
