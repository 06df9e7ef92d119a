//! CONV_2D, plus the helpers the other window / matrix operators share
//! (output size and padding, quantization parameters, typed views).

use std::marker::PhantomData;

use super::{conv_fast, BuildCtx, Kernel, OpIo};
use crate::engine::error::{OpError, OpResult};
use crate::engine::graph::{Activation, Conv2DOptions, Node, Padding};
use crate::engine::kernels::scalar::conv::{conv_f32, conv_q, ConvGeom};
use crate::engine::kernels::scalar::quant::{
    activation_range_f32, activation_range_quantized, conv_multiplier_legacy,
    conv_multiplier_per_channel, quantize_multiplier, QType, Requant,
};
use crate::engine::tensor::{DType, Quant, TensorInfo, TensorMut, TensorRef};

// ---------------------------------------------------------------- shared helpers

/// Output size and leading padding along one dimension, as TFLite computes them
/// (`ComputeOutSize` / `ComputePaddingHeightWidth`; only the leading pad is used).
pub(super) fn out_size_and_pad(
    padding: Padding,
    in_size: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> OpResult<(usize, usize)> {
    if stride == 0 || dilation == 0 || filter == 0 {
        return Err(format!(
            "stride ({stride}), dilation ({dilation}) and filter size ({filter}) must be positive"
        )
        .into());
    }
    let eff = (filter - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or("filter size overflow")?;
    let out = match padding {
        Padding::Same => in_size.div_ceil(stride),
        Padding::Valid => {
            if in_size + stride < eff {
                0
            } else {
                (in_size + stride - eff) / stride
            }
        }
    };
    if out == 0 {
        return Err(format!(
            "empty output: input size {in_size}, effective filter {eff}, stride {stride}"
        )
        .into());
    }
    let total = ((out - 1) * stride + eff).saturating_sub(in_size);
    Ok((out, total / 2))
}

pub(super) fn check_rank(t: &TensorInfo, rank: usize, what: &str) -> OpResult<()> {
    if t.shape.len() != rank {
        return Err(format!(
            "{what} '{}' must have rank {rank}, has shape {:?}",
            t.name, t.shape
        )
        .into());
    }
    Ok(())
}

/// Per-tensor quantization of `t` with a positive finite scale.
pub(super) fn per_tensor_quant<'a>(t: &'a TensorInfo, what: &str) -> OpResult<&'a Quant> {
    let q = t
        .quant
        .as_ref()
        .ok_or_else(|| format!("{what} '{}' has no quantization parameters", t.name))?;
    if q.scale.len() != 1 || q.zero_point.len() > 1 {
        return Err(format!("{what} '{}' must be quantized per tensor", t.name).into());
    }
    check_scale(q.scale[0], t)?;
    Ok(q)
}

fn check_scale(s: f32, t: &TensorInfo) -> OpResult<()> {
    if !(s.is_finite() && s > 0.0) {
        return Err(format!("tensor '{}' has invalid quantization scale {s}", t.name).into());
    }
    Ok(())
}

/// Zero point of a per-tensor quantized tensor, checked against the type range.
pub(super) fn zero_point<T: QType>(q: &Quant, t: &TensorInfo) -> OpResult<i32> {
    let zp = q.zero_point.first().copied().unwrap_or(0);
    if zp < T::QMIN as i64 || zp > T::QMAX as i64 {
        return Err(format!("tensor '{}' zero point {zp} out of range", t.name).into());
    }
    Ok(zp as i32)
}

pub(super) fn check_dtype(t: &TensorInfo, want: DType, what: &str) -> OpResult<()> {
    if t.dtype != want {
        return Err(format!(
            "{what} '{}' is {}, expected {}",
            t.name,
            t.dtype.name(),
            want.name()
        )
        .into());
    }
    Ok(())
}

/// Optional bias operand (input 2): its dtype and element count are checked.
pub(super) fn bias_info<'a>(
    ctx: &BuildCtx<'a>,
    node: &Node,
    dtype: DType,
    channels: usize,
) -> OpResult<Option<&'a TensorInfo>> {
    match node.inputs.get(2) {
        Some(Some(t)) => {
            let b = ctx.info(*t)?;
            check_dtype(b, dtype, "bias")?;
            if b.num_elements() != channels {
                return Err(format!(
                    "bias '{}' has shape {:?}, expected {channels} elements",
                    b.name, b.shape
                )
                .into());
            }
            Ok(Some(b))
        }
        _ => Ok(None),
    }
}

/// An element type the quantized kernels run on, with its typed tensor views.
pub(super) trait QElem: QType {
    const DTYPE: DType;
    fn view<'a>(t: TensorRef<'a>) -> OpResult<&'a [Self]>;
    fn view_mut<'b>(t: &'b mut TensorMut<'_>) -> OpResult<&'b mut [Self]>;
}

impl QElem for i8 {
    const DTYPE: DType = DType::I8;
    fn view<'a>(t: TensorRef<'a>) -> OpResult<&'a [i8]> {
        t.i8()
    }
    fn view_mut<'b>(t: &'b mut TensorMut<'_>) -> OpResult<&'b mut [i8]> {
        t.i8()
    }
}

impl QElem for u8 {
    const DTYPE: DType = DType::U8;
    fn view<'a>(t: TensorRef<'a>) -> OpResult<&'a [u8]> {
        t.u8()
    }
    fn view_mut<'b>(t: &'b mut TensorMut<'_>) -> OpResult<&'b mut [u8]> {
        t.u8()
    }
}

/// Input `i` as a slice of exactly `len` elements.
pub(super) fn in_slice<'a, T>(
    io: &OpIo<'a>,
    i: usize,
    len: usize,
    view: impl Fn(TensorRef<'a>) -> OpResult<&'a [T]>,
) -> OpResult<&'a [T]> {
    let s = view(io.input(i)?)?;
    if s.len() != len {
        return Err(format!("input {i} has {} elements, expected {len}", s.len()).into());
    }
    Ok(s)
}

/// Output 0 as a slice of exactly `len` elements.
pub(super) fn out_slice<'b, 'a, T>(
    io: &'b mut OpIo<'a>,
    len: usize,
    view: impl FnOnce(&'b mut TensorMut<'a>) -> OpResult<&'b mut [T]>,
) -> OpResult<&'b mut [T]> {
    let o = io.outputs.get_mut(0).ok_or("missing output 0")?;
    let s = view(o)?;
    if s.len() != len {
        return Err(format!("output has {} elements, expected {len}", s.len()).into());
    }
    Ok(s)
}

/// Float fused-activation clamp.
pub(super) fn float_clamp(act: Activation) -> OpResult<(f32, f32)> {
    activation_range_f32(act).map_err(OpError)
}

/// Requantization parameters owned by a kernel.
#[derive(Clone, Debug)]
pub(super) struct QParams {
    pub input_offset: i32,
    pub filter_offset: i32,
    pub output_offset: i32,
    pub multipliers: Vec<i32>,
    pub shifts: Vec<i32>,
    pub act_min: i32,
    pub act_max: i32,
}

impl QParams {
    pub fn view(&self) -> Requant<'_> {
        Requant {
            input_offset: self.input_offset,
            filter_offset: self.filter_offset,
            output_offset: self.output_offset,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
            act_min: self.act_min,
            act_max: self.act_max,
        }
    }
}

/// How the effective output multiplier is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MultiplierRule {
    /// `PopulateConvolutionQuantizationParams` (int8 conv / depthwise, per-channel FC):
    /// per channel, product in double; the filter zero point must be 0.
    PerChannelDouble,
    /// `GetQuantizedConvolutionMultipler` (uint8, per-tensor int8 FC): one multiplier,
    /// scale product in float; the filter zero point is honoured.
    Legacy,
}

/// Quantization parameters of a quantized conv-like operator whose filter is
/// quantized along `axis` with `channels` output channels.
pub(super) fn conv_qparams<T: QType>(
    input: &TensorInfo,
    filter: &TensorInfo,
    output: &TensorInfo,
    channels: usize,
    axis: usize,
    act: Activation,
    rule: MultiplierRule,
) -> OpResult<QParams> {
    let iq = per_tensor_quant(input, "input")?;
    let oq = per_tensor_quant(output, "output")?;
    let in_zp = zero_point::<T>(iq, input)?;
    let out_zp = zero_point::<T>(oq, output)?;
    let fq = filter
        .quant
        .as_ref()
        .ok_or_else(|| format!("filter '{}' has no quantization parameters", filter.name))?;
    let per_channel = fq.scale.len() > 1;
    if per_channel {
        if fq.scale.len() != channels {
            return Err(format!(
                "filter '{}' has {} scales, expected 1 or {channels} (output channels)",
                filter.name,
                fq.scale.len()
            )
            .into());
        }
        if fq.axis != axis {
            return Err(format!(
                "filter '{}' is quantized along axis {}, expected {axis}",
                filter.name, fq.axis
            )
            .into());
        }
    }
    if fq.scale.is_empty() {
        return Err(format!("filter '{}' has no scales", filter.name).into());
    }
    for &s in &fq.scale {
        check_scale(s, filter)?;
    }
    let filter_offset = match rule {
        MultiplierRule::PerChannelDouble => {
            if fq.zero_point.iter().any(|&z| z != 0) {
                return Err(format!(
                    "filter '{}' must have zero points 0 (symmetric weights)",
                    filter.name
                )
                .into());
            }
            0
        }
        MultiplierRule::Legacy => {
            if per_channel {
                return Err(format!(
                    "filter '{}': per-channel quantization is not supported for {} weights",
                    filter.name,
                    filter.dtype.name()
                )
                .into());
            }
            -zero_point::<T>(fq, filter)?
        }
    };
    let (in_s, out_s) = (iq.scale[0], oq.scale[0]);
    let mut multipliers = Vec::with_capacity(channels);
    let mut shifts = Vec::with_capacity(channels);
    for c in 0..channels {
        let fs = if per_channel {
            fq.scale[c]
        } else {
            fq.scale[0]
        };
        let m = match rule {
            MultiplierRule::PerChannelDouble => conv_multiplier_per_channel(in_s, fs, out_s),
            MultiplierRule::Legacy => conv_multiplier_legacy(in_s, fs, out_s),
        };
        let (qm, sh) = quantize_multiplier(m);
        if sh > 30 {
            return Err(format!("effective output multiplier {m} is too large").into());
        }
        multipliers.push(qm);
        shifts.push(sh);
    }
    let (act_min, act_max) =
        activation_range_quantized(act, out_s, out_zp, T::QMIN, T::QMAX).map_err(OpError)?;
    Ok(QParams {
        input_offset: -in_zp,
        filter_offset,
        output_offset: out_zp,
        multipliers,
        shifts,
        act_min,
        act_max,
    })
}

/// Geometry of a 4-D NHWC window operator; checks the output shape.
#[allow(clippy::too_many_arguments)]
pub(super) fn window_geom(
    input: &TensorInfo,
    output: &TensorInfo,
    out_c: usize,
    filter_h: usize,
    filter_w: usize,
    padding: Padding,
    stride: (usize, usize),
    dilation: (usize, usize),
) -> OpResult<ConvGeom> {
    check_rank(input, 4, "input")?;
    check_rank(output, 4, "output")?;
    let (oh, pt) = out_size_and_pad(padding, input.shape[1], filter_h, stride.0, dilation.0)?;
    let (ow, pl) = out_size_and_pad(padding, input.shape[2], filter_w, stride.1, dilation.1)?;
    let want = [input.shape[0], oh, ow, out_c];
    if output.shape != want {
        return Err(format!(
            "output '{}' has shape {:?}, expected {:?}",
            output.name, output.shape, want
        )
        .into());
    }
    Ok(ConvGeom {
        batch: input.shape[0],
        in_h: input.shape[1],
        in_w: input.shape[2],
        in_c: input.shape[3],
        out_h: oh,
        out_w: ow,
        out_c,
        filter_h,
        filter_w,
        stride_h: stride.0,
        stride_w: stride.1,
        dilation_h: dilation.0,
        dilation_w: dilation.1,
        pad_top: pt,
        pad_left: pl,
    })
}

// ---------------------------------------------------------------- CONV_2D

/// The constant filter (input 1) and constant bias (input 2, when `has_bias`) of a
/// conv-like node, or `None` when either is computed at run time.
#[allow(clippy::type_complexity)]
pub(super) fn const_weights<'a, W, B>(
    ctx: &BuildCtx<'a>,
    node: &Node,
    has_bias: bool,
    view: impl Fn(TensorRef<'a>) -> OpResult<&'a [W]>,
    bias_view: impl Fn(TensorRef<'a>) -> OpResult<&'a [B]>,
) -> OpResult<Option<(&'a [W], Option<&'a [B]>)>> {
    let Some(Some(ft)) = node.inputs.get(1) else {
        return Ok(None);
    };
    let Some(f) = ctx.const_data(*ft)? else {
        return Ok(None);
    };
    let w = view(f)?;
    let bias = if has_bias {
        let Some(Some(bt)) = node.inputs.get(2) else {
            return Ok(None);
        };
        let Some(b) = ctx.const_data(*bt)? else {
            return Ok(None);
        };
        Some(bias_view(b)?)
    } else {
        None
    };
    Ok(Some((w, bias)))
}

/// The GEMM of a convolution: the left-hand source, rows `m` and depth `k`.
/// 1x1 stride-1 unpadded convolutions read the input directly.
pub(super) fn gemm_shape(g: &ConvGeom) -> (conv_fast::ASource, usize, usize) {
    let m = g.batch * g.out_h * g.out_w;
    let k = g.filter_h * g.filter_w * g.in_c;
    let direct = g.filter_h == 1
        && g.filter_w == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h == g.in_h
        && g.out_w == g.in_w;
    let src = if direct {
        conv_fast::ASource::Direct
    } else {
        conv_fast::ASource::Im2col(*g)
    };
    (src, m, k)
}

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
    if fc != g.in_c {
        return Err(format!(
            "filter '{}' has {fc} input channels, input '{}' has {} (grouped convolution is not supported)",
            filter.name, input.name, g.in_c
        )
        .into());
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
            super::hybrid::build(ctx, node, super::hybrid::HybridOp::Conv(g), clamp)
        }
        DType::F32 => {
            check_dtype(filter, DType::F32, "filter")?;
            check_dtype(output, DType::F32, "output")?;
            let has_bias = bias_info(ctx, node, DType::F32, out_c)?.is_some();
            let clamp = float_clamp(o.activation)?;
            if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.f32(), |t| t.f32())? {
                let (src, m, k) = gemm_shape(&g);
                return Ok(Box::new(conv_fast::GemmF32::new(
                    src,
                    m,
                    k,
                    out_c,
                    g.input_len(),
                    w,
                    bias,
                    clamp,
                    ctx.kernels,
                    ctx.pool.clone(),
                )));
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
        DType::I16 => super::int16::build_conv(ctx, node, g, o.activation),
        d => Err(format!("input type {} is not supported", d.name()).into()),
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
            return Ok(Box::new(conv_fast::GemmI8::new(
                src,
                m,
                k,
                g.out_c,
                g.input_len(),
                w,
                bias,
                q,
                ctx.kernels,
                ctx.pool.clone(),
            )?));
        }
    }
    if T::DTYPE == DType::U8 && q.multipliers.windows(2).all(|m| m[0] == m[1]) {
        if let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.u8(), |t| t.i32())? {
            let (src, m, k) = gemm_shape(&g);
            return Ok(Box::new(conv_fast::GemmU8::new(
                src,
                m,
                k,
                g.out_c,
                g.input_len(),
                w,
                bias,
                q,
                ctx.kernels,
                ctx.pool.clone(),
            )?));
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
