//! Scalar reference arithmetic of the quantized binary operators (ADD, SUB, MUL),
//! following TFLite's reference integer kernels exactly.

use crate::engine::quant::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_smaller_than_one,
    quantize_multiplier, quantize_multiplier_smaller_than_one, QRange,
};

/// The quantization of a binary operator's operands, from which its parameters are
/// prepared: (scale, zero point) of the two inputs and the output, and the output's clamp
/// range (the fused activation's, inside the stored type's range).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BinaryQuant {
    pub in1: (f32, i32),
    pub in2: (f32, i32),
    pub out: (f32, i32),
    pub act: QRange,
}

/// Parameters of quantized ADD/SUB (TFLite's `ArithmeticParams` for add/sub).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddSubParams {
    pub in1_offset: i32,
    pub in2_offset: i32,
    pub out_offset: i32,
    pub left_shift: i32,
    pub in1_mult: i32,
    pub in1_shift: i32,
    pub in2_mult: i32,
    pub in2_shift: i32,
    pub out_mult: i32,
    pub out_shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

impl AddSubParams {
    /// Prepare as TFLite's add.cc/sub.cc do for int8/uint8 (left shift 20).
    pub fn new(q: &BinaryQuant) -> Result<Self, String> {
        Self::with_left_shift(20, q)
    }

    /// The same preparation with another left shift (15: TFLite's general-scale
    /// int16 ADD/SUB).
    pub fn with_left_shift(left_shift: i32, q: &BinaryQuant) -> Result<Self, String> {
        let BinaryQuant {
            in1: (s1, z1),
            in2: (s2, z2),
            out: (so, zo),
            act: QRange {
                min: act_min,
                max: act_max,
            },
        } = *q;
        let twice_max = 2.0 * (s1.max(s2) as f64);
        let (in1_mult, in1_shift) = quantize_multiplier_smaller_than_one(s1 as f64 / twice_max)?;
        let (in2_mult, in2_shift) = quantize_multiplier_smaller_than_one(s2 as f64 / twice_max)?;
        let (out_mult, out_shift) = quantize_multiplier_smaller_than_one(
            twice_max / (((1i64 << left_shift) as f64) * so as f64),
        )?;
        Ok(AddSubParams {
            in1_offset: -z1,
            in2_offset: -z2,
            out_offset: zo,
            left_shift,
            in1_mult,
            in1_shift,
            in2_mult,
            in2_shift,
            out_mult,
            out_shift,
            act_min,
            act_max,
        })
    }
}

#[inline(always)]
fn scaled(p: &AddSubParams, a: i32, b: i32) -> (i32, i32) {
    let x = (p.in1_offset + a) * (1 << p.left_shift);
    let y = (p.in2_offset + b) * (1 << p.left_shift);
    (
        multiply_by_quantized_multiplier_smaller_than_one(x, p.in1_mult, p.in1_shift),
        multiply_by_quantized_multiplier_smaller_than_one(y, p.in2_mult, p.in2_shift),
    )
}

/// One quantized ADD element (raw stored values in, raw stored value out).
#[inline(always)]
pub fn add_q(p: &AddSubParams, a: i32, b: i32) -> i32 {
    let (x, y) = scaled(p, a, b);
    let r = multiply_by_quantized_multiplier_smaller_than_one(x + y, p.out_mult, p.out_shift)
        + p.out_offset;
    r.clamp(p.act_min, p.act_max)
}

/// One quantized SUB element.
#[inline(always)]
pub fn sub_q(p: &AddSubParams, a: i32, b: i32) -> i32 {
    let (x, y) = scaled(p, a, b);
    let r = multiply_by_quantized_multiplier_smaller_than_one(x - y, p.out_mult, p.out_shift)
        + p.out_offset;
    r.clamp(p.act_min, p.act_max)
}

/// Parameters of quantized MUL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulParams {
    pub in1_offset: i32,
    pub in2_offset: i32,
    pub out_offset: i32,
    pub mult: i32,
    pub shift: i32,
    pub act_min: i32,
    pub act_max: i32,
}

impl MulParams {
    pub fn new(q: &BinaryQuant) -> Self {
        let BinaryQuant {
            in1: (s1, z1),
            in2: (s2, z2),
            out: (so, zo),
            act: QRange {
                min: act_min,
                max: act_max,
            },
        } = *q;
        let (mult, shift) = quantize_multiplier(s1 as f64 * s2 as f64 / so as f64);
        MulParams {
            in1_offset: -z1,
            in2_offset: -z2,
            out_offset: zo,
            mult,
            shift,
            act_min,
            act_max,
        }
    }
}

/// One quantized MUL element.
#[inline(always)]
pub fn mul_q(p: &MulParams, a: i32, b: i32) -> i32 {
    let prod = (p.in1_offset + a) * (p.in2_offset + b);
    let r = multiply_by_quantized_multiplier(prod, p.mult, p.shift) + p.out_offset;
    r.clamp(p.act_min, p.act_max)
}

/// Float ADD/SUB/MUL with the fused activation clamp.
#[inline(always)]
pub fn add_f32(a: f32, b: f32, lo: f32, hi: f32) -> f32 {
    (a + b).max(lo).min(hi)
}
#[inline(always)]
pub fn sub_f32(a: f32, b: f32, lo: f32, hi: f32) -> f32 {
    (a - b).max(lo).min(hi)
}
#[inline(always)]
pub fn mul_f32(a: f32, b: f32, lo: f32, hi: f32) -> f32 {
    (a * b).max(lo).min(hi)
}

/// A quantized binary operator as the table of its 256 x 256 results: `out[i] =
/// lut[(a[i] as usize) << 8 | b[i] as usize]` for `i < out.len()` (`a` and `b` at least as long).
pub fn lut2_u8(lut: &[u8; 1 << 16], a: &[u8], b: &[u8], out: &mut [u8]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = lut[(x as usize) << 8 | y as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_same_scale_is_exact_sum() {
        let q = BinaryQuant {
            in1: (0.1, 0),
            in2: (0.1, 0),
            out: (0.1, 0),
            act: QRange {
                min: -128,
                max: 127,
            },
        };
        let p = AddSubParams::new(&q).unwrap();
        for a in -50..50 {
            for b in -50..50 {
                assert_eq!(add_q(&p, a, b), a + b);
                assert_eq!(sub_q(&p, a, b), a - b);
            }
        }
    }

    #[test]
    fn mul_matches_float_within_one_lsb() {
        let q = BinaryQuant {
            in1: (0.05, 3),
            in2: (0.1, -2),
            out: (0.02, 1),
            act: QRange {
                min: -128,
                max: 127,
            },
        };
        let p = MulParams::new(&q);
        for a in -128..128 {
            for b in [-128, -7, 0, 9, 127] {
                let real = 0.05 * (a - 3) as f64 * 0.1 * (b + 2) as f64;
                let want = (real / 0.02 + 1.0).clamp(-128.0, 127.0);
                let got = mul_q(&p, a, b);
                // TFLite rounds twice (high multiply, then shift): up to one step off.
                assert!(
                    (got as f64 - want).abs() <= 1.0 + 1e-6,
                    "{a} {b} {got} {want}"
                );
            }
        }
    }
}
