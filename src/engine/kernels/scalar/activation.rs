//! Scalar reference arithmetic of the activation and (de)quantization operators.
//!
//! Quantized unary operators on 8-bit data are evaluated through a 256-entry
//! table: the functions here compute one table entry with TFLite's exact
//! reference arithmetic, and [`apply_lut`] applies a table.

use crate::engine::quant::{
    multiply_by_quantized_multiplier, quantize_multiplier, QRange, RequantPerTensor,
};

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

/// One quantized LEAKY_RELU element.
pub fn leaky_relu_q(
    identity: &RequantPerTensor,
    alpha: &RequantPerTensor,
    v: i32,
    out: QRange,
) -> i32 {
    let o = if v - identity.in_zp >= 0 {
        identity.apply(v)
    } else {
        alpha.apply(v)
    };
    o.clamp(out.min, out.max)
}

/// Float PRELU over one period of the broadcast alpha: `y = x >= 0 ? x : alpha * x`
/// element by element (`x`, `alpha` and `y` of one length; a branch-free select the
/// compiler vectorizes).
pub fn prelu_f32(x: &[f32], alpha: &[f32], y: &mut [f32]) {
    for ((o, &v), &a) in y.iter_mut().zip(x).zip(alpha) {
        *o = if v >= 0.0 { v } else { v * a };
    }
}

/// Parameters of quantized (8-bit) PRELU (TFLite's `PreluParams`): the input's
/// offset `x - in_zp` goes through `identity` (input scale / output scale) where it
/// is >= 0, else `(x - in_zp) * (alpha - alpha_zp)` goes through `alpha` (input scale
/// × alpha scale / output scale, input zero point 0); both add the output zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreluQParams {
    pub identity: RequantPerTensor,
    pub alpha: RequantPerTensor,
    pub alpha_zp: i32,
    pub out: QRange,
}

/// Quantized PRELU of one stored value `x` with its stored alpha `a`, clamped to the
/// output type.
#[inline(always)]
pub fn prelu_q(p: &PreluQParams, x: i32, a: i32) -> i32 {
    let o = if x - p.identity.in_zp >= 0 {
        p.identity.apply(x)
    } else {
        p.alpha.apply((x - p.identity.in_zp) * (a - p.alpha_zp))
    };
    o.clamp(p.out.min, p.out.max)
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

/// Parameters of quantized (8-bit) SOFTMAX: the exponent table ([`softmax_exp_table`]), the
/// output's scale, zero point and range, and whether stored values are int8 (else uint8).
#[derive(Clone, Debug)]
pub struct SoftmaxQParams {
    pub table: [f32; 256],
    pub out_scale: f32,
    pub out_zp: i32,
    pub out: QRange,
    pub signed: bool,
}

/// One row of quantized SOFTMAX (TFLite's table-based kernel). `rd` reads a
/// stored input value. int8 outputs round half away from zero; uint8 outputs
/// use `trunc(p + 0.5)` as TFLite does on x86.
pub fn softmax_q_row(p: &SoftmaxQParams, x: &[u8], y: &mut [u8], rd: impl Fn(u8) -> i32) {
    let SoftmaxQParams {
        ref table,
        out_scale,
        out_zp,
        out,
        signed,
    } = *p;
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

// ---------------------------------------------------------------- int16 LOGISTIC / TANH

/// TFLite's sigmoid table for the int16 LOGISTIC and TANH kernels:
/// `sigmoid(i / 24)` in unsigned 0.16 fixed point (data, not derivable exactly
/// from a formula: TFLite's rounding of some entries differs by one).
#[rustfmt::skip]
const SIGMOID_TABLE_U16: [u16; 256] = [
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498, 40149,
    40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255, 46817, 47369,
    47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865, 52311, 52745, 53169,
    53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174, 56503, 56823, 57133, 57433,
    57724, 58007, 58280, 58544, 58800, 59048, 59288, 59519, 59743, 59959, 60168, 60370,
    60565, 60753, 60935, 61110, 61279, 61441, 61599, 61750, 61896, 62036, 62172, 62302,
    62428, 62549, 62666, 62778, 62886, 62990, 63090, 63186, 63279, 63368, 63454, 63536,
    63615, 63691, 63765, 63835, 63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308,
    64357, 64405, 64450, 64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786,
    64816, 64845, 64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079,
    65097, 65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360, 65367,
    65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425, 65429, 65433,
    65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465, 65468, 65471, 65474,
    65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491, 65493, 65495, 65497, 65498,
    65500, 65501, 65503, 65504, 65505, 65507, 65508, 65509, 65510, 65511, 65512, 65513,
    65514, 65515, 65516, 65517, 65517, 65518, 65519, 65520, 65520, 65521, 65522, 65522,
    65523, 65523, 65524, 65524, 65525, 65525, 65526, 65526, 65526, 65527, 65527, 65528,
    65528, 65528, 65529, 65529, 65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531,
    65531, 65531, 65531, 65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533,
    65533, 65533, 65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65534, 65535,
];

/// Input rescaling of an int16 LOGISTIC / TANH, fixed when the model is built.
///
/// The table is indexed by `|x| * 3 / 4` in Q3.12 for logistic (Q4.11 steps for
/// tanh): a power-of-two input scale with the expected exponent uses the
/// multiplier `3 << shift` directly; any other scale gets an integer multiplier
/// towards `1 / (3 * 4096)` and a rounding right shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lut16Params {
    pub multiplier: i32,
    pub shift: i32,
}

impl Lut16Params {
    /// TFLite's Prepare for int16 LOGISTIC (`tanh == false`) and TANH.
    pub fn new(in_scale: f32, tanh: bool) -> Self {
        // CheckedLog2 in float: a power of two within 1e-3 of the rounded log.
        let l = in_scale.ln() * (1.0f32 / 2.0f32.ln());
        let lr = l.round();
        let pot = (l - lr).abs() < 1e-3;
        let shift = 12 + lr as i32;
        if pot && (shift == 0 || (tanh && shift == 1)) {
            return Self {
                multiplier: 3 << shift,
                shift: 0,
            };
        }
        let mut m = in_scale as f64 * 4096.0 * 3.0;
        let mut shift = 0;
        while m <= 32767.0 / 2.0 && shift <= 30 {
            shift += 1;
            m *= 2.0;
        }
        Self {
            multiplier: m as i32,
            shift,
        }
    }

    #[inline(always)]
    fn scaled(&self, x: i16) -> i32 {
        let round = if self.shift > 0 {
            1 << (self.shift - 1)
        } else {
            0
        };
        (x as i32).wrapping_mul(self.multiplier).wrapping_add(round) >> self.shift
    }
}

/// Interpolated table value at `a` with `bits` fraction bits per table step.
#[inline(always)]
fn sigmoid_interp(a: u32, bits: u32, saturated: u32) -> u32 {
    let h = (a >> bits) as usize;
    if h >= 255 {
        return saturated;
    }
    let lo = SIGMOID_TABLE_U16[h] as u32;
    let hi = SIGMOID_TABLE_U16[h + 1] as u32;
    let t = a & ((1 << bits) - 1);
    (lo << bits) + t * (hi - lo)
}

/// int16 LOGISTIC of one value (output scale 1/32768, zero point 0), TFLite's
/// reference arithmetic.
#[inline]
pub fn logistic_i16(p: &Lut16Params, x: i16) -> i16 {
    let v = p.scaled(x);
    let r = sigmoid_interp(v.unsigned_abs(), 9, 0x7FFF << 10);
    let r = if v >= 0 {
        r + (1 << 9)
    } else {
        (1u32 << 25) - r + (1 << 9) - 1
    };
    (r >> 10) as i16
}

/// int16 TANH of one value (output scale 1/32768, zero point 0) through
/// `tanh(x) = 2 * sigmoid(2x) - 1`, TFLite's reference arithmetic.
#[inline]
pub fn tanh_i16(p: &Lut16Params, x: i16) -> i16 {
    let v = p.scaled(x);
    let r = sigmoid_interp(v.unsigned_abs(), 8, 0xFFFF << 8) as i32;
    let r = if v >= 0 {
        r - (1 << 23) + (1 << 7)
    } else {
        -r + (1 << 23) + (1 << 7) - 1
    };
    (r >> 8) as i16
}

// ---------------------------------------------------------------- int16 SOFTMAX

/// A 513-entry int16 table of `f` on `[input_min, input_max]` with output
/// range [-1, 1], TFLite's `gen_lut` in double: samples biased by half the error
/// of linear interpolation at each segment's midpoint.
pub fn lut_populate_i16(input_min: f64, input_max: f64, f: impl Fn(f64) -> f64) -> [i16; 513] {
    let step = (input_max - input_min) / 512.0;
    let half_step = step / 2.0;
    let inv = 65536.0f64 / 2.0;
    let clamp = |v: f64| v.clamp(i16::MIN as f64, i16::MAX as f64) as i16;
    let mut lut = [0i16; 513];
    for (i, o) in lut.iter_mut().take(512).enumerate() {
        let at = input_min + i as f64 * step;
        let val = f(at);
        let val_mid = f(at + half_step);
        let val_next = f(input_min + (i + 1) as f64 * step);
        let sample = (val * inv).round();
        let mid_interp = ((val_next * inv + (val * inv).round()) / 2.0).round();
        let mid_val = (val_mid * inv).round();
        let bias = ((mid_interp - mid_val) / 2.0).round();
        *o = clamp(sample - bias);
    }
    lut[512] = clamp((f(input_max) * inv).round());
    lut
}

/// Interpolated lookup of a 513-entry table (TFLite's int16 `lut_lookup`).
#[inline]
pub fn lut_lookup_i16(v: i16, lut: &[i16; 513]) -> i16 {
    let index = (256 + (v as i32 >> 7)) as usize;
    let offset = (v & 0x7f) as i32;
    let base = lut[index] as i32;
    let slope = (lut[index + 1] as i32 - base) as i16 as i32;
    (base + ((slope * offset + 64) >> 7)) as i16
}

/// The two tables and the input rescaling of an int16 SOFTMAX.
pub struct Softmax16 {
    exp_lut: [i16; 513],
    recip_lut: [i16; 513],
    multiplier: i32,
    shift: i32,
}

impl Softmax16 {
    /// TFLite's Prepare: `exp` on [-10, 0], `1 / (1 + x)` on [0, 1], and the
    /// input differences rescaled so that -65535 is -10.
    pub fn new(in_scale: f32, beta: f32) -> Self {
        let (multiplier, shift) =
            quantize_multiplier(in_scale as f64 * beta as f64 / (10.0 / 65535.0));
        Self {
            exp_lut: lut_populate_i16(-10.0, 0.0, f64::exp),
            recip_lut: lut_populate_i16(0.0, 1.0, |x| 1.0 / (1.0 + x)),
            multiplier,
            shift,
        }
    }

    /// One row (the last axis), output in Q0.15.
    pub fn row(&self, x: &[i16], y: &mut [i16]) {
        let max = x.iter().copied().max().unwrap_or(0) as i32;
        let mut sum = 0i32;
        for (o, &v) in y.iter_mut().zip(x) {
            let d = multiply_by_quantized_multiplier(v as i32 - max, self.multiplier, self.shift);
            let d = d.saturating_add(32767).clamp(-32768, 32767) as i16;
            *o = lut_lookup_i16(d, &self.exp_lut);
            sum = sum.wrapping_add(*o as i32);
        }
        let headroom_plus_one = (sum as u32).leading_zeros().clamp(1, 31);
        let shifted = (((sum as i64) << (headroom_plus_one - 1)) + (1 << 13)) >> 14;
        let sym = (shifted - (1 << 15) - (1 << 16)).clamp(-32768, 32767) as i16;
        let recip = lut_lookup_i16(sym, &self.recip_lut) as i64;
        let right_shift = 31 - headroom_plus_one;
        let round = if right_shift > 0 {
            1i64 << (right_shift - 1)
        } else {
            0
        };
        for o in y.iter_mut() {
            let r = (*o as i64 * recip + round) >> right_shift;
            *o = r.clamp(0, 32767) as i16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::quant::I8_RANGE;

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

    #[test]
    fn int16_logistic_tanh_shape() {
        // Power-of-two scale 2^-12: the table's own fixed point.
        let p = Lut16Params::new(1.0 / 4096.0, false);
        assert_eq!(
            p,
            Lut16Params {
                multiplier: 3,
                shift: 0
            }
        );
        assert_eq!(logistic_i16(&p, 0), 16384);
        let t = Lut16Params::new(1.0 / 2048.0, true);
        assert_eq!(
            t,
            Lut16Params {
                multiplier: 6,
                shift: 0
            }
        );
        assert_eq!(tanh_i16(&t, 0), 0);
        // sigmoid(8) at the top of the table's own range; saturation beyond it.
        assert_eq!(logistic_i16(&p, i16::MAX), 32757);
        let (ps, ts) = (
            Lut16Params::new(0.001, false),
            Lut16Params::new(0.001, true),
        );
        assert_eq!(logistic_i16(&ps, i16::MAX), 32767);
        assert_eq!(logistic_i16(&ps, i16::MIN), 1);
        assert_eq!(tanh_i16(&ts, i16::MAX), 32767);
        assert_eq!(tanh_i16(&ts, i16::MIN), -32767);
        // A general scale tracks the float functions within a few steps.
        let g = Lut16Params::new(0.000_37, false);
        let gt = Lut16Params::new(0.000_37, true);
        assert!(g.shift > 0 && g.multiplier > 16383 && g.multiplier <= 32767);
        for x in (-32768..=32767).step_by(97) {
            let f = 0.000_37 * x as f32;
            let want = logistic_plain_f32(f) * 32768.0;
            assert!(
                (logistic_i16(&g, x as i16) as f32 - want).abs() <= 4.0,
                "{x}"
            );
            let want = (f.tanh() * 32768.0).min(32767.0);
            assert!((tanh_i16(&gt, x as i16) as f32 - want).abs() <= 8.0, "{x}");
        }
    }
}
