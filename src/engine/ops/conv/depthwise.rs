//! DEPTHWISE_CONV_2D (any depth multiplier), float / int8 / uint8: the operator, its
//! reference kernels (run-time filters) and its fast kernels on the dispatch point,
//! threaded by output rows (see [`super::tasks::depthwise_sub`]).

use std::marker::PhantomData;
use std::sync::Arc;

use super::hybrid;
use super::params::{bias_info, const_weights, conv_qparams, MultiplierRule, QParams};
use super::tasks::{depthwise_sub, depthwise_tasks, run_tasks, shift_u8_to_i8};
use crate::engine::error::OpResult;
use crate::engine::graph::{Activation, DepthwiseConv2DOptions, Node};
use crate::engine::kernels::scalar::conv::{depthwise_f32, depthwise_q, ConvGeom};
use crate::engine::kernels::{self, KernelPath};
use crate::engine::ops::common::{
    check_dtype, check_rank, float_clamp, in_slice, out_slice, window_geom, QElem, Window,
};
use crate::engine::ops::{int16, BuildCtx, Kernel, OpIo};
use crate::engine::pool::ThreadPool;
use crate::engine::tensor::DType;
use crate::op_bail;

/// float32 depthwise convolution on the reference loops (run-time filters).
struct DepthwiseRefF32 {
    g: ConvGeom,
    mult: usize,
    has_bias: bool,
    clamp: (f32, f32),
}

impl Kernel for DepthwiseRefF32 {
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

/// Quantized depthwise convolution on the reference loops.
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

pub(crate) fn build_depthwise(
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
        op_bail!(
            "filter '{}' has shape {:?}, expected [1, H, W, C*M]",
            filter.name,
            filter.shape
        );
    }
    let (fh, fw, out_c) = (filter.shape[1], filter.shape[2], filter.shape[3]);
    let in_c = input.shape[3];
    if in_c == 0 || out_c % in_c != 0 {
        op_bail!(
            "filter '{}' has {out_c} channels, not a multiple of the {in_c} input channels",
            filter.name
        );
    }
    // TFLite's kernels derive the multiplier from the shapes; the option must agree
    // when it is set.
    let mult = out_c / in_c;
    if o.depth_multiplier != 0 && o.depth_multiplier != mult {
        op_bail!(
            "depth_multiplier option {} disagrees with the shapes (filter {out_c} channels / input {in_c})",
            o.depth_multiplier
        );
    }
    let window = Window {
        filter_h: fh,
        filter_w: fw,
        padding: o.padding,
        stride: (o.stride_h, o.stride_w),
        dilation: (o.dilation_h, o.dilation_w),
    };
    let g = window_geom(input, output, out_c, &window)?;
    match input.dtype {
        DType::F32 if filter.dtype == DType::I8 => {
            let clamp = float_clamp(o.activation)?;
            hybrid::build(ctx, node, hybrid::HybridOp::Depthwise(g, mult), clamp)
        }
        DType::F32 => {
            check_dtype(filter, DType::F32, "filter")?;
            check_dtype(output, DType::F32, "output")?;
            let has_bias = bias_info(ctx, node, DType::F32, out_c)?.is_some();
            let clamp = float_clamp(o.activation)?;
            if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.f32(), |t| t.f32())? {
                let w = DwWeights {
                    g,
                    mult,
                    filter: w,
                    bias,
                };
                return Ok(Box::new(DepthwiseF32::new(
                    w,
                    clamp,
                    ctx.kernels,
                    ctx.pool.clone(),
                )));
            }
            Ok(Box::new(DepthwiseRefF32 {
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
        DType::I16 => int16::build_depthwise(ctx, node, g, mult, o.activation),
        d => op_bail!("input type {} is not supported", d.name()),
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
            let w = DwWeights {
                g,
                mult,
                filter: w,
                bias,
            };
            return Ok(Box::new(DepthwiseI8::new(
                w,
                q,
                ctx.kernels,
                ctx.pool.clone(),
            )));
        }
    }
    if T::DTYPE == DType::U8 && mult == 1 {
        if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.u8(), |t| t.i32())? {
            return Ok(Box::new(DepthwiseU8::new(
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

// ---------------------------------------------------------------- fast kernels

/// uint8 depthwise convolution (depth multiplier 1) on the int8 kernels of every path:
/// the values shifted by −128 (the same bits with the top one flipped), so that
/// `(x + zx_off)·(w + zw_off)` is `(x' + zx_off + 128)·(w' + zw_off + 128)` with int8 `x'`,
/// `w'`: an int8 depthwise convolution with input and filter offsets 128 higher and the
/// output offset and clamp 128 lower. Exact, so bit-exact with TFLite's uint8 kernel.
pub(super) struct DepthwiseU8 {
    inner: DepthwiseI8,
    /// The input shifted to int8, made once per run.
    input: Vec<i8>,
}

impl DepthwiseU8 {
    pub(super) fn new(
        g: ConvGeom,
        filter: &[u8],
        bias: Option<&[i32]>,
        q: QParams,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let filter: Vec<i8> = filter.iter().map(|&v| (v ^ 0x80) as i8).collect();
        let q = QParams {
            input_offset: q.input_offset + 128,
            filter_offset: q.filter_offset + 128,
            output_offset: q.output_offset - 128,
            act_min: q.act_min - 128,
            act_max: q.act_max - 128,
            ..q
        };
        let w = DwWeights {
            g,
            mult: 1,
            filter: &filter,
            bias,
        };
        DepthwiseU8 {
            inner: DepthwiseI8::new(w, q, path, pool),
            input: vec![0; g.input_len()],
        }
    }
}

impl Kernel for DepthwiseU8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.inner.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.u8())?;
        shift_u8_to_i8(&self.inner.pool, input, &mut self.input);
        let out = out_slice(io, g.output_len(), |t| t.u8())?;
        self.inner
            .run(&self.input, bytemuck::cast_slice_mut(out), true);
        Ok(())
    }
}

/// The constant operands of a depthwise convolution on the dispatch point (what its
/// `new` copies): geometry, depth multiplier, filter and bias.
pub(super) struct DwWeights<'a, T, B> {
    pub g: ConvGeom,
    pub mult: usize,
    pub filter: &'a [T],
    pub bias: Option<&'a [B]>,
}

/// int8 depthwise convolution on the dispatch point, threaded by output rows.
pub(super) struct DepthwiseI8 {
    pub g: ConvGeom,
    pub mult: usize,
    pub filter: Vec<i8>,
    pub bias: Option<Vec<i32>>,
    pub q: QParams,
    pub prep: kernels::DepthwisePrepI8,
    pub pool: Option<Arc<ThreadPool>>,
    pub tasks: usize,
}

impl DepthwiseI8 {
    pub(super) fn new(
        w: DwWeights<'_, i8, i32>,
        q: QParams,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let DwWeights {
            g,
            mult,
            filter,
            bias,
        } = w;
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let prep = kernels::prepare_depthwise_i8(path, &g, mult, filter, bias, &q.view());
        DepthwiseI8 {
            g,
            mult,
            filter: filter.to_vec(),
            bias: bias.map(<[i32]>::to_vec),
            q,
            prep,
            pool,
            tasks: depthwise_tasks(&g, threads),
        }
    }
}

impl Kernel for DepthwiseI8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.i8())?;
        let out = out_slice(io, g.output_len(), |t| t.i8())?;
        self.run(input, out, false);
        Ok(())
    }
}

impl DepthwiseI8 {
    /// The convolution of `input` into `out` (both checked against the geometry); `flip`:
    /// each task shifts its outputs back to uint8 (flips their top bit) as it ends.
    fn run(&self, input: &[i8], out: &mut [i8], flip: bool) {
        let g = self.g;
        let this = self;
        let q = this.q.view();
        let task = |t: usize, chunk: &mut [i8], _w: usize| {
            let (sub, ir, _) = depthwise_sub(&g, this.tasks, t);
            let op = kernels::Depthwise {
                g: &sub,
                depth_multiplier: this.mult,
                input: &input[ir],
                filter: &this.filter,
                bias: this.bias.as_deref(),
            };
            kernels::depthwise_i8_prepared(&this.prep, &op, &q, 0..sub.out_h, chunk);
            if flip {
                for v in chunk.iter_mut() {
                    *v ^= i8::MIN;
                }
            }
        };
        let bounds = |t: usize| depthwise_sub(&g, this.tasks, t).2;
        run_tasks(&this.pool, out, this.tasks, &bounds, &task);
    }
}

/// float32 depthwise convolution on the dispatch point, threaded by output rows.
pub(super) struct DepthwiseF32 {
    pub g: ConvGeom,
    pub mult: usize,
    pub filter: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub clamp: (f32, f32),
    pub path: KernelPath,
    pub pool: Option<Arc<ThreadPool>>,
    pub tasks: usize,
}

impl DepthwiseF32 {
    pub(super) fn new(
        w: DwWeights<'_, f32, f32>,
        clamp: (f32, f32),
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let DwWeights {
            g,
            mult,
            filter,
            bias,
        } = w;
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        DepthwiseF32 {
            g,
            mult,
            filter: filter.to_vec(),
            bias: bias.map(<[f32]>::to_vec),
            clamp,
            path,
            pool,
            tasks: depthwise_tasks(&g, threads),
        }
    }
}

impl Kernel for DepthwiseF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.f32())?;
        let out = out_slice(io, g.output_len(), |t| t.f32())?;
        let this = &*self;
        let task = |t: usize, chunk: &mut [f32], _w: usize| {
            let (sub, ir, _) = depthwise_sub(&g, this.tasks, t);
            let op = kernels::Depthwise {
                g: &sub,
                depth_multiplier: this.mult,
                input: &input[ir],
                filter: &this.filter,
                bias: this.bias.as_deref(),
            };
            kernels::depthwise_f32(this.path, &op, this.clamp.into(), 0..sub.out_h, chunk);
        };
        let bounds = |t: usize| depthwise_sub(&g, this.tasks, t).2;
        run_tasks(&this.pool, out, this.tasks, &bounds, &task);
        Ok(())
    }
}
