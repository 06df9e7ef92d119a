//! float32 GEMM with AVX2 + FMA: a 6x16 FMA tile over weights packed as
//! `[16-column block][k][16]` (the AVX-512 kernel, [`super::gemm_f32_avx512`], uses the same
//! packing). Only entered after the dispatcher checked AVX2 and FMA at run time.

use std::arch::x86_64::*;

use crate::engine::kernels::{Clamp, Mat, MatMut, PackedF32};

/// Columns per packed block.
const NR: usize = 16;
/// Rows per float register tile.
pub(in crate::engine::kernels) const MR: usize = 6;
/// Rows per float cache block (4 tiles).
const MC: usize = 24;

/// Pack W (`n x k`) as `[block][k][16]` floats, zero-padded past `n` (the layout of both
/// this kernel and [`super::gemm_f32_avx512`]).
pub fn pack_f32(w: &[f32], n: usize, k: usize) -> Vec<f32> {
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

/// `out[i][j] = clamp(sum_kk a[i][kk] * W[j][kk] + bias[j])`, W packed by [`pack_f32`]
/// (`p`: `n x k`); the dispatcher checked `a` (`m x k`), `out` (`m x n`) and `bias`.
pub fn gemm_f32(
    p: &PackedF32,
    a: Mat<'_, f32>,
    bias: Option<&[f32]>,
    clamp: Clamp,
    out: MatMut<'_, f32>,
) {
    check_packed(&p.data, p.n, p.k);
    // SAFETY: AVX2/FMA checked by the dispatcher, which also checked a, out and bias
    // against m, n, k and the strides; the packed length was checked above.
    unsafe { gemm_f32_avx2(&p.data, p.n, p.k, a, bias, clamp, out) }
}

/// Check that `packed` holds the blocks of `n x k` weights packed by [`pack_f32`].
pub(super) fn check_packed(packed: &[f32], n: usize, k: usize) {
    assert!(
        packed.len() >= n.div_ceil(NR) * k * NR,
        "gemm_f32: packed weights too short"
    );
}

#[target_feature(enable = "avx2,fma")]
fn gemm_f32_avx2(
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
    let (vlo, vhi) = (_mm256_set1_ps(clamp.0), _mm256_set1_ps(clamp.1));
    // Blocks of MC rows: each 16-column weight block is reused by the block's
    // MC / MR tiles while it is in cache.
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + MC).min(m);
        for b in 0..nb {
            let cols = (n - b * NR).min(NR);
            let mut i0 = r0;
            while i0 < r1 {
                let rows = (m - i0).min(MR);
                // Row pointers; rows past m repeat the last row (computed, never stored).
                let mut rp = [a.as_ptr(); MR];
                for (r, p) in rp.iter_mut().enumerate() {
                    // SAFETY: row min(i0 + r, m - 1) < m starts inside `a` and has k elements.
                    *p = unsafe { a.as_ptr().add((i0 + r.min(rows - 1)) * lda) };
                }
                let mut c = [_mm256_setzero_ps(); 2 * MR];
                // SAFETY: packed block b holds k * NR floats; each row pointer has k
                // floats (see above).
                unsafe {
                    let w = packed.as_ptr().add(b * k * NR);
                    for kk in 0..k {
                        let w0 = _mm256_loadu_ps(w.add(kk * NR));
                        let w1 = _mm256_loadu_ps(w.add(kk * NR + 8));
                        for r in 0..MR {
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
                i0 += MR;
            }
        }
        r0 = r1;
    }
}
