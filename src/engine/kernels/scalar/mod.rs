//! Portable scalar reference kernels: the oracle every SIMD kernel is tested against.

pub mod activation;
pub mod conv;
pub mod conv16;
pub mod copy;
pub mod elementwise;
pub mod fc;
pub mod gemm;
pub mod hybrid;
pub mod pool;
pub mod reduce;
pub mod resize;
