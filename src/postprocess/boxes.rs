//! SSD box decoding and the full "raw outputs → detections" path.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::anchors::Anchor;
use super::bbox::{NormBox, PixelBox};
use super::nms::{greedy_nms, sort_candidates, BoxCorners, Candidate};
use crate::preprocess::FrameTransform;

/// Centre/size box coder scales (`ty, tx, th, tw` are divided by these).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxCoder {
    pub y_scale: f32,
    pub x_scale: f32,
    pub h_scale: f32,
    pub w_scale: f32,
}

/// Decode one `(ty, tx, th, tw)` encoding against an anchor into
/// `[ymin, xmin, ymax, xmax]` (normalised). Computed in f64 like TFLite.
#[inline]
pub fn decode_box(enc: &[f32], a: &Anchor, c: &BoxCoder) -> BoxCorners {
    let (ah, aw) = (a.h as f64, a.w as f64);
    let yc = enc[0] as f64 / c.y_scale as f64 * ah + a.yc as f64;
    let xc = enc[1] as f64 / c.x_scale as f64 * aw + a.xc as f64;
    let hh = 0.5 * (enc[2] as f64 / c.h_scale as f64).exp() * ah;
    let hw = 0.5 * (enc[3] as f64 / c.w_scale as f64).exp() * aw;
    let (yc, xc, hh, hw) = (yc as f32, xc as f32, hh as f32, hw as f32);
    [yc - hh, xc - hw, yc + hh, xc + hw]
}

/// A raw model output: float, or quantized with `real = scale * (q - zp)`.
#[derive(Clone, Copy, Debug)]
pub enum RawOutput<'a> {
    F32(&'a [f32]),
    I8 {
        data: &'a [i8],
        scale: f32,
        zero_point: i32,
    },
    U8 {
        data: &'a [u8],
        scale: f32,
        zero_point: i32,
    },
    I16 {
        data: &'a [i16],
        scale: f32,
        zero_point: i32,
    },
}

impl RawOutput<'_> {
    fn len(&self) -> usize {
        match self {
            RawOutput::F32(d) => d.len(),
            RawOutput::I8 { data, .. } => data.len(),
            RawOutput::U8 { data, .. } => data.len(),
            RawOutput::I16 { data, .. } => data.len(),
        }
    }

    /// Dequantize into `out` (cleared and refilled; no reallocation once large enough).
    pub fn dequantize_into(&self, out: &mut Vec<f32>) {
        out.clear();
        match *self {
            RawOutput::F32(d) => out.extend_from_slice(d),
            RawOutput::I8 {
                data,
                scale,
                zero_point,
            } => out.extend(data.iter().map(|&q| (q as i32 - zero_point) as f32 * scale)),
            RawOutput::U8 {
                data,
                scale,
                zero_point,
            } => out.extend(data.iter().map(|&q| (q as i32 - zero_point) as f32 * scale)),
            RawOutput::I16 {
                data,
                scale,
                zero_point,
            } => out.extend(data.iter().map(|&q| (q as i32 - zero_point) as f32 * scale)),
        }
    }
}

/// Score function applied to class outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    Sigmoid,
    Identity,
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decoding parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeParams {
    pub coder: BoxCoder,
    pub scoring: Scoring,
    /// Columns of the class output (background included).
    pub num_classes: usize,
    pub background_class: Option<usize>,
    pub score_threshold: f32,
    pub iou_threshold: f32,
    /// NMS across classes instead of per class.
    pub class_agnostic: bool,
    pub max_detections: usize,
}

/// One detection.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// Column of the class in the model output (background included, so the
    /// same index as the label file line).
    pub class_id: usize,
    /// Shared with the decoder's [`ClassNames`] (no allocation per detection).
    pub label: Arc<str>,
    pub score: f32,
    /// `[ymin, xmin, ymax, xmax]` in normalised model-input coordinates (not clamped).
    pub bbox: NormBox,
}

impl Detection {
    /// The box in source-frame pixels `[x1, y1, x2, y2]`, undoing the resize or
    /// letterbox and clamping to the frame.
    pub fn to_pixels(&self, t: &FrameTransform) -> PixelBox {
        bbox_to_pixels(&self.bbox, t)
    }
}

/// Map a normalised `[ymin, xmin, ymax, xmax]` to source pixels `[x1, y1, x2, y2]`.
pub fn bbox_to_pixels(b: &NormBox, t: &FrameTransform) -> PixelBox {
    let (x1, y1) = t.to_source(b[1], b[0]);
    let (x2, y2) = t.to_source(b[3], b[2]);
    PixelBox([x1, y1, x2, y2])
}

/// The label of class `c`: its line of the label file, or its number where the file is short
/// or has a gap there.
pub fn label_of(labels: &[String], c: usize) -> String {
    match labels.get(c) {
        Some(l) if !l.is_empty() => l.clone(),
        _ => c.to_string(),
    }
}

/// The label of every class id a model can produce, made once from the label file (by
/// [`label_of`]): detections share them, so a frame's detections allocate no label.
#[derive(Clone, Debug, Default)]
pub struct ClassNames(Vec<Arc<str>>);

impl ClassNames {
    /// Names for the class ids `0..max(classes, labels.len())`.
    pub fn new(labels: &[String], classes: usize) -> Self {
        ClassNames(
            (0..classes.max(labels.len()))
                .map(|c| Arc::from(label_of(labels, c)))
                .collect(),
        )
    }

    /// The name of class `c` (its number beyond the model's classes, which decoders never
    /// produce).
    pub fn get(&self, c: usize) -> Arc<str> {
        match self.0.get(c) {
            Some(n) => n.clone(),
            None => Arc::from(c.to_string()),
        }
    }
}

/// The candidates of one frame and greedy NMS's scratch, shared by the SSD and YOLO
/// decoders: they push candidates (`index` into their box list), then [`Selector::select`]
/// sorts them, runs NMS and appends the kept ones as detections.
#[derive(Debug, Default)]
pub(crate) struct Selector {
    pub cands: Vec<Candidate>,
    keep: Vec<Candidate>,
    suppressed: Vec<bool>,
}

impl Selector {
    pub fn new(boxes: usize, max_detections: usize) -> Self {
        Selector {
            cands: Vec::with_capacity(boxes),
            keep: Vec::with_capacity(max_detections),
            suppressed: Vec::with_capacity(boxes),
        }
    }

    /// Sorts the candidates, keeps at most `max_detections` by greedy NMS (per class or
    /// across classes) and appends them to `out`, labelled by `names`.
    pub fn select(
        &mut self,
        boxes: &[BoxCorners],
        iou_threshold: f32,
        per_class: bool,
        max_detections: usize,
        names: &ClassNames,
        out: &mut Vec<Detection>,
    ) {
        sort_candidates(&mut self.cands);
        self.keep.clear();
        greedy_nms(
            &self.cands,
            boxes,
            iou_threshold,
            per_class,
            max_detections,
            &mut self.suppressed,
            &mut self.keep,
        );
        for k in &self.keep {
            let c = k.class as usize;
            out.push(Detection {
                class_id: c,
                label: names.get(c),
                score: k.score,
                bbox: NormBox(boxes[k.index as usize]),
            });
        }
    }
}

/// Decodes raw SSD outputs into detections. Holds the anchors and all scratch
/// buffers; after the first frame `decode` allocates only the label strings
/// of the returned detections.
pub struct Decoder {
    anchors: Vec<Anchor>,
    params: DecodeParams,
    labels: Vec<String>,
    names: ClassNames,
    boxes: Vec<BoxCorners>,
    deq_boxes: Vec<f32>,
    deq_scores: Vec<f32>,
    sel: Selector,
}

impl Decoder {
    pub fn new(anchors: Vec<Anchor>, params: DecodeParams, labels: Vec<String>) -> Result<Self> {
        if anchors.is_empty() {
            bail!("no anchors");
        }
        if params.num_classes == 0 {
            bail!("num_classes must be positive");
        }
        if let Some(b) = params.background_class {
            if b >= params.num_classes || params.num_classes < 2 {
                bail!("background class {b} out of range");
            }
        }
        let n = anchors.len();
        Ok(Decoder {
            boxes: Vec::with_capacity(n),
            deq_boxes: Vec::with_capacity(n * 4),
            deq_scores: Vec::with_capacity(n * params.num_classes),
            sel: Selector::new(n, params.max_detections.min(n)),
            names: ClassNames::new(&labels, params.num_classes),
            anchors,
            params,
            labels,
        })
    }

    pub fn params(&self) -> &DecodeParams {
        &self.params
    }

    pub fn set_score_threshold(&mut self, t: f32) {
        self.params.score_threshold = t;
    }

    pub fn anchors(&self) -> &[Anchor] {
        &self.anchors
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Label of class column `c` (see [`label_of`]).
    pub fn label(&self, c: usize) -> String {
        label_of(&self.labels, c)
    }

    /// Decode box encodings `[N, 4]` and class outputs `[N, C]` (flattened,
    /// batch 1) into detections sorted by decreasing score.
    ///
    /// Per anchor the class is the argmax over non-background columns (first
    /// wins on ties); its score must be `>= score_threshold`; then greedy NMS
    /// (per class unless `class_agnostic`) keeps at most `max_detections`.
    pub fn decode(
        &mut self,
        boxes: RawOutput<'_>,
        scores: RawOutput<'_>,
    ) -> Result<Vec<Detection>> {
        let mut out = Vec::new();
        self.decode_into(boxes, scores, &mut out)?;
        Ok(out)
    }

    /// Like [`Self::decode`], appending to `out` after clearing it.
    pub fn decode_into(
        &mut self,
        boxes: RawOutput<'_>,
        scores: RawOutput<'_>,
        out: &mut Vec<Detection>,
    ) -> Result<()> {
        out.clear();
        let n = self.anchors.len();
        let nc = self.params.num_classes;
        if boxes.len() != n * 4 {
            bail!(
                "box output has {} values, expected {} anchors x 4",
                boxes.len(),
                n
            );
        }
        if scores.len() != n * nc {
            bail!(
                "class output has {} values, expected {} anchors x {} classes",
                scores.len(),
                n,
                nc
            );
        }
        boxes.dequantize_into(&mut self.deq_boxes);
        scores.dequantize_into(&mut self.deq_scores);
        let p = &self.params;
        self.boxes.clear();
        self.sel.cands.clear();
        for (i, (enc, a)) in self
            .deq_boxes
            .chunks_exact(4)
            .zip(&self.anchors)
            .enumerate()
        {
            self.boxes.push(decode_box(enc, a, &p.coder));
            let row = &self.deq_scores[i * nc..(i + 1) * nc];
            let mut best: Option<(usize, f32)> = None;
            for (c, &v) in row.iter().enumerate() {
                if Some(c) == p.background_class {
                    continue;
                }
                let s = match p.scoring {
                    Scoring::Sigmoid => sigmoid(v),
                    Scoring::Identity => v,
                };
                if best.is_none_or(|(_, b)| s > b) {
                    best = Some((c, s));
                }
            }
            if let Some((c, s)) = best {
                if s >= p.score_threshold {
                    self.sel.cands.push(Candidate {
                        score: s,
                        index: i as u32,
                        class: c as u32,
                    });
                }
            }
        }
        self.sel.select(
            &self.boxes,
            p.iou_threshold,
            !p.class_agnostic,
            p.max_detections,
            &self.names,
            out,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODER: BoxCoder = BoxCoder {
        y_scale: 10.0,
        x_scale: 10.0,
        h_scale: 5.0,
        w_scale: 5.0,
    };

    fn anchor(yc: f32, xc: f32, h: f32, w: f32) -> Anchor {
        Anchor { yc, xc, h, w }
    }

    #[test]
    fn decode_zero_encoding_is_the_anchor() {
        let b = decode_box(&[0.0; 4], &anchor(0.5, 0.25, 0.2, 0.4), &CODER);
        let want = [0.4, 0.05, 0.6, 0.45];
        for k in 0..4 {
            assert!((b[k] - want[k]).abs() < 1e-6);
        }
    }

    #[test]
    fn decode_shift_and_scale() {
        // ty = 10 -> shift by one anchor height; th = 5*ln2 -> doubles height
        let b = decode_box(
            &[10.0, -5.0, 5.0 * 2f32.ln(), 0.0],
            &anchor(0.5, 0.5, 0.1, 0.2),
            &CODER,
        );
        let want = [0.5, 0.3, 0.7, 0.5];
        for k in 0..4 {
            assert!((b[k] - want[k]).abs() < 1e-6, "{b:?}");
        }
    }

    fn params(agnostic: bool) -> DecodeParams {
        DecodeParams {
            coder: CODER,
            scoring: Scoring::Sigmoid,
            num_classes: 3,
            background_class: Some(0),
            score_threshold: 0.5,
            iou_threshold: 0.45,
            class_agnostic: agnostic,
            max_detections: 10,
        }
    }

    #[test]
    fn decoder_end_to_end() {
        let anchors = vec![
            anchor(0.5, 0.5, 0.2, 0.2),
            anchor(0.5, 0.51, 0.2, 0.2),
            anchor(0.2, 0.2, 0.1, 0.1),
            anchor(0.8, 0.8, 0.1, 0.1),
        ];
        let labels = vec!["bg".to_string(), "a".to_string(), "b".to_string()];
        let boxes = [0f32; 16];
        // logits: background huge on anchor 3 (must be ignored), anchor 2 below threshold
        let scores = [
            0.0, 3.0, 1.0, // a, 0.95
            0.0, 1.0, 2.0, // b, 0.88, overlaps anchor 0
            0.0, -1.0, -2.0, // below threshold
            9.0, -3.0, -0.5, // b 0.38 < 0.5
        ];
        let mut d = Decoder::new(anchors.clone(), params(false), labels.clone()).unwrap();
        let det = d
            .decode(RawOutput::F32(&boxes), RawOutput::F32(&scores))
            .unwrap();
        assert_eq!(det.len(), 2);
        assert_eq!((det[0].class_id, det[0].label.as_ref()), (1, "a"));
        assert!((det[0].score - sigmoid(3.0)).abs() < 1e-7);
        assert_eq!(det[1].class_id, 2);
        let mut d = Decoder::new(anchors, params(true), labels).unwrap();
        let det = d
            .decode(RawOutput::F32(&boxes), RawOutput::F32(&scores))
            .unwrap();
        assert_eq!(det.len(), 1);
        // quantized input gives the same result
        let q: Vec<i8> = scores.iter().map(|&v| (v * 2.0) as i8 + 1).collect();
        let det2 = d
            .decode(
                RawOutput::F32(&boxes),
                RawOutput::I8 {
                    data: &q,
                    scale: 0.5,
                    zero_point: 1,
                },
            )
            .unwrap();
        assert_eq!(det, det2);
        // wrong sizes are errors
        assert!(d
            .decode(RawOutput::F32(&boxes[..8]), RawOutput::F32(&scores))
            .is_err());
    }

    #[test]
    fn pixels_of_a_stretched_frame() {
        let t = FrameTransform {
            src_w: 600,
            src_h: 300,
            dst_w: 300,
            dst_h: 300,
            scale_x: 0.5,
            scale_y: 1.0,
            pad_x: 0.0,
            pad_y: 0.0,
        };
        let d = Detection {
            class_id: 1,
            label: "a".into(),
            score: 0.9,
            bbox: crate::postprocess::NormBox([0.1, 0.2, 0.5, 1.2]),
        };
        let px = d.to_pixels(&t);
        for (a, b) in px.iter().zip([120.0, 30.0, 600.0, 150.0]) {
            assert!((a - b).abs() < 1e-3, "{px:?}");
        }
    }
}
