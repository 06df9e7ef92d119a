//! Reference 16x8 kernels: int16 activations (symmetric, zero point 0), int8
//! per-channel weights (zero point 0), int64 bias and accumulator, as TFLite's
//! `reference_integer_ops::ConvPerChannel` / `DepthwiseConvPerChannel` for
//! int16 do. Layouts and geometry as in [`super::conv`]; callers guarantee the
//! slice sizes.

use super::conv::ConvGeom;
use crate::engine::quant::RequantPerChannel16;

/// 16x8 convolution. `filter` is OHWI int8; `bias` (int64) has `out_c` entries.
pub fn conv_16x8(
    g: &ConvGeom,
    input: &[i16],
    filter: &[i8],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
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
    q: &RequantPerChannel16<'_>,
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

#[cfg(test)]
mod tests {
    use super::*;

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
