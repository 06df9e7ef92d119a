//! float32 depthwise convolution with AVX-512F. [`depthwise_f32`]: the AVX2 driver's tap
//! lists with the AVX2 kernel's per-pixel body (`dw_f32_pixels`) on 16 channels per vector
//! (`pixels`), groups of up to 64 channels, and a last group of fewer than 16 channels
//! through lane masks instead of a scalar tail. [`depthwise_f32_3x3`]: 3×3 stride-1
//! convolutions by output rows (`Row3x3`). Each lane computes `((0 + x0*w0) + x1*w1) +
//! ...` over the listed taps (a multiply, then an add: no FMA), then `+ bias` and the clamp,
//! exactly as the scalar reference.

use std::arch::x86_64::*;
use std::ops::Range;

use super::depthwise_f32_avx2::Pixels;
use super::lanes::tap_range;
use crate::engine::kernels::scalar::conv::{ConvGeom, Depthwise};
use crate::engine::kernels::Clamp;

/// `P` output pixels of the float depthwise convolution (pixel `p` reads its input at
/// `x + p * xstep` and writes `o + p * ch`) over the taps `(input offset, filter offset)`
/// (the operands `px`).
///
/// # Safety
/// AVX-512 F is available; for every `(xo, wo)` in `taps` and pixel `p < P`,
/// `x + p * xstep + xo` and `w + wo` start `ch` readable floats; `o` starts `P * ch`
/// writable floats; `bias` has `ch` entries.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
pub(super) unsafe fn pixels<const P: usize>(px: Pixels<'_>, clamp: (f32, f32)) {
    let ch = px.ch;
    let (lo, hi) = (_mm512_set1_ps(clamp.0), _mm512_set1_ps(clamp.1));
    let mut c0 = 0;
    // SAFETY (all calls): the group's channels c0 .. c0 + 16 * G (the masked lanes of the
    // last vector) lie below ch, within the caller's bounds.
    unsafe {
        let grp = |g: usize, c0: usize, tail: __mmask16| {
            let pc = px.at(c0);
            match g {
                4 => group::<4, P>(pc, lo, hi, tail),
                3 => group::<3, P>(pc, lo, hi, tail),
                2 => group::<2, P>(pc, lo, hi, tail),
                _ => group::<1, P>(pc, lo, hi, tail),
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
unsafe fn group<const G: usize, const P: usize>(
    px: Pixels<'_>,
    lo: __m512,
    hi: __m512,
    tail: __mmask16,
) {
    let Pixels {
        x,
        xstep,
        w,
        taps,
        bias,
        o,
        ch: ostep,
    } = px;
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

/// One output row of a 3×3 float depthwise convolution with stride 1, dilation 1 and depth
/// multiplier 1 (see [`Row3x3::run`]).
struct Row3x3 {
    /// The input rows read by filter rows `fy0`, `fy0 + 1`, ...: the filter rows whose input
    /// row lies inside the input (the others are skipped, as the scalar reference skips
    /// them); only the first `R` of [`Row3x3::run`] are read.
    rows: [*const f32; 3],
    fy0: usize,
    in_w: usize,
    ch: usize,
    pad_left: usize,
    out_w: usize,
    /// The filter, `[fy][fx][ch]`.
    w: *const f32,
    bias: Option<*const f32>,
    clamp: (f32, f32),
    /// The output row.
    o: *mut f32,
}

impl Row3x3 {
    /// The row over filter rows `fy0 .. fy0 + R`, one 16-channel vector at a time across the
    /// whole row: the vector's weights (`R` filter rows × 3), its bias and the clamp stay in
    /// registers while the row's pixels stream past. Pixels whose three filter columns lie
    /// inside the input take all three; the edge pixels only those inside. Each lane
    /// computes `((0 + x0*w0) + x1*w1) + ...` over the taps inside the input in the scalar
    /// order (fy outer, fx inner), then `+ bias` and the clamp, exactly as the scalar
    /// reference.
    ///
    /// # Safety
    /// AVX-512 F is available; `rows[r]` for `r < R` starts `in_w * ch` readable floats; `w`
    /// starts `9 * ch` floats, `bias` (if any) `ch`; `o` starts `out_w * ch` writable floats;
    /// `fy0 + R <= 3`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    unsafe fn run<const R: usize>(&self) {
        let row = Row3::<R> {
            rows: std::array::from_fn(|r| self.rows[r]),
            wrow: std::array::from_fn(|r| self.fy0 + r),
            lo: _mm512_set1_ps(self.clamp.0),
            hi: _mm512_set1_ps(self.clamp.1),
            p: self,
        };
        let (mut c0, ch) = (0, self.ch);
        // SAFETY (both calls): channels c0 .. c0 + 16 (the lanes of `tail`) lie below ch.
        unsafe {
            while c0 + 16 <= ch {
                row.vector::<false>(c0, !0);
                c0 += 16;
            }
            if c0 < ch {
                row.vector::<true>(c0, (1u16 << (ch - c0)) - 1);
            }
        }
    }
}

/// [`Row3x3::run`]'s operands for `R` filter rows.
struct Row3<'a, const R: usize> {
    rows: [*const f32; R],
    wrow: [usize; R],
    lo: __m512,
    hi: __m512,
    p: &'a Row3x3,
}

impl<const R: usize> Row3<'_, R> {
    /// The lanes `tail` of the channel vector at `c0`, for every pixel of the row: the
    /// pixels one at a time (each pixel's chain of adds is sequential, the pixels are
    /// independent, so the core overlaps them).
    ///
    /// # Safety
    /// As [`Row3x3::run`], with the lanes of `tail` from `c0` below `ch`; without `MASKED`,
    /// `tail` is all 16 lanes.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    unsafe fn vector<const MASKED: bool>(&self, c0: usize, tail: __mmask16) {
        let p = self.p;
        let (ch, pad, in_w, out_w) = (p.ch, p.pad_left, p.in_w, p.out_w);
        // Pixels ox_lo .. ox_hi read all three filter columns (input columns ox - pad ..
        // ox - pad + 3), those before and after only the columns inside the input.
        let ox_lo = pad.min(out_w);
        let ox_hi = (in_w + pad).saturating_sub(2).min(out_w).max(ox_lo);
        // SAFETY (whole body): the caller's guarantees. The loads and stores below touch
        // channels c0 + lanes of tail < ch of input columns 0 <= ix < in_w (interior pixels
        // by the bounds above, edge pixels by their column range) and of the row's output
        // pixels ox < out_w; the edge pixels' column pointers are formed with wrapping
        // arithmetic and read only inside the row.
        unsafe {
            let load = |p: *const f32| {
                if MASKED {
                    _mm512_maskz_loadu_ps(tail, p)
                } else {
                    _mm512_loadu_ps(p)
                }
            };
            let mut wv = [[_mm512_setzero_ps(); 3]; R];
            for (r, wr) in wv.iter_mut().enumerate() {
                for (fx, v) in wr.iter_mut().enumerate() {
                    *v = load(p.w.add((self.wrow[r] * 3 + fx) * ch + c0));
                }
            }
            let bv = match p.bias {
                Some(b) => load(b.add(c0)),
                None => _mm512_setzero_ps(),
            };
            let (lo, hi) = (self.lo, self.hi);
            // `+ bias`, the clamp and the store of one pixel's sums at op.
            macro_rules! store {
                ($op:expr, $acc:expr) => {{
                    let v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps($acc, bv), lo), hi);
                    if MASKED {
                        _mm512_mask_storeu_ps($op, tail, v);
                    } else {
                        _mm512_storeu_ps($op, v);
                    }
                }};
            }
            // One pixel from the column pointers xp (filter column 0 of each row) over the
            // filter columns fx0 .. fx1, stored at op.
            macro_rules! pixel {
                ($xp:expr, $op:expr, $fx0:expr, $fx1:expr) => {{
                    let mut acc = _mm512_setzero_ps();
                    for (r, wr) in wv.iter().enumerate() {
                        for fx in $fx0..$fx1 {
                            let xv = load($xp[r].wrapping_add(fx * ch));
                            acc = _mm512_add_ps(acc, _mm512_mul_ps(xv, wr[fx]));
                        }
                    }
                    store!($op, acc);
                }};
            }
            let edge = |ox: usize| {
                let ix = ox as isize - pad as isize;
                let fx0 = (-ix).clamp(0, 3) as usize;
                let fx1 = (in_w as isize - ix).clamp(0, 3) as usize;
                let xp = self
                    .rows
                    .map(|r| r.wrapping_offset(ix * ch as isize).wrapping_add(c0));
                pixel!(xp, p.o.add(ox * ch + c0), fx0, fx1.max(fx0));
            };
            for ox in 0..ox_lo {
                edge(ox);
            }
            if ox_lo < ox_hi {
                let x0 = (ox_lo - pad) * ch + c0;
                let mut xp = self.rows.map(|r| r.add(x0));
                let mut op = p.o.add(ox_lo * ch + c0);
                let mut ox = ox_lo;
                // Two pixels at a time, sharing the loads of their common columns: two
                // independent chains of adds per step.
                while ox + 2 <= ox_hi {
                    let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                    for (r, wr) in wv.iter().enumerate() {
                        let c = [
                            load(xp[r]),
                            load(xp[r].add(ch)),
                            load(xp[r].add(2 * ch)),
                            load(xp[r].add(3 * ch)),
                        ];
                        for fx in 0..3 {
                            a0 = _mm512_add_ps(a0, _mm512_mul_ps(c[fx], wr[fx]));
                            a1 = _mm512_add_ps(a1, _mm512_mul_ps(c[fx + 1], wr[fx]));
                        }
                    }
                    store!(op, a0);
                    store!(op.add(ch), a1);
                    for p in xp.iter_mut() {
                        *p = p.add(2 * ch);
                    }
                    op = op.add(2 * ch);
                    ox += 2;
                }
                if ox < ox_hi {
                    pixel!(xp, op, 0, 3);
                }
            }
            for ox in ox_hi..out_w {
                edge(ox);
            }
        }
    }
}

/// Float depthwise convolution with depth multiplier 1 over output rows `rows`: the AVX2
/// driver's tap lists with 512-bit `pixels` (the dispatcher checked the slices against
/// `g`).
pub fn depthwise_f32(
    op: &Depthwise<'_, f32, f32>,
    clamp: Clamp,
    rows: Range<usize>,
    out: &mut [f32],
) {
    assert_eq!(
        op.g.out_c, op.g.in_c,
        "depthwise_f32 (avx512): depth multiplier 1 only"
    );
    // SAFETY: AVX-512 F, BW, DQ, VL, VNNI (and AVX2, FMA) checked by the dispatcher, which
    // also checked every slice length against the geometry.
    unsafe { super::depthwise_f32_avx2::driver::<true>(op, clamp, rows, out) }
}

/// Whether [`depthwise_f32_3x3`] handles the float depthwise convolution `g` (depth
/// multiplier 1): a 3×3 filter, stride 1, dilation 1.
pub fn is_3x3_s1(g: &ConvGeom) -> bool {
    (g.filter_h, g.filter_w, g.dilation_h, g.dilation_w) == (3, 3, 1, 1)
        && (g.stride_h, g.stride_w) == (1, 1)
}

/// The float 3×3 depthwise convolution (stride 1, dilation 1, depth multiplier 1: see
/// [`is_3x3_s1`]) over output rows `rows`, by output rows (the dispatcher checked the slices
/// against `g`).
pub fn depthwise_f32_3x3(
    op: &Depthwise<'_, f32, f32>,
    clamp: Clamp,
    rows: Range<usize>,
    out: &mut [f32],
) {
    assert!(
        op.g.out_c == op.g.in_c && is_3x3_s1(op.g),
        "depthwise_f32_3x3 (avx512): not a 3x3 stride-1 convolution"
    );
    // SAFETY: AVX-512 F, BW, DQ, VL, VNNI (and AVX2, FMA) checked by the dispatcher, which
    // also checked every slice length against the geometry; the shape was checked above.
    unsafe { depthwise_f32_3x3_avx512(op, clamp, rows, out) }
}

/// The float 3×3 depthwise convolution (stride 1, dilation 1, depth multiplier 1) with
/// AVX-512: each output row through [`Row3x3`] with the input rows
/// its filter rows read (those inside the input). With stride 2 the pixel-major driver,
/// which streams the (larger) input in order, measured faster.
///
/// # Safety
/// AVX-512 F, BW, DQ, VL and VNNI are available; the slices were checked against `g`
/// (a 3×3 filter, stride 1, dilation 1, depth multiplier 1) by the dispatcher.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
unsafe fn depthwise_f32_3x3_avx512(
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
    let ch = g.in_c;
    let row_len = g.in_w * ch;
    let (w, bp) = (filter.as_ptr(), bias.map(<[f32]>::as_ptr));
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        let (fy0, fy1) = tap_range(oy, 1, 1, g.pad_top, g.in_h, 3);
        let in_row = |fy: usize| {
            let iy = oy + fy - g.pad_top;
            input[(b * g.in_h + iy) * row_len..][..row_len].as_ptr()
        };
        let o = &mut out[row * g.out_w * ch..][..g.out_w * ch];
        let n = fy1.saturating_sub(fy0);
        if n == 0 {
            // No input row: every output is the bias, clamped (the scalar order).
            for px in o.chunks_exact_mut(ch) {
                for (c, v) in px.iter_mut().enumerate() {
                    let mut acc = 0.0f32;
                    if let Some(b) = bias {
                        acc += b[c];
                    }
                    *v = acc.max(clamp.0).min(clamp.1);
                }
            }
            continue;
        }
        let r = Row3x3 {
            // Slots past the n rows inside the input repeat the last one (never read).
            rows: std::array::from_fn(|r| in_row(fy0 + r.min(n - 1))),
            fy0,
            in_w: g.in_w,
            ch,
            pad_left: g.pad_left,
            out_w: g.out_w,
            w,
            bias: bp,
            clamp,
            o: o.as_mut_ptr(),
        };
        // SAFETY: the input rows are whole rows of the input (sliced above), the output row
        // a whole row of the output; filter (9 * ch) and bias (ch) were checked by the
        // dispatcher; fy0 + n <= 3.
        unsafe {
            match n {
                3 => r.run::<3>(),
                2 => r.run::<2>(),
                _ => r.run::<1>(),
            }
        }
    }
}
