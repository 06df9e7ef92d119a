//! Fast 16x8 convolution and depthwise convolution (int16 activations, int8
//! weights): per output row, over a range of rows so that the operator can cut
//! the work over the pool. Bit-exact with the scalar oracle
//! ([`super::scalar::conv16`]): the products are summed exactly in int32 blocks
//! that cannot overflow (a product is at most 2²² in magnitude, a block at most
//! 256 products), then in int64 with the bias, and requantized the same way.
//!
//! The loops are written for the compiler to vectorize (int16 × int16 multiply-add
//! into int32: `pmaddwd` / `vpmaddwd` on x86_64, `smlal` on aarch64); on x86_64 the
//! AVX2 / AVX-512 paths run them compiled once more with AVX2 enabled
//! (`x86_64::conv16_avx2`).

use std::ops::Range;

use super::scalar::conv::ConvGeom;
use super::KernelPath;
use crate::engine::quant::RequantPerChannel16;

/// The operands of the 16x8 kernels: geometry, int16 input, filter widened to int16,
/// int64 bias and per-channel requantization.
#[derive(Clone, Copy)]
pub struct Conv16Operands<'a> {
    pub g: &'a ConvGeom,
    /// The whole input tensor (`g.input_len()` values).
    pub input: &'a [i16],
    /// The filter widened to int16: OHWI for [`conv_16x8_rows`], `[1, KH, KW, C]` for
    /// [`depthwise_16x8_rows`].
    pub w: &'a [i16],
    pub bias: Option<&'a [i64]>,
    pub q: &'a RequantPerChannel16<'a>,
}

/// Products summed in one int32 block (2²² × 256 = 2³⁰).
const BLOCK: usize = 256;

/// Largest number of taps of a depthwise filter summed in int32 (`fh × fw`).
pub const DEPTHWISE_MAX_TAPS: usize = BLOCK;

/// Exact `Σ x[i] · w[i]` (`w` holds int8 values widened to int16).
#[inline(always)]
fn dot(x: &[i16], w: &[i16]) -> i64 {
    let mut acc = 0i64;
    for (xb, wb) in x.chunks(BLOCK).zip(w.chunks(BLOCK)) {
        let mut s = 0i32;
        for (&a, &b) in xb.iter().zip(wb) {
            s = s.wrapping_add(a as i32 * b as i32);
        }
        acc += s as i64;
    }
    acc
}

/// Output rows `rows` (over all batches: row `r` is batch `r / out_h`, row `r % out_h`)
/// of a 16x8 convolution into `out` (`rows.len() × out_w × out_c` values). `w` is the
/// OHWI filter widened to int16; `col` is scratch (resized as needed).
#[inline(always)]
pub(super) fn conv_rows_body(
    op: &Conv16Operands<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    col: &mut Vec<i16>,
) {
    let Conv16Operands {
        g,
        input,
        w,
        bias,
        q,
    } = *op;
    let ic = g.in_c;
    let k = g.filter_h * g.filter_w * ic;
    col.clear();
    col.resize(k, 0);
    let mut o = 0;
    for r in rows {
        let (b, oy) = (r / g.out_h, r % g.out_h);
        for ox in 0..g.out_w {
            // im2col of one output pixel: taps outside the input are zeros (they add 0).
            for fy in 0..g.filter_h {
                for fx in 0..g.filter_w {
                    let dst = &mut col[(fy * g.filter_w + fx) * ic..][..ic];
                    match (g.in_y(oy, fy), g.in_x(ox, fx)) {
                        (Some(iy), Some(ix)) => {
                            let s = ((b * g.in_h + iy) * g.in_w + ix) * ic;
                            dst.copy_from_slice(&input[s..s + ic]);
                        }
                        _ => dst.fill(0),
                    }
                }
            }
            for (oc, wr) in w.chunks_exact(k).enumerate() {
                let mut acc = dot(col, wr);
                if let Some(bias) = bias {
                    acc = acc.wrapping_add(bias[oc]);
                }
                out[o] = q.finish(acc, oc);
                o += 1;
            }
        }
    }
}

/// Depthwise convolution with depth multiplier 1, output rows `rows` (as for
/// [`conv_16x8_rows`]); `acc` is int32 scratch. Filter taps must be at most
/// [`DEPTHWISE_MAX_TAPS`].
#[inline(always)]
pub(super) fn depthwise_rows_body(
    op: &Conv16Operands<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    acc: &mut Vec<i32>,
) {
    let Conv16Operands {
        g,
        input,
        w,
        bias,
        q,
    } = *op;
    let c = g.in_c;
    acc.clear();
    acc.resize(g.out_w * c, 0);
    let mut o = 0;
    for r in rows {
        let (b, oy) = (r / g.out_h, r % g.out_h);
        acc.fill(0);
        let plane = &input[b * g.in_h * g.in_w * c..][..g.in_h * g.in_w * c];
        for fy in 0..g.filter_h {
            let Some(iy) = g.in_y(oy, fy) else { continue };
            let row = &plane[iy * g.in_w * c..][..g.in_w * c];
            for fx in 0..g.filter_w {
                let wt = &w[(fy * g.filter_w + fx) * c..][..c];
                for ox in 0..g.out_w {
                    let Some(ix) = g.in_x(ox, fx) else { continue };
                    let x = &row[ix * c..][..c];
                    let a = &mut acc[ox * c..][..c];
                    for ((a, &x), &w) in a.iter_mut().zip(x).zip(wt) {
                        *a = a.wrapping_add(x as i32 * w as i32);
                    }
                }
            }
        }
        for a in acc.chunks_exact(c) {
            for (ch, &v) in a.iter().enumerate() {
                let mut s = v as i64;
                if let Some(bias) = bias {
                    s = s.wrapping_add(bias[ch]);
                }
                out[o] = q.finish(s, ch);
                o += 1;
            }
        }
    }
}

fn check(op: &Conv16Operands<'_>, rows: &Range<usize>, out: &[i16], w_len: usize) {
    let Conv16Operands {
        g,
        input,
        w,
        bias,
        q,
    } = *op;
    assert_eq!(input.len(), g.input_len(), "conv16: input size");
    assert_eq!(w.len(), w_len, "conv16: filter size");
    assert!(bias.is_none_or(|b| b.len() == g.out_c), "conv16: bias size");
    assert!(
        q.multipliers.len() == g.out_c && q.shifts.len() == g.out_c,
        "conv16: requantization size"
    );
    assert!(
        rows.start <= rows.end && rows.end <= g.batch * g.out_h,
        "conv16: rows"
    );
    assert_eq!(
        out.len(),
        rows.len() * g.out_w * g.out_c,
        "conv16: output size"
    );
}

/// Output rows `rows` of a 16x8 convolution on `path` (bit-exact with
/// [`super::scalar::conv16::conv_16x8`]). `op.w` is the OHWI filter widened to int16;
/// `col` is scratch (resized as needed).
///
/// # Panics
/// When a slice does not have the size the geometry implies.
pub fn conv_16x8_rows(
    path: KernelPath,
    op: &Conv16Operands<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    col: &mut Vec<i16>,
) {
    let g = op.g;
    check(op, &rows, out, g.out_c * g.filter_h * g.filter_w * g.in_c);
    match super::effective(path) {
        // `effective` returns an AVX2 / AVX-512 path only when the CPU supports it (both
        // include AVX2).
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            super::x86_64::conv16_avx2::conv_rows(op, rows, out, col)
        }
        _ => conv_rows_body(op, rows, out, col),
    }
}

/// Output rows `rows` of a 16x8 depthwise convolution with depth multiplier 1 on
/// `path` (bit-exact with [`super::scalar::conv16::depthwise_16x8`]). `w` is the
/// `op.w` is the `[1, KH, KW, C]` filter widened to int16; `acc` is int32 scratch.
///
/// # Panics
/// When a slice does not have the size the geometry implies, the depth multiplier
/// is not 1 or the filter has more than [`DEPTHWISE_MAX_TAPS`] taps.
pub fn depthwise_16x8_rows(
    path: KernelPath,
    op: &Conv16Operands<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    acc: &mut Vec<i32>,
) {
    let g = op.g;
    assert_eq!(
        g.in_c, g.out_c,
        "depthwise_16x8_rows: depth multiplier 1 only"
    );
    assert!(
        g.filter_h * g.filter_w <= DEPTHWISE_MAX_TAPS,
        "depthwise_16x8_rows: too many taps"
    );
    check(op, &rows, out, g.filter_h * g.filter_w * g.out_c);
    match super::effective(path) {
        // As in `conv_16x8_rows`: AVX2 is supported on this path.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            super::x86_64::conv16_avx2::depthwise_rows(op, rows, out, acc)
        }
        _ => depthwise_rows_body(op, rows, out, acc),
    }
}
