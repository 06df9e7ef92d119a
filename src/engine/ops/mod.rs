//! Operator implementations. `build` turns a graph node into a prepared
//! [`Kernel`]: every shape, type and quantization parameter is checked there,
//! so that `eval` cannot index out of bounds.
//!
//! - `common.rs`: the helpers every operator uses (the [`BuildCtx`] / [`OpIo`]
//!   accessors, typed slices, shape / type checks, window geometry, per-tensor
//!   quantization parameters), all failing with the one [`OpError`](super::error::OpError).
//! - `conv/`: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and their hybrid variants (GEMM
//!   lowering, im2col, the task split across threads).
//! - one file per other operator family; `int16.rs` holds every 16x8 variant.

use std::sync::Arc;

use smallvec::SmallVec;

use super::kernels::KernelPath;
use super::pool::ThreadPool;

pub mod detection_postprocess;

use super::error::OpResult;
use super::graph::{ModelBytes, Node, Op};
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
mod int16;
mod pool;
mod reduce;
// The helpers every operator uses.
mod common;

/// What an operator may look at while it is prepared.
pub struct BuildCtx<'a> {
    pub tensors: &'a [TensorInfo],
    pub bytes: &'a ModelBytes,
    /// Kernel path of the convolution / fully-connected kernels.
    pub kernels: KernelPath,
    /// The interpreter's thread pool (`None`: run on the calling thread only).
    pub pool: Option<Arc<ThreadPool>>,
}

/// Everything an operator sees while it runs.
pub struct OpIo<'a> {
    /// Input operands in node order; `None` for an omitted optional operand.
    pub inputs: SmallVec<[Option<TensorRef<'a>>; 8]>,
    pub outputs: SmallVec<[TensorMut<'a>; 4]>,
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
        Op::Prelu => activation::build_prelu(ctx, node),
        Op::Softmax { beta } => activation::build_softmax(ctx, node, *beta),
        Op::Reshape | Op::Squeeze { .. } => shape::build_reshape(ctx, node),
        Op::Transpose => shape::build_transpose(ctx, node),
        Op::StridedSlice(o) => shape::build_strided_slice(ctx, node, o),
        Op::Split { num_splits } => shape::build_split(ctx, node, *num_splits),
        Op::Pad => shape::build_pad(ctx, node),
        Op::DepthToSpace { block_size } => shape::build_depth_to_space(ctx, node, *block_size),
        Op::Concatenation { axis, activation } => {
            shape::build_concat(ctx, node, *axis, *activation)
        }
        Op::ResizeBilinear(_) | Op::ResizeNearestNeighbor(_) => resize::build_resize(ctx, node),
        Op::Quantize if int16::touches_i16(ctx, node) => int16::build_quantize(ctx, node),
        Op::Quantize => quantize::build_quantize(ctx, node),
        Op::Dequantize if int16::touches_i16(ctx, node) => int16::build_dequantize(ctx, node),
        Op::Dequantize => quantize::build_dequantize(ctx, node),
        // --- end of element-wise/activation/data-movement ops ---
        // --- conv / pool / FC / MEAN family (ops/conv/, ops/pool.rs, ops/reduce.rs)
        Op::Conv2D(o) => conv::build_conv2d(ctx, node, o),
        Op::DepthwiseConv2D(o) => conv::build_depthwise(ctx, node, o),
        Op::FullyConnected {
            activation,
            keep_num_dims,
            asymmetric_quantize_inputs,
        } => conv::build_fully_connected(
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
