//! int8 dot product with AVX2.

use std::arch::x86_64::*;

/// int8 dot product with AVX2. Callers check AVX2 support first.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let body = n / 16 * 16;
    // SAFETY: the dispatcher checked AVX2 at run time; reads stay within a[..body], b[..body].
    let head = unsafe { dot_i8_avx2(&a[..body], &b[..body]) };
    head + crate::engine::kernels::scalar::dot_i8(&a[body..n], &b[body..n])
}

#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= a.len() {
        // SAFETY: i + 16 <= a.len() == b.len(): both unaligned 16-byte loads are in bounds.
        let (va, vb) = unsafe {
            (
                _mm_loadu_si128(a.as_ptr().add(i) as *const __m128i),
                _mm_loadu_si128(b.as_ptr().add(i) as *const __m128i),
            )
        };
        let wa = _mm256_cvtepi8_epi16(va);
        let wb = _mm256_cvtepi8_epi16(vb);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(wa, wb));
        i += 16;
    }
    let s = _mm_add_epi32(
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256(acc, 1),
    );
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}
