//! Reference 2-D convolution and depthwise convolution over NHWC tensors.
//!
//! Layouts (TFLite's): input `[N, H, W, C]`, conv filter `[O, KH, KW, I]` (OHWI),
//! depthwise filter `[1, KH, KW, C * M]`, output `[N, OH, OW, O]`.
//! Padded positions are skipped (they contribute a real zero).
//! Callers guarantee that the slices have exactly the sizes the geometry implies
//! (the operator `build` checks shapes, `eval` checks lengths).

use crate::engine::quant::{QType, RequantPerChannel};

/// Geometry of a window operation (convolution, depthwise, pooling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub out_c: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    /// Padding before the first row / column (TFLite uses only this side).
    pub pad_top: usize,
    pub pad_left: usize,
}

impl ConvGeom {
    pub fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_h * self.out_w * self.out_c
    }
    /// Input row of output row `oy` and filter row `fy`, if inside the input.
    #[inline(always)]
    pub fn in_y(&self, oy: usize, fy: usize) -> Option<usize> {
        let y = (oy * self.stride_h + fy * self.dilation_h).checked_sub(self.pad_top)?;
        (y < self.in_h).then_some(y)
    }
    /// Input column of output column `ox` and filter column `fx`, if inside the input.
    #[inline(always)]
    pub fn in_x(&self, ox: usize, fx: usize) -> Option<usize> {
        let x = (ox * self.stride_w + fx * self.dilation_w).checked_sub(self.pad_left)?;
        (x < self.in_w).then_some(x)
    }
}

/// The operands of a depthwise convolution, for the kernels of every instruction set:
/// output channel `c * depth_multiplier + m` reads input channel `c`; `filter` is
/// `[1, KH, KW, out_c]` and `bias` has `out_c` entries. A value only describes the
/// operands: the dispatch entry points (`kernels::depthwise_i8` / `depthwise_f32`) check the
/// slices against `g` before a kernel reads them.
#[derive(Clone, Copy, Debug)]
pub struct Depthwise<'a, T, B> {
    pub g: &'a ConvGeom,
    pub depth_multiplier: usize,
    pub input: &'a [T],
    pub filter: &'a [T],
    pub bias: Option<&'a [B]>,
}

/// Float convolution. `filter` is OHWI, `bias` has `out_c` entries.
pub fn conv_f32(
    g: &ConvGeom,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    output: &mut [f32],
) {
    let ic = g.in_c;
    let mut o = 0;
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for oc in 0..g.out_c {
                    let mut acc = 0.0f32;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            let ib = ((b * g.in_h + iy) * g.in_w + ix) * ic;
                            let fb = ((oc * g.filter_h + fy) * g.filter_w + fx) * ic;
                            for (x, w) in input[ib..ib + ic].iter().zip(&filter[fb..fb + ic]) {
                                acc += x * w;
                            }
                        }
                    }
                    if let Some(bias) = bias {
                        acc += bias[oc];
                    }
                    output[o] = acc.max(clamp.0).min(clamp.1);
                    o += 1;
                }
            }
        }
    }
}

/// Quantized convolution (int8 per-channel or uint8 per-tensor broadcast).
/// `filter` is OHWI; `bias` (int32) has `out_c` entries.
pub fn conv_q<T: QType>(
    g: &ConvGeom,
    input: &[T],
    filter: &[T],
    bias: Option<&[i32]>,
    q: &RequantPerChannel<'_>,
    output: &mut [T],
) {
    let ic = g.in_c;
    let mut o = 0;
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for oc in 0..g.out_c {
                    let mut acc = 0i32;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            let ib = ((b * g.in_h + iy) * g.in_w + ix) * ic;
                            let fb = ((oc * g.filter_h + fy) * g.filter_w + fx) * ic;
                            for (&x, &w) in input[ib..ib + ic].iter().zip(&filter[fb..fb + ic]) {
                                acc = acc.wrapping_add(
                                    (w.to_i32() + q.filter_offset) * (x.to_i32() + q.input_offset),
                                );
                            }
                        }
                    }
                    if let Some(bias) = bias {
                        acc = acc.wrapping_add(bias[oc]);
                    }
                    output[o] = T::from_i32(q.finish(acc, oc));
                    o += 1;
                }
            }
        }
    }
}

/// Float depthwise convolution: output channel `c * depth_multiplier + m` reads
/// input channel `c`. `filter` is `[1, KH, KW, out_c]`; `g.out_c == g.in_c * depth_multiplier`.
pub fn depthwise_f32(
    g: &ConvGeom,
    depth_multiplier: usize,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    output: &mut [f32],
) {
    let mut o = 0;
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for c in 0..g.in_c {
                    for m in 0..depth_multiplier {
                        let oc = c * depth_multiplier + m;
                        let mut acc = 0.0f32;
                        for fy in 0..g.filter_h {
                            let Some(iy) = g.in_y(oy, fy) else { continue };
                            for fx in 0..g.filter_w {
                                let Some(ix) = g.in_x(ox, fx) else { continue };
                                let x = input[((b * g.in_h + iy) * g.in_w + ix) * g.in_c + c];
                                let w = filter[(fy * g.filter_w + fx) * g.out_c + oc];
                                acc += x * w;
                            }
                        }
                        if let Some(bias) = bias {
                            acc += bias[oc];
                        }
                        output[o] = acc.max(clamp.0).min(clamp.1);
                        o += 1;
                    }
                }
            }
        }
    }
}

/// Quantized depthwise convolution (int8 per-channel or uint8 per-tensor).
pub fn depthwise_q<T: QType>(
    g: &ConvGeom,
    depth_multiplier: usize,
    input: &[T],
    filter: &[T],
    bias: Option<&[i32]>,
    q: &RequantPerChannel<'_>,
    output: &mut [T],
) {
    let mut o = 0;
    for b in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for c in 0..g.in_c {
                    for m in 0..depth_multiplier {
                        let oc = c * depth_multiplier + m;
                        let mut acc = 0i32;
                        for fy in 0..g.filter_h {
                            let Some(iy) = g.in_y(oy, fy) else { continue };
                            for fx in 0..g.filter_w {
                                let Some(ix) = g.in_x(ox, fx) else { continue };
                                let x = input[((b * g.in_h + iy) * g.in_w + ix) * g.in_c + c];
                                let w = filter[(fy * g.filter_w + fx) * g.out_c + oc];
                                acc = acc.wrapping_add(
                                    (w.to_i32() + q.filter_offset) * (x.to_i32() + q.input_offset),
                                );
                            }
                        }
                        if let Some(bias) = bias {
                            acc = acc.wrapping_add(bias[oc]);
                        }
                        output[o] = T::from_i32(q.finish(acc, oc));
                        o += 1;
                    }
                }
            }
        }
    }
}

/// int32 accumulators of output row `oy` of a uint8 (or int8) depthwise convolution with depth
/// multiplier 1 (`g.batch` = 1): `acc[ox * c + ch] = Σ_taps (x + in_off) · w[tap][ch]`, with
/// `w` the filter minus its zero point as i32 (`[fh][fw][c]`). Taps outside the input are
/// skipped, as TFLite's reference kernel does. Channels are the inner loop, over
/// contiguous slices, so that it vectorizes on every target.
#[inline(always)]
pub fn depthwise_acc_row<T: Copy + Into<i32>>(
    g: &ConvGeom,
    input: &[T],
    w: &[i32],
    in_off: i32,
    oy: usize,
    acc: &mut [i32],
) {
    let c = g.in_c;
    assert_eq!(g.out_c, c, "depthwise_acc_row: depth multiplier 1 only");
    assert!(acc.len() >= g.out_w * c, "depthwise_acc_row: acc too short");
    assert!(w.len() >= g.filter_h * g.filter_w * c);
    acc[..g.out_w * c].fill(0);
    for fy in 0..g.filter_h {
        let Some(iy) = g.in_y(oy, fy) else { continue };
        let row = &input[iy * g.in_w * c..(iy + 1) * g.in_w * c];
        for fx in 0..g.filter_w {
            let wt = &w[(fy * g.filter_w + fx) * c..][..c];
            // The output columns whose tap fx is inside the input: ox0..ox1.
            let off = fx * g.dilation_w;
            let ox0 = g.pad_left.saturating_sub(off).div_ceil(g.stride_w);
            let ox1 = if g.in_w + g.pad_left > off {
                ((g.in_w + g.pad_left - off - 1) / g.stride_w + 1).min(g.out_w)
            } else {
                0
            };
            for ox in ox0..ox1.max(ox0) {
                let ix = ox * g.stride_w + off - g.pad_left;
                let x = &row[ix * c..(ix + 1) * c];
                let a = &mut acc[ox * c..(ox + 1) * c];
                // Wrapping: no overflow check in the loop, so that it vectorizes in every
                // profile (|x + in_off| ≤ 255 and |w| ≤ 255: no tap sum comes near 2³¹).
                for ((a, &x), &w) in a.iter_mut().zip(x).zip(wt) {
                    *a = a.wrapping_add(x.into().wrapping_add(in_off).wrapping_mul(w));
                }
            }
        }
    }
}
