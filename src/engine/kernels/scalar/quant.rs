//! The quantization arithmetic moved to [`crate::engine::quant`], the engine's
//! one quantization vocabulary.

// Re-exported for the x86_64 kernels and the kernel dispatch; to be removed
// once they import `crate::engine::quant` directly.
pub use crate::engine::quant::{
    multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single,
    RequantPerChannel as Requant,
};
