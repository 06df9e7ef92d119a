//! The convolution family: CONV_2D (here), DEPTHWISE_CONV_2D, FULLY_CONNECTED and
//! their dynamic-range ("hybrid") variants. One file per concern; a file uses only the
//! files below it in this list, never one above:
//!
//! - `mod.rs`: CONV_2D, built into the GEMM lowering or the reference kernel;
//! - [`depthwise`], [`fully_connected`]: the other two operators;
//! - [`hybrid`]: float input, int8 weights (all three operators);
//! - [`gemm`]: the GEMM lowering (int8, uint8 and float GEMM kernels with constant weights);
//! - [`im2col`]: the GEMM's left-hand rows of a convolution;
//! - [`tasks`]: how the work is cut into tasks across the interpreter's threads;
//! - [`params`]: the bias, constant weights and requantization parameters.
//!
//! The 16x8 (int16 activation) variants live in `ops/int16.rs` with the other int16
//! operators; they use [`params`] only.

use std::marker::PhantomData;

use crate::engine::error::OpResult;
use crate::engine::graph::{Activation, Conv2DOptions, Node};
use crate::engine::kernels::scalar::conv::{conv_f32, conv_q, ConvGeom};
use crate::engine::ops::common::{
    check_dtype, check_rank, float_clamp, in_slice, out_slice, window_geom, QElem, Window,
};
use crate::engine::ops::{int16, BuildCtx, Kernel, OpIo};
use crate::engine::tensor::DType;

mod depthwise;
mod fully_connected;
mod gemm;
mod hybrid;
mod im2col;
pub(super) mod params;
mod tasks;

use crate::op_bail;
pub(super) use depthwise::build_depthwise;
pub(super) use fully_connected::build_fully_connected;
use gemm::{gemm_shape, GemmF32, GemmI8, GemmU8};
use params::{bias_info, const_weights, conv_qparams, MultiplierRule, QParams};

// ---------------------------------------------------------------- CONV_2D

struct ConvF32 {
    g: ConvGeom,
    filter_len: usize,
    has_bias: bool,
    clamp: (f32, f32),
}

impl Kernel for ConvF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.f32())?;
        let filter = in_slice(io, 1, self.filter_len, |t| t.f32())?;
        let bias = if self.has_bias {
            Some(in_slice(io, 2, g.out_c, |t| t.f32())?)
        } else {
            None
        };
        let out = out_slice(io, g.output_len(), |t| t.f32())?;
        conv_f32(&g, input, filter, bias, self.clamp, out);
        Ok(())
    }
}

struct ConvQ<T> {
    g: ConvGeom,
    filter_len: usize,
    has_bias: bool,
    q: QParams,
    _t: PhantomData<T>,
}

impl<T: QElem> Kernel for ConvQ<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), T::view)?;
        let filter = in_slice(io, 1, self.filter_len, T::view)?;
        let bias = if self.has_bias {
            Some(in_slice(io, 2, g.out_c, |t| t.i32())?)
        } else {
            None
        };
        let out = out_slice(io, g.output_len(), T::view_mut)?;
        conv_q(&g, input, filter, bias, &self.q.view(), out);
        Ok(())
    }
}

pub(super) fn build_conv2d(
    ctx: &BuildCtx<'_>,
    node: &Node,
    o: &Conv2DOptions,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let filter = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    check_rank(filter, 4, "filter")?;
    let (out_c, fh, fw, fc) = (
        filter.shape[0],
        filter.shape[1],
        filter.shape[2],
        filter.shape[3],
    );
    let window = Window {
        filter_h: fh,
        filter_w: fw,
        padding: o.padding,
        stride: (o.stride_h, o.stride_w),
        dilation: (o.dilation_h, o.dilation_w),
    };
    let g = window_geom(input, output, out_c, &window)?;
    if fc != g.in_c {
        op_bail!(
            "filter '{}' has {fc} input channels, input '{}' has {} (grouped convolution is not supported)",
            filter.name, input.name, g.in_c
        );
    }
    let filter_len = filter.num_elements();
    match input.dtype {
        DType::F32 if filter.dtype == DType::I8 => {
            if g.dilation_h != 1 || g.dilation_w != 1 {
                return Err(
                    "dilated dynamic-range CONV_2D is not supported (TFLite's hybrid kernel ignores the dilation)"
                        .into(),
                );
            }
            let clamp = float_clamp(o.activation)?;
            hybrid::build(ctx, node, hybrid::HybridOp::Conv(g), clamp)
        }
        DType::F32 => {
            check_dtype(filter, DType::F32, "filter")?;
            check_dtype(output, DType::F32, "output")?;
            let has_bias = bias_info(ctx, node, DType::F32, out_c)?.is_some();
            let clamp = float_clamp(o.activation)?;
            if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.f32(), |t| t.f32())? {
                let (src, m, k) = gemm_shape(&g);
                let spec = gemm::GemmF32Spec {
                    src,
                    m,
                    k,
                    n: out_c,
                    input_len: g.input_len(),
                    w,
                    bias,
                    clamp,
                };
                return Ok(Box::new(GemmF32::new(spec, ctx.kernels, ctx.pool.clone())));
            }
            Ok(Box::new(ConvF32 {
                g,
                filter_len,
                has_bias,
                clamp: float_clamp(o.activation)?,
            }))
        }
        DType::I8 => {
            build_conv_q::<i8>(ctx, node, g, o.activation, MultiplierRule::PerChannelDouble)
        }
        DType::U8 => build_conv_q::<u8>(ctx, node, g, o.activation, MultiplierRule::Legacy),
        DType::I16 => int16::build_conv(ctx, node, g, o.activation),
        d => op_bail!("input type {} is not supported", d.name()),
    }
}

fn build_conv_q<T: QElem>(
    ctx: &BuildCtx<'_>,
    node: &Node,
    g: ConvGeom,
    act: Activation,
    rule: MultiplierRule,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let filter = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    check_dtype(filter, T::DTYPE, "filter")?;
    check_dtype(output, T::DTYPE, "output")?;
    let has_bias = bias_info(ctx, node, DType::I32, g.out_c)?.is_some();
    let q = conv_qparams::<T>(input, filter, output, g.out_c, 0, act, rule)?;
    if T::DTYPE == DType::I8 && q.filter_offset == 0 {
        if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.i8(), |t| t.i32())? {
            let (src, m, k) = gemm_shape(&g);
            return Ok(Box::new(GemmI8::new(gemm::QGemmParams {
                src,
                m,
                k,
                n: g.out_c,
                input_len: g.input_len(),
                w,
                bias,
                q,
                path: ctx.kernels,
                pool: ctx.pool.clone(),
            })?));
        }
    }
    if T::DTYPE == DType::U8 && q.multipliers.windows(2).all(|m| m[0] == m[1]) {
        if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.u8(), |t| t.i32())? {
            let (src, m, k) = gemm_shape(&g);
            return Ok(Box::new(GemmU8::new(gemm::QGemmParams {
                src,
                m,
                k,
                n: g.out_c,
                input_len: g.input_len(),
                w,
                bias,
                q,
                path: ctx.kernels,
                pool: ctx.pool.clone(),
            })?));
        }
    }
    Ok(Box::new(ConvQ::<T> {
        g,
        filter_len: filter.num_elements(),
        has_bias,
        q,
        _t: PhantomData,
    }))
}
