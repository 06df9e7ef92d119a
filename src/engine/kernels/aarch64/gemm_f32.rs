//! f32 GEMM `out[i][j] = clamp(sum_k a[i][k] * W[j][k] + bias[j])` with NEON FMLA.
//!
//! Packed W: `ceil(n / 8)` blocks of 8 columns; block `jb` holds `W[jb*8 + jj][kk]` at
//! `(jb * k + kk) * 8 + jj` (zero padded columns). Register tile: up to 8 rows x 8 columns
//! (16 accumulators); 4 k-values of each `a` row are loaded at once and used by lane (FMLA by
//! element), the last `k % 4` one at a time, so `a` is never read past a row's `k` values.

use std::arch::aarch64::*;

use crate::engine::kernels::{Clamp, KernelPath, Mat, MatMut, PackedF32};

const NR: usize = 8;

/// Pack f32 W (`n` rows x `k`, row-major).
pub fn pack_f32(path: KernelPath, w: &[f32], n: usize, k: usize) -> Vec<f32> {
    let _ = path;
    assert!(
        w.len() >= n * k,
        "pack_f32: weights have {} values, need {n}x{k}",
        w.len()
    );
    let nb = n.div_ceil(NR);
    let mut out = vec![0.0f32; nb * NR * k];
    for j in 0..n {
        let (jb, jj) = (j / NR, j % NR);
        for kk in 0..k {
            out[(jb * k + kk) * NR + jj] = w[j * k + kk];
        }
    }
    out
}

#[derive(Clone, Copy)]
struct Args<'a> {
    w: *const f32,
    n: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    bias: Option<&'a [f32]>,
    clamp: (f32, f32),
    out: *mut f32,
    ldo: usize,
}

/// `out[i][j] = clamp(sum_kk a[i][kk]*W[j][kk] + bias[j])` for the `m = a.rows` rows of `a`,
/// W (`p`: `n x k`) packed by [`pack_f32`].
pub fn gemm_f32(
    p: &PackedF32,
    a: Mat<'_, f32>,
    bias: Option<&[f32]>,
    clamp: Clamp,
    out: MatMut<'_, f32>,
) {
    let (packed, n, k) = (&p.data[..], p.n, p.k);
    let (a, m, lda) = (a.data, a.rows, a.stride);
    let (out, ldo) = (out.data, out.stride);
    let clamp = (clamp.min, clamp.max);
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(
        packed.len(),
        n.div_ceil(NR) * NR * k,
        "gemm_f32: packed weights do not match n={n} k={k}"
    );
    assert!(m == 1 || lda >= k, "gemm_f32: lda {lda} < k {k}");
    assert!(a.len() >= (m - 1) * lda + k, "gemm_f32: a too short");
    assert!(m == 1 || ldo >= n, "gemm_f32: ldo {ldo} < n {n}");
    assert!(out.len() >= (m - 1) * ldo + n, "gemm_f32: out too short");
    if let Some(b) = bias {
        assert!(b.len() >= n, "gemm_f32: bias too short");
    }
    let g = Args {
        w: packed.as_ptr(),
        n,
        k,
        a: a.as_ptr(),
        lda,
        bias,
        clamp,
        out: out.as_mut_ptr(),
        ldo,
    };
    let mut i0 = 0;
    // SAFETY: arguments validated above; NEON is mandatory on aarch64.
    unsafe {
        while i0 < m {
            let rem = m - i0;
            if rem >= 8 {
                tile::<8>(&g, i0);
                i0 += 8;
            } else if rem >= 4 {
                tile::<4>(&g, i0);
                i0 += 4;
            } else if rem >= 2 {
                tile::<2>(&g, i0);
                i0 += 2;
            } else {
                tile::<1>(&g, i0);
                i0 += 1;
            }
        }
    }
}

/// Rows `i0 .. i0 + MR` (all < m).
#[target_feature(enable = "neon")]
unsafe fn tile<const MR: usize>(g: &Args<'_>, i0: usize) {
    let k4 = g.k / 4 * 4;
    let mut rows = [g.a; MR];
    for (r, p) in rows.iter_mut().enumerate() {
        // SAFETY: row i0 + r < m is inside a (validated by gemm_f32).
        *p = unsafe { g.a.add((i0 + r) * g.lda) };
    }
    let (lo, hi) = (vdupq_n_f32(g.clamp.0), vdupq_n_f32(g.clamp.1));
    for jb in 0..g.n.div_ceil(NR) {
        let mut c = [[vdupq_n_f32(0.0); 2]; MR];
        // SAFETY: block jb holds k * 8 values inside packed.
        let wb = unsafe { g.w.add(jb * g.k * NR) };
        let mut kk = 0;
        while kk < k4 {
            let mut av = [vdupq_n_f32(0.0); MR];
            for r in 0..MR {
                // SAFETY: kk + 4 <= k: inside row r.
                av[r] = unsafe { vld1q_f32(rows[r].add(kk)) };
            }
            macro_rules! step {
                ($l:literal) => {{
                    // SAFETY: kk + $l < k: 8 values of the packed block.
                    let (w0, w1) = unsafe {
                        let p = wb.add((kk + $l) * NR);
                        (vld1q_f32(p), vld1q_f32(p.add(4)))
                    };
                    for r in 0..MR {
                        c[r][0] = vfmaq_laneq_f32::<$l>(c[r][0], w0, av[r]);
                        c[r][1] = vfmaq_laneq_f32::<$l>(c[r][1], w1, av[r]);
                    }
                }};
            }
            step!(0);
            step!(1);
            step!(2);
            step!(3);
            kk += 4;
        }
        while kk < g.k {
            // SAFETY: kk < k: 8 values of the packed block.
            let (w0, w1) = unsafe {
                let p = wb.add(kk * NR);
                (vld1q_f32(p), vld1q_f32(p.add(4)))
            };
            for r in 0..MR {
                // SAFETY: kk < k: inside row r.
                let x = unsafe { *rows[r].add(kk) };
                c[r][0] = vfmaq_n_f32(c[r][0], w0, x);
                c[r][1] = vfmaq_n_f32(c[r][1], w1, x);
            }
            kk += 1;
        }
        let j0 = jb * NR;
        let cols = (g.n - j0).min(NR);
        let mut bv = [vdupq_n_f32(0.0); 2];
        if let Some(b) = g.bias {
            let mut tmp = [0.0f32; NR];
            tmp[..cols].copy_from_slice(&b[j0..j0 + cols]);
            // SAFETY: tmp holds 8 values.
            bv = unsafe { [vld1q_f32(tmp.as_ptr()), vld1q_f32(tmp.as_ptr().add(4))] };
        }
        for (r, cr) in c.iter().enumerate() {
            let y = [
                vminq_f32(vmaxq_f32(vaddq_f32(cr[0], bv[0]), lo), hi),
                vminq_f32(vmaxq_f32(vaddq_f32(cr[1], bv[1]), lo), hi),
            ];
            // SAFETY: row i0 + r < m and j0 + cols <= n: inside out (validated by gemm_f32).
            unsafe {
                let dst = g.out.add((i0 + r) * g.ldo + j0);
                if cols == NR {
                    vst1q_f32(dst, y[0]);
                    vst1q_f32(dst.add(4), y[1]);
                } else {
                    let mut tmp = [0.0f32; NR];
                    vst1q_f32(tmp.as_mut_ptr(), y[0]);
                    vst1q_f32(tmp.as_mut_ptr().add(4), y[1]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols);
                }
            }
        }
    }
}
