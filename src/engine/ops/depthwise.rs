//! DEPTHWISE_CONV_2D (any depth multiplier), float / int8 / uint8.

use std::marker::PhantomData;

use super::conv::{
    bias_info, check_dtype, check_rank, const_weights, conv_qparams, float_clamp, in_slice,
    out_slice, window_geom, MultiplierRule, QElem, QParams,
};
use super::{conv_fast, BuildCtx, Kernel, OpIo};
use crate::engine::error::OpResult;
use crate::engine::graph::{Activation, DepthwiseConv2DOptions, Node};
use crate::engine::kernels::scalar::conv::{depthwise_f32, depthwise_q, ConvGeom};
use crate::engine::tensor::DType;

struct DepthwiseF32 {
    g: ConvGeom,
    mult: usize,
    has_bias: bool,
    clamp: (f32, f32),
}

impl Kernel for DepthwiseF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.f32())?;
        let filter = in_slice(io, 1, g.filter_h * g.filter_w * g.out_c, |t| t.f32())?;
        let bias = if self.has_bias {
            Some(in_slice(io, 2, g.out_c, |t| t.f32())?)
        } else {
            None
        };
        let out = out_slice(io, g.output_len(), |t| t.f32())?;
        depthwise_f32(&g, self.mult, input, filter, bias, self.clamp, out);
        Ok(())
    }
}

struct DepthwiseQ<T> {
    g: ConvGeom,
    mult: usize,
    has_bias: bool,
    q: QParams,
    _t: PhantomData<T>,
}

impl<T: QElem> Kernel for DepthwiseQ<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), T::view)?;
        let filter = in_slice(io, 1, g.filter_h * g.filter_w * g.out_c, T::view)?;
        let bias = if self.has_bias {
            Some(in_slice(io, 2, g.out_c, |t| t.i32())?)
        } else {
            None
        };
        let out = out_slice(io, g.output_len(), T::view_mut)?;
        depthwise_q(&g, self.mult, input, filter, bias, &self.q.view(), out);
        Ok(())
    }
}

pub(super) fn build_depthwise(
    ctx: &BuildCtx<'_>,
    node: &Node,
    o: &DepthwiseConv2DOptions,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let filter = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    check_rank(filter, 4, "filter")?;
    check_rank(input, 4, "input")?;
    if filter.shape[0] != 1 {
        return Err(format!(
            "filter '{}' has shape {:?}, expected [1, H, W, C*M]",
            filter.name, filter.shape
        )
        .into());
    }
    let (fh, fw, out_c) = (filter.shape[1], filter.shape[2], filter.shape[3]);
    let in_c = input.shape[3];
    if in_c == 0 || out_c % in_c != 0 {
        return Err(format!(
            "filter '{}' has {out_c} channels, not a multiple of the {in_c} input channels",
            filter.name
        )
        .into());
    }
    // TFLite's kernels derive the multiplier from the shapes; the option must agree
    // when it is set.
    let mult = out_c / in_c;
    if o.depth_multiplier != 0 && o.depth_multiplier != mult {
        return Err(format!(
            "depth_multiplier option {} disagrees with the shapes (filter {out_c} channels / input {in_c})",
            o.depth_multiplier
        )
        .into());
    }
    let g = window_geom(
        input,
        output,
        out_c,
        fh,
        fw,
        o.padding,
        (o.stride_h, o.stride_w),
        (o.dilation_h, o.dilation_w),
    )?;
    match input.dtype {
        DType::F32 if filter.dtype == DType::I8 => {
            let clamp = float_clamp(o.activation)?;
            super::hybrid::build(
                ctx,
                node,
                super::hybrid::HybridOp::Depthwise(g, mult),
                clamp,
            )
        }
        DType::F32 => {
            check_dtype(filter, DType::F32, "filter")?;
            check_dtype(output, DType::F32, "output")?;
            let has_bias = bias_info(ctx, node, DType::F32, out_c)?.is_some();
            let clamp = float_clamp(o.activation)?;
            if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.f32(), |t| t.f32())? {
                return Ok(Box::new(conv_fast::DepthwiseF32::new(
                    g,
                    mult,
                    w,
                    bias,
                    clamp,
                    ctx.kernels,
                    ctx.pool.clone(),
                )));
            }
            Ok(Box::new(DepthwiseF32 {
                g,
                mult,
                has_bias,
                clamp: float_clamp(o.activation)?,
            }))
        }
        DType::I8 => build_q::<i8>(
            ctx,
            node,
            g,
            mult,
            o.activation,
            MultiplierRule::PerChannelDouble,
        ),
        DType::U8 => build_q::<u8>(ctx, node, g, mult, o.activation, MultiplierRule::Legacy),
        DType::I16 => super::int16::build_depthwise(ctx, node, g, mult, o.activation),
        d => Err(format!("input type {} is not supported", d.name()).into()),
    }
}

fn build_q<T: QElem>(
    ctx: &BuildCtx<'_>,
    node: &Node,
    g: ConvGeom,
    mult: usize,
    act: Activation,
    rule: MultiplierRule,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let filter = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    check_dtype(filter, T::DTYPE, "filter")?;
    check_dtype(output, T::DTYPE, "output")?;
    let has_bias = bias_info(ctx, node, DType::I32, g.out_c)?.is_some();
    let q = conv_qparams::<T>(input, filter, output, g.out_c, 3, act, rule)?;
    if T::DTYPE == DType::I8 && q.filter_offset == 0 {
        if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.i8(), |t| t.i32())? {
            return Ok(Box::new(conv_fast::DepthwiseI8::new(
                g,
                mult,
                w,
                bias,
                q,
                ctx.kernels,
                ctx.pool.clone(),
            )));
        }
    }
    if T::DTYPE == DType::U8 && mult == 1 {
        if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.u8(), |t| t.i32())? {
            return Ok(Box::new(conv_fast::DepthwiseU8::new(
                g,
                w,
                bias,
                q,
                ctx.kernels,
                ctx.pool.clone(),
            )));
        }
    }
    Ok(Box::new(DepthwiseQ::<T> {
        g,
        mult,
        has_bias,
        q,
        _t: PhantomData,
    }))
}
