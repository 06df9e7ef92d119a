//! TFLite fixed-point quantization arithmetic (the reference semantics).
//!
//! These follow the TFLite quantization spec exactly: `quantize_multiplier`
//! splits a real multiplier into a Q31 mantissa and a power-of-two exponent;
//! `multiply_by_quantized_multiplier` applies it with a saturating rounding
//! doubling high multiply followed by a rounding right shift (round half away
//! from zero), which is what TFLite's reference kernels do.

use crate::engine::graph::Activation;

/// Split `m` into `(q31 mantissa, shift)` with `m ≈ q * 2^(shift - 31)`.
/// A positive shift is a left shift.
pub fn quantize_multiplier(m: f64) -> (i32, i32) {
    if m == 0.0 || !m.is_finite() {
        return (0, 0);
    }
    let (q, mut shift) = frexp(m);
    let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    (q_fixed as i32, shift)
}

/// `frexp`: `x = mantissa * 2^exp` with `0.5 <= |mantissa| < 1`.
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (m, e) = frexp(x * (1u64 << 54) as f64);
        return (m, e - 54);
    }
    let e = exp - 1022;
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, e)
}

/// gemmlowp's SaturatingRoundingDoublingHighMul.
#[inline(always)]
pub fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    // C++ integer division truncates toward zero; so does Rust's.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's RoundingDivideByPOT: round half away from zero.
#[inline(always)]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    debug_assert!((0..=31).contains(&exponent));
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's MultiplyByQuantizedMultiplier (double rounding variant).
#[inline(always)]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    rounding_divide_by_pot(srdhm(x.wrapping_mul(1i32 << left), multiplier), right)
}

/// TFLite's single-rounding MultiplyByQuantizedMultiplier: the exact product
/// `x * multiplier` rounded once (half up) by `31 - shift` bits. TFLite's
/// reference FULLY_CONNECTED (int8 / uint8) requantizes this way; the
/// convolutions use the double-rounding [`multiply_by_quantized_multiplier`].
#[inline(always)]
pub fn multiply_by_quantized_multiplier_single(x: i32, multiplier: i32, shift: i32) -> i32 {
    let total_shift = (31 - shift) as u32;
    let round = 1i64 << (total_shift - 1);
    ((x as i64 * multiplier as i64 + round) >> total_shift) as i32
}

/// TFLite's MultiplyByQuantizedMultiplierSmallerThanOneExp.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_smaller_than_one(
    x: i32,
    multiplier: i32,
    left_shift: i32,
) -> i32 {
    rounding_divide_by_pot(srdhm(x, multiplier), -left_shift)
}

/// TFLite's round-half-away-from-zero quantization of one real value.
pub fn quantize_value(v: f32, scale: f32, zero_point: i32) -> i32 {
    zero_point + (v / scale).round() as i32
}

/// TFLite's CalculateActivationRangeQuantized: the clamp bounds of a fused
/// activation for an output with (scale, zero_point) and storage range [qmin, qmax].
pub fn activation_range_quantized(
    act: Activation,
    scale: f32,
    zero_point: i32,
    qmin: i32,
    qmax: i32,
) -> Result<(i32, i32), String> {
    let q = |v: f32| quantize_value(v, scale, zero_point);
    Ok(match act {
        Activation::None => (qmin, qmax),
        Activation::Relu => (qmin.max(q(0.0)), qmax),
        Activation::Relu6 => (qmin.max(q(0.0)), qmax.min(q(6.0))),
        Activation::ReluN1To1 => (qmin.max(q(-1.0)), qmax.min(q(1.0))),
        other => {
            return Err(format!(
                "fused activation {other:?} is not supported on quantized operators"
            ))
        }
    })
}

/// TFLite's CalculateActivationRange for float operators.
pub fn activation_range_f32(act: Activation) -> Result<(f32, f32), String> {
    Ok(match act {
        Activation::None => (f32::MIN, f32::MAX),
        Activation::Relu => (0.0, f32::MAX),
        Activation::Relu6 => (0.0, 6.0),
        Activation::ReluN1To1 => (-1.0, 1.0),
        other => return Err(format!("fused activation {other:?} is not supported")),
    })
}

/// A quantized storage type (int8 or legacy uint8) seen as int32 by the kernels.
pub trait QType: Copy + Send + Sync + 'static {
    const QMIN: i32;
    const QMAX: i32;
    fn to_i32(self) -> i32;
    /// Narrow a value already clamped to `[QMIN, QMAX]`.
    fn from_i32(v: i32) -> Self;
}

impl QType for i8 {
    const QMIN: i32 = i8::MIN as i32;
    const QMAX: i32 = i8::MAX as i32;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v.clamp(Self::QMIN, Self::QMAX) as i8
    }
}

impl QType for u8 {
    const QMIN: i32 = u8::MIN as i32;
    const QMAX: i32 = u8::MAX as i32;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v.clamp(Self::QMIN, Self::QMAX) as u8
    }
}

/// Requantization of an int32 accumulator to the output type, per output channel.
/// `acc = sum((filter + filter_offset) * (input + input_offset)) + bias[c]`, then
/// `out = clamp(multiply_by_quantized_multiplier(acc, multipliers[c], shifts[c]) + output_offset)`.
#[derive(Clone, Copy, Debug)]
pub struct Requant<'a> {
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

impl Requant<'_> {
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

/// Effective output multiplier of a per-channel (int8) convolution, as TFLite's
/// `PopulateConvolutionQuantizationParams`: the product is formed in double.
pub fn conv_multiplier_per_channel(input_scale: f32, filter_scale: f32, output_scale: f32) -> f64 {
    input_scale as f64 * filter_scale as f64 / output_scale as f64
}

/// Effective output multiplier of a per-tensor convolution / fully connected as
/// TFLite's `GetQuantizedConvolutionMultipler`: the scale product is formed in
/// float, then divided in double.
pub fn conv_multiplier_legacy(input_scale: f32, filter_scale: f32, output_scale: f32) -> f64 {
    (input_scale * filter_scale) as f64 / output_scale as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_definition() {
        for &x in &[1.0, 0.5, 0.75, 3.0, 1e-10, 123456.789, 0.0003] {
            let (m, e) = frexp(x);
            assert!((0.5..1.0).contains(&m), "{x}: {m}");
            assert_eq!(m * 2f64.powi(e), x);
        }
    }

    #[test]
    fn quantize_multiplier_known_values() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        // Mantissa rounding up to 1.0 renormalises.
        let (q, s) = quantize_multiplier(0.999_999_999_9);
        assert_eq!((q, s), (1 << 30, 1));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-4, 1), -2);
        assert_eq!(rounding_divide_by_pot(7, 2), 2);
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        // x * 0.5 with rounding
        let (m, s) = quantize_multiplier(0.5);
        assert_eq!(multiply_by_quantized_multiplier(3, m, s), 2);
        // gemmlowp's high multiply rounds a negative tie toward zero.
        assert_eq!(multiply_by_quantized_multiplier(-3, m, s), -1);
        assert_eq!(multiply_by_quantized_multiplier(-5, m, s), -2);
        assert_eq!(multiply_by_quantized_multiplier(1000, m, s), 500);
        // Single rounding rounds the exact product half up: -2.5 -> -2, 2.5 -> 3.
        assert_eq!(multiply_by_quantized_multiplier_single(-5, m, s), -2);
        assert_eq!(multiply_by_quantized_multiplier_single(5, m, s), 3);
        assert_eq!(multiply_by_quantized_multiplier_single(1000, m, s), 500);
    }

    #[test]
    fn activation_ranges() {
        assert_eq!(
            activation_range_quantized(Activation::Relu6, 0.05, -128, -128, 127).unwrap(),
            (-128, -8)
        );
        assert_eq!(
            activation_range_quantized(Activation::None, 0.05, 3, -128, 127).unwrap(),
            (-128, 127)
        );
    }
}
