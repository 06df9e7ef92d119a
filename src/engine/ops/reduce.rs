//! MEAN: float / int8 / uint8, following the paths of TFLite's reference MEAN:
//! - int8 / uint8, rank 4, keep_dims, axis exactly `[1, 2]` or `[2, 1]`: the
//!   dedicated H×W kernels (fixed-point);
//! - otherwise, same input/output scale and zero point: integer sum / count (truncating);
//! - otherwise: `QuantizedMeanOrSum` (float requantization).

use std::marker::PhantomData;

use super::conv::{check_dtype, in_slice, out_slice, per_tensor_quant, zero_point, QElem};
use super::{BuildCtx, Kernel, OpIo};
use crate::engine::error::OpResult;
use crate::engine::graph::Node;
use crate::engine::kernels::scalar::quant::quantize_multiplier;
use crate::engine::kernels::scalar::reduce::{
    mean_f32, mean_hw_i8, mean_hw_u8, mean_q_rescale, mean_q_same_scale, sum_q,
};
use crate::engine::tensor::DType;

/// The reduction layout shared by all paths.
#[derive(Clone, Debug)]
struct Layout {
    dims: Vec<usize>,
    out_strides: Vec<usize>,
    in_len: usize,
    out_len: usize,
    /// Elements averaged into each output.
    count: usize,
}

struct MeanF32 {
    l: Layout,
    counter: Vec<usize>,
}

impl Kernel for MeanF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let l = &self.l;
        let input = in_slice(io, 0, l.in_len, |t| t.f32())?;
        let out = out_slice(io, l.out_len, |t| t.f32())?;
        mean_f32(
            &l.dims,
            &l.out_strides,
            l.count,
            input,
            &mut self.counter,
            out,
        );
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum QPath {
    /// NHWC mean over H, W (int8): zero points, multiplier, shift.
    HwI8 {
        in_zp: i32,
        multiplier: i32,
        shift: i32,
        out_zp: i32,
    },
    /// NHWC mean over H, W (uint8): multiplier, shift, bias.
    HwU8 {
        multiplier: i32,
        shift: i32,
        bias: i32,
    },
    SameScale,
    Rescale {
        in_zp: i32,
        in_scale: f32,
        out_zp: i32,
        out_scale: f32,
    },
}

struct MeanQ<T> {
    l: Layout,
    path: QPath,
    counter: Vec<usize>,
    sums: Vec<i32>,
    _t: PhantomData<T>,
}

/// Run the fixed-point H×W path for the concrete element type.
trait HwMean: QElem {
    fn hw(l: &Layout, path: QPath, input: &[Self], out: &mut [Self]) -> bool;
}

impl HwMean for i8 {
    fn hw(l: &Layout, path: QPath, input: &[i8], out: &mut [i8]) -> bool {
        if let QPath::HwI8 {
            in_zp,
            multiplier,
            shift,
            out_zp,
        } = path
        {
            let d = &l.dims;
            mean_hw_i8(
                d[0], d[1], d[2], d[3], input, in_zp, multiplier, shift, out_zp, out,
            );
            return true;
        }
        false
    }
}

impl HwMean for u8 {
    fn hw(l: &Layout, path: QPath, input: &[u8], out: &mut [u8]) -> bool {
        if let QPath::HwU8 {
            multiplier,
            shift,
            bias,
        } = path
        {
            let d = &l.dims;
            mean_hw_u8(d[0], d[1], d[2], d[3], input, multiplier, shift, bias, out);
            return true;
        }
        false
    }
}

impl<T: HwMean> Kernel for MeanQ<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let l = &self.l;
        let input = in_slice(io, 0, l.in_len, T::view)?;
        let out = out_slice(io, l.out_len, T::view_mut)?;
        if l.in_len == 0 {
            out.fill(T::from_i32(0));
            return Ok(());
        }
        if T::hw(l, self.path, input, out) {
            return Ok(());
        }
        sum_q(
            &l.dims,
            &l.out_strides,
            input,
            &mut self.counter,
            &mut self.sums,
        );
        match self.path {
            QPath::Rescale {
                in_zp,
                in_scale,
                out_zp,
                out_scale,
            } => mean_q_rescale(&self.sums, l.count, in_zp, in_scale, out_zp, out_scale, out),
            _ => mean_q_same_scale(&self.sums, l.count, out),
        }
        Ok(())
    }
}

pub(super) fn build_mean(
    ctx: &BuildCtx<'_>,
    node: &Node,
    keep_dims: bool,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    let axis_t = match node.inputs.get(1) {
        Some(Some(t)) => ctx
            .const_data(*t)?
            .ok_or("the axis operand must be constant")?,
        _ => return Err("missing axis operand".into()),
    };
    let raw_axes = axis_t.ints()?;
    let rank = input.shape.len();
    let mut reduced = vec![false; rank];
    for &a in &raw_axes {
        let r = if a < 0 { a + rank as i64 } else { a };
        if r < 0 || r >= rank as i64 {
            return Err(format!("axis {a} out of range for rank {rank}").into());
        }
        reduced[r as usize] = true;
    }
    // Output strides of each input dimension (0 where reduced).
    let mut out_strides = vec![0usize; rank];
    let mut stride = 1usize;
    for d in (0..rank).rev() {
        if !reduced[d] {
            out_strides[d] = stride;
            stride *= input.shape[d];
        }
    }
    let out_len = stride;
    let count: usize = (0..rank)
        .filter(|&d| reduced[d])
        .map(|d| input.shape[d])
        .product();
    let want: Vec<usize> = (0..rank)
        .filter_map(|d| {
            if reduced[d] {
                keep_dims.then_some(1)
            } else {
                Some(input.shape[d])
            }
        })
        .collect();
    // Shape-compatible outputs are accepted (e.g. `[1]` for a full reduction).
    if output.num_elements() != out_len || (keep_dims && output.shape != want) {
        return Err(format!(
            "output '{}' has shape {:?}, expected {want:?}",
            output.name, output.shape
        )
        .into());
    }
    check_dtype(output, input.dtype, "output")?;
    let l = Layout {
        dims: input.shape.clone(),
        out_strides,
        in_len: input.num_elements(),
        out_len,
        count,
    };
    let counter = vec![0usize; rank];
    let hw_special = keep_dims && rank == 4 && (raw_axes == [1, 2] || raw_axes == [2, 1]);
    match input.dtype {
        DType::F32 => Ok(Box::new(MeanF32 { l, counter })),
        DType::I8 => build_q::<i8>(ctx, node, l, counter, hw_special),
        DType::U8 => build_q::<u8>(ctx, node, l, counter, hw_special),
        d => Err(format!("input type {} is not supported", d.name()).into()),
    }
}

fn build_q<T: HwMean>(
    ctx: &BuildCtx<'_>,
    node: &Node,
    l: Layout,
    counter: Vec<usize>,
    hw_special: bool,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    let iq = per_tensor_quant(input, "input")?;
    let oq = per_tensor_quant(output, "output")?;
    let in_zp = zero_point::<T>(iq, input)?;
    let out_zp = zero_point::<T>(oq, output)?;
    let (in_s, out_s) = (iq.scale[0], oq.scale[0]);
    let path = if hw_special && T::DTYPE == DType::I8 {
        let (multiplier, shift) = quantize_multiplier(in_s as f64 / out_s as f64);
        if shift > 30 {
            return Err("input/output scale ratio too large".into());
        }
        QPath::HwI8 {
            in_zp,
            multiplier,
            shift,
            out_zp,
        }
    } else if hw_special {
        let n = (l.dims[1] * l.dims[2]) as f32;
        let t = in_zp as f32 * in_s / out_s;
        let t = if t > 0.0 { t + 0.5 } else { t - 0.5 };
        let bias = out_zp - t as i32;
        let (multiplier, shift) = quantize_multiplier((in_s / (n * out_s)) as f64);
        if shift > 30 {
            return Err("input/output scale ratio too large".into());
        }
        QPath::HwU8 {
            multiplier,
            shift,
            bias,
        }
    } else if in_zp == out_zp && in_s == out_s {
        QPath::SameScale
    } else {
        QPath::Rescale {
            in_zp,
            in_scale: in_s,
            out_zp,
            out_scale: out_s,
        }
    };
    let sums = vec![0i32; l.out_len];
    Ok(Box::new(MeanQ::<T> {
        l,
        path,
        counter,
        sums,
        _t: PhantomData,
    }))
}
