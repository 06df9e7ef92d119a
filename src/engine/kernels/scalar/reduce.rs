//! Reference MEAN kernels, following the paths TFLite's reference MEAN takes.
//!
//! The general reduction walks the input in row-major order and adds each
//! element into its output slot: `out_strides[d]` is the output stride of input
//! dimension `d`, 0 for a reduced dimension.

use crate::engine::quant::{multiply_by_quantized_multiplier, QType};

/// Add every input element into `sums[output index]`. `counter` has `dims.len()` entries
/// and is scratch. `sums` is cleared first.
fn reduce_sum<T: Copy, A: Copy + Default>(
    dims: &[usize],
    out_strides: &[usize],
    input: &[T],
    counter: &mut [usize],
    sums: &mut [A],
    add: impl Fn(A, T) -> A,
) {
    sums.fill(A::default());
    counter.fill(0);
    let rank = dims.len();
    let mut oi = 0usize;
    for &x in input {
        sums[oi] = add(sums[oi], x);
        let mut d = rank;
        while d > 0 {
            d -= 1;
            counter[d] += 1;
            oi += out_strides[d];
            if counter[d] < dims[d] {
                break;
            }
            oi -= out_strides[d] * dims[d];
            counter[d] = 0;
        }
    }
}

/// Float mean over the reduced dimensions (`count` elements per output).
pub fn mean_f32(
    dims: &[usize],
    out_strides: &[usize],
    count: usize,
    input: &[f32],
    counter: &mut [usize],
    output: &mut [f32],
) {
    reduce_sum(dims, out_strides, input, counter, output, |a, x| a + x);
    let n = count as f32;
    for v in output.iter_mut() {
        *v /= n;
    }
}

/// Integer sums of the raw quantized values (no zero point removed).
pub fn sum_q<T: QType>(
    dims: &[usize],
    out_strides: &[usize],
    input: &[T],
    counter: &mut [usize],
    sums: &mut [i32],
) {
    reduce_sum(dims, out_strides, input, counter, sums, |a: i32, x: T| {
        a.wrapping_add(x.to_i32())
    });
}

/// Quantized mean, TFLite's fixed-point `QuantizedMeanOrSum` (what the REF
/// resolver of current TFLite/LiteRT runs for every int8/uint8 MEAN):
/// `out = clamp(mbqm(sum - in_zp * count, multiplier, shift) + out_zp)`, where
/// `(multiplier, shift)` already include the `1 / count` factor
/// (see [`mean_multiplier`]).
pub fn mean_q<T: QType>(
    sums: &[i32],
    count: usize,
    input_zero_point: i32,
    multiplier: i32,
    shift: i32,
    output_zero_point: i32,
    output: &mut [T],
) {
    let zp_total = input_zero_point as i64 * count as i64;
    for (o, &s) in output.iter_mut().zip(sums) {
        let shifted = (s as i64 - zp_total) as i32;
        let v = multiply_by_quantized_multiplier(shifted, multiplier, shift)
            .wrapping_add(output_zero_point);
        *o = T::from_i32(v);
    }
}

/// Fold `1 / count` into the quantized multiplier `(multiplier, shift)` of
/// `input_scale / output_scale`, as TFLite does: `s = min(floor(log2 count), 32,
/// 31 + shift)`, `multiplier' = (multiplier << s) / count`, `shift' = shift - s`.
pub fn mean_multiplier(multiplier: i32, shift: i32, count: usize) -> (i32, i32) {
    if count == 0 {
        return (multiplier, shift);
    }
    let s = (count.ilog2() as i32).min(32).min(31 + shift).max(0);
    let m = ((multiplier as i64) << s) / count as i64;
    (m as i32, shift - s)
}
