//! Operator implementations. `build` turns a graph node into a prepared
//! [`Kernel`]: every shape, type and quantization parameter is checked there,
//! so that `eval` cannot index out of bounds.

use std::sync::Arc;

use smallvec::SmallVec;

use super::kernels::KernelPath;
use super::pool::ThreadPool;

pub mod detection_postprocess;

use super::error::OpResult;
use super::graph::{const_data_bytes, ModelBytes, Node, Op};
use super::tensor::{TensorInfo, TensorMut, TensorRef};

// Non-convolution operators (element-wise, activations, data movement, resize, quantization).
pub mod activation;
pub mod elementwise;
pub mod quantize;
pub mod resize;
pub mod shape;
// Window / matrix / reduction operators (CONV_2D, DEPTHWISE_CONV_2D,
// FULLY_CONNECTED, pools, MEAN).
mod conv;
mod conv_fast;
mod depthwise;
mod fully_connected;
mod hybrid;
mod int16;
mod pool;
mod reduce;

/// What an operator may look at while it is prepared.
pub struct BuildCtx<'a> {
    pub tensors: &'a [TensorInfo],
    pub bytes: &'a ModelBytes,
    /// Kernel path of the convolution / fully-connected kernels.
    pub kernels: KernelPath,
    /// The interpreter's thread pool (`None`: run on the calling thread only).
    pub pool: Option<Arc<ThreadPool>>,
}

impl<'a> BuildCtx<'a> {
    /// Info of tensor `t` (indices were validated by the loader).
    pub fn info(&self, t: usize) -> OpResult<&'a TensorInfo> {
        self.tensors
            .get(t)
            .ok_or_else(|| format!("tensor {t} out of range").into())
    }
    /// Constant data of tensor `t`, or `None` if it is computed at run time.
    pub fn const_data(&self, t: usize) -> OpResult<Option<TensorRef<'a>>> {
        let info = self.info(t)?;
        match &info.data {
            None => Ok(None),
            Some(d) => {
                let bytes = const_data_bytes(self.bytes, d).ok_or_else(|| {
                    format!("tensor {t} '{}': constant data out of range", info.name)
                })?;
                Ok(Some(TensorRef { info, bytes }))
            }
        }
    }
    /// Input `i` of `node`, which must be present.
    pub fn input(&self, node: &Node, i: usize) -> OpResult<&'a TensorInfo> {
        match node.inputs.get(i) {
            Some(Some(t)) => self.info(*t),
            _ => Err(format!("missing input {i}").into()),
        }
    }
    /// Output `i` of `node`.
    pub fn output(&self, node: &Node, i: usize) -> OpResult<&'a TensorInfo> {
        match node.outputs.get(i) {
            Some(t) => self.info(*t),
            _ => Err(format!("missing output {i}").into()),
        }
    }
}

/// Everything an operator sees while it runs.
pub struct OpIo<'a> {
    /// Input operands in node order; `None` for an omitted optional operand.
    pub inputs: SmallVec<[Option<TensorRef<'a>>; 8]>,
    pub outputs: SmallVec<[TensorMut<'a>; 4]>,
}

impl<'a> OpIo<'a> {
    /// Input `i`, which must be present.
    pub fn input(&self, i: usize) -> OpResult<TensorRef<'a>> {
        match self.inputs.get(i) {
            Some(Some(t)) => Ok(*t),
            _ => Err(format!("missing input {i}").into()),
        }
    }
}

/// A prepared operator.
pub trait Kernel: Send {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()>;
}

/// Prepare the kernel of `node`.
pub fn build(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    match &node.op {
        Op::DetectionPostProcess(o) => detection_postprocess::build(ctx, node, o),
        // --- element-wise, activation, data-movement, resize, quantization ops ---
        Op::Add { .. } if int16::touches_i16(ctx, node) => int16::build_add(ctx, node),
        Op::Add { .. } | Op::Sub { .. } | Op::Mul { .. } => elementwise::build_binary(ctx, node),
        Op::Logistic
        | Op::Tanh
        | Op::Relu
        | Op::Relu6
        | Op::ReluN1To1
        | Op::HardSwish
        | Op::LeakyRelu { .. } => activation::build_unary(ctx, node),
        Op::Softmax { beta } => activation::build_softmax(ctx, node, *beta),
        Op::Reshape | Op::Squeeze { .. } => shape::build_reshape(ctx, node),
        Op::Transpose => shape::build_transpose(ctx, node),
        Op::StridedSlice(o) => shape::build_strided_slice(ctx, node, o),
        Op::Split { num_splits } => shape::build_split(ctx, node, *num_splits),
        Op::Pad => shape::build_pad(ctx, node),
        Op::Concatenation { axis, activation } => {
            shape::build_concat(ctx, node, *axis, *activation)
        }
        Op::ResizeBilinear(_) | Op::ResizeNearestNeighbor(_) => resize::build_resize(ctx, node),
        Op::Quantize if int16::touches_i16(ctx, node) => int16::build_quantize(ctx, node),
        Op::Quantize => quantize::build_quantize(ctx, node),
        Op::Dequantize if int16::touches_i16(ctx, node) => int16::build_dequantize(ctx, node),
        Op::Dequantize => quantize::build_dequantize(ctx, node),
        // --- end of element-wise/activation/data-movement ops ---
        // --- conv / pool / FC / MEAN family (ops/conv.rs ... ops/reduce.rs)
        Op::Conv2D(o) => conv::build_conv2d(ctx, node, o),
        Op::DepthwiseConv2D(o) => depthwise::build_depthwise(ctx, node, o),
        Op::FullyConnected {
            activation,
            keep_num_dims,
            asymmetric_quantize_inputs,
        } => fully_connected::build_fully_connected(
            ctx,
            node,
            *activation,
            *keep_num_dims,
            *asymmetric_quantize_inputs,
        ),
        Op::MaxPool2D(o) => pool::build_pool(ctx, node, o, pool::PoolKind::Max),
        Op::AveragePool2D(o) => pool::build_pool(ctx, node, o, pool::PoolKind::Average),
        Op::Mean { keep_dims } => reduce::build_mean(ctx, node, *keep_dims),
        // --- end of conv / pool / FC / MEAN family
    }
}
