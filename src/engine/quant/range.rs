//! Quantized values and ranges: the storage range of a quantized type, the
//! quantization and dequantization of one value, and the clamp range of a
//! fused activation.

use crate::engine::graph::Activation;

/// An inclusive range of quantized values: the storage range of a quantized
/// type, or the clamp bounds of a fused activation inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QRange {
    pub min: i32,
    pub max: i32,
}

impl QRange {
    /// Whether `v` lies in the range.
    #[inline(always)]
    pub fn contains(self, v: i32) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// `v` clamped to the range.
    #[inline(always)]
    pub fn clamp(self, v: i32) -> i32 {
        v.clamp(self.min, self.max)
    }
}

/// Storage range of int8.
pub const I8_RANGE: QRange = QRange {
    min: i8::MIN as i32,
    max: i8::MAX as i32,
};

/// Storage range of (legacy) uint8.
pub const U8_RANGE: QRange = QRange {
    min: u8::MIN as i32,
    max: u8::MAX as i32,
};

/// Storage range of int16.
pub const I16_RANGE: QRange = QRange {
    min: i16::MIN as i32,
    max: i16::MAX as i32,
};

/// A quantized storage type (int8, legacy uint8, int16) seen as int32 by the kernels.
pub trait QType: Copy + Send + Sync + 'static {
    /// The storage range.
    const RANGE: QRange;
    fn to_i32(self) -> i32;
    /// Narrow a value already clamped to [`Self::RANGE`].
    fn from_i32(v: i32) -> Self;
}

impl QType for i8 {
    const RANGE: QRange = I8_RANGE;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v.clamp(Self::RANGE.min, Self::RANGE.max) as i8
    }
}

impl QType for u8 {
    const RANGE: QRange = U8_RANGE;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v.clamp(Self::RANGE.min, Self::RANGE.max) as u8
    }
}

impl QType for i16 {
    const RANGE: QRange = I16_RANGE;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v.clamp(Self::RANGE.min, Self::RANGE.max) as i16
    }
}

/// TFLite's round-half-away-from-zero quantization of one real value.
pub fn quantize_value(v: f32, scale: f32, zero_point: i32) -> i32 {
    zero_point + (v / scale).round() as i32
}

/// TFLite float→int quantization: `zp + round(x / scale)`, clamped.
#[inline(always)]
pub fn quantize_f32(x: f32, scale: f32, zp: i32, out: QRange) -> i32 {
    let r = (x / scale).round() as i32;
    r.saturating_add(zp).clamp(out.min, out.max)
}

/// TFLite dequantization: `float(double(scale) * (v - zp))`.
#[inline(always)]
pub fn dequantize(v: i32, scale: f32, zp: i32) -> f32 {
    (scale as f64 * (v - zp) as f64) as f32
}

/// TFLite's CalculateActivationRangeQuantized: the clamp bounds of a fused
/// activation for an output with (scale, zero_point) stored in `range`.
pub fn activation_range_quantized(
    act: Activation,
    scale: f32,
    zero_point: i32,
    range: QRange,
) -> Result<QRange, String> {
    let q = |v: f32| quantize_value(v, scale, zero_point);
    let QRange {
        min: qmin,
        max: qmax,
    } = range;
    let (min, max) = match act {
        Activation::None => (qmin, qmax),
        Activation::Relu => (qmin.max(q(0.0)), qmax),
        Activation::Relu6 => (qmin.max(q(0.0)), qmax.min(q(6.0))),
        Activation::ReluN1To1 => (qmin.max(q(-1.0)), qmax.min(q(1.0))),
        other => {
            return Err(format!(
                "fused activation {other:?} is not supported on quantized operators"
            ))
        }
    };
    Ok(QRange { min, max })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_ranges() {
        assert_eq!(
            activation_range_quantized(Activation::Relu6, 0.05, -128, I8_RANGE).unwrap(),
            QRange { min: -128, max: -8 }
        );
        assert_eq!(
            activation_range_quantized(Activation::None, 0.05, 3, I8_RANGE).unwrap(),
            I8_RANGE
        );
    }
}
