//! The dynamic-range input's range and quantization with NEON (baseline ARMv8, every aarch64
//! path): `FMINNM`/`FMAXNM` over four independent vectors (a NaN never replaces the running
//! value, as in the oracle's select), and `FCVTAS`, which rounds half away from zero, turns NaN
//! into 0 and saturates: the oracle's `x.round() as i32` in one instruction.

use std::arch::aarch64::*;

use crate::engine::kernels::scalar::hybrid::{self as oracle, InputQuant};

/// The smallest and largest of `values` (see `scalar::hybrid::min_max`). `-0.0` and `0.0`
/// may come out either way, which no quantization parameter distinguishes.
pub fn min_max(values: &[f32]) -> (f32, f32) {
    let chunks = values.chunks_exact(16);
    let tail = chunks.remainder();
    // SAFETY: NEON is baseline on aarch64; every load reads 4 floats inside a 16-float chunk.
    let (lo, hi) = unsafe {
        let mut lo = [vdupq_n_f32(f32::INFINITY); 4];
        let mut hi = [vdupq_n_f32(f32::NEG_INFINITY); 4];
        for c in chunks {
            for i in 0..4 {
                let x = vld1q_f32(c.as_ptr().add(4 * i));
                lo[i] = vminnmq_f32(lo[i], x);
                hi[i] = vmaxnmq_f32(hi[i], x);
            }
        }
        let lo = vminnmq_f32(vminnmq_f32(lo[0], lo[1]), vminnmq_f32(lo[2], lo[3]));
        let hi = vmaxnmq_f32(vmaxnmq_f32(hi[0], hi[1]), vmaxnmq_f32(hi[2], hi[3]));
        (vminnmvq_f32(lo), vmaxnmvq_f32(hi))
    };
    oracle::combine((lo, hi), oracle::min_max(tail))
}

/// `values` quantized into `out` with `q` (see `InputQuant::apply`), 16 values a step.
pub fn quantize_with(q: &InputQuant, values: &[f32], out: &mut [i8]) {
    assert_eq!(values.len(), out.len(), "quantize: lengths differ");
    if q.zero {
        out.fill(0);
        return;
    }
    let n = values.len() / 16 * 16;
    // SAFETY: NEON is baseline on aarch64; each step reads 16 floats of `c` and writes 16
    // bytes of `o`, both chunks of exactly that length.
    unsafe {
        let inv = vdupq_n_f32(q.inv);
        let zp = vdupq_n_s32(q.zp);
        let (lo256, hi256) = (vdupq_n_s32(-256), vdupq_n_s32(256));
        let (lo_q, hi_q) = (vdupq_n_s32(q.lo_q), vdupq_n_s32(127));
        let one = |p: *const f32| {
            let r = vcvtaq_s32_f32(vmulq_f32(vld1q_f32(p), inv));
            let r = vaddq_s32(vminq_s32(vmaxq_s32(r, lo256), hi256), zp);
            vminq_s32(vmaxq_s32(r, lo_q), hi_q)
        };
        for (c, o) in values[..n]
            .chunks_exact(16)
            .zip(out[..n].chunks_exact_mut(16))
        {
            let p = c.as_ptr();
            let a = vcombine_s16(vqmovn_s32(one(p)), vqmovn_s32(one(p.add(4))));
            let b = vcombine_s16(vqmovn_s32(one(p.add(8))), vqmovn_s32(one(p.add(12))));
            vst1q_s8(o.as_mut_ptr(), vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)));
        }
    }
    q.apply(&values[n..], &mut out[n..]);
}
