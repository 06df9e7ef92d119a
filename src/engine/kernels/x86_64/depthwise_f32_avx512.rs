//! float32 depthwise pixels with AVX-512F: the AVX2 kernel's per-pixel body
//! (`dw_f32_pixels`) on 16 channels per vector, groups of up to 64 channels, and a last
//! group of fewer than 16 channels through lane masks instead of a scalar tail. Each
//! lane computes `((0 + x0*w0) + x1*w1) + ...` over the listed taps (a multiply, then an
//! add: no FMA), then `+ bias` and the clamp, exactly as the scalar reference.

use std::arch::x86_64::*;

/// `P` output pixels of the float depthwise convolution (pixel `p` reads its input at
/// `x + p * xstep` and writes `o + p * ch`) over the taps `(input offset, filter offset)`.
///
/// # Safety
/// AVX-512 F is available; for every `(xo, wo)` in `taps` and pixel `p < P`,
/// `x + p * xstep + xo` and `w + wo` start `ch` readable floats; `o` starts `P * ch`
/// writable floats; `bias` has `ch` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn pixels<const P: usize>(
    x: *const f32,
    xstep: usize,
    w: *const f32,
    taps: &[(usize, usize)],
    bias: Option<&[f32]>,
    o: *mut f32,
    ch: usize,
    clamp: (f32, f32),
) {
    let bp = bias.map(|b| b.as_ptr());
    let (lo, hi) = (_mm512_set1_ps(clamp.0), _mm512_set1_ps(clamp.1));
    let mut c0 = 0;
    // SAFETY (all calls): the group's channels c0 .. c0 + 16 * G (the masked lanes of the
    // last vector) lie below ch, within the caller's bounds.
    unsafe {
        let grp = |g: usize, c0: usize, tail: __mmask16| {
            let (xc, wc, bc, oc) = (x.add(c0), w.add(c0), bp.map(|p| p.add(c0)), o.add(c0));
            match g {
                4 => group::<4, P>(xc, xstep, wc, taps, bc, oc, ch, lo, hi, tail),
                3 => group::<3, P>(xc, xstep, wc, taps, bc, oc, ch, lo, hi, tail),
                2 => group::<2, P>(xc, xstep, wc, taps, bc, oc, ch, lo, hi, tail),
                _ => group::<1, P>(xc, xstep, wc, taps, bc, oc, ch, lo, hi, tail),
            }
        };
        while c0 + 64 <= ch {
            grp(4, c0, !0);
            c0 += 64;
        }
        let rest = ch - c0;
        if rest > 0 {
            // The last vector holds 1..=16 channels.
            let last = rest - (rest - 1) / 16 * 16;
            let tail: __mmask16 = if last == 16 { !0 } else { (1u16 << last) - 1 };
            grp(rest.div_ceil(16), c0, tail);
        }
    }
}

/// `G` vectors of 16 channels of `P` float depthwise pixels (see [`pixels`]); the last
/// vector reads and writes only the lanes of `tail`.
///
/// # Safety
/// As [`pixels`], with `16 * (G - 1)` channels plus the lanes of `tail` read and written
/// per pixel.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn group<const G: usize, const P: usize>(
    x: *const f32,
    xstep: usize,
    w: *const f32,
    taps: &[(usize, usize)],
    bias: Option<*const f32>,
    o: *mut f32,
    ostep: usize,
    lo: __m512,
    hi: __m512,
    tail: __mmask16,
) {
    let lanes = |j: usize| if j + 1 == G { tail } else { !0 };
    let mut acc = [[_mm512_setzero_ps(); G]; P];
    for &(xo, wo) in taps {
        for j in 0..G {
            // SAFETY: the lanes of vector j lie inside w + wo and each pixel's
            // x + p * xstep + xo (caller).
            unsafe {
                let wv = _mm512_maskz_loadu_ps(lanes(j), w.add(wo + 16 * j));
                for (p, a) in acc.iter_mut().enumerate() {
                    let xv = _mm512_maskz_loadu_ps(lanes(j), x.add(p * xstep + xo + 16 * j));
                    a[j] = _mm512_add_ps(a[j], _mm512_mul_ps(xv, wv));
                }
            }
        }
    }
    for (p, a) in acc.iter().enumerate() {
        for (j, v) in a.iter().enumerate() {
            // SAFETY: the lanes of vector j lie inside bias and pixel p's output (caller).
            unsafe {
                let mut v = *v;
                if let Some(bp) = bias {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(lanes(j), bp.add(16 * j)));
                }
                let v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
                _mm512_mask_storeu_ps(o.add(p * ostep + 16 * j), lanes(j), v);
            }
        }
    }
}
