//! aarch64 NEON kernels: baseline (SMLAL/SADALP), dotprod (SDOT) and i8mm (SMMLA).
//!
//! SDOT and SMMLA are emitted with inline assembly because their intrinsics are
//! not stable in Rust; each such function enables the matching target feature
//! and is only called after runtime detection.
//!
//! Files: `gemm_i8.rs` (packed int8 GEMM, one micro-kernel per path), `requant.rs` (TFLite
//! per-channel requantization), `depthwise.rs` (int8, dynamic-range and f32 depthwise),
//! `gemm_f32.rs` (FMLA), `elementwise.rs` (table lookups of quantized binary operators),
//! `hybrid.rs` (the dynamic-range input's range and quantization).
//! Every function is bit-exact (int8) or within rounding (f32) of `kernels::scalar`; see
//! `tests/kernels_aarch64.rs`.

mod depthwise;
pub(crate) use depthwise::prewarm_scratch;
mod elementwise;
mod gemm_f32;
mod gemm_i8;
pub mod hybrid;
mod requant;

pub use depthwise::{depthwise_f32, depthwise_hybrid, depthwise_i8};
pub use elementwise::lut2_u8;
pub use gemm_f32::{gemm_f32, pack_f32};
pub use gemm_i8::{gemm_i8, gemm_requant_i8, pack_i8, packed_len_i8};
pub use requant::requant_i8;
