//! Reference MEAN kernels, following the paths TFLite's reference MEAN takes.
//!
//! The general reduction walks the input in row-major order and adds each
//! element into its output slot: `out_strides[d]` is the output stride of input
//! dimension `d`, 0 for a reduced dimension.

use super::quant::{multiply_by_quantized_multiplier, QType};

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

/// Mean when input and output share scale and zero point: `sum / count`,
/// truncated toward zero (TFLite's generic integer `Mean`).
pub fn mean_q_same_scale<T: QType>(sums: &[i32], count: usize, output: &mut [T]) {
    let n = count as i32;
    for (o, &s) in output.iter_mut().zip(sums) {
        *o = T::from_i32(if n > 0 { s / n } else { 0 });
    }
}

/// Mean with requantization done in float (TFLite's `QuantizedMeanOrSum`):
/// `round(sum / count * (in_scale / out_scale) - in_zp * (in_scale / out_scale)) + out_zp`.
pub fn mean_q_rescale<T: QType>(
    sums: &[i32],
    count: usize,
    input_zero_point: i32,
    input_scale: f32,
    output_zero_point: i32,
    output_scale: f32,
    output: &mut [T],
) {
    let scale = input_scale / output_scale;
    let bias = (-input_zero_point) as f32 * scale;
    let n = count as f32;
    for (o, &s) in output.iter_mut().zip(sums) {
        let mean = s as f32 / n;
        let r = ((mean * scale + bias).round() + output_zero_point as f32)
            .min(T::QMAX as f32)
            .max(T::QMIN as f32);
        *o = T::from_i32(r as i32);
    }
}

/// int8 mean over H and W of an NHWC tensor (TFLite's `reference_integer_ops::Mean`):
/// `acc = sum(x - in_zp)`, `acc = mbqm(acc, multiplier, shift)`, divided by `h*w`
/// rounding half away from zero, `+ out_zp`, clamped to int8.
#[allow(clippy::too_many_arguments)]
pub fn mean_hw_i8(
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
    input: &[i8],
    input_zero_point: i32,
    multiplier: i32,
    shift: i32,
    output_zero_point: i32,
    output: &mut [i8],
) {
    let n = (h * w) as i32;
    for b in 0..batch {
        for ch in 0..c {
            let mut acc = 0i32;
            for p in 0..h * w {
                acc = acc.wrapping_add(input[(b * h * w + p) * c + ch] as i32 - input_zero_point);
            }
            acc = multiply_by_quantized_multiplier(acc, multiplier, shift);
            acc = if acc > 0 {
                (acc + n / 2) / n
            } else {
                (acc - n / 2) / n
            };
            output[b * c + ch] = i8::from_i32(acc.wrapping_add(output_zero_point));
        }
    }
}

/// uint8 mean over H and W of an NHWC tensor (TFLite's legacy uint8 `Mean`):
/// `acc = mbqm(sum(x), multiplier, shift) + bias`, clamped to uint8.
#[allow(clippy::too_many_arguments)]
pub fn mean_hw_u8(
    batch: usize,
    h: usize,
    w: usize,
    c: usize,
    input: &[u8],
    multiplier: i32,
    shift: i32,
    bias: i32,
    output: &mut [u8],
) {
    for b in 0..batch {
        for ch in 0..c {
            let mut acc = 0i32;
            for p in 0..h * w {
                acc = acc.wrapping_add(input[(b * h * w + p) * c + ch] as i32);
            }
            acc = multiply_by_quantized_multiplier(acc, multiplier, shift).wrapping_add(bias);
            output[b * c + ch] = u8::from_i32(acc);
        }
    }
}
