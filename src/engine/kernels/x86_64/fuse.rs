//! The shape of an int8 GEMM's operands and the parameters of its requantization done inside
//! the register tile, shared by the AVX2 ([`super::gemm_i8_avx2`]) and AVX-512 VNNI
//! ([`super::gemm_vnni`]) GEMMs.

use super::lanes::clamp8;
use crate::engine::kernels::{Mat, MatMut, RequantCols};

/// The shape of one GEMM call: `a` is `m x k` (row stride `lda`), the int32 result `m x n`
/// (row stride `ldacc`). The GEMM bodies take it beside their slices, which stay parameters of
/// their own so that they keep their no-alias guarantees in the loops.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) lda: usize,
    pub(super) ldacc: usize,
}

impl Shape {
    /// The shape of `a` times `n` columns into a result of row stride `ldacc`.
    pub(super) fn new(a: &Mat<'_, i8>, n: usize, ldacc: usize) -> Shape {
        Shape {
            m: a.rows,
            n,
            k: a.cols,
            lda: a.stride,
            ldacc,
        }
    }
}

/// The requantization epilogue alone of one instruction set (`requant_i8` of
/// [`super::requant_avx2`] or [`super::gemm_vnni`]): what a fused GEMM runs when `k == 0`.
pub(super) type RequantFn = fn(Mat<'_, i32>, &RequantCols<'_>, MatMut<'_, i8>);

/// Requantization of an int8 GEMM's output inside the register tile (see
/// `gemm_requant_i8` of [`super::gemm_i8_avx2`] and [`super::gemm_vnni`]).
pub(super) struct Fuse<'a> {
    pub(super) bias: &'a [i32],
    pub(super) mult: &'a [i32],
    pub(super) shift: &'a [i32],
    pub(super) off: i32,
    /// Byte clamp bounds (see [`clamp8`]).
    pub(super) lo: i32,
    pub(super) hi: i32,
    /// Some channel shifts left / some multiplier is i32::MIN (see `lanes::rq8`).
    pub(super) left: bool,
    pub(super) sat: bool,
    pub(super) out: *mut i8,
    pub(super) ldo: usize,
}

impl<'a> Fuse<'a> {
    /// The argument checks of a fused GEMM (`gemm_requant_i8` of either x86 path) of `a`
    /// (`m x k`) into `out` (`m x n`), and its epilogue's parameters; `None` when nothing is
    /// left to do: no rows or columns, or `k == 0` (every sum is 0; those are requantized here
    /// by the caller's own `requant`). `acc` must hold `m * n` values unless `in_tile` (the path
    /// then never touches it).
    pub(super) fn new(
        requant: RequantFn,
        a: Mat<'_, i8>,
        rq: &RequantCols<'a>,
        acc: &mut [i32],
        in_tile: bool,
        out: MatMut<'_, i8>,
    ) -> Option<Fuse<'a>> {
        let (m, n, k) = (a.rows, out.cols, a.cols);
        let (lda, ldo) = (a.stride, out.stride);
        assert!(rq.bias.len() >= n && rq.multipliers.len() >= n && rq.shifts.len() >= n);
        assert!(m == 0 || (lda >= k && a.data.len() >= (m - 1) * lda + k));
        assert!(m == 0 || (out.rows == m && ldo >= n && out.data.len() >= (m - 1) * ldo + n));
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
            requant(Mat::dense(acc, m, n), rq, out);
            return None;
        }
        Some(Fuse::epilogue(rq, out))
    }

    /// The epilogue's parameters for the `out.cols` columns of `rq` into `out`; the caller
    /// checked the lengths.
    pub(super) fn epilogue(rq: &RequantCols<'a>, out: MatMut<'_, i8>) -> Fuse<'a> {
        let n = out.cols;
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
            out: out.data.as_mut_ptr(),
            ldo: out.stride,
        }
    }
}
