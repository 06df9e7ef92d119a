//! aarch64 NEON kernels: baseline (SMLAL/SADALP), dotprod (SDOT) and i8mm (SMMLA).
//!
//! SDOT and SMMLA are emitted with inline assembly because their intrinsics are
//! not stable in Rust; each such function enables the matching target feature
//! and is only called after runtime detection.
//!
//! Files: `gemm_i8.rs` (packed int8 GEMM, one micro-kernel per path), `requant.rs` (TFLite
//! per-channel requantization), `depthwise.rs` (int8 and f32 depthwise), `gemm_f32.rs` (FMLA),
//! `elementwise.rs` (table lookups of quantized binary operators).
//! Every function is bit-exact (int8) or within rounding (f32) of `kernels::scalar`; see
//! `tests/kernels_aarch64.rs`.

use std::arch::aarch64::*;
use std::arch::asm;

use super::KernelPath;

mod depthwise;
pub(crate) use depthwise::prewarm_scratch;
mod elementwise;
mod gemm_f32;
mod gemm_i8;
mod requant;

pub use depthwise::{depthwise_f32, depthwise_i8};
pub use elementwise::lut2_u8;
pub use gemm_f32::{gemm_f32, pack_f32};
pub use gemm_i8::{gemm_i8, gemm_requant_i8, pack_i8, packed_len_i8};
pub use requant::requant_i8;

/// int8 dot product on a NEON path. Callers check `path.supported()`.
pub fn dot_i8(path: KernelPath, a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let body = n / 16 * 16;
    let head = match path {
        // SAFETY: the caller checked at run time that the CPU has dotprod; the
        // function reads only a[..body] and b[..body], which are in bounds.
        KernelPath::Dotprod | KernelPath::I8mm => unsafe { dot_i8_sdot(&a[..body], &b[..body]) },
        // SAFETY: NEON is mandatory on aarch64; reads stay within a[..body], b[..body].
        _ => unsafe { dot_i8_neon(&a[..body], &b[..body]) },
    };
    head + super::scalar::dot_i8(&a[body..n], &b[body..n])
}

/// Baseline NEON: widening multiplies (SMULL/SMULL2) and pairwise accumulate (SADALP).
#[target_feature(enable = "neon")]
unsafe fn dot_i8_neon(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = vdupq_n_s32(0);
    let mut i = 0;
    while i + 16 <= a.len() {
        // SAFETY: i + 16 <= a.len() == b.len(), so both 16-byte loads are in bounds.
        let (va, vb) = unsafe { (vld1q_s8(a.as_ptr().add(i)), vld1q_s8(b.as_ptr().add(i))) };
        let lo = vmull_s8(vget_low_s8(va), vget_low_s8(vb));
        let hi = vmull_high_s8(va, vb);
        acc = vpadalq_s16(acc, lo);
        acc = vpadalq_s16(acc, hi);
        i += 16;
    }
    vaddvq_s32(acc)
}

/// dotprod: SDOT accumulates four int8 products into each int32 lane.
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot_i8_sdot(a: &[i8], b: &[i8]) -> i32 {
    let mut acc = vdupq_n_s32(0);
    let mut i = 0;
    while i + 16 <= a.len() {
        // SAFETY: i + 16 <= a.len() == b.len(), so both 16-byte loads are in bounds.
        let (va, vb) = unsafe { (vld1q_s8(a.as_ptr().add(i)), vld1q_s8(b.as_ptr().add(i))) };
        // SAFETY: SDOT only reads and writes registers; dotprod is enabled on this function.
        unsafe {
            asm!("sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc, a = in(vreg) va, b = in(vreg) vb,
                options(pure, nomem, nostack));
        }
        i += 16;
    }
    vaddvq_s32(acc)
}
