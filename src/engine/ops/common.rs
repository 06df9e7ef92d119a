//! The helpers every operator uses while it is built or run: fetching tensors
//! ([`BuildCtx`] / [`OpIo`] accessors, typed slices of checked length), shape and
//! type checks, the window geometry of NHWC operators, and per-tensor quantization
//! parameters. Every failure is an [`OpError`](crate::engine::error::OpError) naming the
//! tensor it concerns; the executor adds the operator.

use super::{BuildCtx, OpIo};
use crate::engine::error::{OpError, OpResult};
use crate::engine::graph::{const_data_bytes, Activation, Node, Padding};
use crate::engine::kernels::scalar::conv::ConvGeom;
use crate::engine::quant::{activation_range_f32, QRange, QType, I8_RANGE, U8_RANGE};
use crate::engine::tensor::{DType, Quant, TensorInfo, TensorMut, TensorRef};
use crate::{op_bail, op_ensure};

// ---------------------------------------------------------------- fetching tensors

impl<'a> BuildCtx<'a> {
    /// Info of tensor `t` (indices were validated by the loader).
    pub fn info(&self, t: usize) -> OpResult<&'a TensorInfo> {
        match self.tensors.get(t) {
            Some(info) => Ok(info),
            None => op_bail!("tensor {t} out of range"),
        }
    }
    /// Constant data of tensor `t`, or `None` if it is computed at run time.
    pub fn const_data(&self, t: usize) -> OpResult<Option<TensorRef<'a>>> {
        let info = self.info(t)?;
        let Some(d) = &info.data else {
            return Ok(None);
        };
        let Some(bytes) = const_data_bytes(self.bytes, d) else {
            op_bail!("tensor {t} '{}': constant data out of range", info.name);
        };
        Ok(Some(TensorRef { info, bytes }))
    }
    /// Input `i` of `node`, which must be present.
    pub fn input(&self, node: &Node, i: usize) -> OpResult<&'a TensorInfo> {
        match node.inputs.get(i) {
            Some(Some(t)) => self.info(*t),
            _ => op_bail!("missing input {i}"),
        }
    }
    /// Output `i` of `node`.
    pub fn output(&self, node: &Node, i: usize) -> OpResult<&'a TensorInfo> {
        match node.outputs.get(i) {
            Some(t) => self.info(*t),
            _ => op_bail!("missing output {i}"),
        }
    }
}

impl<'a> OpIo<'a> {
    /// Input `i`, which must be present.
    pub fn input(&self, i: usize) -> OpResult<TensorRef<'a>> {
        match self.inputs.get(i) {
            Some(Some(t)) => Ok(*t),
            _ => op_bail!("missing input {i}"),
        }
    }
}

/// Input `i` as a slice of exactly `len` elements.
pub(crate) fn in_slice<'a, T>(
    io: &OpIo<'a>,
    i: usize,
    len: usize,
    view: impl Fn(TensorRef<'a>) -> OpResult<&'a [T]>,
) -> OpResult<&'a [T]> {
    let s = view(io.input(i)?)?;
    op_ensure!(
        s.len() == len,
        "input {i} has {} elements, expected {len}",
        s.len()
    );
    Ok(s)
}

/// Output 0 as a slice of exactly `len` elements.
pub(crate) fn out_slice<'b, 'a, T>(
    io: &'b mut OpIo<'a>,
    len: usize,
    view: impl FnOnce(&'b mut TensorMut<'a>) -> OpResult<&'b mut [T]>,
) -> OpResult<&'b mut [T]> {
    let Some(o) = io.outputs.get_mut(0) else {
        op_bail!("missing output 0");
    };
    let s = view(o)?;
    op_ensure!(
        s.len() == len,
        "output has {} elements, expected {len}",
        s.len()
    );
    Ok(s)
}

/// An element type the quantized kernels run on, with its typed tensor views.
pub(crate) trait QElem: QType {
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

impl QElem for i16 {
    const DTYPE: DType = DType::I16;
    fn view<'a>(t: TensorRef<'a>) -> OpResult<&'a [i16]> {
        t.i16()
    }
    fn view_mut<'b>(t: &'b mut TensorMut<'_>) -> OpResult<&'b mut [i16]> {
        t.i16()
    }
}

// ---------------------------------------------------------------- shape and type checks

pub(crate) fn check_rank(t: &TensorInfo, rank: usize, what: &str) -> OpResult<()> {
    op_ensure!(
        t.shape.len() == rank,
        "{what} '{}' must have rank {rank}, has shape {:?}",
        t.name,
        t.shape
    );
    Ok(())
}

pub(crate) fn check_dtype(t: &TensorInfo, want: DType, what: &str) -> OpResult<()> {
    op_ensure!(
        t.dtype == want,
        "{what} '{}' is {}, expected {}",
        t.name,
        t.dtype.name(),
        want.name()
    );
    Ok(())
}

pub(crate) fn same_shape(a: &TensorInfo, b: &TensorInfo) -> OpResult<()> {
    op_ensure!(
        a.shape == b.shape,
        "shape mismatch: '{}' {:?} vs '{}' {:?}",
        a.name,
        a.shape,
        b.name,
        b.shape
    );
    Ok(())
}

/// Output size and leading padding along one dimension, as TFLite computes them
/// (`ComputeOutSize` / `ComputePaddingHeightWidth`; only the leading pad is used).
pub(crate) fn out_size_and_pad(
    padding: Padding,
    in_size: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> OpResult<(usize, usize)> {
    op_ensure!(
        stride != 0 && dilation != 0 && filter != 0,
        "stride ({stride}), dilation ({dilation}) and filter size ({filter}) must be positive"
    );
    let Some(eff) = (filter - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
    else {
        op_bail!("filter size overflow");
    };
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
    op_ensure!(
        out != 0,
        "empty output: input size {in_size}, effective filter {eff}, stride {stride}"
    );
    let total = ((out - 1) * stride + eff).saturating_sub(in_size);
    Ok((out, total / 2))
}

/// The window of a window operator: filter size, padding, and (height, width) stride and
/// dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub filter_h: usize,
    pub filter_w: usize,
    pub padding: Padding,
    pub stride: (usize, usize),
    pub dilation: (usize, usize),
}

/// Geometry of a 4-D NHWC window operator (convolution, depthwise, pool) with `out_c` output
/// channels; checks the output shape.
pub(crate) fn window_geom(
    input: &TensorInfo,
    output: &TensorInfo,
    out_c: usize,
    w: &Window,
) -> OpResult<ConvGeom> {
    let Window {
        filter_h,
        filter_w,
        padding,
        stride,
        dilation,
    } = *w;
    check_rank(input, 4, "input")?;
    check_rank(output, 4, "output")?;
    let (oh, pt) = out_size_and_pad(padding, input.shape[1], filter_h, stride.0, dilation.0)?;
    let (ow, pl) = out_size_and_pad(padding, input.shape[2], filter_w, stride.1, dilation.1)?;
    let want = [input.shape[0], oh, ow, out_c];
    op_ensure!(
        output.shape == want,
        "output '{}' has shape {:?}, expected {:?}",
        output.name,
        output.shape,
        want
    );
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

// ---------------------------------------------------------------- quantization parameters

/// Per-tensor quantization of `t` with a positive finite scale (the window / matrix
/// operators' check: `what` names the operand).
pub(crate) fn per_tensor_quant<'a>(t: &'a TensorInfo, what: &str) -> OpResult<&'a Quant> {
    let Some(q) = t.quant.as_ref() else {
        op_bail!("{what} '{}' has no quantization parameters", t.name);
    };
    op_ensure!(
        q.scale.len() == 1 && q.zero_point.len() <= 1,
        "{what} '{}' must be quantized per tensor",
        t.name
    );
    check_scale(q.scale[0], t)?;
    Ok(q)
}

/// A quantization scale must be positive and finite.
pub(crate) fn check_scale(s: f32, t: &TensorInfo) -> OpResult<()> {
    op_ensure!(
        s.is_finite() && s > 0.0,
        "tensor '{}' has invalid quantization scale {s}",
        t.name
    );
    Ok(())
}

/// Zero point of a per-tensor quantized tensor, checked against the type range.
pub(crate) fn zero_point<T: QType>(q: &Quant, t: &TensorInfo) -> OpResult<i32> {
    let zp = q.zero_point.first().copied().unwrap_or(0);
    op_ensure!(
        (T::RANGE.min as i64..=T::RANGE.max as i64).contains(&zp),
        "tensor '{}' zero point {zp} out of range",
        t.name
    );
    Ok(zp as i32)
}

/// Per-tensor (scale, zero point) of a quantized tensor (the element-wise, activation
/// and data-movement operators' check).
pub(crate) fn qparams(t: &TensorInfo) -> OpResult<(f32, i32)> {
    let Some(q) = &t.quant else {
        op_bail!("tensor '{}' has no quantization parameters", t.name);
    };
    op_ensure!(
        q.is_per_tensor() && q.zero_point.len() <= 1,
        "tensor '{}': per-channel quantization is not supported here",
        t.name
    );
    let s = q.scale0();
    op_ensure!(
        s.is_finite() && s > 0.0,
        "tensor '{}': invalid scale {s}",
        t.name
    );
    Ok((s, q.zp0()))
}

/// Per-tensor scales of an int16 operator's input and output: TFLite's 16x8
/// operators take symmetric tensors (zero points 0) and refuse others.
pub(crate) fn symmetric16(op: &str, x: &TensorInfo, y: &TensorInfo) -> OpResult<(f32, f32)> {
    let ((si, zi), (so, zo)) = (qparams(x)?, qparams(y)?);
    op_ensure!(
        zi == 0 && zo == 0,
        "int16 {op} needs zero points 0 (input {zi}, output {zo})"
    );
    Ok((si, so))
}

/// Storage range of an 8-bit quantized type.
pub(crate) fn qrange(t: &TensorInfo) -> OpResult<QRange> {
    match t.dtype {
        DType::I8 => Ok(I8_RANGE),
        DType::U8 => Ok(U8_RANGE),
        d => op_bail!("tensor '{}': {} is not an 8-bit type", t.name, d.name()),
    }
}

/// Quantization of an 8-bit tensor: (scale, zero point, range), zero point checked.
pub(crate) fn q8(t: &TensorInfo) -> OpResult<(f32, i32, QRange)> {
    let r = qrange(t)?;
    let (s, z) = qparams(t)?;
    op_ensure!(
        (r.min..=r.max).contains(&z),
        "tensor '{}': zero point {z} outside the {} range",
        t.name,
        t.dtype.name()
    );
    Ok((s, z, r))
}

/// Float fused-activation clamp.
pub(crate) fn float_clamp(act: Activation) -> OpResult<(f32, f32)> {
    activation_range_f32(act).map_err(OpError)
}
