//! MEAN: float / int8 / uint8. Quantized means follow the fixed-point
//! `QuantizedMeanOrSum` that TFLite's reference MEAN runs (checked against the
//! BUILTIN_REF resolver of ai_edge_litert 2.3.0 on every axis pattern,
//! including the 4-D H×W case and equal input/output quantization).

use std::marker::PhantomData;

use super::common::{check_dtype, in_slice, out_slice, per_tensor_quant, zero_point, QElem};
use super::{BuildCtx, Kernel, OpIo};
use crate::engine::error::OpResult;
use crate::engine::graph::Node;
use crate::engine::kernels::scalar::reduce::{mean_f32, mean_multiplier, mean_q, sum_q};
use crate::engine::quant::quantize_multiplier;
use crate::engine::tensor::DType;
use crate::op_bail;

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

struct MeanQ<T> {
    l: Layout,
    in_zp: i32,
    multiplier: i32,
    shift: i32,
    out_zp: i32,
    counter: Vec<usize>,
    sums: Vec<i32>,
    _t: PhantomData<T>,
}

impl<T: QElem> Kernel for MeanQ<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let l = &self.l;
        let input = in_slice(io, 0, l.in_len, T::view)?;
        let out = out_slice(io, l.out_len, T::view_mut)?;
        if l.in_len == 0 {
            out.fill(T::from_i32(0));
            return Ok(());
        }
        sum_q(
            &l.dims,
            &l.out_strides,
            input,
            &mut self.counter,
            &mut self.sums,
        );
        mean_q(
            &self.sums,
            l.count,
            self.in_zp,
            self.multiplier,
            self.shift,
            self.out_zp,
            out,
        );
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
        _ => op_bail!("missing axis operand"),
    };
    let raw_axes = axis_t.ints()?;
    let rank = input.shape.len();
    let mut reduced = vec![false; rank];
    for &a in &raw_axes {
        let r = if a < 0 { a + rank as i64 } else { a };
        if r < 0 || r >= rank as i64 {
            op_bail!("axis {a} out of range for rank {rank}");
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
        op_bail!(
            "output '{}' has shape {:?}, expected {want:?}",
            output.name,
            output.shape
        );
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
    match input.dtype {
        DType::F32 => Ok(Box::new(MeanF32 { l, counter })),
        DType::I8 => build_q::<i8>(ctx, node, l, counter),
        DType::U8 => build_q::<u8>(ctx, node, l, counter),
        d => op_bail!("input type {} is not supported", d.name()),
    }
}

fn build_q<T: QElem>(
    ctx: &BuildCtx<'_>,
    node: &Node,
    l: Layout,
    counter: Vec<usize>,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    let iq = per_tensor_quant(input, "input")?;
    let oq = per_tensor_quant(output, "output")?;
    let in_zp = zero_point::<T>(iq, input)?;
    let out_zp = zero_point::<T>(oq, output)?;
    let (m, s) = quantize_multiplier(iq.scale[0] as f64 / oq.scale[0] as f64);
    if s > 30 {
        op_bail!("input/output scale ratio too large");
    }
    let (multiplier, shift) = mean_multiplier(m, s, l.count);
    let sums = vec![0i32; l.out_len];
    Ok(Box::new(MeanQ::<T> {
        l,
        in_zp,
        multiplier,
        shift,
        out_zp,
        counter,
        sums,
        _t: PhantomData,
    }))
}
