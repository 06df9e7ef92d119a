//! int8 GEMM `acc[i][j] = sum_k a[i][k] * W[j][k]` (wrapping i32, no offsets) on the three
//! aarch64 paths, with weights packed once by [`pack_i8`].
//!
//! Packed buffer: a 16-byte header (byte 0: path tag, byte 1: 1 if some weight is -128, bytes
//! 4..8 and 8..12: n and k as little-endian u32), then
//! `ceil(n / NR)` column blocks of `kp = round_up(k, 16)` k-values each, zero padded. K is walked
//! in 16-byte chunks. The last partial chunk of an `a` row is read in place when 16 bytes from
//! its start are inside `a` (the bytes past `k` meet zero weights); only where that would run
//! past the end of `a` is it copied into a zero-padded stack buffer, so `a` is never read out
//! of bounds. Rows are tiled 8/4/2/1 (i8mm: pairs).
//!
//! - Neon (ARMv8.0, NR = 4): per (row, column) an int32x4 accumulator; 16 k per step: SMULL +
//!   SMLAL2 into int16x8 then SADALP. Two products in one i16 lane overflow only for
//!   (-128)·(-128) twice, so SMLAL2 is used only when no weight is -128 (checked when packing;
//!   TFLite int8 weights are in [-127, 127]); otherwise SMULL/SMULL2 each feed their own SADALP.
//!   Block layout per chunk: 4 columns x 16 bytes.
//! - Dotprod (NR = 8): SDOT by element, `acc[r][q] += W(4 cols x 4 k) · a[r](4 k)`.
//!   Block layout per chunk: 4 k-groups x 8 columns x 4 bytes.
//! - I8mm (NR = 8): SMMLA on 2 rows x 8 k by 8 k x 2 columns. Block layout per chunk: 2 k-halves
//!   x 4 column pairs x (8 bytes col 2p, 8 bytes col 2p+1).

use std::arch::aarch64::*;
use std::arch::asm;

use super::requant::{requant_kinds, rounding_shift};
use crate::engine::kernels::{KernelPath, Mat, MatMut, RequantCols};

pub(crate) const HEADER: usize = 16;

fn tag(path: KernelPath) -> i8 {
    match path {
        KernelPath::Neon => 1,
        KernelPath::Dotprod => 2,
        KernelPath::I8mm => 3,
        other => panic!("aarch64::pack_i8/gemm_i8 called with kernel path {other}"),
    }
}

/// Columns per packed block for `path`.
fn nr(path: KernelPath) -> usize {
    match path {
        KernelPath::Neon => 4,
        _ => 8,
    }
}

fn round_up(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// Length of the packed buffer for `path`, `n` columns and depth `k`.
pub fn packed_len_i8(path: KernelPath, n: usize, k: usize) -> usize {
    HEADER + round_up(n, nr(path)) * round_up(k, 16)
}

/// Pack int8 W (`n` rows x `k`, row-major) for `path` (see the module docs for the layout).
pub fn pack_i8(path: KernelPath, w: &[i8], n: usize, k: usize) -> Vec<i8> {
    assert!(
        w.len() >= n * k,
        "pack_i8: weights have {} values, need {n}x{k}",
        w.len()
    );
    let t = tag(path);
    let kp = round_up(k, 16);
    let chunks = kp / 16;
    let mut out = vec![0i8; packed_len_i8(path, n, k)];
    out[0] = t;
    out[1] = i8::from(w[..n * k].contains(&i8::MIN));
    for (dst, src) in out[4..12].iter_mut().zip(
        (n as u32)
            .to_le_bytes()
            .into_iter()
            .chain((k as u32).to_le_bytes()),
    ) {
        *dst = src as i8;
    }
    let at = |j: usize, kk: usize| if j < n && kk < k { w[j * k + kk] } else { 0 };
    let body = &mut out[HEADER..];
    let nb = round_up(n, nr(path)) / nr(path);
    for jb in 0..nb {
        for kc in 0..chunks {
            let blk = &mut body[(jb * chunks + kc) * nr(path) * 16..][..nr(path) * 16];
            match path {
                KernelPath::Neon => {
                    for jj in 0..4 {
                        for b in 0..16 {
                            blk[jj * 16 + b] = at(jb * 4 + jj, kc * 16 + b);
                        }
                    }
                }
                KernelPath::Dotprod => {
                    for g in 0..4 {
                        for jj in 0..8 {
                            for b in 0..4 {
                                blk[g * 32 + jj * 4 + b] = at(jb * 8 + jj, kc * 16 + g * 4 + b);
                            }
                        }
                    }
                }
                _ => {
                    for h in 0..2 {
                        for p in 0..4 {
                            for (c, col) in
                                [jb * 8 + 2 * p, jb * 8 + 2 * p + 1].into_iter().enumerate()
                            {
                                for b in 0..8 {
                                    blk[h * 64 + p * 16 + c * 8 + b] = at(col, kc * 16 + h * 8 + b);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Shared arguments of one GEMM call, validated by [`gemm_i8`].
#[derive(Clone, Copy)]
struct Args {
    /// First packed block (after the header).
    w: *const i8,
    n: usize,
    k: usize,
    a: *const i8,
    /// Readable bytes from `a`.
    a_len: usize,
    m: usize,
    lda: usize,
    acc: *mut i32,
    ldacc: usize,
    /// Fused requantization (`gemm_requant_i8`); unused by `gemm_i8`.
    rq: Fused,
}

/// Output and per-column parameters of the fused requantization epilogue.
#[derive(Clone, Copy)]
struct Fused {
    out: *mut i8,
    ldo: usize,
    bias: *const i32,
    mult: *const i32,
    shift: *const i32,
    off: i32,
    lo: i8,
    hi: i8,
}

impl Fused {
    const NONE: Fused = Fused {
        out: std::ptr::null_mut(),
        ldo: 0,
        bias: std::ptr::null(),
        mult: std::ptr::null(),
        shift: std::ptr::null(),
        off: 0,
        lo: 0,
        hi: 0,
    };
}

impl Args {
    /// Number of full 16-byte chunks readable directly from `a` rows, and the tail length.
    fn chunks(&self) -> (usize, usize) {
        (self.k / 16, self.k % 16)
    }

    /// Row pointers of the tile starting at `i0` (rows past `m` repeat row `m - 1`, never stored)
    /// and, per row, where its last partial chunk is read from: the row itself when 16 bytes
    /// from the chunk's start are still inside `a` (the bytes past `k` meet zero-padded
    /// weights, so they add nothing), else a zero-padded copy in `tails`.
    ///
    /// # Safety
    /// `self` was validated by `gemm_i8` (every row `i < m` has `k` readable bytes at `a + i*lda`,
    /// and `a_len` bytes are readable from `a`).
    #[inline]
    unsafe fn rows<const MR: usize>(
        &self,
        i0: usize,
        tails: &mut [[i8; 16]; MR],
    ) -> ([*const i8; MR], [*const i8; MR]) {
        let (full, tail) = self.chunks();
        // Usual case: every row of the tile is < m and the last one's partial chunk (so every
        // row's) is read in place; rows are `lda` apart.
        let last = i0 + MR - 1;
        if last < self.m && (tail == 0 || last * self.lda + full * 16 + 16 <= self.a_len) {
            // SAFETY: rows i0..=last < m start inside `a` (validated by gemm_i8), and their
            // chunk `full` starts within 16 bytes of the row's end or inside `a_len` (checked).
            unsafe {
                let p0 = self.a.add(i0 * self.lda);
                let ptrs: [*const i8; MR] = std::array::from_fn(|r| p0.add(r * self.lda));
                return (ptrs, ptrs.map(|p| p.wrapping_add(full * 16)));
            }
        }
        let mut ptrs = [self.a; MR];
        let mut tailp = [self.a; MR];
        for r in 0..MR {
            let i = (i0 + r).min(self.m - 1);
            // SAFETY: i < m, so a + i*lda is inside `a` (validated by gemm_i8).
            ptrs[r] = unsafe { self.a.add(i * self.lda) };
            if tail > 0 {
                let start = i * self.lda + full * 16;
                if start + 16 <= self.a_len {
                    // SAFETY: start + 16 <= a_len: 16 readable bytes.
                    tailp[r] = unsafe { self.a.add(start) };
                } else {
                    // SAFETY: bytes [full*16, k) of row i are inside the row (k readable bytes).
                    let src = unsafe { std::slice::from_raw_parts(ptrs[r].add(full * 16), tail) };
                    tails[r] = [0; 16];
                    tails[r][..tail].copy_from_slice(src);
                    tailp[r] = tails[r].as_ptr();
                }
            }
        }
        (ptrs, tailp)
    }

    /// Store row `i` (if `i < m`) of a block of NR=4·V columns starting at column `j0`.
    ///
    /// # Safety
    /// `self` validated by gemm_i8 (acc holds rows i < m of `n` values at stride ldacc).
    #[inline(always)]
    unsafe fn store<const V: usize>(&self, i: usize, j0: usize, v: [int32x4_t; V]) {
        if i >= self.m {
            return;
        }
        let cols = (self.n - j0).min(4 * V);
        // SAFETY: i < m and j0 + cols <= n, so every written element is inside acc.
        unsafe {
            let dst = self.acc.add(i * self.ldacc + j0);
            if cols == 4 * V {
                for (q, x) in v.iter().enumerate() {
                    vst1q_s32(dst.add(4 * q), *x);
                }
            } else {
                let mut tmp = [0i32; 16];
                for (q, x) in v.iter().enumerate() {
                    vst1q_s32(tmp.as_mut_ptr().add(4 * q), *x);
                }
                // Element by element, volatile so that it stays a loop: a `memcpy` call here
                // made the compiler spill every accumulator of the tile around the epilogue.
                for (q, &t) in tmp.iter().enumerate().take(cols) {
                    dst.add(q).write_volatile(t);
                }
            }
        }
    }
}

/// `acc[i][j] = sum_kk a[i][kk] * W[j][kk]` (wrapping i32) for the `m = a.rows` rows of `a`
/// (`k = a.cols`) and the `n = acc.cols` columns of `acc` (`m x n`).
pub fn gemm_i8(path: KernelPath, packed: &[i8], a: Mat<'_, i8>, acc: MatMut<'_, i32>) {
    let (m, n, k) = (a.rows, acc.cols, a.cols);
    let (lda, ldacc) = (a.stride, acc.stride);
    assert_eq!(acc.rows, m, "gemm_i8: acc has {} rows, a {m}", acc.rows);
    let (a, acc) = (a.data, acc.data);
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(
        packed.len(),
        packed_len_i8(path, n, k),
        "gemm_i8: packed weights do not match n={n} k={k} on {path}"
    );
    assert_eq!(
        packed[0],
        tag(path),
        "gemm_i8: weights were packed for another path than {path}"
    );
    let dim = |at: usize| u32::from_le_bytes(std::array::from_fn(|b| packed[at + b] as u8));
    assert!(
        dim(4) == n as u32 && dim(8) == k as u32,
        "gemm_i8: weights were packed as {}x{}, called with n={n} k={k}",
        dim(4),
        dim(8)
    );
    assert!(m == 1 || lda >= k, "gemm_i8: lda {lda} < k {k}");
    assert!(a.len() >= (m - 1) * lda + k, "gemm_i8: a too short");
    assert!(ldacc >= n || m == 1, "gemm_i8: ldacc {ldacc} < n {n}");
    assert!(acc.len() >= (m - 1) * ldacc + n, "gemm_i8: acc too short");
    if k == 0 {
        for i in 0..m {
            acc[i * ldacc..i * ldacc + n].fill(0);
        }
        return;
    }
    let args = Args {
        w: packed[HEADER..].as_ptr(),
        n,
        k,
        a: a.as_ptr(),
        a_len: a.len(),
        m,
        lda,
        acc: acc.as_mut_ptr(),
        ldacc,
        rq: Fused::NONE,
    };
    let safe_mlal = packed[1] == 0;
    // SAFETY: arguments validated above; the path's features were detected by the caller
    // (dispatch point) — NEON is mandatory on aarch64.
    unsafe {
        match path {
            KernelPath::Neon => {
                if safe_mlal {
                    rows_neon::<true>(&args)
                } else {
                    rows_neon::<false>(&args)
                }
            }
            KernelPath::Dotprod => rows_sdot::<{ Fuse::NONE }>(&args),
            _ => rows_smmla(&args),
        }
    }
}

/// Validate the arguments of a fused GEMM + requantization on `path` of `a` (`m x k`) into
/// `out` (`m x n`) and bundle them.
fn fused_args(
    path: KernelPath,
    packed: &[i8],
    a: Mat<'_, i8>,
    rq: &RequantCols<'_>,
    out: MatMut<'_, i8>,
) -> Args {
    let (m, n, k) = (a.rows, out.cols, a.cols);
    let (lda, ldo) = (a.stride, out.stride);
    let (a, out) = (a.data, out.data);
    let RequantCols {
        bias,
        multipliers,
        shifts,
        output_offset,
        act_min,
        act_max,
    } = *rq;
    assert!(m > 0 && n > 0 && k > 0, "gemm_requant: empty GEMM");
    // The tag and the length (path, n and k) are checked; the dimensions in the header only in
    // debug builds (this runs once per block of rows).
    assert!(
        packed.len() == packed_len_i8(path, n, k) && packed[0] == tag(path),
        "gemm_requant: weights were not packed for {path} with n={n} k={k}"
    );
    let dims = (n as u32)
        .to_le_bytes()
        .into_iter()
        .chain((k as u32).to_le_bytes());
    debug_assert!(
        packed[4..12].iter().map(|&b| b as u8).eq(dims),
        "gemm_requant: weights were packed with other dimensions than n={n} k={k}"
    );
    assert!(
        (m == 1 || lda >= k) && a.len() >= (m - 1) * lda + k,
        "gemm_requant: a too short"
    );
    assert!(
        (m == 1 || ldo >= n) && out.len() >= (m - 1) * ldo + n,
        "gemm_requant: out too short"
    );
    assert!(
        bias.len() >= n && multipliers.len() >= n && shifts.len() >= n,
        "gemm_requant: fewer than {n} channel parameters"
    );
    let sat8 = |v: i32| v.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
    Args {
        w: packed[HEADER..].as_ptr(),
        n,
        k,
        a: a.as_ptr(),
        a_len: a.len(),
        m,
        lda,
        acc: std::ptr::null_mut(),
        ldacc: 0,
        rq: Fused {
            out: out.as_mut_ptr(),
            ldo,
            bias: bias.as_ptr(),
            mult: multipliers.as_ptr(),
            shift: shifts.as_ptr(),
            off: output_offset,
            lo: sat8(act_min),
            hi: sat8(act_max),
        },
    }
}

/// `out[i*ldo + j] = clamp(off + mbqm(sum_kk a[i][kk] * W[j][kk] + bias[j], mult[j], shift[j]))`
/// with the requantization fused into the GEMM register tiles (no int32 round trip through
/// memory), for the leading rows the path's fused kernel covers; returns how many:
///
/// - Neon: the leading `4 * (m / 4)` rows (4x4 tiles), or 0 when a weight is -128,
///   `n % 4 != 0` or a shift is positive;
/// - Dotprod: all `m` rows (SDOT tiles of 8 columns and 8/4/2/1 rows, whose sums start at the
///   bias); any `n`, shifts and weights;
/// - I8mm: 0.
///
/// Also 0 when the weights were packed for another path or there is nothing to do. The caller
/// runs `gemm_i8` + `requant_i8` for the remaining rows; the result is bit-exact with those two
/// calls. `a` is `m x k`, `out` `m x n`. The caller checked that the CPU supports `path`.
pub fn gemm_requant_i8(
    path: KernelPath,
    packed: &[i8],
    a: Mat<'_, i8>,
    rq: &RequantCols<'_>,
    out: MatMut<'_, i8>,
) -> usize {
    let (m, n, k) = (a.rows, out.cols, a.cols);
    // Cheap checks first: this runs once per block of rows of every int8 GEMM.
    let rows = match path {
        KernelPath::Neon if n % 4 == 0 && packed.get(1) == Some(&0) => m / 4 * 4,
        KernelPath::Dotprod => m,
        _ => 0,
    };
    if rows == 0
        || n == 0
        || k == 0
        || rq.shifts.len() < n
        || rq.multipliers.len() < n
        || packed.first() != Some(&tag(path))
    {
        return 0;
    }
    let kinds = requant_kinds(&rq.shifts[..n], &rq.multipliers[..n], rq.output_offset);
    let (left, shifted) = kinds.unwrap_or((true, false));
    if path == KernelPath::Neon && (left || kinds.is_none()) {
        return 0;
    }
    let args = fused_args(path, packed, a, rq, out);
    if path == KernelPath::Dotprod {
        // SAFETY: arguments validated by fused_args (rows < m of `a` and `out`, n channel
        // parameters, weights packed for dotprod); the caller detected dotprod; the mode is
        // what requant_kinds allows.
        unsafe {
            if kinds.is_none() {
                rows_sdot::<{ Fuse::GENERAL }>(&args)
            } else if left {
                rows_sdot::<{ Fuse::LEFT }>(&args)
            } else if shifted {
                rows_sdot::<{ Fuse::SHIFTED }>(&args)
            } else {
                rows_sdot::<{ Fuse::RIGHT }>(&args)
            }
        }
        return rows;
    }
    let mut i0 = 0;
    while i0 < rows {
        // SAFETY: validated above: rows i0..i0+4 <= m of `a` and `out`, n % 4 == 0, the weights
        // were packed for Neon and have no -128 (MLAL), no left shift; NEON is mandatory.
        unsafe {
            if shifted {
                tile_neon::<4, true, { Fuse::SHIFTED }>(&args, i0);
            } else {
                tile_neon::<4, true, { Fuse::RIGHT }>(&args, i0);
            }
        }
        i0 += 4;
    }
    rows
}

/// Epilogue modes of the GEMM tiles (the `FUSE` const parameter).
struct Fuse;

impl Fuse {
    /// Store the int32 sums to `acc` (`gemm_i8`).
    const NONE: u8 = 0;
    /// Requantize into `rq.out`; shifts are <= 0.
    const RIGHT: u8 = 1;
    /// Requantize into `rq.out`; every shift is < 0 (the rounding fix-up mask is all ones, see
    /// `requant::Requant16::finish`).
    const SHIFTED: u8 = 2;
    /// Requantize into `rq.out`; some shift is > 0 (SSHL first).
    const LEFT: u8 = 3;
    /// Requantize into `rq.out`, with any multipliers and output offset (SSHL first, the
    /// fix-up with a saturating add); the modes above need `requant_kinds`' conditions.
    const GENERAL: u8 = 4;
}

/// Requantize a 4x4 tile (`rows[r]` = columns j0..j0+4 of row i0+r) into `rq.out`: the same
/// operations as `requant::Requant16::finish`, with one set of 4 column parameters for all rows.
///
/// # Safety
/// Rows i0..i0+4 and columns j0..j0+4 are inside the output and the parameter arrays.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn requant_tile_4x4<const FUSE: u8>(rq: &Fused, i0: usize, j0: usize, rows: [int32x4_t; 4]) {
    // SAFETY: caller contract.
    unsafe {
        let bias = vld1q_s32(rq.bias.add(j0));
        let mult = vld1q_s32(rq.mult.add(j0));
        let right = vminq_s32(vld1q_s32(rq.shift.add(j0)), vdupq_n_s32(0));
        let off = vdupq_n_s32(rq.off);
        let v: [int32x4_t; 4] = std::array::from_fn(|r| {
            let x = vqrdmulhq_s32(vaddq_s32(rows[r], bias), mult);
            // SHIFTED: every column has a right shift (the fix-up mask is all ones).
            let fixup = if FUSE == Fuse::SHIFTED {
                vshrq_n_s32::<31>(x)
            } else {
                vshrq_n_s32::<31>(vandq_s32(x, right))
            };
            vaddq_s32(vrshlq_s32(vqaddq_s32(x, fixup), right), off)
        });
        let h0 = vqmovn_high_s32(vqmovn_s32(v[0]), v[1]);
        let h1 = vqmovn_high_s32(vqmovn_s32(v[2]), v[3]);
        let b = vqmovn_high_s16(vqmovn_s16(h0), h1);
        let b = vminq_s8(vmaxq_s8(b, vdupq_n_s8(rq.lo)), vdupq_n_s8(rq.hi));
        let w = vreinterpretq_s32_s8(b);
        // Four bytes per row, at any alignment (the output is a byte tensor).
        let row = |r: usize| rq.out.add((i0 + r) * rq.ldo + j0) as *mut i32;
        row(0).write_unaligned(vgetq_lane_s32::<0>(w));
        row(1).write_unaligned(vgetq_lane_s32::<1>(w));
        row(2).write_unaligned(vgetq_lane_s32::<2>(w));
        row(3).write_unaligned(vgetq_lane_s32::<3>(w));
    }
}

// ---------------------------------------------------------------- Neon (SMULL/SMLAL/SADALP)

#[target_feature(enable = "neon")]
unsafe fn rows_neon<const MLAL: bool>(g: &Args) {
    let mut i0 = 0;
    while i0 < g.m {
        let rem = g.m - i0;
        // SAFETY: forwarded contract of gemm_i8.
        unsafe {
            if rem >= 4 {
                tile_neon::<4, MLAL, { Fuse::NONE }>(g, i0);
                i0 += 4;
            } else if rem >= 2 {
                tile_neon::<2, MLAL, { Fuse::NONE }>(g, i0);
                i0 += 2;
            } else {
                tile_neon::<1, MLAL, { Fuse::NONE }>(g, i0);
                i0 += 1;
            }
        }
    }
}

/// `FUSE` ([`Fuse`]): `NONE` stores the int32 sums to `acc`; `RIGHT` and `SHIFTED` requantize
/// them into `g.rq.out` instead; fused tiles are 4x4 with `n % 4 == 0` and no left shifts
/// (checked by `gemm_requant_i8`).
#[target_feature(enable = "neon")]
unsafe fn tile_neon<const MR: usize, const MLAL: bool, const FUSE: u8>(g: &Args, i0: usize) {
    let (full, tail) = g.chunks();
    let chunks = full + usize::from(tail > 0);
    let mut tails = [[0i8; 16]; MR];
    // SAFETY: contract of gemm_i8.
    let (ptrs, tailp) = unsafe { g.rows::<MR>(i0, &mut tails) };
    let nb = g.n.div_ceil(4);
    for jb in 0..nb {
        let mut c = [[vdupq_n_s32(0); 4]; MR];
        // SAFETY: block jb has `chunks` chunks of 64 bytes inside the packed buffer.
        let mut wp = unsafe { g.w.add(jb * chunks * 64) };
        // One chunk: `av` = 16 bytes of each row, `wp` = the chunk's 64 packed bytes.
        let step = |c: &mut [[int32x4_t; 4]; MR], av: &[int8x16_t; MR], wp: *const i8| {
            if MR == 4 && MLAL {
                if let (Ok(c4), Ok(a4)) = (
                    <&mut [[int32x4_t; 4]; 4]>::try_from(&mut c[..]),
                    <&[int8x16_t; 4]>::try_from(&av[..]),
                ) {
                    // SAFETY: wp points to the 64 bytes of the current chunk.
                    unsafe { chunk_mlal_4x4(c4, a4, wp) };
                    return;
                }
            }
            // SAFETY: 64 bytes of the current packed chunk.
            let wv = unsafe {
                [
                    vld1q_s8(wp),
                    vld1q_s8(wp.add(16)),
                    vld1q_s8(wp.add(32)),
                    vld1q_s8(wp.add(48)),
                ]
            };
            for r in 0..MR {
                for j in 0..4 {
                    if MLAL {
                        // At most two products per i16 lane, no weight is -128: no overflow.
                        let p = vmull_s8(vget_low_s8(av[r]), vget_low_s8(wv[j]));
                        let p = vmlal_high_s8(p, av[r], wv[j]);
                        c[r][j] = vpadalq_s16(c[r][j], p);
                    } else {
                        let lo = vmull_s8(vget_low_s8(av[r]), vget_low_s8(wv[j]));
                        let hi = vmull_high_s8(av[r], wv[j]);
                        c[r][j] = vpadalq_s16(c[r][j], lo);
                        c[r][j] = vpadalq_s16(c[r][j], hi);
                    }
                }
            }
        };
        let mut kc0 = 0;
        if MR == 4 && MLAL && full > 0 {
            if let Ok(c4) = <&mut [[int32x4_t; 4]; 4]>::try_from(&mut c[..]) {
                // SAFETY: chunk 0 < full lies inside every row (k bytes).
                let a4: [int8x16_t; 4] = std::array::from_fn(|r| unsafe { vld1q_s8(ptrs[r]) });
                // SAFETY: wp points to the 64 bytes of chunk 0.
                unsafe { chunk_mlal_4x4_first(c4, &a4, wp) };
                // SAFETY: stays within the block (advanced once per chunk).
                wp = unsafe { wp.add(64) };
                kc0 = 1;
            }
        }
        for kc in kc0..full {
            let mut av = [vdupq_n_s8(0); MR];
            for r in 0..MR {
                // SAFETY: chunk kc < full lies inside row r (k bytes).
                av[r] = unsafe { vld1q_s8(ptrs[r].add(kc * 16)) };
            }
            step(&mut c, &av, wp);
            // SAFETY: stays within the block (advanced once per chunk).
            wp = unsafe { wp.add(64) };
        }
        if tail > 0 {
            let mut av = [vdupq_n_s8(0); MR];
            for r in 0..MR {
                // SAFETY: `rows` made every tail pointer 16 readable bytes.
                av[r] = unsafe { vld1q_s8(tailp[r]) };
            }
            step(&mut c, &av, wp);
        }
        if FUSE != Fuse::NONE && MR == 4 {
            let rows: [int32x4_t; 4] = std::array::from_fn(|r| {
                vpaddq_s32(vpaddq_s32(c[r][0], c[r][1]), vpaddq_s32(c[r][2], c[r][3]))
            });
            // SAFETY: contract of gemm_requant_i8 (rows i0..i0+4 < m, columns jb*4..+4 <= n).
            unsafe { requant_tile_4x4::<FUSE>(&g.rq, i0, jb * 4, rows) };
            continue;
        }
        for (r, cr) in c.iter().enumerate() {
            let s01 = vpaddq_s32(cr[0], cr[1]);
            let s23 = vpaddq_s32(cr[2], cr[3]);
            // SAFETY: contract of gemm_i8.
            unsafe { g.store::<1>(i0 + r, jb * 4, [vpaddq_s32(s01, s23)]) };
        }
    }
}

/// One 16-byte k chunk of a 4x4 tile with SMULL + SMLAL2 and a pairwise add into int32
/// (weights have no -128): `$acc` = "sadalp" accumulates into `c` (`$dir` = inout), "saddlp"
/// starts it (`$dir` = out: the first chunk needs no zeroed accumulators).
/// `c[r][j] (+)= pairwise(a[r] * w[j])`, `w[j]` = 16 bytes at `wp + 16 j`.
macro_rules! mlal_4x4 {
    ($acc:literal, $dir:ident, $c:expr, $av:expr, $wp:expr) => {
        asm!(
                "ldp {w0:q}, {w1:q}, [{w}]",
                "ldp {w2:q}, {w3:q}, [{w}, #32]",
                "smull {t0:v}.8h, {a0:v}.8b, {w0:v}.8b",
                "smlal2 {t0:v}.8h, {a0:v}.16b, {w0:v}.16b",
                concat!($acc, " {c00:v}.4s, {t0:v}.8h"),
                "smull {t1:v}.8h, {a0:v}.8b, {w1:v}.8b",
                "smlal2 {t1:v}.8h, {a0:v}.16b, {w1:v}.16b",
                concat!($acc, " {c01:v}.4s, {t1:v}.8h"),
                "smull {t2:v}.8h, {a0:v}.8b, {w2:v}.8b",
                "smlal2 {t2:v}.8h, {a0:v}.16b, {w2:v}.16b",
                concat!($acc, " {c02:v}.4s, {t2:v}.8h"),
                "smull {t3:v}.8h, {a0:v}.8b, {w3:v}.8b",
                "smlal2 {t3:v}.8h, {a0:v}.16b, {w3:v}.16b",
                concat!($acc, " {c03:v}.4s, {t3:v}.8h"),
                "smull {t0:v}.8h, {a1:v}.8b, {w0:v}.8b",
                "smlal2 {t0:v}.8h, {a1:v}.16b, {w0:v}.16b",
                concat!($acc, " {c10:v}.4s, {t0:v}.8h"),
                "smull {t1:v}.8h, {a1:v}.8b, {w1:v}.8b",
                "smlal2 {t1:v}.8h, {a1:v}.16b, {w1:v}.16b",
                concat!($acc, " {c11:v}.4s, {t1:v}.8h"),
                "smull {t2:v}.8h, {a1:v}.8b, {w2:v}.8b",
                "smlal2 {t2:v}.8h, {a1:v}.16b, {w2:v}.16b",
                concat!($acc, " {c12:v}.4s, {t2:v}.8h"),
                "smull {t3:v}.8h, {a1:v}.8b, {w3:v}.8b",
                "smlal2 {t3:v}.8h, {a1:v}.16b, {w3:v}.16b",
                concat!($acc, " {c13:v}.4s, {t3:v}.8h"),
                "smull {t0:v}.8h, {a2:v}.8b, {w0:v}.8b",
                "smlal2 {t0:v}.8h, {a2:v}.16b, {w0:v}.16b",
                concat!($acc, " {c20:v}.4s, {t0:v}.8h"),
                "smull {t1:v}.8h, {a2:v}.8b, {w1:v}.8b",
                "smlal2 {t1:v}.8h, {a2:v}.16b, {w1:v}.16b",
                concat!($acc, " {c21:v}.4s, {t1:v}.8h"),
                "smull {t2:v}.8h, {a2:v}.8b, {w2:v}.8b",
                "smlal2 {t2:v}.8h, {a2:v}.16b, {w2:v}.16b",
                concat!($acc, " {c22:v}.4s, {t2:v}.8h"),
                "smull {t3:v}.8h, {a2:v}.8b, {w3:v}.8b",
                "smlal2 {t3:v}.8h, {a2:v}.16b, {w3:v}.16b",
                concat!($acc, " {c23:v}.4s, {t3:v}.8h"),
                "smull {t0:v}.8h, {a3:v}.8b, {w0:v}.8b",
                "smlal2 {t0:v}.8h, {a3:v}.16b, {w0:v}.16b",
                concat!($acc, " {c30:v}.4s, {t0:v}.8h"),
                "smull {t1:v}.8h, {a3:v}.8b, {w1:v}.8b",
                "smlal2 {t1:v}.8h, {a3:v}.16b, {w1:v}.16b",
                concat!($acc, " {c31:v}.4s, {t1:v}.8h"),
                "smull {t2:v}.8h, {a3:v}.8b, {w2:v}.8b",
                "smlal2 {t2:v}.8h, {a3:v}.16b, {w2:v}.16b",
                concat!($acc, " {c32:v}.4s, {t2:v}.8h"),
                "smull {t3:v}.8h, {a3:v}.8b, {w3:v}.8b",
                "smlal2 {t3:v}.8h, {a3:v}.16b, {w3:v}.16b",
                concat!($acc, " {c33:v}.4s, {t3:v}.8h"),
            w = in(reg) $wp,
            a0 = in(vreg) $av[0],
            a1 = in(vreg) $av[1],
            a2 = in(vreg) $av[2],
            a3 = in(vreg) $av[3],
            c00 = $dir(vreg) $c[0][0],
            c01 = $dir(vreg) $c[0][1],
            c02 = $dir(vreg) $c[0][2],
            c03 = $dir(vreg) $c[0][3],
            c10 = $dir(vreg) $c[1][0],
            c11 = $dir(vreg) $c[1][1],
            c12 = $dir(vreg) $c[1][2],
            c13 = $dir(vreg) $c[1][3],
            c20 = $dir(vreg) $c[2][0],
            c21 = $dir(vreg) $c[2][1],
            c22 = $dir(vreg) $c[2][2],
            c23 = $dir(vreg) $c[2][3],
            c30 = $dir(vreg) $c[3][0],
            c31 = $dir(vreg) $c[3][1],
            c32 = $dir(vreg) $c[3][2],
            c33 = $dir(vreg) $c[3][3],
            w0 = out(vreg) _,
            w1 = out(vreg) _,
            w2 = out(vreg) _,
            w3 = out(vreg) _,
            t0 = out(vreg) _,
            t1 = out(vreg) _,
            t2 = out(vreg) _,
            t3 = out(vreg) _,
            options(pure, readonly, nostack),
        )
    };
}

/// [`mlal_4x4`] accumulating: `c[r][j] += pairwise(a[r] * w[j])`.
///
/// # Safety
/// `wp` points to 64 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn chunk_mlal_4x4(c: &mut [[int32x4_t; 4]; 4], av: &[int8x16_t; 4], wp: *const i8) {
    // SAFETY: reads 64 bytes at wp (caller contract); everything else is registers.
    unsafe { mlal_4x4!("sadalp", inout, c, av, wp) }
}

/// [`mlal_4x4`] starting the sums: `c[r][j] = pairwise(a[r] * w[j])`.
///
/// # Safety
/// `wp` points to 64 readable bytes.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn chunk_mlal_4x4_first(c: &mut [[int32x4_t; 4]; 4], av: &[int8x16_t; 4], wp: *const i8) {
    // SAFETY: reads 64 bytes at wp (caller contract); everything else is registers.
    unsafe { mlal_4x4!("saddlp", out, c, av, wp) }
}

// ---------------------------------------------------------------- Dotprod (SDOT by element)

/// `acc += w (4 columns x 4 bytes) · a.4b[lane]`.
macro_rules! sdot_lane {
    ($acc:expr, $w:expr, $a:expr, $lane:literal) => {
        asm!("sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{l}]",
            acc = inout(vreg) $acc, w = in(vreg) $w, a = in(vreg) $a, l = const $lane,
            options(pure, nomem, nostack))
    };
}

/// `FUSE`: see [`Fuse`]; the requantizing modes need the arguments of `gemm_requant_i8`.
#[target_feature(enable = "neon,dotprod")]
unsafe fn rows_sdot<const FUSE: u8>(g: &Args) {
    let mut i0 = 0;
    while i0 < g.m {
        let rem = g.m - i0;
        // SAFETY: forwarded contract of gemm_i8 / gemm_requant_i8; dotprod detected by the
        // caller. Every tile lies inside rows 0..m.
        unsafe {
            if rem >= 8 {
                tile_sdot::<8, FUSE>(g, i0);
                i0 += 8;
            } else if rem >= 4 {
                tile_sdot::<4, FUSE>(g, i0);
                i0 += 4;
            } else if rem >= 2 {
                tile_sdot::<2, FUSE>(g, i0);
                i0 += 2;
            } else {
                tile_sdot::<1, FUSE>(g, i0);
                i0 += 1;
            }
        }
    }
}

/// Values `j0..j0 + 8` of a per-column parameter array of `n` values; columns past `n` get 0
/// (their results are never stored).
///
/// # Safety
/// `p` points to `n` values, `j0 < n`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load_cols8(p: *const i32, n: usize, j0: usize) -> [int32x4_t; 2] {
    let mut pad = [0i32; 8];
    let p = if j0 + 8 <= n {
        // SAFETY: j0 + 8 <= n: inside the array.
        unsafe { p.add(j0) }
    } else {
        for (j, d) in pad.iter_mut().enumerate().take(n - j0) {
            // SAFETY: j0 + j < n: inside the array.
            *d = unsafe { p.add(j0 + j).read() };
        }
        pad.as_ptr()
    };
    // SAFETY: 8 values readable at `p` (the array or `pad`).
    unsafe { [vld1q_s32(p), vld1q_s32(p.add(4))] }
}

/// [`load_cols8`]; `FULL`: `j0 + 8 <= n`, one load of the 8 values.
///
/// # Safety
/// As [`load_cols8`], and `j0 + 8 <= n` when `FULL`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn cols8<const FULL: bool>(p: *const i32, n: usize, j0: usize) -> [int32x4_t; 2] {
    // SAFETY: caller contract.
    unsafe {
        if FULL {
            let v = vld1q_s32_x2(p.add(j0));
            [v.0, v.1]
        } else {
            load_cols8(p, n, j0)
        }
    }
}

/// Requantization parameters of the 8 columns `j0..j0 + 8` of an SDOT tile.
struct Cols8 {
    mult: [int32x4_t; 2],
    left: [int32x4_t; 2],
    right: [int32x4_t; 2],
}

impl Cols8 {
    /// Columns past `n` get zero parameters (their results are never stored).
    ///
    /// # Safety
    /// `rq` holds `n` columns of parameters (`gemm_requant_i8`), `j0 < n` (`j0 + 8 <= n` when
    /// `FULL`).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn load<const FULL: bool>(rq: &Fused, n: usize, j0: usize) -> Self {
        let zero = vdupq_n_s32(0);
        // SAFETY: caller contract.
        let (mult, sh) = unsafe {
            (
                cols8::<FULL>(rq.mult, n, j0),
                cols8::<FULL>(rq.shift, n, j0),
            )
        };
        Cols8 {
            mult,
            left: sh.map(|x| vmaxq_s32(x, zero)),
            right: sh.map(|x| vminq_s32(x, zero)),
        }
    }

    /// `off + mbqm(x)` of columns `8 * h..8 * h + 4` (bias already added), wrapping like the
    /// scalar; the same operations as `requant::Requant16::finish` for the `FUSE` mode, except
    /// that `SHIFTED` leaves the offset out (it is added in int16 after narrowing).
    #[inline]
    #[target_feature(enable = "neon")]
    fn finish<const FUSE: u8>(&self, x: int32x4_t, h: usize, off: int32x4_t) -> int32x4_t {
        let x = if FUSE == Fuse::LEFT || FUSE == Fuse::GENERAL {
            vshlq_s32(x, self.left[h])
        } else {
            x
        };
        let x = vqrdmulhq_s32(x, self.mult[h]);
        if FUSE == Fuse::GENERAL {
            let fixup = vshrq_n_s32::<31>(vandq_s32(x, self.right[h]));
            return vaddq_s32(vrshlq_s32(vqaddq_s32(x, fixup), self.right[h]), off);
        }
        if FUSE == Fuse::SHIFTED {
            rounding_shift::<true>(x, self.right[h])
        } else {
            vaddq_s32(rounding_shift::<false>(x, self.right[h]), off)
        }
    }
}

/// Store the requantized rows at `d0` and `d0 + ldo` (low and high 8 bytes of `b`), `cols`
/// bytes each (`cols <= 8`; 8 is one store per row); `PAIR = false`: only the row at `d0`
/// (low 8 bytes).
///
/// # Safety
/// `cols` bytes at `d0` (and at `d0 + ldo` when `PAIR`) are writable: inside `out`, rows < m
/// and columns < n (contract of gemm_requant_i8).
#[inline(always)]
unsafe fn store_rows8<const PAIR: bool>(d0: *mut i8, ldo: usize, cols: usize, b: int8x16_t) {
    // SAFETY: caller contract: every written byte is inside `out`.
    unsafe {
        if cols == 8 {
            vst1_s8(d0, vget_low_s8(b));
            if PAIR {
                vst1_s8(d0.add(ldo), vget_high_s8(b));
            }
        } else {
            let mut tmp = [0i8; 16];
            vst1q_s8(tmp.as_mut_ptr(), b);
            // Byte by byte, volatile so that it stays a loop (see `Args::store`).
            for (q, &t) in tmp.iter().enumerate().take(cols) {
                d0.add(q).write_volatile(t);
                if PAIR {
                    d0.add(ldo + q).write_volatile(tmp[8 + q]);
                }
            }
        }
    }
}

/// 64 bytes at `p` in one LD1 of four registers (the compiler splits `vld1q_s8_x4` into two
/// LDPs; one instruction instead of two per 64 weight bytes of the SDOT tile).
///
/// # Safety
/// 64 bytes are readable at `p`.
#[inline(always)]
unsafe fn ld1x4(p: *const i8) -> [int8x16_t; 4] {
    let (a, b, c, d);
    // SAFETY: reads 64 bytes at `p` (caller contract) into the four named registers.
    unsafe {
        asm!("ld1 {{v24.16b, v25.16b, v26.16b, v27.16b}}, [{p}]",
            p = in(reg) p,
            out("v24") a, out("v25") b, out("v26") c, out("v27") d,
            options(pure, readonly, nostack, preserves_flags));
    }
    [a, b, c, d]
}

/// `FUSE`: see [`Fuse`]. `NONE` stores the int32 sums to `acc`; the others start the sums at
/// the bias and requantize them into `g.rq.out` (all `MR` rows are < m: `rows_sdot` tiles
/// never run past the last row). The full 8-column blocks skip the activation clamp when it
/// cannot change a value (`lo`/`hi` at the int8 limits: the saturating narrow already clamps).
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_sdot<const MR: usize, const FUSE: u8>(g: &Args, i0: usize) {
    let mut tails = [[0i8; 16]; MR];
    // SAFETY: contract of gemm_i8.
    let (ptrs, tailp) = unsafe { g.rows::<MR>(i0, &mut tails) };
    let full = g.n / 8;
    let clamp = FUSE != Fuse::NONE && (g.rq.lo > i8::MIN || g.rq.hi < i8::MAX);
    // SAFETY: forwarded contract; blocks jb < n / 8 have 8 columns inside n, the last partial
    // block starts inside n.
    unsafe {
        if clamp {
            for jb in 0..full {
                block_sdot::<MR, FUSE, true, true>(g, i0, jb, &ptrs, &tailp);
            }
        } else {
            for jb in 0..full {
                block_sdot::<MR, FUSE, false, true>(g, i0, jb, &ptrs, &tailp);
            }
        }
        if full * 8 < g.n {
            block_sdot::<MR, FUSE, true, false>(g, i0, full, &ptrs, &tailp);
        }
    }
}

/// One block of 8 columns (`jb`) of the tile of `MR` rows at `i0` (row pointers and tail
/// pointers from `Args::rows`). `FULL`: the 8 columns are inside `n`; `CLAMP`: apply the
/// activation bounds.
///
/// # Safety
/// Contract of [`tile_sdot`]; `FULL` only for `jb < n / 8`, else `jb * 8 < n`.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn block_sdot<const MR: usize, const FUSE: u8, const CLAMP: bool, const FULL: bool>(
    g: &Args,
    i0: usize,
    jb: usize,
    ptrs: &[*const i8; MR],
    tailp: &[*const i8; MR],
) {
    let (full, tail) = g.chunks();
    let chunks = full + usize::from(tail > 0);
    let j0 = jb * 8;
    // The requantized sums start at the bias (wrapping adds: same as adding it last).
    let bias = if FUSE == Fuse::NONE {
        [vdupq_n_s32(0); 2]
    } else {
        // SAFETY: j0 < n (j0 + 8 <= n when FULL); the bias has n values when FUSE != NONE
        // (gemm_requant_i8).
        unsafe { cols8::<FULL>(g.rq.bias, g.n, j0) }
    };
    let mut c = [bias; MR];
    // SAFETY: block jb has `chunks` chunks of 128 bytes inside the packed buffer.
    let mut wp = unsafe { g.w.add(jb * chunks * 128) };
    // One 16-byte k chunk: `av` = 16 bytes of each row, `wp` = the chunk's 128 packed bytes,
    // loaded 64 bytes (two k groups of 8 columns) at a time; `half`: only the first 8 bytes of
    // k (a tail of at most 8: the other weights are zero padding).
    let step = |c: &mut [[int32x4_t; 2]; MR], av: &[int8x16_t; MR], wp: *const i8, half: bool| {
        macro_rules! groups {
            ($at:literal, $g0:literal, $g1:literal) => {{
                // SAFETY: 64 bytes of the current 128-byte chunk.
                let w = unsafe { ld1x4(wp.add($at)) };
                for r in 0..MR {
                    // SAFETY: SDOT only touches registers; dotprod is enabled here.
                    unsafe {
                        sdot_lane!(c[r][0], w[0], av[r], $g0);
                        sdot_lane!(c[r][1], w[1], av[r], $g0);
                    }
                }
                for r in 0..MR {
                    // SAFETY: as above.
                    unsafe {
                        sdot_lane!(c[r][0], w[2], av[r], $g1);
                        sdot_lane!(c[r][1], w[3], av[r], $g1);
                    }
                }
            }};
        }
        groups!(0, 0, 1);
        if !half {
            groups!(64, 2, 3);
        }
    };
    for kc in 0..full {
        // SAFETY: chunk kc < full lies inside row r (k bytes).
        let av: [int8x16_t; MR] =
            std::array::from_fn(|r| unsafe { vld1q_s8(ptrs[r].add(kc * 16)) });
        step(&mut c, &av, wp, false);
        // SAFETY: stays within the block (advanced once per chunk).
        wp = unsafe { wp.add(128) };
    }
    if tail > 0 {
        // SAFETY: `rows` made every tail pointer 16 readable bytes.
        let av: [int8x16_t; MR] = std::array::from_fn(|r| unsafe { vld1q_s8(tailp[r]) });
        step(&mut c, &av, wp, tail <= 8);
    }
    if FUSE == Fuse::NONE {
        for (r, cr) in c.iter().enumerate() {
            // SAFETY: contract of gemm_i8.
            unsafe { g.store::<2>(i0 + r, j0, *cr) };
        }
        return;
    }
    // Loaded after the k loop, so that they do not hold registers during it.
    // SAFETY: j0 < n (j0 + 8 <= n when FULL); the parameters are there when FUSE != NONE.
    let p = unsafe { Cols8::load::<FULL>(&g.rq, g.n, j0) };
    let rq = &g.rq;
    let off = vdupq_n_s32(rq.off);
    let off16 = vdupq_n_s16(rq.off as i16);
    let (lo, hi) = (vdupq_n_s8(rq.lo), vdupq_n_s8(rq.hi));
    // 8 in a full block: constant, so the stores below are one per row.
    let cols = if FULL { 8 } else { (g.n - j0).min(8) };
    // int16 lanes of one row: SQXTN of both halves (saturating); SHIFTED adds the offset
    // here (requant_kinds: it is in [-128, 127], see `requant`).
    let row16 = |cr: &[int32x4_t; 2]| {
        let h = vqmovn_high_s32(
            vqmovn_s32(p.finish::<FUSE>(cr[0], 0, off)),
            p.finish::<FUSE>(cr[1], 1, off),
        );
        if FUSE == Fuse::SHIFTED {
            vqaddq_s16(h, off16)
        } else {
            h
        }
    };
    let clamp = |b: int8x16_t| {
        if CLAMP {
            vminq_s8(vmaxq_s8(b, lo), hi)
        } else {
            b
        }
    };
    // Row i0 + r's column j0, advanced two rows per pair (wrapping: after the last pair it
    // may point past `out`, and is not used).
    let mut o = rq.out.wrapping_add(i0 * rq.ldo + j0);
    // Two rows per int8x16: narrow, then clamp after narrowing (see `Requant16`). Unrolled
    // by hand (constant row indices), so that the sums stay in registers.
    macro_rules! pair {
        ($r:literal) => {
            if $r + 1 < MR {
                let b = clamp(vqmovn_high_s16(
                    vqmovn_s16(row16(&c[$r])),
                    row16(&c[$r + 1]),
                ));
                // SAFETY: rows i0 + r, i0 + r + 1 < m, j0 + cols <= n (contract of the
                // tile); `o` is row i0 + r's column j0.
                unsafe { store_rows8::<true>(o, rq.ldo, cols, b) };
                o = o.wrapping_add(2 * rq.ldo);
            }
        };
    }
    pair!(0);
    pair!(2);
    pair!(4);
    pair!(6);
    if MR % 2 == 1 {
        let b = clamp(vcombine_s8(vqmovn_s16(row16(&c[MR - 1])), vdup_n_s8(0)));
        // SAFETY: row i0 + MR - 1 < m, j0 + cols <= n (contract of the tile); `o` is its
        // column j0.
        unsafe { store_rows8::<false>(o, rq.ldo, cols, b) };
    }
    let _ = o;
}

// ---------------------------------------------------------------- I8mm (SMMLA)

/// `acc (2x2) += a (2 rows x 8) · b (2 columns x 8)^T`.
macro_rules! smmla {
    ($acc:expr, $a:expr, $b:expr) => {
        asm!("smmla {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) $acc, a = in(vreg) $a, b = in(vreg) $b,
            options(pure, nomem, nostack))
    };
}

#[target_feature(enable = "neon,i8mm")]
unsafe fn rows_smmla(g: &Args) {
    let mut i0 = 0;
    while i0 < g.m {
        let rem = g.m - i0;
        // SAFETY: forwarded contract of gemm_i8; i8mm detected by the caller. A last odd row
        // runs as a pair whose second row repeats it (not stored).
        unsafe {
            if rem >= 8 {
                tile_smmla::<4, 8>(g, i0);
                i0 += 8;
            } else if rem >= 4 {
                tile_smmla::<2, 4>(g, i0);
                i0 += 4;
            } else {
                tile_smmla::<1, 2>(g, i0);
                i0 += 2;
            }
        }
    }
}

/// `P` row pairs, `MR = 2 * P` rows.
#[target_feature(enable = "neon,i8mm")]
unsafe fn tile_smmla<const P: usize, const MR: usize>(g: &Args, i0: usize) {
    let (full, tail) = g.chunks();
    let chunks = full + usize::from(tail > 0);
    let mut tails = [[0i8; 16]; MR];
    // SAFETY: contract of gemm_i8.
    let (ptrs, tailp) = unsafe { g.rows::<MR>(i0, &mut tails) };
    let nb = g.n.div_ceil(8);
    for jb in 0..nb {
        let mut c = [[vdupq_n_s32(0); 4]; P];
        // SAFETY: block jb has `chunks` chunks of 128 bytes inside the packed buffer.
        let mut wp = unsafe { g.w.add(jb * chunks * 128) };
        for kc in 0..chunks {
            // Per pair: k 0..8 of both rows, then k 8..16 of both rows.
            let mut lo = [vdupq_n_s8(0); P];
            let mut hi = [vdupq_n_s8(0); P];
            for p in 0..P {
                // SAFETY: chunk kc < full lies inside the rows (k bytes); otherwise the tail
                // pointers of `rows` (16 readable bytes each).
                let (r0, r1) = unsafe {
                    if kc < full {
                        (
                            vld1q_s8(ptrs[2 * p].add(kc * 16)),
                            vld1q_s8(ptrs[2 * p + 1].add(kc * 16)),
                        )
                    } else {
                        (vld1q_s8(tailp[2 * p]), vld1q_s8(tailp[2 * p + 1]))
                    }
                };
                let (r0, r1) = (vreinterpretq_s64_s8(r0), vreinterpretq_s64_s8(r1));
                lo[p] = vreinterpretq_s8_s64(vzip1q_s64(r0, r1));
                hi[p] = vreinterpretq_s8_s64(vzip2q_s64(r0, r1));
            }
            for (h, av) in [lo, hi].iter().enumerate() {
                // SAFETY: 64 bytes of k-half h of the current 128-byte chunk.
                let wv = unsafe {
                    let b = wp.add(h * 64);
                    [
                        vld1q_s8(b),
                        vld1q_s8(b.add(16)),
                        vld1q_s8(b.add(32)),
                        vld1q_s8(b.add(48)),
                    ]
                };
                for p in 0..P {
                    for q in 0..4 {
                        // SAFETY: SMMLA only touches registers; i8mm is enabled here.
                        unsafe { smmla!(c[p][q], av[p], wv[q]) };
                    }
                }
            }
            // SAFETY: stays within the block (advanced once per chunk).
            wp = unsafe { wp.add(128) };
        }
        for (p, cp) in c.iter().enumerate() {
            let s: [int64x2_t; 4] = [
                vreinterpretq_s64_s32(cp[0]),
                vreinterpretq_s64_s32(cp[1]),
                vreinterpretq_s64_s32(cp[2]),
                vreinterpretq_s64_s32(cp[3]),
            ];
            let even = [
                vreinterpretq_s32_s64(vzip1q_s64(s[0], s[1])),
                vreinterpretq_s32_s64(vzip1q_s64(s[2], s[3])),
            ];
            let odd = [
                vreinterpretq_s32_s64(vzip2q_s64(s[0], s[1])),
                vreinterpretq_s32_s64(vzip2q_s64(s[2], s[3])),
            ];
            // SAFETY: contract of gemm_i8 (rows >= m are skipped by store).
            unsafe {
                g.store::<2>(i0 + 2 * p, jb * 8, even);
                g.store::<2>(i0 + 2 * p + 1, jb * 8, odd);
            }
        }
    }
}
