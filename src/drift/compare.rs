//! Per-frame comparison of the int8 model against the float model, whose
//! detections serve as pseudo ground truth: class-aware greedy IoU matching,
//! agreement precision / recall / F1, matched IoU, class flips, score deltas,
//! per-label count differences, raw-output fidelity (SQNR, cosine) and
//! pseudo average precision over a set of frames.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::percentile::percentile;
use crate::postprocess::Detection;

/// IoU needed for two boxes to count as the same object.
pub const MATCH_IOU: f32 = 0.5;

/// SQNR reported when the two tensors are identical (no noise at all).
pub const SQNR_CAP_DB: f64 = 120.0;

/// Signal and noise energies of one tensor pair; they add up over frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Energy {
    /// Σ f², f the float reference.
    pub signal: f64,
    /// Σ (f - q)², q the dequantized int8 value.
    pub noise: f64,
    /// Σ f·q and Σ q² (for the cosine similarity).
    pub dot: f64,
    pub other: f64,
    /// Number of elements.
    pub n: u64,
}

impl Energy {
    /// Accumulate a float reference `f` against its int8 counterpart `q`.
    pub fn of(f: &[f32], q: &[f32]) -> Energy {
        let mut e = Energy::default();
        e.add_slices(f, q);
        e
    }

    pub fn add_slices(&mut self, f: &[f32], q: &[f32]) {
        let (mut s, mut n, mut d, mut o) = (0f64, 0f64, 0f64, 0f64);
        for (&a, &b) in f.iter().zip(q) {
            let (a, b) = (a as f64, b as f64);
            s += a * a;
            n += (a - b) * (a - b);
            d += a * b;
            o += b * b;
        }
        self.signal += s;
        self.noise += n;
        self.dot += d;
        self.other += o;
        self.n += f.len().min(q.len()) as u64;
    }

    pub fn add(&mut self, e: &Energy) {
        self.signal += e.signal;
        self.noise += e.noise;
        self.dot += e.dot;
        self.other += e.other;
        self.n += e.n;
    }

    /// Signal-to-quantization-noise ratio in dB (capped at [`SQNR_CAP_DB`]).
    pub fn sqnr_db(&self) -> f64 {
        if self.noise <= 0.0 {
            return SQNR_CAP_DB;
        }
        if self.signal <= 0.0 {
            return -SQNR_CAP_DB;
        }
        (10.0 * (self.signal / self.noise).log10()).clamp(-SQNR_CAP_DB, SQNR_CAP_DB)
    }

    /// Cosine similarity (1 when both are zero, 0 when only one is).
    pub fn cosine(&self) -> f64 {
        match (self.signal > 0.0, self.other > 0.0) {
            (false, false) => 1.0,
            (true, true) => self.dot / (self.signal.sqrt() * self.other.sqrt()),
            _ => 0.0,
        }
    }

    /// Root mean square error.
    pub fn rmse(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.noise / self.n as f64).sqrt()
        }
    }
}

/// Fidelity of one raw output tensor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputFidelity {
    pub name: String,
    pub energy: Energy,
}

/// Greedy one-to-one matching of `pred` to `truth` at IoU >= `thr`: predictions
/// in decreasing score order each take the unmatched truth box of highest IoU
/// (of the same class when `class_aware`). Returns (pred, truth, IoU) triples.
pub fn greedy_match(
    pred: &[Detection],
    truth: &[Detection],
    thr: f32,
    class_aware: bool,
) -> Vec<(usize, usize, f32)> {
    let mut order: Vec<usize> = (0..pred.len()).collect();
    order.sort_by(|&a, &b| pred[b].score.total_cmp(&pred[a].score).then(a.cmp(&b)));
    let mut used = vec![false; truth.len()];
    let mut out = Vec::new();
    for p in order {
        let mut best: Option<(usize, f32)> = None;
        for (t, g) in truth.iter().enumerate() {
            if used[t] || (class_aware && g.class_id != pred[p].class_id) {
                continue;
            }
            let v = pred[p].bbox.iou(&g.bbox);
            if v >= thr && best.is_none_or(|(_, b)| v > b) {
                best = Some((t, v));
            }
        }
        if let Some((t, v)) = best {
            used[t] = true;
            out.push((p, t, v));
        }
    }
    out
}

/// Everything measured on one sampled frame.
#[derive(Clone, Debug)]
pub struct FrameComparison {
    pub seq: u64,
    /// Int8 detections at the comparison threshold.
    pub int8: Vec<Detection>,
    /// Int8 detections down to the (lower) ranking threshold, for pseudo-AP.
    pub int8_ranked: Vec<Detection>,
    /// Float detections at the comparison threshold (the pseudo ground truth).
    pub float: Vec<Detection>,
    /// Class-aware matches (int8 index, float index, IoU).
    pub matches: Vec<(usize, usize, f32)>,
    /// Pairs matched by box alone, and how many of those disagree on the label.
    pub box_pairs: usize,
    pub flips: usize,
    /// |int8 score - float score| of the class-aware matches.
    pub score_deltas: Vec<f64>,
    pub outputs: Vec<OutputFidelity>,
}

/// Detections of one box/class with labels, as the comparison sees them.
fn label_counts(d: &[Detection]) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for x in d {
        // Slugs, as labels are in every payload (`count_diff` of `drift`).
        *m.entry(crate::postprocess::labels::slug(&x.label))
            .or_insert(0) += 1;
    }
    m
}

/// precision, recall, F1 from counts; both empty counts as full agreement.
pub fn prf(tp: usize, n_pred: usize, n_truth: usize) -> (f64, f64, f64) {
    let p = if n_pred == 0 {
        if n_truth == 0 {
            1.0
        } else {
            0.0
        }
    } else {
        tp as f64 / n_pred as f64
    };
    let r = if n_truth == 0 {
        if n_pred == 0 {
            1.0
        } else {
            0.0
        }
    } else {
        tp as f64 / n_truth as f64
    };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

impl FrameComparison {
    /// Compare the int8 detections (`int8_ranked`, decoded down to a low
    /// threshold) with the float detections at `threshold`.
    pub fn new(
        seq: u64,
        int8_ranked: Vec<Detection>,
        float_all: Vec<Detection>,
        threshold: f32,
        outputs: Vec<OutputFidelity>,
    ) -> FrameComparison {
        let int8: Vec<Detection> = int8_ranked
            .iter()
            .filter(|d| d.score >= threshold)
            .cloned()
            .collect();
        let float: Vec<Detection> = float_all
            .into_iter()
            .filter(|d| d.score >= threshold)
            .collect();
        let matches = greedy_match(&int8, &float, MATCH_IOU, true);
        let agnostic = greedy_match(&int8, &float, MATCH_IOU, false);
        let flips = agnostic
            .iter()
            .filter(|(p, t, _)| int8[*p].class_id != float[*t].class_id)
            .count();
        let score_deltas = matches
            .iter()
            .map(|(p, t, _)| (int8[*p].score as f64 - float[*t].score as f64).abs())
            .collect();
        FrameComparison {
            seq,
            int8,
            int8_ranked,
            float,
            box_pairs: agnostic.len(),
            flips,
            matches,
            score_deltas,
            outputs,
        }
    }

    pub fn tp(&self) -> usize {
        self.matches.len()
    }

    /// (precision, recall, F1) of the int8 detections against the float ones.
    pub fn prf(&self) -> (f64, f64, f64) {
        prf(self.tp(), self.int8.len(), self.float.len())
    }

    pub fn f1(&self) -> f64 {
        self.prf().2
    }

    /// Mean IoU of the class-aware matches (None without matches).
    pub fn mean_iou(&self) -> Option<f64> {
        if self.matches.is_empty() {
            None
        } else {
            Some(self.matches.iter().map(|m| m.2 as f64).sum::<f64>() / self.matches.len() as f64)
        }
    }

    /// Per-label count difference int8 - float (labels seen by either model).
    pub fn count_diff(&self) -> BTreeMap<String, i64> {
        let mut m = label_counts(&self.int8);
        for (l, n) in label_counts(&self.float) {
            *m.entry(l).or_insert(0) -= n;
        }
        m
    }

    /// Disagreement in [0, 1]: 1 - F1.
    pub fn disagreement(&self) -> f64 {
        1.0 - self.f1()
    }

    /// The per-frame metrics as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let (p, r, f) = self.prf();
        let mut sq = serde_json::Map::new();
        let mut cos = serde_json::Map::new();
        for o in &self.outputs {
            sq.insert(o.name.clone(), round(o.energy.sqnr_db()).into());
            cos.insert(o.name.clone(), round(o.energy.cosine()).into());
        }
        serde_json::json!({
            "seq": self.seq,
            "int8_objects": self.int8.len(),
            "float_objects": self.float.len(),
            "matched": self.tp(),
            "precision": round(p),
            "recall": round(r),
            "f1": round(f),
            "mean_iou": self.mean_iou().map(round),
            "class_flip_rate": if self.box_pairs > 0 { Some(round(self.flips as f64 / self.box_pairs as f64)) } else { None },
            "score_delta": {
                "mean": mean(&self.score_deltas).map(round),
                "p95": percentile(&self.score_deltas, 0.95).map(round),
            },
            "count_diff": self.count_diff(),
            "sqnr_db": sq,
            "cosine": cos,
        })
    }
}

/// Round to 4 decimals for messages and reports.
pub fn round(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1e4).round() / 1e4
    } else {
        v
    }
}

pub fn mean(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        None
    } else {
        Some(v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// Pseudo mean average precision of the int8 detections against the float
/// ones over `frames`, at one IoU threshold: per class, the int8 detections of
/// every frame ranked by score (each matching at most one unmatched float box
/// of its class), all-point interpolated AP; the mean over the classes the
/// float model found. No float objects at all: 1 if int8 found none either, else 0.
pub fn mean_ap(frames: &[(&[Detection], &[Detection])], thr: f32) -> f64 {
    // class -> (scored tp flags, number of truths)
    let mut per: BTreeMap<usize, (Vec<(f32, bool)>, usize)> = BTreeMap::new();
    for (pred, truth) in frames {
        for t in truth.iter() {
            per.entry(t.class_id).or_default().1 += 1;
        }
        let m = greedy_match(pred, truth, thr, true);
        let mut tp = vec![false; pred.len()];
        for (p, _, _) in m {
            tp[p] = true;
        }
        for (k, p) in pred.iter().enumerate() {
            per.entry(p.class_id).or_default().0.push((p.score, tp[k]));
        }
    }
    let with_truth: Vec<_> = per.values().filter(|(_, n)| *n > 0).collect();
    if with_truth.is_empty() {
        let any_pred = per.values().any(|(p, _)| !p.is_empty());
        return if any_pred { 0.0 } else { 1.0 };
    }
    let mut sum = 0.0;
    for (preds, n) in &with_truth {
        let mut p = preds.clone();
        p.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut tp = 0usize;
        let mut prec = Vec::with_capacity(p.len());
        let mut rec = Vec::with_capacity(p.len());
        for (k, (_, hit)) in p.iter().enumerate() {
            if *hit {
                tp += 1;
            }
            prec.push(tp as f64 / (k + 1) as f64);
            rec.push(tp as f64 / *n as f64);
        }
        // Precision envelope, then area under the step curve.
        for k in (0..prec.len().saturating_sub(1)).rev() {
            prec[k] = prec[k].max(prec[k + 1]);
        }
        let mut ap = 0.0;
        let mut last_r = 0.0;
        for k in 0..p.len() {
            if rec[k] > last_r {
                ap += (rec[k] - last_r) * prec[k];
                last_r = rec[k];
            }
        }
        sum += ap;
    }
    sum / with_truth.len() as f64
}

/// Pseudo mAP@0.5 and mAP@[.5:.95] (mean over IoU 0.50, 0.55, ..., 0.95).
pub fn map_pair(frames: &[(&[Detection], &[Detection])]) -> (f64, f64) {
    let m50 = mean_ap(frames, 0.5);
    let all: f64 = (0..10)
        .map(|k| mean_ap(frames, 0.5 + 0.05 * k as f32))
        .sum::<f64>();
    (m50, all / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(c: usize, score: f32, b: [f32; 4]) -> Detection {
        Detection {
            class_id: c,
            label: format!("L{c}").into(),
            score,
            bbox: crate::postprocess::NormBox(b),
        }
    }

    #[test]
    fn matching_is_class_aware_greedy_and_counts_flips() {
        let truth = vec![
            det(1, 0.9, [0.0, 0.0, 0.5, 0.5]),
            det(2, 0.8, [0.5, 0.5, 1.0, 1.0]),
        ];
        // Same box, same class; same box, other class; a stray box.
        let pred = vec![
            det(1, 0.7, [0.0, 0.0, 0.5, 0.45]),
            det(3, 0.6, [0.5, 0.5, 1.0, 1.0]),
            det(1, 0.55, [0.0, 0.6, 0.2, 0.9]),
        ];
        let c = FrameComparison::new(1, pred, truth, 0.5, vec![]);
        assert_eq!(c.tp(), 1);
        let (p, r, f) = c.prf();
        assert!((p - 1.0 / 3.0).abs() < 1e-9 && (r - 0.5).abs() < 1e-9);
        assert!((f - 0.4).abs() < 1e-9);
        assert_eq!(c.box_pairs, 2);
        assert_eq!(c.flips, 1);
        assert!((c.mean_iou().unwrap() - 0.9).abs() < 1e-6);
        assert!((c.score_deltas[0] - 0.2).abs() < 1e-6);
        let d = c.count_diff();
        assert_eq!(d["l1"], 1);
        assert_eq!(d["l2"], -1);
        assert_eq!(d["l3"], 1);
    }

    #[test]
    fn threshold_splits_comparison_from_ranking() {
        let truth = vec![det(1, 0.9, [0.0, 0.0, 0.5, 0.5])];
        let pred = vec![det(1, 0.3, [0.0, 0.0, 0.5, 0.5])];
        let c = FrameComparison::new(1, pred.clone(), truth.clone(), 0.5, vec![]);
        assert_eq!(c.f1(), 0.0);
        // The low-scored detection still ranks for AP: perfect AP.
        let ap = mean_ap(&[(&pred[..], &truth[..])], 0.5);
        assert_eq!(ap, 1.0);
        // Nothing on either side is agreement.
        let e = FrameComparison::new(2, vec![], vec![], 0.5, vec![]);
        assert_eq!(e.prf(), (1.0, 1.0, 1.0));
        assert_eq!(mean_ap(&[(&[][..], &[][..])], 0.5), 1.0);
    }

    #[test]
    fn ap_ranks_false_positives_above_true_ones() {
        let truth = [
            det(1, 0.9, [0.0, 0.0, 0.2, 0.2]),
            det(1, 0.9, [0.5, 0.5, 0.7, 0.7]),
        ];
        // FP at 0.9, TP at 0.8, TP at 0.7: precision 0, 1/2, 2/3 at recall 0, .5, 1.
        let pred = [
            det(1, 0.9, [0.3, 0.3, 0.4, 0.4]),
            det(1, 0.8, [0.0, 0.0, 0.2, 0.2]),
            det(1, 0.7, [0.5, 0.5, 0.7, 0.7]),
        ];
        let ap = mean_ap(&[(&pred[..], &truth[..])], 0.5);
        assert!(
            (ap - (0.5 * 2.0 / 3.0 + 0.5 * 2.0 / 3.0)).abs() < 1e-9,
            "{ap}"
        );
        let (m50, m5095) = map_pair(&[(&pred[..], &truth[..])]);
        assert!((m50 - ap).abs() < 1e-12 && (m5095 - ap).abs() < 1e-12);
    }

    #[test]
    fn sqnr_and_cosine() {
        let f = [1.0f32, -2.0, 3.0, 0.5];
        assert_eq!(Energy::of(&f, &f).sqnr_db(), SQNR_CAP_DB);
        assert!((Energy::of(&f, &f).cosine() - 1.0).abs() < 1e-12);
        let q: Vec<f32> = f.iter().map(|v| v + 0.1).collect();
        let e = Energy::of(&f, &q);
        let want = 10.0 * (14.25f64 / 0.04).log10();
        assert!((e.sqnr_db() - want).abs() < 1e-4, "{}", e.sqnr_db());
        assert!((e.rmse() - 0.1).abs() < 1e-6);
        let neg: Vec<f32> = f.iter().map(|v| -v).collect();
        assert!((Energy::of(&f, &neg).cosine() + 1.0).abs() < 1e-12);
    }
}
