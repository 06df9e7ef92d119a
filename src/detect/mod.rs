//! Stage: detection — runs the engine on a frame and decodes SSD outputs.
//!
//! [`Detector`] owns the interpreter, the preprocessing scratch, the anchors
//! and the model description; `detect` turns an RGB frame into detections.
//! The description ([`model_desc::ModelDesc`]) is a JSON file next to the model.

pub mod model_desc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;

pub use crate::config::ModelType;
use crate::engine::graph as tflite_graph;
use crate::engine::tensor::TensorRef;
use crate::engine::{tflite, DType, Interpreter, InterpreterOptions};
use crate::postprocess::anchors;
use crate::postprocess::yolo::{YoloDecoder, YoloLayout, YoloParams};
use crate::postprocess::{BoxCoder, DecodeParams, Decoder, Detection, RawOutput, Scoring};
use crate::preprocess::{FrameTransform, InputKind, Preprocessor, ResizeMode};
use model_desc::{desc_path_for_model, load_labels, parse_labels, Colour, ModelDesc, ScoreFn};

/// View a (possibly quantized) output tensor as a [`RawOutput`].
pub fn raw_output<'a>(t: &TensorRef<'a>) -> Result<RawOutput<'a>> {
    let q = || -> Result<(f32, i32)> {
        let q = t
            .quant()
            .ok_or_else(|| anyhow!("tensor '{}' is quantized without parameters", t.info.name))?;
        if !q.is_per_tensor() {
            bail!("tensor '{}' must be quantized per tensor", t.info.name);
        }
        Ok((q.scale0(), q.zp0()))
    };
    Ok(match t.dtype() {
        DType::F32 => RawOutput::F32(t.f32().map_err(|e| anyhow!(e.0))?),
        DType::I8 => {
            let (scale, zero_point) = q()?;
            RawOutput::I8 {
                data: t.i8().map_err(|e| anyhow!(e.0))?,
                scale,
                zero_point,
            }
        }
        DType::U8 => {
            let (scale, zero_point) = q()?;
            RawOutput::U8 {
                data: t.u8().map_err(|e| anyhow!(e.0))?,
                scale,
                zero_point,
            }
        }
        DType::I16 => {
            let (scale, zero_point) = q()?;
            RawOutput::I16 {
                data: t.i16().map_err(|e| anyhow!(e.0))?,
                scale,
                zero_point,
            }
        }
        d => bail!("output '{}' has unsupported type {}", t.info.name, d.name()),
    })
}

/// Build the SSD decoder (anchors + thresholds) of a description.
pub fn decoder_for(desc: &ModelDesc, labels: Vec<String>) -> Result<Decoder> {
    let anchors = anchors::generate(&desc.anchors)?;
    let c = &desc.box_coder;
    Decoder::new(
        anchors,
        DecodeParams {
            coder: BoxCoder {
                y_scale: c.y_scale,
                x_scale: c.x_scale,
                h_scale: c.h_scale,
                w_scale: c.w_scale,
            },
            scoring: match desc.score_fn {
                ScoreFn::Sigmoid => Scoring::Sigmoid,
                ScoreFn::Identity => Scoring::Identity,
            },
            num_classes: desc.num_classes,
            background_class: desc.background_class,
            score_threshold: desc.score_threshold,
            iou_threshold: desc.nms_iou_threshold,
            class_agnostic: desc.class_agnostic_nms,
            max_detections: desc.max_detections,
        },
        labels,
    )
}

/// Where to find a detector's files.
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// Explicit description; default: by convention next to the model.
    pub desc: Option<PathBuf>,
    /// Explicit label file; default: the description's `labels`.
    pub labels: Option<PathBuf>,
    pub resize: ResizeMode,
    /// Overrides the description's score threshold.
    pub score_threshold: Option<f32>,
    /// Engine options (kernel path, threads, pinning).
    pub engine: InterpreterOptions,
    /// How the outputs are read (`auto`: see [`Detector::from_config`]).
    pub model_type: ModelType,
}

impl DetectorConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        DetectorConfig {
            model: model.into(),
            desc: None,
            labels: None,
            resize: ResizeMode::Stretch,
            score_threshold: None,
            engine: InterpreterOptions::default(),
            model_type: ModelType::Auto,
        }
    }
}

/// How a detector's outputs become detections.
enum Head {
    /// Raw SSD outputs (box encodings, class logits) decoded with the description's anchors.
    Raw {
        desc: Box<ModelDesc>,
        decoder: Box<Decoder>,
        boxes_out: usize,
        scores_out: usize,
    },
    /// The graph ends in TFLite_Detection_PostProcess: boxes `[1, M, 4]` (ymin, xmin, ymax,
    /// xmax, normalised), classes `[1, M]`, scores `[1, M]` and the count `[1]`.
    PostProcess {
        outs: [usize; 4],
        labels: Vec<String>,
        names: crate::postprocess::boxes::ClassNames,
        score_threshold: f32,
    },
    /// One YOLO output tensor, decoded with class-aware NMS outside the graph.
    Yolo {
        out: usize,
        decoder: Box<YoloDecoder>,
    },
}

/// A ready-to-run SSD detector.
pub struct Detector {
    interp: Interpreter,
    head: Head,
    name: String,
    pre: Preprocessor,
    input_kind: InputKind,
    transform: FrameTransform,
    inference: Duration,
}

/// The graph outputs written by a TFLite_Detection_PostProcess node, in its order (boxes,
/// classes, scores, count), when all four are graph outputs: the model describes itself.
pub fn postprocess_outputs(g: &crate::engine::Graph) -> Option<[usize; 4]> {
    let node = g.nodes.iter().find(|n| {
        matches!(n.op, crate::engine::graph::Op::DetectionPostProcess(_)) && n.outputs.len() == 4
    })?;
    let mut outs = [0usize; 4];
    for (k, t) in node.outputs.iter().enumerate() {
        outs[k] = g.outputs.iter().position(|o| o == t)?;
    }
    Some(outs)
}

/// How a model's first input maps pixels when no description says. SSD: a uint8 input takes
/// the pixels as they are (its quantization holds the normalisation), an int8 input the pixels
/// minus 128, a float input `(p − 127.5) / 127.5` (the common [-1, 1] of SSD exports). YOLO
/// (`unit`): `p / 255` whatever the type (a quantized input quantizes that).
fn input_from_tensor(
    info: &crate::engine::TensorInfo,
    unit: bool,
) -> Result<(usize, usize, [f32; 3], [f32; 3])> {
    let s = &info.shape;
    if s.len() != 4 || s[0] != 1 || s[3] != 3 {
        bail!(
            "model input '{}' has shape {:?}, expected [1, height, width, 3]",
            info.name,
            s
        );
    }
    let q = info.quant.as_ref().filter(|q| q.is_per_tensor());
    if unit {
        if info.dtype != DType::F32 && q.is_none() {
            bail!(
                "model input '{}' of type {} needs quantization parameters",
                info.name,
                info.dtype.name()
            );
        }
        return Ok((s[2], s[1], [0.0; 3], [255.0; 3]));
    }
    let (mean, std) = match (info.dtype, q) {
        (DType::U8, Some(q)) => (q.zp0() as f32, 1.0 / q.scale0()),
        (DType::I8, Some(q)) => (q.zp0() as f32 + 128.0, 1.0 / q.scale0()),
        (DType::F32, _) | (DType::I16, Some(_)) => (127.5, 127.5),
        (d, _) => bail!(
            "model input '{}' of type {} needs quantization parameters",
            info.name,
            d.name()
        ),
    };
    Ok((s[2], s[1], [mean; 3], [std; 3]))
}

/// The labels of a model and where they came from: `--labels` / `detector.labels`
/// when given, else the label file packed in the model's TFLite metadata, else
/// none (detections then carry class numbers).
fn labels_for(cfg: &DetectorConfig, graph: &tflite_graph::Graph) -> Result<(Vec<String>, String)> {
    if let Some(p) = &cfg.labels {
        return Ok((load_labels(p)?, p.display().to_string()));
    }
    let model = cfg.model.display();
    let Some(file) = tflite::metadata::embedded_labels(graph.bytes.as_bytes())
        .with_context(|| format!("reading the labels embedded in {model}"))?
    else {
        return Ok((Vec::new(), "(none)".into()));
    };
    let labels = parse_labels(&file.text)
        .with_context(|| format!("labels {} embedded in {model}", file.name))?;
    tracing::info!(
        model = %model,
        file = %file.name,
        classes = labels.len(),
        "labels from the model's metadata"
    );
    Ok((labels, format!("{} (embedded in the model)", file.name)))
}

impl Detector {
    /// Load the model, its description and labels.
    pub fn from_config(cfg: &DetectorConfig) -> Result<Self> {
        let name = cfg
            .model
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_string();
        let graph = tflite::load_file(&cfg.model)
            .with_context(|| format!("loading {}", cfg.model.display()))?;
        let kind = match cfg.model_type {
            ModelType::Auto => {
                let (kind, why) = auto_model_type(cfg, &graph)?;
                if kind != ModelType::Ssd {
                    tracing::info!(
                        model = %cfg.model.display(),
                        model_type = kind.name(),
                        "model_type auto: {why}"
                    );
                }
                kind
            }
            k => k,
        };
        match kind {
            ModelType::SsdPostprocess => {
                let (labels, labels_from) = labels_for(cfg, &graph)?;
                let interp = Interpreter::with_options(graph, &cfg.engine)?;
                Self::with_postprocess(
                    interp,
                    labels,
                    name,
                    cfg.resize,
                    cfg.score_threshold.unwrap_or(0.5),
                )
                .with_context(|| format!("{} with labels {labels_from}", cfg.model.display()))
            }
            ModelType::Yolov5 | ModelType::Yolov8 => {
                let (labels, labels_from) = labels_for(cfg, &graph)?;
                let layout = if kind == ModelType::Yolov5 {
                    YoloLayout::V5
                } else {
                    YoloLayout::V8
                };
                let interp = Interpreter::with_options(graph, &cfg.engine)?;
                Self::with_yolo(
                    interp,
                    layout,
                    labels,
                    name,
                    cfg.resize,
                    cfg.score_threshold.unwrap_or(0.25),
                )
                .with_context(|| format!("{} with labels {labels_from}", cfg.model.display()))
            }
            ModelType::Ssd | ModelType::Auto => {
                let desc_path = match &cfg.desc {
                    Some(p) => p.clone(),
                    None => desc_path_for_model(&cfg.model)?,
                };
                let mut desc = ModelDesc::load(&desc_path)?;
                if let Some(t) = cfg.score_threshold {
                    desc.score_threshold = t;
                }
                let labels = match (&cfg.labels, desc.labels_path(&desc_path)) {
                    (Some(p), _) => load_labels(p)?,
                    (None, Some(p)) => load_labels(&p)?,
                    (None, None) => labels_for(cfg, &graph)?.0,
                };
                let interp = Interpreter::with_options(graph, &cfg.engine)?;
                Self::new(interp, desc, labels, name, cfg.resize).with_context(|| {
                    format!(
                        "{} with the description {}",
                        cfg.model.display(),
                        desc_path.display()
                    )
                })
            }
        }
    }

    /// Wrap an interpreter whose graph ends in one YOLO output (`layout`): input size from the
    /// input tensor, pixels scaled to 0..1.
    pub fn with_yolo(
        interp: Interpreter,
        layout: YoloLayout,
        labels: Vec<String>,
        name: String,
        resize: ResizeMode,
        score_threshold: f32,
    ) -> Result<Self> {
        let out = (0..interp.output_count())
            .find(|&k| {
                interp
                    .output_info(k)
                    .is_ok_and(|i| layout.dims(&i.shape).is_ok())
            })
            .ok_or_else(|| {
                let shapes: Vec<Vec<usize>> = (0..interp.output_count())
                    .filter_map(|k| interp.output_info(k).ok().map(|i| i.shape.clone()))
                    .collect();
                anyhow!("no output has the shape of a {layout:?} YOLO output (outputs {shapes:?})")
            })?;
        let (boxes, classes) = layout.dims(&interp.output_info(out)?.shape)?;
        if !labels.is_empty() && labels.len() < classes {
            bail!(
                "the labels name {} classes, the model's YOLO output has {classes}",
                labels.len()
            );
        }
        let info = interp.input_info(0)?.clone();
        let (w, h, mean, std) = input_from_tensor(&info, true)?;
        let input_kind = input_kind(&info)?;
        let pre = Preprocessor::new(w, h, mean, std, false, resize)?;
        let transform = pre.transform();
        let decoder = YoloDecoder::new(
            YoloParams {
                layout,
                boxes,
                classes,
                input_w: w,
                input_h: h,
                score_threshold,
                iou_threshold: 0.45,
                max_detections: 100,
            },
            labels,
        );
        Ok(Detector {
            interp,
            head: Head::Yolo {
                out,
                decoder: Box::new(decoder),
            },
            name,
            pre,
            input_kind,
            transform,
            inference: Duration::ZERO,
        })
    }

    /// Wrap an interpreter whose graph ends in TFLite_Detection_PostProcess: input size and
    /// normalisation come from the input tensor, detections from the operator's outputs.
    /// `labels` (may be empty: class numbers then) must cover the operator's classes.
    pub fn with_postprocess(
        interp: Interpreter,
        labels: Vec<String>,
        name: String,
        resize: ResizeMode,
        score_threshold: f32,
    ) -> Result<Self> {
        let outs = postprocess_outputs(interp.graph())
            .ok_or_else(|| anyhow!("the model does not end in TFLite_Detection_PostProcess"))?;
        let classes = interp
            .graph()
            .nodes
            .iter()
            .find_map(|n| match &n.op {
                crate::engine::graph::Op::DetectionPostProcess(o) => Some(o.num_classes),
                _ => None,
            })
            .unwrap_or(0);
        if !labels.is_empty() && labels.len() < classes {
            bail!(
                "the labels name {} classes, the model's TFLite_Detection_PostProcess has {classes}",
                labels.len()
            );
        }
        let info = interp.input_info(0)?.clone();
        let (w, h, mean, std) = input_from_tensor(&info, false)?;
        let input_kind = input_kind(&info)?;
        let pre = Preprocessor::new(w, h, mean, std, false, resize)?;
        let transform = pre.transform();
        Ok(Detector {
            interp,
            head: Head::PostProcess {
                outs,
                names: crate::postprocess::boxes::ClassNames::new(&labels, classes),
                labels,
                score_threshold,
            },
            name,
            pre,
            input_kind,
            transform,
            inference: Duration::ZERO,
        })
    }

    /// Wrap a prepared interpreter; checks it against the description.
    pub fn new(
        interp: Interpreter,
        desc: ModelDesc,
        labels: Vec<String>,
        name: String,
        resize: ResizeMode,
    ) -> Result<Self> {
        desc.validate()?;
        let i = &desc.input;
        let info = interp.input_info(0)?;
        if info.shape != [1, i.height, i.width, 3] {
            bail!(
                "model input '{}' has shape {:?}, the description says [1, {}, {}, 3]",
                info.name,
                info.shape,
                i.height,
                i.width
            );
        }
        let input_kind = input_kind(info)?;
        let find = |r: &model_desc::OutputRef| -> Result<usize> {
            match interp.output_index(&r.name) {
                Ok(k) => Ok(k),
                Err(_) if r.index < interp.output_count() => Ok(r.index),
                Err(_) => bail!("model has no output '{}' (index {})", r.name, r.index),
            }
        };
        let boxes_out = find(&desc.outputs.boxes)?;
        let scores_out = find(&desc.outputs.scores)?;
        let n = desc.anchors.num_anchors;
        let bshape = &interp.output_info(boxes_out)?.shape;
        let sshape = &interp.output_info(scores_out)?.shape;
        if bshape[..] != [1, n, 4] || sshape[..] != [1, n, desc.num_classes] {
            bail!(
                "model outputs {:?} / {:?} do not match the description ({} anchors, {} classes)",
                bshape,
                sshape,
                n,
                desc.num_classes
            );
        }
        let pre = Preprocessor::new(
            i.width,
            i.height,
            i.mean,
            i.std,
            i.colour == Colour::Bgr,
            resize,
        )?;
        let decoder = decoder_for(&desc, labels)?;
        let transform = pre.transform();
        Ok(Detector {
            interp,
            head: Head::Raw {
                desc: Box::new(desc),
                decoder: Box::new(decoder),
                boxes_out,
                scores_out,
            },
            name,
            pre,
            input_kind,
            transform,
            inference: Duration::ZERO,
        })
    }

    pub fn labels(&self) -> &[String] {
        match &self.head {
            Head::Raw { decoder, .. } => decoder.labels(),
            Head::PostProcess { labels, .. } => labels,
            Head::Yolo { decoder, .. } => decoder.labels(),
        }
    }

    /// How this detector reads its outputs.
    pub fn model_type(&self) -> ModelType {
        match &self.head {
            Head::Raw { .. } => ModelType::Ssd,
            Head::PostProcess { .. } => ModelType::SsdPostprocess,
            Head::Yolo { decoder, .. } => match decoder.params().layout {
                YoloLayout::V5 => ModelType::Yolov5,
                YoloLayout::V8 => ModelType::Yolov8,
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The description of a raw-output model (`None`: the model ends in
    /// TFLite_Detection_PostProcess and has no raw outputs).
    pub fn desc(&self) -> Option<&ModelDesc> {
        match &self.head {
            Head::Raw { desc, .. } => Some(desc),
            Head::PostProcess { .. } | Head::Yolo { .. } => None,
        }
    }

    pub fn interpreter(&self) -> &Interpreter {
        &self.interp
    }

    /// Transform of the last frame (to map boxes back to its pixels).
    pub fn transform(&self) -> FrameTransform {
        self.transform
    }

    /// Duration of the last `invoke`.
    pub fn inference_time(&self) -> Duration {
        self.inference
    }

    /// A model that decodes itself (TFLite_Detection_PostProcess): the detections of its last
    /// run scoring at least `threshold` (which may be below the detector's own), into `out`;
    /// `Ok(false)` for other models (their raw outputs are read instead).
    pub fn postprocess_detections(&self, threshold: f32, out: &mut Vec<Detection>) -> Result<bool> {
        match &self.head {
            Head::PostProcess { outs, names, .. } => {
                postprocess_read(&self.interp, outs, names, threshold, out)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub fn set_score_threshold(&mut self, t: f32) {
        match &mut self.head {
            Head::Raw { decoder, .. } => decoder.set_score_threshold(t),
            Head::PostProcess {
                score_threshold, ..
            } => *score_threshold = t,
            Head::Yolo { decoder, .. } => decoder.set_score_threshold(t),
        }
    }

    /// Preprocess `img`, run the model and decode its outputs.
    pub fn detect(&mut self, img: &RgbImage) -> Result<Vec<Detection>> {
        let mut out = Vec::new();
        self.detect_into(img, &mut out)?;
        Ok(out)
    }

    /// Like [`Self::detect`], reusing `out`.
    pub fn detect_into(&mut self, img: &RgbImage, out: &mut Vec<Detection>) -> Result<()> {
        let kind = self.input_kind;
        let buf = self.interp.input_bytes_mut(0)?;
        self.transform = self.pre.to_bytes(img, kind, buf)?;
        let t0 = Instant::now();
        self.interp.invoke()?;
        self.inference = t0.elapsed();
        match &mut self.head {
            Head::Raw {
                decoder,
                boxes_out,
                scores_out,
                ..
            } => {
                let b = self.interp.output(*boxes_out)?;
                let s = self.interp.output(*scores_out)?;
                decoder.decode_into(raw_output(&b)?, raw_output(&s)?, out)
            }
            Head::PostProcess {
                outs,
                names,
                score_threshold,
                ..
            } => postprocess_read(&self.interp, outs, names, *score_threshold, out),
            Head::Yolo { out: o, decoder } => {
                let t = self.interp.output(*o)?;
                decoder.decode_into(raw_output(&t)?, out)
            }
        }
    }
}

/// The detections a TFLite_Detection_PostProcess node wrote (graph outputs `outs`: boxes,
/// classes, scores, count) scoring at least `threshold`, into `out`.
fn postprocess_read(
    interp: &Interpreter,
    outs: &[usize; 4],
    names: &crate::postprocess::boxes::ClassNames,
    threshold: f32,
    out: &mut Vec<Detection>,
) -> Result<()> {
    out.clear();
    let f = |k: usize| -> Result<&[f32]> {
        let t = interp.output(outs[k])?;
        t.f32().map_err(|e| anyhow!(e.0))
    };
    let (boxes, classes, scores) = (f(0)?, f(1)?, f(2)?);
    let count = f(3)?.first().copied().unwrap_or(0.0);
    let n = (count.max(0.0) as usize)
        .min(scores.len())
        .min(boxes.len() / 4);
    for i in 0..n {
        // (A NaN score is no detection.)
        if scores[i].is_nan() || scores[i] < threshold {
            continue;
        }
        let c = classes[i].max(0.0) as usize;
        let b = &boxes[4 * i..4 * i + 4];
        out.push(Detection {
            class_id: c,
            label: names.get(c),
            score: scores[i],
            bbox: crate::postprocess::NormBox([b[0], b[1], b[2], b[3]]),
        });
    }
    Ok(())
}

/// `auto`: what `cfg`'s model is, and why.
fn auto_model_type(
    cfg: &DetectorConfig,
    graph: &crate::engine::Graph,
) -> Result<(ModelType, String)> {
    if cfg.desc.is_some() {
        return Ok((ModelType::Ssd, "a description was given".into()));
    }
    if postprocess_outputs(graph).is_some() {
        return Ok((
            ModelType::SsdPostprocess,
            "the graph ends in TFLite_Detection_PostProcess".into(),
        ));
    }
    if desc_path_for_model(&cfg.model).is_ok() {
        return Ok((ModelType::Ssd, "a description file is next to it".into()));
    }
    let shapes: Vec<&[usize]> = graph
        .outputs
        .iter()
        .map(|&t| graph.tensors[t].shape.as_slice())
        .collect();
    if let [shape] = shapes[..] {
        match YoloLayout::guess(shape) {
            Some(YoloLayout::V5) => {
                return Ok((
                    ModelType::Yolov5,
                    format!("one output {shape:?} = [1, boxes, 5 + classes]"),
                ))
            }
            Some(YoloLayout::V8) => {
                return Ok((
                    ModelType::Yolov8,
                    format!("one output {shape:?} = [1, 4 + classes, boxes]"),
                ))
            }
            None => {}
        }
    }
    bail!(
        "cannot tell how to read {}: no description file ({}), no TFLite_Detection_PostProcess, \
         and its outputs {shapes:?} are not one YOLO output; pass --desc or set \
         detector.model_type",
        cfg.model.display(),
        desc_path_for_model(&cfg.model)
            .err()
            .map_or(String::new(), |e| e.to_string())
    )
}

/// How the preprocessor fills a model's first input.
fn input_kind(info: &crate::engine::TensorInfo) -> Result<InputKind> {
    Ok(match info.dtype {
        DType::F32 => InputKind::F32,
        DType::I8 | DType::U8 | DType::I16 => {
            let q = info
                .quant
                .as_ref()
                .filter(|q| q.is_per_tensor())
                .ok_or_else(|| anyhow!("quantized input without per-tensor parameters"))?;
            let (scale, zero_point) = (q.scale0(), q.zp0());
            if info.dtype == DType::I16 {
                InputKind::I16 { scale, zero_point }
            } else if info.dtype == DType::I8 {
                InputKind::I8 { scale, zero_point }
            } else {
                InputKind::U8 { scale, zero_point }
            }
        }
        d => bail!("unsupported model input type {}", d.name()),
    })
}

/// The `edgecam detect` JSON record of one image: boxes in image pixels
/// `[x1, y1, x2, y2]`.
pub fn detections_json(
    image: &str,
    width: u32,
    height: u32,
    model: &str,
    inference_ms: f64,
    detections: &[Detection],
    transform: &FrameTransform,
) -> serde_json::Value {
    let objects: Vec<serde_json::Value> = detections
        .iter()
        .map(|d| {
            serde_json::json!({
                "label": &*d.label,
                "class_id": d.class_id,
                "score": d.score,
                "box": d.to_pixels(transform),
            })
        })
        .collect();
    serde_json::json!({
        "image": image,
        "width": width,
        "height": height,
        "model": model,
        "inference_ms": inference_ms,
        "objects": objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_record_has_pixel_boxes() {
        let t = FrameTransform {
            src_w: 600,
            src_h: 400,
            dst_w: 300,
            dst_h: 300,
            scale_x: 0.5,
            scale_y: 0.75,
            pad_x: 0.0,
            pad_y: 0.0,
        };
        let d = Detection {
            class_id: 4,
            label: "Person".into(),
            score: 0.75,
            bbox: crate::postprocess::NormBox([0.25, 0.5, 0.75, 1.0]),
        };
        let v = detections_json("a.jpg", 600, 400, "m", 1.5, &[d], &t);
        assert_eq!(v["image"], "a.jpg");
        assert_eq!(v["width"], 600);
        assert_eq!(v["height"], 400);
        assert_eq!(v["model"], "m");
        assert_eq!(v["inference_ms"], 1.5);
        let o = &v["objects"][0];
        assert_eq!(o["label"], "Person");
        assert_eq!(o["class_id"], 4);
        assert_eq!(o["score"], 0.75);
        let b: Vec<f64> = o["box"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(b, vec![300.0, 100.0, 600.0, 300.0]);
    }
}
