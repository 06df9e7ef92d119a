//! Scalar reference arithmetic of the activation and (de)quantization operators.
//!
//! Quantized unary operators on 8-bit data are evaluated through a 256-entry
//! table: the functions here compute one table entry with TFLite's exact
//! reference arithmetic, and [`apply_lut`] applies a table.

use super::quant::{multiply_by_quantized_multiplier, quantize_multiplier};

/// Storage range of an 8-bit quantized type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QRange {
    pub min: i32,
    pub max: i32,
}

pub const I8_RANGE: QRange = QRange {
    min: -128,
    max: 127,
};
pub const U8_RANGE: QRange = QRange { min: 0, max: 255 };

/// Apply a 256-entry table indexed by the stored byte.
pub fn apply_lut(table: &[u8; 256], input: &[u8], output: &mut [u8]) {
    for (o, &i) in output.iter_mut().zip(input) {
        *o = table[i as usize];
    }
}

/// Build a table: `f` maps a stored input value (as i32) to a stored output value.
pub fn build_lut(range: QRange, mut f: impl FnMut(i32) -> i32) -> [u8; 256] {
    let mut t = [0u8; 256];
    for v in range.min..=range.max {
        t[(v as u8) as usize] = f(v) as u8;
    }
    t
}

/// TFLite's `PopulateLookupTable` entry: dequantize in float, apply `f`,
/// requantize with `round(y * (1/scale_out))` (half away from zero) and clamp.
pub fn float_lut_entry(
    v: i32,
    in_scale: f32,
    in_zp: i32,
    out_scale: f32,
    out_zp: i32,
    out: QRange,
    f: impl Fn(f32) -> f32,
) -> i32 {
    let inv = 1.0f32 / out_scale;
    let x = in_scale * (v - in_zp) as f32;
    let r = (f(x) * inv).round();
    let q = (r + out_zp as f32) as i32;
    q.clamp(out.min, out.max)
}

/// Float logistic as TFLite's reference kernel computes it.
pub fn logistic_f32(x: f32) -> f32 {
    const CUTOFF_UPPER: f32 = 16.619_047;
    const CUTOFF_LOWER: f32 = -9.0;
    if x > CUTOFF_UPPER {
        1.0
    } else if x < CUTOFF_LOWER {
        x.exp()
    } else {
        1.0 / (1.0 + (-x).exp())
    }
}

/// Float logistic as TFLite's table builder computes it.
pub fn logistic_plain_f32(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub fn tanh_f32(x: f32) -> f32 {
    x.tanh()
}

pub fn hard_swish_f32(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

pub fn leaky_relu_f32(x: f32, alpha: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        x * alpha
    }
}

/// Parameters of quantized HARD_SWISH (TFLite's `HardSwishParams`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardSwishParams {
    pub in_zp: i32,
    pub out_zp: i32,
    pub reluish_mult: i16,
    pub reluish_exp: i32,
    pub out_mult: i16,
    pub out_exp: i32,
}

fn downscale_to_i16(m: i32) -> i16 {
    const ROUND: i32 = 1 << 15;
    if m >= i32::MAX - ROUND {
        return i16::MAX;
    }
    ((m + ROUND) >> 16) as i16
}

impl HardSwishParams {
    pub fn new(in_scale: f32, in_zp: i32, out_scale: f32, out_zp: i32) -> Result<Self, String> {
        let hires_in_scale = (1.0f32 / 128.0) * in_scale;
        let reluish_scale = 3.0f32 / 32768.0;
        let out_m = hires_in_scale / out_scale;
        let (om, oe) = quantize_multiplier(out_m as f64);
        if oe > 0 {
            return Err("HARD_SWISH output multiplier exponent must be <= 0".into());
        }
        let rel_m = hires_in_scale / reluish_scale;
        let (rm, re) = quantize_multiplier(rel_m as f64);
        if om < 0 || rm < 0 {
            return Err("negative HARD_SWISH multiplier".into());
        }
        Ok(HardSwishParams {
            in_zp,
            out_zp,
            reluish_mult: downscale_to_i16(rm),
            reluish_exp: re,
            out_mult: downscale_to_i16(om),
            out_exp: oe,
        })
    }
}

fn srdhm16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    let ab = a as i32 * b as i32;
    let nudge = if ab >= 0 { 1 << 14 } else { 1 - (1 << 14) };
    ((ab + nudge) / (1 << 15)) as i16
}

fn sdhm16(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        return i16::MAX;
    }
    ((a as i32 * b as i32) / (1 << 15)) as i16
}

fn sat_shl16(a: i16, s: i32) -> i16 {
    (a as i32 * (1i32 << s)).clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

fn rdbp16(x: i16, e: i32) -> i16 {
    let mask = ((1i32 << e) - 1) as i16;
    let rem = x & mask;
    let thr = (mask >> 1) + i16::from(x < 0);
    (x >> e) + i16::from(rem > thr)
}

/// One quantized HARD_SWISH element (TFLite's int16-intermediate reference).
pub fn hard_swish_q(p: &HardSwishParams, v: i32, out: QRange) -> i32 {
    let input = (v - p.in_zp) as i16;
    let hires = input.wrapping_mul(1 << 7);
    let pre_out = srdhm16(hires, p.out_mult);
    let mut r = hires;
    if p.reluish_exp > 0 {
        r = sat_shl16(r, p.reluish_exp - 1);
    }
    r = srdhm16(r, p.reluish_mult);
    if p.reluish_exp > 0 {
        r = sat_shl16(r, 1);
    }
    if p.reluish_exp < 0 {
        r = rdbp16(r, -p.reluish_exp);
    }
    let r = ((r as i32 + (1 << 15)) >> 1) as i16;
    let pre = sdhm16(r, pre_out);
    let o = rdbp16(pre, -p.out_exp) as i32 + p.out_zp;
    o.clamp(out.min, out.max)
}

/// A requantization `zp_out + M * (v - zp_in)` with TFLite's fixed-point multiplier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requant {
    pub in_zp: i32,
    pub out_zp: i32,
    pub mult: i32,
    pub shift: i32,
}

impl Requant {
    pub fn new(real: f64, in_zp: i32, out_zp: i32) -> Self {
        let (mult, shift) = quantize_multiplier(real);
        Requant {
            in_zp,
            out_zp,
            mult,
            shift,
        }
    }
    #[inline(always)]
    pub fn apply(&self, v: i32) -> i32 {
        self.out_zp + multiply_by_quantized_multiplier(v - self.in_zp, self.mult, self.shift)
    }
}

/// One quantized LEAKY_RELU element.
pub fn leaky_relu_q(identity: &Requant, alpha: &Requant, v: i32, out: QRange) -> i32 {
    let o = if v - identity.in_zp >= 0 {
        identity.apply(v)
    } else {
        alpha.apply(v)
    };
    o.clamp(out.min, out.max)
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

/// TFLite's softmax exponent table: entry `255 - d` is `exp(-in_scale * beta * d)`.
pub fn softmax_exp_table(in_scale: f32, beta: f32) -> [f32; 256] {
    let scale = -in_scale * beta;
    let mut t = [0f32; 256];
    for d in 0..256i32 {
        t[(255 - d) as usize] = (scale * d as f32).exp();
    }
    t
}

/// One row of quantized SOFTMAX (TFLite's table-based kernel). `rd` reads a
/// stored input value. int8 outputs round half away from zero; uint8 outputs
/// use `trunc(p + 0.5)` as TFLite does on x86.
#[allow(clippy::too_many_arguments)]
pub fn softmax_q_row(
    table: &[f32; 256],
    x: &[u8],
    y: &mut [u8],
    rd: impl Fn(u8) -> i32,
    out_scale: f32,
    out_zp: i32,
    out: QRange,
    signed: bool,
) {
    let max = x.iter().map(|&v| rd(v)).max().unwrap_or(0);
    let e = |v: u8| table[(255 - max + rd(v)).clamp(0, 255) as usize];
    let mut sum = 0f32;
    for &v in x {
        sum += e(v);
    }
    let inv = 1.0f32 / (sum * out_scale);
    for (o, &v) in y.iter_mut().zip(x) {
        let p = e(v) * inv;
        let q = if signed {
            p.round() as i32
        } else {
            (p + 0.5) as i32
        };
        let q = (q + out_zp).clamp(out.min, out.max);
        *o = if signed { q as i8 as u8 } else { q as u8 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_swish_tracks_float() {
        let p = HardSwishParams::new(0.05, 0, 0.03, -100).unwrap();
        for v in -128..128 {
            let x = 0.05 * v as f32;
            let want = hard_swish_f32(x) / 0.03 - 100.0;
            let got = hard_swish_q(&p, v, I8_RANGE);
            if (-128.0..=127.0).contains(&want) {
                assert!((got as f32 - want).abs() <= 1.5, "{v}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn lut_roundtrip() {
        let t = build_lut(I8_RANGE, |v| v.saturating_add(1).min(127));
        let inp: Vec<u8> = [-128i8, 0, 5, 127].iter().map(|&v| v as u8).collect();
        let mut out = vec![0u8; 4];
        apply_lut(&t, &inp, &mut out);
        let out: Vec<i8> = out.iter().map(|&v| v as i8).collect();
        assert_eq!(out, vec![-127, 1, 6, 127]);
    }
}
