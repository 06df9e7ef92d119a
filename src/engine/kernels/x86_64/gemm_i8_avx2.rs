//! int8 GEMM with AVX2: VPMADDWD on int16. The weights are packed once as int16 pairs
//! (`[16-column block][k pair][16 columns][2]`), the activations of a 4-row tile are
//! sign-extended to int16 into a stack panel, and each k pair of a row is broadcast
//! (one 32-bit load) against two 8-column weight vectors: a 4x16 register tile of
//! int32 accumulators. |a*w| <= 2^14, so VPMADDWD never saturates and every sum is
//! the exact (wrapping) int32 sum. Only entered after the dispatcher
//! (`kernels::effective`) checked AVX2 and FMA at run time.

use std::arch::x86_64::*;

use super::fuse::{Fuse, Shape};
use super::lanes::{pack16, rq8, RqLanes};
use super::requant_avx2::requant_i8;
use crate::engine::kernels::{Mat, MatMut, RequantCols};

/// Columns per packed block.
const NR: usize = 16;
/// Rows per int8 register tile (a last partial tile uses 2 or 4 rows).
pub(in crate::engine::kernels) const MR: usize = 6;
/// k pairs per panel chunk.
const KPC: usize = 512;
/// Rows per panel block: the panel (MC x KPC pairs, 60 KiB) stays in L2 while each
/// 16-column weight block (KPC pairs, 32 KiB) is reused by its MC / MR tiles.
const MC: usize = 30;

/// Pack W (`n x k`) as int16 pairs: block `b`, pair `p`, column `c`, half `h` at
/// int16 index `((b * kp + p) * NR + c) * 2 + h`, stored as little-endian bytes.
pub fn pack_i8(w: &[i8], n: usize, k: usize) -> Vec<i8> {
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

/// `acc[i][j] = sum_kk a[i][kk] * W[j][kk]` (wrapping int32) for the `a.rows` rows of `a`
/// (`k = a.cols`) and the `n = acc.cols` columns, W packed by [`pack_i8`].
pub fn gemm_i8(packed: &[i8], a: Mat<'_, i8>, acc: MatMut<'_, i32>) {
    let (n, k) = (acc.cols, a.cols);
    let (m, lda, ldacc) = (a.rows, a.stride, acc.stride);
    let kp = k.div_ceil(2);
    let nb = n.div_ceil(NR);
    assert!(
        packed.len() >= nb * kp * NR * 4,
        "gemm_i8: packed weights too short"
    );
    assert!(m == 0 || a.data.len() >= (m - 1) * lda + k);
    assert!(m == 0 || (acc.rows == m && acc.data.len() >= (m - 1) * ldacc + n));
    if k == 0 {
        for i in 0..m {
            acc.data[i * ldacc..i * ldacc + n].fill(0);
        }
        return;
    }
    // SAFETY: the dispatcher only selects this path after checking AVX2 and FMA at
    // run time; the slice lengths were checked above.
    unsafe { gemm_i8_avx2(packed, a.data, acc.data, Shape::new(&a, n, ldacc), None) }
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

/// [`gemm_i8`] then [`requant_i8`] of `a` (`m x k`) into `out` (`m x n`), bit-exact with the
/// two calls, the requantization done in the register tile. `acc` (at least `m * n` values)
/// is only used when `k` spans more than one panel chunk (the partial sums of the earlier
/// chunks); it may be empty otherwise.
pub fn gemm_requant_i8(
    packed: &[i8],
    a: Mat<'_, i8>,
    rq: &RequantCols<'_>,
    acc: &mut [i32],
    out: MatMut<'_, i8>,
) {
    let (n, k) = (out.cols, a.cols);
    let kp = k.div_ceil(2);
    let nb = n.div_ceil(NR);
    assert!(
        packed.len() >= nb * kp * NR * 4,
        "gemm_requant_i8: packed weights too short"
    );
    let in_tile = gemm_requant_in_tile(k);
    let Some(fuse) = Fuse::new(requant_i8, a, rq, acc, in_tile, out) else {
        return;
    };
    // The partial sums in `acc` (when used) are dense: row stride n.
    let shape = Shape::new(&a, n, n);
    // SAFETY: the dispatcher only selects this path after checking AVX2 and FMA at
    // run time; the packed length was checked above, the other slices by `Fuse::new`
    // (`out` through `fuse.out`: (m - 1) * ldo + n bytes; `acc` only for k beyond one
    // chunk).
    unsafe { gemm_i8_avx2(packed, a.data, acc, shape, Some(&fuse)) }
}

/// The GEMM of `a` by the packed weights into `acc`, of shape `s`, or, with `fuse`,
/// requantized into `fuse.out` (then `acc` holds the partial sums of the earlier panel chunks,
/// and is only touched when there are several).
#[target_feature(enable = "avx2,fma")]
fn gemm_i8_avx2(packed: &[i8], a: &[i8], acc: &mut [i32], s: Shape, fuse: Option<&Fuse<'_>>) {
    let Shape {
        m,
        n,
        k,
        lda,
        ldacc,
    } = s;
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
                        let t = Tile {
                            panel: pan,
                            pc,
                            w: wb,
                            acc: dst,
                            ldacc,
                            rows,
                            cols,
                            first,
                            rq: trq,
                        };
                        match rows {
                            5.. => tile_i8::<6>(&t),
                            3 | 4 => tile_i8::<4>(&t),
                            _ => tile_i8::<2>(&t),
                        }
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

/// One register tile's operands (see [`tile_i8`]).
struct Tile<'a> {
    /// First panel row; rows `pc` pairs apart.
    panel: *const i16,
    /// k pairs in this chunk.
    pc: usize,
    /// The weight block at this chunk's first pair.
    w: *const i16,
    /// acc element (i0, j) and acc's row stride.
    acc: *mut i32,
    ldacc: usize,
    /// Real rows (<= R) and columns (<= NR).
    rows: usize,
    cols: usize,
    /// The first chunk (acc holds no partial sums yet).
    first: bool,
    /// The requantizing epilogue and the output byte (i0, j), on the last chunk of a fused
    /// call.
    rq: Option<(&'a TileRq, *mut i8)>,
}

/// One Rx16 tile: acc[r][c] (+)= sum_p panel[r][p] . w[p][c] over `pc` pairs; with
/// `rq`, the finished sums are requantized into the output from the tile's first
/// output byte instead.
///
/// # Safety
/// As stated at the call in [`gemm_i8_avx2`]; the CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_i8<const R: usize>(t: &Tile<'_>) {
    let Tile {
        panel,
        pc,
        w,
        acc,
        ldacc,
        rows,
        cols,
        first,
        rq,
    } = *t;
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
