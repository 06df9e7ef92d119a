//! 16x8 quantization: int16 activations (symmetric, zero point 0) with int8
//! weights and int64 biases, as made by a `static_wi8_ai16` recipe. CONV_2D and
//! DEPTHWISE_CONV_2D (int64 accumulator), ADD (TFLite's general-scale int16
//! path), QUANTIZE to / from int16 and DEQUANTIZE from int16. The data-movement
//! operators are generic over the element size and need nothing here.

use std::sync::Arc;

use super::common::{check_dtype, in_slice, out_slice, qparams, same_shape};
use super::conv::params::{bias_info, const_weights, conv_qparams, MultiplierRule, QParams};
use super::elementwise::Broadcast;
use super::{BuildCtx, Kernel, OpIo};
use crate::engine::error::OpResult;
use crate::engine::graph::{Activation, Node, Op};
use crate::engine::kernels::conv16 as fast16;
use crate::engine::kernels::scalar::conv::ConvGeom;
use crate::engine::kernels::scalar::conv16::{conv_16x8, depthwise_16x8};
use crate::engine::kernels::scalar::elementwise::{add_q, AddSubParams, BinaryQuant};
use crate::engine::kernels::KernelPath;
use crate::engine::pool::{split_range, PerWorker, ThreadPool};
use crate::engine::quant::{
    activation_range_quantized, dequantize, quantize_f32, QRange, RequantPerChannel16,
    RequantPerTensor, I16_RANGE, I8_RANGE,
};
use crate::engine::tensor::{DType, TensorInfo};
use crate::{op_bail, op_ensure};

/// Whether input 0 or output 0 of `node` is int16 (the operators routed here).
pub(crate) fn touches_i16(ctx: &BuildCtx<'_>, node: &Node) -> bool {
    let is16 = |t: OpResult<&TensorInfo>| t.is_ok_and(|t| t.dtype == DType::I16);
    is16(ctx.input(node, 0)) || is16(ctx.output(node, 0))
}

/// (scale, zero point) of an int16 tensor; TFLite requires the zero point 0.
fn q16(t: &TensorInfo) -> OpResult<(f32, i32)> {
    let (s, z) = qparams(t)?;
    op_ensure!(
        z == 0,
        "int16 tensor '{}' has zero point {z}; int16 quantization must be symmetric",
        t.name
    );
    Ok((s, z))
}

// ---------------------------------------------------------------- CONV_2D / DEPTHWISE

/// Requantization of a 16x8 conv-like operator: the 8-bit parameters, with the
/// shift range TFLite's int64 `MultiplyByQuantizedMultiplier` accepts.
fn qparams_16x8(
    ctx: &BuildCtx<'_>,
    node: &Node,
    channels: usize,
    axis: usize,
    act: Activation,
    rule: MultiplierRule,
) -> OpResult<(QParams, bool)> {
    let input = ctx.input(node, 0)?;
    let filter = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    check_dtype(filter, DType::I8, "filter")?;
    check_dtype(output, DType::I16, "output")?;
    q16(input)?;
    q16(output)?;
    let has_bias = match node.inputs.get(2) {
        Some(Some(t)) if ctx.info(*t)?.dtype == DType::I32 => op_bail!(
            "bias '{}' is int32; 16x8 operators are supported with int64 biases",
            ctx.info(*t)?.name
        ),
        _ => bias_info(ctx, node, DType::I64, channels)?.is_some(),
    };
    let q = conv_qparams::<i16>(input, filter, output, channels, axis, act, rule)?;
    if q.filter_offset != 0 {
        op_bail!("filter '{}' must have zero point 0", filter.name);
    }
    if let Some(s) = q.shifts.iter().find(|&&s| !(-31..=7).contains(&s)) {
        op_bail!("effective output multiplier exponent {s} is outside -31..=7");
    }
    Ok((q, has_bias))
}

struct Conv16 {
    g: ConvGeom,
    /// `None`: regular convolution; otherwise the depth multiplier of a depthwise one.
    depthwise: Option<usize>,
    filter_len: usize,
    has_bias: bool,
    q: QParams,
    /// FULLY_CONNECTED (a 1×1 convolution requantized with single rounding).
    fully_connected: bool,
    /// The fast kernels' state when the weights are constant and the path is not scalar.
    fast: Option<Fast16>,
}

/// Constant weights widened to int16, the constant bias, the kernel path, the pool and
/// per-worker scratch of the fast 16x8 kernels.
struct Fast16 {
    w: Vec<i16>,
    bias: Option<Vec<i64>>,
    path: KernelPath,
    pool: Option<Arc<ThreadPool>>,
    scratch: PerWorker<(Vec<i16>, Vec<i32>)>,
}

impl Conv16 {
    /// The fast kernels, output rows cut over the pool.
    fn eval_fast(&self, f: &Fast16, input: &[i16], out: &mut [i16]) {
        let g = self.g;
        let rq = RequantPerChannel16 {
            multipliers: &self.q.multipliers,
            shifts: &self.q.shifts,
            act_min: self.q.act_min,
            act_max: self.q.act_max,
            single_rounding: self.fully_connected,
        };
        let rows = g.batch * g.out_h;
        let row_len = g.out_w * g.out_c;
        let run = |r: std::ops::Range<usize>, o: &mut [i16], w: usize| {
            let mut s = f.scratch.get(w);
            let (col, acc) = &mut *s;
            let op = fast16::Conv16Operands {
                g: &g,
                input,
                w: &f.w,
                bias: f.bias.as_deref(),
                q: &rq,
            };
            if self.depthwise.is_some() {
                fast16::depthwise_16x8_rows(f.path, &op, r, o, acc);
            } else {
                fast16::conv_16x8_rows(f.path, &op, r, o, col);
            }
        };
        match &f.pool {
            Some(pool) if pool.threads() > 1 && rows > 1 => {
                let tasks = (2 * pool.threads()).min(rows);
                let bounds = |t: usize| {
                    let r = split_range(rows, tasks, t);
                    r.start * row_len..r.end * row_len
                };
                pool.run_chunks(out, tasks, &bounds, &|t, o, w| {
                    run(split_range(rows, tasks, t), o, w)
                });
            }
            _ => run(0..rows, out, 0),
        }
    }
}

impl Kernel for Conv16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        if let Some(f) = &self.fast {
            let input = in_slice(io, 0, g.input_len(), |t| t.i16())?;
            let out = out_slice(io, g.output_len(), |t| t.i16())?;
            self.eval_fast(f, input, out);
            return Ok(());
        }
        let input = in_slice(io, 0, g.input_len(), |t| t.i16())?;
        let filter = in_slice(io, 1, self.filter_len, |t| t.i8())?;
        let bias = if self.has_bias {
            Some(in_slice(io, 2, g.out_c, |t| t.i64())?)
        } else {
            None
        };
        let rq = RequantPerChannel16 {
            multipliers: &self.q.multipliers,
            shifts: &self.q.shifts,
            act_min: self.q.act_min,
            act_max: self.q.act_max,
            single_rounding: self.fully_connected,
        };
        let out = out_slice(io, g.output_len(), |t| t.i16())?;
        match self.depthwise {
            None => conv_16x8(&g, input, filter, bias, &rq, out),
            Some(m) => depthwise_16x8(&g, m, input, filter, bias, &rq, out),
        }
        Ok(())
    }
}

/// CONV_2D with an int16 input (the geometry is already checked).
pub(super) fn build_conv(
    ctx: &BuildCtx<'_>,
    node: &Node,
    g: ConvGeom,
    act: Activation,
) -> OpResult<Box<dyn Kernel>> {
    let (q, has_bias) = qparams_16x8(ctx, node, g.out_c, 0, act, MultiplierRule::PerChannelDouble)?;
    Ok(Box::new(Conv16 {
        g,
        depthwise: None,
        filter_len: ctx.input(node, 1)?.num_elements(),
        has_bias,
        q,
        fully_connected: false,
        fast: fast16_state(ctx, node, has_bias)?,
    }))
}

/// DEPTHWISE_CONV_2D with an int16 input (the geometry is already checked).
pub(super) fn build_depthwise(
    ctx: &BuildCtx<'_>,
    node: &Node,
    g: ConvGeom,
    mult: usize,
    act: Activation,
) -> OpResult<Box<dyn Kernel>> {
    let (q, has_bias) = qparams_16x8(ctx, node, g.out_c, 3, act, MultiplierRule::PerChannelDouble)?;
    let fast = if mult == 1 && g.filter_h * g.filter_w <= fast16::DEPTHWISE_MAX_TAPS {
        fast16_state(ctx, node, has_bias)?
    } else {
        None
    };
    Ok(Box::new(Conv16 {
        g,
        depthwise: Some(mult),
        filter_len: ctx.input(node, 1)?.num_elements(),
        has_bias,
        q,
        fully_connected: false,
        fast,
    }))
}

/// FULLY_CONNECTED with an int16 input (shapes already checked): a 1×1 convolution
/// over `batch` pixels of `depth` channels, requantized as TFLite's reference
/// kernel does (double-precision multipliers, single rounding).
pub(super) fn build_fully_connected(
    ctx: &BuildCtx<'_>,
    node: &Node,
    batch: usize,
    depth: usize,
    units: usize,
    act: Activation,
) -> OpResult<Box<dyn Kernel>> {
    let (q, has_bias) = qparams_16x8(ctx, node, units, 0, act, MultiplierRule::PerChannelDouble)?;
    let g = ConvGeom {
        batch,
        in_h: 1,
        in_w: 1,
        in_c: depth,
        out_h: 1,
        out_w: 1,
        out_c: units,
        filter_h: 1,
        filter_w: 1,
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 1,
        pad_top: 0,
        pad_left: 0,
    };
    Ok(Box::new(Conv16 {
        g,
        depthwise: None,
        filter_len: units * depth,
        has_bias,
        q,
        fully_connected: true,
        fast: fast16_state(ctx, node, has_bias)?,
    }))
}

/// The fast kernels' state, when the path is not the scalar reference and the
/// filter (and bias) are constants.
fn fast16_state(ctx: &BuildCtx<'_>, node: &Node, has_bias: bool) -> OpResult<Option<Fast16>> {
    if ctx.kernels == KernelPath::Scalar {
        return Ok(None);
    }
    let Some((w, bias)) = const_weights(ctx, node, has_bias, |t| t.i8(), |t| t.i64())? else {
        return Ok(None);
    };
    let threads = ctx.pool.as_ref().map_or(1, |p| p.threads());
    Ok(Some(Fast16 {
        w: w.iter().map(|&v| v as i16).collect(),
        bias: bias.map(|b| b.to_vec()),
        path: ctx.kernels,
        pool: ctx.pool.clone(),
        scratch: PerWorker::new(threads, || (Vec::new(), Vec::new())),
    }))
}

// ---------------------------------------------------------------- ADD

struct Add16 {
    bc: Broadcast,
    p: AddSubParams,
}

impl Kernel for Add16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let a = io.input(0)?.i16()?;
        let b = io.input(1)?.i16()?;
        let o = io.outputs.get_mut(0).ok_or("missing output 0")?.i16()?;
        let p = &self.p;
        self.bc
            .run(a, b, o, |x, y| add_q(p, x as i32, y as i32) as i16)
    }
}

/// ADD on int16: TFLite's general-scale path (left shift 15), which it takes
/// unless `pot_scale_int16` is set *and* every scale is a power of two with zero
/// points 0; that narrow LSTM case is refused here.
pub(super) fn build_add(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let Op::Add { activation } = node.op else {
        op_bail!("{} on int16 is not supported", node.op.name());
    };
    let a = ctx.input(node, 0)?;
    let b = ctx.input(node, 1)?;
    let y = ctx.output(node, 0)?;
    for t in [a, b, y] {
        check_dtype(t, DType::I16, "operand")?;
    }
    let (s1, z1) = qparams(a)?;
    let (s2, z2) = qparams(b)?;
    let (so, zo) = qparams(y)?;
    let pot = |s: f32| {
        let l = (s as f64).log2();
        (l - l.round()).abs() < 1e-6
    };
    if pot(s1) && pot(s2) && pot(so) && z1 == 0 && z2 == 0 && zo == 0 {
        op_bail!(
            "int16 ADD with power-of-two scales (TFLite's pot_scale_int16 path) is not supported"
        );
    }
    for z in [z1, z2, zo] {
        op_ensure!(
            I16_RANGE.contains(z),
            "zero point {z} out of the int16 range"
        );
    }
    let q = BinaryQuant {
        in1: (s1, z1),
        in2: (s2, z2),
        out: (so, zo),
        act: activation_range_quantized(activation, so, zo, I16_RANGE)?,
    };
    let p = AddSubParams::with_left_shift(15, &q)?;
    Ok(Box::new(Add16 {
        bc: Broadcast::new(&a.shape, &b.shape, &y.shape)?,
        p,
    }))
}

// ---------------------------------------------------------------- QUANTIZE / DEQUANTIZE

struct QuantizeF32To16 {
    scale: f32,
    zp: i32,
}

impl Kernel for QuantizeF32To16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.f32()?;
        let out = io.outputs.get_mut(0).ok_or("missing output 0")?.i16()?;
        op_ensure!(x.len() == out.len(), "size mismatch");
        for (o, &v) in out.iter_mut().zip(x) {
            *o = quantize_f32(v, self.scale, self.zp, I16_RANGE) as i16;
        }
        Ok(())
    }
}

/// Integer requantization between int8 / int16 tensors (TFLite's `Requantize`).
struct Requantize {
    from: DType,
    to: DType,
    rq: RequantPerTensor,
}

impl Requantize {
    fn run<I: Copy + Into<i32>, O>(
        &self,
        src: &[I],
        dst: &mut [O],
        range: QRange,
        narrow: impl Fn(i32) -> O,
    ) -> OpResult<()> {
        op_ensure!(src.len() == dst.len(), "size mismatch");
        for (o, &v) in dst.iter_mut().zip(src) {
            *o = narrow(range.clamp(self.rq.apply_saturating(v.into())));
        }
        Ok(())
    }
}

impl Kernel for Requantize {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = io.outputs.get_mut(0).ok_or("missing output 0")?;
        let (r16, r8) = (I16_RANGE, I8_RANGE);
        match (self.from, self.to) {
            (DType::I16, DType::I16) => self.run(x.i16()?, out.i16()?, r16, |v| v as i16),
            (DType::I16, DType::I8) => self.run(x.i16()?, out.i8()?, r8, |v| v as i8),
            (DType::I8, DType::I16) => self.run(x.i8()?, out.i16()?, r16, |v| v as i16),
            (a, b) => op_bail!(
                "QUANTIZE from {} to {} is not supported",
                a.name(),
                b.name()
            ),
        }
    }
}

/// QUANTIZE with an int16 input or output: float32 → int16, int16 → int16 /
/// int8, int8 → int16.
pub(super) fn build_quantize(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_shape(x, y)?;
    if x.dtype == DType::F32 {
        check_dtype(y, DType::I16, "output")?;
        let (s, z) = q16(y)?;
        return Ok(Box::new(QuantizeF32To16 { scale: s, zp: z }));
    }
    op_ensure!(
        matches!(
            (x.dtype, y.dtype),
            (DType::I16, DType::I16) | (DType::I16, DType::I8) | (DType::I8, DType::I16)
        ),
        "QUANTIZE from {} to {} is not supported",
        x.dtype.name(),
        y.dtype.name()
    );
    let zp8 = |t: &TensorInfo| -> OpResult<(f32, i32)> {
        if t.dtype == DType::I16 {
            q16(t)
        } else {
            let (s, z) = qparams(t)?;
            op_ensure!(
                I8_RANGE.contains(z),
                "tensor '{}': zero point {z} outside the int8 range",
                t.name
            );
            Ok((s, z))
        }
    };
    let (si, zi) = zp8(x)?;
    let (so, zo) = zp8(y)?;
    let rq = RequantPerTensor::new(si as f64 / so as f64, zi, zo);
    op_ensure!(
        rq.shift <= 30,
        "requantization multiplier {} is too large",
        si as f64 / so as f64
    );
    Ok(Box::new(Requantize {
        from: x.dtype,
        to: y.dtype,
        rq,
    }))
}

struct Dequant16 {
    scale: f32,
    zp: i32,
}

impl Kernel for Dequant16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.i16()?;
        let out = io.outputs.get_mut(0).ok_or("missing output 0")?.f32()?;
        op_ensure!(x.len() == out.len(), "size mismatch");
        for (o, &v) in out.iter_mut().zip(x) {
            *o = dequantize(v as i32, self.scale, self.zp);
        }
        Ok(())
    }
}

/// DEQUANTIZE of an int16 tensor (per tensor).
pub(super) fn build_dequantize(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_shape(x, y)?;
    check_dtype(x, DType::I16, "input")?;
    check_dtype(y, DType::F32, "output")?;
    let (scale, zp) = qparams(x)?;
    Ok(Box::new(Dequant16 { scale, zp }))
}
