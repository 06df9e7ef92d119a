//! int8 GEMM with AVX-512 VNNI (VPDPBUSD on 512-bit vectors).
//!
//! VPDPBUSD multiplies unsigned bytes by signed bytes, four at a time, and adds the four
//! products to an int32 lane. The activations are signed, so the panel stores them with
//! the sign bit flipped (`a ^ 0x80 = a + 128`, unsigned), and each column's accumulators
//! start at `-128 * sum_k W[j][k]`, made once when the weights are packed:
//! `sum_k (a + 128) * w - 128 * sum_k w = sum_k a * w`. Every step wraps modulo 2^32
//! (VPDPBUSD does not saturate), so the result is the exact wrapping int32 sum the
//! scalar reference computes.
//!
//! Weights are packed per 16-column block as `[k group of 4][16 columns][4 bytes]`,
//! followed by the blocks' 16 column corrections (int32, little-endian). A register
//! tile is up to [`MR`] rows by two blocks (32 columns): 16 accumulators, two weight
//! vectors, and the activations read as 32-bit broadcasts from the panel. The
//! requantizing epilogue ([`Rq16`]) works on the 16 lanes of an accumulator and narrows
//! them with one saturating VPMOVSDB; partial column blocks store through byte or lane
//! masks.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::fuse::{Fuse, Shape};
use crate::engine::kernels::{Mat, MatMut, RequantCols};

/// Columns per packed block (one vector of 16 int32 accumulators).
const NR: usize = 16;
/// Rows per register tile (a last partial tile uses 4, 2 or 1 rows).
pub(in crate::engine::kernels) const MR: usize = 8;
/// k groups (of 4) per panel chunk: k up to 2048 takes one chunk.
const KGC: usize = 512;
/// Rows per panel block: the panel (MC rows of up to 4 * KGC bytes, 64 KiB) stays in L2
/// while each pair of weight blocks is reused by its MC / MR tiles.
const MC: usize = 32;

/// Bytes of packed weights (without the column corrections) for `n x k`.
fn weight_bytes(n: usize, k: usize) -> usize {
    n.div_ceil(NR) * k.div_ceil(4) * NR * 4
}

/// Pack W (`n x k`) for VPDPBUSD: block `b`, k group `g`, column `c`, byte `h` at
/// `((b * kg + g) * NR + c) * 4 + h` (zero past `n` and `k`), then the corrections
/// `-128 * sum_k W[j][k]` of every block's 16 columns (zero past `n`), as int32 bytes.
pub fn pack_i8(w: &[i8], n: usize, k: usize) -> Vec<i8> {
    let kg = k.div_ceil(4);
    let nb = n.div_ceil(NR);
    let wbytes = weight_bytes(n, k);
    let mut out = vec![0i8; wbytes + nb * NR * 4];
    for j in 0..n {
        let (b, c) = (j / NR, j % NR);
        let row = &w[j * k..j * k + k];
        for (kk, &v) in row.iter().enumerate() {
            out[((b * kg + kk / 4) * NR + c) * 4 + kk % 4] = v;
        }
        let sum = row.iter().map(|&v| v as i32).sum::<i32>();
        for (o, byte) in out[wbytes + j * 4..wbytes + j * 4 + 4]
            .iter_mut()
            .zip(sum.wrapping_mul(-128).to_le_bytes())
        {
            *o = byte as i8;
        }
    }
    out
}

/// Whether [`gemm_requant_i8`] leaves `acc` alone for this `k` (one panel chunk).
pub fn gemm_requant_in_tile(k: usize) -> bool {
    k > 0 && k.div_ceil(4) <= KGC
}

fn check_packed(packed: &[i8], n: usize, k: usize) {
    assert!(
        packed.len() >= weight_bytes(n, k) + n.div_ceil(NR) * NR * 4,
        "gemm_i8 (avx512): packed weights too short"
    );
}

/// `acc[i][j] = sum_kk a[i][kk] * W[j][kk]` (wrapping int32) for the `a.rows` rows of `a`
/// (`k = a.cols`) and the `n = acc.cols` columns.
pub fn gemm_i8(packed: &[i8], a: Mat<'_, i8>, acc: MatMut<'_, i32>) {
    let (n, k) = (acc.cols, a.cols);
    let (m, lda, ldacc) = (a.rows, a.stride, acc.stride);
    check_packed(packed, n, k);
    assert!(m == 0 || (lda >= k && a.data.len() >= (m - 1) * lda + k));
    assert!(m == 0 || (acc.rows == m && ldacc >= n && acc.data.len() >= (m - 1) * ldacc + n));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            acc.data[i * ldacc..i * ldacc + n].fill(0);
        }
        return;
    }
    // SAFETY: the dispatcher only selects this path after checking AVX-512 F, BW, DQ, VL
    // and VNNI (and AVX2, FMA) at run time; the slice lengths were checked above.
    unsafe { gemm(packed, a.data, acc.data, Shape::new(&a, n, ldacc), None) }
}

/// [`gemm_i8`] then the requantization of `rq` into `out` (`m x n`), bit-exact with the two
/// calls, requantized in the register tile. `acc` (at least `m * n` values) is only used
/// when `k` spans more than one panel chunk; it may be empty otherwise.
pub fn gemm_requant_i8(
    packed: &[i8],
    a: Mat<'_, i8>,
    rq: &RequantCols<'_>,
    acc: &mut [i32],
    out: MatMut<'_, i8>,
) {
    let (n, k) = (out.cols, a.cols);
    check_packed(packed, n, k);
    let in_tile = gemm_requant_in_tile(k);
    let Some(fuse) = Fuse::new(requant_i8, a, rq, acc, in_tile, out) else {
        return;
    };
    // The partial sums in `acc` (when used) are dense: row stride n.
    let shape = Shape::new(&a, n, n);
    // SAFETY: as in gemm_i8 (the packed length checked above, the other slices by
    // `Fuse::new`); `out` (through `fuse.out`) holds (m - 1) * ldo + n bytes, `acc` is
    // only touched when k spans several chunks.
    unsafe { gemm(packed, a.data, acc, shape, Some(&fuse)) }
}

/// The requantization epilogue alone (`requant_i8` of the AVX-512 path) of `acc` into `out`
/// (same shape) with [`Rq16`]: each 16-column block's constants once, then its rows; the
/// dispatcher checked the slices.
pub fn requant_i8(acc: Mat<'_, i32>, rq: &RequantCols<'_>, out: MatMut<'_, i8>) {
    let (m, n) = (acc.rows, acc.cols);
    let (ldacc, ldo) = (acc.stride, out.stride);
    assert!(rq.bias.len() >= n && rq.multipliers.len() >= n && rq.shifts.len() >= n);
    assert!(m == 0 || (ldacc >= n && acc.data.len() >= (m - 1) * ldacc + n));
    assert!(
        m == 0
            || (out.rows == m && out.cols == n && ldo >= n && out.data.len() >= (m - 1) * ldo + n)
    );
    let f = Fuse::epilogue(rq, out);
    // SAFETY: the dispatcher only selects this path after checking the CPU's AVX-512
    // features; the slice lengths were checked above.
    unsafe { requant_blocks(&f, acc.data, m, n, ldacc) }
}

/// # Safety
/// AVX-512 F, BW, DQ, VL and VNNI are available; `acc` holds `(m - 1) * ldacc + n` values
/// and `f.out` `(m - 1) * f.ldo + n` bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
unsafe fn requant_blocks(f: &Fuse<'_>, acc: &[i32], m: usize, n: usize, ldacc: usize) {
    let mut j = 0;
    while j < n {
        let cols = (n - j).min(NR);
        let lanes: __mmask16 = if cols == NR { !0 } else { (1u16 << cols) - 1 };
        let q = Rq16::new(f, j, cols);
        for i in 0..m {
            // SAFETY: the `cols` values and bytes of row i from column j lie inside acc and
            // out (the caller's lengths).
            unsafe {
                let v = _mm512_maskz_loadu_epi32(lanes, acc.as_ptr().add(i * ldacc + j));
                _mm_mask_storeu_epi8(f.out.add(i * f.ldo + j), lanes, q.row(v));
            }
        }
        j += NR;
    }
}

/// Rows of the tile variant for the last `rows` (< MR) rows of a panel block.
fn tail_rows(rows: usize) -> usize {
    match rows {
        5.. => 8,
        3 | 4 => 4,
        r => r,
    }
}

/// The GEMM of `a` by the packed weights into `acc`, of shape `s`, or, with `fuse`,
/// requantized into `fuse.out` (then `acc` holds the partial sums of the earlier panel chunks,
/// and is only touched when there are several).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
fn gemm(packed: &[i8], a: &[i8], acc: &mut [i32], s: Shape, fuse: Option<&Fuse<'_>>) {
    let Shape {
        m,
        n,
        k,
        lda,
        ldacc,
    } = s;
    let kg = k.div_ceil(4);
    let nb = n.div_ceil(NR);
    let wbase = packed.as_ptr();
    let corr = packed.as_ptr().wrapping_add(weight_bytes(n, k)) as *const i32;
    // Panel of up to MC rows x 4*KGC bytes (activations + 128), row stride 4*pc. Left
    // uninitialised: every byte a tile reads is written first (below).
    let mut panel = [MaybeUninit::<u8>::uninit(); MC * KGC * 4];
    let pp = panel.as_mut_ptr() as *mut u8;
    let flip = _mm512_set1_epi8(-128);
    let mut r0 = 0;
    while r0 < m {
        let rows_blk = (m - r0).min(MC);
        let prows = rows_blk / MR * MR + tail_rows(rows_blk % MR);
        let mut g0 = 0;
        while g0 < kg {
            let pc = (kg - g0).min(KGC);
            let k0 = 4 * g0;
            let k1 = (4 * (g0 + pc)).min(k);
            let len = k1 - k0;
            for r in 0..prows {
                // SAFETY: r < prows <= MC and 4*pc <= 4*KGC: the row lies inside the
                // panel. Loads and stores are masked to the `len` bytes of the source
                // row (inside `a`: (r0 + r) * lda + k1 <= (m - 1) * lda + k) and the
                // 4*pc bytes of the panel row.
                unsafe {
                    let dst = pp.add(r * pc * 4);
                    let mut t = 0;
                    if r < rows_blk {
                        let src = a.as_ptr().add((r0 + r) * lda + k0);
                        while t + 64 <= len {
                            let v = _mm512_loadu_si512(src.add(t) as *const _);
                            _mm512_storeu_si512(dst.add(t) as *mut _, _mm512_xor_si512(v, flip));
                            t += 64;
                        }
                        if t < len {
                            let mask = u64::MAX >> (64 - (len - t));
                            let v = _mm512_maskz_loadu_epi8(mask, src.add(t));
                            _mm512_mask_storeu_epi8(
                                dst.add(t) as *mut i8,
                                mask,
                                _mm512_xor_si512(v, flip),
                            );
                            t = len;
                        }
                    }
                    // The k tail of the last group and the rows past m: any bytes do
                    // (their weights, or their outputs, are never used); zero them.
                    while t < 4 * pc {
                        let rest = (4 * pc - t).min(64);
                        let mask = u64::MAX >> (64 - rest);
                        _mm512_mask_storeu_epi8(
                            dst.add(t) as *mut i8,
                            mask,
                            _mm512_setzero_si512(),
                        );
                        t += rest;
                    }
                }
            }
            let first = g0 == 0;
            let fused = if g0 + pc == kg { fuse } else { None };
            let mut b = 0;
            while b < nb {
                let nblk = if b + 1 < nb { 2 } else { 1 };
                let j = b * NR;
                let cols = (n - j).min(nblk * NR);
                let rq = fused.map(|f| {
                    [
                        Rq16::new(f, j, cols.min(NR)),
                        Rq16::new(f, j + NR * (nblk - 1), cols - NR * (nblk - 1)),
                    ]
                });
                let mut i = 0;
                while i < rows_blk {
                    let rows = (rows_blk - i).min(MR);
                    let i0 = r0 + i;
                    // SAFETY: the tile's panel rows i.. (R <= prows - i of them) hold pc
                    // initialised groups; the weight blocks b and b + nblk - 1 hold kg
                    // groups each (checked by the caller), from group g0; the column
                    // corrections of those blocks follow the weights. The tile touches
                    // rows < rows and columns < cols from (i0, j) of acc (when !first or
                    // not fused; inside acc's checked length) or of `out` (when fused;
                    // inside out's checked length). `wrapping_add`: acc may be empty.
                    unsafe {
                        let t = Tile {
                            panel: pp.add(i * pc * 4),
                            pc,
                            w: [
                                wbase.add((b * kg + g0) * NR * 4),
                                wbase.add(((b + nblk - 1) * kg + g0) * NR * 4),
                            ],
                            corr: first.then(|| corr.add(j)),
                            acc: acc.as_mut_ptr().wrapping_add(i0 * ldacc + j),
                            ldacc,
                            rows,
                            cols,
                            rq: rq
                                .as_ref()
                                .zip(fused)
                                .map(|(q, f)| (q, f.out.add(i0 * f.ldo + j))),
                        };
                        // The common case: one chunk, requantized with right shifts only.
                        let fast = first && fused.is_some_and(|f| !f.left && !f.sat);
                        match (tail_rows(rows), nblk, fast) {
                            (8, 2, true) => tile::<8, 2, true>(&t),
                            (8, _, true) => tile::<8, 1, true>(&t),
                            (4, 2, true) => tile::<4, 2, true>(&t),
                            (4, _, true) => tile::<4, 1, true>(&t),
                            (2, 2, true) => tile::<2, 2, true>(&t),
                            (2, _, true) => tile::<2, 1, true>(&t),
                            (_, 2, true) => tile::<1, 2, true>(&t),
                            (_, _, true) => tile::<1, 1, true>(&t),
                            (8, 2, false) => tile::<8, 2, false>(&t),
                            (8, _, false) => tile::<8, 1, false>(&t),
                            (4, 2, false) => tile::<4, 2, false>(&t),
                            (4, _, false) => tile::<4, 1, false>(&t),
                            (2, 2, false) => tile::<2, 2, false>(&t),
                            (2, _, false) => tile::<2, 1, false>(&t),
                            (_, 2, false) => tile::<1, 2, false>(&t),
                            (_, _, false) => tile::<1, 1, false>(&t),
                        }
                    }
                    i += MR;
                }
                b += nblk;
            }
            g0 += pc;
        }
        r0 += MC;
    }
}

/// One register tile's operands (see [`tile`]).
struct Tile<'a> {
    /// First panel row; rows `4 * pc` bytes apart.
    panel: *const u8,
    /// k groups in this chunk.
    pc: usize,
    /// The two weight blocks (the same one twice for a single-block tile), at this
    /// chunk's first group.
    w: [*const i8; 2],
    /// The column corrections of the tile's first column, on the first chunk.
    corr: Option<*const i32>,
    /// acc element (i0, j).
    acc: *mut i32,
    ldacc: usize,
    /// Real rows (<= R) and columns (<= 16 * NB).
    rows: usize,
    cols: usize,
    /// The requantizing epilogue of each 16-column block and the output byte (i0, j),
    /// on the last chunk of a fused call.
    rq: Option<(&'a [Rq16; 2], *mut i8)>,
}

/// An R x (16 * NB) tile: the accumulators start at the column corrections (first
/// chunk) or zero, take `pc` groups of VPDPBUSD, then add acc's partial sums (later
/// chunks) and go to acc, or are requantized into the output (last chunk, fused).
/// `FAST`: the first and only chunk of a fused call whose shifts are all right shifts and
/// whose multipliers are not i32::MIN; the bias then joins the corrections at the start.
///
/// # Safety
/// As stated at the call in [`gemm`]; the CPU has AVX-512 F, BW, DQ, VL and VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
unsafe fn tile<const R: usize, const NB: usize, const FAST: bool>(t: &Tile<'_>) {
    // SAFETY: (whole body) the caller's guarantees above.
    unsafe {
        let mut c = [[_mm512_setzero_si512(); NB]; R];
        if let Some(corr) = t.corr {
            for (h, v) in c[0].iter_mut().enumerate() {
                *v = _mm512_loadu_si512(corr.add(h * NR) as *const _);
                if FAST {
                    if let Some((q, _)) = t.rq {
                        *v = _mm512_add_epi32(*v, q[h].bias);
                    }
                }
            }
            for r in 1..R {
                c[r] = c[0];
            }
        }
        let pr = t.panel as *const i32;
        for g in 0..t.pc {
            let mut w = [_mm512_setzero_si512(); NB];
            for (h, v) in w.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(t.w[h].add(g * NR * 4) as *const _);
            }
            for (r, cr) in c.iter_mut().enumerate() {
                let x = _mm512_set1_epi32(pr.add(r * t.pc + g).read_unaligned());
                for (v, wv) in cr.iter_mut().zip(&w) {
                    *v = _mm512_dpbusd_epi32(*v, x, *wv);
                }
            }
        }
        if FAST {
            let Some((q, out)) = t.rq else { return };
            if t.rows == R && t.cols == NB * NR {
                // A whole tile: every row and block stored with one 16-byte store; block
                // by block, so that its constants stay in registers.
                for (h, q) in q.iter().enumerate().take(NB) {
                    // Only the shortcut's constants in registers; the integer fallback
                    // reads the rest from `q`.
                    let f = q.sc;
                    for (r, cr) in c.iter().enumerate() {
                        let o = out.add(r * f.ldo + h * NR);
                        let v = q.mul_with::<false, false>(&f, cr[h]);
                        _mm_storeu_si128(o as *mut __m128i, f.narrow(v));
                    }
                }
            } else {
                for (r, cr) in c.iter().enumerate().take(t.rows) {
                    for (h, &v) in cr.iter().enumerate() {
                        let cols = t.cols.saturating_sub(h * NR).min(NR);
                        let lanes: __mmask16 = if cols == NR { !0 } else { (1u16 << cols) - 1 };
                        let o = out.add(r * q[h].sc.ldo + h * NR);
                        _mm_mask_storeu_epi8(o, lanes, q[h].rq::<false, false, false>(v));
                    }
                }
            }
            return;
        }
        for (r, cr) in c.iter().enumerate().take(t.rows) {
            let dst = t.acc.add(r * t.ldacc);
            for (h, &v) in cr.iter().enumerate() {
                let lo = h * NR;
                let cols = t.cols.saturating_sub(lo).min(NR);
                let lanes: __mmask16 = if cols == NR { !0 } else { (1u16 << cols) - 1 };
                let mut v = v;
                if t.corr.is_none() {
                    v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(lanes, dst.add(lo)));
                }
                if let Some((q, out)) = t.rq {
                    let o = out.add(r * q[h].sc.ldo + lo);
                    _mm_mask_storeu_epi8(o, lanes, q[h].row(v));
                } else {
                    _mm512_mask_storeu_epi32(dst.add(lo), lanes, v);
                }
            }
        }
    }
}

/// The requantizing epilogue's constants of one 16-column block (see [`Rq16::row`]).
///
/// # The f32 shortcut
/// With right shifts only (`e = -shift >= 1`) and a multiplier `M >= 0`,
/// `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, M), e)` is
/// `floor(r + 1/2 + 2^-(e+1))` for `x >= 0` and `floor(r + 1/2 - 2^-(e+1))` for `x < 0`, where
/// `r = x * M / 2^(31+e)` is the exact product (the high multiply rounds half up, the
/// division half away from zero; folding the two floors gives one). [`Rq16::mul`] computes
/// `y = x * s + c` in f32, with `s = M / 2^(31+e)` and `c` that constant plus the output
/// offset and [`EPS`], in one FMA. Where the output lies in the int8 range the error of `y`
/// is below 2^-12 (`x * s` and `c` rounded to 24 bits, `|x * s| < 2^10`); so when every
/// lane's `y` is at least `2 * EPS` above an integer, `floor(y)` is the exact result, and
/// where the output saturates the error cannot cross the range. A vector with a lane closer
/// to an integer (about one in a hundred) takes the integer arithmetic.
#[derive(Clone, Copy)]
pub(super) struct Rq16 {
    pub(super) bias: __m512i,
    mult: __m512i,
    /// `mult` of the odd lanes, moved to the even positions (for `_mm512_mul_epi32`).
    mult_odd: __m512i,
    /// max(shift, 0).
    left: __m512i,
    /// max(-shift, 0).
    right: __m512i,
    /// (1 << right) - 1.
    mask: __m512i,
    /// mask >> 1.
    half: __m512i,
    off: __m512i,
    /// The f32 shortcut's and the narrowing's constants.
    sc: Shortcut,
    /// Some channel shifts left / some multiplier is i32::MIN.
    has_left: bool,
    sat: bool,
}

/// The constants of [`Rq16`]'s f32 shortcut and narrowing, small enough to stay in
/// registers across a tile's rows.
#[derive(Clone, Copy)]
struct Shortcut {
    /// `s`, and `c` for non-negative and negative sums.
    scale: __m512,
    c_pos: __m512,
    c_neg: __m512,
    lo: __m128i,
    hi: __m128i,
    /// The byte clamp is narrower than [-128, 127] (else the narrowing does it).
    clamp: bool,
    /// Every lane fits the f32 shortcut.
    float: bool,
    /// The output row stride.
    ldo: usize,
}

impl Shortcut {
    /// The f32 shortcut of [`Rq16::mul`] (see [`Rq16`]; only when `float`): the results,
    /// and the lanes too close to a rounding boundary for them to hold (then the integer
    /// arithmetic must redo the vector).
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    fn try_vec(&self, x: __m512i) -> (__m512i, __mmask16) {
        let c = _mm512_mask_blend_ps(_mm512_movepi32_mask(x), self.c_pos, self.c_neg);
        let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(x), self.scale, c);
        // y - floor(y).
        let frac = _mm512_reduce_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(y);
        (
            _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(y),
            _mm512_cmplt_ps_mask(frac, _mm512_set1_ps(2.0 * EPS)),
        )
    }

    /// Saturate 16 results to bytes and clamp them.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    fn narrow(&self, v: __m512i) -> __m128i {
        let bytes = _mm512_cvtsepi32_epi8(v);
        if self.clamp {
            _mm_min_epi8(_mm_max_epi8(bytes, self.lo), self.hi)
        } else {
            bytes
        }
    }
}

/// The f32 shortcut's margin: `y` is offset by it, and a lane whose offset `y` lies less
/// than `2 * EPS` above an integer sends its vector to the integer arithmetic.
const EPS: f32 = 1.0 / 2048.0;

impl Rq16 {
    /// The constants of the block of `cols` (1..=16) columns starting at column `j`;
    /// lanes past `cols` get bias, multiplier and shift 0 (finite results, never stored).
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    fn new(f: &Fuse<'_>, j: usize, cols: usize) -> Rq16 {
        let lanes: __mmask16 = if cols >= NR { !0 } else { (1u16 << cols) - 1 };
        let ld = |s: &[i32]| {
            assert!(j + cols <= s.len());
            // SAFETY: the masked load reads the `cols` values s[j..j + cols] only.
            unsafe { _mm512_maskz_loadu_epi32(lanes, s.as_ptr().add(j)) }
        };
        let mut q = Rq16::from_lanes(ld(f.bias), ld(f.mult), ld(f.shift), f.off, f.left, f.sat);
        q.sc.lo = _mm_set1_epi8(f.lo as i8);
        q.sc.hi = _mm_set1_epi8(f.hi as i8);
        q.sc.clamp = (f.lo, f.hi) != (-128, 127);
        q.sc.ldo = f.ldo;
        q
    }

    /// The constants of 16 lanes with these biases, multipliers and shifts, the output
    /// offset `off`, and whether some shift is positive / some multiplier is i32::MIN;
    /// the byte clamp is the whole int8 range and `ldo` is 0 (set them for [`Rq16::row`]).
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    pub(super) fn from_lanes(
        bias: __m512i,
        mult: __m512i,
        shift: __m512i,
        off: i32,
        has_left: bool,
        sat: bool,
    ) -> Rq16 {
        let zero = _mm512_setzero_si512();
        let one = _mm512_set1_epi32(1);
        let right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
        let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
        // The f32 shortcut: lanes with 1 <= e <= 30 and M >= 0, or M == 0 (then y = c with
        // no rounding term: the result is the offset), an offset of at most 256.
        let mult0 = _mm512_cmpeq_epi32_mask(mult, zero);
        let ranged = _mm512_cmpge_epi32_mask(right, one)
            & _mm512_cmple_epi32_mask(right, _mm512_set1_epi32(30))
            & _mm512_cmpge_epi32_mask(mult, zero);
        let float = !has_left && !sat && (-256..=256).contains(&off) && (ranged | mult0) == !0;
        // 2^-(31+e) and 2^-(e+1) from their exponent bits (e <= 30 where used).
        let pow2 = |neg_exp: __m512i| {
            _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_sub_epi32(
                _mm512_set1_epi32(127),
                neg_exp,
            )))
        };
        let e = _mm512_min_epi32(right, _mm512_set1_epi32(30));
        let scale = _mm512_mul_ps(
            _mm512_cvtepi32_ps(mult),
            pow2(_mm512_add_epi32(e, _mm512_set1_epi32(31))),
        );
        let d = _mm512_maskz_mov_ps(!mult0, pow2(_mm512_add_epi32(e, one)));
        let c = _mm512_set1_ps(0.5 + off as f32 + EPS);
        Rq16 {
            bias,
            mult,
            mult_odd: _mm512_srli_epi64::<32>(mult),
            left: _mm512_max_epi32(shift, zero),
            right,
            mask,
            half: _mm512_srli_epi32::<1>(mask),
            off: _mm512_set1_epi32(off),
            sc: Shortcut {
                scale,
                c_pos: _mm512_add_ps(c, d),
                c_neg: _mm512_sub_ps(c, d),
                lo: _mm_set1_epi8(i8::MIN),
                hi: _mm_set1_epi8(i8::MAX),
                clamp: false,
                float,
                ldo: 0,
            },
            has_left,
            sat,
        }
    }

    /// Requantize 16 int32 sums to 16 bytes in column order.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    fn row(&self, v: __m512i) -> __m128i {
        match (self.has_left, self.sat) {
            (false, false) => self.rq::<false, false, true>(v),
            (true, false) => self.rq::<true, false, true>(v),
            (false, true) => self.rq::<false, true, true>(v),
            (true, true) => self.rq::<true, true, true>(v),
        }
    }

    /// `x + bias` (only if `BIAS`), [`Rq16::mul`], a saturating narrowing to bytes and
    /// the clamp.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    fn rq<const LEFT: bool, const SAT: bool, const BIAS: bool>(&self, x: __m512i) -> __m128i {
        let x = if BIAS {
            _mm512_add_epi32(x, self.bias)
        } else {
            x
        };
        self.sc.narrow(self.mul::<LEFT, SAT>(x))
    }

    /// MultiplyByQuantizedMultiplier of sums that already hold the bias (as `rq8` in the
    /// AVX2 kernels: left shift only if `LEFT`, the MIN * MIN saturation only if `SAT`) and
    /// the output offset, in wrapping int32 (no clamp). Through the f32 shortcut (see the
    /// type) when it applies: then a result outside [-256, 256] may differ from the integer
    /// one, but lies on the same side of the int8 range, as the callers' saturating
    /// narrowing needs.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    pub(super) fn mul<const LEFT: bool, const SAT: bool>(&self, x: __m512i) -> __m512i {
        self.mul_with::<LEFT, SAT>(&self.sc, x)
    }

    /// [`Rq16::mul`] with the shortcut's constants `sc` (`self.sc`, held in registers by
    /// the caller).
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    fn mul_with<const LEFT: bool, const SAT: bool>(&self, sc: &Shortcut, x: __m512i) -> __m512i {
        if !LEFT && !SAT && sc.float {
            // The f32 shortcut (see the type's documentation).
            if let (v, 0) = sc.try_vec(x) {
                return v;
            }
        }
        self.exact::<LEFT, SAT>(x)
    }

    /// [`Rq16::mul`] in integer arithmetic.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
    #[inline]
    fn exact<const LEFT: bool, const SAT: bool>(&self, x: __m512i) -> __m512i {
        let x = if LEFT {
            _mm512_sllv_epi32(x, self.left)
        } else {
            x
        };
        let nudge = _mm512_set1_epi64(1 << 30);
        let even = _mm512_add_epi64(_mm512_mul_epi32(x, self.mult), nudge);
        let odd = _mm512_add_epi64(
            _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), self.mult_odd),
            nudge,
        );
        let mut v = _mm512_mask_blend_epi32(
            0xAAAA,
            _mm512_srli_epi64::<31>(even),
            _mm512_slli_epi64::<1>(odd),
        );
        if SAT {
            let min = _mm512_set1_epi32(i32::MIN);
            let sat = _mm512_cmpeq_epi32_mask(x, min) & _mm512_cmpeq_epi32_mask(self.mult, min);
            v = _mm512_mask_mov_epi32(v, sat, _mm512_set1_epi32(i32::MAX));
        }
        // RoundingDivideByPOT(v, right): (v >> right) + (rem > half + (v < 0)).
        let rem = _mm512_and_si512(v, self.mask);
        let thr = _mm512_sub_epi32(self.half, _mm512_srai_epi32::<31>(v));
        let up = _mm512_cmpgt_epi32_mask(rem, thr);
        let q = _mm512_srav_epi32(v, self.right);
        let q = _mm512_mask_add_epi32(q, up, q, _mm512_set1_epi32(1));
        _mm512_add_epi32(q, self.off)
    }
}
