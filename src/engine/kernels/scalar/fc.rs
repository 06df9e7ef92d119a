//! Reference fully connected layer: `output[b, o] = sum_i input[b, i] * weights[o, i] + bias[o]`.
//! `input` is `[batch, depth]`, `weights` `[units, depth]`, `output` `[batch, units]`.
//! Callers guarantee the slice sizes.

use crate::engine::quant::{QType, RequantPerChannel};

/// Float fully connected with fused activation clamp.
#[allow(clippy::too_many_arguments)]
pub fn fc_f32(
    batch: usize,
    depth: usize,
    units: usize,
    input: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    output: &mut [f32],
) {
    for b in 0..batch {
        let x = &input[b * depth..(b + 1) * depth];
        for o in 0..units {
            let w = &weights[o * depth..(o + 1) * depth];
            let mut acc = 0.0f32;
            for (a, c) in x.iter().zip(w) {
                acc += a * c;
            }
            if let Some(bias) = bias {
                acc += bias[o];
            }
            output[b * units + o] = acc.max(clamp.0).min(clamp.1);
        }
    }
}

/// Quantized fully connected (int8 per-tensor or per-channel, uint8 per-tensor).
/// `q.multipliers`/`q.shifts` have `units` entries. Requantized with one rounding
/// ([`RequantPerChannel::finish_single`]), as TFLite's reference FULLY_CONNECTED does.
#[allow(clippy::too_many_arguments)]
pub fn fc_q<T: QType>(
    batch: usize,
    depth: usize,
    units: usize,
    input: &[T],
    weights: &[T],
    bias: Option<&[i32]>,
    q: &RequantPerChannel<'_>,
    output: &mut [T],
) {
    for b in 0..batch {
        let x = &input[b * depth..(b + 1) * depth];
        for o in 0..units {
            let w = &weights[o * depth..(o + 1) * depth];
            let mut acc = 0i32;
            for (&a, &c) in x.iter().zip(w) {
                acc = acc
                    .wrapping_add((c.to_i32() + q.filter_offset) * (a.to_i32() + q.input_offset));
            }
            if let Some(bias) = bias {
                acc = acc.wrapping_add(bias[o]);
            }
            output[b * units + o] = T::from_i32(q.finish_single(acc, o));
        }
    }
}
