//! Activation operators: LOGISTIC, TANH, RELU, RELU6, RELU_N1_TO_1,
//! HARD_SWISH, LEAKY_RELU, PRELU and SOFTMAX.
//!
//! 8-bit variants are 256-entry tables computed at build time with TFLite's
//! reference arithmetic (see `kernels::scalar::activation` and `quant`); PRELU,
//! whose second operand is a tensor, requantizes each value with the two
//! multipliers prepared at build time.

use crate::engine::error::OpResult;
use crate::engine::graph::{Node, Op};
use crate::engine::kernels::scalar::activation::{
    float_lut_entry, hard_swish_f32, hard_swish_q, leaky_relu_f32, leaky_relu_q, logistic_f32,
    logistic_i16, logistic_plain_f32, prelu_f32, prelu_q, softmax_exp_table, softmax_q_row,
    tanh_f32, tanh_i16, HardSwishParams, Lut16Params, PreluQParams, Softmax16, SoftmaxQParams,
};
use crate::engine::quant::{quantize_value, RequantPerTensor, I16_RANGE};
use crate::engine::tensor::{DType, TensorInfo};
use crate::{op_bail, op_ensure};

use super::common::{in_slice, out_slice, q8, qparams, same_shape, symmetric16, QElem};
use super::quantize::lut_kernel;
use super::{BuildCtx, Kernel, OpIo};

#[derive(Clone, Copy)]
enum FloatFn {
    Logistic,
    Tanh,
    Relu,
    Relu6,
    ReluN1To1,
    HardSwish,
    Leaky(f32),
}

struct FloatUnary(FloatFn);

impl Kernel for FloatUnary {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.f32()?;
        let y = io.outputs[0].f32()?;
        op_ensure!(x.len() == y.len(), "size mismatch");
        macro_rules! map {
            ($f:expr) => {
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = $f(v);
                }
            };
        }
        match self.0 {
            FloatFn::Logistic => map!(logistic_f32),
            FloatFn::Tanh => map!(tanh_f32),
            FloatFn::Relu => map!(|v: f32| v.max(0.0)),
            FloatFn::Relu6 => map!(|v: f32| v.clamp(0.0, 6.0)),
            FloatFn::ReluN1To1 => map!(|v: f32| v.clamp(-1.0, 1.0)),
            FloatFn::HardSwish => map!(hard_swish_f32),
            FloatFn::Leaky(a) => map!(|v: f32| leaky_relu_f32(v, a)),
        }
        Ok(())
    }
}

/// Build any of the element-wise activations.
pub(crate) fn build_unary(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_shape(x, y)?;
    op_ensure!(
        x.dtype == y.dtype,
        "input is {} but output is {}",
        x.dtype.name(),
        y.dtype.name()
    );
    let op = &node.op;
    if x.dtype == DType::F32 {
        let f = match op {
            Op::Logistic => FloatFn::Logistic,
            Op::Tanh => FloatFn::Tanh,
            Op::Relu => FloatFn::Relu,
            Op::Relu6 => FloatFn::Relu6,
            Op::ReluN1To1 => FloatFn::ReluN1To1,
            Op::HardSwish => FloatFn::HardSwish,
            Op::LeakyRelu { alpha } => FloatFn::Leaky(*alpha),
            _ => op_bail!("not an element-wise activation"),
        };
        return Ok(Box::new(FloatUnary(f)));
    }
    if x.dtype == DType::I16 && matches!(op, Op::Logistic | Op::Tanh) {
        return build_lut16(x, y, matches!(op, Op::Tanh));
    }
    let (si, zi, so, zo, ro) = match x.dtype {
        DType::I8 | DType::U8 => {
            let (si, zi, _) = q8(x)?;
            let (so, zo, ro) = q8(y)?;
            (si, zi, so, zo, ro)
        }
        // TFLite's int16 RELU, RELU6 and LEAKY_RELU (LOGISTIC and TANH above; it has no
        // int16 HARD_SWISH or RELU_N1_TO_1): the 8-bit arithmetic on symmetric tensors,
        // through a 65 536-entry table.
        DType::I16 if matches!(op, Op::Relu | Op::Relu6 | Op::LeakyRelu { .. }) => {
            let (si, so) = symmetric16(op.name(), x, y)?;
            (si, 0, so, 0, I16_RANGE)
        }
        d => op_bail!("{} on {} is not supported", op.name(), d.name()),
    };
    match op {
        Op::Logistic => {
            // TFLite requires the output to be 1/256 with the zero point at the bottom.
            let want_zp = if y.dtype == DType::I8 { -128 } else { 0 };
            op_ensure!(
                (so * 256.0 - 1.0).abs() < 1e-5 && zo == want_zp,
                "LOGISTIC output must have scale 1/256 and zero point {want_zp}"
            );
            lut_kernel(x, y, |v| {
                float_lut_entry(v, si, zi, so, zo, ro, logistic_plain_f32)
            })
        }
        Op::Tanh => {
            let want_zp = if y.dtype == DType::I8 { 0 } else { 128 };
            op_ensure!(
                (so * 128.0 - 1.0).abs() < 1e-5 && zo == want_zp,
                "TANH output must have scale 1/128 and zero point {want_zp}"
            );
            lut_kernel(x, y, |v| float_lut_entry(v, si, zi, so, zo, ro, tanh_f32))
        }
        Op::Relu | Op::Relu6 | Op::ReluN1To1 => {
            let (lo, hi) = match op {
                Op::Relu => (Some(0.0), None),
                Op::Relu6 => (Some(0.0), Some(6.0)),
                _ => (Some(-1.0), Some(1.0)),
            };
            let amin = lo.map_or(ro.min, |l| ro.min.max(quantize_value(l, so, zo)));
            let amax = hi.map_or(ro.max, |h| ro.max.min(quantize_value(h, so, zo)));
            // TFLite divides the scales in single precision, then widens.
            let rq = RequantPerTensor::new((si / so) as f64, zi, zo);
            lut_kernel(x, y, |v| rq.apply(v).max(amin).min(amax))
        }
        Op::HardSwish => {
            let p = HardSwishParams::new(si, zi, so, zo)?;
            lut_kernel(x, y, |v| hard_swish_q(&p, v, ro))
        }
        Op::LeakyRelu { alpha } => {
            let ident = RequantPerTensor::new((si / so) as f64, zi, zo);
            let alpha_rq = RequantPerTensor::new((si * alpha / so) as f64, zi, zo);
            lut_kernel(x, y, |v| leaky_relu_q(&ident, &alpha_rq, v, ro))
        }
        _ => op_bail!("not an element-wise activation"),
    }
}

/// Largest period (elements) a small broadcast alpha is repeated to, so that the
/// kernels' inner loop runs over more than a handful of channels.
const PRELU_MIN_PERIOD: usize = 1024;

/// How PRELU's alpha lines up with its input: the input, in row-major order, is
/// `len / period` repetitions of one period, and element `j` of each period uses
/// alpha element `map[j]`.
struct PreluPlan {
    /// Input (and output) elements.
    len: usize,
    /// 0 only for an empty input.
    period: usize,
    /// Alpha index of each element of a period (empty when alpha is used as it is).
    map: Vec<u32>,
}

/// TFLite's PRELU broadcasting: alpha (rank at most the input's, aligned at the
/// last dimension) has each dimension 1 or equal to the input's, and the output has
/// the input's shape.
fn prelu_plan(x: &TensorInfo, alpha: &TensorInfo) -> OpResult<PreluPlan> {
    let r = x.shape.len();
    op_ensure!(
        alpha.shape.len() <= r,
        "alpha '{}' {:?} has more dimensions than the input {:?}",
        alpha.name,
        alpha.shape,
        x.shape
    );
    let mut a = vec![1usize; r - alpha.shape.len()];
    a.extend_from_slice(&alpha.shape);
    op_ensure!(
        a.iter().zip(&x.shape).all(|(&d, &n)| d == 1 || d == n),
        "alpha '{}' {:?} does not broadcast to the input {:?}",
        alpha.name,
        alpha.shape,
        x.shape
    );
    let len = x.num_elements();
    if len == 0 {
        return Ok(PreluPlan {
            len,
            period: 0,
            map: Vec::new(),
        });
    }
    // Alpha varies only from dimension `k0` on: the input repeats with period
    // `prod(x[k0..])`.
    let k0 = a.iter().position(|&d| d != 1).unwrap_or(r);
    let period: usize = x.shape[k0..].iter().product();
    let outer = len / period;
    let identity = a[k0..] == x.shape[k0..];
    // A short period is repeated (a divisor of the repetitions) up to PRELU_MIN_PERIOD.
    let reps = (1..=outer)
        .rev()
        .find(|&m| outer.is_multiple_of(m) && m * period <= PRELU_MIN_PERIOD)
        .unwrap_or(1);
    if identity && reps == 1 {
        return Ok(PreluPlan {
            len,
            period,
            map: Vec::new(),
        });
    }
    // Alpha strides over the input's dimensions k0.., 0 where alpha is broadcast.
    let dims = &x.shape[k0..];
    let mut strides = vec![0usize; dims.len()];
    let mut s = 1;
    for k in (0..dims.len()).rev() {
        if a[k0 + k] != 1 {
            strides[k] = s;
        }
        s *= a[k0 + k];
    }
    op_ensure!(period * reps <= u32::MAX as usize, "PRELU input too large");
    let mut map = Vec::with_capacity(period * reps);
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..period {
        map.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>() as u32);
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    for _ in 1..reps {
        map.extend_from_within(..period);
    }
    Ok(PreluPlan {
        len,
        period: period * reps,
        map,
    })
}

/// Float PRELU: one pass over the input per period of alpha.
struct PreluF32 {
    plan: PreluPlan,
    alpha_len: usize,
    /// The alpha of one period, gathered through `plan.map` (unused without a map).
    alpha: Vec<f32>,
}

impl Kernel for PreluF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let p = &self.plan;
        let x = in_slice(io, 0, p.len, |t| t.f32())?;
        let alpha = in_slice(io, 1, self.alpha_len, |t| t.f32())?;
        let y = out_slice(io, p.len, |t| t.f32())?;
        if p.period == 0 {
            return Ok(());
        }
        let alpha = if p.map.is_empty() {
            alpha
        } else {
            for (d, &m) in self.alpha.iter_mut().zip(&p.map) {
                *d = alpha[m as usize];
            }
            &self.alpha
        };
        for (xr, yr) in x.chunks_exact(p.period).zip(y.chunks_exact_mut(p.period)) {
            prelu_f32(xr, alpha, yr);
        }
        Ok(())
    }
}

/// 8-bit PRELU (int8 or uint8): TFLite's reference arithmetic per value.
struct PreluQ<T> {
    plan: PreluPlan,
    alpha_len: usize,
    p: PreluQParams,
    /// The stored alpha of one period (`plan.map` applied).
    alpha: Vec<i32>,
    _t: std::marker::PhantomData<T>,
}

impl<T: QElem> Kernel for PreluQ<T> {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let pl = &self.plan;
        let x = in_slice(io, 0, pl.len, T::view)?;
        let alpha = in_slice(io, 1, self.alpha_len, T::view)?;
        let y = out_slice(io, pl.len, T::view_mut)?;
        if pl.period == 0 {
            return Ok(());
        }
        if pl.map.is_empty() {
            for (d, &a) in self.alpha.iter_mut().zip(alpha) {
                *d = a.to_i32();
            }
        } else {
            for (d, &m) in self.alpha.iter_mut().zip(&pl.map) {
                *d = alpha[m as usize].to_i32();
            }
        }
        for (xr, yr) in x.chunks_exact(pl.period).zip(y.chunks_exact_mut(pl.period)) {
            for ((o, &v), &a) in yr.iter_mut().zip(xr).zip(&self.alpha) {
                *o = T::from_i32(prelu_q(&self.p, v.to_i32(), a));
            }
        }
        Ok(())
    }
}

/// PRELU (float32, int8, uint8): `x >= 0 ? x : alpha * x`, alpha broadcast.
pub(crate) fn build_prelu(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let alpha = ctx.input(node, 1)?;
    let y = ctx.output(node, 0)?;
    same_shape(x, y)?;
    op_ensure!(
        x.dtype == alpha.dtype && x.dtype == y.dtype,
        "input, alpha and output must have one type (they are {}, {}, {})",
        x.dtype.name(),
        alpha.dtype.name(),
        y.dtype.name()
    );
    let plan = prelu_plan(x, alpha)?;
    let alpha_len = alpha.num_elements();
    let period = if plan.map.is_empty() { 0 } else { plan.period };
    match x.dtype {
        DType::F32 => Ok(Box::new(PreluF32 {
            plan,
            alpha_len,
            alpha: vec![0.0; period],
        })),
        DType::I8 => build_prelu_q::<i8>(x, alpha, y, plan, alpha_len),
        DType::U8 => build_prelu_q::<u8>(x, alpha, y, plan, alpha_len),
        d => op_bail!("PRELU on {} is not supported", d.name()),
    }
}

fn build_prelu_q<T: QElem>(
    x: &TensorInfo,
    alpha: &TensorInfo,
    y: &TensorInfo,
    plan: PreluPlan,
    alpha_len: usize,
) -> OpResult<Box<dyn Kernel>> {
    let (si, zi, _) = q8(x)?;
    let (sa, za, _) = q8(alpha)?;
    let (so, zo, ro) = q8(y)?;
    // TFLite forms both real multipliers in float before widening them.
    let identity = RequantPerTensor::new((si / so) as f64, zi, zo);
    let alpha_rq = RequantPerTensor::new((si * sa / so) as f64, 0, zo);
    for (what, rq) in [
        ("input / output", &identity),
        ("input × alpha / output", &alpha_rq),
    ] {
        op_ensure!(
            rq.shift <= 30,
            "PRELU scale ratio {what} is too large (input {si}, alpha {sa}, output {so})"
        );
    }
    Ok(Box::new(PreluQ::<T> {
        alpha: vec![0; plan.period],
        plan,
        alpha_len,
        p: PreluQParams {
            identity,
            alpha: alpha_rq,
            alpha_zp: za,
            out: ro,
        },
        _t: std::marker::PhantomData,
    }))
}

/// int16 LOGISTIC / TANH (16x8 models): TFLite's interpolated sigmoid table.
struct Lut16 {
    p: Lut16Params,
    tanh: bool,
}

impl Kernel for Lut16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.i16()?;
        let y = io.outputs.get_mut(0).ok_or("missing output 0")?.i16()?;
        op_ensure!(x.len() == y.len(), "size mismatch");
        let f = if self.tanh { tanh_i16 } else { logistic_i16 };
        for (o, &v) in y.iter_mut().zip(x) {
            *o = f(&self.p, v);
        }
        Ok(())
    }
}

/// TFLite's Prepare of int16 LOGISTIC / TANH: zero points 0, output scale 1/32768.
fn build_lut16(x: &TensorInfo, y: &TensorInfo, tanh: bool) -> OpResult<Box<dyn Kernel>> {
    let name = if tanh { "TANH" } else { "LOGISTIC" };
    let (si, so) = symmetric16(name, x, y)?;
    op_ensure!(
        si.is_finite() && si > 0.0,
        "int16 {name} input scale {si} is not positive"
    );
    let l = so.ln() / 2.0f32.ln();
    op_ensure!(
        (l - l.round()).abs() < 1e-3 && l.round() == -15.0,
        "int16 {name} output must have scale 1/32768 (got {so})"
    );
    Ok(Box::new(Lut16 {
        p: Lut16Params::new(si, tanh),
        tanh,
    }))
}

/// Float SOFTMAX along the last axis.
struct SoftmaxF32 {
    beta: f32,
    depth: usize,
}

impl Kernel for SoftmaxF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.f32()?;
        let y = io.outputs[0].f32()?;
        op_ensure!(x.len() == y.len(), "size mismatch");
        for (xr, yr) in x
            .chunks_exact(self.depth)
            .zip(y.chunks_exact_mut(self.depth))
        {
            let max = xr.iter().copied().fold(f32::MIN, f32::max);
            let mut sum = 0.0f32;
            for (o, &v) in yr.iter_mut().zip(xr) {
                let e = ((v - max) * self.beta).exp();
                *o = e;
                sum += e;
            }
            let inv = 1.0 / sum;
            for o in yr.iter_mut() {
                *o *= inv;
            }
        }
        Ok(())
    }
}

pub(crate) fn build_softmax(
    ctx: &BuildCtx<'_>,
    node: &Node,
    beta: f32,
) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_shape(x, y)?;
    op_ensure!(x.dtype == y.dtype, "input and output types differ");
    op_ensure!(!x.shape.is_empty(), "SOFTMAX needs at least one dimension");
    let depth = *x.shape.last().unwrap_or(&1);
    op_ensure!(depth > 0, "empty softmax axis");
    match x.dtype {
        DType::F32 => Ok(Box::new(SoftmaxF32 { beta, depth })),
        DType::I8 | DType::U8 => {
            let (si, _, _) = q8(x)?;
            let (so, zo, ro) = q8(y)?;
            let want_zp = if y.dtype == DType::I8 { -128 } else { 0 };
            op_ensure!(
                zo == want_zp && (so - 1.0 / 256.0).abs() <= 0.001 / 256.0,
                "SOFTMAX output must have scale 1/256 and zero point {want_zp}"
            );
            Ok(Box::new(SoftmaxQ {
                p: SoftmaxQParams {
                    table: softmax_exp_table(si, beta),
                    out_scale: so,
                    out_zp: zo,
                    out: ro,
                    signed: x.dtype == DType::I8,
                },
                depth,
            }))
        }
        DType::I16 => {
            let (si, zi) = qparams(x)?;
            let (so, zo) = qparams(y)?;
            op_ensure!(
                zi == 0 && zo == 0 && (so * 32768.0 - 1.0).abs() <= 0.001,
                "int16 SOFTMAX needs zero points 0 and output scale 1/32768 \
                 (input zero point {zi}, output scale {so}, zero point {zo})"
            );
            Ok(Box::new(SoftmaxI16 {
                p: Softmax16::new(si, beta),
                depth,
            }))
        }
        d => op_bail!("SOFTMAX on {} is not supported", d.name()),
    }
}

/// int16 SOFTMAX (16x8 models): TFLite's exp and reciprocal tables.
struct SoftmaxI16 {
    p: Softmax16,
    depth: usize,
}

impl Kernel for SoftmaxI16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.i16()?;
        let y = io.outputs.get_mut(0).ok_or("missing output 0")?.i16()?;
        op_ensure!(x.len() == y.len(), "size mismatch");
        for (xr, yr) in x
            .chunks_exact(self.depth)
            .zip(y.chunks_exact_mut(self.depth))
        {
            self.p.row(xr, yr);
        }
        Ok(())
    }
}

/// Quantized SOFTMAX as TFLite evaluates it: a float table of
/// `exp(-scale * beta * d)` for every difference `d` to the row maximum.
struct SoftmaxQ {
    p: SoftmaxQParams,
    depth: usize,
}

impl Kernel for SoftmaxQ {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.bytes;
        let out = &mut io.outputs[0].bytes;
        op_ensure!(x.len() == out.len(), "size mismatch");
        let signed = self.p.signed;
        let rd = |v: u8| if signed { v as i8 as i32 } else { v as i32 };
        for (xr, yr) in x
            .chunks_exact(self.depth)
            .zip(out.chunks_exact_mut(self.depth))
        {
            softmax_q_row(&self.p, xr, yr, rd);
        }
        Ok(())
    }
}
