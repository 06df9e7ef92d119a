//! int8 depthwise convolution with AVX-512 (BW, VNNI): the AVX2 paired kernel widened to
//! 32 channels per vector, with VPDPWSSD (int16 pair multiply-add into int32, wrapping)
//! instead of VPMADDWD + VPADDD.
//!
//! As in the AVX2 kernel, the weights of taps (2p, 2p+1) are interleaved once per
//! operator, padded taps read a row of input zero points, and the input offset is folded
//! into the bias (sum_t w_t * (x_t + ioff) = sum_t w_t * x_t + ioff * sum_t w_t, exact in
//! wrapping int32; a padded tap's w * zp = -w * ioff cancels its share). A last block of
//! fewer than 32 channels loads and stores through byte masks (its missing weights are
//! zero), so no channel takes a scalar tail.

use std::arch::x86_64::*;
use std::ops::Range;

use super::depthwise_i8_avx2::{MAX_DW_CH, MAX_TAPS};
use super::gemm_vnni::Rq16;
use super::lanes::clamp8;
use crate::engine::kernels::scalar::conv::{ConvGeom, Depthwise};
use crate::engine::kernels::scratch::reuse;
use crate::engine::quant::RequantPerChannel as Requant;

/// Channels per block (one vector of 32 int16).
const CB: usize = 32;

/// Reserve this thread's zero-point row (see `kernels::scratch::prewarm_thread`).
pub(crate) fn prewarm_scratch() {
    super::super::scratch::reserve(&ZP_ROW, 64 << 10);
}

thread_local! {
    static ZP_ROW: std::cell::RefCell<Vec<i8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The kernel's per-operator constants (see [`prepare`]).
pub struct DwPrep {
    /// Interleaved int16 weights: pair p, block b -> [unpacklo(w0, w1), unpackhi(w0, w1)]
    /// (64 values at `(p * blocks + b) * 64`).
    wbuf: Vec<i16>,
    /// Requantization constants per block, in the accumulators' lane order.
    params: Vec<[Rq16; 2]>,
    /// A row of input zero points (`in_c` bytes): what padded taps read.
    zp: Vec<i8>,
    left: bool,
    sat: bool,
    /// Channels and taps it was made for.
    ch: usize,
    taps: usize,
}

/// Whether the kernel takes this operator: depth multiplier 1, no filter offset, at most
/// `MAX_TAPS` taps and `MAX_DW_CH` channels, and an input zero point the zp row can hold.
pub fn applies(g: &ConvGeom, depth_multiplier: usize, q: &Requant<'_>) -> bool {
    depth_multiplier == 1
        && q.filter_offset == 0
        && g.filter_h * g.filter_w <= MAX_TAPS
        && g.in_c <= MAX_DW_CH
        && (-128..=127).contains(&-q.input_offset)
}

/// The constants of the operator `g` with this filter, bias and `q` ([`applies`] must
/// hold; the dispatcher checked the lengths against `g`).
pub fn prepare(g: &ConvGeom, filter: &[i8], bias: Option<&[i32]>, q: &Requant<'_>) -> DwPrep {
    let ch = g.in_c;
    let taps = g.filter_h * g.filter_w;
    assert!(filter.len() >= taps * ch && q.multipliers.len() >= ch && q.shifts.len() >= ch);
    assert!(bias.is_none_or(|b| b.len() >= ch));
    let blocks = ch.div_ceil(CB);
    let pairs = taps.div_ceil(2);
    // Weights per tap, zero past `ch` and for the missing tap of an odd count.
    let w = |t: usize, c: usize| -> i16 {
        if t < taps && c < ch {
            filter[t * ch + c] as i16
        } else {
            0
        }
    };
    // Lane `l` of the unpacklo (h = 0) / unpackhi (h = 1) half within a block: 128-bit
    // lane l / 4 holds channels 8 * (l / 4) + 4 * h + (0..4).
    let chan = |h: usize, l: usize| 8 * (l / 4) + 4 * h + l % 4;
    let mut wbuf = vec![0i16; pairs * blocks * 64];
    for p in 0..pairs {
        for b in 0..blocks {
            let dst = &mut wbuf[(p * blocks + b) * 64..][..64];
            for h in 0..2 {
                for l in 0..16 {
                    let c = b * CB + chan(h, l);
                    dst[h * 32 + 2 * l] = w(2 * p, c);
                    dst[h * 32 + 2 * l + 1] = w(2 * p + 1, c);
                }
            }
        }
    }
    let folded = |c: usize| {
        let sw: i32 = (0..taps).map(|t| filter[t * ch + c] as i32).sum();
        bias.map_or(0, |b| b[c])
            .wrapping_add(q.input_offset.wrapping_mul(sw))
    };
    let left = q.shifts[..ch].iter().any(|&s| s > 0);
    let sat = q.multipliers[..ch].contains(&i32::MIN);
    let params = (0..blocks)
        .map(|b| {
            let half = |h: usize| {
                let lane = |f: &dyn Fn(usize) -> i32| {
                    std::array::from_fn::<i32, 16, _>(|l| {
                        let c = b * CB + chan(h, l);
                        if c < ch {
                            f(c)
                        } else {
                            0
                        }
                    })
                };
                let v = [
                    lane(&folded),
                    lane(&|c| q.multipliers[c]),
                    lane(&|c| q.shifts[c]),
                ];
                // SAFETY: only reached on the AVX-512 path (the dispatcher checked the
                // CPU); each load reads one 16-value array.
                unsafe {
                    let ld = |a: &[i32; 16]| _mm512_loadu_si512(a.as_ptr() as *const _);
                    Rq16::from_lanes(ld(&v[0]), ld(&v[1]), ld(&v[2]), q.output_offset, left, sat)
                }
            };
            [half(0), half(1)]
        })
        .collect();
    DwPrep {
        wbuf,
        params,
        zp: vec![(-q.input_offset) as i8; ch],
        left,
        sat,
        ch,
        taps,
    }
}

/// Output rows `rows` of the depthwise convolution `g` with the constants of [`prepare`]
/// (same filter, bias and `q`); the dispatcher checked the slices against `g`.
pub fn depthwise_i8(
    prep: &DwPrep,
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let (g, input) = (op.g, op.input);
    assert!(
        prep.ch == g.in_c && g.out_c == g.in_c && prep.taps == g.filter_h * g.filter_w,
        "depthwise (avx512): prepared for another geometry"
    );
    assert!(input.len() >= g.input_len() && out.len() >= g.output_len());
    assert!(rows.end <= g.batch * g.out_h);
    let f = match (prep.left, prep.sat) {
        (false, false) => run::<false, false>,
        (true, false) => run::<true, false>,
        (false, true) => run::<false, true>,
        (true, true) => run::<true, true>,
    };
    // SAFETY: the dispatcher only selects this path after checking AVX-512 F, BW, DQ, VL
    // and VNNI at run time; the lengths were checked above and by the dispatcher.
    unsafe { f(prep, g, q, input, rows, out) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
fn run<const LEFT: bool, const SAT: bool>(
    prep: &DwPrep,
    g: &ConvGeom,
    q: &Requant<'_>,
    input: &[i8],
    rows: Range<usize>,
    out: &mut [i8],
) {
    let ch = g.in_c;
    let blocks = ch.div_ceil(CB);
    let full = ch / CB;
    let tail: __mmask32 = (1u64 << (ch % CB)) as u32 - 1;
    let taps = g.filter_h * g.filter_w;
    let pairs = taps.div_ceil(2);
    let (lo, hi) = clamp8(q.act_min, q.act_max);
    let (vlo, vhi) = (_mm256_set1_epi8(lo as i8), _mm256_set1_epi8(hi as i8));
    // Whether the clamp is narrower than the saturating narrowing's [-128, 127].
    let clamp = (lo, hi) != (-128, 127);
    let pw = PairWeights {
        w: prep.wbuf.as_ptr(),
        blocks,
        pairs,
    };
    // A row of input zero points as long as an input row: what taps in padded rows read,
    // so that every tap of a pixel whose filter columns all lie inside the input is its
    // row's tap pointer plus the pixel's offset.
    let mut zrow = reuse(&ZP_ROW);
    zrow.resize(g.in_w.max(1) * ch, prep.zp.first().copied().unwrap_or(0));
    let zp = zrow.as_ptr();
    // Output columns [ox_lo, ox_hi) have all their filter columns inside the input.
    let ox_lo = g.pad_left.div_ceil(g.stride_w);
    let span = (g.filter_w - 1) * g.dilation_w;
    let ox_hi = (g.in_w + g.pad_left)
        .checked_sub(span + 1)
        .map_or(0, |last| (last / g.stride_w + 1).min(g.out_w));
    // Per row: each tap's input (or zp) row pointer plus its filter column offset, the
    // (zero-weight) half pair of an odd tap count on the zp row.
    let mut rowtap = [zp; MAX_TAPS + 1];
    // Edge pixels: each tap's input pixel (zp row start if padded).
    let mut src = [[zp; MAX_TAPS + 1]; 2];
    let mut rowp: [Option<*const i8>; MAX_TAPS] = [None; MAX_TAPS];
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        for (fy, r) in rowp.iter_mut().enumerate().take(g.filter_h) {
            // SAFETY: iy < in_h: the row start is inside input.
            *r = g
                .in_y(oy, fy)
                .map(|iy| unsafe { input.as_ptr().add((b * g.in_h + iy) * g.in_w * ch) });
            for fx in 0..g.filter_w {
                // Inside the row (input or zp) whenever some pixel is interior (then
                // fx * dilation_w < in_w); never used otherwise.
                rowtap[fy * g.filter_w + fx] = r.unwrap_or(zp).wrapping_add(fx * g.dilation_w * ch);
            }
        }
        let mut ox = 0;
        while ox < g.out_w {
            // One or two pixels per step (two share the weight loads).
            let np = (g.out_w - ox).min(2);
            let interior = ox >= ox_lo && ox + np <= ox_hi;
            let (taps_of, delta) = if interior {
                let d = |o: usize| (o * g.stride_w - g.pad_left) * ch;
                ([&rowtap, &rowtap], [d(ox), d(ox + np - 1)])
            } else {
                for (k, srck) in src.iter_mut().enumerate().take(np) {
                    for fx in 0..g.filter_w {
                        let ix = g.in_x(ox + k, fx);
                        for (fy, r) in rowp.iter().enumerate().take(g.filter_h) {
                            srck[fy * g.filter_w + fx] = match (r, ix) {
                                // SAFETY: ix < in_w: the pixel start is inside the row.
                                (Some(r), Some(ix)) => unsafe { r.add(ix * ch) },
                                _ => zp,
                            };
                        }
                    }
                    srck[taps] = zp;
                }
                ([&src[0], &src[1]], [0, 0])
            };
            let obase = (row * g.out_w + ox) * ch;
            for (blk, prm) in prep.params.iter().enumerate() {
                let c0 = blk * CB;
                let masked = blk == full;
                // SAFETY: every tap pointer plus its pixel's delta starts `ch` readable
                // bytes (an input pixel, or zp row bytes: the zp row holds in_w * ch, an
                // interior pixel's taps lie inside the row and an edge pixel reads its
                // start); a full block reads c0 + 32 <= ch of them, the masked last block
                // only the bytes below ch. The weight reads are inside the
                // pairs * blocks * 64 prepared values.
                let accs: [[__m512i; 2]; 2] = unsafe {
                    let (s, d) = (taps_of, delta);
                    // The sums start at the (folded) bias.
                    let tail = (tail, [prm[0].bias, prm[1].bias]);
                    match (np, pairs, masked) {
                        (2, 5, false) => acc::<5, 2, false>(s, d, c0, pw, blk, tail),
                        (2, _, false) => acc::<0, 2, false>(s, d, c0, pw, blk, tail),
                        (2, _, true) => acc::<0, 2, true>(s, d, c0, pw, blk, tail),
                        (_, _, m) => {
                            let (s, d) = ([s[0]], [d[0]]);
                            let [a] = if m {
                                acc::<0, 1, true>(s, d, c0, pw, blk, tail)
                            } else {
                                acc::<0, 1, false>(s, d, c0, pw, blk, tail)
                            };
                            [a, a]
                        }
                    }
                };
                for (k, a) in accs.iter().enumerate().take(np) {
                    let v0 = prm[0].mul::<LEFT, SAT>(a[0]);
                    let v1 = prm[1].mul::<LEFT, SAT>(a[1]);
                    // Per 128-bit lane: channels 8L..8L+3 of v0, then 8L+4..8L+7 of v1:
                    // the 32 channels in order, saturated to int16, then to int8.
                    let o = _mm512_cvtsepi16_epi8(_mm512_packs_epi32(v0, v1));
                    let o = if clamp {
                        _mm256_min_epi8(_mm256_max_epi8(o, vlo), vhi)
                    } else {
                        o
                    };
                    let d = obase + k * ch + c0;
                    assert!(d + if masked { ch - c0 } else { CB } <= out.len());
                    // SAFETY: the 32 bytes (the channels below ch when masked) from d lie
                    // inside out (checked above).
                    unsafe {
                        let dst = out.as_mut_ptr().add(d);
                        if masked {
                            _mm256_mask_storeu_epi8(dst, tail, o);
                        } else {
                            _mm256_storeu_si256(dst as *mut __m256i, o);
                        }
                    }
                }
            }
            ox += np;
        }
    }
}

/// The prepared weights as [`acc`] reads them: `pairs` tap pairs of `blocks` blocks of 64
/// interleaved values from `w`.
#[derive(Clone, Copy)]
struct PairWeights {
    w: *const i16,
    blocks: usize,
    pairs: usize,
}

/// Accumulate the tap pairs of one 32-channel block of `P` pixels (tap pointers
/// `src[p]`): init + sum_t w_t * x_t in the unpacklo (`[p][0]`) and unpackhi (`[p][1]`)
/// lane orders. The pixels share the weight loads. `NP` fixes the pair count (0: use
/// `pairs`); `MASKED` loads only the bytes of `mask`.
///
/// # Safety
/// AVX-512 F, BW, DQ, VL and VNNI are available; src[p][0..2*pairs] each start c0 + 32
/// readable bytes (`MASKED`: c0 + the bytes of `mask`); `w` holds the interleaved weights
/// of `pairs` pairs of `blocks` blocks; blk < blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
#[inline]
unsafe fn acc<const NP: usize, const P: usize, const MASKED: bool>(
    src: [&[*const i8; MAX_TAPS + 1]; P],
    delta: [usize; P],
    c0: usize,
    PairWeights { w, blocks, pairs }: PairWeights,
    blk: usize,
    (mask, init): (__mmask32, [__m512i; 2]),
) -> [[__m512i; 2]; P] {
    let np = if NP > 0 { NP } else { pairs };
    let mut acc = [init; P];
    // SAFETY: (whole body) see the function's contract.
    unsafe {
        let ld = |p: *const i8, d: usize| {
            let p = p.add(d + c0);
            _mm512_cvtepi8_epi16(if MASKED {
                _mm256_maskz_loadu_epi8(mask, p)
            } else {
                _mm256_loadu_si256(p as *const __m256i)
            })
        };
        for p in 0..np {
            let wv = w.add((p * blocks + blk) * 64);
            let (w0, w1) = (
                _mm512_loadu_si512(wv as *const _),
                _mm512_loadu_si512(wv.add(32) as *const _),
            );
            for ((a, s), &d) in acc.iter_mut().zip(src).zip(&delta) {
                let (x0, x1) = (ld(s[2 * p], d), ld(s[2 * p + 1], d));
                a[0] = _mm512_dpwssd_epi32(a[0], _mm512_unpacklo_epi16(x0, x1), w0);
                a[1] = _mm512_dpwssd_epi32(a[1], _mm512_unpackhi_epi16(x0, x1), w1);
            }
        }
    }
    acc
}
