//! The `TFLite_Detection_PostProcess` custom operator (SSD box decoding + NMS).
//!
//! Inputs: box encodings `[1, N, >=4]` as `(y, x, h, w)` (extra keypoint
//! coordinates are ignored), class predictions `[1, N, C]` where
//! `C = num_classes` or `num_classes + 1` (a leading background column, which
//! is skipped), anchors `[N, 4]` as `(yc, xc, h, w)`. Each may be float32 or
//! per-tensor quantized uint8/int8 (dequantized as `(q - zp) * scale`).
//!
//! Outputs (float32): boxes `[1, M, 4]` as `(ymin, xmin, ymax, xmax)`, classes
//! `[1, M]` (0-based, background excluded), scores `[1, M]`, and the number of
//! detections `[1]`, with `M = max_detections * max_classes_per_detection`.
//! Unused entries are zero.
//!
//! Semantics follow TFLite:
//! - decoding: `yc = ty / y_scale * ha + ya`, `h = exp(th / h_scale) * ha`
//!   (in f64), corners `yc ± h/2`; a decoded box with `ymin > ymax` or
//!   `xmin > xmax` is an error;
//! - single-class NMS: keep scores `>= nms_score_threshold`, visit in
//!   decreasing score order (ties: lower anchor first), suppress a later box
//!   whose IoU with the kept one is `> nms_iou_threshold`, stop after the
//!   per-call limit;
//! - fast (`use_regular_nms = false`): per anchor the best
//!   `min(max_classes_per_detection, num_classes)` classes (ties: lower class
//!   first), NMS on each anchor's best score across classes with limit
//!   `max_detections`; detection `k` fills entries
//!   `k * max_classes_per_detection + j`;
//! - regular: NMS per class with limit `detections_per_class`, merged after
//!   each class into a running list sorted by decreasing score (ties: earlier
//!   entry first — TFLite's partial sort leaves that unspecified), truncated to
//!   `max_detections`.
//!
//! IoU, the candidate order and the greedy suppression are the crate's one
//! definition in [`crate::postprocess::nms`], which follows this kernel's
//! reference arithmetic and tie-breaking (it is a leaf module, so the engine
//! importing it makes no cycle).
//!
//! All scratch is allocated in `build`; `eval` does not allocate.

use super::{BuildCtx, Kernel, OpIo};
use crate::engine::error::{OpError, OpResult};
use crate::engine::graph::{DetectionPostProcessOptions, Node};
use crate::engine::tensor::{DType, TensorInfo, TensorRef};
use crate::op_bail;
use crate::postprocess::nms::{greedy_nms, sort_candidates, BoxCorners, Candidate};

/// How to read a (possibly quantized) input as f32.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Elem {
    F32,
    U8 { scale: f32, zp: i32 },
    I8 { scale: f32, zp: i32 },
}

fn elem_of(info: &TensorInfo, what: &str) -> OpResult<Elem> {
    let q = || -> OpResult<(f32, i32)> {
        let q = info.quant.as_ref().ok_or_else(|| {
            OpError(format!(
                "{what} '{}' is quantized without parameters",
                info.name
            ))
        })?;
        if !q.is_per_tensor() || q.zero_point.len() > 1 {
            op_bail!("{what} '{}' must be quantized per tensor", info.name);
        }
        let s = q.scale0();
        if !(s.is_finite() && s > 0.0) {
            op_bail!("{what} '{}' has a bad scale {s}", info.name);
        }
        Ok((s, q.zp0()))
    };
    match info.dtype {
        DType::F32 => Ok(Elem::F32),
        DType::U8 => {
            let (scale, zp) = q()?;
            Ok(Elem::U8 { scale, zp })
        }
        DType::I8 => {
            let (scale, zp) = q()?;
            Ok(Elem::I8 { scale, zp })
        }
        d => op_bail!("{what} '{}' has unsupported type {}", info.name, d.name()),
    }
}

/// Dequantize `t` (of kind `e`) into `out`, which has exactly the element count.
fn read_f32(t: &TensorRef<'_>, e: Elem, out: &mut [f32]) -> OpResult<()> {
    match e {
        Elem::F32 => {
            let d = t.f32()?;
            if d.len() != out.len() {
                op_bail!("float input has the wrong size");
            }
            out.copy_from_slice(d);
        }
        Elem::U8 { scale, zp } => {
            let d = t.u8()?;
            if d.len() != out.len() {
                op_bail!("uint8 input has the wrong size");
            }
            for (o, &q) in out.iter_mut().zip(d) {
                *o = (q as f32 - zp as f32) * scale;
            }
        }
        Elem::I8 { scale, zp } => {
            let d = t.i8()?;
            if d.len() != out.len() {
                op_bail!("int8 input has the wrong size");
            }
            for (o, &q) in out.iter_mut().zip(d) {
                *o = (q as f32 - zp as f32) * scale;
            }
        }
    }
    Ok(())
}

pub struct DetectionPostProcess {
    opts: DetectionPostProcessOptions,
    num_boxes: usize,
    box_len: usize,
    /// Columns of the class input (background included if present).
    ncwb: usize,
    label_offset: usize,
    /// Classes reported per detection in the fast variant.
    num_categories: usize,
    /// M = max_detections * max_classes_per_detection.
    out_len: usize,
    box_elem: Elem,
    cls_elem: Elem,
    anchor_elem: Elem,
    anchors_const: bool,
    // scratch
    anchors: Vec<f32>,
    box_enc: Vec<f32>,
    scores: Vec<f32>,
    decoded: Vec<BoxCorners>,
    class_scores: Vec<f32>,
    cands: Vec<Candidate>,
    suppressed: Vec<bool>,
    selected: Vec<Candidate>,
    top_classes: Vec<u32>,
    max_scores: Vec<f32>,
    merged_idx: Vec<usize>,
    merged_score: Vec<f32>,
    order: Vec<u32>,
    tmp_idx: Vec<usize>,
    tmp_score: Vec<f32>,
}

fn check_opts(o: &DetectionPostProcessOptions) -> OpResult<()> {
    if o.max_detections == 0 {
        op_bail!("max_detections must be positive");
    }
    if o.max_classes_per_detection == 0 {
        op_bail!("max_classes_per_detection must be positive");
    }
    if o.use_regular_nms && o.detections_per_class == 0 {
        op_bail!("detections_per_class must be positive with regular NMS");
    }
    if o.num_classes == 0 {
        op_bail!("num_classes must be positive");
    }
    if !(o.nms_iou_threshold > 0.0 && o.nms_iou_threshold <= 1.0) {
        op_bail!("nms_iou_threshold {} not in (0, 1]", o.nms_iou_threshold);
    }
    if o.nms_score_threshold.is_nan() {
        op_bail!("nms_score_threshold is NaN");
    }
    for (n, s) in [
        ("y_scale", o.y_scale),
        ("x_scale", o.x_scale),
        ("h_scale", o.h_scale),
        ("w_scale", o.w_scale),
    ] {
        if !(s.is_finite() && s > 0.0) {
            op_bail!("{n} must be positive, got {s}");
        }
    }
    Ok(())
}

/// Prepare the operator for `node`.
pub fn build(
    ctx: &BuildCtx<'_>,
    node: &Node,
    opts: &DetectionPostProcessOptions,
) -> OpResult<Box<dyn Kernel>> {
    Ok(Box::new(DetectionPostProcess::new(ctx, node, opts)?))
}

impl DetectionPostProcess {
    pub fn new(
        ctx: &BuildCtx<'_>,
        node: &Node,
        opts: &DetectionPostProcessOptions,
    ) -> OpResult<Self> {
        check_opts(opts)?;
        if node.inputs.len() != 3 {
            op_bail!("expected 3 inputs, got {}", node.inputs.len());
        }
        if node.outputs.len() != 4 {
            op_bail!("expected 4 outputs, got {}", node.outputs.len());
        }
        let bx = ctx.input(node, 0)?;
        let cl = ctx.input(node, 1)?;
        let an = ctx.input(node, 2)?;
        if bx.shape.len() != 3 || bx.shape[0] != 1 || bx.shape[2] < 4 {
            op_bail!("box encodings must be [1, N, >=4], got {:?}", bx.shape);
        }
        let n = bx.shape[1];
        let box_len = bx.shape[2];
        if n == 0 || n > u32::MAX as usize {
            op_bail!("bad number of boxes {n}");
        }
        if cl.shape.len() != 3 || cl.shape[0] != 1 || cl.shape[1] != n {
            return Err(
                format!("class predictions must be [1, {n}, C], got {:?}", cl.shape).into(),
            );
        }
        let ncwb = cl.shape[2];
        if ncwb < opts.num_classes || ncwb - opts.num_classes > 1 {
            op_bail!(
                "class predictions have {ncwb} columns for num_classes {}",
                opts.num_classes
            );
        }
        if an.shape != [n, 4] {
            op_bail!("anchors must be [{n}, 4], got {:?}", an.shape);
        }
        let box_elem = elem_of(bx, "box encodings")?;
        let cls_elem = elem_of(cl, "class predictions")?;
        let anchor_elem = elem_of(an, "anchors")?;
        let m = opts
            .max_detections
            .checked_mul(opts.max_classes_per_detection)
            .filter(|&m| m <= u32::MAX as usize)
            .ok_or("max_detections * max_classes_per_detection overflows")?;
        for (k, (want, what)) in [
            (m * 4, "detection boxes"),
            (m, "detection classes"),
            (m, "detection scores"),
            (1, "num detections"),
        ]
        .into_iter()
        .enumerate()
        {
            let o = ctx.output(node, k)?;
            if o.dtype != DType::F32 {
                op_bail!("{what} output must be float32, is {}", o.dtype.name());
            }
            if o.num_elements() != want {
                op_bail!(
                    "{what} output has shape {:?}, expected {want} elements",
                    o.shape
                );
            }
        }
        if ctx.output(node, 0)?.shape.last() != Some(&4) {
            op_bail!("detection boxes output must end in 4");
        }

        let mut anchors = vec![0f32; n * 4];
        let anchors_const = match node.inputs[2].and_then(|t| ctx.const_data(t).transpose()) {
            Some(r) => {
                read_f32(&r?, anchor_elem, &mut anchors)?;
                validate_anchors(&anchors)?;
                true
            }
            None => false,
        };
        let num_categories = opts.max_classes_per_detection.min(opts.num_classes);
        let merged_cap = n + opts.max_detections;
        Ok(DetectionPostProcess {
            opts: opts.clone(),
            num_boxes: n,
            box_len,
            ncwb,
            label_offset: ncwb - opts.num_classes,
            num_categories,
            out_len: m,
            box_elem,
            cls_elem,
            anchor_elem,
            anchors_const,
            anchors,
            box_enc: vec![0.0; n * box_len],
            scores: if cls_elem == Elem::F32 {
                Vec::new()
            } else {
                vec![0.0; n * ncwb]
            },
            decoded: vec![[0.0; 4]; n],
            class_scores: vec![0.0; n],
            cands: Vec::with_capacity(n),
            suppressed: Vec::with_capacity(n),
            selected: Vec::with_capacity(n),
            top_classes: vec![0; n * num_categories],
            max_scores: vec![0.0; n],
            merged_idx: Vec::with_capacity(merged_cap),
            merged_score: Vec::with_capacity(merged_cap),
            order: Vec::with_capacity(merged_cap),
            tmp_idx: Vec::with_capacity(merged_cap),
            tmp_score: Vec::with_capacity(merged_cap),
        })
    }
}

fn validate_anchors(a: &[f32]) -> OpResult<()> {
    for (i, c) in a.chunks_exact(4).enumerate() {
        if !c.iter().all(|v| v.is_finite()) || c[2] < 0.0 || c[3] < 0.0 {
            return Err(
                format!("anchor {i} {c:?} is invalid (non-finite or negative size)").into(),
            );
        }
    }
    Ok(())
}

/// Scratch of single-class NMS.
struct NmsScratch<'s> {
    cands: &'s mut Vec<Candidate>,
    suppressed: &'s mut Vec<bool>,
    selected: &'s mut Vec<Candidate>,
}

/// TFLite's single-class NMS over `scores` (one per box): the boxes scoring
/// `>= score_threshold`, in [`sort_candidates`] order (decreasing score, ties
/// by lower index), through [`greedy_nms`] with no class distinction. The kept
/// candidates are left in `s.selected`, best first.
fn nms_single(
    scores: &[f32],
    boxes: &[BoxCorners],
    score_threshold: f32,
    iou_threshold: f32,
    limit: usize,
    s: &mut NmsScratch<'_>,
) {
    s.cands.clear();
    s.cands.extend(
        scores
            .iter()
            .enumerate()
            .filter(|(_, &v)| v >= score_threshold)
            .map(|(i, &v)| Candidate {
                score: v,
                index: i as u32,
                class: 0,
            }),
    );
    sort_candidates(s.cands);
    s.selected.clear();
    greedy_nms(
        s.cands,
        boxes,
        iou_threshold,
        false,
        limit,
        s.suppressed,
        s.selected,
    );
}

impl Kernel for DetectionPostProcess {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let n = self.num_boxes;
        let bx = io.input(0)?;
        let cl = io.input(1)?;
        if !self.anchors_const {
            let an = io.input(2)?;
            read_f32(&an, self.anchor_elem, &mut self.anchors)?;
            validate_anchors(&self.anchors)?;
        }
        read_f32(&bx, self.box_elem, &mut self.box_enc)?;
        let o = &self.opts;
        let (ys, xs, hs, ws) = (
            o.y_scale as f64,
            o.x_scale as f64,
            o.h_scale as f64,
            o.w_scale as f64,
        );
        for i in 0..n {
            let e = &self.box_enc[i * self.box_len..i * self.box_len + 4];
            let a = &self.anchors[i * 4..i * 4 + 4];
            let (ay, ax, ah, aw) = (a[0] as f64, a[1] as f64, a[2] as f64, a[3] as f64);
            let yc = (e[0] as f64 / ys * ah + ay) as f32;
            let xc = (e[1] as f64 / xs * aw + ax) as f32;
            let hh = (0.5 * (e[2] as f64 / hs).exp() * ah) as f32;
            let hw = (0.5 * (e[3] as f64 / ws).exp() * aw) as f32;
            let b = [yc - hh, xc - hw, yc + hh, xc + hw];
            if b[0] > b[2] || b[1] > b[3] {
                op_bail!("decoded box {i} {b:?} is inverted");
            }
            self.decoded[i] = b;
        }
        let scores: &[f32] = match self.cls_elem {
            Elem::F32 => cl.f32()?,
            e => {
                read_f32(&cl, e, &mut self.scores)?;
                &self.scores
            }
        };
        if scores.len() != n * self.ncwb {
            op_bail!("class predictions have the wrong size");
        }

        let [ob, oc, os, on, ..] = &mut io.outputs[..] else {
            op_bail!("expected 4 outputs");
        };
        let out_boxes = ob.f32()?;
        let out_classes = oc.f32()?;
        let out_scores = os.f32()?;
        let out_num = on.f32()?;
        if out_boxes.len() != self.out_len * 4
            || out_classes.len() != self.out_len
            || out_scores.len() != self.out_len
            || out_num.len() != 1
        {
            op_bail!("output sizes changed since build");
        }
        out_boxes.fill(0.0);
        out_classes.fill(0.0);
        out_scores.fill(0.0);

        let mut nms = NmsScratch {
            cands: &mut self.cands,
            suppressed: &mut self.suppressed,
            selected: &mut self.selected,
        };
        let ncwb = self.ncwb;
        let off = self.label_offset;
        let nc = o.num_classes;
        let count;
        if !o.use_regular_nms {
            let k = self.num_categories;
            for row in 0..n {
                let rs = &scores[row * ncwb + off..row * ncwb + off + nc];
                let top = &mut self.top_classes[row * k..row * k + k];
                // Insertion into a descending top-k list; equal scores keep the
                // lower class first. The first class always enters (as in
                // TFLite's ArgMax, which starts from element 0).
                let mut filled = 0usize;
                for (c, &v) in rs.iter().enumerate() {
                    let mut pos = filled;
                    while pos > 0 && v > rs[top[pos - 1] as usize] {
                        pos -= 1;
                    }
                    if pos >= k {
                        continue;
                    }
                    let end = filled.min(k - 1);
                    for p in (pos..end).rev() {
                        top[p + 1] = top[p];
                    }
                    top[pos] = c as u32;
                    filled = (filled + 1).min(k);
                }
                self.max_scores[row] = rs[top[0] as usize];
            }
            nms_single(
                &self.max_scores,
                &self.decoded,
                o.nms_score_threshold,
                o.nms_iou_threshold,
                o.max_detections,
                &mut nms,
            );
            for (d, sel) in nms.selected.iter().enumerate() {
                let sel = sel.index as usize;
                let rs = &scores[sel * ncwb + off..sel * ncwb + off + nc];
                for col in 0..k {
                    let slot = o.max_classes_per_detection * d + col;
                    let c = self.top_classes[sel * k + col] as usize;
                    out_boxes[slot * 4..slot * 4 + 4].copy_from_slice(&self.decoded[sel]);
                    out_classes[slot] = c as f32;
                    out_scores[slot] = rs[c];
                }
            }
            count = nms.selected.len();
        } else {
            self.merged_idx.clear();
            self.merged_score.clear();
            for col in 0..nc {
                for row in 0..n {
                    self.class_scores[row] = scores[row * ncwb + col + off];
                }
                nms_single(
                    &self.class_scores,
                    &self.decoded,
                    o.nms_score_threshold,
                    o.nms_iou_threshold,
                    o.detections_per_class,
                    &mut nms,
                );
                for sel in nms.selected.iter() {
                    self.merged_idx.push(sel.index as usize * ncwb + col + off);
                    self.merged_score.push(sel.score);
                }
                let total = self.merged_idx.len();
                let keep_n = total.min(o.max_detections);
                self.order.clear();
                self.order.extend(0..total as u32);
                let ms = &self.merged_score;
                self.order.sort_unstable_by(|&a, &b| {
                    ms[b as usize].total_cmp(&ms[a as usize]).then(a.cmp(&b))
                });
                self.tmp_idx.clear();
                self.tmp_score.clear();
                for &p in &self.order[..keep_n] {
                    self.tmp_idx.push(self.merged_idx[p as usize]);
                    self.tmp_score.push(self.merged_score[p as usize]);
                }
                std::mem::swap(&mut self.merged_idx, &mut self.tmp_idx);
                std::mem::swap(&mut self.merged_score, &mut self.tmp_score);
            }
            for (d, (&idx, &sc)) in self.merged_idx.iter().zip(&self.merged_score).enumerate() {
                let anchor = idx / ncwb;
                let class = idx - anchor * ncwb - off;
                out_boxes[d * 4..d * 4 + 4].copy_from_slice(&self.decoded[anchor]);
                out_classes[d] = class as f32;
                out_scores[d] = sc;
            }
            count = self.merged_idx.len();
        }
        out_num[0] = count as f32;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::{ModelBytes, Op};
    use crate::engine::tensor::{ConstData, Quant};
    use smallvec::SmallVec;
    use std::sync::Arc;

    fn info(name: &str, dtype: DType, shape: &[usize], quant: Option<Quant>) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
            quant,
            data: None,
        }
    }

    fn owned(bytes: &[u8]) -> ConstData {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        ConstData::Owned(Arc::new(words), bytes.len())
    }

    fn opts(regular: bool, max_det: usize, max_cls: usize) -> DetectionPostProcessOptions {
        DetectionPostProcessOptions {
            max_detections: max_det,
            max_classes_per_detection: max_cls,
            detections_per_class: 100,
            use_regular_nms: regular,
            nms_score_threshold: 0.5,
            nms_iou_threshold: 0.5,
            num_classes: 2,
            y_scale: 10.0,
            x_scale: 10.0,
            h_scale: 5.0,
            w_scale: 5.0,
        }
    }

    /// The TFLite unit test scenario: 6 boxes in two clusters plus a far one.
    fn anchors6() -> Vec<f32> {
        vec![
            0.5, 0.5, 1.0, 1.0, //
            0.5, 0.5, 1.0, 1.0, //
            0.5, 0.5, 1.0, 1.0, //
            10.5, 0.5, 1.0, 1.0, //
            10.5, 0.5, 1.0, 1.0, //
            100.5, 0.5, 1.0, 1.0,
        ]
    }

    fn boxes6() -> Vec<f32> {
        vec![
            0.0, 0.0, 0.0, 0.0, // box #1 (0,0,1,1)
            0.0, 1.0, 0.0, 0.0, // box #2 (0,0.1,1,1.1)
            0.0, -1.0, 0.0, 0.0, // box #3 (0,-0.1,1,0.9)
            0.0, 0.0, 0.0, 0.0, // box #4 (10,0,11,1)
            0.0, 1.0, 0.0, 0.0, // box #5 (10,0.1,11,1.1)
            0.0, 0.0, 0.0, 0.0, // box #6 (100,0,101,1)
        ]
    }

    fn scores6() -> Vec<f32> {
        vec![
            0.0, 0.9, 0.8, //
            0.0, 0.75, 0.72, //
            0.0, 0.6, 0.5, //
            0.0, 0.93, 0.95, //
            0.0, 0.5, 0.4, //
            0.0, 0.3, 0.2,
        ]
    }

    struct Harness {
        tensors: Vec<TensorInfo>,
        node: Node,
        kernel: Box<dyn Kernel>,
    }

    fn harness(
        o: &DetectionPostProcessOptions,
        ins: [TensorInfo; 3],
        anchors_const: Option<Vec<u8>>,
    ) -> OpResult<Harness> {
        let m = o.max_detections * o.max_classes_per_detection;
        let [b, c, mut a] = ins;
        if let Some(bytes) = anchors_const {
            a.data = Some(owned(&bytes));
        }
        let tensors = vec![
            b,
            c,
            a,
            info("boxes", DType::F32, &[1, m, 4], None),
            info("classes", DType::F32, &[1, m], None),
            info("scores", DType::F32, &[1, m], None),
            info("num", DType::F32, &[1], None),
        ];
        let node = Node {
            op: Op::DetectionPostProcess(o.clone()),
            inputs: vec![Some(0), Some(1), Some(2)],
            outputs: vec![3, 4, 5, 6],
        };
        let bytes = ModelBytes::new(&[]);
        let ctx = BuildCtx {
            tensors: &tensors,
            bytes: &bytes,
            kernels: crate::engine::kernels::KernelPath::Scalar,
            pool: None,
        };
        let kernel = build(&ctx, &node, o)?;
        Ok(Harness {
            tensors,
            node,
            kernel,
        })
    }

    struct Out {
        boxes: Vec<f32>,
        classes: Vec<f32>,
        scores: Vec<f32>,
        num: f32,
    }

    fn run(h: &mut Harness, inputs: [&[u8]; 3]) -> OpResult<Out> {
        let mut bufs: Vec<Vec<u64>> = (3..7)
            .map(|t| vec![0u64; h.tensors[t].byte_len().div_ceil(8)])
            .collect();
        // Fill outputs with garbage to check they are overwritten.
        for b in bufs.iter_mut() {
            b.fill(u64::MAX);
        }
        let in_words: Vec<Vec<u64>> = inputs
            .iter()
            .map(|b| {
                let mut w = vec![0u64; b.len().div_ceil(8)];
                bytemuck::cast_slice_mut::<u64, u8>(&mut w)[..b.len()].copy_from_slice(b);
                w
            })
            .collect();
        {
            let mut io = OpIo {
                inputs: SmallVec::new(),
                outputs: SmallVec::new(),
            };
            for (info, words) in h.tensors.iter().zip(&in_words) {
                io.inputs.push(Some(TensorRef {
                    info,
                    bytes: &bytemuck::cast_slice::<u64, u8>(words)[..info.byte_len()],
                }));
            }
            for (k, b) in bufs.iter_mut().enumerate() {
                let info = &h.tensors[3 + k];
                io.outputs.push(crate::engine::tensor::TensorMut {
                    info,
                    bytes: &mut bytemuck::cast_slice_mut::<u64, u8>(b)[..info.byte_len()],
                });
            }
            h.kernel.eval(&mut io)?;
        }
        let f = |k: usize| -> Vec<f32> {
            bytemuck::cast_slice::<u64, f32>(&bufs[k])[..h.tensors[3 + k].num_elements()].to_vec()
        };
        let _ = &h.node;
        Ok(Out {
            boxes: f(0),
            classes: f(1),
            scores: f(2),
            num: f(3)[0],
        })
    }

    fn f32_inputs(c: usize) -> [TensorInfo; 3] {
        [
            info("box", DType::F32, &[1, 6, 4], None),
            info("cls", DType::F32, &[1, 6, c], None),
            info("anc", DType::F32, &[6, 4], None),
        ]
    }

    fn assert_close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-4, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn fast_nms_float() {
        let o = opts(false, 3, 1);
        let mut h = harness(&o, f32_inputs(3), None).unwrap();
        let (b, s, a) = (boxes6(), scores6(), anchors6());
        let out = run(
            &mut h,
            [
                bytemuck::cast_slice(&b),
                bytemuck::cast_slice(&s),
                bytemuck::cast_slice(&a),
            ],
        )
        .unwrap();
        // The anchors above are (y, x): box #4 is y 10..11, x 0..1.
        assert_close(
            &out.boxes,
            &[10.0, 0.0, 11.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        );
        assert_close(&out.classes, &[1.0, 0.0, 0.0]);
        assert_close(&out.scores, &[0.95, 0.9, 0.0]);
        assert_eq!(out.num, 2.0);
    }

    #[test]
    fn fast_nms_two_classes_per_detection() {
        let mut o = opts(false, 3, 2);
        o.nms_score_threshold = 0.5;
        let mut h = harness(&o, f32_inputs(3), None).unwrap();
        let (b, s, a) = (boxes6(), scores6(), anchors6());
        let out = run(
            &mut h,
            [
                bytemuck::cast_slice(&b),
                bytemuck::cast_slice(&s),
                bytemuck::cast_slice(&a),
            ],
        )
        .unwrap();
        assert_eq!(out.num, 2.0);
        assert_close(&out.classes, &[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_close(&out.scores, &[0.95, 0.93, 0.9, 0.8, 0.0, 0.0]);
        assert_close(
            &out.boxes[..8],
            &[10.0, 0.0, 11.0, 1.0, 10.0, 0.0, 11.0, 1.0],
        );
    }

    #[test]
    fn regular_nms_float() {
        let mut o = opts(true, 3, 1);
        o.detections_per_class = 100;
        let mut h = harness(&o, f32_inputs(3), None).unwrap();
        let (b, s, a) = (boxes6(), scores6(), anchors6());
        let out = run(
            &mut h,
            [
                bytemuck::cast_slice(&b),
                bytemuck::cast_slice(&s),
                bytemuck::cast_slice(&a),
            ],
        )
        .unwrap();
        // class 0: 0.9 (#1), 0.93 (#4) -> kept (#2,#3 overlap #1 > 0.5; #5 overlaps #4)
        // class 1: 0.95 (#4), 0.8 (#1)
        assert_eq!(out.num, 3.0);
        assert_close(&out.scores, &[0.95, 0.93, 0.9]);
        assert_close(&out.classes, &[1.0, 0.0, 0.0]);
        assert_close(
            &out.boxes,
            &[
                10.0, 0.0, 11.0, 1.0, 10.0, 0.0, 11.0, 1.0, 0.0, 0.0, 1.0, 1.0,
            ],
        );
    }

    #[test]
    fn regular_nms_detections_per_class_limit() {
        let mut o = opts(true, 3, 1);
        o.detections_per_class = 1;
        let mut h = harness(&o, f32_inputs(3), None).unwrap();
        let (b, s, a) = (boxes6(), scores6(), anchors6());
        let out = run(
            &mut h,
            [
                bytemuck::cast_slice(&b),
                bytemuck::cast_slice(&s),
                bytemuck::cast_slice(&a),
            ],
        )
        .unwrap();
        assert_eq!(out.num, 2.0);
        assert_close(&out.scores, &[0.95, 0.93, 0.0]);
        assert_close(&out.classes, &[1.0, 0.0, 0.0]);
    }

    #[test]
    fn no_background_column() {
        let mut o = opts(false, 3, 1);
        o.num_classes = 2;
        let mut h = harness(&o, f32_inputs(2), None).unwrap();
        let s: Vec<f32> = scores6().chunks(3).flat_map(|c| [c[1], c[2]]).collect();
        let (b, a) = (boxes6(), anchors6());
        let out = run(
            &mut h,
            [
                bytemuck::cast_slice(&b),
                bytemuck::cast_slice(&s),
                bytemuck::cast_slice(&a),
            ],
        )
        .unwrap();
        assert_close(&out.classes, &[1.0, 0.0, 0.0]);
        assert_close(&out.scores, &[0.95, 0.9, 0.0]);
    }

    #[test]
    fn ties_prefer_lower_index() {
        // Two identical boxes with identical scores: the first anchor wins;
        // equal class scores: the lower class wins.
        let mut o = opts(false, 1, 1);
        o.num_classes = 2;
        let tensors = [
            info("box", DType::F32, &[1, 2, 4], None),
            info("cls", DType::F32, &[1, 2, 3], None),
            info("anc", DType::F32, &[2, 4], None),
        ];
        let a = [0.5f32, 0.5, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0];
        let mut h = harness(
            &o,
            tensors,
            Some(bytemuck::cast_slice::<f32, u8>(&a).to_vec()),
        )
        .unwrap();
        let b = [0f32, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let s = [0f32, 0.7, 0.7, 0.0, 0.7, 0.7];
        let out = run(
            &mut h,
            [
                bytemuck::cast_slice(&b),
                bytemuck::cast_slice(&s),
                bytemuck::cast_slice(&a),
            ],
        )
        .unwrap();
        assert_eq!(out.num, 1.0);
        assert_close(&out.boxes, &[0.0, 0.0, 1.0, 1.0]);
        assert_close(&out.classes, &[0.0]);
    }

    #[test]
    fn quantized_inputs_match_float() {
        // uint8 boxes and scores, int8 anchors; values exactly representable.
        let bq = Quant::per_tensor(0.5, 2);
        let sq = Quant::per_tensor(0.01, 0);
        let aq = Quant::per_tensor(0.5, -100);
        let o = opts(false, 3, 1);
        let ins = [
            info("box", DType::U8, &[1, 6, 4], Some(bq)),
            info("cls", DType::U8, &[1, 6, 3], Some(sq)),
            info("anc", DType::I8, &[6, 4], Some(aq)),
        ];
        let mut h = harness(&o, ins, None).unwrap();
        let b: Vec<u8> = boxes6().iter().map(|&v| (v / 0.5 + 2.0) as u8).collect();
        let s: Vec<u8> = scores6()
            .iter()
            .map(|&v| (v / 0.01).round() as u8)
            .collect();
        let a: Vec<i8> = anchors6()
            .iter()
            .map(|&v| (v / 0.5 - 100.0) as i8)
            .collect();
        let out = run(
            &mut h,
            [b.as_slice(), s.as_slice(), bytemuck::cast_slice(&a)],
        )
        .unwrap();
        assert_close(&out.classes, &[1.0, 0.0, 0.0]);
        assert_close(&out.scores, &[0.95, 0.9, 0.0]);
        assert_close(&out.boxes[..8], &[10.0, 0.0, 11.0, 1.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(out.num, 2.0);
    }

    #[test]
    fn keypoint_columns_are_ignored() {
        let o = opts(false, 3, 1);
        let ins = [
            info("box", DType::F32, &[1, 6, 6], None),
            info("cls", DType::F32, &[1, 6, 3], None),
            info("anc", DType::F32, &[6, 4], None),
        ];
        let mut h = harness(&o, ins, None).unwrap();
        let b: Vec<f32> = boxes6()
            .chunks(4)
            .flat_map(|c| [c[0], c[1], c[2], c[3], 7.0, 7.0])
            .collect();
        let (s, a) = (scores6(), anchors6());
        let out = run(
            &mut h,
            [
                bytemuck::cast_slice(&b),
                bytemuck::cast_slice(&s),
                bytemuck::cast_slice(&a),
            ],
        )
        .unwrap();
        assert_close(&out.scores, &[0.95, 0.9, 0.0]);
    }

    #[test]
    fn build_rejects_bad_shapes_and_options() {
        let o = opts(false, 3, 1);
        // wrong class count
        assert!(harness(&o, f32_inputs(5), None).is_err());
        // anchors of the wrong length
        let bad = [
            info("box", DType::F32, &[1, 6, 4], None),
            info("cls", DType::F32, &[1, 6, 3], None),
            info("anc", DType::F32, &[5, 4], None),
        ];
        assert!(harness(&o, bad, None).is_err());
        // box encodings too short
        let bad = [
            info("box", DType::F32, &[1, 6, 3], None),
            info("cls", DType::F32, &[1, 6, 3], None),
            info("anc", DType::F32, &[6, 4], None),
        ];
        assert!(harness(&o, bad, None).is_err());
        // batch 2
        let bad = [
            info("box", DType::F32, &[2, 6, 4], None),
            info("cls", DType::F32, &[2, 6, 3], None),
            info("anc", DType::F32, &[6, 4], None),
        ];
        assert!(harness(&o, bad, None).is_err());
        // quantized without parameters
        let bad = [
            info("box", DType::U8, &[1, 6, 4], None),
            info("cls", DType::F32, &[1, 6, 3], None),
            info("anc", DType::F32, &[6, 4], None),
        ];
        assert!(harness(&o, bad, None).is_err());
        // unsupported type
        let bad = [
            info("box", DType::I32, &[1, 6, 4], None),
            info("cls", DType::F32, &[1, 6, 3], None),
            info("anc", DType::F32, &[6, 4], None),
        ];
        assert!(harness(&o, bad, None).is_err());
        for f in [
            |o: &mut DetectionPostProcessOptions| o.max_detections = 0,
            |o: &mut DetectionPostProcessOptions| o.max_classes_per_detection = 0,
            |o: &mut DetectionPostProcessOptions| o.nms_iou_threshold = 0.0,
            |o: &mut DetectionPostProcessOptions| o.nms_iou_threshold = 1.5,
            |o: &mut DetectionPostProcessOptions| o.h_scale = 0.0,
            |o: &mut DetectionPostProcessOptions| o.num_classes = 0,
            |o: &mut DetectionPostProcessOptions| {
                o.use_regular_nms = true;
                o.detections_per_class = 0
            },
        ] {
            let mut o = opts(false, 3, 1);
            f(&mut o);
            assert!(harness(&o, f32_inputs(3), None).is_err());
        }
        // constant anchors with a negative size
        let mut a = anchors6();
        a[2] = -1.0;
        assert!(harness(
            &o,
            f32_inputs(3),
            Some(bytemuck::cast_slice::<f32, u8>(&a).to_vec())
        )
        .is_err());
    }

    #[test]
    fn repeated_eval_is_stable() {
        let o = opts(true, 3, 1);
        let mut h = harness(&o, f32_inputs(3), None).unwrap();
        let (b, s, a) = (boxes6(), scores6(), anchors6());
        let ins: [&[u8]; 3] = [
            bytemuck::cast_slice(&b),
            bytemuck::cast_slice(&s),
            bytemuck::cast_slice(&a),
        ];
        let first = run(&mut h, ins).unwrap();
        for _ in 0..3 {
            let again = run(&mut h, ins).unwrap();
            assert_eq!(first.boxes, again.boxes);
            assert_eq!(first.scores, again.scores);
            assert_eq!(first.num, again.num);
        }
    }
}
