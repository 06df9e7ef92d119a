//! Tensor metadata and views over tensor bytes.

use super::error::{OpError, OpResult};

/// Element types the engine knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    I32,
    U8,
    I8,
    I64,
    I16,
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::I16 => 2,
            DType::U8 | DType::I8 | DType::Bool => 1,
            DType::I64 => 8,
        }
    }

    /// The numpy `descr` string of this type (little endian).
    pub fn npy_descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F16 => "<f2",
            DType::I32 => "<i4",
            DType::U8 => "|u1",
            DType::I8 => "|i1",
            DType::I64 => "<i8",
            DType::I16 => "<i2",
            DType::Bool => "|b1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I64 => "int64",
            DType::I16 => "int16",
            DType::Bool => "bool",
        }
    }
}

/// Affine quantization: `real = scale * (q - zero_point)`.
/// One entry per tensor (per-tensor) or one per slice along `axis` (per-channel).
#[derive(Clone, Debug, PartialEq)]
pub struct Quant {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub axis: usize,
}

impl Quant {
    pub fn per_tensor(scale: f32, zero_point: i64) -> Self {
        Quant {
            scale: vec![scale],
            zero_point: vec![zero_point],
            axis: 0,
        }
    }
    pub fn is_per_tensor(&self) -> bool {
        self.scale.len() == 1
    }
    /// The single scale of a per-tensor quantized tensor.
    pub fn scale0(&self) -> f32 {
        self.scale[0]
    }
    /// The single zero point of a per-tensor quantized tensor.
    pub fn zp0(&self) -> i32 {
        self.zero_point.first().copied().unwrap_or(0) as i32
    }
}

/// Where a constant tensor's bytes live.
#[derive(Clone, Debug)]
pub enum ConstData {
    /// A byte range inside the model file (used in place).
    File { offset: usize, len: usize },
    /// Bytes produced at load time (constant folding, realignment), 8-byte aligned storage.
    Owned(std::sync::Arc<Vec<u64>>, usize),
}

/// Static description of one tensor of the graph.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub quant: Option<Quant>,
    /// Constant data, if this tensor is a constant (weights, biases, shape operands...).
    pub data: Option<ConstData>,
}

impl TensorInfo {
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn byte_len(&self) -> usize {
        self.num_elements() * self.dtype.size()
    }
    pub fn is_const(&self) -> bool {
        self.data.is_some()
    }
}

/// A read-only view of a tensor during evaluation.
#[derive(Clone, Copy)]
pub struct TensorRef<'a> {
    pub info: &'a TensorInfo,
    pub bytes: &'a [u8],
}

/// A writable view of an output tensor during evaluation.
pub struct TensorMut<'a> {
    pub info: &'a TensorInfo,
    pub bytes: &'a mut [u8],
}

fn cast<'a, T: bytemuck::Pod>(info: &TensorInfo, want: DType, b: &'a [u8]) -> OpResult<&'a [T]> {
    if info.dtype != want {
        return Err(OpError(format!(
            "tensor '{}' is {}, expected {}",
            info.name,
            info.dtype.name(),
            want.name()
        )));
    }
    bytemuck::try_cast_slice(b)
        .map_err(|e| OpError(format!("tensor '{}' data not castable: {e:?}", info.name)))
}

fn cast_mut<'a, T: bytemuck::Pod>(
    info: &TensorInfo,
    want: DType,
    b: &'a mut [u8],
) -> OpResult<&'a mut [T]> {
    if info.dtype != want {
        return Err(OpError(format!(
            "tensor '{}' is {}, expected {}",
            info.name,
            info.dtype.name(),
            want.name()
        )));
    }
    bytemuck::try_cast_slice_mut(b)
        .map_err(|e| OpError(format!("tensor '{}' data not castable: {e:?}", info.name)))
}

impl<'a> TensorRef<'a> {
    pub fn shape(&self) -> &'a [usize] {
        &self.info.shape
    }
    pub fn dtype(&self) -> DType {
        self.info.dtype
    }
    pub fn quant(&self) -> Option<&'a Quant> {
        self.info.quant.as_ref()
    }
    pub fn f32(&self) -> OpResult<&'a [f32]> {
        cast(self.info, DType::F32, self.bytes)
    }
    pub fn i8(&self) -> OpResult<&'a [i8]> {
        cast(self.info, DType::I8, self.bytes)
    }
    pub fn u8(&self) -> OpResult<&'a [u8]> {
        cast(self.info, DType::U8, self.bytes)
    }
    pub fn i32(&self) -> OpResult<&'a [i32]> {
        cast(self.info, DType::I32, self.bytes)
    }
    pub fn i64(&self) -> OpResult<&'a [i64]> {
        cast(self.info, DType::I64, self.bytes)
    }
    pub fn i16(&self) -> OpResult<&'a [i16]> {
        cast(self.info, DType::I16, self.bytes)
    }
    pub fn f16_bits(&self) -> OpResult<&'a [u16]> {
        if self.info.dtype != DType::F16 {
            return Err(OpError(format!(
                "tensor '{}' is not float16",
                self.info.name
            )));
        }
        bytemuck::try_cast_slice(self.bytes).map_err(|e| OpError(format!("{e:?}")))
    }
    /// Integer operand (shape vectors, axes, paddings) as i64, from int32 or int64 data.
    pub fn ints(&self) -> OpResult<Vec<i64>> {
        match self.info.dtype {
            DType::I32 => Ok(self.i32()?.iter().map(|&v| v as i64).collect()),
            DType::I64 => Ok(self.i64()?.to_vec()),
            d => Err(OpError(format!(
                "tensor '{}' is {}, expected an integer tensor",
                self.info.name,
                d.name()
            ))),
        }
    }
}

impl<'a> TensorMut<'a> {
    pub fn shape(&self) -> &'a [usize] {
        &self.info.shape
    }
    pub fn dtype(&self) -> DType {
        self.info.dtype
    }
    pub fn quant(&self) -> Option<&'a Quant> {
        self.info.quant.as_ref()
    }
    pub fn f32(&mut self) -> OpResult<&mut [f32]> {
        cast_mut(self.info, DType::F32, self.bytes)
    }
    pub fn i8(&mut self) -> OpResult<&mut [i8]> {
        cast_mut(self.info, DType::I8, self.bytes)
    }
    pub fn u8(&mut self) -> OpResult<&mut [u8]> {
        cast_mut(self.info, DType::U8, self.bytes)
    }
    pub fn i32(&mut self) -> OpResult<&mut [i32]> {
        cast_mut(self.info, DType::I32, self.bytes)
    }
    pub fn i64(&mut self) -> OpResult<&mut [i64]> {
        cast_mut(self.info, DType::I64, self.bytes)
    }
    pub fn i16(&mut self) -> OpResult<&mut [i16]> {
        cast_mut(self.info, DType::I16, self.bytes)
    }
}
