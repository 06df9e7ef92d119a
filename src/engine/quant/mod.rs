//! The engine's quantization vocabulary, shared by the operators, the kernels
//! and the quantizer: quantized ranges and fused-activation clamps
//! ([`QRange`], [`QType`]), TFLite's fixed-point multipliers and rounding
//! multiplies, per-tensor and per-channel requantization
//! ([`RequantPerTensor`], [`RequantPerChannel`], [`RequantPerChannel16`]), and
//! how a real range becomes int8 parameters and weights and biases are
//! quantized. It depends on neither `kernels` nor `ops`.
//!
//! Everything follows TFLite's quantization spec: activations are int8
//! asymmetric per tensor with 0 exactly representable; weights are int8
//! symmetric (zero point 0, values in −127..127), per output channel for
//! convolutions; biases are int32 with scale `input_scale × weight_scale`.

mod fixed_point;
mod range;
mod requant;

pub use fixed_point::*;
pub use range::*;
pub use requant::*;

/// Smallest scale the quantizer writes: a range narrower than this is widened.
pub const MIN_SCALE: f32 = 1e-9;

/// Largest magnitude a quantized bias may take. Half of `i32::MAX`, so that the
/// accumulation of the products beside it cannot overflow either.
pub const BIAS_LIMIT: f64 = (1u64 << 30) as f64;

/// `(scale, zero_point)` of an asymmetric range quantized to `[qmin, qmax]`.
/// The range is first widened to hold 0, then the zero point is rounded to an
/// integer so that real 0 is exactly representable (TFLite's
/// `ChooseQuantizationParams`). A degenerate range gets [`MIN_SCALE`].
pub fn choose_qparams(lo: f32, hi: f32, qmin: i32, qmax: i32) -> (f32, i32) {
    let lo = lo.min(0.0) as f64;
    let hi = hi.max(0.0) as f64;
    let span = (qmax - qmin) as f64;
    let scale = ((hi - lo) / span).max(MIN_SCALE as f64);
    // Pick the zero point from the end with the smaller rounding error.
    let zp_from_min = qmin as f64 - lo / scale;
    let zp_from_max = qmax as f64 - hi / scale;
    let err_min = (qmin as f64).abs() + (lo / scale).abs();
    let err_max = (qmax as f64).abs() + (hi / scale).abs();
    let zp = if err_min < err_max {
        zp_from_min
    } else {
        zp_from_max
    };
    let zp = zp.round().clamp(qmin as f64, qmax as f64) as i32;
    (scale as f32, zp)
}

/// The real range `[lo, hi]` that `(scale, zero_point)` covers in `[qmin, qmax]`.
pub fn covered_range(scale: f32, zero_point: i32, qmin: i32, qmax: i32) -> (f32, f32) {
    (
        scale * (qmin - zero_point) as f32,
        scale * (qmax - zero_point) as f32,
    )
}

/// Quantize one real value to int8 with `(scale, zero_point)`, saturating.
pub fn quantize_i8(v: f32, scale: f32, zero_point: i32) -> i8 {
    quantize_value(v, scale, zero_point).clamp(-128, 127) as i8
}

/// Symmetric int8 scale of one weight channel.
///
/// `max_abs / 127` as the spec has it, but never so small that the channel's
/// bias, quantized with `input_scale × scale`, would leave the int32 range:
/// a pruned channel (all weights zero) still has a bias, and its output is
/// that bias alone. Without this floor the bias saturates and the channel's
/// constant output is lost.
pub fn weight_scale(max_abs: f32, bias: f32, input_scale: f32) -> f32 {
    let from_weights = max_abs / 127.0;
    let from_bias = if input_scale > 0.0 {
        (bias.abs() as f64 / (input_scale as f64 * BIAS_LIMIT)) as f32
    } else {
        0.0
    };
    from_weights.max(from_bias).max(MIN_SCALE)
}

/// Quantize weights symmetrically per channel along `axis` of `shape`.
/// `bias[c]` (when given) and `input_scale` feed [`weight_scale`].
/// Returns the int8 values and one scale per channel.
pub fn quantize_weights_per_channel(
    w: &[f32],
    shape: &[usize],
    axis: usize,
    bias: Option<&[f32]>,
    input_scale: f32,
) -> (Vec<i8>, Vec<f32>) {
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut max_abs = vec![0f32; channels];
    for (i, &v) in w.iter().enumerate() {
        let c = (i / inner) % channels;
        max_abs[c] = max_abs[c].max(v.abs());
    }
    let scales: Vec<f32> = (0..channels)
        .map(|c| weight_scale(max_abs[c], bias.map_or(0.0, |b| b[c]), input_scale))
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = scales[(i / inner) % channels];
            quantize_value(v, s, 0).clamp(-127, 127) as i8
        })
        .collect();
    (q, scales)
}

/// Quantize a bias to int32 with scale `input_scale × weight_scales[c]`.
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|s| input_scale * s).collect();
    let q = b
        .iter()
        .enumerate()
        .map(|(c, &v)| {
            let s = scales[if scales.len() == 1 { 0 } else { c }] as f64;
            (v as f64 / s).round().clamp(-BIAS_LIMIT, BIAS_LIMIT) as i32
        })
        .collect();
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_exact_and_range_is_covered() {
        for (lo, hi) in [
            (-1.0, 1.0),
            (0.0, 6.0),
            (-0.3, 7.9),
            (2.0, 5.0),
            (-5.0, -1.0),
        ] {
            let (s, zp) = choose_qparams(lo, hi, -128, 127);
            assert!((-128..=127).contains(&zp));
            let (a, b) = covered_range(s, zp, -128, 127);
            assert!(
                a <= lo.min(0.0) + s && b >= hi.max(0.0) - s,
                "{lo} {hi}: {a} {b}"
            );
            assert_eq!(quantize_value(0.0, s, zp), zp);
        }
        assert_eq!(choose_qparams(0.0, 6.0, -128, 127).1, -128);
        assert_eq!(choose_qparams(0.0, 0.0, -128, 127).0, MIN_SCALE);
    }

    #[test]
    fn pruned_channel_keeps_its_bias() {
        // Channel 1 is all zeros with a bias of 3.5: the spec's max/127 scale is 0.
        let w = [0.5, -0.25, 0.0, 0.0];
        let b = [0.1, 3.5];
        let in_scale = 0.02;
        let (q, s) = quantize_weights_per_channel(&w, &[2, 2], 0, Some(&b), in_scale);
        assert_eq!(&q[2..], &[0, 0]);
        let (qb, bs) = quantize_bias(&b, in_scale, &s);
        let back = qb[1] as f32 * bs[1];
        assert!((back - 3.5).abs() < 1e-3, "bias comes back as {back}");
        assert!(qb[1].unsigned_abs() as f64 <= BIAS_LIMIT);
    }
}
