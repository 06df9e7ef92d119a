//! [`Graph`] → `.tflite` bytes.
//!
//! Used by tests to build single-operator models, and to round-trip real
//! models. The output is a regular schema-3 flatbuffer ("TFL3") with inline
//! buffers, one operator code per (operator, version), a `serving_default`
//! signature, and operator versions chosen the way TFLite's converter does for
//! the operand types, so that TFLite's reference interpreter accepts the file.

use super::fb;
use super::flexbuffer::{self, FlexScalar};
use super::loader::{code, dtype_code, DETECTION_POSTPROCESS};
use crate::engine::graph::{Activation, Graph, Node, Op, Padding};
use crate::engine::tensor::DType;

fn padding(p: Padding) -> fb::Padding {
    match p {
        Padding::Same => fb::Padding::Same,
        Padding::Valid => fb::Padding::Valid,
    }
}

fn act(a: Activation) -> fb::ActivationFunctionType {
    match a {
        Activation::None => fb::ActivationFunctionType::None,
        Activation::Relu => fb::ActivationFunctionType::Relu,
        Activation::ReluN1To1 => fb::ActivationFunctionType::ReluN1To1,
        Activation::Relu6 => fb::ActivationFunctionType::Relu6,
        Activation::Tanh => fb::ActivationFunctionType::Tanh,
        Activation::SignBit => fb::ActivationFunctionType::SignBit,
    }
}

fn dim(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The builtin code of a node (PAD with a constant-value operand is PADV2).
fn builtin_code(node: &Node) -> i32 {
    match &node.op {
        Op::Conv2D(_) => code::CONV_2D,
        Op::DepthwiseConv2D(_) => code::DEPTHWISE_CONV_2D,
        Op::FullyConnected { .. } => code::FULLY_CONNECTED,
        Op::Add { .. } => code::ADD,
        Op::Sub { .. } => code::SUB,
        Op::Mul { .. } => code::MUL,
        Op::Concatenation { .. } => code::CONCATENATION,
        Op::Reshape => code::RESHAPE,
        Op::Squeeze { .. } => code::SQUEEZE,
        Op::Transpose => code::TRANSPOSE,
        Op::StridedSlice(_) => code::STRIDED_SLICE,
        Op::Split { .. } => code::SPLIT,
        Op::Pad if node.inputs.len() >= 3 => code::PADV2,
        Op::Pad => code::PAD,
        Op::DepthToSpace { .. } => code::DEPTH_TO_SPACE,
        Op::MaxPool2D(_) => code::MAX_POOL_2D,
        Op::AveragePool2D(_) => code::AVERAGE_POOL_2D,
        Op::Mean { .. } => code::MEAN,
        Op::ResizeNearestNeighbor(_) => code::RESIZE_NEAREST_NEIGHBOR,
        Op::ResizeBilinear(_) => code::RESIZE_BILINEAR,
        Op::Logistic => code::LOGISTIC,
        Op::Softmax { .. } => code::SOFTMAX,
        Op::Tanh => code::TANH,
        Op::Relu => code::RELU,
        Op::Relu6 => code::RELU6,
        Op::ReluN1To1 => code::RELU_N1_TO_1,
        Op::HardSwish => code::HARD_SWISH,
        Op::LeakyRelu { .. } => code::LEAKY_RELU,
        Op::Prelu => code::PRELU,
        Op::Quantize => code::QUANTIZE,
        Op::Dequantize => code::DEQUANTIZE,
        Op::DetectionPostProcess(_) => code::CUSTOM,
    }
}

/// Operator version for the operand types, following TFLite's converter
/// (`op_version.cc`): version 1 is float/uint8, int8 needs a later version.
pub fn op_version(graph: &Graph, node: &Node) -> i32 {
    let dt = |o: Option<&Option<usize>>| {
        o.copied()
            .flatten()
            .and_then(|t| graph.tensors.get(t))
            .map(|t| t.dtype)
    };
    let input = dt(node.inputs.first());
    let weights = dt(node.inputs.get(1));
    let output = node
        .outputs
        .first()
        .and_then(|&t| graph.tensors.get(t))
        .map(|t| t.dtype);
    let int8 = input == Some(DType::I8);
    let int16 = input == Some(DType::I16);
    match &node.op {
        Op::Conv2D(_) | Op::DepthwiseConv2D(_) => {
            if int16 {
                4
            } else if int8 {
                3
            } else if input == Some(DType::F32) && weights == Some(DType::I8) {
                2
            } else {
                1
            }
        }
        Op::FullyConnected { keep_num_dims, .. } => {
            if *keep_num_dims {
                5
            } else if int16 {
                7
            } else if int8 {
                4
            } else if input == Some(DType::F32) && weights == Some(DType::I8) {
                3
            } else {
                1
            }
        }
        Op::Add { .. } | Op::Sub { .. } | Op::Mul { .. } => {
            if int16 {
                3
            } else if int8 {
                2
            } else {
                1
            }
        }
        Op::Quantize => match output {
            Some(DType::I8) | Some(DType::I16) => 2,
            _ => 1,
        },
        Op::Dequantize => match input {
            Some(DType::F16) => 3,
            Some(DType::I8) | Some(DType::I16) => 2,
            _ => 1,
        },
        // TFLite's converter marks int8 PRELU and DEPTH_TO_SPACE version 2, but its
        // reference op resolver registers only version 1 of both (the optimized one takes
        // 1 and 2; every version runs the same kernel), so version 1 runs everywhere.
        Op::Prelu
        | Op::DepthToSpace { .. }
        | Op::ReluN1To1
        | Op::HardSwish
        | Op::Reshape
        | Op::Squeeze { .. }
        | Op::DetectionPostProcess(_) => 1,
        _ => {
            if int8 || int16 {
                2
            } else {
                1
            }
        }
    }
}

fn builtin_options(op: &Op) -> Option<fb::BuiltinOptions> {
    use fb::BuiltinOptions as B;
    Some(match op {
        Op::Conv2D(o) => B::Conv2DOptions(Box::new(fb::Conv2DOptions {
            padding: padding(o.padding),
            stride_w: dim(o.stride_w),
            stride_h: dim(o.stride_h),
            fused_activation_function: act(o.activation),
            dilation_w_factor: dim(o.dilation_w),
            dilation_h_factor: dim(o.dilation_h),
            quantized_bias_type: 0,
        })),
        Op::DepthwiseConv2D(o) => B::DepthwiseConv2DOptions(Box::new(fb::DepthwiseConv2DOptions {
            padding: padding(o.padding),
            stride_w: dim(o.stride_w),
            stride_h: dim(o.stride_h),
            depth_multiplier: dim(o.depth_multiplier),
            fused_activation_function: act(o.activation),
            dilation_w_factor: dim(o.dilation_w),
            dilation_h_factor: dim(o.dilation_h),
        })),
        Op::MaxPool2D(o) | Op::AveragePool2D(o) => B::Pool2DOptions(Box::new(fb::Pool2DOptions {
            padding: padding(o.padding),
            stride_w: dim(o.stride_w),
            stride_h: dim(o.stride_h),
            filter_width: dim(o.filter_w),
            filter_height: dim(o.filter_h),
            fused_activation_function: act(o.activation),
        })),
        Op::FullyConnected {
            activation,
            keep_num_dims,
            asymmetric_quantize_inputs,
        } => B::FullyConnectedOptions(Box::new(fb::FullyConnectedOptions {
            fused_activation_function: act(*activation),
            weights_format: 0,
            keep_num_dims: *keep_num_dims,
            asymmetric_quantize_inputs: *asymmetric_quantize_inputs,
        })),
        Op::Add { activation } => B::AddOptions(Box::new(fb::AddOptions {
            fused_activation_function: act(*activation),
            pot_scale_int16: true,
        })),
        Op::Sub { activation } => B::SubOptions(Box::new(fb::SubOptions {
            fused_activation_function: act(*activation),
            pot_scale_int16: true,
        })),
        Op::Mul { activation } => B::MulOptions(Box::new(fb::MulOptions {
            fused_activation_function: act(*activation),
        })),
        Op::Concatenation { axis, activation } => {
            B::ConcatenationOptions(Box::new(fb::ConcatenationOptions {
                axis: *axis,
                fused_activation_function: act(*activation),
            }))
        }
        Op::Reshape => B::ReshapeOptions(Box::new(fb::ReshapeOptions { new_shape: None })),
        Op::Squeeze { dims } => B::SqueezeOptions(Box::new(fb::SqueezeOptions {
            squeeze_dims: Some(dims.clone()),
        })),
        Op::Transpose => B::TransposeOptions(Box::new(fb::TransposeOptions {})),
        Op::StridedSlice(o) => B::StridedSliceOptions(Box::new(fb::StridedSliceOptions {
            begin_mask: o.begin_mask,
            end_mask: o.end_mask,
            ellipsis_mask: o.ellipsis_mask,
            new_axis_mask: o.new_axis_mask,
            shrink_axis_mask: o.shrink_axis_mask,
            offset: o.offset,
        })),
        Op::Split { num_splits } => B::SplitOptions(Box::new(fb::SplitOptions {
            num_splits: dim(*num_splits),
        })),
        Op::Pad => return None,
        Op::DepthToSpace { block_size } => {
            B::DepthToSpaceOptions(Box::new(fb::DepthToSpaceOptions {
                block_size: dim(*block_size),
            }))
        }
        Op::Mean { keep_dims } => B::ReducerOptions(Box::new(fb::ReducerOptions {
            keep_dims: *keep_dims,
        })),
        Op::ResizeNearestNeighbor(o) => {
            B::ResizeNearestNeighborOptions(Box::new(fb::ResizeNearestNeighborOptions {
                align_corners: o.align_corners,
                half_pixel_centers: o.half_pixel_centers,
            }))
        }
        Op::ResizeBilinear(o) => B::ResizeBilinearOptions(Box::new(fb::ResizeBilinearOptions {
            align_corners: o.align_corners,
            half_pixel_centers: o.half_pixel_centers,
        })),
        Op::Softmax { beta } => B::SoftmaxOptions(Box::new(fb::SoftmaxOptions { beta: *beta })),
        Op::LeakyRelu { alpha } => {
            B::LeakyReluOptions(Box::new(fb::LeakyReluOptions { alpha: *alpha }))
        }
        Op::HardSwish => B::HardSwishOptions(Box::new(fb::HardSwishOptions {})),
        Op::Quantize => B::QuantizeOptions(Box::new(fb::QuantizeOptions {})),
        Op::Dequantize => B::DequantizeOptions(Box::new(fb::DequantizeOptions {})),
        Op::Logistic
        | Op::Tanh
        | Op::Relu
        | Op::Relu6
        | Op::ReluN1To1
        | Op::Prelu
        | Op::DetectionPostProcess(_) => return None,
    })
}

/// The flexbuffer `custom_options` map of a `TFLite_Detection_PostProcess` node.
pub fn detection_custom_options(o: &crate::engine::graph::DetectionPostProcessOptions) -> Vec<u8> {
    let int = |v: usize| FlexScalar::Int(v as i64);
    flexbuffer::write_map(&[
        ("max_detections", int(o.max_detections)),
        (
            "max_classes_per_detection",
            int(o.max_classes_per_detection),
        ),
        ("detections_per_class", int(o.detections_per_class)),
        ("use_regular_nms", FlexScalar::Bool(o.use_regular_nms)),
        (
            "nms_score_threshold",
            FlexScalar::Float(o.nms_score_threshold),
        ),
        ("nms_iou_threshold", FlexScalar::Float(o.nms_iou_threshold)),
        ("num_classes", int(o.num_classes)),
        ("y_scale", FlexScalar::Float(o.y_scale)),
        ("x_scale", FlexScalar::Float(o.x_scale)),
        ("h_scale", FlexScalar::Float(o.h_scale)),
        ("w_scale", FlexScalar::Float(o.w_scale)),
    ])
}

/// Serialise `graph` into a `.tflite` file.
///
/// Constant tensors get one buffer each (inline, 16-byte aligned); other tensors
/// use the empty buffer 0. Signature names come from `input_names`/`output_names`
/// (falling back to tensor names).
pub fn write_model(graph: &Graph) -> Vec<u8> {
    write(graph, &[])
}

/// Serialise `graph` like [`write_model`], but with the constant tensors listed in
/// `sparse` stored in TFLite's sparsity format, each behind a DENSIFY operator (the way
/// TFLite's converter writes sparse weights): the tensor becomes DENSIFY's output and a new
/// tensor `<name>/sparse` holds the values, CSR over the last dimension (every other
/// dimension dense), its indices in the narrowest of uint8, uint16 and int32 vectors that
/// holds them. An element is stored when one of its bytes is not zero. Tensors that are
/// not constants of rank ≥ 1 stay dense.
pub fn write_model_sparse(graph: &Graph, sparse: &[usize]) -> Vec<u8> {
    write(graph, sparse)
}

/// The sparsity parameters and stored values of `data` (a constant of `shape`, `elem`
/// bytes per element): CSR over the last dimension.
fn csr_last_dim(shape: &[usize], elem: usize, data: &[u8]) -> (fb::SparsityParameters, Vec<u8>) {
    let n = shape.len();
    let cols = shape[n - 1];
    let rows: usize = shape[..n - 1].iter().product();
    let (mut segments, mut indices, mut values) = (vec![0usize], Vec::new(), Vec::new());
    for r in 0..rows {
        for c in 0..cols {
            let v = &data[(r * cols + c) * elem..(r * cols + c + 1) * elem];
            if v.iter().any(|&b| b != 0) {
                indices.push(c);
                values.extend_from_slice(v);
            }
        }
        segments.push(indices.len());
    }
    let vector = |v: &[usize]| -> fb::SparseIndexVector {
        let max = v.iter().copied().max().unwrap_or(0);
        if max <= u8::MAX as usize {
            fb::SparseIndexVector::Uint8Vector(Box::new(fb::Uint8Vector {
                values: Some(v.iter().map(|&i| i as u8).collect()),
            }))
        } else if max <= u16::MAX as usize {
            fb::SparseIndexVector::Uint16Vector(Box::new(fb::Uint16Vector {
                values: Some(v.iter().map(|&i| i as u16).collect()),
            }))
        } else {
            fb::SparseIndexVector::Int32Vector(Box::new(fb::Int32Vector {
                values: Some(v.iter().map(|&i| dim(i)).collect()),
            }))
        }
    };
    let mut dim_metadata: Vec<fb::DimensionMetadata> = shape[..n - 1]
        .iter()
        .map(|&d| fb::DimensionMetadata {
            format: fb::DimensionType::Dense,
            dense_size: dim(d),
            array_segments: None,
            array_indices: None,
        })
        .collect();
    dim_metadata.push(fb::DimensionMetadata {
        format: fb::DimensionType::SparseCsr,
        dense_size: 0,
        array_segments: Some(vector(&segments)),
        array_indices: Some(vector(&indices)),
    });
    let params = fb::SparsityParameters {
        traversal_order: Some((0..n).map(dim).collect()),
        block_map: None,
        dim_metadata: Some(dim_metadata),
    };
    (params, values)
}

fn write(graph: &Graph, sparse: &[usize]) -> Vec<u8> {
    let mut buffers = vec![fb::Buffer::default()];
    let mut tensors = Vec::with_capacity(graph.tensors.len());
    // (sparse tensor, dense tensor) pairs, each written with a DENSIFY operator.
    let mut densify: Vec<(usize, usize)> = Vec::new();
    let mut sparse_tensors = Vec::new();
    for (i, t) in graph.tensors.iter().enumerate() {
        let buffer = match graph.const_bytes(i) {
            Some(data) if sparse.contains(&i) && !t.shape.is_empty() => {
                let (params, values) = csr_last_dim(&t.shape, t.dtype.size(), data);
                buffers.push(fb::Buffer {
                    data: Some(values),
                    offset: 0,
                    size: 0,
                });
                densify.push((graph.tensors.len() + sparse_tensors.len(), i));
                sparse_tensors.push(fb::Tensor {
                    shape: Some(t.shape.iter().map(|&d| dim(d)).collect()),
                    type_: dtype_code(t.dtype),
                    buffer: (buffers.len() - 1) as u32,
                    name: Some(format!("{}/sparse", t.name)),
                    quantization: quantization(t),
                    is_variable: false,
                    sparsity: Some(Box::new(params)),
                    shape_signature: None,
                });
                0
            }
            Some(data) => {
                buffers.push(fb::Buffer {
                    data: Some(data.to_vec()),
                    offset: 0,
                    size: 0,
                });
                (buffers.len() - 1) as u32
            }
            None => 0,
        };
        tensors.push(fb::Tensor {
            shape: Some(t.shape.iter().map(|&d| dim(d)).collect()),
            type_: dtype_code(t.dtype),
            buffer,
            name: Some(t.name.clone()),
            quantization: quantization(t),
            is_variable: false,
            sparsity: None,
            shape_signature: None,
        });
    }
    tensors.extend(sparse_tensors);

    let mut codes: Vec<(i32, i32)> = Vec::new();
    let mut operator_codes = Vec::new();
    let mut operators = Vec::with_capacity(graph.nodes.len() + densify.len());
    if !densify.is_empty() {
        codes.push((code::DENSIFY, 1));
        operator_codes.push(fb::OperatorCode {
            deprecated_builtin_code: code::DENSIFY as i8,
            custom_code: None,
            version: 1,
            builtin_code: code::DENSIFY,
        });
    }
    for &(from, to) in &densify {
        operators.push(fb::Operator {
            opcode_index: 0,
            inputs: Some(vec![from as i32]),
            outputs: Some(vec![to as i32]),
            builtin_options: None,
            custom_options: None,
            custom_options_format: 0,
            mutating_variable_inputs: None,
            intermediates: None,
            large_custom_options_offset: 0,
            large_custom_options_size: 0,
        });
    }
    for node in &graph.nodes {
        let c = builtin_code(node);
        let version = op_version(graph, node);
        let opcode_index = match codes.iter().position(|&k| k == (c, version)) {
            Some(p) => p,
            None => {
                codes.push((c, version));
                operator_codes.push(fb::OperatorCode {
                    deprecated_builtin_code: c.min(127) as i8,
                    custom_code: matches!(node.op, Op::DetectionPostProcess(_))
                        .then(|| DETECTION_POSTPROCESS.to_string()),
                    version,
                    builtin_code: c,
                });
                codes.len() - 1
            }
        };
        let custom_options = match &node.op {
            Op::DetectionPostProcess(o) => Some(detection_custom_options(o)),
            _ => None,
        };
        operators.push(fb::Operator {
            opcode_index: opcode_index as u32,
            inputs: Some(
                node.inputs
                    .iter()
                    .map(|t| t.map_or(-1, |t| t as i32))
                    .collect(),
            ),
            outputs: Some(node.outputs.iter().map(|&t| t as i32).collect()),
            builtin_options: builtin_options(&node.op),
            custom_options,
            custom_options_format: 0,
            mutating_variable_inputs: None,
            intermediates: None,
            large_custom_options_offset: 0,
            large_custom_options_size: 0,
        });
    }

    let name_of = |names: &[String], i: usize, t: usize| -> String {
        names
            .get(i)
            .filter(|n| !n.is_empty())
            .cloned()
            .or_else(|| graph.tensors.get(t).map(|t| t.name.clone()))
            .unwrap_or_default()
    };
    let sig_maps = |ids: &[usize], names: &[String]| -> Vec<fb::TensorMap> {
        ids.iter()
            .enumerate()
            .map(|(i, &t)| fb::TensorMap {
                name: Some(name_of(names, i, t)),
                tensor_index: t as u32,
            })
            .collect()
    };
    let model = fb::Model {
        version: 3,
        operator_codes: Some(operator_codes),
        subgraphs: Some(vec![fb::SubGraph {
            tensors: Some(tensors),
            inputs: Some(graph.inputs.iter().map(|&t| t as i32).collect()),
            outputs: Some(graph.outputs.iter().map(|&t| t as i32).collect()),
            operators: Some(operators),
            name: Some("main".into()),
        }]),
        description: Some(graph.description.clone()),
        buffers: Some(buffers),
        metadata_buffer: None,
        metadata: None,
        signature_defs: Some(vec![fb::SignatureDef {
            inputs: Some(sig_maps(&graph.inputs, &graph.input_names)),
            outputs: Some(sig_maps(&graph.outputs, &graph.output_names)),
            signature_key: Some("serving_default".into()),
            subgraph_index: 0,
        }]),
    };
    finish_with_identifier(&model)
}

fn quantization(t: &crate::engine::tensor::TensorInfo) -> Option<Box<fb::QuantizationParameters>> {
    t.quant.as_ref().map(|q| {
        Box::new(fb::QuantizationParameters {
            min: None,
            max: None,
            scale: Some(q.scale.clone()),
            zero_point: Some(q.zero_point.clone()),
            details: None,
            quantized_dimension: dim(q.axis),
        })
    })
}

/// Serialise a model table with the "TFL3" file identifier.
///
/// planus 1.3's `Builder::finish(.., Some(id))` emits the identifier *before* the
/// root offset (`[id][offset]` instead of `[offset][id]`), which neither planus'
/// own reader nor TFLite accept. So we finish with the identifier and swap the
/// two words back into place; the root offset then counts from byte 0 instead of
/// byte 4, hence the `+ 4`. Checked by loading the result with planus and TFLite.
pub(crate) fn finish_with_identifier(model: &fb::Model) -> Vec<u8> {
    let mut builder = planus::Builder::new();
    let mut out = builder.finish(model, Some(*b"TFL3")).to_vec();
    if out.len() >= 8 && &out[0..4] == b"TFL3" {
        let mut w = [0u8; 4];
        w.copy_from_slice(&out[4..8]);
        let root = u32::from_le_bytes(w) + 4;
        out[0..4].copy_from_slice(&root.to_le_bytes());
        out[4..8].copy_from_slice(b"TFL3");
    }
    out
}
