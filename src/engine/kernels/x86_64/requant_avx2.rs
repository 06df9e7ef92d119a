//! The int8 requantization epilogue with AVX2: each column block's per-channel constants
//! (`RqLanes`) once, then its rows.

use std::arch::x86_64::*;

use super::lanes::{clamp8, pack16, rq8, RqLanes};
use crate::engine::kernels::{Mat, MatMut, RequantCols};

/// `requant_i8` of the AVX2 path (see `kernels::requant_i8`) of `acc` into `out` (same
/// shape); the dispatcher checked the views.
pub fn requant_i8(acc: Mat<'_, i32>, rq: &RequantCols<'_>, out: MatMut<'_, i8>) {
    let (m, n) = (acc.rows, acc.cols);
    let left = rq.shifts[..n].iter().any(|&s| s > 0);
    let sat = rq.multipliers[..n].contains(&i32::MIN);
    let f = match (left, sat) {
        (false, false) => requant_block::<false, false>,
        (true, false) => requant_block::<true, false>,
        (false, true) => requant_block::<false, true>,
        (true, true) => requant_block::<true, true>,
    };
    // SAFETY: AVX2/FMA were checked by the dispatcher, which also checked acc, out and
    // rq's bias, multipliers and shifts against their shapes and strides.
    unsafe {
        f(acc.data, m, n, acc.stride, rq, out.data, out.stride);
    }
}

/// The requantization epilogue by column blocks: each block's per-channel constants
/// are prepared once and applied to all `m` rows. (The slices are parameters of their own,
/// not views, so that they keep their no-alias guarantees in the loops.)
#[target_feature(enable = "avx2,fma")]
fn requant_block<const LEFT: bool, const SAT: bool>(
    acc: &[i32],
    m: usize,
    n: usize,
    ldacc: usize,
    rq: &RequantCols<'_>,
    out: &mut [i8],
    ldo: usize,
) {
    let (lo, hi) = clamp8(rq.act_min, rq.act_max);
    let voff = _mm256_set1_epi32(rq.output_offset);
    let (vlo, vhi) = (_mm_set1_epi8(lo as i8), _mm_set1_epi8(hi as i8));
    let ld = |s: &[i32], j: usize| {
        assert!(j + 8 <= s.len());
        // SAFETY: j + 8 <= s.len() (checked above).
        unsafe { _mm256_loadu_si256(s.as_ptr().add(j) as *const __m256i) }
    };
    let params = |j: usize| RqLanes::new(ld(rq.bias, j), ld(rq.multipliers, j), ld(rq.shifts, j));
    let mut j = 0;
    while j + 16 <= n {
        let (p0, p1) = (params(j), params(j + 8));
        for i in 0..m {
            let r = i * ldacc + j;
            let v0 = rq8::<LEFT, SAT>(ld(acc, r), &p0, voff);
            let v1 = rq8::<LEFT, SAT>(ld(acc, r + 8), &p1, voff);
            // a0-3 b0-3 a4-7 b4-7 -> channel order.
            let q = _mm_shuffle_epi32(pack16(v0, v1, vlo, vhi), 0b11_01_10_00);
            let o = &mut out[i * ldo + j..i * ldo + j + 16];
            // SAFETY: o holds 16 bytes.
            unsafe { _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, q) };
        }
        j += 16;
    }
    if j + 8 <= n {
        let p0 = params(j);
        for i in 0..m {
            let v0 = rq8::<LEFT, SAT>(ld(acc, i * ldacc + j), &p0, voff);
            let q = _mm_shuffle_epi32(pack16(v0, v0, vlo, vhi), 0b11_01_10_00);
            let o = &mut out[i * ldo + j..i * ldo + j + 8];
            // SAFETY: o holds 8 bytes.
            unsafe { _mm_storel_epi64(o.as_mut_ptr() as *mut __m128i, q) };
        }
        j += 8;
    }
    for q in j..n {
        for i in 0..m {
            let v = crate::engine::quant::multiply_by_quantized_multiplier(
                acc[i * ldacc + q].wrapping_add(rq.bias[q]),
                rq.multipliers[q],
                rq.shifts[q],
            )
            .wrapping_add(rq.output_offset);
            out[i * ldo + q] = v.clamp(rq.act_min.max(-128), rq.act_max.min(127)) as i8;
        }
    }
}
