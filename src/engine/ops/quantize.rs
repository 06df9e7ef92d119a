//! QUANTIZE and DEQUANTIZE, and the generic 8-bit table kernel (the quantization
//! helpers are in [`super::common`]).

use crate::engine::error::OpResult;
use crate::engine::graph::Node;
use crate::engine::kernels::scalar::activation::{apply_lut, build_lut};
use crate::engine::quant::{dequantize, quantize_f32, QRange, RequantPerTensor};
use crate::engine::tensor::{DType, TensorInfo};
use crate::{op_bail, op_ensure};

use super::common::{q8, qrange, same_shape};
use super::{BuildCtx, Kernel, OpIo};

/// An 8-bit → 8-bit element-wise operator evaluated through a 256-entry table.
pub(crate) struct Lut8 {
    pub table: [u8; 256],
}

impl Kernel for Lut8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = &mut io.outputs[0];
        op_ensure!(x.bytes.len() == out.bytes.len(), "size mismatch");
        apply_lut(&self.table, x.bytes, out.bytes);
        Ok(())
    }
}

/// Build a table kernel for input `x` and output `y` of identical shape: 256 entries for
/// 8-bit types, 65 536 for int16 (both int16). `f` maps a stored input value to a stored
/// output value (clamped to the output type here).
pub(crate) fn lut_kernel(
    x: &TensorInfo,
    y: &TensorInfo,
    mut f: impl FnMut(i32) -> i32,
) -> OpResult<Box<dyn Kernel>> {
    same_shape(x, y)?;
    if x.dtype == DType::I16 && y.dtype == DType::I16 {
        let (lo, hi) = (i16::MIN as i32, i16::MAX as i32);
        return Ok(Box::new(Table16 {
            table: (lo..=hi).map(|v| f(v).clamp(lo, hi) as i16).collect(),
        }));
    }
    let r = qrange(x)?;
    qrange(y)?;
    Ok(Box::new(Lut8 {
        table: build_lut(r, f),
    }))
}

/// An int16 table: entry `v + 32768` is the output of input `v`.
struct Table16 {
    table: Vec<i16>,
}

impl Kernel for Table16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.i16()?;
        let y = io.outputs.get_mut(0).ok_or("missing output 0")?.i16()?;
        op_ensure!(x.len() == y.len(), "size mismatch");
        for (o, &v) in y.iter_mut().zip(x) {
            *o = self.table[(v as i32 - i16::MIN as i32) as usize];
        }
        Ok(())
    }
}

struct QuantizeF32 {
    scale: f32,
    zp: i32,
    range: QRange,
    signed: bool,
}

impl Kernel for QuantizeF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.f32()?;
        let out = &mut io.outputs[0];
        op_ensure!(x.len() == out.bytes.len(), "size mismatch");
        for (o, &v) in out.bytes.iter_mut().zip(x) {
            let q = quantize_f32(v, self.scale, self.zp, self.range);
            *o = if self.signed { q as i8 as u8 } else { q as u8 };
        }
        Ok(())
    }
}

struct Dequant8 {
    table: [f32; 256],
}

impl Kernel for Dequant8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = io.outputs[0].f32()?;
        op_ensure!(x.bytes.len() == out.len(), "size mismatch");
        for (o, &b) in out.iter_mut().zip(x.bytes) {
            *o = self.table[b as usize];
        }
        Ok(())
    }
}

struct DequantPerChannel {
    scale: Vec<f32>,
    zp: Vec<i32>,
    inner: usize,
    signed: bool,
}

impl Kernel for DequantPerChannel {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = io.outputs[0].f32()?;
        op_ensure!(x.bytes.len() == out.len(), "size mismatch");
        let n = self.scale.len();
        let inner = self.inner.max(1);
        for (i, (o, &b)) in out.iter_mut().zip(x.bytes).enumerate() {
            let c = (i / inner) % n;
            let v = if self.signed {
                b as i8 as i32
            } else {
                b as i32
            };
            *o = dequantize(v, self.scale[c], self.zp[c]);
        }
        Ok(())
    }
}

struct DequantF16;

impl Kernel for DequantF16 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?.f16_bits()?;
        let out = io.outputs[0].f32()?;
        op_ensure!(x.len() == out.len(), "size mismatch");
        for (o, &b) in out.iter_mut().zip(x) {
            *o = half::f16::from_bits(b).to_f32();
        }
        Ok(())
    }
}

pub(crate) fn build_quantize(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_shape(x, y)?;
    let (so, zo, ro) = q8(y)?;
    match x.dtype {
        DType::F32 => Ok(Box::new(QuantizeF32 {
            scale: so,
            zp: zo,
            range: ro,
            signed: y.dtype == DType::I8,
        })),
        DType::I8 | DType::U8 => {
            let (si, zi, _) = q8(x)?;
            let rq = RequantPerTensor::new(si as f64 / so as f64, zi, zo);
            lut_kernel(x, y, |v| rq.apply(v).clamp(ro.min, ro.max))
        }
        d => op_bail!("QUANTIZE from {} is not supported", d.name()),
    }
}

pub(crate) fn build_dequantize(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_shape(x, y)?;
    op_ensure!(
        y.dtype == DType::F32,
        "DEQUANTIZE output must be float32, got {}",
        y.dtype.name()
    );
    match x.dtype {
        DType::F16 => Ok(Box::new(DequantF16)),
        DType::I8 | DType::U8 if x.quant.as_ref().is_some_and(|q| !q.is_per_tensor()) => {
            // Per-channel (weight-only quantized constants): TFLite's PerChannelDequantize.
            let q = x.quant.as_ref().ok_or("no quantization")?;
            let axis = q.axis;
            op_ensure!(
                axis < x.shape.len(),
                "quantized dimension {axis} out of range"
            );
            let channels = x.shape[axis];
            op_ensure!(
                q.scale.len() == channels && q.zero_point.len() == channels,
                "{} scales / {} zero points for {channels} channels",
                q.scale.len(),
                q.zero_point.len()
            );
            Ok(Box::new(DequantPerChannel {
                scale: q.scale.clone(),
                zp: q.zero_point.iter().map(|&z| z as i32).collect(),
                inner: x.shape[axis + 1..].iter().product(),
                signed: x.dtype == DType::I8,
            }))
        }
        DType::I8 | DType::U8 => {
            let (s, z, r) = q8(x)?;
            let mut table = [0f32; 256];
            for v in r.min..=r.max {
                table[(v as u8) as usize] = dequantize(v, s, z);
            }
            Ok(Box::new(Dequant8 { table }))
        }
        d => op_bail!("DEQUANTIZE from {} is not supported", d.name()),
    }
}
