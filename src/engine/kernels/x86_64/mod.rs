//! x86_64 kernels, one file per kernel and instruction set: AVX2 (+ FMA), and for the
//! AVX-512 path the VNNI int8 GEMM ([`gemm_vnni`]), int8 depthwise convolution
//! ([`depthwise_vnni`]), float32 GEMM ([`gemm_f32_avx512`]) and float32 depthwise
//! convolution ([`depthwise_f32_avx512`]). Each file's entry points run one instruction
//! set; `kernels/mod.rs` picks them (the AVX-512 path runs the AVX2 kernels for the rest).

pub mod conv16_avx2;
pub mod depthwise_f32_avx2;
pub mod depthwise_f32_avx512;
pub mod depthwise_i8_avx2;
pub mod depthwise_vnni;
mod fuse;
pub mod gemm_f32_avx2;
pub mod gemm_f32_avx512;
pub mod gemm_i8_avx2;
pub mod gemm_vnni;
pub mod hybrid_avx2;
mod lanes;
pub mod requant_avx2;
