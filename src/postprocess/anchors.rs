//! SSD anchor generation (TF object detection API `ssd_anchor_generator`,
//! i.e. multiple grid anchors), as `(yc, xc, h, w)` in normalised coordinates.
//!
//! Recipe: scales `s_i = min + (max - min) * i / (L - 1)` for `i < L`, and
//! `s_L = 1`. Layer 0 with `reduce_boxes_in_lowest_layer` uses
//! `(lowest_layer_min_scale, 1), (s_0, 2), (s_0, 0.5)`; every other layer uses
//! `s_i` at each aspect ratio, then `sqrt(s_i * s_{i+1})` at
//! `interpolated_scale_aspect_ratio` (if > 0). A box with scale `s` and ratio
//! `r` has height `s / sqrt(r)` and width `s * sqrt(r)`. Order: layer, then row
//! `y`, then column `x`, then box spec; centre `((y + off) / fm, (x + off) / fm)`.
//! Computed in f64, stored as f32.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorKind {
    /// TF object detection API `multiple_grid_anchor_generator` via `ssd_anchor_generator`.
    SsdMultipleGrid,
}

/// Parameters of the SSD anchor generator (see [`generate`]): the `anchors`
/// section of a model description (re-exported by `detect::model_desc`, whose
/// `ModelDesc::validate` checks the ranges).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorDesc {
    pub kind: AnchorKind,
    pub num_layers: usize,
    pub min_scale: f32,
    pub max_scale: f32,
    /// Square feature map sizes, one per layer.
    pub feature_maps: Vec<usize>,
    pub aspect_ratios: Vec<f32>,
    /// Layer 0 uses only (lowest_layer_min_scale, 1), (s0, 2), (s0, 0.5).
    pub reduce_boxes_in_lowest_layer: bool,
    pub lowest_layer_min_scale: f32,
    /// Aspect ratio of the extra anchor at scale sqrt(s_i s_{i+1}); 0 or negative: none.
    pub interpolated_scale_aspect_ratio: f32,
    /// Anchor centre offset within a cell, in cells (0.5 = centre).
    pub anchor_offset: f32,
    /// Expected number of anchors (checked against the generator and the model).
    pub num_anchors: usize,
}

/// One anchor in centre/size form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anchor {
    pub yc: f32,
    pub xc: f32,
    pub h: f32,
    pub w: f32,
}

/// (scale, aspect ratio) box specs of layer `i`.
fn layer_specs(d: &AnchorDesc, i: usize) -> Vec<(f64, f64)> {
    let n = d.num_layers;
    let scale = |k: usize| -> f64 {
        if k >= n {
            1.0
        } else if n == 1 {
            d.min_scale as f64
        } else {
            d.min_scale as f64
                + (d.max_scale as f64 - d.min_scale as f64) * k as f64 / (n - 1) as f64
        }
    };
    let s = scale(i);
    if i == 0 && d.reduce_boxes_in_lowest_layer {
        return vec![(d.lowest_layer_min_scale as f64, 1.0), (s, 2.0), (s, 0.5)];
    }
    let mut v: Vec<(f64, f64)> = d.aspect_ratios.iter().map(|&r| (s, r as f64)).collect();
    if d.interpolated_scale_aspect_ratio > 0.0 {
        v.push((
            (s * scale(i + 1)).sqrt(),
            d.interpolated_scale_aspect_ratio as f64,
        ));
    }
    v
}

/// Generate all anchors; errors if the count differs from `d.num_anchors`.
pub fn generate(d: &AnchorDesc) -> Result<Vec<Anchor>> {
    let mut out = Vec::new();
    for (i, &fm) in d.feature_maps.iter().enumerate() {
        let specs = layer_specs(d, i);
        let fmf = fm as f64;
        for y in 0..fm {
            for x in 0..fm {
                for &(s, r) in &specs {
                    let sr = r.sqrt();
                    out.push(Anchor {
                        yc: ((y as f64 + d.anchor_offset as f64) / fmf) as f32,
                        xc: ((x as f64 + d.anchor_offset as f64) / fmf) as f32,
                        h: (s / sr) as f32,
                        w: (s * sr) as f32,
                    });
                }
            }
        }
    }
    if out.len() != d.num_anchors {
        bail!(
            "anchor generator made {} anchors, the description says {}",
            out.len(),
            d.num_anchors
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `anchors` section of the repository's model description.
    fn desc() -> AnchorDesc {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/ssd_mobilenetv2_oidv4.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        serde_json::from_value(v["anchors"].clone()).unwrap()
    }

    fn close(a: Anchor, b: [f64; 4]) {
        let got = [a.yc as f64, a.xc as f64, a.h as f64, a.w as f64];
        for k in 0..4 {
            assert!((got[k] - b[k]).abs() < 1e-6, "{got:?} vs {b:?}");
        }
    }

    #[test]
    fn ssd_anchor_count_is_1917() {
        let a = generate(&desc()).unwrap();
        assert_eq!(a.len(), 1917);
        // 19*19*3 + (10*10 + 5*5 + 3*3 + 2*2 + 1) * 6
        assert_eq!(19 * 19 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 1917);
    }

    #[test]
    fn ssd_anchor_spot_values() {
        let a = generate(&desc()).unwrap();
        let c = 0.5 / 19.0;
        // first anchor: layer 0, cell (0,0), scale 0.1 ratio 1
        close(a[0], [c, c, 0.1, 0.1]);
        // second: scale 0.2, ratio 2: h = 0.2/sqrt2, w = 0.2*sqrt2
        close(a[1], [c, c, 0.2 / 2f64.sqrt(), 0.2 * 2f64.sqrt()]);
        close(a[2], [c, c, 0.2 * 2f64.sqrt(), 0.2 / 2f64.sqrt()]);
        // layer 0, row 1, column 2, spec 0
        close(a[(19 + 2) * 3], [1.5 / 19.0, 2.5 / 19.0, 0.1, 0.1]);
        // first anchor of layer 1 (scale 0.35), spec 0 ratio 1
        let l1 = 19 * 19 * 3;
        close(a[l1], [0.05, 0.05, 0.35, 0.35]);
        // layer 1 interpolated: sqrt(0.35 * 0.5)
        let s = (0.35f64 * 0.5).sqrt();
        close(a[l1 + 5], [0.05, 0.05, s, s]);
        // layer 1 ratio 3 at cell (0,0)
        close(
            a[l1 + 3],
            [0.05, 0.05, 0.35 / 3f64.sqrt(), 0.35 * 3f64.sqrt()],
        );
        // last anchor: layer 5 (scale 0.95, 1x1 map), interpolated sqrt(0.95 * 1)
        let s = 0.95f64.sqrt();
        close(a[1916], [0.5, 0.5, s, s]);
        // layer 5 ratio 1/3
        close(a[1915], [0.5, 0.5, 0.95 * 3f64.sqrt(), 0.95 / 3f64.sqrt()]);
    }
}
