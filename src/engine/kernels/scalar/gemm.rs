//! Portable reference implementations of the matrix kernels behind
//! [`crate::engine::kernels`]'s dispatch (`gemm_i8`, `requant_i8`, `depthwise_i8`,
//! and their float counterparts). The packed weight layout of the scalar path is
//! the plain row-major `n x k` matrix.

use std::ops::Range;

use super::conv::Depthwise;
use crate::engine::kernels::{Clamp, KernelPath, Mat, MatMut, PackedF32, RequantCols};
use crate::engine::quant::{multiply_by_quantized_multiplier, RequantPerChannel};

pub fn pack_i8(_path: KernelPath, w: &[i8], n: usize, k: usize) -> Vec<i8> {
    w[..n * k].to_vec()
}

pub fn pack_f32(_path: KernelPath, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    w[..n * k].to_vec()
}

/// `acc[i][j] = sum_kk a[i][kk] * W[j][kk]` (wrapping i32), W the `n x k` row-major matrix
/// (`n = acc.cols`, `k = a.cols`); the dispatcher checked the views.
pub fn gemm_i8(_path: KernelPath, packed: &[i8], a: Mat<'_, i8>, acc: MatMut<'_, i32>) {
    let (n, k) = (acc.cols, a.cols);
    let (m, lda, ldacc) = (a.rows, a.stride, acc.stride);
    let (a, acc) = (a.data, acc.data);
    for i in 0..m {
        let x = &a[i * lda..i * lda + k];
        for j in 0..n {
            let w = &packed[j * k..(j + 1) * k];
            let mut s = 0i32;
            for (&p, &q) in x.iter().zip(w) {
                s = s.wrapping_add(p as i32 * q as i32);
            }
            acc[i * ldacc + j] = s;
        }
    }
}

/// The requantization epilogue of `acc` into `out` (same shape; see `kernels::requant_i8`).
pub fn requant_i8(_path: KernelPath, acc: Mat<'_, i32>, rq: &RequantCols<'_>, out: MatMut<'_, i8>) {
    let (m, n, ldacc, ldo) = (acc.rows, acc.cols, acc.stride, out.stride);
    let (acc, out) = (acc.data, out.data);
    for i in 0..m {
        for j in 0..n {
            let v = multiply_by_quantized_multiplier(
                acc[i * ldacc + j].wrapping_add(rq.bias[j]),
                rq.multipliers[j],
                rq.shifts[j],
            )
            .wrapping_add(rq.output_offset);
            out[i * ldo + j] = v.clamp(rq.act_min, rq.act_max).clamp(-128, 127) as i8;
        }
    }
}

pub fn gemm_f32(
    p: &PackedF32,
    a: Mat<'_, f32>,
    bias: Option<&[f32]>,
    clamp: Clamp,
    out: MatMut<'_, f32>,
) {
    let (packed, n, k) = (&p.data[..], p.n, p.k);
    let (a, m, lda) = (a.data, a.rows, a.stride);
    let (out, ldo) = (out.data, out.stride);
    let clamp = (clamp.min, clamp.max);
    for i in 0..m {
        let x = &a[i * lda..i * lda + k];
        for j in 0..n {
            let w = &packed[j * k..(j + 1) * k];
            let mut s = 0.0f32;
            for (p, q) in x.iter().zip(w) {
                s += p * q;
            }
            if let Some(b) = bias {
                s += b[j];
            }
            out[i * ldo + j] = s.max(clamp.0).min(clamp.1);
        }
    }
}

/// Depthwise int8 over output rows `rows` (of `batch * out_h`), the loop of
/// `conv::depthwise_q::<i8>`.
pub fn depthwise_i8(
    _path: KernelPath,
    op: &Depthwise<'_, i8, i32>,
    q: &RequantPerChannel<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let Depthwise {
        g,
        depth_multiplier,
        input,
        filter,
        bias,
    } = *op;
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        let mut o = row * g.out_w * g.out_c;
        for ox in 0..g.out_w {
            for c in 0..g.in_c {
                for m in 0..depth_multiplier {
                    let oc = c * depth_multiplier + m;
                    let mut acc = 0i32;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            let x = input[((b * g.in_h + iy) * g.in_w + ix) * g.in_c + c] as i32;
                            let w = filter[(fy * g.filter_w + fx) * g.out_c + oc] as i32;
                            acc = acc.wrapping_add((w + q.filter_offset) * (x + q.input_offset));
                        }
                    }
                    if let Some(bias) = bias {
                        acc = acc.wrapping_add(bias[oc]);
                    }
                    out[o] = q.finish(acc, oc).clamp(-128, 127) as i8;
                    o += 1;
                }
            }
        }
    }
}

/// Float depthwise over output rows `rows`, the loop of `conv::depthwise_f32`.
pub fn depthwise_f32(
    _path: KernelPath,
    op: &Depthwise<'_, f32, f32>,
    clamp: Clamp,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let Depthwise {
        g,
        depth_multiplier,
        input,
        filter,
        bias,
    } = *op;
    let clamp = (clamp.min, clamp.max);
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        let mut o = row * g.out_w * g.out_c;
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
                    out[o] = acc.max(clamp.0).min(clamp.1);
                    o += 1;
                }
            }
        }
    }
}
