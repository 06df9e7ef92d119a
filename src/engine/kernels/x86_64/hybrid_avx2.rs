//! The dynamic-range kernels (`kernels::hybrid`) with AVX2: the portable bodies compiled with
//! AVX2 enabled (32-bit multiplies, rounding and min/max in 256-bit vectors). No FMA is
//! enabled, so the float results are the oracle's bit for bit.

use crate::engine::kernels::hybrid::{
    body_depthwise_row, body_epilogue_rows, body_quantize, DepthwiseRowOperands, EpilogueArgs,
};

/// `quantize` of the AVX2 path.
pub fn quantize(asymmetric: bool, values: &[f32], out: &mut [i8]) -> (f32, i32) {
    // SAFETY: AVX2 was checked by the dispatcher; the body is safe code.
    unsafe { quantize_avx2(asymmetric, values, out) }
}

/// `depthwise_row` of the AVX2 path; the dispatcher checked `out`.
pub fn depthwise_row(op: &DepthwiseRowOperands<'_>, oy: usize, acc: &mut [i32], out: &mut [f32]) {
    // SAFETY: AVX2 was checked by the dispatcher; the body is safe code.
    unsafe { depthwise_row_avx2(op, oy, acc, out) }
}

/// `epilogue_rows` of the AVX2 path.
pub fn epilogue_rows(acc: &[i32], n: usize, ep: &EpilogueArgs<'_>, out: &mut [f32]) {
    // SAFETY: AVX2 was checked by the dispatcher; the body is safe code.
    unsafe { epilogue_rows_avx2(acc, n, ep, out) }
}

#[target_feature(enable = "avx2")]
fn quantize_avx2(asymmetric: bool, values: &[f32], out: &mut [i8]) -> (f32, i32) {
    body_quantize(asymmetric, values, out)
}

#[target_feature(enable = "avx2")]
fn depthwise_row_avx2(op: &DepthwiseRowOperands<'_>, oy: usize, acc: &mut [i32], out: &mut [f32]) {
    body_depthwise_row(op, oy, acc, out)
}

#[target_feature(enable = "avx2")]
fn epilogue_rows_avx2(acc: &[i32], n: usize, ep: &EpilogueArgs<'_>, out: &mut [f32]) {
    body_epilogue_rows(acc, n, ep, out)
}
