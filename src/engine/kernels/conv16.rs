//! Fast 16x8 convolution and depthwise convolution (int16 activations, int8
//! weights): per output row, over a range of rows so that the operator can cut
//! the work over the pool. Bit-exact with the scalar oracle
//! ([`super::scalar::conv16`]): the products are summed exactly in int32 blocks
//! that cannot overflow (a product is at most 2²² in magnitude, a block at most
//! 256 products), then in int64 with the bias, and requantized the same way.
//!
//! The loops are written for the compiler to vectorize (int16 × int16 multiply-add
//! into int32: `pmaddwd` / `vpmaddwd` on x86_64, `smlal` on aarch64); on x86_64 the
//! AVX2 paths compile them once more with AVX2 enabled.

use std::ops::Range;

use super::scalar::conv::ConvGeom;
use super::KernelPath;
use crate::engine::quant::RequantPerChannel16;

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
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conv_rows_body(
    g: &ConvGeom,
    input: &[i16],
    w: &[i16],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    col: &mut Vec<i16>,
) {
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
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn depthwise_rows_body(
    g: &ConvGeom,
    input: &[i16],
    w: &[i16],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    acc: &mut Vec<i32>,
) {
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn conv_rows_avx2(
    g: &ConvGeom,
    input: &[i16],
    w: &[i16],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    col: &mut Vec<i16>,
) {
    conv_rows_body(g, input, w, bias, q, rows, out, col)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn depthwise_rows_avx2(
    g: &ConvGeom,
    input: &[i16],
    w: &[i16],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    acc: &mut Vec<i32>,
) {
    depthwise_rows_body(g, input, w, bias, q, rows, out, acc)
}

#[allow(clippy::too_many_arguments)]
fn check(
    g: &ConvGeom,
    input: &[i16],
    w: &[i16],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
    rows: &Range<usize>,
    out: &[i16],
    w_len: usize,
) {
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
/// [`super::scalar::conv16::conv_16x8`]). `w` is the OHWI filter widened to int16.
///
/// # Panics
/// When a slice does not have the size the geometry implies.
#[allow(clippy::too_many_arguments)]
pub fn conv_16x8_rows(
    path: KernelPath,
    g: &ConvGeom,
    input: &[i16],
    w: &[i16],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    col: &mut Vec<i16>,
) {
    check(
        g,
        input,
        w,
        bias,
        q,
        &rows,
        out,
        g.out_c * g.filter_h * g.filter_w * g.in_c,
    );
    match super::effective(path) {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            // SAFETY: `effective` returns an AVX2 / AVX-512 path only when the CPU
            // supports it (both include AVX2); the body is safe code.
            unsafe { conv_rows_avx2(g, input, w, bias, q, rows, out, col) }
        }
        _ => conv_rows_body(g, input, w, bias, q, rows, out, col),
    }
}

/// Output rows `rows` of a 16x8 depthwise convolution with depth multiplier 1 on
/// `path` (bit-exact with [`super::scalar::conv16::depthwise_16x8`]). `w` is the
/// `[1, KH, KW, C]` filter widened to int16.
///
/// # Panics
/// When a slice does not have the size the geometry implies, the depth multiplier
/// is not 1 or the filter has more than [`DEPTHWISE_MAX_TAPS`] taps.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_16x8_rows(
    path: KernelPath,
    g: &ConvGeom,
    input: &[i16],
    w: &[i16],
    bias: Option<&[i64]>,
    q: &RequantPerChannel16<'_>,
    rows: Range<usize>,
    out: &mut [i16],
    acc: &mut Vec<i32>,
) {
    assert_eq!(
        g.in_c, g.out_c,
        "depthwise_16x8_rows: depth multiplier 1 only"
    );
    assert!(
        g.filter_h * g.filter_w <= DEPTHWISE_MAX_TAPS,
        "depthwise_16x8_rows: too many taps"
    );
    check(
        g,
        input,
        w,
        bias,
        q,
        &rows,
        out,
        g.filter_h * g.filter_w * g.out_c,
    );
    match super::effective(path) {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            // SAFETY: as in `conv_16x8_rows`: AVX2 is supported on this path.
            unsafe { depthwise_rows_avx2(g, input, w, bias, q, rows, out, acc) }
        }
        _ => depthwise_rows_body(g, input, w, bias, q, rows, out, acc),
    }
}
