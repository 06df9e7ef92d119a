//! `.tflite` bytes → validated [`Graph`].
//!
//! Every number read from the file is treated as untrusted: indices are range
//! checked, sizes use checked arithmetic and are compared with the file size
//! before anything is allocated from them, and every flatbuffer access goes
//! through planus' bounds-checked accessors.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fb;
use super::flexbuffer::{self, FlexValue};
use super::sparse::{self, Level, Sparsity};
use crate::engine::error::{EngineError, Result};
use crate::engine::graph::{
    Activation, Conv2DOptions, DepthwiseConv2DOptions, DetectionPostProcessOptions, Graph,
    ModelBytes, Node, Op, Padding, Pool2DOptions, ResizeOptions, StridedSliceOptions,
};
use crate::engine::tensor::{ConstData, DType, Quant, TensorInfo};
use planus::ReadAsRoot;

/// Schema version this loader understands.
const SCHEMA_VERSION: u32 = 3;
/// Largest element count accepted for one tensor.
const MAX_ELEMENTS: u64 = 1 << 31;
/// Largest total size of the constants densified from sparse tensors, over the whole
/// model (a sparse file can describe large dense tensors in few bytes).
const MAX_DENSIFIED_BYTES: usize = 1 << 30;
/// Custom code of the SSD post-processing operator.
pub(crate) const DETECTION_POSTPROCESS: &str = "TFLite_Detection_PostProcess";

/// TFLite `BuiltinOperator` codes used by the loader and the writer.
#[allow(dead_code)]
pub(crate) mod code {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEPTH_TO_SPACE: i32 = 5;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const LOGISTIC: i32 = 14;
    pub const MAX_POOL_2D: i32 = 17;
    pub const MUL: i32 = 18;
    pub const RELU: i32 = 19;
    pub const RELU_N1_TO_1: i32 = 20;
    pub const RELU6: i32 = 21;
    pub const RESHAPE: i32 = 22;
    pub const RESIZE_BILINEAR: i32 = 23;
    pub const SOFTMAX: i32 = 25;
    pub const TANH: i32 = 28;
    pub const CALL: i32 = 31;
    pub const CUSTOM: i32 = 32;
    pub const PAD: i32 = 34;
    pub const TRANSPOSE: i32 = 39;
    pub const MEAN: i32 = 40;
    pub const SUB: i32 = 41;
    pub const SQUEEZE: i32 = 43;
    pub const STRIDED_SLICE: i32 = 45;
    pub const SPLIT: i32 = 49;
    pub const PRELU: i32 = 54;
    pub const PADV2: i32 = 60;
    pub const RESIZE_NEAREST_NEIGHBOR: i32 = 97;
    pub const LEAKY_RELU: i32 = 98;
    pub const QUANTIZE: i32 = 114;
    pub const HARD_SWISH: i32 = 117;
    pub const IF: i32 = 118;
    pub const WHILE: i32 = 119;
    pub const DENSIFY: i32 = 124;
    pub const CALL_ONCE: i32 = 129;
}

/// TFLite `TensorType` codes.
pub(crate) fn dtype_from_code(t: i8) -> Option<DType> {
    Some(match t {
        0 => DType::F32,
        1 => DType::F16,
        2 => DType::I32,
        3 => DType::U8,
        4 => DType::I64,
        6 => DType::Bool,
        7 => DType::I16,
        9 => DType::I8,
        _ => return None,
    })
}

pub(crate) fn dtype_code(d: DType) -> i8 {
    match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::I32 => 2,
        DType::U8 => 3,
        DType::I64 => 4,
        DType::Bool => 6,
        DType::I16 => 7,
        DType::I8 => 9,
    }
}

fn tensor_type_name(t: i8) -> String {
    const NAMES: [&str; 19] = [
        "FLOAT32",
        "FLOAT16",
        "INT32",
        "UINT8",
        "INT64",
        "STRING",
        "BOOL",
        "INT16",
        "COMPLEX64",
        "INT8",
        "FLOAT64",
        "COMPLEX128",
        "UINT64",
        "RESOURCE",
        "VARIANT",
        "UINT32",
        "UINT16",
        "INT4",
        "BFLOAT16",
    ];
    usize::try_from(t)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("type code {t}"))
}

/// Name of a builtin operator code, for messages.
pub(crate) fn builtin_name(c: i32) -> String {
    const NAMES: &[&str] = &[
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTH_TO_SPACE",
        "DEQUANTIZE",
        "EMBEDDING_LOOKUP",
        "FLOOR",
        "FULLY_CONNECTED",
        "HASHTABLE_LOOKUP",
        "L2_NORMALIZATION",
        "L2_POOL_2D",
        "LOCAL_RESPONSE_NORMALIZATION",
        "LOGISTIC",
        "LSH_PROJECTION",
        "LSTM",
        "MAX_POOL_2D",
        "MUL",
        "RELU",
        "RELU_N1_TO_1",
        "RELU6",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RNN",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SVDF",
        "TANH",
        "CONCAT_EMBEDDINGS",
        "SKIP_GRAM",
        "CALL",
        "CUSTOM",
        "EMBEDDING_LOOKUP_SPARSE",
        "PAD",
        "UNIDIRECTIONAL_SEQUENCE_RNN",
        "GATHER",
        "BATCH_TO_SPACE_ND",
        "SPACE_TO_BATCH_ND",
        "TRANSPOSE",
        "MEAN",
        "SUB",
        "DIV",
        "SQUEEZE",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "STRIDED_SLICE",
        "BIDIRECTIONAL_SEQUENCE_RNN",
        "EXP",
        "TOPK_V2",
        "SPLIT",
        "LOG_SOFTMAX",
        "DELEGATE",
        "BIDIRECTIONAL_SEQUENCE_LSTM",
        "CAST",
        "PRELU",
        "MAXIMUM",
        "ARG_MAX",
        "MINIMUM",
        "LESS",
        "NEG",
        "PADV2",
        "GREATER",
        "GREATER_EQUAL",
        "LESS_EQUAL",
        "SELECT",
        "SLICE",
        "SIN",
        "TRANSPOSE_CONV",
        "SPARSE_TO_DENSE",
        "TILE",
        "EXPAND_DIMS",
        "EQUAL",
        "NOT_EQUAL",
        "LOG",
        "SUM",
        "SQRT",
        "RSQRT",
        "SHAPE",
        "POW",
        "ARG_MIN",
        "FAKE_QUANT",
        "REDUCE_PROD",
        "REDUCE_MAX",
        "PACK",
        "LOGICAL_OR",
        "ONE_HOT",
        "LOGICAL_AND",
        "LOGICAL_NOT",
        "UNPACK",
        "REDUCE_MIN",
        "FLOOR_DIV",
        "REDUCE_ANY",
        "SQUARE",
        "ZEROS_LIKE",
        "FILL",
        "FLOOR_MOD",
        "RANGE",
        "RESIZE_NEAREST_NEIGHBOR",
        "LEAKY_RELU",
        "SQUARED_DIFFERENCE",
        "MIRROR_PAD",
        "ABS",
        "SPLIT_V",
        "UNIQUE",
        "CEIL",
        "REVERSE_V2",
        "ADD_N",
        "GATHER_ND",
        "COS",
        "WHERE",
        "RANK",
        "ELU",
        "REVERSE_SEQUENCE",
        "MATRIX_DIAG",
        "QUANTIZE",
        "MATRIX_SET_DIAG",
        "ROUND",
        "HARD_SWISH",
        "IF",
        "WHILE",
        "NON_MAX_SUPPRESSION_V4",
        "NON_MAX_SUPPRESSION_V5",
        "SCATTER_ND",
        "SELECT_V2",
        "DENSIFY",
        "SEGMENT_SUM",
        "BATCH_MATMUL",
        "PLACEHOLDER_FOR_GREATER_OP_CODES",
        "CUMSUM",
        "CALL_ONCE",
        "BROADCAST_TO",
        "RFFT2D",
        "CONV_3D",
        "IMAG",
        "REAL",
        "COMPLEX_ABS",
        "HASHTABLE",
        "HASHTABLE_FIND",
        "HASHTABLE_IMPORT",
        "HASHTABLE_SIZE",
        "REDUCE_ALL",
        "CONV_3D_TRANSPOSE",
        "VAR_HANDLE",
        "READ_VARIABLE",
        "ASSIGN_VARIABLE",
        "BROADCAST_ARGS",
        "RANDOM_STANDARD_NORMAL",
        "BUCKETIZE",
        "RANDOM_UNIFORM",
        "MULTINOMIAL",
        "GELU",
        "DYNAMIC_UPDATE_SLICE",
        "RELU_0_TO_1",
        "UNSORTED_SEGMENT_PROD",
        "UNSORTED_SEGMENT_MAX",
        "UNSORTED_SEGMENT_SUM",
        "ATAN2",
        "UNSORTED_SEGMENT_MIN",
        "SIGN",
        "BITCAST",
        "BITWISE_XOR",
        "RIGHT_SHIFT",
    ];
    usize::try_from(c)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("BUILTIN_{c}"))
}

fn invalid(msg: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidModel(msg.to_string())
}

fn fb_err(what: &str) -> impl Fn(planus::Error) -> EngineError + '_ {
    move |e| invalid(format!("{what}: {e}"))
}

struct OpCtx {
    index: usize,
    name: String,
}

impl OpCtx {
    fn err(&self, msg: impl std::fmt::Display) -> EngineError {
        EngineError::Operator {
            index: self.index,
            op: self.name.clone(),
            msg: msg.to_string(),
        }
    }
    fn fb(&self, what: &'static str) -> impl Fn(planus::Error) -> EngineError + '_ {
        move |e| self.err(format!("{what}: {e}"))
    }
}

fn tensor_err(index: usize, name: &str, msg: impl std::fmt::Display) -> EngineError {
    EngineError::Tensor {
        index,
        name: name.to_string(),
        msg: msg.to_string(),
    }
}

/// Parse and validate a whole model.
pub(crate) fn load(input: &[u8]) -> Result<Graph> {
    if input.len() < 8 {
        return Err(invalid(format!(
            "file too short ({} bytes) to be a flatbuffer",
            input.len()
        )));
    }
    let ident = &input[4..8];
    if ident != b"TFL3" && ident.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(format!(
            "file identifier is '{}', expected 'TFL3'",
            String::from_utf8_lossy(ident)
        )));
    }
    let bytes = ModelBytes::new(input);
    let file = bytes.as_bytes();
    let model = fb::ModelRef::read_as_root(file).map_err(fb_err("model root"))?;
    let version = model.version().map_err(fb_err("model version"))?;
    if version != SCHEMA_VERSION {
        return Err(invalid(format!(
            "schema version {version}, only version {SCHEMA_VERSION} is supported"
        )));
    }
    let description = model
        .description()
        .map_err(fb_err("model description"))?
        .unwrap_or("")
        .to_string();
    let subgraphs = model
        .subgraphs()
        .map_err(fb_err("model subgraphs"))?
        .ok_or_else(|| invalid("model has no subgraphs"))?;
    let sg = subgraphs
        .get(0)
        .ok_or_else(|| invalid("model has no subgraphs"))?
        .map_err(fb_err("subgraph 0"))?;
    let buffers = model.buffers().map_err(fb_err("model buffers"))?;
    let op_codes = model
        .operator_codes()
        .map_err(fb_err("model operator codes"))?;

    // ---- tensors ----
    let fb_tensors = sg.tensors().map_err(fb_err("subgraph tensors"))?;
    let mut tensors = Vec::with_capacity(fb_tensors.map_or(0, |v| v.len()));
    let mut dense_budget = MAX_DENSIFIED_BYTES;
    if let Some(fb_tensors) = fb_tensors {
        for (i, t) in fb_tensors.iter().enumerate() {
            let t = t.map_err(|e| invalid(format!("tensor {i}: {e}")))?;
            tensors.push(load_tensor(
                i,
                &t,
                buffers.as_ref(),
                file,
                &mut dense_budget,
            )?);
        }
    }
    let nt = tensors.len();

    // ---- operators ----
    let mut nodes = Vec::new();
    if let Some(ops) = sg.operators().map_err(fb_err("subgraph operators"))? {
        nodes.reserve(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let op = op.map_err(|e| invalid(format!("operator #{i}: {e}")))?;
            match load_node(i, &op, op_codes.as_ref(), nt, file)? {
                Loaded::Node(node) => nodes.push(node),
                Loaded::Densify { input, output } => densify_alias(i, input, output, &mut tensors)?,
            }
        }
    }

    // ---- graph inputs / outputs ----
    let io = |v: Option<planus::Vector<'_, i32>>, what: &str| -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for t in v.iter().flat_map(|v| v.iter()) {
            match usize::try_from(t) {
                Ok(t) if t < nt => out.push(t),
                _ => {
                    return Err(invalid(format!(
                        "graph {what} tensor index {t} out of range (0..{nt})"
                    )))
                }
            }
        }
        Ok(out)
    };
    let inputs = io(sg.inputs().map_err(fb_err("subgraph inputs"))?, "input")?;
    let outputs = io(sg.outputs().map_err(fb_err("subgraph outputs"))?, "output")?;

    // ---- signature names ----
    let (mut input_names, mut output_names) = (Vec::new(), Vec::new());
    if let Some(sigs) = model.signature_defs().map_err(fb_err("signature defs"))? {
        for sig in sigs.iter() {
            let sig = sig.map_err(fb_err("signature def"))?;
            if sig.subgraph_index().map_err(fb_err("signature subgraph"))? != 0 {
                continue;
            }
            let names = |maps: Option<planus::Vector<'_, planus::Result<fb::TensorMapRef<'_>>>>,
                         ids: &[usize]|
             -> Result<Vec<String>> {
                let mut by_index = BTreeMap::new();
                for m in maps.iter().flat_map(|m| m.iter()) {
                    let m = m.map_err(fb_err("signature tensor map"))?;
                    let idx = m.tensor_index().map_err(fb_err("signature tensor index"))?;
                    let name = m.name().map_err(fb_err("signature name"))?.unwrap_or("");
                    by_index.insert(idx as usize, name.to_string());
                }
                Ok(ids
                    .iter()
                    .map(|&t| {
                        by_index
                            .get(&t)
                            .cloned()
                            .unwrap_or_else(|| tensors[t].name.clone())
                    })
                    .collect())
            };
            input_names = names(sig.inputs().map_err(fb_err("signature inputs"))?, &inputs)?;
            output_names = names(
                sig.outputs().map_err(fb_err("signature outputs"))?,
                &outputs,
            )?;
            break;
        }
    }

    size_postprocess_outputs(&nodes, &mut tensors);

    Ok(Graph {
        bytes,
        tensors,
        nodes,
        inputs,
        outputs,
        input_names,
        output_names,
        description,
    })
}

/// DENSIFY costs nothing per inference: its input, a sparse constant, was densified at
/// load, so its output becomes a constant with the same data and the operator is dropped.
fn densify_alias(
    index: usize,
    input: usize,
    output: usize,
    tensors: &mut [TensorInfo],
) -> Result<()> {
    let err = |msg: String| EngineError::Operator {
        index,
        op: "DENSIFY".into(),
        msg,
    };
    let (src, dst) = (&tensors[input], &tensors[output]);
    let Some(data) = src.data.clone() else {
        return Err(err(format!(
            "input tensor {input} ('{}') is not a constant",
            src.name
        )));
    };
    if dst.data.is_some() || input == output {
        return Err(err(format!(
            "output tensor {output} ('{}') is a constant",
            dst.name
        )));
    }
    if src.dtype != dst.dtype || src.shape != dst.shape {
        return Err(err(format!(
            "input is {} {:?}, output {} {:?}",
            src.dtype.name(),
            src.shape,
            dst.dtype.name(),
            dst.shape
        )));
    }
    tensors[output].data = Some(data);
    Ok(())
}

/// TFLite sizes the outputs of TFLite_Detection_PostProcess when it prepares the graph, and
/// files often declare them with empty shapes (Coral's and the TF Object Detection API's
/// exports): give an output declared empty (shape `[]` or a zero dimension) the shape the
/// operator writes, `[1, M, 4]` boxes, `[1, M]` classes and scores, `[1]` count, `M = max_detections ×
/// max_classes_per_detection`. A declared non-empty shape stays (the operator checks it).
fn size_postprocess_outputs(nodes: &[Node], tensors: &mut [TensorInfo]) {
    for node in nodes {
        let Op::DetectionPostProcess(o) = &node.op else {
            continue;
        };
        let Some(m) = o
            .max_detections
            .checked_mul(o.max_classes_per_detection)
            .filter(|&m| (m as u64) * 4 <= MAX_ELEMENTS)
        else {
            continue;
        };
        let shapes: [&[usize]; 4] = [&[1, m, 4], &[1, m], &[1, m], &[1]];
        for (&t, shape) in node.outputs.iter().zip(shapes) {
            let info = &mut tensors[t];
            if info.data.is_none() && (info.shape.is_empty() || info.shape.contains(&0)) {
                info.shape = shape.to_vec();
            }
        }
    }
}

fn load_tensor(
    index: usize,
    t: &fb::TensorRef<'_>,
    buffers: Option<&planus::Vector<'_, planus::Result<fb::BufferRef<'_>>>>,
    file: &[u8],
    dense_budget: &mut usize,
) -> Result<TensorInfo> {
    let name = t
        .name()
        .map_err(|e| invalid(format!("tensor {index} name: {e}")))?
        .unwrap_or("")
        .to_string();
    let terr = |msg: String| tensor_err(index, &name, msg);
    let fbe = |what: &str, e: planus::Error| tensor_err(index, &name, format!("{what}: {e}"));

    let type_code = t.type_().map_err(|e| fbe("type", e))?;
    let dtype = dtype_from_code(type_code).ok_or_else(|| {
        terr(format!(
            "unsupported tensor type {}",
            tensor_type_name(type_code)
        ))
    })?;

    let mut shape = Vec::new();
    let mut elements: u64 = 1;
    if let Some(dims) = t.shape().map_err(|e| fbe("shape", e))? {
        if dims.len() > 16 {
            return Err(terr(format!("rank {} too large", dims.len())));
        }
        for d in dims.iter() {
            let d =
                u64::try_from(d).map_err(|_| terr(format!("negative dimension {d} in shape")))?;
            elements = elements
                .checked_mul(d)
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| terr("element count exceeds 2^31".into()))?;
            shape.push(d as usize);
        }
    }
    let sparsity = match t.sparsity().map_err(|e| fbe("sparsity", e))? {
        Some(sp) => Some(read_sparsity(&sp).map_err(|m| terr(format!("sparsity: {m}")))?),
        None => None,
    };
    if t.is_variable().map_err(|e| fbe("is_variable", e))? {
        return Err(terr("variable tensors are not supported".into()));
    }

    let quant = match t.quantization().map_err(|e| fbe("quantization", e))? {
        None => None,
        Some(q) => load_quant(&q, &shape).map_err(terr)?,
    };

    // ---- constant data ----
    let buf_index = t.buffer().map_err(|e| fbe("buffer", e))? as usize;
    let mut data = None;
    if buf_index != 0 {
        let buffers =
            buffers.ok_or_else(|| terr(format!("buffer {buf_index}: model has no buffers")))?;
        let b = buffers
            .get(buf_index)
            .ok_or_else(|| {
                terr(format!(
                    "buffer index {buf_index} out of range (0..{})",
                    buffers.len()
                ))
            })?
            .map_err(|e| fbe("buffer table", e))?;
        let (offset, len) =
            buffer_range(&b, file).map_err(|m| terr(format!("buffer {buf_index}: {m}")))?;
        if let (Some(sp), true) = (&sparsity, len != 0) {
            let (words, dense_len) = sparse::densify(
                &shape,
                sp,
                dtype.size(),
                &file[offset..offset + len],
                *dense_budget,
            )
            .map_err(|m| terr(format!("sparse buffer {buf_index}: {m}")))?;
            *dense_budget -= dense_len;
            data = Some(ConstData::Owned(Arc::new(words), dense_len));
        } else if len != 0 {
            let want = elements as usize * dtype.size();
            if len != want {
                return Err(terr(format!(
                    "buffer {buf_index} holds {len} bytes, shape {shape:?} of {} needs {want}",
                    dtype.name()
                )));
            }
            data = Some(if offset.is_multiple_of(dtype.size()) {
                ConstData::File { offset, len }
            } else {
                let mut words = vec![0u64; len.div_ceil(8)];
                bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len]
                    .copy_from_slice(&file[offset..offset + len]);
                ConstData::Owned(Arc::new(words), len)
            });
        }
    }
    if sparsity.is_some() && data.is_none() {
        return Err(terr(
            "sparse tensor without constant data (only sparse constants are supported)".into(),
        ));
    }
    Ok(TensorInfo {
        name,
        dtype,
        shape,
        quant,
        data,
    })
}

/// Largest index vector (segments or indices) accepted, in entries.
const MAX_INDEX_VECTOR: usize = 1 << 28;

/// A sparse index vector (int32, uint16 or uint8 in the file) as u32s.
fn index_vector(
    v: Option<fb::SparseIndexVectorRef<'_>>,
    what: &str,
) -> std::result::Result<Vec<u32>, String> {
    let err = |e: planus::Error| format!("{what}: {e}");
    let too_long = |n: usize| format!("{what}: {n} entries");
    Ok(match v {
        None => return Err(format!("{what} missing")),
        Some(fb::SparseIndexVectorRef::Int32Vector(v)) => {
            let v = v
                .values()
                .map_err(err)?
                .ok_or_else(|| format!("{what} missing"))?;
            if v.len() > MAX_INDEX_VECTOR {
                return Err(too_long(v.len()));
            }
            v.iter()
                .map(|i| u32::try_from(i).map_err(|_| format!("{what}: negative entry {i}")))
                .collect::<std::result::Result<_, _>>()?
        }
        Some(fb::SparseIndexVectorRef::Uint16Vector(v)) => {
            let v = v
                .values()
                .map_err(err)?
                .ok_or_else(|| format!("{what} missing"))?;
            if v.len() > MAX_INDEX_VECTOR {
                return Err(too_long(v.len()));
            }
            v.iter().map(u32::from).collect()
        }
        Some(fb::SparseIndexVectorRef::Uint8Vector(v)) => {
            let v = v
                .values()
                .map_err(err)?
                .ok_or_else(|| format!("{what} missing"))?;
            if v.len() > MAX_INDEX_VECTOR {
                return Err(too_long(v.len()));
            }
            v.iter().map(|&b| u32::from(b)).collect()
        }
    })
}

/// The sparsity parameters of a tensor (checked against its shape by `sparse::densify`).
fn read_sparsity(sp: &fb::SparsityParametersRef<'_>) -> std::result::Result<Sparsity, String> {
    let ints = |v: Option<planus::Vector<'_, i32>>,
                what: &str|
     -> std::result::Result<Vec<usize>, String> {
        let v = v
            .map(|v| v.iter().collect::<Vec<i32>>())
            .unwrap_or_default();
        if v.len() > 32 {
            return Err(format!("{what} has {} entries", v.len()));
        }
        v.into_iter()
            .map(|d| usize::try_from(d).map_err(|_| format!("{what}: negative entry {d}")))
            .collect()
    };
    let traversal_order = ints(
        sp.traversal_order()
            .map_err(|e| format!("traversal_order: {e}"))?,
        "traversal_order",
    )?;
    let block_map = ints(
        sp.block_map().map_err(|e| format!("block_map: {e}"))?,
        "block_map",
    )?;
    let meta = sp
        .dim_metadata()
        .map_err(|e| format!("dim_metadata: {e}"))?
        .ok_or("dim_metadata missing")?;
    if meta.len() > 32 {
        return Err(format!("{} dimension metadata", meta.len()));
    }
    let mut levels = Vec::with_capacity(meta.len());
    for (l, m) in meta.iter().enumerate() {
        let m = m.map_err(|e| format!("dim_metadata {l}: {e}"))?;
        let format = m
            .format()
            .map_err(|e| format!("dim_metadata {l} format: {e}"))?;
        levels.push(match format {
            fb::DimensionType::Dense => {
                let d = m
                    .dense_size()
                    .map_err(|e| format!("dim_metadata {l} dense_size: {e}"))?;
                Level::Dense(
                    usize::try_from(d)
                        .map_err(|_| format!("dim_metadata {l}: negative dense_size {d}"))?,
                )
            }
            fb::DimensionType::SparseCsr => Level::SparseCsr {
                segments: index_vector(
                    m.array_segments()
                        .map_err(|e| format!("dim_metadata {l} array_segments: {e}"))?,
                    &format!("dim_metadata {l} array_segments"),
                )?,
                indices: index_vector(
                    m.array_indices()
                        .map_err(|e| format!("dim_metadata {l} array_indices: {e}"))?,
                    &format!("dim_metadata {l} array_indices"),
                )?,
            },
        });
    }
    Ok(Sparsity {
        traversal_order,
        block_map,
        levels,
    })
}

/// Byte range of a buffer inside the file: inline `data`, or `offset`/`size`
/// (used when offset > 1, relative to the start of the file).
pub(super) fn buffer_range(
    b: &fb::BufferRef<'_>,
    file: &[u8],
) -> std::result::Result<(usize, usize), String> {
    let off = b.offset().map_err(|e| format!("offset: {e}"))?;
    if off > 1 {
        let size = b.size().map_err(|e| format!("size: {e}"))?;
        let end = off
            .checked_add(size)
            .filter(|&e| e <= file.len() as u64)
            .ok_or_else(|| {
                format!(
                    "offset {off} + size {size} beyond the file ({} bytes)",
                    file.len()
                )
            })?;
        let _ = end;
        return Ok((off as usize, size as usize));
    }
    match b.data().map_err(|e| format!("data: {e}"))? {
        None => Ok((0, 0)),
        Some(d) => Ok((slice_offset(file, d)?, d.len())),
    }
}

/// Position of `sub` (a slice planus returned from `file`) inside `file`.
fn slice_offset(file: &[u8], sub: &[u8]) -> std::result::Result<usize, String> {
    let base = file.as_ptr() as usize;
    let p = sub.as_ptr() as usize;
    p.checked_sub(base)
        .filter(|&o| o.checked_add(sub.len()).is_some_and(|e| e <= file.len()))
        .ok_or_else(|| "data slice outside the file".to_string())
}

fn load_quant(
    q: &fb::QuantizationParametersRef<'_>,
    shape: &[usize],
) -> std::result::Result<Option<Quant>, String> {
    let scale = q.scale().map_err(|e| format!("quantization scale: {e}"))?;
    let zp = q
        .zero_point()
        .map_err(|e| format!("quantization zero_point: {e}"))?;
    let (Some(scale), Some(zp)) = (scale, zp) else {
        return Ok(None);
    };
    if scale.is_empty() {
        return Ok(None);
    }
    if q.details()
        .map_err(|e| format!("quantization details: {e}"))?
        .is_some()
    {
        return Err("custom quantization is not supported".into());
    }
    let n = scale.len();
    if zp.len() != n {
        return Err(format!(
            "quantization has {n} scales but {} zero points",
            zp.len()
        ));
    }
    let qd = q
        .quantized_dimension()
        .map_err(|e| format!("quantized_dimension: {e}"))?;
    let axis = usize::try_from(qd).map_err(|_| format!("negative quantized_dimension {qd}"))?;
    if n > 1 {
        let dim = shape.get(axis).ok_or_else(|| {
            format!(
                "quantized_dimension {axis} out of range for rank {}",
                shape.len()
            )
        })?;
        if *dim != n {
            return Err(format!(
                "per-channel quantization has {n} scales but dimension {axis} is {dim}"
            ));
        }
    }
    let scale: Vec<f32> = scale.iter().collect();
    let zero_point: Vec<i64> = zp.iter().collect();
    Ok(Some(Quant {
        scale,
        zero_point,
        axis,
    }))
}

fn padding(p: fb::Padding) -> Padding {
    match p {
        fb::Padding::Same => Padding::Same,
        fb::Padding::Valid => Padding::Valid,
    }
}

fn activation(a: fb::ActivationFunctionType) -> Activation {
    match a {
        fb::ActivationFunctionType::None => Activation::None,
        fb::ActivationFunctionType::Relu => Activation::Relu,
        fb::ActivationFunctionType::ReluN1To1 => Activation::ReluN1To1,
        fb::ActivationFunctionType::Relu6 => Activation::Relu6,
        fb::ActivationFunctionType::Tanh => Activation::Tanh,
        fb::ActivationFunctionType::SignBit => Activation::SignBit,
    }
}

/// A positive stride/dilation/filter size.
fn positive(ctx: &OpCtx, what: &str, v: i32) -> Result<usize> {
    if v < 1 {
        return Err(ctx.err(format!("{what} must be >= 1, got {v}")));
    }
    Ok(v as usize)
}

fn load_node(
    index: usize,
    op: &fb::OperatorRef<'_>,
    op_codes: Option<&planus::Vector<'_, planus::Result<fb::OperatorCodeRef<'_>>>>,
    nt: usize,
    file: &[u8],
) -> Result<Loaded> {
    let opcode_index = op
        .opcode_index()
        .map_err(|e| invalid(format!("operator #{index}: opcode_index: {e}")))?;
    let oc = op_codes
        .and_then(|v| v.get(opcode_index as usize))
        .ok_or_else(|| {
            invalid(format!(
                "operator #{index}: opcode index {opcode_index} out of range ({} codes)",
                op_codes.map_or(0, |v| v.len())
            ))
        })?
        .map_err(|e| invalid(format!("operator #{index}: operator code: {e}")))?;
    let dep = oc
        .deprecated_builtin_code()
        .map_err(|e| invalid(format!("operator #{index}: operator code: {e}")))?;
    let bc = oc
        .builtin_code()
        .map_err(|e| invalid(format!("operator #{index}: operator code: {e}")))?;
    let code = (dep as i32).max(bc);
    let mut ctx = OpCtx {
        index,
        name: builtin_name(code),
    };
    if code == code::CUSTOM {
        let cc = oc
            .custom_code()
            .map_err(ctx.fb("custom_code"))?
            .unwrap_or("");
        ctx.name = format!("CUSTOM({cc})");
        if cc == DETECTION_POSTPROCESS {
            ctx.name = cc.to_string();
        }
    }

    // Operands.
    let mut inputs = Vec::new();
    for t in op
        .inputs()
        .map_err(ctx.fb("inputs"))?
        .iter()
        .flat_map(|v| v.iter())
    {
        inputs.push(match t {
            -1 => None,
            t if t >= 0 && (t as usize) < nt => Some(t as usize),
            t => return Err(ctx.err(format!("input tensor index {t} out of range (0..{nt})"))),
        });
    }
    let mut outputs = Vec::new();
    for t in op
        .outputs()
        .map_err(ctx.fb("outputs"))?
        .iter()
        .flat_map(|v| v.iter())
    {
        match usize::try_from(t) {
            Ok(t) if t < nt => outputs.push(t),
            _ => return Err(ctx.err(format!("output tensor index {t} out of range (0..{nt})"))),
        }
    }

    let opts = op.builtin_options().map_err(ctx.fb("builtin options"));
    use fb::BuiltinOptionsRef as B;
    macro_rules! options {
        ($variant:ident) => {
            match opts? {
                Some(B::$variant(o)) => Some(o),
                None => None,
                Some(_) => return Err(ctx.err("builtin options of the wrong kind")),
            }
        };
    }
    macro_rules! get {
        ($o:expr, $field:ident) => {
            $o.$field().map_err(ctx.fb(stringify!($field)))?
        };
    }

    let op = match code {
        code::CONV_2D => Op::Conv2D(match options!(Conv2DOptions) {
            Some(o) => Conv2DOptions {
                padding: padding(get!(o, padding)),
                stride_h: positive(&ctx, "stride_h", get!(o, stride_h))?,
                stride_w: positive(&ctx, "stride_w", get!(o, stride_w))?,
                dilation_h: positive(&ctx, "dilation_h", get!(o, dilation_h_factor))?,
                dilation_w: positive(&ctx, "dilation_w", get!(o, dilation_w_factor))?,
                activation: activation(get!(o, fused_activation_function)),
            },
            None => Conv2DOptions {
                padding: Padding::Same,
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                activation: Activation::None,
            },
        }),
        code::DEPTHWISE_CONV_2D => Op::DepthwiseConv2D(match options!(DepthwiseConv2DOptions) {
            Some(o) => {
                let dm = get!(o, depth_multiplier);
                DepthwiseConv2DOptions {
                    padding: padding(get!(o, padding)),
                    stride_h: positive(&ctx, "stride_h", get!(o, stride_h))?,
                    stride_w: positive(&ctx, "stride_w", get!(o, stride_w))?,
                    dilation_h: positive(&ctx, "dilation_h", get!(o, dilation_h_factor))?,
                    dilation_w: positive(&ctx, "dilation_w", get!(o, dilation_w_factor))?,
                    depth_multiplier: usize::try_from(dm)
                        .map_err(|_| ctx.err(format!("negative depth_multiplier {dm}")))?,
                    activation: activation(get!(o, fused_activation_function)),
                }
            }
            None => DepthwiseConv2DOptions {
                padding: Padding::Same,
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                depth_multiplier: 1,
                activation: Activation::None,
            },
        }),
        code::MAX_POOL_2D | code::AVERAGE_POOL_2D => {
            let p = match options!(Pool2DOptions) {
                Some(o) => Pool2DOptions {
                    padding: padding(get!(o, padding)),
                    stride_h: positive(&ctx, "stride_h", get!(o, stride_h))?,
                    stride_w: positive(&ctx, "stride_w", get!(o, stride_w))?,
                    filter_h: positive(&ctx, "filter_height", get!(o, filter_height))?,
                    filter_w: positive(&ctx, "filter_width", get!(o, filter_width))?,
                    activation: activation(get!(o, fused_activation_function)),
                },
                None => return Err(ctx.err("missing Pool2DOptions (filter size)")),
            };
            if code == code::MAX_POOL_2D {
                Op::MaxPool2D(p)
            } else {
                Op::AveragePool2D(p)
            }
        }
        code::FULLY_CONNECTED => match options!(FullyConnectedOptions) {
            Some(o) => {
                let wf = get!(o, weights_format);
                if wf != 0 {
                    return Err(EngineError::Unsupported {
                        index,
                        op: ctx.name.clone(),
                        msg: format!("weights_format {wf} (shuffled weights)"),
                    });
                }
                Op::FullyConnected {
                    activation: activation(get!(o, fused_activation_function)),
                    keep_num_dims: get!(o, keep_num_dims),
                    asymmetric_quantize_inputs: get!(o, asymmetric_quantize_inputs),
                }
            }
            None => Op::FullyConnected {
                activation: Activation::None,
                keep_num_dims: false,
                asymmetric_quantize_inputs: false,
            },
        },
        code::ADD => Op::Add {
            activation: match options!(AddOptions) {
                Some(o) => activation(get!(o, fused_activation_function)),
                None => Activation::None,
            },
        },
        code::SUB => Op::Sub {
            activation: match options!(SubOptions) {
                Some(o) => activation(get!(o, fused_activation_function)),
                None => Activation::None,
            },
        },
        code::MUL => Op::Mul {
            activation: match options!(MulOptions) {
                Some(o) => activation(get!(o, fused_activation_function)),
                None => Activation::None,
            },
        },
        code::CONCATENATION => match options!(ConcatenationOptions) {
            Some(o) => Op::Concatenation {
                axis: get!(o, axis),
                activation: activation(get!(o, fused_activation_function)),
            },
            None => Op::Concatenation {
                axis: 0,
                activation: Activation::None,
            },
        },
        code::RESHAPE => Op::Reshape,
        code::SQUEEZE => Op::Squeeze {
            dims: match options!(SqueezeOptions) {
                Some(o) => match get!(o, squeeze_dims) {
                    Some(v) => {
                        if v.len() > 16 {
                            return Err(ctx.err(format!("{} squeeze dims", v.len())));
                        }
                        v.iter().collect()
                    }
                    None => Vec::new(),
                },
                None => Vec::new(),
            },
        },
        code::TRANSPOSE => Op::Transpose,
        code::STRIDED_SLICE => Op::StridedSlice(match options!(StridedSliceOptions) {
            Some(o) => StridedSliceOptions {
                begin_mask: get!(o, begin_mask),
                end_mask: get!(o, end_mask),
                ellipsis_mask: get!(o, ellipsis_mask),
                new_axis_mask: get!(o, new_axis_mask),
                shrink_axis_mask: get!(o, shrink_axis_mask),
                offset: get!(o, offset),
            },
            None => StridedSliceOptions::default(),
        }),
        code::SPLIT => {
            let n = match options!(SplitOptions) {
                Some(o) => positive(&ctx, "num_splits", get!(o, num_splits))?,
                None => outputs.len(),
            };
            if n != outputs.len() {
                return Err(ctx.err(format!(
                    "num_splits {n} but {} outputs",
                    outputs.len()
                )));
            }
            Op::Split { num_splits: n }
        }
        code::PAD | code::PADV2 => Op::Pad,
        code::DEPTH_TO_SPACE => Op::DepthToSpace {
            block_size: match options!(DepthToSpaceOptions) {
                Some(o) => positive(&ctx, "block_size", get!(o, block_size))?,
                None => return Err(ctx.err("missing DepthToSpaceOptions (block_size)")),
            },
        },
        code::MEAN => Op::Mean {
            keep_dims: match options!(ReducerOptions) {
                Some(o) => get!(o, keep_dims),
                None => false,
            },
        },
        code::RESIZE_NEAREST_NEIGHBOR => {
            Op::ResizeNearestNeighbor(match options!(ResizeNearestNeighborOptions) {
                Some(o) => ResizeOptions {
                    align_corners: get!(o, align_corners),
                    half_pixel_centers: get!(o, half_pixel_centers),
                },
                None => ResizeOptions {
                    align_corners: false,
                    half_pixel_centers: false,
                },
            })
        }
        code::RESIZE_BILINEAR => Op::ResizeBilinear(match options!(ResizeBilinearOptions) {
            Some(o) => ResizeOptions {
                align_corners: get!(o, align_corners),
                half_pixel_centers: get!(o, half_pixel_centers),
            },
            None => ResizeOptions {
                align_corners: false,
                half_pixel_centers: false,
            },
        }),
        code::LOGISTIC => Op::Logistic,
        code::SOFTMAX => Op::Softmax {
            beta: match options!(SoftmaxOptions) {
                Some(o) => get!(o, beta),
                None => 1.0,
            },
        },
        code::TANH => Op::Tanh,
        code::RELU => Op::Relu,
        code::RELU6 => Op::Relu6,
        code::RELU_N1_TO_1 => Op::ReluN1To1,
        code::HARD_SWISH => Op::HardSwish,
        code::LEAKY_RELU => Op::LeakyRelu {
            alpha: match options!(LeakyReluOptions) {
                Some(o) => get!(o, alpha),
                None => 0.2,
            },
        },
        code::DENSIFY => {
            let (&[Some(input)], &[output]) = (inputs.as_slice(), outputs.as_slice()) else {
                return Err(ctx.err(format!(
                    "needs 1 input and 1 output, got {} and {}",
                    inputs.len(),
                    outputs.len()
                )));
            };
            return Ok(Loaded::Densify { input, output });
        }
        code::PRELU => Op::Prelu,
        code::QUANTIZE => Op::Quantize,
        code::DEQUANTIZE => Op::Dequantize,
        code::CUSTOM if ctx.name == DETECTION_POSTPROCESS => {
            Op::DetectionPostProcess(detection_options(&ctx, op, file)?)
        }
        code::CALL | code::IF | code::WHILE | code::CALL_ONCE => {
            return Err(EngineError::Unsupported {
                index,
                op: ctx.name,
                msg: "control flow needs more than one subgraph; only the first subgraph is supported"
                    .into(),
            })
        }
        _ => {
            return Err(EngineError::Unsupported {
                index,
                op: ctx.name,
                msg: "operator not implemented by edgecam".into(),
            })
        }
    };
    Ok(Loaded::Node(Node {
        op,
        inputs,
        outputs,
    }))
}

/// What one operator of the file becomes.
enum Loaded {
    Node(Node),
    /// DENSIFY, resolved at load by `densify_alias`.
    Densify {
        input: usize,
        output: usize,
    },
}

fn detection_options(
    ctx: &OpCtx,
    op: &fb::OperatorRef<'_>,
    file: &[u8],
) -> Result<DetectionPostProcessOptions> {
    let large_off = op
        .large_custom_options_offset()
        .map_err(ctx.fb("large_custom_options_offset"))?;
    let bytes: &[u8] = if large_off > 1 {
        let size = op
            .large_custom_options_size()
            .map_err(ctx.fb("large_custom_options_size"))?;
        large_off
            .checked_add(size)
            .filter(|&e| e <= file.len() as u64)
            .map(|e| &file[large_off as usize..e as usize])
            .ok_or_else(|| ctx.err("custom options beyond the end of the file"))?
    } else {
        op.custom_options()
            .map_err(ctx.fb("custom_options"))?
            .ok_or_else(|| ctx.err("missing custom options"))?
    };
    let map = flexbuffer::read_map(bytes).map_err(|e| ctx.err(format!("custom options: {e}")))?;
    let get = |k: &str| -> Result<FlexValue> {
        map.get(k)
            .copied()
            .ok_or_else(|| ctx.err(format!("custom option '{k}' missing")))
    };
    let count = |k: &str, default: Option<usize>| -> Result<usize> {
        let v = match (map.get(k), default) {
            (None, Some(d)) => return Ok(d),
            _ => get(k)?,
        };
        v.as_i64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i <= 1 << 24)
            .ok_or_else(|| ctx.err(format!("custom option '{k}' is not a valid count: {v:?}")))
    };
    let float = |k: &str| -> Result<f32> {
        let v = get(k)?;
        v.as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| ctx.err(format!("custom option '{k}' is not a number: {v:?}")))
    };
    Ok(DetectionPostProcessOptions {
        max_detections: count("max_detections", None)?,
        max_classes_per_detection: count("max_classes_per_detection", None)?,
        detections_per_class: count("detections_per_class", Some(100))?,
        use_regular_nms: match map.get("use_regular_nms") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| {
                ctx.err(format!(
                    "custom option 'use_regular_nms' is not a bool: {v:?}"
                ))
            })?,
        },
        nms_score_threshold: float("nms_score_threshold")?,
        nms_iou_threshold: float("nms_iou_threshold")?,
        num_classes: count("num_classes", None)?,
        y_scale: float("y_scale")?,
        x_scale: float("x_scale")?,
        h_scale: float("h_scale")?,
        w_scale: float("w_scale")?,
    })
}
