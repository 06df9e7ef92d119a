//! The dynamic-range kernels (`kernels::hybrid`) with AVX2: the input's range and its
//! quantization written with intrinsics (the compiler turned the oracle's compare-and-select
//! and rounding into shuffle chains: half of a dynamic-range SSD's time), the depthwise rows
//! and the epilogue as the portable bodies compiled with AVX2 enabled (32-bit multiplies in
//! 256-bit vectors). No FMA is enabled, so the float results are the oracle's bit for bit.

use std::arch::x86_64::*;

use crate::engine::kernels::hybrid::{
    body_depthwise_row, body_epilogue_rows, DepthwiseRowOperands, EpilogueArgs,
};
use crate::engine::kernels::scalar::hybrid::{self as oracle, InputQuant};

/// `min_max` of the AVX2 path.
pub fn min_max(values: &[f32]) -> (f32, f32) {
    // SAFETY: AVX2 was checked by the dispatcher; the body is safe code.
    unsafe { min_max_avx2(values) }
}

/// `quantize_with` of the AVX2 path.
pub fn quantize_with(q: &InputQuant, values: &[f32], out: &mut [i8]) {
    // SAFETY: AVX2 was checked by the dispatcher; the body is safe code.
    unsafe { quantize_with_avx2(q, values, out) }
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

/// Four independent vectors of minima and maxima (32 values a step), so that no step waits
/// for the one before. `min_ps(x, lo)` is `x < lo ? x : lo`, the oracle's select: a NaN in
/// `x` keeps `lo`.
#[target_feature(enable = "avx2")]
fn min_max_avx2(values: &[f32]) -> (f32, f32) {
    let chunks = values.chunks_exact(32);
    let tail = chunks.remainder();
    let mut lo = [_mm256_set1_ps(f32::INFINITY); 4];
    let mut hi = [_mm256_set1_ps(f32::NEG_INFINITY); 4];
    for c in chunks {
        for (i, (lo, hi)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
            // SAFETY: `c` holds 32 floats, so `c[8i..8i + 8]` is in bounds (unaligned load).
            let x = unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * i)) };
            *lo = _mm256_min_ps(x, *lo);
            *hi = _mm256_max_ps(x, *hi);
        }
    }
    let lo = _mm256_min_ps(_mm256_min_ps(lo[0], lo[1]), _mm256_min_ps(lo[2], lo[3]));
    let hi = _mm256_max_ps(_mm256_max_ps(hi[0], hi[1]), _mm256_max_ps(hi[2], hi[3]));
    let (mut l, mut h) = ([0f32; 8], [0f32; 8]);
    // SAFETY: `l` and `h` hold 8 floats each (unaligned stores).
    unsafe {
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(h.as_mut_ptr(), hi);
    }
    l.iter().zip(&h).fold(oracle::min_max(tail), |r, (&a, &b)| {
        oracle::combine(r, (a, b))
    })
}

/// 8 values quantized as the oracle does, as int32 lanes: `p = x · inv` (NaN → 0), rounded
/// half away from zero exactly (`t = trunc(p)`, plus the sign of `p` when `|p − t| ≥ ½`: both
/// steps exact in f32), clamped to ±256, plus the zero point, clamped to `[lo_q, 127]`.
#[target_feature(enable = "avx2")]
fn quantize8(x: __m256, inv: __m256, zp: __m256, lo_q: __m256) -> __m256i {
    let p = _mm256_mul_ps(x, inv);
    let p = _mm256_and_ps(p, _mm256_cmp_ps::<_CMP_ORD_Q>(p, p));
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
    let sign = _mm256_and_ps(p, _mm256_set1_ps(-0.0));
    let frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0), _mm256_sub_ps(p, t));
    let up = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5));
    let step = _mm256_and_ps(up, _mm256_or_ps(sign, _mm256_set1_ps(1.0)));
    let r = _mm256_add_ps(t, step);
    let r = _mm256_min_ps(
        _mm256_max_ps(r, _mm256_set1_ps(-256.0)),
        _mm256_set1_ps(256.0),
    );
    // r and zp are integers of at most 9 bits: the sum is exact.
    let r = _mm256_add_ps(r, zp);
    let r = _mm256_min_ps(_mm256_max_ps(r, lo_q), _mm256_set1_ps(127.0));
    _mm256_cvttps_epi32(r)
}

#[target_feature(enable = "avx2")]
fn quantize_with_avx2(q: &InputQuant, values: &[f32], out: &mut [i8]) {
    assert_eq!(values.len(), out.len(), "quantize: lengths differ");
    if q.zero {
        out.fill(0);
        return;
    }
    let inv = _mm256_set1_ps(q.inv);
    let zp = _mm256_set1_ps(q.zp as f32);
    let lo_q = _mm256_set1_ps(q.lo_q as f32);
    let n = values.len() / 32 * 32;
    for (c, o) in values[..n]
        .chunks_exact(32)
        .zip(out[..n].chunks_exact_mut(32))
    {
        // SAFETY: `c` holds 32 floats and `o` 32 bytes (unaligned loads and store).
        unsafe {
            let v = |i: usize| quantize8(_mm256_loadu_ps(c.as_ptr().add(8 * i)), inv, zp, lo_q);
            // Packs work within 128-bit lanes: [a0 b0 a1 b1] then [ab0 cd0 ab1 cd1] in 32-bit
            // groups; the permute puts the groups back in order.
            let ab = _mm256_packs_epi32(v(0), v(1));
            let cd = _mm256_packs_epi32(v(2), v(3));
            let abcd = _mm256_packs_epi16(ab, cd);
            let ordered =
                _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(o.as_mut_ptr().cast(), ordered);
        }
    }
    q.apply(&values[n..], &mut out[n..]);
}

#[target_feature(enable = "avx2")]
fn depthwise_row_avx2(op: &DepthwiseRowOperands<'_>, oy: usize, acc: &mut [i32], out: &mut [f32]) {
    body_depthwise_row(op, oy, acc, out)
}

#[target_feature(enable = "avx2")]
fn epilogue_rows_avx2(acc: &[i32], n: usize, ep: &EpilogueArgs<'_>, out: &mut [f32]) {
    body_epilogue_rows(acc, n, ep, out)
}
