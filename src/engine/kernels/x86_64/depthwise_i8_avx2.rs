//! int8 depthwise convolution with AVX2, channel-vectorised: the paired kernel (VPMADDWD over
//! tap pairs, constants prepared once per operator) where it fits, else a kernel over the
//! valid taps of each pixel.

use std::arch::x86_64::*;
use std::ops::Range;

use super::lanes::{clamp8, pack16, rq8, tap_range, RqLanes};
use crate::engine::kernels::scalar::conv::{ConvGeom, Depthwise};
use crate::engine::quant::RequantPerChannel as Requant;

/// Vector MultiplyByQuantizedMultiplier + offset + clamp of 8 int32 lanes, exactly
/// as `quant::multiply_by_quantized_multiplier`:
/// left shift (wrapping), SaturatingRoundingDoublingHighMul (which equals
/// floor((x*m + 2^30) / 2^31) except for MIN*MIN), then RoundingDivideByPOT.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn requant8(
    x: __m256i,
    mult: __m256i,
    shift: __m256i,
    off: __m256i,
    lo: __m256i,
    hi: __m256i,
) -> __m256i {
    let zero = _mm256_setzero_si256();
    let one = _mm256_set1_epi32(1);
    let left = _mm256_max_epi32(shift, zero);
    let right = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
    let x = _mm256_sllv_epi32(x, left);
    let nudge = _mm256_set1_epi64x(1 << 30);
    let even = _mm256_add_epi64(_mm256_mul_epi32(x, mult), nudge);
    let odd = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)),
        nudge,
    );
    let v = _mm256_blend_epi32(
        _mm256_srli_epi64(even, 31),
        _mm256_slli_epi64(odd, 1),
        0b1010_1010,
    );
    let min = _mm256_set1_epi32(i32::MIN);
    let sat = _mm256_and_si256(_mm256_cmpeq_epi32(x, min), _mm256_cmpeq_epi32(mult, min));
    let v = _mm256_blendv_epi8(v, _mm256_set1_epi32(i32::MAX), sat);
    // RoundingDivideByPOT(v, right).
    let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    let rem = _mm256_and_si256(v, mask);
    let thr = _mm256_sub_epi32(_mm256_srli_epi32(mask, 1), _mm256_cmpgt_epi32(zero, v));
    let v = _mm256_sub_epi32(_mm256_srav_epi32(v, right), _mm256_cmpgt_epi32(rem, thr));
    let v = _mm256_add_epi32(v, off);
    _mm256_min_epi32(_mm256_max_epi32(v, lo), hi)
}

/// Narrow 8 int32 lanes already in [-128, 127] to 8 bytes (low 64 bits).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn narrow8(v: __m256i) -> __m128i {
    let p = _mm256_packs_epi32(v, v);
    let p = _mm256_packs_epi16(p, p);
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
    _mm256_castsi256_si128(p)
}

/// Whether [`depthwise_i8`] handles an int8 depthwise convolution with this depth multiplier
/// and these parameters: depth multiplier 1, no filter offset, and an input offset with
/// |x + input_offset| <= 255, so that the int16 products are exact (|w| <= 128). The
/// dispatcher sends the others to the scalar reference.
pub fn applies(depth_multiplier: usize, q: &Requant<'_>) -> bool {
    depth_multiplier == 1 && q.filter_offset == 0 && (-255..=255).contains(&q.input_offset)
}

/// Depthwise int8, channel-vectorised (16 channels per step), for convolutions that
/// [`applies`] accepts (the dispatcher checked it), over output rows `rows`; `out` is the
/// whole output tensor. `op` has depth multiplier 1 (the dispatcher checked its slices
/// against `g`).
pub fn depthwise_i8(
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let Depthwise {
        g, filter, bias, ..
    } = *op;
    assert!(
        g.out_c == g.in_c && applies(1, q),
        "depthwise_i8 (avx2): not a convolution this kernel handles"
    );
    let taps = g.filter_h * g.filter_w;
    let blocks = g.in_c / 16;
    let fits = taps <= MAX_TAPS
        && g.in_c <= MAX_DW_CH
        && taps.div_ceil(2) * blocks * 32 <= DW_WBUF
        && (-128..=127).contains(&-q.input_offset);
    if fits {
        // SAFETY: AVX2/FMA checked by the dispatcher, which also checked every slice
        // length against the geometry.
        let prep = unsafe { prepare_pairs(g, filter, bias, q) };
        // SAFETY: as above; `prep` was made for this geometry, filter, bias and q.
        unsafe { depthwise_i8_pairs(op, q, &prep, rows, out) }
    } else {
        // SAFETY: as above.
        unsafe { depthwise_i8_avx2(op, q, rows, out) }
    }
}

/// The paired depthwise kernel's per-operator constants (see [`prepare_depthwise_i8`]).
pub struct DwPrepI8 {
    /// Interleaved int16 weights: pair p, block b -> [unpacklo(w0, w1), unpackhi(w0, w1)].
    wbuf: Vec<i16>,
    /// Requantization constants per 16-channel block, input offset folded into the bias.
    params: Vec<[RqLanes; 2]>,
    /// A row of input zero points (`in_c` bytes): what padded taps read.
    zp: Vec<i8>,
    left: bool,
    sat: bool,
}

/// Prepare the int8 depthwise convolution `g` (depth multiplier 1) once per operator:
/// `None` where the paired kernel does not apply (the call then takes
/// [`depthwise_i8`]). The result is only valid for this filter, bias and `q`, and
/// for geometries with the same channels and filter size. A filter offset in
/// [-128, 128] is folded into the int16 weights (|w + filter_offset| <= 256, so a pair
/// of products with |x| <= 128 stays far inside VPMADDWD's int32 sums): this is how
/// uint8 depthwise convolutions, shifted to int8, take this kernel.
pub fn prepare_depthwise_i8(
    g: &ConvGeom,
    depth_multiplier: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
) -> Option<DwPrepI8> {
    let taps = g.filter_h * g.filter_w;
    let fits = depth_multiplier == 1
        && (-128..=128).contains(&q.filter_offset)
        && taps <= MAX_TAPS
        && g.in_c <= MAX_DW_CH
        && taps.div_ceil(2) * (g.in_c / 16) * 32 <= DW_WBUF
        && (-128..=127).contains(&-q.input_offset);
    let c = g.in_c;
    if !fits
        || filter.len() < taps * c
        || bias.is_some_and(|b| b.len() < c)
        || q.multipliers.len() < c
        || q.shifts.len() < c
    {
        return None;
    }
    // SAFETY: only reached on the AVX2 path (the dispatcher checked AVX2/FMA); the
    // filter, bias and parameter lengths were checked above.
    Some(unsafe { prepare_pairs(g, filter, bias, q) })
}

/// [`depthwise_i8`] with constants from [`prepare_depthwise_i8`] (same filter, bias
/// and `q`; the dispatcher checked the slices against `g`).
pub fn depthwise_i8_prepared(
    prep: &DwPrepI8,
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let g = op.g;
    let pairs = (g.filter_h * g.filter_w).div_ceil(2);
    assert!(
        prep.params.len() == g.in_c / 16
            && prep.wbuf.len() == pairs * (g.in_c / 16) * 32
            && prep.zp.len() == g.in_c,
        "depthwise_i8_prepared: prepared for another geometry"
    );
    // SAFETY: AVX2/FMA checked by the dispatcher, which also checked every slice
    // length against the geometry; prep matches its channels and taps (above).
    unsafe { depthwise_i8_pairs(op, q, prep, rows, out) }
}

/// Largest filter (taps) and channel count of the paired depthwise kernel.
pub(super) const MAX_TAPS: usize = 64;
pub(super) const MAX_DW_CH: usize = 4096;
/// int16 weights of the paired kernel at most (32 KiB; 3x3 up to 1632 channels).
const DW_WBUF: usize = 16 * 1024;

/// Depthwise int8 over tap pairs with VPMADDWD: the weights of taps (2p, 2p+1) are
/// interleaved once per operator ([`prepare_depthwise_i8`]), padded taps read a row of
/// input zero points, so every pixel runs the same tap list. The input offset is folded
/// into the bias once per operator too: sum_t w_t*(x_t + ioff) = sum_t w_t*x_t +
/// ioff*sum_t w_t (exact in wrapping int32), and a padded tap's w*zp = -w*ioff cancels
/// its share of the folded term.
#[target_feature(enable = "avx2,fma")]
fn depthwise_i8_pairs(
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    prep: &DwPrepI8,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let f = match (prep.left, prep.sat) {
        (false, false) => dw_i8_pairs::<false, false>,
        (true, false) => dw_i8_pairs::<true, false>,
        (false, true) => dw_i8_pairs::<false, true>,
        (true, true) => dw_i8_pairs::<true, true>,
    };
    f(op, q, prep, rows, out)
}

/// The paired kernel's constants (see [`DwPrepI8`]); the caller checked the filter,
/// bias and parameter lengths against `g` and that the weights fit `DW_WBUF`.
#[target_feature(enable = "avx2,fma")]
fn prepare_pairs(g: &ConvGeom, filter: &[i8], bias: Option<&[i32]>, q: &Requant<'_>) -> DwPrepI8 {
    let ch = g.in_c;
    let blocks = ch / 16;
    let c16 = blocks * 16;
    let taps = g.filter_h * g.filter_w;
    let pairs = taps.div_ceil(2);
    let mut wbuf = vec![0i16; pairs * blocks * 32];
    let fo = _mm256_set1_epi16(q.filter_offset as i16);
    for p in 0..pairs {
        for b in 0..blocks {
            let c0 = b * 16;
            let t0 = 2 * p;
            let t1 = 2 * p + 1;
            // SAFETY: t0 < taps and c0 + 16 <= ch: the 16-byte filter reads are inside
            // the filter (taps * ch); the two stores land at (p*blocks + b)*32 + 32
            // <= pairs*blocks*32 = wbuf.len().
            unsafe {
                let w0 = _mm256_add_epi16(
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        filter.as_ptr().add(t0 * ch + c0) as *const __m128i
                    )),
                    fo,
                );
                // The half pair past the last tap weighs 0 (it reads the zp row).
                let w1 = if t1 < taps {
                    _mm256_add_epi16(
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(
                            filter.as_ptr().add(t1 * ch + c0) as *const __m128i
                        )),
                        fo,
                    )
                } else {
                    _mm256_setzero_si256()
                };
                let dst = wbuf.as_mut_ptr().add((p * blocks + b) * 32) as *mut __m256i;
                _mm256_storeu_si256(dst, _mm256_unpacklo_epi16(w0, w1));
                _mm256_storeu_si256(dst.add(1), _mm256_unpackhi_epi16(w0, w1));
            }
        }
    }
    // Requantization constants per 16-channel block, with the input offset folded
    // into the bias, in the accumulators' lane order: channels 0-3 | 8-11 (the
    // unpacklo products) and 4-7 | 12-15 (unpackhi).
    let folded: Vec<i32> = (0..c16)
        .map(|c| {
            let sw: i32 = (0..taps)
                .map(|t| filter[t * ch + c] as i32 + q.filter_offset)
                .sum();
            bias.map_or(0, |b| b[c])
                .wrapping_add(q.input_offset.wrapping_mul(sw))
        })
        .collect();
    let ld = |s: &[i32], j: usize| {
        assert!(j + 8 <= s.len());
        // SAFETY: j + 8 <= s.len() (checked above).
        unsafe { _mm256_loadu_si256(s.as_ptr().add(j) as *const __m256i) }
    };
    let params = (0..blocks)
        .map(|b| {
            let c0 = b * 16;
            let lanes = |s: &[i32]| {
                let (n0, n1) = (ld(s, c0), ld(s, c0 + 8));
                (
                    _mm256_permute2x128_si256(n0, n1, 0x20),
                    _mm256_permute2x128_si256(n0, n1, 0x31),
                )
            };
            let (b0, b1) = lanes(&folded);
            let (m0, m1) = lanes(q.multipliers);
            let (s0, s1) = lanes(q.shifts);
            [RqLanes::new(b0, m0, s0), RqLanes::new(b1, m1, s1)]
        })
        .collect();
    DwPrepI8 {
        wbuf,
        params,
        zp: vec![(-q.input_offset) as i8; ch],
        left: q.shifts[..c16].iter().any(|&s| s > 0),
        sat: q.multipliers[..c16].contains(&i32::MIN),
    }
}

#[target_feature(enable = "avx2,fma")]
fn dw_i8_pairs<const LEFT: bool, const SAT: bool>(
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    prep: &DwPrepI8,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let Depthwise { g, input, .. } = *op;
    let ch = g.in_c;
    let blocks = ch / 16;
    let c16 = blocks * 16;
    let taps = g.filter_h * g.filter_w;
    let pairs = taps.div_ceil(2);
    let (wbuf, params, zp) = (&prep.wbuf, &prep.params, &prep.zp);
    let (lo, hi) = clamp8(q.act_min, q.act_max);
    let voff = _mm256_set1_epi32(q.output_offset);
    let (vlo, vhi) = (_mm_set1_epi8(lo as i8), _mm_set1_epi8(hi as i8));
    // Start of each tap's input pixel for the current output pixel (zp row if padded);
    // an odd tap count reads the zp row for the (zero-weight) last half pair.
    let mut src = [[zp.as_ptr(); MAX_TAPS + 1]; 2];
    let mut rowp: [Option<*const i8>; MAX_TAPS] = [None; MAX_TAPS];
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        for (fy, r) in rowp.iter_mut().enumerate().take(g.filter_h) {
            // SAFETY: iy < in_h: the row start is inside input.
            *r = g
                .in_y(oy, fy)
                .map(|iy| unsafe { input.as_ptr().add((b * g.in_h + iy) * g.in_w * ch) });
        }
        let mut ox = 0;
        while ox < g.out_w {
            // One or two pixels per step (two share the weight loads).
            let np = (g.out_w - ox).min(2);
            for (k, srck) in src.iter_mut().enumerate().take(np) {
                for fx in 0..g.filter_w {
                    let ix = g.in_x(ox + k, fx);
                    for (fy, r) in rowp.iter().enumerate().take(g.filter_h) {
                        srck[fy * g.filter_w + fx] = match (r, ix) {
                            // SAFETY: ix < in_w: the pixel start is inside the row.
                            (Some(r), Some(ix)) => unsafe { r.add(ix * ch) },
                            _ => zp.as_ptr(),
                        };
                    }
                }
                srck[taps] = zp.as_ptr();
            }
            let obase = (row * g.out_w + ox) * ch;
            for (blk, prm) in params.iter().enumerate() {
                let c0 = blk * 16;
                let wp = wbuf.as_ptr();
                // SAFETY: every src pointer starts `ch` readable bytes (an input pixel
                // or the zp row, ch <= MAX_DW_CH), c0 + 16 <= ch, the weight reads are
                // inside the pairs*blocks*32 prepared entries.
                let accs: [[__m256i; 2]; 2] = unsafe {
                    match (np, pairs) {
                        (2, 5) => dw_i8_acc::<5, 2>([&src[0], &src[1]], c0, wp, blocks, blk, 5),
                        (2, _) => dw_i8_acc::<0, 2>([&src[0], &src[1]], c0, wp, blocks, blk, pairs),
                        (_, 5) => {
                            let [a] = dw_i8_acc::<5, 1>([&src[0]], c0, wp, blocks, blk, 5);
                            [a, a]
                        }
                        _ => {
                            let [a] = dw_i8_acc::<0, 1>([&src[0]], c0, wp, blocks, blk, pairs);
                            [a, a]
                        }
                    }
                };
                for (k, a) in accs.iter().enumerate().take(np) {
                    let v0 = rq8::<LEFT, SAT>(a[0], &prm[0], voff);
                    let v1 = rq8::<LEFT, SAT>(a[1], &prm[1], voff);
                    // Lanes 0-3|8-11 and 4-7|12-15 pack to channels 0-15 in order.
                    let o = pack16(v0, v1, vlo, vhi);
                    let d = obase + k * ch + c0;
                    let dst = &mut out[d..d + 16];
                    // SAFETY: dst holds 16 bytes.
                    unsafe { _mm_storeu_si128(dst.as_mut_ptr() as *mut __m128i, o) };
                }
            }
            for k in 0..np {
                dw_i8_tail(op, q, (b, oy, ox + k), row, c16, out);
            }
            ox += np;
        }
    }
}

/// Channels `c16..` of one depthwise int8 pixel, as the scalar reference.
fn dw_i8_tail(
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    (b, oy, ox): (usize, usize, usize),
    row: usize,
    c16: usize,
    out: &mut [i8],
) {
    let Depthwise {
        g,
        input,
        filter,
        bias,
        ..
    } = *op;
    let ch = g.in_c;
    let obase = (row * g.out_w + ox) * ch;
    for c in c16..ch {
        let mut acc = 0i32;
        for fy in 0..g.filter_h {
            let Some(iy) = g.in_y(oy, fy) else { continue };
            for fx in 0..g.filter_w {
                let Some(ix) = g.in_x(ox, fx) else { continue };
                let x = input[((b * g.in_h + iy) * g.in_w + ix) * ch + c] as i32;
                let w = filter[(fy * g.filter_w + fx) * ch + c] as i32 + q.filter_offset;
                acc = acc.wrapping_add(w * (x + q.input_offset));
            }
        }
        if let Some(bias) = bias {
            acc = acc.wrapping_add(bias[c]);
        }
        out[obase + c] = q.finish(acc, c).clamp(-128, 127) as i8;
    }
}

/// Accumulate the tap pairs of one 16-channel block of `P` pixels (tap pointers
/// `src[p]`): sum_t w_t*x_t in lanes 0-3|8-11 (`[p][0]`) and 4-7|12-15 (`[p][1]`).
/// The pixels share the weight loads. `NP` fixes the pair count (0: use `pairs`).
///
/// # Safety
/// AVX2 is available; src[p][0..2*pairs] each start >= c0 + 16 readable bytes; `w`
/// holds the interleaved weights of `pairs` pairs of `blocks` blocks; blk < blocks.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dw_i8_acc<const NP: usize, const P: usize>(
    src: [&[*const i8; MAX_TAPS + 1]; P],
    c0: usize,
    w: *const i16,
    blocks: usize,
    blk: usize,
    pairs: usize,
) -> [[__m256i; 2]; P] {
    let np = if NP > 0 { NP } else { pairs };
    let mut acc = [[_mm256_setzero_si256(); 2]; P];
    for p in 0..np {
        // SAFETY: see the function's contract.
        unsafe {
            let wp = w.add((p * blocks + blk) * 32) as *const __m256i;
            let (w0, w1) = (_mm256_loadu_si256(wp), _mm256_loadu_si256(wp.add(1)));
            for (a, s) in acc.iter_mut().zip(src) {
                let x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(s[2 * p].add(c0) as *const __m128i));
                let x1 =
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(s[2 * p + 1].add(c0) as *const __m128i));
                a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w0));
                a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w1));
            }
        }
    }
    acc
}

#[target_feature(enable = "avx2,fma")]
fn depthwise_i8_avx2(
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let Depthwise {
        g,
        input,
        filter,
        bias,
        ..
    } = *op;
    let ch = g.in_c;
    let c16 = ch / 16 * 16;
    let ioff = _mm256_set1_epi16(q.input_offset as i16);
    let lo = q.act_min.max(-128);
    let hi = q.act_max.min(127);
    let (voff, vlo, vhi) = (
        _mm256_set1_epi32(q.output_offset),
        _mm256_set1_epi32(lo),
        _mm256_set1_epi32(hi),
    );
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        let (fy0, fy1) = tap_range(oy, g.stride_h, g.dilation_h, g.pad_top, g.in_h, g.filter_h);
        for ox in 0..g.out_w {
            let (fx0, fx1) =
                tap_range(ox, g.stride_w, g.dilation_w, g.pad_left, g.in_w, g.filter_w);
            let obase = (row * g.out_w + ox) * ch;
            let mut c0 = 0;
            while c0 < c16 {
                let mut acc0 = _mm256_setzero_si256();
                let mut acc1 = _mm256_setzero_si256();
                for fy in fy0..fy1 {
                    let iy = oy * g.stride_h + fy * g.dilation_h - g.pad_top;
                    for fx in fx0..fx1 {
                        let ix = ox * g.stride_w + fx * g.dilation_w - g.pad_left;
                        let xi = ((b * g.in_h + iy) * g.in_w + ix) * ch + c0;
                        let wi = (fy * g.filter_w + fx) * ch + c0;
                        // SAFETY: iy < in_h, ix < in_w (tap_range), c0 + 16 <= ch, so
                        // xi + 16 <= input_len; wi + 16 <= filter_h*filter_w*ch.
                        unsafe {
                            let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                                input.as_ptr().add(xi) as *const __m128i
                            ));
                            let w = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                                filter.as_ptr().add(wi) as *const __m128i
                            ));
                            let p = _mm256_mullo_epi16(_mm256_add_epi16(x, ioff), w);
                            acc0 = _mm256_add_epi32(
                                acc0,
                                _mm256_cvtepi16_epi32(_mm256_castsi256_si128(p)),
                            );
                            acc1 = _mm256_add_epi32(
                                acc1,
                                _mm256_cvtepi16_epi32(_mm256_extracti128_si256(p, 1)),
                            );
                        }
                    }
                }
                // SAFETY: c0 + 16 <= ch = out_c: the bias / multiplier / shift reads
                // (>= out_c entries, checked by the dispatcher) and the 16-byte output
                // store at obase + c0 (< output_len) are in bounds.
                unsafe {
                    if let Some(bias) = bias {
                        acc0 = _mm256_add_epi32(
                            acc0,
                            _mm256_loadu_si256(bias.as_ptr().add(c0) as *const __m256i),
                        );
                        acc1 = _mm256_add_epi32(
                            acc1,
                            _mm256_loadu_si256(bias.as_ptr().add(c0 + 8) as *const __m256i),
                        );
                    }
                    let mp = q.multipliers.as_ptr().add(c0) as *const __m256i;
                    let sp = q.shifts.as_ptr().add(c0) as *const __m256i;
                    let v0 = requant8(
                        acc0,
                        _mm256_loadu_si256(mp),
                        _mm256_loadu_si256(sp),
                        voff,
                        vlo,
                        vhi,
                    );
                    let v1 = requant8(
                        acc1,
                        _mm256_loadu_si256(mp.add(1)),
                        _mm256_loadu_si256(sp.add(1)),
                        voff,
                        vlo,
                        vhi,
                    );
                    let o = _mm_unpacklo_epi64(narrow8(v0), narrow8(v1));
                    _mm_storeu_si128(out.as_mut_ptr().add(obase + c0) as *mut __m128i, o);
                }
                c0 += 16;
            }
            for c in c16..ch {
                let mut acc = 0i32;
                for fy in fy0..fy1 {
                    let iy = oy * g.stride_h + fy * g.dilation_h - g.pad_top;
                    for fx in fx0..fx1 {
                        let ix = ox * g.stride_w + fx * g.dilation_w - g.pad_left;
                        let x = input[((b * g.in_h + iy) * g.in_w + ix) * ch + c] as i32;
                        let w = filter[(fy * g.filter_w + fx) * ch + c] as i32;
                        acc = acc.wrapping_add(w * (x + q.input_offset));
                    }
                }
                if let Some(bias) = bias {
                    acc = acc.wrapping_add(bias[c]);
                }
                out[obase + c] = q.finish(acc, c).clamp(-128, 127) as i8;
            }
        }
    }
}
