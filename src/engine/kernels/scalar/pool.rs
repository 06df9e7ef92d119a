//! Reference max / average pooling over NHWC tensors (`g.in_c == g.out_c`,
//! dilation 1). Only positions inside the input take part; the average
//! divides by the number of such positions.

use super::conv::ConvGeom;
use crate::engine::quant::QType;

/// Valid filter ranges `(fy0..fy1, fx0..fx1)` of output position `(oy, ox)`.
#[inline(always)]
fn window(g: &ConvGeom, oy: usize, ox: usize) -> (usize, usize, usize, usize) {
    let y0 = (oy * g.stride_h) as isize - g.pad_top as isize;
    let x0 = (ox * g.stride_w) as isize - g.pad_left as isize;
    let fy0 = (-y0).max(0) as usize;
    let fy1 = (g.in_h as isize - y0).clamp(0, g.filter_h as isize) as usize;
    let fx0 = (-x0).max(0) as usize;
    let fx1 = (g.in_w as isize - x0).clamp(0, g.filter_w as isize) as usize;
    (fy0, fy1.max(fy0), fx0, fx1.max(fx0))
}

macro_rules! pool_loop {
    ($g:expr, |$b:ident, $oy:ident, $ox:ident, $c:ident, $o:ident, $iy0:ident, $ix0:ident, $fy0:ident, $fy1:ident, $fx0:ident, $fx1:ident| $body:block) => {{
        let g = $g;
        let mut $o = 0usize;
        for $b in 0..g.batch {
            for $oy in 0..g.out_h {
                for $ox in 0..g.out_w {
                    let ($fy0, $fy1, $fx0, $fx1) = window(g, $oy, $ox);
                    let $iy0 = ($oy * g.stride_h) as isize - g.pad_top as isize;
                    let $ix0 = ($ox * g.stride_w) as isize - g.pad_left as isize;
                    for $c in 0..g.out_c {
                        $body
                        $o += 1;
                    }
                }
            }
        }
    }};
}

#[inline(always)]
fn at(g: &ConvGeom, b: usize, iy0: isize, ix0: isize, fy: usize, fx: usize, c: usize) -> usize {
    let y = (iy0 + fy as isize) as usize;
    let x = (ix0 + fx as isize) as usize;
    ((b * g.in_h + y) * g.in_w + x) * g.in_c + c
}

/// Float max pool with activation clamp.
pub fn max_pool_f32(g: &ConvGeom, input: &[f32], clamp: (f32, f32), output: &mut [f32]) {
    pool_loop!(g, |b, oy, ox, c, o, iy0, ix0, fy0, fy1, fx0, fx1| {
        let mut m = f32::MIN;
        for fy in fy0..fy1 {
            for fx in fx0..fx1 {
                m = m.max(input[at(g, b, iy0, ix0, fy, fx, c)]);
            }
        }
        output[o] = m.max(clamp.0).min(clamp.1);
    })
}

/// Float average pool with activation clamp.
pub fn avg_pool_f32(g: &ConvGeom, input: &[f32], clamp: (f32, f32), output: &mut [f32]) {
    pool_loop!(g, |b, oy, ox, c, o, iy0, ix0, fy0, fy1, fx0, fx1| {
        let mut sum = 0.0f32;
        for fy in fy0..fy1 {
            for fx in fx0..fx1 {
                sum += input[at(g, b, iy0, ix0, fy, fx, c)];
            }
        }
        let count = ((fy1 - fy0) * (fx1 - fx0)) as f32;
        // A window entirely in padding cannot occur for valid geometry; keep 0 then.
        let avg = if count > 0.0 { sum / count } else { 0.0 };
        output[o] = avg.max(clamp.0).min(clamp.1);
    })
}

/// Quantized max pool (input and output share quantization) with clamp `[act_min, act_max]`.
pub fn max_pool_q<T: QType>(
    g: &ConvGeom,
    input: &[T],
    act_min: i32,
    act_max: i32,
    output: &mut [T],
) {
    pool_loop!(g, |b, oy, ox, c, o, iy0, ix0, fy0, fy1, fx0, fx1| {
        let mut m = T::RANGE.min;
        for fy in fy0..fy1 {
            for fx in fx0..fx1 {
                m = m.max(input[at(g, b, iy0, ix0, fy, fx, c)].to_i32());
            }
        }
        output[o] = T::from_i32(m.clamp(act_min, act_max));
    })
}

/// Quantized average pool: the sum over valid positions divided by their count,
/// rounded half away from zero, clamped to `[act_min, act_max]`.
pub fn avg_pool_q<T: QType>(
    g: &ConvGeom,
    input: &[T],
    act_min: i32,
    act_max: i32,
    output: &mut [T],
) {
    pool_loop!(g, |b, oy, ox, c, o, iy0, ix0, fy0, fy1, fx0, fx1| {
        let mut sum = 0i32;
        for fy in fy0..fy1 {
            for fx in fx0..fx1 {
                sum += input[at(g, b, iy0, ix0, fy, fx, c)].to_i32();
            }
        }
        let count = ((fy1 - fy0) * (fx1 - fx0)) as i32;
        let avg = if count == 0 {
            0
        } else if sum > 0 {
            (sum + count / 2) / count
        } else {
            (sum - count / 2) / count
        };
        output[o] = T::from_i32(avg.clamp(act_min, act_max));
    })
}
