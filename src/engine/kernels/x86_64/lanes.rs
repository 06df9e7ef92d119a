//! Small helpers shared by several x86 kernel files: the vectorised requantization of 8
//! int32 lanes ([`RqLanes`], [`rq8`]), the narrowing to bytes ([`pack16`]) with its clamp
//! bounds ([`clamp8`]), and the valid filter taps of an output position ([`tap_range`]).

use std::arch::x86_64::*;

/// Per-channel constants of the vectorised requantization of 8 lanes, computed once
/// per call (or per column block) instead of per use.
#[derive(Clone, Copy)]
pub(super) struct RqLanes {
    bias: __m256i,
    mult: __m256i,
    /// `mult` of the odd lanes, moved to the even positions (for `_mm256_mul_epi32`).
    mult_odd: __m256i,
    /// max(shift, 0).
    left: __m256i,
    /// max(-shift, 0).
    right: __m256i,
    /// (1 << right) - 1.
    mask: __m256i,
    /// mask >> 1.
    half: __m256i,
}

impl RqLanes {
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn new(bias: __m256i, mult: __m256i, shift: __m256i) -> Self {
        let zero = _mm256_setzero_si256();
        let one = _mm256_set1_epi32(1);
        let right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
        let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
        RqLanes {
            bias,
            mult,
            mult_odd: _mm256_srli_epi64(mult, 32),
            left: _mm256_max_epi32(shift, zero),
            right,
            mask,
            half: _mm256_srli_epi32(mask, 1),
        }
    }
}

/// `x + bias`, then MultiplyByQuantizedMultiplier and the output offset of 8 int32
/// lanes (wrapping, no clamp), exactly as `quant::multiply_by_quantized_multiplier`:
/// left shift (wrapping; skipped unless `LEFT`, i.e. some channel has a positive
/// shift), SaturatingRoundingDoublingHighMul (which equals floor((x*m + 2^30) / 2^31)
/// except for MIN*MIN, checked only if `SAT`, i.e. some multiplier is i32::MIN), then
/// RoundingDivideByPOT.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn rq8<const LEFT: bool, const SAT: bool>(
    x: __m256i,
    p: &RqLanes,
    off: __m256i,
) -> __m256i {
    let x = _mm256_add_epi32(x, p.bias);
    let x = if LEFT {
        _mm256_sllv_epi32(x, p.left)
    } else {
        x
    };
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, p.mult), nudge);
    let odd = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(x, 32), p.mult_odd),
        nudge,
    );
    let mut v = _mm256_blend_epi32(
        _mm256_srli_epi64(even, 31),
        _mm256_slli_epi64(odd, 1),
        0b1010_1010,
    );
    if SAT {
        let min = _mm256_set1_epi32(i32::MIN);
        let sat = _mm256_and_si256(_mm256_cmpeq_epi32(x, min), _mm256_cmpeq_epi32(p.mult, min));
        v = _mm256_blendv_epi8(v, _mm256_set1_epi32(i32::MAX), sat);
    }
    // RoundingDivideByPOT(v, right): (v >> right) + (rem > half + (v < 0)).
    let rem = _mm256_and_si256(v, p.mask);
    let thr = _mm256_sub_epi32(p.half, _mm256_srai_epi32(v, 31));
    let v = _mm256_sub_epi32(_mm256_srav_epi32(v, p.right), _mm256_cmpgt_epi32(rem, thr));
    _mm256_add_epi32(v, off)
}

/// Narrow two vectors of 8 int32 lanes `a`, `b` to 16 bytes `a0-3 b0-3 a4-7 b4-7`
/// with signed saturation, then clamp to [lo, hi] (bytes). For lo <= hi within
/// [-128, 127] this equals clamping the int32 lanes to [lo, hi] first.
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn pack16(a: __m256i, b: __m256i, lo: __m128i, hi: __m128i) -> __m128i {
    let p = _mm256_packs_epi32(a, b);
    let q = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_min_epi8(_mm_max_epi8(q, lo), hi)
}

/// Byte clamp bounds of the vector epilogue: [lo, hi] pulled into [-128, 127].
#[inline]
pub(super) fn clamp8(act_min: i32, act_max: i32) -> (i32, i32) {
    let lo = act_min.max(-128);
    let hi = act_max.min(127);
    (lo.min(127), hi.max(-128))
}

/// Valid filter taps along one axis for output position `o`: `(first, end)`.
#[inline(always)]
pub(super) fn tap_range(
    o: usize,
    stride: usize,
    dil: usize,
    pad: usize,
    size: usize,
    taps: usize,
) -> (usize, usize) {
    let base = (o * stride) as isize - pad as isize;
    let d = dil as isize;
    // first tap t with base + t*d >= 0
    let first = if base >= 0 { 0 } else { ((-base) + d - 1) / d } as usize;
    // end: first t with base + t*d >= size
    let lim = size as isize - base;
    let end = if lim <= 0 {
        0
    } else {
        ((lim + d - 1) / d) as usize
    };
    (first.min(taps), end.min(taps))
}
