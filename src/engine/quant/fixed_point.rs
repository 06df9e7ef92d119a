//! TFLite's fixed-point arithmetic (the reference semantics): real multipliers
//! as a Q31 mantissa and a power-of-two exponent, and the rounding multiplies
//! that apply them.
//!
//! `quantize_multiplier` splits a real multiplier into a Q31 mantissa and a
//! power-of-two exponent; `multiply_by_quantized_multiplier` applies it with a
//! saturating rounding doubling high multiply followed by a rounding right
//! shift (round half away from zero), which is what TFLite's reference kernels
//! do. TFLite has several rounding variants (double rounding, single rounding,
//! smaller-than-one, int64 input): each operator uses the one TFLite's does.

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

/// `QuantizeMultiplierSmallerThanOneExp`: a multiplier in (0, 1) as mantissa and
/// non-positive exponent.
pub fn quantize_multiplier_smaller_than_one(m: f64) -> Result<(i32, i32), String> {
    if !(m > 0.0 && m < 1.0) {
        return Err(format!("multiplier {m} is not in (0, 1)"));
    }
    let (q, s) = quantize_multiplier(m);
    if s > 0 {
        return Err(format!("multiplier {m} is not smaller than one"));
    }
    Ok((q, s))
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

/// TFLite's `MultiplyByQuantizedMultiplier` for an int64 input: the Q31
/// multiplier is first reduced to Q15 (rounded, saturated at 0x7FFF), then one
/// rounding right shift by `15 - shift` (round half up). `shift` must be in
/// `-31..=7` (checked when the operator is prepared).
#[inline(always)]
pub fn multiply_by_quantized_multiplier_i64(x: i64, multiplier: i32, shift: i32) -> i32 {
    let reduced: i64 = if multiplier < 0x7FFF_0000 {
        ((multiplier as i64) + (1 << 15)) >> 16
    } else {
        0x7FFF
    };
    let total_shift = (15 - shift) as u32;
    let round = 1i64 << (total_shift - 1);
    (x.wrapping_mul(reduced).wrapping_add(round) >> total_shift) as i32
}

/// `x · multiplier · 2^(shift − 31)` rounded half up in one step, with the full Q31
/// multiplier: what TFLite's reference FULLY_CONNECTED 16x8 computes (measured
/// against ai-edge-litert's BUILTIN_REF kernels: the convolutions' reduced Q15
/// multiplier does not reproduce it). `shift` must be in `-31..=7`.
#[inline(always)]
pub fn multiply_by_quantized_multiplier_i64_single(x: i64, multiplier: i32, shift: i32) -> i32 {
    let total_shift = (31 - shift) as u32;
    let round = 1i128 << (total_shift - 1);
    ((x as i128 * multiplier as i128 + round) >> total_shift) as i32
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
    fn i64_multiplier_rounds_half_up() {
        // 0.5 = 2^30 * 2^(0 - 31)
        assert_eq!(multiply_by_quantized_multiplier_i64(3, 1 << 30, 0), 2);
        assert_eq!(multiply_by_quantized_multiplier_i64(-3, 1 << 30, 0), -1);
        assert_eq!(multiply_by_quantized_multiplier_i64(1000, 1 << 30, 0), 500);
        // Multipliers near 1 saturate the Q15 mantissa at 0x7FFF.
        assert_eq!(
            multiply_by_quantized_multiplier_i64(1 << 20, i32::MAX, 0),
            (((1i64 << 20) * 0x7FFF + (1 << 14)) >> 15) as i32
        );
    }
}
