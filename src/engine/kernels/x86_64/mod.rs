//! x86_64 kernels: AVX2 (+ FMA), and for the AVX-512 path the VNNI int8 GEMM
//! ([`gemm_vnni`]), int8 depthwise convolution ([`depthwise_vnni`]) and float32 GEMM
//! ([`gemm_f32_avx512`]); the AVX-512 path uses the AVX2 kernels for everything else.

use std::arch::x86_64::*;

mod depthwise_f32_avx512;
pub mod depthwise_vnni;
pub mod gemm_f32_avx512;
pub mod gemm_vnni;

/// int8 dot product with AVX2. Callers check AVX2 support first.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let body = n / 16 * 16;
    // SAFETY: the dispatcher checked AVX2 at run time; reads stay within a[..body], b[..body].
    let head = unsafe { dot_i8_avx2(&a[..body], &b[..body]) };
    head + super::scalar::dot_i8(&a[body..n], &b[body..n])
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

// ------------------------------------------------------------------ matrix kernels
//
// int8 GEMM: VPMADDWD on int16. The weights are packed once as int16 pairs
// ([16-column block][k pair][16 columns][2]), the activations of a 4-row tile are
// sign-extended to int16 into a stack panel, and each k pair of a row is broadcast
// (one 32-bit load) against two 8-column weight vectors: a 4x16 register tile of
// int32 accumulators. |a*w| <= 2^14, so VPMADDWD never saturates and every sum is
// the exact (wrapping) int32 sum. float32 GEMM: a 6x16 FMA tile over weights packed
// as [16-column block][k][16]. Both paths are only entered after the dispatcher
// (`kernels::effective`) checked AVX2 and FMA at run time.

use std::ops::Range;

use super::scalar::conv::ConvGeom;
use super::scalar::quant::Requant;
use super::scratch::reuse;
use super::{KernelPath, RequantCols};

thread_local! {
    static DW_INNER: std::cell::RefCell<Vec<(usize, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    static DW_EDGE: std::cell::RefCell<Vec<(usize, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Reserve this thread's kernel slots ([`super::scratch::prewarm_thread`]): tap lists for
/// filters up to 32x32, zero-point rows up to 64 KiB.
pub(crate) fn prewarm_scratch() {
    super::scratch::reserve(&DW_INNER, 1024);
    super::scratch::reserve(&DW_EDGE, 1024);
    depthwise_vnni::prewarm_scratch();
}

/// Columns per packed block.
const NR: usize = 16;
/// Rows per int8 register tile (a last partial tile uses 2 or 4 rows).
pub(super) const MR: usize = 6;
/// k pairs per panel chunk.
const KPC: usize = 512;
/// Rows per panel block: the panel (MC x KPC pairs, 60 KiB) stays in L2 while each
/// 16-column weight block (KPC pairs, 32 KiB) is reused by its MC / MR tiles.
const MC: usize = 30;

/// Pack W (`n x k`) as int16 pairs: block `b`, pair `p`, column `c`, half `h` at
/// int16 index `((b * kp + p) * NR + c) * 2 + h`, stored as little-endian bytes.
pub fn pack_i8(_path: KernelPath, w: &[i8], n: usize, k: usize) -> Vec<i8> {
    let kp = k.div_ceil(2);
    let nb = n.div_ceil(NR);
    let mut out = vec![0i8; nb * kp * NR * 2 * 2];
    for b in 0..nb {
        for p in 0..kp {
            for c in 0..NR {
                let j = b * NR + c;
                if j >= n {
                    continue;
                }
                for h in 0..2 {
                    let kk = 2 * p + h;
                    if kk >= k {
                        continue;
                    }
                    let v = w[j * k + kk] as i16;
                    let idx = (((b * kp + p) * NR + c) * 2 + h) * 2;
                    let bytes = v.to_le_bytes();
                    out[idx] = bytes[0] as i8;
                    out[idx + 1] = bytes[1] as i8;
                }
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub fn gemm_i8(
    _path: KernelPath,
    packed: &[i8],
    n: usize,
    k: usize,
    a: &[i8],
    m: usize,
    lda: usize,
    acc: &mut [i32],
    ldacc: usize,
) {
    let kp = k.div_ceil(2);
    let nb = n.div_ceil(NR);
    assert!(
        packed.len() >= nb * kp * NR * 4,
        "gemm_i8: packed weights too short"
    );
    assert!(m == 0 || a.len() >= (m - 1) * lda + k);
    assert!(m == 0 || acc.len() >= (m - 1) * ldacc + n);
    if k == 0 {
        for i in 0..m {
            acc[i * ldacc..i * ldacc + n].fill(0);
        }
        return;
    }
    // SAFETY: the dispatcher only selects this path after checking AVX2 and FMA at
    // run time; the slice lengths were checked above.
    unsafe { gemm_i8_avx2(packed, n, k, a, m, lda, acc, ldacc, None) }
}

/// Requantization of an int8 GEMM's output inside the register tile (see
/// [`gemm_requant_i8`]).
struct Fuse<'a> {
    bias: &'a [i32],
    mult: &'a [i32],
    shift: &'a [i32],
    off: i32,
    /// Byte clamp bounds (see [`clamp8`]).
    lo: i32,
    hi: i32,
    /// Some channel shifts left / some multiplier is i32::MIN (see [`rq8`]).
    left: bool,
    sat: bool,
    out: *mut i8,
    ldo: usize,
}

impl<'a> Fuse<'a> {
    /// The argument checks of a fused GEMM (`gemm_requant_i8` of either x86 path) of `n`
    /// columns, and its epilogue's parameters; `None` when nothing is left to do:
    /// no rows or columns, or `k == 0` (every sum is 0; those are requantized here). `acc`
    /// must hold `m * n` values unless `in_tile` (the path then never touches it).
    #[allow(clippy::too_many_arguments)]
    fn new(
        path: KernelPath,
        n: usize,
        k: usize,
        a: &[i8],
        m: usize,
        lda: usize,
        rq: &RequantCols<'a>,
        acc: &mut [i32],
        in_tile: bool,
        out: &mut [i8],
        ldo: usize,
    ) -> Option<Fuse<'a>> {
        assert!(rq.bias.len() >= n && rq.multipliers.len() >= n && rq.shifts.len() >= n);
        assert!(m == 0 || (lda >= k && a.len() >= (m - 1) * lda + k));
        assert!(m == 0 || (ldo >= n && out.len() >= (m - 1) * ldo + n));
        assert!(
            in_tile || acc.len() >= m * n,
            "gemm_requant_i8: acc too short"
        );
        if m == 0 || n == 0 {
            return None;
        }
        if k == 0 {
            let acc = &mut acc[..m * n];
            acc.fill(0);
            requant_i8(path, acc, m, n, n, rq, out, ldo);
            return None;
        }
        Some(Fuse::epilogue(n, rq, out, ldo))
    }

    /// The epilogue's parameters for `n` columns of `rq` into `out` (row stride `ldo`);
    /// the caller checked the lengths.
    fn epilogue(n: usize, rq: &RequantCols<'a>, out: &mut [i8], ldo: usize) -> Fuse<'a> {
        let (lo, hi) = clamp8(rq.act_min, rq.act_max);
        Fuse {
            bias: rq.bias,
            mult: rq.multipliers,
            shift: rq.shifts,
            off: rq.output_offset,
            lo,
            hi,
            left: rq.shifts[..n].iter().any(|&s| s > 0),
            sat: rq.multipliers[..n].contains(&i32::MIN),
            out: out.as_mut_ptr(),
            ldo,
        }
    }
}

/// The constants a tile's requantizing epilogue needs for one 16-column block.
struct TileRq {
    lanes: [RqLanes; 2],
    off: __m256i,
    lo: __m128i,
    hi: __m128i,
    left: bool,
    sat: bool,
    /// The output row stride.
    ldo: usize,
}

impl TileRq {
    /// Requantize one tile row (16 columns as two vectors of 8) to 16 bytes in
    /// column order.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn row(&self, v0: __m256i, v1: __m256i) -> __m128i {
        let [p0, p1] = &self.lanes;
        let (v0, v1) = match (self.left, self.sat) {
            (false, false) => (
                rq8::<false, false>(v0, p0, self.off),
                rq8::<false, false>(v1, p1, self.off),
            ),
            (true, false) => (
                rq8::<true, false>(v0, p0, self.off),
                rq8::<true, false>(v1, p1, self.off),
            ),
            (false, true) => (
                rq8::<false, true>(v0, p0, self.off),
                rq8::<false, true>(v1, p1, self.off),
            ),
            (true, true) => (
                rq8::<true, true>(v0, p0, self.off),
                rq8::<true, true>(v1, p1, self.off),
            ),
        };
        // a0-3 b0-3 a4-7 b4-7 -> column order.
        _mm_shuffle_epi32(pack16(v0, v1, self.lo, self.hi), 0b11_01_10_00)
    }
}

/// Whether [`gemm_requant_i8`] leaves `acc` alone for this `k` (one panel chunk).
pub fn gemm_requant_in_tile(k: usize) -> bool {
    k > 0 && k.div_ceil(2) <= KPC
}

/// [`gemm_i8`] then [`requant_i8`] with `ldacc = n`, bit-exact with the two calls, the
/// requantization done in the register tile. `acc` (at least `m * n` values) is only
/// used when `k` spans more than one panel chunk (the partial sums of the earlier
/// chunks); it may be empty otherwise.
#[allow(clippy::too_many_arguments)]
pub fn gemm_requant_i8(
    packed: &[i8],
    n: usize,
    k: usize,
    a: &[i8],
    m: usize,
    lda: usize,
    rq: &RequantCols<'_>,
    acc: &mut [i32],
    out: &mut [i8],
    ldo: usize,
) {
    let kp = k.div_ceil(2);
    let nb = n.div_ceil(NR);
    assert!(
        packed.len() >= nb * kp * NR * 4,
        "gemm_requant_i8: packed weights too short"
    );
    let in_tile = gemm_requant_in_tile(k);
    let Some(fuse) = Fuse::new(
        KernelPath::Avx2,
        n,
        k,
        a,
        m,
        lda,
        rq,
        acc,
        in_tile,
        out,
        ldo,
    ) else {
        return;
    };
    // SAFETY: the dispatcher only selects this path after checking AVX2 and FMA at
    // run time; the packed length was checked above, the other slices by `Fuse::new`
    // (`out` through `fuse.out`: (m - 1) * ldo + n bytes; `acc` only for k beyond one
    // chunk).
    unsafe { gemm_i8_avx2(packed, n, k, a, m, lda, acc, n, Some(&fuse)) }
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn gemm_i8_avx2(
    packed: &[i8],
    n: usize,
    k: usize,
    a: &[i8],
    m: usize,
    lda: usize,
    acc: &mut [i32],
    ldacc: usize,
    fuse: Option<&Fuse<'_>>,
) {
    let kp = k.div_ceil(2);
    let nb = n.div_ceil(NR);
    let wbase = packed.as_ptr() as *const i16;
    // int16 panel of up to MC rows x KPC pairs, row stride `pc` pairs. Left
    // uninitialised: every element a tile reads is written first (below).
    let mut panel = [std::mem::MaybeUninit::<i16>::uninit(); MC * KPC * 2];
    let pp = panel.as_mut_ptr() as *mut i16;
    let mut r0 = 0;
    while r0 < m {
        let rows_blk = (m - r0).min(MC);
        let tiles = rows_blk.div_ceil(MR);
        // Panel rows the tiles read: full MR-row tiles, then the last one rounded up
        // to 2, 4 or 6 rows (<= tiles * MR <= MC).
        let prows = rows_blk / MR * MR + (rows_blk % MR).next_multiple_of(2);
        let mut p0 = 0;
        while p0 < kp {
            let pc = (kp - p0).min(KPC);
            let k0 = 2 * p0;
            let k1 = (2 * (p0 + pc)).min(k);
            // Sign-extend rows r0..r0+rows_blk, k values k0..k1, to int16; zero the
            // odd tail and the rows of the last tile past m.
            for r in 0..prows {
                // SAFETY: r < prows <= MC and 2*pc <= 2*KPC: the row lies inside
                // the panel; the 16-element loads stay inside src (t + 16 <= len),
                // the stores inside the row (len <= 2*pc).
                unsafe {
                    let dst = pp.add(r * pc * 2);
                    let mut t = 0;
                    if r < rows_blk {
                        let src = &a[(r0 + r) * lda + k0..(r0 + r) * lda + k1];
                        while t + 16 <= src.len() {
                            let v = _mm_loadu_si128(src.as_ptr().add(t) as *const __m128i);
                            _mm256_storeu_si256(
                                dst.add(t) as *mut __m256i,
                                _mm256_cvtepi8_epi16(v),
                            );
                            t += 16;
                        }
                        while t < src.len() {
                            *dst.add(t) = src[t] as i16;
                            t += 1;
                        }
                    }
                    while t < 2 * pc {
                        *dst.add(t) = 0;
                        t += 1;
                    }
                }
            }
            let first = p0 == 0;
            // The last chunk requantizes in the tile when fused.
            let fused = if p0 + pc == kp { fuse } else { None };
            for b in 0..nb {
                let cols = (n - b * NR).min(NR);
                let rq = fused.map(|f| tile_rq(f, b * NR, cols));
                for t in 0..tiles {
                    let i0 = r0 + t * MR;
                    let rows = (m - i0).min(MR);
                    // SAFETY: t * MR < prows: the tile's first panel row, the block's
                    // pair p0 and acc element (i0, b*NR) are in bounds. The block holds
                    // kp * NR pairs (length checked by the caller); the tile's R <=
                    // prows - t*MR panel rows hold pc initialised pairs each; the tile
                    // writes rows < rows <= R and columns < cols of acc starting at
                    // (i0, b*NR), inside acc's checked length.
                    // When fused, the tile writes output rows i0.. (inside `out`,
                    // checked by gemm_requant_i8) and reads acc only if !first;
                    // `wrapping_add` because acc may then be empty.
                    unsafe {
                        let pan = pp.add(t * MR * pc * 2);
                        let wb = wbase.add((b * kp + p0) * NR * 2);
                        let dst = acc.as_mut_ptr().wrapping_add(i0 * ldacc + b * NR);
                        let trq = rq
                            .as_ref()
                            .zip(fused)
                            .map(|(q, f)| (q, f.out.add(i0 * f.ldo + b * NR)));
                        let tile = match rows {
                            5.. => tile_i8::<6>,
                            3 | 4 => tile_i8::<4>,
                            _ => tile_i8::<2>,
                        };
                        tile(pan, pc, wb, dst, ldacc, rows, cols, first, trq);
                    }
                }
            }
            p0 += pc;
        }
        r0 += MC;
    }
}

/// The requantizing epilogue's constants of the 16-column block starting at column
/// `j` (`cols` of them real).
#[target_feature(enable = "avx2,fma")]
fn tile_rq(f: &Fuse<'_>, j: usize, cols: usize) -> TileRq {
    // Columns past n get bias 0, multiplier 0, shift 0: finite results, never stored.
    let mut p = [[0i32; NR]; 3];
    p[0][..cols].copy_from_slice(&f.bias[j..j + cols]);
    p[1][..cols].copy_from_slice(&f.mult[j..j + cols]);
    p[2][..cols].copy_from_slice(&f.shift[j..j + cols]);
    // SAFETY: each array holds NR = 16 values: loads at 0 and 8 of 8 lanes.
    let ld = |a: &[i32; NR], h: usize| unsafe {
        _mm256_loadu_si256(a.as_ptr().add(h) as *const __m256i)
    };
    TileRq {
        lanes: [
            RqLanes::new(ld(&p[0], 0), ld(&p[1], 0), ld(&p[2], 0)),
            RqLanes::new(ld(&p[0], 8), ld(&p[1], 8), ld(&p[2], 8)),
        ],
        off: _mm256_set1_epi32(f.off),
        lo: _mm_set1_epi8(f.lo as i8),
        hi: _mm_set1_epi8(f.hi as i8),
        left: f.left,
        sat: f.sat,
        ldo: f.ldo,
    }
}

/// One Rx16 tile: acc[r][c] (+)= sum_p panel[r][p] . w[p][c] over `pc` pairs; with
/// `rq`, the finished sums are requantized into the output from the tile's first
/// output byte instead.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_i8<const R: usize>(
    panel: *const i16,
    pc: usize,
    w: *const i16,
    acc: *mut i32,
    ldacc: usize,
    rows: usize,
    cols: usize,
    first: bool,
    rq: Option<(&TileRq, *mut i8)>,
) {
    let mut c = [[_mm256_setzero_si256(); 2]; R];
    let pr = panel as *const i32; // one i32 per pair; rows `pc` pairs apart
    for p in 0..pc {
        // SAFETY: p < pc: the weight block has pc more pairs of NR columns (32 int16)
        // from `w`, and each of the R panel rows has pc pairs.
        unsafe {
            let w0 = _mm256_loadu_si256(w.add(p * 32) as *const __m256i);
            let w1 = _mm256_loadu_si256(w.add(p * 32 + 16) as *const __m256i);
            for (r, cr) in c.iter_mut().enumerate() {
                let a = _mm256_set1_epi32(pr.add(r * pc + p).read_unaligned());
                cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(a, w0));
                cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(a, w1));
            }
        }
    }
    for (r, &[c0, c1]) in c.iter().enumerate().take(rows) {
        // SAFETY: row r < rows and columns < cols of the tile are inside acc (when it
        // is read or written: !first, or no `rq`) and inside the output (with `rq`),
        // as the caller checked; full-width accesses only when cols == NR.
        unsafe {
            let dst = acc.add(r * ldacc);
            let (mut v0, mut v1) = (c0, c1);
            if !first {
                if cols == NR {
                    v0 = _mm256_add_epi32(v0, _mm256_loadu_si256(dst as *const __m256i));
                    v1 = _mm256_add_epi32(v1, _mm256_loadu_si256(dst.add(8) as *const __m256i));
                } else {
                    let mut tmp = [0i32; NR];
                    std::ptr::copy_nonoverlapping(dst, tmp.as_mut_ptr(), cols);
                    v0 = _mm256_add_epi32(v0, _mm256_loadu_si256(tmp.as_ptr() as *const __m256i));
                    v1 = _mm256_add_epi32(
                        v1,
                        _mm256_loadu_si256(tmp.as_ptr().add(8) as *const __m256i),
                    );
                }
            }
            if let Some((q, out)) = rq {
                let bytes = q.row(v0, v1);
                let o = out.add(r * q.ldo);
                if cols == NR {
                    _mm_storeu_si128(o as *mut __m128i, bytes);
                } else {
                    let mut b = [0i8; NR];
                    _mm_storeu_si128(b.as_mut_ptr() as *mut __m128i, bytes);
                    std::ptr::copy_nonoverlapping(b.as_ptr(), o, cols);
                }
            } else if cols == NR {
                _mm256_storeu_si256(dst as *mut __m256i, v0);
                _mm256_storeu_si256(dst.add(8) as *mut __m256i, v1);
            } else {
                let mut tmp = [0i32; NR];
                _mm256_storeu_si256(tmp.as_mut_ptr() as *mut __m256i, v0);
                _mm256_storeu_si256(tmp.as_mut_ptr().add(8) as *mut __m256i, v1);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols);
            }
        }
    }
}

/// Vector MultiplyByQuantizedMultiplier + offset + clamp of 8 int32 lanes, exactly
/// as `scalar::quant::multiply_by_quantized_multiplier`:
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

/// Per-channel constants of the vectorised requantization of 8 lanes, computed once
/// per call (or per column block) instead of per use.
#[derive(Clone, Copy)]
struct RqLanes {
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
    fn new(bias: __m256i, mult: __m256i, shift: __m256i) -> Self {
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
/// lanes (wrapping, no clamp), exactly as `scalar::quant::multiply_by_quantized_multiplier`:
/// left shift (wrapping; skipped unless `LEFT`, i.e. some channel has a positive
/// shift), SaturatingRoundingDoublingHighMul (which equals floor((x*m + 2^30) / 2^31)
/// except for MIN*MIN, checked only if `SAT`, i.e. some multiplier is i32::MIN), then
/// RoundingDivideByPOT.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn rq8<const LEFT: bool, const SAT: bool>(x: __m256i, p: &RqLanes, off: __m256i) -> __m256i {
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
fn pack16(a: __m256i, b: __m256i, lo: __m128i, hi: __m128i) -> __m128i {
    let p = _mm256_packs_epi32(a, b);
    let q = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_min_epi8(_mm_max_epi8(q, lo), hi)
}

/// Byte clamp bounds of the vector epilogue: [lo, hi] pulled into [-128, 127].
fn clamp8(act_min: i32, act_max: i32) -> (i32, i32) {
    let lo = act_min.max(-128);
    let hi = act_max.min(127);
    (lo.min(127), hi.max(-128))
}

#[allow(clippy::too_many_arguments)]
pub fn requant_i8(
    path: KernelPath,
    acc: &[i32],
    m: usize,
    n: usize,
    ldacc: usize,
    rq: &RequantCols<'_>,
    out: &mut [i8],
    ldo: usize,
) {
    if path == KernelPath::Avx512 {
        return gemm_vnni::requant_i8(acc, m, n, ldacc, rq, out, ldo);
    }
    let left = rq.shifts[..n].iter().any(|&s| s > 0);
    let sat = rq.multipliers[..n].contains(&i32::MIN);
    let f = match (left, sat) {
        (false, false) => requant_block::<false, false>,
        (true, false) => requant_block::<true, false>,
        (false, true) => requant_block::<false, true>,
        (true, true) => requant_block::<true, true>,
    };
    // SAFETY: AVX2/FMA were checked by the dispatcher, which also checked acc, out and
    // rq's bias, multipliers and shifts against m, n, ldacc and ldo.
    unsafe {
        f(acc, m, n, ldacc, rq, out, ldo);
    }
}

/// The requantization epilogue by column blocks: each block's per-channel constants
/// are prepared once and applied to all `m` rows.
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
            let v = super::scalar::quant::multiply_by_quantized_multiplier(
                acc[i * ldacc + q].wrapping_add(rq.bias[q]),
                rq.multipliers[q],
                rq.shifts[q],
            )
            .wrapping_add(rq.output_offset);
            out[i * ldo + q] = v.clamp(rq.act_min.max(-128), rq.act_max.min(127)) as i8;
        }
    }
}

/// Depthwise int8, channel-vectorised (16 channels per step, int16 products are
/// exact: |x + input_offset| <= 255 and |w| <= 128). Depth multipliers other than
/// 1 and non-zero filter offsets use the scalar reference.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_i8(
    path: KernelPath,
    g: &ConvGeom,
    depth_multiplier: usize,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    if depth_multiplier != 1 || q.filter_offset != 0 || !(-255..=255).contains(&q.input_offset) {
        return super::scalar::gemm::depthwise_i8(
            path,
            g,
            depth_multiplier,
            input,
            filter,
            bias,
            q,
            rows,
            out,
        );
    }
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
        unsafe { depthwise_i8_pairs(g, input, filter, bias, q, &prep, rows, out) }
    } else {
        // SAFETY: as above.
        unsafe { depthwise_i8_avx2(g, input, filter, bias, q, rows, out) }
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
/// for geometries with the same channels and filter size.
pub fn prepare_depthwise_i8(
    g: &ConvGeom,
    depth_multiplier: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
) -> Option<DwPrepI8> {
    let taps = g.filter_h * g.filter_w;
    let fits = depth_multiplier == 1
        && q.filter_offset == 0
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
#[allow(clippy::too_many_arguments)]
pub fn depthwise_i8_prepared(
    prep: &DwPrepI8,
    g: &ConvGeom,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let pairs = (g.filter_h * g.filter_w).div_ceil(2);
    assert!(
        prep.params.len() == g.in_c / 16
            && prep.wbuf.len() == pairs * (g.in_c / 16) * 32
            && prep.zp.len() == g.in_c,
        "depthwise_i8_prepared: prepared for another geometry"
    );
    // SAFETY: AVX2/FMA checked by the dispatcher, which also checked every slice
    // length against the geometry; prep matches its channels and taps (above).
    unsafe { depthwise_i8_pairs(g, input, filter, bias, q, prep, rows, out) }
}

/// Largest filter (taps) and channel count of the paired depthwise kernel.
const MAX_TAPS: usize = 64;
const MAX_DW_CH: usize = 4096;
/// int16 weights of the paired kernel at most (32 KiB; 3x3 up to 1632 channels).
const DW_WBUF: usize = 16 * 1024;

/// Depthwise int8 over tap pairs with VPMADDWD: the weights of taps (2p, 2p+1) are
/// interleaved once per operator ([`prepare_depthwise_i8`]), padded taps read a row of
/// input zero points, so every pixel runs the same tap list. The input offset is folded
/// into the bias once per operator too: sum_t w_t*(x_t + ioff) = sum_t w_t*x_t +
/// ioff*sum_t w_t (exact in wrapping int32), and a padded tap's w*zp = -w*ioff cancels
/// its share of the folded term.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn depthwise_i8_pairs(
    g: &ConvGeom,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
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
    f(g, input, filter, bias, q, prep, rows, out)
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
    for p in 0..pairs {
        for b in 0..blocks {
            let c0 = b * 16;
            let t0 = 2 * p;
            let t1 = 2 * p + 1;
            // SAFETY: t0 < taps and c0 + 16 <= ch: the 16-byte filter reads are inside
            // the filter (taps * ch); the two stores land at (p*blocks + b)*32 + 32
            // <= pairs*blocks*32 = wbuf.len().
            unsafe {
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(
                    filter.as_ptr().add(t0 * ch + c0) as *const __m128i
                ));
                let w1 = if t1 < taps {
                    _mm256_cvtepi8_epi16(_mm_loadu_si128(
                        filter.as_ptr().add(t1 * ch + c0) as *const __m128i
                    ))
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
            let sw: i32 = (0..taps).map(|t| filter[t * ch + c] as i32).sum();
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
#[allow(clippy::too_many_arguments)]
fn dw_i8_pairs<const LEFT: bool, const SAT: bool>(
    g: &ConvGeom,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
    prep: &DwPrepI8,
    rows: Range<usize>,
    out: &mut [i8],
) {
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
                dw_i8_tail(g, input, filter, bias, q, b, oy, ox + k, row, c16, out);
            }
            ox += np;
        }
    }
}

/// Channels `c16..` of one depthwise int8 pixel, as the scalar reference.
#[allow(clippy::too_many_arguments)]
fn dw_i8_tail(
    g: &ConvGeom,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
    b: usize,
    oy: usize,
    ox: usize,
    row: usize,
    c16: usize,
    out: &mut [i8],
) {
    let ch = g.in_c;
    let obase = (row * g.out_w + ox) * ch;
    for c in c16..ch {
        let mut acc = 0i32;
        for fy in 0..g.filter_h {
            let Some(iy) = g.in_y(oy, fy) else { continue };
            for fx in 0..g.filter_w {
                let Some(ix) = g.in_x(ox, fx) else { continue };
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

/// Valid filter taps along one axis for output position `o`: `(first, end)`.
#[inline(always)]
fn tap_range(
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

#[target_feature(enable = "avx2,fma")]
fn depthwise_i8_avx2(
    g: &ConvGeom,
    input: &[i8],
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
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

// ------------------------------------------------------------------ float32

/// Rows per float register tile.
pub(super) const MRF: usize = 6;
/// Rows per float cache block (4 tiles).
const MCF: usize = 24;

/// Pack W (`n x k`) as `[block][k][16]` floats, zero-padded past `n`.
pub fn pack_f32(_path: KernelPath, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let nb = n.div_ceil(NR);
    let mut out = vec![0f32; nb * k * NR];
    for b in 0..nb {
        for kk in 0..k {
            for c in 0..NR {
                let j = b * NR + c;
                if j < n {
                    out[(b * k + kk) * NR + c] = w[j * k + kk];
                }
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    path: KernelPath,
    packed: &[f32],
    n: usize,
    k: usize,
    a: &[f32],
    m: usize,
    lda: usize,
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    out: &mut [f32],
    ldo: usize,
) {
    let nb = n.div_ceil(NR);
    assert!(
        packed.len() >= nb * k * NR,
        "gemm_f32: packed weights too short"
    );
    // SAFETY: AVX2/FMA (for the AVX-512 path also AVX-512 F, BW, DQ, VL, VNNI) checked by
    // the dispatcher, which also checked a, out and bias against m, n, k, lda, ldo.
    unsafe {
        if path == KernelPath::Avx512 {
            gemm_f32_avx512::gemm(packed, n, k, a, m, lda, bias, clamp, out, ldo)
        } else {
            gemm_f32_avx2(packed, n, k, a, m, lda, bias, clamp, out, ldo)
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn gemm_f32_avx2(
    packed: &[f32],
    n: usize,
    k: usize,
    a: &[f32],
    m: usize,
    lda: usize,
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    out: &mut [f32],
    ldo: usize,
) {
    let nb = n.div_ceil(NR);
    let (vlo, vhi) = (_mm256_set1_ps(clamp.0), _mm256_set1_ps(clamp.1));
    // Blocks of MCF rows: each 16-column weight block is reused by the block's
    // MCF / MRF tiles while it is in cache.
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + MCF).min(m);
        for b in 0..nb {
            let cols = (n - b * NR).min(NR);
            let mut i0 = r0;
            while i0 < r1 {
                let rows = (m - i0).min(MRF);
                // Row pointers; rows past m repeat the last row (computed, never stored).
                let mut rp = [a.as_ptr(); MRF];
                for (r, p) in rp.iter_mut().enumerate() {
                    // SAFETY: row min(i0 + r, m - 1) < m starts inside `a` and has k elements.
                    *p = unsafe { a.as_ptr().add((i0 + r.min(rows - 1)) * lda) };
                }
                let mut c = [_mm256_setzero_ps(); 2 * MRF];
                // SAFETY: packed block b holds k * NR floats; each row pointer has k
                // floats (see above).
                unsafe {
                    let w = packed.as_ptr().add(b * k * NR);
                    for kk in 0..k {
                        let w0 = _mm256_loadu_ps(w.add(kk * NR));
                        let w1 = _mm256_loadu_ps(w.add(kk * NR + 8));
                        for r in 0..MRF {
                            let x = _mm256_broadcast_ss(&*rp[r].add(kk));
                            c[2 * r] = _mm256_fmadd_ps(x, w0, c[2 * r]);
                            c[2 * r + 1] = _mm256_fmadd_ps(x, w1, c[2 * r + 1]);
                        }
                    }
                }
                let mut bv = [_mm256_setzero_ps(); 2];
                if let Some(bias) = bias {
                    let mut t = [0f32; NR];
                    t[..cols].copy_from_slice(&bias[b * NR..b * NR + cols]);
                    // SAFETY: t has NR = 16 floats.
                    unsafe {
                        bv = [
                            _mm256_loadu_ps(t.as_ptr()),
                            _mm256_loadu_ps(t.as_ptr().add(8)),
                        ];
                    }
                }
                for r in 0..rows {
                    let v0 = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(c[2 * r], bv[0]), vlo), vhi);
                    let v1 =
                        _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(c[2 * r + 1], bv[1]), vlo), vhi);
                    let o = (i0 + r) * ldo + b * NR;
                    if cols == NR {
                        // SAFETY: row i0 + r < m and columns b*NR .. b*NR + 16 <= n lie inside out.
                        unsafe {
                            _mm256_storeu_ps(out.as_mut_ptr().add(o), v0);
                            _mm256_storeu_ps(out.as_mut_ptr().add(o + 8), v1);
                        }
                    } else {
                        let mut t = [0f32; NR];
                        // SAFETY: t has NR = 16 floats.
                        unsafe {
                            _mm256_storeu_ps(t.as_mut_ptr(), v0);
                            _mm256_storeu_ps(t.as_mut_ptr().add(8), v1);
                        }
                        out[o..o + cols].copy_from_slice(&t[..cols]);
                    }
                }
                i0 += MRF;
            }
        }
        r0 = r1;
    }
}

#[allow(clippy::too_many_arguments)]
pub fn depthwise_f32(
    path: KernelPath,
    g: &ConvGeom,
    depth_multiplier: usize,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    rows: Range<usize>,
    out: &mut [f32],
) {
    if depth_multiplier != 1 {
        return super::scalar::gemm::depthwise_f32(
            path,
            g,
            depth_multiplier,
            input,
            filter,
            bias,
            clamp,
            rows,
            out,
        );
    }
    // SAFETY: AVX2/FMA (and for the AVX-512 path AVX-512 F, BW, DQ, VL, VNNI) checked by
    // the dispatcher, which also checked every slice length against the geometry.
    unsafe {
        if path == KernelPath::Avx512
            && (g.filter_h, g.filter_w, g.dilation_h, g.dilation_w) == (3, 3, 1, 1)
            && (g.stride_h, g.stride_w) == (1, 1)
        {
            depthwise_f32_3x3_avx512(g, input, filter, bias, clamp, rows, out)
        } else if path == KernelPath::Avx512 {
            depthwise_f32_avx2::<true>(g, input, filter, bias, clamp, rows, out)
        } else {
            depthwise_f32_avx2::<false>(g, input, filter, bias, clamp, rows, out)
        }
    }
}

/// The float 3×3 depthwise convolution (stride 1, dilation 1, depth multiplier 1) with
/// AVX-512: each output row through [`depthwise_f32_avx512::Row3x3`] with the input rows
/// its filter rows read (those inside the input). With stride 2 the pixel-major driver,
/// which streams the (larger) input in order, measured faster.
///
/// # Safety
/// AVX-512 F, BW, DQ, VL and VNNI are available; the slices were checked against `g`
/// (a 3×3 filter, stride 1, dilation 1, depth multiplier 1) by the dispatcher.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
unsafe fn depthwise_f32_3x3_avx512(
    g: &ConvGeom,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    rows: Range<usize>,
    out: &mut [f32],
) {
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
        let r = depthwise_f32_avx512::Row3x3 {
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

/// The float depthwise driver: tap lists per output row and pixel, and the pixels of
/// `dw_f32_pixels` (AVX2), or with `WIDE` of `depthwise_f32_avx512::pixels`.
///
/// # Safety
/// AVX2 and FMA are available, and with `WIDE` AVX-512 F, BW, DQ, VL and VNNI; the slices
/// were checked against `g` by the dispatcher.
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_f32_avx2<const WIDE: bool>(
    g: &ConvGeom,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    rows: Range<usize>,
    out: &mut [f32],
) {
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
                    let (xs, w) = (g.stride_w * ch, filter.as_ptr());
                    if WIDE {
                        depthwise_f32_avx512::pixels::<2>(x, xs, w, &inner, bias, o, ch, clamp);
                    } else {
                        dw_f32_pixels::<2>(x, xs, w, &inner, bias, o, ch, vlo, vhi, clamp);
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
                if WIDE {
                    depthwise_f32_avx512::pixels::<1>(x, 0, w, list, bias, o, ch, clamp);
                } else {
                    dw_f32_pixels::<1>(x, 0, w, list, bias, o, ch, vlo, vhi, clamp);
                }
            }
            ox += 1;
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
/// AVX2 is available; for every `(xo, wo)` in `taps` and pixel `p < P`,
/// `x + p * xstep + xo` and `w + wo` start `ch` readable floats; `o` starts `P * ch`
/// writable floats; `bias` has `ch` entries.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn dw_f32_pixels<const P: usize>(
    x: *const f32,
    xstep: usize,
    w: *const f32,
    taps: &[(usize, usize)],
    bias: Option<&[f32]>,
    o: *mut f32,
    ch: usize,
    vlo: __m256,
    vhi: __m256,
    clamp: (f32, f32),
) {
    let bp = bias.map(|b| b.as_ptr());
    let mut c0 = 0;
    // SAFETY (all calls): c0 + 8*G <= ch, within the caller's bounds.
    unsafe {
        let grp = |g: usize, c0: usize| {
            let (xc, wc, bc, oc) = (x.add(c0), w.add(c0), bp.map(|p| p.add(c0)), o.add(c0));
            match g {
                4 => dw_f32_group::<4, P>(xc, xstep, wc, taps, bc, oc, ch, vlo, vhi),
                3 => dw_f32_group::<3, P>(xc, xstep, wc, taps, bc, oc, ch, vlo, vhi),
                2 => dw_f32_group::<2, P>(xc, xstep, wc, taps, bc, oc, ch, vlo, vhi),
                1 => dw_f32_group::<1, P>(xc, xstep, wc, taps, bc, oc, ch, vlo, vhi),
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
#[allow(clippy::too_many_arguments)]
unsafe fn dw_f32_group<const G: usize, const P: usize>(
    x: *const f32,
    xstep: usize,
    w: *const f32,
    taps: &[(usize, usize)],
    bias: Option<*const f32>,
    o: *mut f32,
    ostep: usize,
    vlo: __m256,
    vhi: __m256,
) {
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
