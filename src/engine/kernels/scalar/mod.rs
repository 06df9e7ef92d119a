//! Portable scalar reference kernels: the oracle every SIMD kernel is tested against.

pub mod conv;
pub mod fc;
pub mod pool;
pub mod quant;
pub mod reduce;

/// Reference int8 dot product.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}
