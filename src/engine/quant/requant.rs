//! Requantization: an int32 (or int64) value rescaled by a fixed-point
//! multiplier into an output's quantization, per tensor or per output channel.

use super::fixed_point::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_i64,
    multiply_by_quantized_multiplier_i64_single, multiply_by_quantized_multiplier_single,
    quantize_multiplier,
};

/// Per-tensor requantization `zp_out + M * (v - zp_in)` with TFLite's
/// fixed-point multiplier (double rounding, [`multiply_by_quantized_multiplier`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequantPerTensor {
    pub in_zp: i32,
    pub out_zp: i32,
    pub mult: i32,
    pub shift: i32,
}

impl RequantPerTensor {
    /// The requantization by the real multiplier `real` ([`quantize_multiplier`]).
    pub fn new(real: f64, in_zp: i32, out_zp: i32) -> Self {
        let (mult, shift) = quantize_multiplier(real);
        RequantPerTensor {
            in_zp,
            out_zp,
            mult,
            shift,
        }
    }

    /// Requantize one stored value (not clamped).
    #[inline(always)]
    pub fn apply(&self, v: i32) -> i32 {
        self.out_zp + multiply_by_quantized_multiplier(v - self.in_zp, self.mult, self.shift)
    }

    /// [`Self::apply`] with a saturating addition of the output zero point, as
    /// TFLite's `Requantize` (QUANTIZE between int8 and int16) computes it.
    #[inline(always)]
    pub fn apply_saturating(&self, v: i32) -> i32 {
        multiply_by_quantized_multiplier(v - self.in_zp, self.mult, self.shift)
            .saturating_add(self.out_zp)
    }
}

/// Requantization of an int32 accumulator to the output type, per output channel.
/// `acc = sum((filter + filter_offset) * (input + input_offset)) + bias[c]`, then
/// `out = clamp(multiply_by_quantized_multiplier(acc, multipliers[c], shifts[c]) + output_offset)`.
#[derive(Clone, Copy, Debug)]
pub struct RequantPerChannel<'a> {
    /// `-input_zero_point`.
    pub input_offset: i32,
    /// `-filter_zero_point` (0 for int8 weights).
    pub filter_offset: i32,
    /// `output_zero_point`.
    pub output_offset: i32,
    /// One per output channel (per-tensor quantization is broadcast at build time).
    pub multipliers: &'a [i32],
    /// One per output channel; positive = left shift (TFLite's convention).
    pub shifts: &'a [i32],
    pub act_min: i32,
    pub act_max: i32,
}

impl RequantPerChannel<'_> {
    /// Finish one accumulator of output channel `c` (bias already added).
    #[inline(always)]
    pub fn finish(&self, acc: i32, c: usize) -> i32 {
        let v = multiply_by_quantized_multiplier(acc, self.multipliers[c], self.shifts[c])
            .wrapping_add(self.output_offset);
        v.clamp(self.act_min, self.act_max)
    }

    /// [`Self::finish`] with the single-rounding multiply of TFLite's
    /// FULLY_CONNECTED ([`multiply_by_quantized_multiplier_single`]).
    #[inline(always)]
    pub fn finish_single(&self, acc: i32, c: usize) -> i32 {
        let v = multiply_by_quantized_multiplier_single(acc, self.multipliers[c], self.shifts[c])
            .wrapping_add(self.output_offset);
        v.clamp(self.act_min, self.act_max)
    }
}

/// Per-channel requantization of a 16x8 operator's int64 accumulator (int16
/// output, zero point 0).
#[derive(Clone, Copy, Debug)]
pub struct RequantPerChannel16<'a> {
    pub multipliers: &'a [i32],
    pub shifts: &'a [i32],
    pub act_min: i32,
    pub act_max: i32,
    /// FULLY_CONNECTED's single-rounding multiply instead of the convolutions' one.
    pub single_rounding: bool,
}

impl RequantPerChannel16<'_> {
    /// Finish the accumulator of output channel `c` (bias already added).
    #[inline(always)]
    pub fn finish(&self, acc: i64, c: usize) -> i16 {
        let (m, s) = (self.multipliers[c], self.shifts[c]);
        let v = if self.single_rounding {
            multiply_by_quantized_multiplier_i64_single(acc, m, s)
        } else {
            multiply_by_quantized_multiplier_i64(acc, m, s)
        };
        v.clamp(self.act_min, self.act_max) as i16
    }
}
