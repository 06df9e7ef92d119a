//! YOLO-family outputs → detections, outside the graph (exported YOLO detectors end in
//! one raw tensor, without a post-process operator):
//!
//! - **v5** `[1, N, 5 + C]`: per box `cx, cy, w, h, objectness, C class scores`; the score of a
//!   box is objectness × its best class score;
//! - **v8 / v11** `[1, 4 + C, N]`: per box (a column) `cx, cy, w, h, C class scores`, no
//!   objectness; the score is the best class score.
//!
//! Boxes are centre/size, either normalised to the input (0..1) or in input pixels: when any
//! coordinate of a frame exceeds [`PIXEL_COORDS`] the frame's boxes are taken as pixels and
//! divided by the input size. Each box keeps its best class; boxes at or above the score
//! threshold go through class-aware greedy NMS (the crate's one NMS, [`super::nms`]: boxes of
//! different classes never suppress each other), best first, at most `max_detections`.

use anyhow::{bail, Result};

use super::boxes::{ClassNames, Detection, RawOutput, Selector};
use super::nms::{BoxCorners, Candidate};

/// A coordinate above this means the model writes pixels.
pub const PIXEL_COORDS: f32 = 2.0;

/// Which YOLO output layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YoloLayout {
    /// `[1, N, 5 + C]`, with objectness.
    V5,
    /// `[1, 4 + C, N]`, without.
    V8,
}

impl YoloLayout {
    /// `(boxes, classes)` of an output of this layout with `shape`, or an error.
    pub fn dims(self, shape: &[usize]) -> Result<(usize, usize)> {
        if shape.len() != 3 || shape[0] != 1 {
            bail!("a YOLO output must be [1, a, b], got {shape:?}");
        }
        let (a, b) = (shape[1], shape[2]);
        match self {
            YoloLayout::V5 if b > 5 => Ok((a, b - 5)),
            YoloLayout::V8 if a > 4 => Ok((b, a - 4)),
            YoloLayout::V5 => bail!("a YOLOv5 output is [1, N, 5 + C], got {shape:?}"),
            YoloLayout::V8 => bail!("a YOLOv8 output is [1, 4 + C, N], got {shape:?}"),
        }
    }

    /// The layout an output of `shape` has, if it looks like one: more boxes than values per
    /// box tells which axis is which.
    pub fn guess(shape: &[usize]) -> Option<YoloLayout> {
        if shape.len() != 3 || shape[0] != 1 {
            return None;
        }
        let (a, b) = (shape[1], shape[2]);
        if a > b && b > 5 {
            Some(YoloLayout::V5)
        } else if b > a && a > 4 {
            Some(YoloLayout::V8)
        } else {
            None
        }
    }
}

/// Thresholds of the decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YoloParams {
    pub layout: YoloLayout,
    pub boxes: usize,
    pub classes: usize,
    /// Input width and height, for pixel coordinates.
    pub input_w: usize,
    pub input_h: usize,
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_detections: usize,
}

/// Decodes one YOLO output tensor; holds its scratch.
pub struct YoloDecoder {
    params: YoloParams,
    labels: Vec<String>,
    values: Vec<f32>,
    boxes: Vec<BoxCorners>,
    sel: Selector,
    names: ClassNames,
}

impl YoloDecoder {
    pub fn new(params: YoloParams, labels: Vec<String>) -> Self {
        let names = ClassNames::new(&labels, params.classes);
        YoloDecoder {
            labels,
            values: Vec::with_capacity(params.boxes * (params.classes + 5)),
            boxes: Vec::with_capacity(params.boxes),
            sel: Selector::new(params.boxes, params.max_detections),
            names,
            params,
        }
    }

    pub fn params(&self) -> &YoloParams {
        &self.params
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn set_score_threshold(&mut self, t: f32) {
        self.params.score_threshold = t;
    }

    /// Detections of one output, best first, boxes `[ymin, xmin, ymax, xmax]` normalised.
    pub fn decode_into(&mut self, raw: RawOutput<'_>, out: &mut Vec<Detection>) -> Result<()> {
        let p = self.params;
        let per = p.classes + if p.layout == YoloLayout::V5 { 5 } else { 4 };
        self.values.clear();
        raw.dequantize_into(&mut self.values);
        if self.values.len() != p.boxes * per {
            bail!(
                "YOLO output has {} values, expected {} boxes × {per}",
                self.values.len(),
                p.boxes
            );
        }
        let v = &self.values;
        // Value j of box i.
        let at = |i: usize, j: usize| match p.layout {
            YoloLayout::V5 => v[i * per + j],
            YoloLayout::V8 => v[j * p.boxes + i],
        };
        let pixels = (0..p.boxes).any(|i| (0..4).any(|j| at(i, j) > PIXEL_COORDS));
        let (sx, sy) = if pixels {
            (1.0 / p.input_w as f32, 1.0 / p.input_h as f32)
        } else {
            (1.0, 1.0)
        };
        let first_class = if p.layout == YoloLayout::V5 { 5 } else { 4 };
        self.boxes.clear();
        self.sel.cands.clear();
        for i in 0..p.boxes {
            let (cx, cy, w, h) = (at(i, 0) * sx, at(i, 1) * sy, at(i, 2) * sx, at(i, 3) * sy);
            self.boxes
                .push([cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0]);
            // The best class; ties to the lower class id.
            let (mut best, mut class) = (f32::NEG_INFINITY, 0usize);
            for c in 0..p.classes {
                let s = at(i, first_class + c);
                if s > best {
                    (best, class) = (s, c);
                }
            }
            let score = match p.layout {
                YoloLayout::V5 => at(i, 4) * best,
                YoloLayout::V8 => best,
            };
            // (NaN fails this too.)
            if score >= p.score_threshold {
                self.sel.cands.push(Candidate {
                    score,
                    index: i as u32,
                    class: class as u32,
                });
            }
        }
        out.clear();
        self.sel.select(
            &self.boxes,
            p.iou_threshold,
            true,
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

    fn params(layout: YoloLayout, boxes: usize, classes: usize) -> YoloParams {
        YoloParams {
            layout,
            boxes,
            classes,
            input_w: 640,
            input_h: 320,
            score_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 100,
        }
    }

    #[test]
    fn layouts_from_shapes() {
        assert_eq!(YoloLayout::guess(&[1, 25200, 85]), Some(YoloLayout::V5));
        assert_eq!(YoloLayout::guess(&[1, 84, 8400]), Some(YoloLayout::V8));
        assert_eq!(YoloLayout::guess(&[1, 1917, 4]), None);
        assert_eq!(YoloLayout::guess(&[1, 10]), None);
        assert_eq!(YoloLayout::V5.dims(&[1, 25200, 85]).unwrap(), (25200, 80));
        assert_eq!(YoloLayout::V8.dims(&[1, 84, 8400]).unwrap(), (8400, 80));
        assert!(YoloLayout::V8.dims(&[1, 4, 10]).is_err());
    }

    #[test]
    fn v5_objectness_classes_and_class_aware_nms() {
        // Three boxes, two classes, normalised coordinates.
        #[rustfmt::skip]
        let v = [
            // cx   cy   w    h    obj  c0   c1
            0.50, 0.50, 0.20, 0.20, 0.9, 0.9, 0.1, // class 0, score 0.81
            0.51, 0.50, 0.20, 0.20, 0.9, 0.8, 0.1, // overlaps box 0, same class: suppressed
            0.51, 0.51, 0.20, 0.20, 0.8, 0.1, 0.9, // overlaps, other class: kept (0.72)
            0.10, 0.10, 0.05, 0.05, 0.2, 0.9, 0.0, // score 0.18 < 0.25: dropped
        ];
        let mut d = YoloDecoder::new(params(YoloLayout::V5, 4, 2), vec!["a".into(), "b".into()]);
        let mut out = Vec::new();
        d.decode_into(RawOutput::F32(&v), &mut out).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!((out[0].class_id, out[0].label.as_ref()), (0, "a"));
        assert!((out[0].score - 0.81).abs() < 1e-6);
        assert_eq!((out[1].class_id, out[1].label.as_ref()), (1, "b"));
        let b = out[0].bbox;
        for (x, y) in b.iter().zip([0.4, 0.4, 0.6, 0.6]) {
            assert!((x - y).abs() < 1e-6, "{b:?}");
        }
    }

    #[test]
    fn v8_columns_and_pixel_coordinates() {
        // Two boxes as columns, in pixels of a 640×320 input, one class above threshold.
        let boxes = 2;
        #[rustfmt::skip]
        let v = [
            320.0, 100.0, // cx
            160.0, 50.0,  // cy
            64.0, 10.0,   // w
            32.0, 10.0,   // h
            0.7, 0.1,     // class 0
            0.2, 0.3,     // class 1
        ];
        let mut d = YoloDecoder::new(params(YoloLayout::V8, boxes, 2), vec![]);
        let mut out = Vec::new();
        d.decode_into(RawOutput::F32(&v), &mut out).unwrap();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(&*out[0].label, "0", "no labels: the class number");
        assert!((out[0].score - 0.7).abs() < 1e-6);
        let want = [0.45, 0.45, 0.55, 0.55];
        for (x, y) in out[0].bbox.iter().zip(want) {
            assert!((x - y).abs() < 1e-6, "{:?}", out[0].bbox);
        }
        assert_eq!(out[1].class_id, 1);
        // A wrong size is an error, not a panic.
        assert!(d.decode_into(RawOutput::F32(&v[..10]), &mut out).is_err());
    }
}
