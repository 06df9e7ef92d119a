//! float32 depthwise convolution with AVX2 + FMA: tap lists per output row and pixel, then
//! channel groups of 8 floats per accumulator.

use std::arch::x86_64::*;
use std::ops::Range;

use super::depthwise_f32_avx512;
use super::lanes::tap_range;
use crate::engine::kernels::scalar::conv::Depthwise;
use crate::engine::kernels::scratch::reuse;
use crate::engine::kernels::Clamp;

thread_local! {
    static DW_INNER: std::cell::RefCell<Vec<(usize, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    static DW_EDGE: std::cell::RefCell<Vec<(usize, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Reserve this thread's tap lists for filters up to 32x32 (see
/// `kernels::scratch::prewarm_thread`).
pub(crate) fn prewarm_scratch() {
    crate::engine::kernels::scratch::reserve(&DW_INNER, 1024);
    crate::engine::kernels::scratch::reserve(&DW_EDGE, 1024);
}

/// Float depthwise convolution with depth multiplier 1 over output rows `rows` (the
/// dispatcher checked the slices against `g`; other depth multipliers take the scalar
/// reference).
pub fn depthwise_f32(
    op: &Depthwise<'_, f32, f32>,
    clamp: Clamp,
    rows: Range<usize>,
    out: &mut [f32],
) {
    assert_eq!(
        op.g.out_c, op.g.in_c,
        "depthwise_f32 (avx2): depth multiplier 1 only"
    );
    // SAFETY: AVX2/FMA checked by the dispatcher, which also checked every slice length
    // against the geometry.
    unsafe { driver::<false>(op, clamp, rows, out) }
}

/// The float depthwise driver: tap lists per output row and pixel, and the pixels of
/// `dw_f32_pixels` (AVX2), or with `WIDE` of `depthwise_f32_avx512::pixels` (the AVX-512
/// path's [`depthwise_f32_avx512::depthwise_f32`]).
///
/// # Safety
/// AVX2 and FMA are available, and with `WIDE` AVX-512 F, BW, DQ, VL and VNNI; the slices
/// were checked against `g` by the dispatcher.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn driver<const WIDE: bool>(
    op: &Depthwise<'_, f32, f32>,
    clamp: Clamp,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let Depthwise {
        g,
        input,
        filter,
        bias,
        ..
    } = *op;
    let clamp = (clamp.min, clamp.max);
    let bias = bias.map(|b| b.as_ptr());
    let ch = g.in_c;
    let (vlo, vhi) = (_mm256_set1_ps(clamp.0), _mm256_set1_ps(clamp.1));
    // Tap lists, in the scalar order (fy outer, fx inner, valid taps only): (input
    // offset, filter offset) in floats. `inner` holds the taps of the current row
    // for a pixel whose filter columns are all inside the input, relative to the
    // input pixel of its first filter column; `edge` is rebuilt per edge pixel with
    // absolute input offsets.
    let mut inner = reuse(&DW_INNER);
    let mut edge = reuse(&DW_EDGE);
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        let (fy0, fy1) = tap_range(oy, g.stride_h, g.dilation_h, g.pad_top, g.in_h, g.filter_h);
        let img = b * g.in_h * g.in_w * ch;
        inner.clear();
        for fy in fy0..fy1 {
            let iy = oy * g.stride_h + fy * g.dilation_h - g.pad_top;
            for fx in 0..g.filter_w {
                inner.push((
                    img + (iy * g.in_w + fx * g.dilation_w) * ch,
                    (fy * g.filter_w + fx) * ch,
                ));
            }
        }
        let interior = |ox: usize| {
            tap_range(ox, g.stride_w, g.dilation_w, g.pad_left, g.in_w, g.filter_w)
                == (0, g.filter_w)
        };
        let mut ox = 0;
        while ox < g.out_w {
            let obase = (row * g.out_w + ox) * ch;
            if ox + 1 < g.out_w && interior(ox) && interior(ox + 1) {
                // Two neighbouring pixels whose filter columns are all inside the input
                // (tap 0 is inside, so ox * stride_w >= pad_left).
                // SAFETY: as below, for both pixels; the second pixel's input starts
                // stride_w * ch floats after the first's and its output ch floats after.
                unsafe {
                    let (x, o) = (
                        input.as_ptr().add((ox * g.stride_w - g.pad_left) * ch),
                        out.as_mut_ptr().add(obase),
                    );
                    let (xstep, w) = (g.stride_w * ch, filter.as_ptr());
                    let px = Pixels {
                        x,
                        xstep,
                        w,
                        taps: &inner,
                        bias,
                        o,
                        ch,
                    };
                    if WIDE {
                        depthwise_f32_avx512::pixels::<2>(px, clamp);
                    } else {
                        dw_f32_pixels::<2>(px, vlo, vhi, clamp);
                    }
                }
                ox += 2;
                continue;
            }
            let (base, list) = if interior(ox) {
                ((ox * g.stride_w - g.pad_left) * ch, &inner[..])
            } else {
                let (fx0, fx1) =
                    tap_range(ox, g.stride_w, g.dilation_w, g.pad_left, g.in_w, g.filter_w);
                edge.clear();
                for fy in fy0..fy1 {
                    let iy = oy * g.stride_h + fy * g.dilation_h - g.pad_top;
                    for fx in fx0..fx1 {
                        let ix = ox * g.stride_w + fx * g.dilation_w - g.pad_left;
                        edge.push((img + (iy * g.in_w + ix) * ch, (fy * g.filter_w + fx) * ch));
                    }
                }
                (0, &edge[..])
            };
            // SAFETY: every listed tap is an input pixel (iy < in_h, ix < in_w by
            // tap_range) whose `ch` floats start at base + offset, and a filter tap of
            // `ch` floats; the output pixel's `ch` floats start at obase (< output_len);
            // bias has >= out_c = ch entries (checked by the dispatcher).
            unsafe {
                let (x, o, w) = (
                    input.as_ptr().add(base),
                    out.as_mut_ptr().add(obase),
                    filter.as_ptr(),
                );
                let px = Pixels {
                    x,
                    xstep: 0,
                    w,
                    taps: list,
                    bias,
                    o,
                    ch,
                };
                if WIDE {
                    depthwise_f32_avx512::pixels::<1>(px, clamp);
                } else {
                    dw_f32_pixels::<1>(px, vlo, vhi, clamp);
                }
            }
            ox += 1;
        }
    }
}

/// The operands of `P` output pixels of the float depthwise convolution (pixel `p` reads
/// its input at `x + p * xstep` and writes `o + p * ch`) over the taps `(input offset,
/// filter offset)`, for [`dw_f32_pixels`] and [`depthwise_f32_avx512::pixels`]; and of a
/// group of their channels (see [`Pixels::at`]).
#[derive(Clone, Copy)]
pub(super) struct Pixels<'a> {
    pub x: *const f32,
    pub xstep: usize,
    pub w: *const f32,
    pub taps: &'a [(usize, usize)],
    pub bias: Option<*const f32>,
    pub o: *mut f32,
    /// Channels per pixel (the output stride between pixels).
    pub ch: usize,
}

impl Pixels<'_> {
    /// The same pixels from channel `c0` on.
    ///
    /// # Safety
    /// `c0 <= ch`.
    #[inline(always)]
    pub(super) unsafe fn at(self, c0: usize) -> Self {
        // SAFETY: c0 <= ch (caller): each pointer stays inside its pixel's channels.
        unsafe {
            Pixels {
                x: self.x.add(c0),
                w: self.w.add(c0),
                bias: self.bias.map(|p| p.add(c0)),
                o: self.o.add(c0),
                ..self
            }
        }
    }
}

/// `P` output pixels of the float depthwise convolution (pixel `p` reads its input
/// at `x + p * xstep` and writes `o + p * ch`): channel groups of 32, 24, 16 and 8
/// with one accumulator per 8 channels and pixel, then a scalar tail. Each lane
/// computes `((0 + x0*w0) + x1*w1) + ...` over the listed taps, then `+ bias` and
/// the clamp, exactly as the scalar reference.
///
/// # Safety
/// AVX2 is available; for every `(xo, wo)` in `px.taps` and pixel `p < P`,
/// `x + p * xstep + xo` and `w + wo` start `ch` readable floats; `o` starts `P * ch`
/// writable floats; `bias` has `ch` entries.
#[target_feature(enable = "avx2,fma")]
unsafe fn dw_f32_pixels<const P: usize>(
    px: Pixels<'_>,
    vlo: __m256,
    vhi: __m256,
    clamp: (f32, f32),
) {
    let Pixels {
        x,
        xstep,
        w,
        taps,
        bias: bp,
        o,
        ch,
    } = px;
    let mut c0 = 0;
    // SAFETY (all calls): c0 + 8*G <= ch, within the caller's bounds.
    unsafe {
        let grp = |g: usize, c0: usize| {
            let pc = px.at(c0);
            match g {
                4 => dw_f32_group::<4, P>(pc, vlo, vhi),
                3 => dw_f32_group::<3, P>(pc, vlo, vhi),
                2 => dw_f32_group::<2, P>(pc, vlo, vhi),
                1 => dw_f32_group::<1, P>(pc, vlo, vhi),
                _ => {}
            }
        };
        while c0 + 32 <= ch {
            grp(4, c0);
            c0 += 32;
        }
        grp((ch - c0) / 8, c0);
        c0 += (ch - c0) / 8 * 8;
        for p in 0..P {
            for c in c0..ch {
                let mut acc = 0.0f32;
                for &(xo, wo) in taps {
                    acc += *x.add(p * xstep + xo + c) * *w.add(wo + c);
                }
                if let Some(bp) = bp {
                    acc += *bp.add(c);
                }
                *o.add(p * ch + c) = acc.max(clamp.0).min(clamp.1);
            }
        }
    }
}

/// `G` groups of 8 channels of `P` float depthwise pixels (see `dw_f32_pixels`).
///
/// # Safety
/// As `dw_f32_pixels`, with `8 * G` channels read and written per pixel.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dw_f32_group<const G: usize, const P: usize>(px: Pixels<'_>, vlo: __m256, vhi: __m256) {
    let Pixels {
        x,
        xstep,
        w,
        taps,
        bias,
        o,
        ch: ostep,
    } = px;
    let mut acc = [[_mm256_setzero_ps(); G]; P];
    for &(xo, wo) in taps {
        for j in 0..G {
            // SAFETY: 8 * j + 8 <= 8 * G floats from w + wo and from each pixel's
            // x + p * xstep + xo (caller).
            unsafe {
                let wv = _mm256_loadu_ps(w.add(wo + 8 * j));
                for (p, a) in acc.iter_mut().enumerate() {
                    let prod = _mm256_mul_ps(_mm256_loadu_ps(x.add(p * xstep + xo + 8 * j)), wv);
                    a[j] = _mm256_add_ps(a[j], prod);
                }
            }
        }
    }
    for (p, a) in acc.iter().enumerate() {
        for (j, v) in a.iter().enumerate() {
            // SAFETY: bias holds 8 * G floats and pixel p's output 8 * G floats (caller).
            unsafe {
                let mut v = *v;
                if let Some(bp) = bias {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(bp.add(8 * j)));
                }
                let v = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
                _mm256_storeu_ps(o.add(p * ostep + 8 * j), v);
            }
        }
    }
}
