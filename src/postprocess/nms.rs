//! Box geometry and greedy non-maximum suppression: the one [`iou`] and the
//! one greedy NMS of the crate, used by the SSD [`Decoder`](super::Decoder),
//! the [tracker](super::tracker), the drift comparison and the engine's
//! `TFLite_Detection_PostProcess` operator
//! (`engine::ops::detection_postprocess`).
//!
//! Conventions are TFLite's reference kernel (`detection_postprocess.cc`), so
//! the operator stays bit-exact with it:
//! - [`iou`] is `ComputeIntersectionOverUnion`: areas first (a box with a
//!   non-positive area has IoU 0 with everything), then the intersection
//!   `max(ymax' - ymin', 0) * max(xmax' - xmin', 0)`, then
//!   `inter / (area_a + area_b - inter)`, all in f32 in that order;
//! - candidates are visited in decreasing score order, ties by lower box index
//!   (what TFLite's stable sort of the index-ordered list gives), see
//!   [`sort_candidates`];
//! - a candidate is suppressed when its IoU with an already kept box is
//!   strictly greater than the threshold.
//!
//! This module is a leaf: it imports nothing from the crate. The engine
//! (`src/engine`) depends on it, and nothing under `postprocess` depends on the
//! engine, so there is no import cycle; keep it that way (a test below checks
//! that this file names no other crate module).

/// Box corners `[ymin, xmin, ymax, xmax]`.
///
/// [`iou`] treats both axes alike, so it serves `[x1, y1, x2, y2]` pixel boxes
/// (the tracker's) just as well, as long as both boxes use the same order.
pub type BoxCorners = [f32; 4];

/// Intersection over union of two corner boxes (0 if either has no area), with
/// TFLite's arithmetic (see the module documentation).
#[inline]
pub fn iou(a: &BoxCorners, b: &BoxCorners) -> f32 {
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    if area_a <= 0.0 || area_b <= 0.0 {
        return 0.0;
    }
    let ih = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iw = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ih * iw;
    inter / (area_a + area_b - inter)
}

/// A scored candidate box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub score: f32,
    /// Index of the box (anchor).
    pub index: u32,
    /// Class id (model column; any constant when all candidates are of one class).
    pub class: u32,
}

/// Sort candidates by decreasing score; ties by increasing box index, then
/// class (the order a stable sort of index-ordered candidates gives, without
/// its allocation). NaN scores are never candidates (they fail the threshold).
pub fn sort_candidates(c: &mut [Candidate]) {
    c.sort_unstable_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.index.cmp(&b.index))
            .then(a.class.cmp(&b.class))
    });
}

/// Greedy NMS over `cands` (already sorted with [`sort_candidates`]), boxes
/// looked up by [`Candidate::index`] in `boxes`: each candidate not yet
/// suppressed is kept and suppresses every later one whose IoU with it is
/// `> iou_threshold`. When `per_class`, only boxes of the same class suppress
/// each other. Kept candidates are appended to `keep` in order, at most
/// `max_keep` (TFLite's per-call limit: the walk stops there).
/// `suppressed` is scratch (resized, not reallocated once large enough).
pub fn greedy_nms(
    cands: &[Candidate],
    boxes: &[BoxCorners],
    iou_threshold: f32,
    per_class: bool,
    max_keep: usize,
    suppressed: &mut Vec<bool>,
    keep: &mut Vec<Candidate>,
) {
    suppressed.clear();
    suppressed.resize(cands.len(), false);
    let start = keep.len();
    for i in 0..cands.len() {
        if keep.len() - start >= max_keep {
            break;
        }
        if suppressed[i] {
            continue;
        }
        let ci = cands[i];
        keep.push(ci);
        let bi = &boxes[ci.index as usize];
        for j in i + 1..cands.len() {
            if suppressed[j] || (per_class && cands[j].class != ci.class) {
                continue;
            }
            if iou(bi, &boxes[cands[j].index as usize]) > iou_threshold {
                suppressed[j] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(score: f32, index: u32, class: u32) -> Candidate {
        Candidate {
            score,
            index,
            class,
        }
    }

    #[test]
    fn iou_basics() {
        let a = [0.0, 0.0, 1.0, 1.0];
        let b = [0.0, 0.5, 1.0, 1.5];
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(iou(&a, &[0.5, 0.5, 0.5, 0.9]), 0.0);
    }

    #[test]
    fn greedy_suppresses_overlaps_per_class() {
        let boxes = [
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 0.1, 1.0, 1.1],
            [0.0, 0.05, 1.0, 1.05],
            [5.0, 5.0, 6.0, 6.0],
        ];
        let mut cands = vec![c(0.9, 0, 1), c(0.8, 1, 1), c(0.7, 2, 2), c(0.6, 3, 1)];
        sort_candidates(&mut cands);
        let (mut s, mut k) = (Vec::new(), Vec::new());
        greedy_nms(&cands, &boxes, 0.5, true, 10, &mut s, &mut k);
        assert_eq!(k.iter().map(|c| c.index).collect::<Vec<_>>(), vec![0, 2, 3]);
        k.clear();
        greedy_nms(&cands, &boxes, 0.5, false, 10, &mut s, &mut k);
        assert_eq!(k.iter().map(|c| c.index).collect::<Vec<_>>(), vec![0, 3]);
        k.clear();
        greedy_nms(&cands, &boxes, 0.5, false, 1, &mut s, &mut k);
        assert_eq!(k.len(), 1);
    }

    #[test]
    fn equal_iou_is_not_suppressed_and_ties_are_stable() {
        // IoU exactly 1/3 with threshold 1/3: kept (strictly greater suppresses).
        let boxes = [[0.0, 0.0, 1.0, 1.0], [0.0, 0.5, 1.0, 1.5]];
        let t = iou(&boxes[0], &boxes[1]);
        let mut cands = vec![c(0.5, 1, 0), c(0.5, 0, 0)];
        sort_candidates(&mut cands);
        assert_eq!(cands[0].index, 0);
        let (mut s, mut k) = (Vec::new(), Vec::new());
        greedy_nms(&cands, &boxes, t, false, 10, &mut s, &mut k);
        assert_eq!(k.len(), 2);
    }

    #[test]
    fn this_module_is_a_leaf() {
        // The engine imports this module; an import of another crate module
        // here could close a cycle (see the module documentation).
        let src = include_str!("nms.rs");
        let code = src.split("#[cfg(test)]").next().unwrap();
        for l in code.lines() {
            let l = l.trim_start();
            if l.starts_with("//") {
                continue;
            }
            assert!(
                !l.contains("crate::") && !l.contains("super::"),
                "nms.rs must not import other crate modules: {l}"
            );
        }
    }
}
