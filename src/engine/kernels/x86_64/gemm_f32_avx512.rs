//! float32 GEMM with AVX-512F: the AVX2 kernel's weight layout (`[16-column block][k][16]`,
//! see [`super::gemm_f32_avx2::pack_f32`]) with register tiles of up to [`MR`] rows by two blocks (32
//! columns, 24 accumulators), each k step one FMA per accumulator against a broadcast
//! activation. Every output is the same FMA chain over k, from zero, then bias and clamp,
//! as in the AVX2 and scalar kernels, so the results are the same bits.

use std::arch::x86_64::*;

use crate::engine::kernels::{Clamp, Mat, MatMut, PackedF32};

/// Columns per packed block (one vector of 16 floats).
const NR: usize = 16;
/// Rows per register tile.
pub(in crate::engine::kernels) const MR: usize = 12;
/// Rows per cache block: each pair of weight blocks is reused by the block's tiles.
const MC: usize = 48;

/// `out[i][j] = clamp(sum_kk a[i][kk] * W[j][kk] + bias[j])`, W packed by
/// [`super::gemm_f32_avx2::pack_f32`] (`p`: `n x k`); the dispatcher checked `a` (`m x k`),
/// `out` (`m x n`) and `bias`.
pub fn gemm_f32(
    p: &PackedF32,
    a: Mat<'_, f32>,
    bias: Option<&[f32]>,
    clamp: Clamp,
    out: MatMut<'_, f32>,
) {
    super::gemm_f32_avx2::check_packed(&p.data, p.n, p.k);
    // SAFETY: AVX-512 F, BW, DQ, VL, VNNI (and AVX2, FMA) checked by the dispatcher, which
    // also checked a, out and bias against m, n, k and the strides; the packed length was
    // checked above.
    unsafe { gemm(&p.data, p.n, p.k, a, bias, clamp, out) }
}

/// `out[i][j] = clamp(sum_kk a[i][kk] * W[j][kk] + bias[j])` with W packed by
/// [`super::gemm_f32_avx2::pack_f32`].
///
/// # Safety
/// The CPU has AVX-512 F, BW, DQ, VL and VNNI, AVX2 and FMA; `packed` holds the blocks of
/// `n x k` weights, `a` (`m x k`), `out` (`m x n`) and `bias` were checked against `m`, `n`
/// and `k` (as `kernels::gemm_f32` does).
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
unsafe fn gemm(
    packed: &[f32],
    n: usize,
    k: usize,
    a: Mat<'_, f32>,
    bias: Option<&[f32]>,
    clamp: Clamp,
    out: MatMut<'_, f32>,
) {
    let (a, m, lda) = (a.data, a.rows, a.stride);
    let (out, ldo) = (out.data, out.stride);
    let clamp = (clamp.min, clamp.max);
    let nb = n.div_ceil(NR);
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + MC).min(m);
        let mut b = 0;
        while b < nb {
            let nblk = if b + 1 < nb { 2 } else { 1 };
            let j = b * NR;
            let cols = (n - j).min(nblk * NR);
            let mut i0 = r0;
            while i0 < r1 {
                let rows = (r1 - i0).min(MR);
                let t = Tile {
                    a: a.as_ptr(),
                    i0,
                    lda,
                    k,
                    // SAFETY: blocks b and b + nblk - 1 < nb hold k * NR floats each.
                    w: unsafe {
                        [
                            packed.as_ptr().add(b * k * NR),
                            packed.as_ptr().add((b + nblk - 1) * k * NR),
                        ]
                    },
                    bias: bias.map(|bs| &bs[j..j + cols]),
                    clamp,
                    // SAFETY: row i0 < m, column j < n: inside out.
                    out: unsafe { out.as_mut_ptr().add(i0 * ldo + j) },
                    ldo,
                    rows,
                    cols,
                };
                // SAFETY: rows i0 .. i0 + rows <= m of `a` have k floats each from i0 * lda;
                // the tile writes rows < rows, columns < cols from (i0, j) of out.
                unsafe {
                    match (rows, nblk) {
                        (12, 2) => tile::<12, 2>(&t),
                        (12, _) => tile::<12, 1>(&t),
                        (9.., 2) => tile::<11, 2>(&t),
                        (9.., _) => tile::<11, 1>(&t),
                        (5.., 2) => tile::<8, 2>(&t),
                        (5.., _) => tile::<8, 1>(&t),
                        (_, 2) => tile::<4, 2>(&t),
                        _ => tile::<4, 1>(&t),
                    }
                }
                i0 += MR;
            }
            b += nblk;
        }
        r0 = r1;
    }
}

/// One register tile's operands (see [`tile`]).
struct Tile<'a> {
    a: *const f32,
    /// First row of the tile.
    i0: usize,
    lda: usize,
    k: usize,
    /// The two weight blocks (the same one twice for a single-block tile).
    w: [*const f32; 2],
    /// The tile's `cols` biases.
    bias: Option<&'a [f32]>,
    clamp: (f32, f32),
    /// Output element (i0, j).
    out: *mut f32,
    ldo: usize,
    /// Real rows (<= R) and columns (<= 16 * NB).
    rows: usize,
    cols: usize,
}

/// An R x (16 * NB) tile; rows past `rows` repeat the last real row (computed, never
/// stored).
///
/// # Safety
/// As stated at the call in [`gemm`]; the CPU has AVX-512 F.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")]
unsafe fn tile<const R: usize, const NB: usize>(t: &Tile<'_>) {
    // SAFETY: (whole body) the caller's guarantees above.
    unsafe {
        let mut rp = [t.a; R];
        for (r, p) in rp.iter_mut().enumerate() {
            *p = t.a.add((t.i0 + r.min(t.rows - 1)) * t.lda);
        }
        let mut c = [[_mm512_setzero_ps(); NB]; R];
        for kk in 0..t.k {
            let mut w = [_mm512_setzero_ps(); NB];
            for (h, v) in w.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(t.w[h].add(kk * NR));
            }
            for (cr, p) in c.iter_mut().zip(&rp) {
                let x = _mm512_set1_ps(*p.add(kk));
                for (v, wv) in cr.iter_mut().zip(&w) {
                    *v = _mm512_fmadd_ps(x, *wv, *v);
                }
            }
        }
        let (lo, hi) = (_mm512_set1_ps(t.clamp.0), _mm512_set1_ps(t.clamp.1));
        for h in 0..NB {
            let cols = t.cols.saturating_sub(h * NR).min(NR);
            let lanes: __mmask16 = if cols == NR { !0 } else { (1u16 << cols) - 1 };
            let bv = match t.bias {
                Some(b) => _mm512_maskz_loadu_ps(lanes, b.as_ptr().add(h * NR)),
                None => _mm512_setzero_ps(),
            };
            for (r, cr) in c.iter().enumerate().take(t.rows) {
                let v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(cr[h], bv), lo), hi);
                _mm512_mask_storeu_ps(t.out.add(r * t.ldo + h * NR), lanes, v);
            }
        }
    }
}
