//! FULLY_CONNECTED: float / int8 (per-tensor or per-channel weights) / uint8.
//! The input is flattened to `[batch, depth]` with `depth = weights.shape[1]`.

use std::marker::PhantomData;

use super::gemm::{ASource, GemmF32};
use super::hybrid;
use super::params::{bias_info, const_weights, conv_qparams, MultiplierRule, QParams};
use crate::engine::error::OpResult;
use crate::engine::graph::{Activation, Node};
use crate::engine::kernels::scalar::fc::{fc_f32, fc_q};
use crate::engine::kernels::{Mat, MatMut};
use crate::engine::ops::common::{
    check_dtype, check_rank, float_clamp, in_slice, out_slice, QElem,
};
use crate::engine::ops::{int16, BuildCtx, Kernel, OpIo};
use crate::engine::tensor::DType;
use crate::op_bail;

#[derive(Clone, Copy, Debug)]
struct FcDims {
    batch: usize,
    depth: usize,
    units: usize,
}

struct FcF32 {
    d: FcDims,
    has_bias: bool,
    clamp: (f32, f32),
}

impl Kernel for FcF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let FcDims {
            batch,
            depth,
            units,
        } = self.d;
        let input = in_slice(io, 0, batch * depth, |t| t.f32())?;
        let w = in_slice(io, 1, units * depth, |t| t.f32())?;
        let bias = if self.has_bias {
            Some(in_slice(io, 2, units, |t| t.f32())?)
        } else {
            None
        };
        let out = out_slice(io, batch * units, |t| t.f32())?;
        fc_f32(
            Mat::dense(input, batch, depth),
            Mat::dense(w, units, depth),
            bias,
            self.clamp.into(),
            MatMut::dense(out, batch, units),
        );
        Ok(())
    }
}

struct FcQ<T> {
    d: FcDims,
    has_bias: bool,
    q: QParams,
    _t: PhantomData<T>,
}

impl<T: QElem> Kernel for FcQ<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let FcDims {
            batch,
            depth,
            units,
        } = self.d;
        let input = in_slice(io, 0, batch * depth, T::view)?;
        let w = in_slice(io, 1, units * depth, T::view)?;
        let bias = if self.has_bias {
            Some(in_slice(io, 2, units, |t| t.i32())?)
        } else {
            None
        };
        let out = out_slice(io, batch * units, T::view_mut)?;
        fc_q(
            Mat::dense(input, batch, depth),
            Mat::dense(w, units, depth),
            bias,
            &self.q.view(),
            MatMut::dense(out, batch, units),
        );
        Ok(())
    }
}

pub(crate) fn build_fully_connected(
    ctx: &BuildCtx<'_>,
    node: &Node,
    activation: Activation,
    keep_num_dims: bool,
    asymmetric_quantize_inputs: bool,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let weights = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    check_rank(weights, 2, "weights")?;
    let (units, depth) = (weights.shape[0], weights.shape[1]);
    if depth == 0 || units == 0 {
        op_bail!(
            "weights '{}' have an empty shape {:?}",
            weights.name,
            weights.shape
        );
    }
    let n = input.num_elements();
    if n % depth != 0 {
        op_bail!(
            "input '{}' of shape {:?} cannot be flattened to rows of {depth}",
            input.name,
            input.shape
        );
    }
    let batch = n / depth;
    if keep_num_dims {
        let mut want = input.shape.clone();
        match want.last_mut() {
            Some(l) if *l == depth => *l = units,
            _ => {
                op_bail!(
                    "keep_num_dims: input '{}' of shape {:?} must end in {depth}",
                    input.name,
                    input.shape
                )
            }
        }
        if output.shape != want {
            op_bail!(
                "output '{}' has shape {:?}, expected {want:?}",
                output.name,
                output.shape
            );
        }
    } else if output.num_elements() != batch * units || output.shape.last() != Some(&units) {
        op_bail!(
            "output '{}' has shape {:?}, expected [{batch}, {units}]",
            output.name,
            output.shape
        );
    }
    let d = FcDims {
        batch,
        depth,
        units,
    };
    match input.dtype {
        DType::F32 if weights.dtype == DType::I8 => {
            let op = hybrid::HybridOp::Fc {
                rows: batch,
                depth,
                units,
                asymmetric: asymmetric_quantize_inputs,
            };
            hybrid::build(ctx, node, op, float_clamp(activation)?)
        }
        DType::F32 => {
            check_dtype(weights, DType::F32, "weights")?;
            check_dtype(output, DType::F32, "output")?;
            let has_bias = bias_info(ctx, node, DType::F32, units)?.is_some();
            let clamp = float_clamp(activation)?;
            if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.f32(), |t| t.f32())? {
                let spec = super::gemm::GemmF32Spec {
                    src: ASource::Direct,
                    m: batch,
                    k: depth,
                    n: units,
                    input_len: batch * depth,
                    w,
                    bias,
                    clamp,
                };
                return Ok(Box::new(GemmF32::new(spec, ctx.kernels, ctx.pool.clone())));
            }
            Ok(Box::new(FcF32 {
                d,
                has_bias,
                clamp: float_clamp(activation)?,
            }))
        }
        DType::I8 => build_q::<i8>(ctx, node, d, activation),
        DType::U8 => build_q::<u8>(ctx, node, d, activation),
        DType::I16 => int16::build_fully_connected(ctx, node, batch, depth, units, activation),
        t => op_bail!("input type {} is not supported", t.name()),
    }
}

fn build_q<T: QElem>(
    ctx: &BuildCtx<'_>,
    node: &Node,
    d: FcDims,
    act: Activation,
) -> OpResult<Box<dyn Kernel>> {
    let input = ctx.input(node, 0)?;
    let weights = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    check_dtype(weights, T::DTYPE, "weights")?;
    check_dtype(output, T::DTYPE, "output")?;
    let has_bias = bias_info(ctx, node, DType::I32, d.units)?.is_some();
    // TFLite: per-tensor weights use GetQuantizedConvolutionMultipler (float
    // product); per-channel int8 weights use per-channel double multipliers.
    let per_channel = weights.quant.as_ref().is_some_and(|q| q.scale.len() > 1);
    let rule = if per_channel {
        MultiplierRule::PerChannelDouble
    } else {
        MultiplierRule::Legacy
    };
    if per_channel && T::DTYPE != DType::I8 {
        op_bail!("per-channel weights are only supported for int8");
    }
    let q = conv_qparams::<T>(input, weights, output, d.units, 0, act, rule)?;
    // TFLite's reference FULLY_CONNECTED requantizes with a single rounding
    // (`fc_q`), which the int8 GEMM fast path (the convolutions' double rounding)
    // does not do; quantized FC therefore always runs the scalar kernel.
    Ok(Box::new(FcQ::<T> {
        d,
        has_bias,
        q,
        _t: PhantomData,
    }))
}
