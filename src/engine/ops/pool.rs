//! MAX_POOL_2D and AVERAGE_POOL_2D: float / int8 / uint8 / int16 (16x8 models).

use std::marker::PhantomData;

use super::common::{
    check_dtype, float_clamp, in_slice, out_slice, per_tensor_quant, symmetric16, window_geom,
    zero_point, QElem, Window,
};
use super::{BuildCtx, Kernel, OpIo};
use crate::engine::error::{OpError, OpResult};
use crate::engine::graph::{Node, Pool2DOptions};
use crate::engine::kernels::scalar::conv::ConvGeom;
use crate::engine::kernels::scalar::pool::{avg_pool_f32, avg_pool_q, max_pool_f32, max_pool_q};
use crate::engine::quant::activation_range_quantized;
use crate::engine::tensor::DType;
use crate::op_bail;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PoolKind {
    Max,
    Average,
}

struct PoolF32 {
    g: ConvGeom,
    kind: PoolKind,
    clamp: (f32, f32),
}

impl Kernel for PoolF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.f32())?;
        let out = out_slice(io, g.output_len(), |t| t.f32())?;
        match self.kind {
            PoolKind::Max => max_pool_f32(&g, input, self.clamp, out),
            PoolKind::Average => avg_pool_f32(&g, input, self.clamp, out),
        }
        Ok(())
    }
}

struct PoolQ<T> {
    g: ConvGeom,
    kind: PoolKind,
    act_min: i32,
    act_max: i32,
    _t: PhantomData<T>,
}

impl<T: QElem> Kernel for PoolQ<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), T::view)?;
        let out = out_slice(io, g.output_len(), T::view_mut)?;
        match self.kind {
            PoolKind::Max => max_pool_q(&g, input, self.act_min, self.act_max, out),
            PoolKind::Average => avg_pool_q(&g, input, self.act_min, self.act_max, out),
        }
        Ok(())
    }
}

pub(super) fn build_pool(
    ctx: &BuildCtx<'_>,
    node: &Node,
    o: &Pool2DOptions,
    kind: PoolKind,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    if input.shape.len() != 4 {
        op_bail!(
            "input '{}' must have rank 4, has shape {:?}",
            input.name,
            input.shape
        );
    }
    let window = Window {
        filter_h: o.filter_h,
        filter_w: o.filter_w,
        padding: o.padding,
        stride: (o.stride_h, o.stride_w),
        dilation: (1, 1),
    };
    let g = window_geom(input, output, input.shape[3], &window)?;
    check_dtype(output, input.dtype, "output")?;
    match input.dtype {
        DType::F32 => Ok(Box::new(PoolF32 {
            g,
            kind,
            clamp: float_clamp(o.activation)?,
        })),
        DType::I8 => build_q::<i8>(ctx, node, g, o, kind),
        DType::U8 => build_q::<u8>(ctx, node, g, o, kind),
        DType::I16 => build_q::<i16>(ctx, node, g, o, kind),
        d => op_bail!("input type {} is not supported", d.name()),
    }
}

fn build_q<T: QElem>(
    ctx: &BuildCtx<'_>,
    node: &Node,
    g: ConvGeom,
    o: &Pool2DOptions,
    kind: PoolKind,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let output = ctx.output(node, 0)?;
    per_tensor_quant(input, "input")?;
    let oq = per_tensor_quant(output, "output")?;
    let out_zp = zero_point::<T>(oq, output)?;
    // TFLite's int16 pools, as every 16x8 operator, take symmetric tensors.
    if T::DTYPE == DType::I16 {
        symmetric16(node.op.name(), input, output)?;
    }
    // TFLite's quantized pools pass values through unchanged (no rescaling);
    // the activation clamp is computed from the output parameters.
    let act =
        activation_range_quantized(o.activation, oq.scale[0], out_zp, T::RANGE).map_err(OpError)?;
    let (act_min, act_max) = (act.min, act.max);
    Ok(Box::new(PoolQ::<T> {
        g,
        kind,
        act_min,
        act_max,
        _t: PhantomData,
    }))
}
