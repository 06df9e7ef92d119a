//! TFLite int8 per-channel requantization on NEON, bit-exact with
//! `quant::multiply_by_quantized_multiplier`:
//!
//! 1. left shift by `max(shift, 0)` (SSHL, wrapping like `wrapping_mul(1 << left)`),
//! 2. SQRDMULH (= gemmlowp's SaturatingRoundingDoublingHighMul, including MIN·MIN → MAX),
//! 3. RoundingDivideByPOT by `max(-shift, 0)`: SRSHL rounds ties up (toward +inf), TFLite rounds
//!    them away from zero; subtracting 1 (saturating) from negative values first fixes that:
//!    for x = q·2^e + r < 0, `floor((x - 1 + 2^(e-1)) / 2^e) = q + [r > 2^(e-1)]`, which is the
//!    scalar `(x >> e) + (r > threshold)`, and `x = i32::MIN` saturates to itself (exact).
//!    The fixup is `(x & right) >> 31`: all ones only when x < 0 and the shift is non-zero
//!    (`right = -max(-shift, 0)` is then negative).
//!
//! The 16-lane epilogues ([`Requant16`], the SDOT tile's) add the fix-up with SSRA (wrapping):
//! with a multiplier >= 0, SQRDMULH's result is at least `-(2^31 - 1)`, so `x - 1` cannot wrap
//! and SSRA equals the saturating add. When every shift is < 0, `|x| <= 2^30` after the
//! rounding shift and the output offset (in [-128, 127]) is added after the first saturating
//! narrow, in int16 (SQADD): values beyond int16 saturate to far outside int8 either way, so
//! the clamped result is the same. [`requant_kinds`] checks both conditions; callers use the
//! scalar requantization when they fail (never for a TFLite model: its multipliers come from
//! positive scales and its int8 zero points are int8).

use std::arch::aarch64::*;

use crate::engine::kernels::{KernelPath, Mat, MatMut, RequantCols};
use crate::engine::quant::{multiply_by_quantized_multiplier, RequantPerChannel};

/// Per-lane requantization parameters: multiplier, left shift (>= 0), right shift (<= 0).
#[derive(Clone, Copy)]
pub(crate) struct Params4 {
    pub mult: int32x4_t,
    pub left: int32x4_t,
    pub right: int32x4_t,
}

impl Params4 {
    /// Parameters of 4 channels from TFLite shifts (positive = left).
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn new(mult: int32x4_t, shift: int32x4_t) -> Self {
        let zero = vdupq_n_s32(0);
        Params4 {
            mult,
            left: vmaxq_s32(shift, zero),
            right: vminq_s32(shift, zero),
        }
    }
}

/// `multiply_by_quantized_multiplier` on 4 lanes.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn mbqm4(x: int32x4_t, p: &Params4) -> int32x4_t {
    let x = vshlq_s32(x, p.left);
    let x = vqrdmulhq_s32(x, p.mult);
    let fixup = vshrq_n_s32::<31>(vandq_s32(x, p.right));
    vrshlq_s32(vqaddq_s32(x, fixup), p.right)
}

/// `clamp(mbqm(x) + offset, lo, hi)` on 4 lanes (wrapping add, max then min like the scalar).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn finish4(
    x: int32x4_t,
    p: &Params4,
    off: int32x4_t,
    lo: int32x4_t,
    hi: int32x4_t,
) -> int32x4_t {
    vminq_s32(vmaxq_s32(vaddq_s32(mbqm4(x, p), off), lo), hi)
}

/// Saturating narrow of 8 lanes to int8 (= `QType::from_i32` for values already clamped).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn narrow8(a: int32x4_t, b: int32x4_t) -> int8x8_t {
    vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)))
}

/// Requantization of 16 channels `ch..ch + 16` held in registers: bias, multiplier and shifts per
/// lane, output offset and the clamp bounds. `LEFT = false` when no channel has a left shift
/// (the usual case; the SSHL is skipped). The clamp is done after narrowing: adding the
/// offset in int32 (wrapping, like the scalar), then SQXTN to int16 and int8 (saturating), then
/// max/min with the saturated bounds gives exactly `clamp(clamp(v, lo, hi), -128, 127)`, because
/// saturation is monotone and the identity on [-128, 127].
#[derive(Clone, Copy)]
pub(crate) struct Requant16 {
    pub bias: [int32x4_t; 4],
    pub mult: [int32x4_t; 4],
    pub left: [int32x4_t; 4],
    pub right: [int32x4_t; 4],
    pub off: int32x4_t,
    /// The output offset in int16 lanes (used when every shift is < 0).
    pub off16: int16x8_t,
    pub lo: int8x16_t,
    pub hi: int8x16_t,
}

impl Requant16 {
    /// Parameters of channels `ch..ch + 16`.
    ///
    /// # Safety
    /// `bias`, `mult` and `shift` have at least `ch + 16` values, and [`requant_kinds`] accepted
    /// them and `off` (no negative multiplier, `off` in [-128, 127]).
    #[inline]
    #[target_feature(enable = "neon")]
    pub unsafe fn load(
        bias: *const i32,
        mult: *const i32,
        shift: *const i32,
        ch: usize,
        off: i32,
        lo: i32,
        hi: i32,
    ) -> Self {
        let zero = vdupq_n_s32(0);
        let sat8 = |v: i32| v.clamp(i8::MIN as i32, i8::MAX as i32) as i8;
        // SAFETY: ch + 16 values readable in each array (caller contract).
        unsafe {
            let sh: [int32x4_t; 4] = std::array::from_fn(|q| vld1q_s32(shift.add(ch + 4 * q)));
            Requant16 {
                bias: std::array::from_fn(|q| vld1q_s32(bias.add(ch + 4 * q))),
                mult: std::array::from_fn(|q| vld1q_s32(mult.add(ch + 4 * q))),
                left: std::array::from_fn(|q| vmaxq_s32(sh[q], zero)),
                right: std::array::from_fn(|q| vminq_s32(sh[q], zero)),
                off: vdupq_n_s32(off),
                off16: vdupq_n_s16(off as i16),
                lo: vdupq_n_s8(sat8(lo)),
                hi: vdupq_n_s8(sat8(hi)),
            }
        }
    }

    /// `clamp(off + mbqm(acc + bias))` of 16 lanes, narrowed to int8.
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn apply<const LEFT: bool, const SHIFTED: bool>(&self, acc: [int32x4_t; 4]) -> int8x16_t {
        self.finish::<LEFT, SHIFTED>(std::array::from_fn(|q| vaddq_s32(acc[q], self.bias[q])))
    }

    /// `clamp(off + mbqm(x))` of 16 lanes whose bias is already added, narrowed to int8.
    /// `SHIFTED`: every lane has a non-zero right shift, so the rounding fix-up
    /// `(x & right) >> 31` is just `x >> 31` (the sign bit of `right` is set), and the offset
    /// is added in int16 (see the module docs).
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn finish<const LEFT: bool, const SHIFTED: bool>(&self, x: [int32x4_t; 4]) -> int8x16_t {
        vminq_s8(
            vmaxq_s8(self.unclamped::<LEFT, SHIFTED>(x), self.lo),
            self.hi,
        )
    }

    /// [`Requant16::finish`] without the activation clamp (for bounds at the int8 limits,
    /// where the saturating narrow already clamps).
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn unclamped<const LEFT: bool, const SHIFTED: bool>(&self, x: [int32x4_t; 4]) -> int8x16_t {
        let v: [int32x4_t; 4] = std::array::from_fn(|q| {
            let x = if LEFT {
                vshlq_s32(x[q], self.left[q])
            } else {
                x[q]
            };
            let x = rounding_shift::<SHIFTED>(vqrdmulhq_s32(x, self.mult[q]), self.right[q]);
            if SHIFTED {
                x
            } else {
                vaddq_s32(x, self.off)
            }
        });
        let h = [
            vqmovn_high_s32(vqmovn_s32(v[0]), v[1]),
            vqmovn_high_s32(vqmovn_s32(v[2]), v[3]),
        ];
        let h = if SHIFTED {
            h.map(|h| vqaddq_s16(h, self.off16))
        } else {
            h
        };
        vqmovn_high_s16(vqmovn_s16(h[0]), h[1])
    }
}

/// RoundingDivideByPOT of SQRDMULH's result `x` by `-right` (`right <= 0` per lane), with the
/// fix-up added by SSRA (exact for multipliers >= 0, see the module docs); `SHIFTED`: every
/// lane of `right` is negative.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn rounding_shift<const SHIFTED: bool>(x: int32x4_t, right: int32x4_t) -> int32x4_t {
    let x = if SHIFTED {
        vsraq_n_s32::<31>(x, x)
    } else {
        vsraq_n_s32::<31>(x, vandq_s32(x, right))
    };
    vrshlq_s32(x, right)
}

/// The epilogue variant for these channels, `(some shift is > 0, every shift is < 0)`, in one
/// vectorizable pass (the largest shift decides both); `None` when the 16-lane epilogues do not
/// apply (a negative multiplier, or an output offset outside [-128, 127]: see the module docs)
/// and the caller must requantize with the scalar code.
#[inline]
pub(crate) fn requant_kinds(shifts: &[i32], mults: &[i32], off: i32) -> Option<(bool, bool)> {
    let max = shifts.iter().copied().max().unwrap_or(-1);
    let min_mult = mults.iter().copied().min().unwrap_or(0);
    (min_mult >= 0 && i8::try_from(off).is_ok()).then_some((max > 0, max < 0))
}

/// Scalar finish of one value, same order of operations as the vector lanes.
#[inline(always)]
pub(crate) fn finish1(x: i32, mult: i32, shift: i32, off: i32, lo: i32, hi: i32) -> i8 {
    let v = multiply_by_quantized_multiplier(x, mult, shift).wrapping_add(off);
    v.max(lo).min(hi).clamp(i8::MIN as i32, i8::MAX as i32) as i8
}

/// [`finish1`] of output channel `ch` of a convolution's per-channel parameters.
#[inline(always)]
pub(crate) fn finish_channel(q: &RequantPerChannel<'_>, acc: i32, ch: usize) -> i8 {
    finish1(
        acc,
        q.multipliers[ch],
        q.shifts[ch],
        q.output_offset,
        q.act_min,
        q.act_max,
    )
}

/// `out[i][j] = clamp(output_offset + mbqm(acc[i][j] + bias[j], multipliers[j], shifts[j]),
/// act_min, act_max)` for the `m x n` of `acc` (and `out`), with the column parameters of `rq`.
/// All NEON paths share this kernel.
pub fn requant_i8(path: KernelPath, acc: Mat<'_, i32>, rq: &RequantCols<'_>, out: MatMut<'_, i8>) {
    let _ = path;
    let (m, n, ldacc, ldo) = (acc.rows, acc.cols, acc.stride, out.stride);
    assert!(
        out.rows == m && out.cols == n,
        "requant_i8: out ({}x{}) is not the shape of acc ({m}x{n})",
        out.rows,
        out.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        acc.data.len() >= (m - 1) * ldacc + n,
        "requant_i8: acc too short"
    );
    assert!(
        out.data.len() >= (m - 1) * ldo + n,
        "requant_i8: out too short"
    );
    assert!(
        rq.bias.len() >= n && rq.multipliers.len() >= n && rq.shifts.len() >= n,
        "requant_i8: per-channel parameters shorter than n={n}"
    );
    // SAFETY: lengths validated above; NEON is mandatory on aarch64.
    unsafe { requant_neon(acc.data, m, n, ldacc, rq, out.data, ldo) }
}

/// Body of [`requant_i8`]; lengths validated by it. (The slices are parameters of their own,
/// not views, so that they keep their no-alias guarantees in the loops.)
#[target_feature(enable = "neon")]
unsafe fn requant_neon(
    acc: &[i32],
    m: usize,
    n: usize,
    ldacc: usize,
    rq: &RequantCols<'_>,
    out: &mut [i8],
    ldo: usize,
) {
    // Without the 16-lane epilogue's preconditions, every column takes the per-value path.
    let kinds = requant_kinds(&rq.shifts[..n], &rq.multipliers[..n], rq.output_offset);
    let (left, shifted) = kinds.unwrap_or_default();
    let b16 = if kinds.is_some() { n / 16 * 16 } else { 0 };
    let mut j = 0;
    while j < b16 {
        // SAFETY: j + 16 <= n <= len of bias, multipliers, shifts.
        let p = unsafe {
            Requant16::load(
                rq.bias.as_ptr(),
                rq.multipliers.as_ptr(),
                rq.shifts.as_ptr(),
                j,
                rq.output_offset,
                rq.act_min,
                rq.act_max,
            )
        };
        for i in 0..m {
            // SAFETY: i < m and j + 16 <= n: the 16 values of row i are inside acc and out
            // (lengths checked above).
            unsafe {
                let src = acc.as_ptr().add(i * ldacc + j);
                let x = std::array::from_fn(|q| vld1q_s32(src.add(4 * q)));
                let y = match (left, shifted) {
                    (true, true) => p.apply::<true, true>(x),
                    (true, false) => p.apply::<true, false>(x),
                    (false, true) => p.apply::<false, true>(x),
                    (false, false) => p.apply::<false, false>(x),
                };
                vst1q_s8(out.as_mut_ptr().add(i * ldo + j), y);
            }
        }
        j += 16;
    }
    let body = n / 8 * 8;
    let off = vdupq_n_s32(rq.output_offset);
    let lo = vdupq_n_s32(rq.act_min);
    let hi = vdupq_n_s32(rq.act_max);
    while j < body {
        // SAFETY: j + 8 <= n <= len of bias, multipliers, shifts.
        let (b, p) = unsafe {
            (
                [
                    vld1q_s32(rq.bias.as_ptr().add(j)),
                    vld1q_s32(rq.bias.as_ptr().add(j + 4)),
                ],
                [
                    Params4::new(
                        vld1q_s32(rq.multipliers.as_ptr().add(j)),
                        vld1q_s32(rq.shifts.as_ptr().add(j)),
                    ),
                    Params4::new(
                        vld1q_s32(rq.multipliers.as_ptr().add(j + 4)),
                        vld1q_s32(rq.shifts.as_ptr().add(j + 4)),
                    ),
                ],
            )
        };
        for i in 0..m {
            // SAFETY: i < m and j + 8 <= n: the 8 values of row i are inside acc and out
            // (lengths checked above).
            unsafe {
                let src = acc.as_ptr().add(i * ldacc + j);
                let x0 = vaddq_s32(vld1q_s32(src), b[0]);
                let x1 = vaddq_s32(vld1q_s32(src.add(4)), b[1]);
                let y = narrow8(
                    finish4(x0, &p[0], off, lo, hi),
                    finish4(x1, &p[1], off, lo, hi),
                );
                vst1_s8(out.as_mut_ptr().add(i * ldo + j), y);
            }
        }
        j += 8;
    }
    for j in body..n {
        for i in 0..m {
            out[i * ldo + j] = finish1(
                acc[i * ldacc + j].wrapping_add(rq.bias[j]),
                rq.multipliers[j],
                rq.shifts[j],
                rq.output_offset,
                rq.act_min,
                rq.act_max,
            );
        }
    }
}
