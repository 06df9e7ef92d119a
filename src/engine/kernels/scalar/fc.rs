//! Reference fully connected layer: `output[b, o] = sum_i input[b, i] * weights[o, i] + bias[o]`.
//! `input` is `[batch, depth]`, `weights` `[units, depth]`, `output` `[batch, units]`, each a
//! (possibly strided) matrix view; `bias` has `units` values.

use crate::engine::kernels::{Clamp, Mat, MatMut};
use crate::engine::quant::{QType, RequantPerChannel};

/// Checks the views' shapes and extents; returns (batch, units).
fn check<T>(input: &Mat<'_, T>, weights: &Mat<'_, T>, output: &MatMut<'_, T>) -> (usize, usize) {
    assert!(
        input.holds() && weights.holds() && output.holds(),
        "fc: a view does not hold its rows"
    );
    assert!(
        input.cols == weights.cols && output.rows == input.rows && output.cols == weights.rows,
        "fc: shapes disagree"
    );
    (input.rows, weights.rows)
}

/// Float fully connected with fused activation clamp.
pub fn fc_f32(
    input: Mat<'_, f32>,
    weights: Mat<'_, f32>,
    bias: Option<&[f32]>,
    clamp: Clamp,
    mut output: MatMut<'_, f32>,
) {
    let (batch, units) = check(&input, &weights, &output);
    for b in 0..batch {
        let x = input.row(b);
        let y = output.row_mut(b);
        for o in 0..units {
            let w = weights.row(o);
            let mut acc = 0.0f32;
            for (a, c) in x.iter().zip(w) {
                acc += a * c;
            }
            if let Some(bias) = bias {
                acc += bias[o];
            }
            y[o] = clamp.apply(acc);
        }
    }
}

/// Quantized fully connected (int8 per-tensor or per-channel, uint8 per-tensor).
/// `q.multipliers`/`q.shifts` have `units` entries. Requantized with one rounding
/// ([`RequantPerChannel::finish_single`]), as TFLite's reference FULLY_CONNECTED does.
pub fn fc_q<T: QType>(
    input: Mat<'_, T>,
    weights: Mat<'_, T>,
    bias: Option<&[i32]>,
    q: &RequantPerChannel<'_>,
    mut output: MatMut<'_, T>,
) {
    let (batch, units) = check(&input, &weights, &output);
    for b in 0..batch {
        let x = input.row(b);
        let y = output.row_mut(b);
        for o in 0..units {
            let w = weights.row(o);
            let mut acc = 0i32;
            for (&a, &c) in x.iter().zip(w) {
                acc = acc
                    .wrapping_add((c.to_i32() + q.filter_offset) * (a.to_i32() + q.input_offset));
            }
            if let Some(bias) = bias {
                acc = acc.wrapping_add(bias[o]);
            }
            y[o] = T::from_i32(q.finish_single(acc, o));
        }
    }
}
