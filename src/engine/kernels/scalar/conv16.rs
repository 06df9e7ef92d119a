//! Reference 16x8 kernels: int16 activations (symmetric, zero point 0), int8
//! per-channel weights (zero point 0), int64 bias and accumulator, as TFLite's
//! `reference_integer_ops::ConvPerChannel` / `DepthwiseConvPerChannel` for
//! int16 do. Layouts and geometry as in [`super::conv`]; callers guarantee the
//! slice sizes.

use super::conv::ConvGeom;

/// TFLite's `MultiplyByQuantizedMultiplier` for an int64 input: the Q31
/// multiplier is first reduced to Q15 (rounded, saturated at 0x7FFF), then one
/// rounding right shift by `15 - shift` (round half up). `shift` must be in
/// `-31..=7` (checked when the operator is prepared).
#[inline(always)]
pub fn multiply_by_quantized_multiplier_i64(x: i64, multiplier: i32, shift: i32) -> i32 {
    let reduced: i64 = if multiplier < 0x7FFF_0000 {
        ((multiplier as i64) + (1 << 15)) >> 16
    } else {
        0x7FFF
    };
    let total_shift = (15 - shift) as u32;
    let round = 1i64 << (total_shift - 1);
    (x.wrapping_mul(reduced).wrapping_add(round) >> total_shift) as i32
}

/// `x · multiplier · 2^(shift − 31)` rounded half up in one step, with the full Q31
/// multiplier: what TFLite's reference FULLY_CONNECTED 16x8 computes (measured
/// against ai-edge-litert's BUILTIN_REF kernels: the convolutions' reduced Q15
/// multiplier does not reproduce it). `shift` must be in `-31..=7`.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_i64_single(x: i64, multiplier: i32, shift: i32) -> i32 {
    let total_shift = (31 - shift) as u32;
    let round = 1i128 << (total_shift - 1);
    ((x as i128 * multiplier as i128 + round) >> total_shift) as i32
}

/// Per-channel requantization of a 16x8 operator.
#[derive(Clone, Copy, Debug)]
pub struct Requant16<'a> {
    pub multipliers: &'a [i32],
    pub shifts: &'a [i32],
    pub act_min: i32,
    pub act_max: i32,
    /// FULLY_CONNECTED's single-rounding multiply instead of the convolutions' one.
    pub single_rounding: bool,
}

impl Requant16<'_> {
    /// Finish the accumulator of output channel `c` (bias already added).
    #[inline(always)]
    pub fn finish(&self, acc: i64, c: usize) -> i16 {
        let (m, s) = (self.multipliers[c], self.shifts[c]);
        let v = if self.single_rounding {
            multiply_by_quantized_multiplier_i64_single(acc, m, s)
        } else {
            multiply_by_quantized_multiplier_i64(acc, m, s)
        };
        v.clamp(self.act_min, self.act_max) as i16
    }
}

/// 16x8 convolution. `filter` is OHWI int8; `bias` (int64) has `out_c` entries.
pub fn conv_16x8(
    g: &ConvGeom,
    input: &[i16],
    filter: &[i8],
    bias: Option<&[i64]>,
    q: &Requant16<'_>,
    output: &mut [i16],
) {
    let ic = g.in_c;
    let mut o = 0;
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for oc in 0..g.out_c {
                    let mut acc = 0i64;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            let ib = ((b * g.in_h + iy) * g.in_w + ix) * ic;
                            let fb = ((oc * g.filter_h + fy) * g.filter_w + fx) * ic;
                            acc += dot_16x8(&input[ib..ib + ic], &filter[fb..fb + ic]);
                        }
                    }
                    if let Some(bias) = bias {
                        acc = acc.wrapping_add(bias[oc]);
                    }
                    output[o] = q.finish(acc, oc);
                    o += 1;
                }
            }
        }
    }
}

/// Exact dot product of int16 activations and int8 weights. Each product fits
/// in 23 bits, so an int32 partial sum of up to 256 products cannot overflow;
/// longer rows are summed in blocks into an int64.
#[inline(always)]
pub fn dot_16x8(x: &[i16], w: &[i8]) -> i64 {
    let mut acc = 0i64;
    for (xb, wb) in x.chunks(256).zip(w.chunks(256)) {
        let mut s = 0i32;
        for (&a, &b) in xb.iter().zip(wb) {
            s += a as i32 * b as i32;
        }
        acc += s as i64;
    }
    acc
}

/// 16x8 depthwise convolution: output channel `c * depth_multiplier + m` reads
/// input channel `c`; `filter` is `[1, KH, KW, out_c]`.
pub fn depthwise_16x8(
    g: &ConvGeom,
    depth_multiplier: usize,
    input: &[i16],
    filter: &[i8],
    bias: Option<&[i64]>,
    q: &Requant16<'_>,
    output: &mut [i16],
) {
    let mut o = 0;
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for c in 0..g.in_c {
                    for m in 0..depth_multiplier {
                        let oc = c * depth_multiplier + m;
                        let mut acc = 0i64;
                        for fy in 0..g.filter_h {
                            let Some(iy) = g.in_y(oy, fy) else { continue };
                            for fx in 0..g.filter_w {
                                let Some(ix) = g.in_x(ox, fx) else { continue };
                                let x = input[((b * g.in_h + iy) * g.in_w + ix) * g.in_c + c];
                                let w = filter[(fy * g.filter_w + fx) * g.out_c + oc];
                                acc += x as i64 * w as i64;
                            }
                        }
                        if let Some(bias) = bias {
                            acc = acc.wrapping_add(bias[oc]);
                        }
                        output[o] = q.finish(acc, oc);
                        o += 1;
                    }
                }
            }
        }
    }
}

/// TFLite's `Requantize` of one stored value: `(v - in_zp)` scaled by the Q31
/// multiplier (32-bit `MultiplyByQuantizedMultiplier`), plus `out_zp`, clamped.
#[inline(always)]
pub fn requantize_value(
    v: i32,
    in_zp: i32,
    out_zp: i32,
    mult: i32,
    shift: i32,
    lo: i32,
    hi: i32,
) -> i32 {
    super::quant::multiply_by_quantized_multiplier(v - in_zp, mult, shift)
        .saturating_add(out_zp)
        .clamp(lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i64_multiplier_rounds_half_up() {
        // 0.5 = 2^30 * 2^(0 - 31)
        assert_eq!(multiply_by_quantized_multiplier_i64(3, 1 << 30, 0), 2);
        assert_eq!(multiply_by_quantized_multiplier_i64(-3, 1 << 30, 0), -1);
        assert_eq!(multiply_by_quantized_multiplier_i64(1000, 1 << 30, 0), 500);
        // Multipliers near 1 saturate the Q15 mantissa at 0x7FFF.
        assert_eq!(
            multiply_by_quantized_multiplier_i64(1 << 20, i32::MAX, 0),
            (((1i64 << 20) * 0x7FFF + (1 << 14)) >> 15) as i32
        );
    }

    #[test]
    fn dot_blocks_match_plain_sum() {
        let x: Vec<i16> = (0..1000)
            .map(|i| if i % 2 == 0 { i16::MIN } else { i16::MAX })
            .collect();
        let w: Vec<i8> = (0..1000)
            .map(|i| if i % 2 == 0 { i8::MIN } else { i8::MAX })
            .collect();
        let want: i64 = x.iter().zip(&w).map(|(&a, &b)| a as i64 * b as i64).sum();
        assert_eq!(dot_16x8(&x, &w), want);
    }
}
