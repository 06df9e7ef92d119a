//! The owned, validated graph a `.tflite` model is turned into.

use std::sync::Arc;

use super::tensor::{ConstData, TensorInfo};

/// Padding scheme of convolutions and pools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Same,
    Valid,
}

/// Fused activation of an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    ReluN1To1,
    Relu6,
    Tanh,
    SignBit,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2DOptions {
    pub padding: Padding,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub activation: Activation,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DepthwiseConv2DOptions {
    pub padding: Padding,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub depth_multiplier: usize,
    pub activation: Activation,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pool2DOptions {
    pub padding: Padding,
    pub stride_h: usize,
    pub stride_w: usize,
    pub filter_h: usize,
    pub filter_w: usize,
    pub activation: Activation,
}

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct StridedSliceOptions {
    pub begin_mask: i32,
    pub end_mask: i32,
    pub ellipsis_mask: i32,
    pub new_axis_mask: i32,
    pub shrink_axis_mask: i32,
    pub offset: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResizeOptions {
    pub align_corners: bool,
    pub half_pixel_centers: bool,
}

/// Options of the custom `TFLite_Detection_PostProcess` operator (from its flexbuffer map).
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionPostProcessOptions {
    pub max_detections: usize,
    pub max_classes_per_detection: usize,
    pub detections_per_class: usize,
    pub use_regular_nms: bool,
    pub nms_score_threshold: f32,
    pub nms_iou_threshold: f32,
    pub num_classes: usize,
    pub y_scale: f32,
    pub x_scale: f32,
    pub h_scale: f32,
    pub w_scale: f32,
}

/// One operator with its options. Operand tensors are on the [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv2D(Conv2DOptions),
    DepthwiseConv2D(DepthwiseConv2DOptions),
    FullyConnected {
        activation: Activation,
        keep_num_dims: bool,
        /// Dynamic-range (float input, int8 weights) only: quantize each input row
        /// asymmetrically (with a zero point) instead of symmetrically.
        asymmetric_quantize_inputs: bool,
    },
    Add {
        activation: Activation,
    },
    Sub {
        activation: Activation,
    },
    Mul {
        activation: Activation,
    },
    Concatenation {
        axis: i32,
        activation: Activation,
    },
    Reshape,
    Squeeze {
        dims: Vec<i32>,
    },
    Transpose,
    StridedSlice(StridedSliceOptions),
    Split {
        num_splits: usize,
    },
    /// PAD and PADV2 (the latter has a third, constant-value operand).
    Pad,
    /// NHWC: blocks of `block_size²` channels become `block_size × block_size` pixels.
    DepthToSpace {
        block_size: usize,
    },
    MaxPool2D(Pool2DOptions),
    AveragePool2D(Pool2DOptions),
    Mean {
        keep_dims: bool,
    },
    ResizeNearestNeighbor(ResizeOptions),
    ResizeBilinear(ResizeOptions),
    Logistic,
    Softmax {
        beta: f32,
    },
    Tanh,
    Relu,
    Relu6,
    ReluN1To1,
    HardSwish,
    LeakyRelu {
        alpha: f32,
    },
    /// Parametric ReLU: `x >= 0 ? x : alpha * x`, with `alpha` (input 1) broadcast
    /// against the input.
    Prelu,
    Quantize,
    Dequantize,
    DetectionPostProcess(DetectionPostProcessOptions),
}

impl Op {
    /// The TFLite name of the operator, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2D(_) => "CONV_2D",
            Op::DepthwiseConv2D(_) => "DEPTHWISE_CONV_2D",
            Op::FullyConnected { .. } => "FULLY_CONNECTED",
            Op::Add { .. } => "ADD",
            Op::Sub { .. } => "SUB",
            Op::Mul { .. } => "MUL",
            Op::Concatenation { .. } => "CONCATENATION",
            Op::Reshape => "RESHAPE",
            Op::Squeeze { .. } => "SQUEEZE",
            Op::Transpose => "TRANSPOSE",
            Op::StridedSlice(_) => "STRIDED_SLICE",
            Op::Split { .. } => "SPLIT",
            Op::Pad => "PAD",
            Op::DepthToSpace { .. } => "DEPTH_TO_SPACE",
            Op::MaxPool2D(_) => "MAX_POOL_2D",
            Op::AveragePool2D(_) => "AVERAGE_POOL_2D",
            Op::Mean { .. } => "MEAN",
            Op::ResizeNearestNeighbor(_) => "RESIZE_NEAREST_NEIGHBOR",
            Op::ResizeBilinear(_) => "RESIZE_BILINEAR",
            Op::Logistic => "LOGISTIC",
            Op::Softmax { .. } => "SOFTMAX",
            Op::Tanh => "TANH",
            Op::Relu => "RELU",
            Op::Relu6 => "RELU6",
            Op::ReluN1To1 => "RELU_N1_TO_1",
            Op::HardSwish => "HARD_SWISH",
            Op::LeakyRelu { .. } => "LEAKY_RELU",
            Op::Prelu => "PRELU",
            Op::Quantize => "QUANTIZE",
            Op::Dequantize => "DEQUANTIZE",
            Op::DetectionPostProcess(_) => "TFLite_Detection_PostProcess",
        }
    }
}

/// One operator instance: the op and its operand tensor indices.
/// An optional operand that the model leaves out (index -1 in the file) is `None`.
#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
}

/// Model bytes, kept 8-byte aligned so that constant tensors can be used in place.
#[derive(Clone, Debug)]
pub struct ModelBytes {
    words: Arc<Vec<u64>>,
    len: usize,
}

impl ModelBytes {
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        ModelBytes {
            words: Arc::new(words),
            len: bytes.len(),
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A loaded model: one subgraph, validated.
#[derive(Clone, Debug)]
pub struct Graph {
    pub bytes: ModelBytes,
    pub tensors: Vec<TensorInfo>,
    /// Operators in execution order.
    pub nodes: Vec<Node>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    /// Signature names of inputs/outputs, parallel to `inputs`/`outputs`, where the model has a signature.
    pub input_names: Vec<String>,
    pub output_names: Vec<String>,
    pub description: String,
}

impl Graph {
    /// The bytes of a constant tensor.
    pub fn const_bytes(&self, t: usize) -> Option<&[u8]> {
        const_data_bytes(&self.bytes, self.tensors.get(t)?.data.as_ref()?)
    }
}

/// Bytes of constant data regardless of where they live (used by the executor).
pub fn const_data_bytes<'a>(file: &'a ModelBytes, data: &'a ConstData) -> Option<&'a [u8]> {
    match data {
        ConstData::File { offset, len } => file.as_bytes().get(*offset..*offset + *len),
        ConstData::Owned(words, len) => bytemuck::cast_slice::<u64, u8>(words).get(..*len),
    }
}
