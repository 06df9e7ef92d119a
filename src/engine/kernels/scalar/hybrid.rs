//! Dynamic-range ("hybrid") arithmetic: float activations quantized on the fly to int8, int8
//! weights, int32 dot products, float output. The semantics are TFLite's portable tensor
//! utilities and its hybrid reference kernels:
//!
//! - **asymmetric** input quantization (CONV_2D with per-channel weights, DEPTHWISE_CONV_2D,
//!   FULLY_CONNECTED with `asymmetric_quantize_inputs`): the range `[min(0, lo), max(0, hi)]`
//!   onto `[-128, 127]`, the range a float difference, the scale and the nudged zero point
//!   computed in double precision, the values `round(x · (1 / scale)) + zp` in single precision;
//! - **symmetric** input quantization (the other hybrid cases): `max |x|` onto `±127`;
//! - the int32 sums `Σ w · (x − zp)` with taps outside the input skipped (zero padding in the
//!   real domain), then one of the float epilogues of [`Epilogue`].
//!
//! These loops are the oracle of the fast hybrid kernels (`ops/hybrid.rs`), which share the
//! quantization and the epilogue and differ only in how the int32 sums are made.

use super::conv::ConvGeom;

/// Lanes of [`min_max`]: independent running minima and maxima that the compiler keeps in one
/// vector register each.
const LANES: usize = 8;

/// The smallest and largest of `values` (±infinity when empty; NaNs are skipped).
#[inline(always)]
pub fn min_max(values: &[f32]) -> (f32, f32) {
    let mut lo = [f32::INFINITY; LANES];
    let mut hi = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            // Compare-and-select (not `f32::min`, whose NaN rule keeps it scalar): vectorizes.
            lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
            hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
        }
    }
    for &v in tail {
        lo[0] = if v < lo[0] { v } else { lo[0] };
        hi[0] = if v > hi[0] { v } else { hi[0] };
    }
    let lo = lo
        .iter()
        .fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
    let hi = hi
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    (lo, hi)
}

/// The range of two pieces' ranges `(min, max)` (NaN-free: [`min_max`] skips NaNs).
#[inline(always)]
pub fn combine((lo, hi): (f32, f32), (a, b): (f32, f32)) -> (f32, f32) {
    (if a < lo { a } else { lo }, if b > hi { b } else { hi })
}

/// `x` rounded half away from zero, as an integer (saturating), as C's `round` does.
#[inline(always)]
fn round_away(x: f32) -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        // Baseline x86_64 has no rounding instruction (`f32::round` is a libm call): add ±½
        // in f64, exact for every f32, and truncate.
        let x = x as f64;
        (x + 0.5f64.copysign(x)) as i32
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        x.round() as i32
    }
}

/// How a group of float values is mapped to int8: `q = clamp(round(x · inv) + zp)` on
/// `[lo_q, 127]`; `scale` is what the epilogue multiplies by. From the group's range alone, so
/// the range can be found in pieces (threads) and the values quantized in pieces.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputQuant {
    pub scale: f32,
    pub inv: f32,
    pub zp: i32,
    /// -128 (asymmetric) or -127 (symmetric).
    pub lo_q: i32,
    /// The range is zero: every value quantizes to 0 (scale 1, zero point 0).
    pub zero: bool,
}

impl InputQuant {
    /// TFLite's `AsymmetricQuantizeFloats` parameters for a group whose smallest and largest
    /// values are `lo` and `hi` (`lo > hi` when the group is empty): the range
    /// `[min(0, lo), max(0, hi)]` onto `[-128, 127]`.
    pub fn asymmetric(lo: f32, hi: f32) -> InputQuant {
        let rmin = lo.min(0.0);
        let rmax = hi.max(0.0);
        if lo > hi || rmin == rmax {
            return InputQuant::ZERO;
        }
        let (qmin, qmax) = (-128.0f64, 127.0f64);
        // The range is a float difference (TFLite keeps rmin and rmax as float), the rest double.
        let scale = (rmax - rmin) as f64 / (qmax - qmin);
        let (rmin, rmax) = (rmin as f64, rmax as f64);
        let zp_from_min = qmin - rmin / scale;
        let zp_from_max = qmax - rmax / scale;
        let err_min = qmin.abs() + (rmin / scale).abs();
        let err_max = qmax.abs() + (rmax / scale).abs();
        let zp = if err_min < err_max {
            zp_from_min
        } else {
            zp_from_max
        };
        let offset = if zp <= qmin {
            -128
        } else if zp >= qmax {
            127
        } else {
            zp.round() as i32
        };
        let scale = scale as f32;
        InputQuant {
            scale,
            inv: (1.0f64 / scale as f64) as f32,
            zp: offset,
            lo_q: -128,
            zero: false,
        }
    }

    /// TFLite's `SymmetricQuantizeFloats` parameters for a group whose smallest and largest
    /// values are `lo` and `hi` (`lo > hi` when empty): `max |x|` onto `±127`.
    pub fn symmetric(lo: f32, hi: f32) -> InputQuant {
        let range = if lo > hi { 0.0 } else { lo.abs().max(hi.abs()) };
        if range == 0.0 {
            return InputQuant::ZERO;
        }
        InputQuant {
            scale: range / 127.0,
            inv: 127.0f32 / range,
            zp: 0,
            lo_q: -127,
            zero: false,
        }
    }

    /// The parameters of a group with range `(lo, hi)`, asymmetric or symmetric.
    pub fn new(asymmetric: bool, lo: f32, hi: f32) -> InputQuant {
        if asymmetric {
            InputQuant::asymmetric(lo, hi)
        } else {
            InputQuant::symmetric(lo, hi)
        }
    }

    const ZERO: InputQuant = InputQuant {
        scale: 1.0,
        inv: 0.0,
        zp: 0,
        lo_q: -128,
        zero: true,
    };

    /// Quantize `values` into `out` (same length) with these parameters. `round(x · inv) + zp`:
    /// the product rounded on its own, then the zero point added (an integer). This is what
    /// TFLite's build computes, found against it on real activations: `round(zp + x · inv)`
    /// differs on camera pixels (p/127.5 − 1 lands on exact halves) and on values a few ulps
    /// from a half.
    #[inline(always)]
    pub fn apply(&self, values: &[f32], out: &mut [i8]) {
        assert_eq!(values.len(), out.len(), "quantize: lengths differ");
        if self.zero {
            out.fill(0);
            return;
        }
        let (inv, zp, lo_q) = (self.inv, self.zp, self.lo_q);
        for (o, &v) in out.iter_mut().zip(values) {
            *o = (round_away(v * inv).clamp(-256, 256) + zp).clamp(lo_q, 127) as i8;
        }
    }
}

/// TFLite's `AsymmetricQuantizeFloats`: quantize `values` into `out` (same length); returns
/// (scale, zero point). An all-zero range gives scale 1, zero point 0 and zeros.
#[inline(always)]
pub fn quantize_asymmetric(values: &[f32], out: &mut [i8]) -> (f32, i32) {
    let (lo, hi) = min_max(values);
    let q = InputQuant::asymmetric(lo, hi);
    q.apply(values, out);
    (q.scale, q.zp)
}

/// TFLite's `SymmetricQuantizeFloats`: quantize `values` into `out` on `±127`; returns the
/// scale. An all-zero input gives scale 1 and zeros.
#[inline(always)]
pub fn quantize_symmetric(values: &[f32], out: &mut [i8]) -> f32 {
    let (lo, hi) = min_max(values);
    let q = InputQuant::symmetric(lo, hi);
    q.apply(values, out);
    q.scale
}

/// How an int32 sum becomes the float output of channel `j` in group (batch or row) `b`, in
/// TFLite's order of operations, before the bias is added and the result clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// CONV_2D with per-channel weights: `(acc · ws[j]) · s[b]`.
    ConvPerChannel,
    /// Everything else: `acc · (s[b] · ws[j])` (per-tensor weights: `ws[j]` is the one scale).
    Combined,
}

impl Epilogue {
    /// Output row of `acc` (one value per channel) into `out`.
    #[inline(always)]
    pub fn row(
        self,
        acc: &[i32],
        weight_scales: &[f32],
        input_scale: f32,
        bias: &[f32],
        clamp: (f32, f32),
        out: &mut [f32],
    ) {
        let (lo, hi) = clamp;
        match self {
            Epilogue::ConvPerChannel => {
                for (((o, &a), &ws), &b) in out.iter_mut().zip(acc).zip(weight_scales).zip(bias) {
                    *o = (a as f32 * ws * input_scale + b).max(lo).min(hi);
                }
            }
            Epilogue::Combined => {
                for (((o, &a), &ws), &b) in out.iter_mut().zip(acc).zip(weight_scales).zip(bias) {
                    *o = (a as f32 * (input_scale * ws) + b).max(lo).min(hi);
                }
            }
        }
    }
}

/// Reference int32 sums of a hybrid CONV_2D: `acc[p][j] = Σ w[j][fy][fx][c] · (x − zp[b])`
/// over the taps inside the input, for every output pixel `p` of batch `b` (OHWI filter).
pub fn conv_acc(g: &ConvGeom, xq: &[i8], zp: &[i32], w: &[i8], acc: &mut [i32]) {
    let (ic, oc) = (g.in_c, g.out_c);
    assert!(xq.len() >= g.input_len() && acc.len() >= g.output_len());
    assert!(w.len() >= oc * g.filter_h * g.filter_w * ic && zp.len() >= g.batch);
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let p = (b * g.out_h + oy) * g.out_w + ox;
                for j in 0..oc {
                    let mut s = 0i32;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            let x = &xq[((b * g.in_h + iy) * g.in_w + ix) * ic..][..ic];
                            let wr = &w[((j * g.filter_h + fy) * g.filter_w + fx) * ic..][..ic];
                            for (&xv, &wv) in x.iter().zip(wr) {
                                s = s.wrapping_add((xv as i32 - zp[b]).wrapping_mul(wv as i32));
                            }
                        }
                    }
                    acc[p * oc + j] = s;
                }
            }
        }
    }
}

/// Reference int32 sums of a hybrid DEPTHWISE_CONV_2D with depth multiplier `mult`
/// (`[1][fh][fw][out_c]` filter).
pub fn depthwise_acc(g: &ConvGeom, mult: usize, xq: &[i8], zp: &[i32], w: &[i8], acc: &mut [i32]) {
    let (ic, oc) = (g.in_c, g.out_c);
    assert_eq!(ic * mult, oc, "depthwise_acc: channels");
    assert!(xq.len() >= g.input_len() && acc.len() >= g.output_len());
    assert!(w.len() >= g.filter_h * g.filter_w * oc && zp.len() >= g.batch);
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let p = (b * g.out_h + oy) * g.out_w + ox;
                for j in 0..oc {
                    let c = j / mult;
                    let mut s = 0i32;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            let x = xq[((b * g.in_h + iy) * g.in_w + ix) * ic + c] as i32;
                            let wv = w[(fy * g.filter_w + fx) * oc + j] as i32;
                            s = s.wrapping_add((x - zp[b]).wrapping_mul(wv));
                        }
                    }
                    acc[p * oc + j] = s;
                }
            }
        }
    }
}

/// Reference int32 sums of a hybrid FULLY_CONNECTED: `acc[r][j] = Σ w[j][k] · (x[r][k] − zp[r])`.
pub fn fc_acc(
    rows: usize,
    depth: usize,
    units: usize,
    xq: &[i8],
    zp: &[i32],
    w: &[i8],
    acc: &mut [i32],
) {
    assert!(xq.len() >= rows * depth && w.len() >= units * depth);
    assert!(acc.len() >= rows * units && zp.len() >= rows);
    for r in 0..rows {
        let x = &xq[r * depth..(r + 1) * depth];
        for j in 0..units {
            let wr = &w[j * depth..(j + 1) * depth];
            acc[r * units + j] = x.iter().zip(wr).fold(0i32, |s, (&xv, &wv)| {
                s.wrapping_add((xv as i32 - zp[r]).wrapping_mul(wv as i32))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asymmetric_quantization_spans_the_range_with_zero_exact() {
        let v = [-1.0f32, -0.25, 0.0, 0.5, 3.0];
        let mut q = [0i8; 5];
        let (s, zp) = quantize_asymmetric(&v, &mut q);
        assert!((s - 4.0 / 255.0).abs() < 1e-7, "{s}");
        assert_eq!(zp, -64);
        assert_eq!(q[0], -128);
        assert_eq!(q[4], 127);
        assert_eq!(q[2] as i32, zp, "zero is exact");
        // Only positive values: the range still starts at 0.
        let (_, zp) = quantize_asymmetric(&[0.5, 2.0], &mut [0; 2]);
        assert_eq!(zp, -128);
        let (s, zp) = quantize_asymmetric(&[0.0; 3], &mut q[..3]);
        assert_eq!((s, zp, &q[..3]), (1.0, 0, &[0i8, 0, 0][..]));
    }

    #[test]
    fn rounding_is_half_away_from_zero_and_min_max_skips_nothing() {
        for (x, want) in [
            (0.5f32, 1),
            (-0.5, -1),
            (1.5, 2),
            (-2.5, -3),
            (0.49999997, 0),
            (-0.49999997, 0),
            (8388607.5, 8388608),
            (1e10, i32::MAX),
            (-1e10, i32::MIN),
        ] {
            assert_eq!(round_away(x), want, "{x}");
            assert_eq!(round_away(x), x.round() as i32, "{x}");
        }
        let v: Vec<f32> = (0..37).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        let (lo, hi) = min_max(&v);
        assert_eq!((lo, hi), (-50.0, 50.0));
        assert_eq!(min_max(&[3.0]), (3.0, 3.0));
    }

    #[test]
    fn symmetric_quantization_maps_the_largest_magnitude_to_127() {
        let mut q = [0i8; 3];
        let s = quantize_symmetric(&[-2.0, 0.5, 1.0], &mut q);
        assert_eq!(s, 2.0 / 127.0);
        assert_eq!(q, [-127, 32, 64]);
    }
}
