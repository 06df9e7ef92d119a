//! Float graph + activation ranges → full-integer int8 graph.
//!
//! - Activations: int8, asymmetric per tensor, from their calibrated range,
//!   clamped to the fused activation's range (ReLU, ReLU6, ReLU_N1_TO_1).
//! - Operators that only move values (RESHAPE, SQUEEZE, TRANSPOSE, STRIDED_SLICE,
//!   SPLIT, PAD, DEPTH_TO_SPACE, pooling, resizing, CONCATENATION) get one set of
//!   parameters for all their activation operands: the union of their ranges.
//!   Every other operator's output has parameters of its own (PRELU's too).
//! - LOGISTIC and SOFTMAX outputs are fixed at (1/256, −128), TANH at (1/128, 0),
//!   as TFLite's int8 kernels require; so is whatever shares their parameters.
//! - Convolution weights: int8 symmetric per output channel; fully-connected
//!   weights per tensor; biases int32 at `input_scale × weight_scale`, with
//!   the pruned-channel floor of [`quant::weight_scale`].
//! - Other float constants (ADD/MUL operands, PRELU's alpha, PADV2's value): int8
//!   from their own range, or their group's parameters.
//! - TFLite_Detection_PostProcess keeps float inputs: a DEQUANTIZE is put in
//!   front of its box and class inputs, and its anchors stay float32, which
//!   every TFLite version accepts.
//! - Graph inputs take the parameters given (from the model description's
//!   preprocessing); graph outputs stay int8 unless `float_outputs` is set.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::graph::{Activation, Graph, ModelBytes, Node, Op};
use crate::engine::quant::{self, choose_qparams};
use crate::engine::tensor::{ConstData, DType, Quant, TensorInfo};

/// What the builder needs besides the float graph and the ranges.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// `(scale, zero_point)` of each graph input, in order.
    pub inputs: Vec<(f32, i32)>,
    /// Add a DEQUANTIZE after every int8 graph output.
    pub float_outputs: bool,
    /// Per convolution node (index in the float graph), a per-channel amount
    /// subtracted from its float bias before quantization (measured bias correction).
    pub bias_shift: HashMap<usize, Vec<f32>>,
    /// Per float tensor feeding a convolution, the mean of each of its channels
    /// over the calibration frames: the expected error the quantized weights
    /// add to each output channel, `Σ (ŵ − w)·E[x]`, is taken off the bias.
    pub input_means: HashMap<usize, Vec<f32>>,
    /// Text for the model's description field.
    pub description: String,
}

/// The int8 graph and where each float tensor went.
#[derive(Clone, Debug)]
pub struct Quantized {
    pub graph: Graph,
    /// Float tensor index → int8 tensor index (activations only).
    pub tensor_map: Vec<Option<usize>>,
}

fn owned<T: bytemuck::Pod>(v: &[T]) -> ConstData {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    ConstData::Owned(Arc::new(words), bytes.len())
}

/// The float values of a constant tensor of the float graph.
pub fn const_f32(g: &Graph, t: usize) -> Result<Vec<f32>, String> {
    let info = &g.tensors[t];
    let b = g
        .const_bytes(t)
        .ok_or_else(|| format!("tensor {t} '{}' has no data", info.name))?;
    match info.dtype {
        DType::F32 => Ok(bytemuck::pod_collect_to_vec(b)),
        d => Err(format!(
            "constant '{}' is {}, a float model's constants are float32",
            info.name,
            d.name()
        )),
    }
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut a: usize) -> usize {
        while self.0[a] != a {
            self.0[a] = self.0[self.0[a]];
            a = self.0[a];
        }
        a
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[b] = a;
        }
    }
}

/// Operand positions of the float activation inputs that must share the
/// output's parameters, for operators that only move values.
fn shared_inputs(node: &Node) -> Option<Vec<usize>> {
    Some(match &node.op {
        Op::Reshape
        | Op::Squeeze { .. }
        | Op::Transpose
        | Op::StridedSlice(_)
        | Op::Pad
        | Op::DepthToSpace { .. }
        | Op::MaxPool2D(_)
        | Op::AveragePool2D(_)
        | Op::ResizeNearestNeighbor(_)
        | Op::ResizeBilinear(_) => vec![0],
        Op::Split { .. } => vec![1],
        Op::Concatenation { .. } => (0..node.inputs.len()).collect(),
        _ => return None,
    })
}

/// A float32 tensor `name` made from the int8 tensor `q` by a new DEQUANTIZE node.
fn dequantize(
    tensors: &mut Vec<TensorInfo>,
    nodes: &mut Vec<Node>,
    q: usize,
    name: String,
    shape: Vec<usize>,
) -> usize {
    tensors.push(TensorInfo {
        name,
        dtype: DType::F32,
        shape,
        quant: None,
        data: None,
    });
    let f = tensors.len() - 1;
    nodes.push(Node {
        op: Op::Dequantize,
        inputs: vec![Some(q)],
        outputs: vec![f],
    });
    f
}

/// The range a fused or standalone activation leaves its output in.
fn activation_clamp(op: &Op) -> Option<(f32, f32)> {
    let act = match op {
        Op::Conv2D(o) => o.activation,
        Op::DepthwiseConv2D(o) => o.activation,
        Op::FullyConnected { activation, .. }
        | Op::Add { activation }
        | Op::Sub { activation }
        | Op::Mul { activation }
        | Op::Concatenation { activation, .. } => *activation,
        Op::MaxPool2D(o) | Op::AveragePool2D(o) => o.activation,
        Op::Relu => Activation::Relu,
        Op::Relu6 => Activation::Relu6,
        Op::ReluN1To1 => Activation::ReluN1To1,
        _ => Activation::None,
    };
    match act {
        Activation::Relu => Some((0.0, f32::INFINITY)),
        Activation::Relu6 => Some((0.0, 6.0)),
        Activation::ReluN1To1 => Some((-1.0, 1.0)),
        _ => None,
    }
}

/// Parameters TFLite's int8 kernels require of an operator's output.
fn fixed_output(op: &Op) -> Option<(f32, i32)> {
    match op {
        Op::Logistic | Op::Softmax { .. } => Some((1.0 / 256.0, -128)),
        Op::Tanh => Some((1.0 / 128.0, 0)),
        _ => None,
    }
}

fn check_supported(g: &Graph, ni: usize, node: &Node) -> Result<(), String> {
    match &node.op {
        Op::Quantize | Op::Dequantize => Err(format!(
            "operator {ni} ({}) works on quantized tensors: the model is already quantized; give the float model",
            node.op.name()
        )),
        _ => {
            for &t in node.inputs.iter().flatten() {
                let info = &g.tensors[t];
                if !info.is_const() && info.dtype != DType::F32 {
                    return Err(format!(
                        "operator {ni} ({}) reads '{}' as {}: not a float model",
                        node.op.name(),
                        info.name,
                        info.dtype.name()
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Quantize `g` (a float graph from [`super::prepare_float`]) with the
/// activation ranges `ranges` (per float tensor; graph inputs and fixed-output
/// tensors need none).
pub fn quantize(
    g: &Graph,
    ranges: &[Option<(f32, f32)>],
    opts: &BuildOptions,
) -> Result<Quantized, String> {
    let nt = g.tensors.len();
    if opts.inputs.len() != g.inputs.len() {
        return Err(format!(
            "{} input parameters given for {} graph inputs",
            opts.inputs.len(),
            g.inputs.len()
        ));
    }
    let dpp_out: Vec<usize> = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::DetectionPostProcess(_)))
        .flat_map(|n| n.outputs.iter().copied())
        .collect();
    // Float activations to become int8: everything produced, and the graph inputs.
    let mut is_act = vec![false; nt];
    for &i in &g.inputs {
        is_act[i] = true;
    }
    for (ni, node) in g.nodes.iter().enumerate() {
        check_supported(g, ni, node)?;
        for &t in &node.outputs {
            if g.tensors[t].dtype == DType::F32 && !dpp_out.contains(&t) {
                is_act[t] = true;
            }
        }
    }

    // Groups of tensors that share parameters.
    let mut uf = UnionFind((0..nt).collect());
    for node in &g.nodes {
        if let Some(ins) = shared_inputs(node) {
            let out = node.outputs[0];
            for k in ins {
                if let Some(Some(t)) = node.inputs.get(k) {
                    if g.tensors[*t].dtype == DType::F32 {
                        uf.union(out, *t);
                    }
                }
            }
            for &o in &node.outputs[1..] {
                uf.union(out, o);
            }
            if matches!(node.op, Op::Pad) {
                // PADV2's constant value is written in the same parameters.
                if let Some(Some(v)) = node.inputs.get(2) {
                    uf.union(out, *v);
                }
            }
        }
    }

    // Fixed parameters: graph inputs and the outputs of fixed-output operators.
    let mut fixed: HashMap<usize, (f32, i32, String)> = HashMap::new();
    let mut fix = |uf: &mut UnionFind, t: usize, p: (f32, i32), why: String| {
        let r = uf.find(t);
        match fixed.get(&r) {
            Some((s, z, w)) if (*s, *z) != p => Err(format!(
                "'{}' would need parameters ({}, {}) for {why} and ({s}, {z}) for {w}",
                g.tensors[t].name, p.0, p.1
            )),
            _ => {
                fixed.insert(r, (p.0, p.1, why));
                Ok(())
            }
        }
    };
    for (k, &i) in g.inputs.iter().enumerate() {
        fix(&mut uf, i, opts.inputs[k], "the graph input".into())?;
    }
    for node in &g.nodes {
        if let Some(p) = fixed_output(&node.op) {
            fix(&mut uf, node.outputs[0], p, node.op.name().into())?;
        }
    }

    // The range an activation's producer clamps it to (fused or standalone ReLUs).
    let mut clamp: HashMap<usize, (f32, f32)> = HashMap::new();
    for node in &g.nodes {
        if let Some(c) = activation_clamp(&node.op) {
            clamp.insert(node.outputs[0], c);
        }
    }
    // Union per group of the members' ranges, each clamped by its own producer
    // (a clamp on one member must not cut off another's values), and of the
    // values of constant members.
    let mut group_range: HashMap<usize, (f32, f32)> = HashMap::new();
    let mut widen = |r: usize, lo: f32, hi: f32| {
        let e = group_range
            .entry(r)
            .or_insert((f32::INFINITY, f32::NEG_INFINITY));
        e.0 = e.0.min(lo);
        e.1 = e.1.max(hi);
    };
    let roots: Vec<usize> = (0..nt).map(|t| uf.find(t)).collect();
    let mut members: HashMap<usize, usize> = HashMap::new();
    for &r in &roots {
        *members.entry(r).or_default() += 1;
    }
    for t in 0..nt {
        let info = &g.tensors[t];
        if is_act[t] {
            if let Some(Some((lo, hi))) = ranges.get(t) {
                let (a, b) = clamp.get(&t).copied().unwrap_or((*lo, *hi));
                let (lo, hi) = (lo.max(a), hi.min(b));
                widen(roots[t], lo, hi.max(lo));
            }
        } else if info.is_const() && info.dtype == DType::F32 && members[&roots[t]] > 1 {
            // A constant operand of a value-moving operator (CONCATENATION, PADV2).
            let v = const_f32(g, t)?;
            let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            widen(roots[t], lo, hi);
        }
    }
    let mut params: HashMap<usize, (f32, i32)> = HashMap::new();
    for t in (0..nt).filter(|&t| is_act[t]) {
        let r = uf.find(t);
        if params.contains_key(&r) {
            continue;
        }
        let p = if let Some((s, z, _)) = fixed.get(&r) {
            (*s, *z)
        } else {
            let (lo, hi) = group_range.get(&r).copied().ok_or_else(|| {
                format!(
                    "no calibration range for '{}' (was it never computed?)",
                    g.tensors[t].name
                )
            })?;
            if !(lo.is_finite() && hi.is_finite()) {
                return Err(format!("range of '{}' is not finite", g.tensors[t].name));
            }
            choose_qparams(lo, hi.max(lo), -128, 127)
        };
        params.insert(r, p);
    }
    let act_params = |uf: &mut UnionFind, t: usize| params[&uf.find(t)];

    // The new tensor list: activations first as they are used, constants made per use.
    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut tensor_map: Vec<Option<usize>> = vec![None; nt];
    let map_act = |t: usize,
                   uf: &mut UnionFind,
                   tensors: &mut Vec<TensorInfo>,
                   tensor_map: &mut Vec<Option<usize>>|
     -> usize {
        if let Some(n) = tensor_map[t] {
            return n;
        }
        let (s, z) = act_params(uf, t);
        let info = &g.tensors[t];
        tensors.push(TensorInfo {
            name: info.name.clone(),
            dtype: DType::I8,
            shape: info.shape.clone(),
            quant: Some(Quant::per_tensor(s, z as i64)),
            data: None,
        });
        tensor_map[t] = Some(tensors.len() - 1);
        tensors.len() - 1
    };
    let mut kept: HashMap<usize, usize> = HashMap::new();
    let mut keep_const = |t: usize, tensors: &mut Vec<TensorInfo>| -> usize {
        *kept.entry(t).or_insert_with(|| {
            // The new graph has no file behind it: constants carry their bytes.
            let mut info = g.tensors[t].clone();
            info.data = g.const_bytes(t).map(owned::<u8>);
            tensors.push(info);
            tensors.len() - 1
        })
    };
    let push = |tensors: &mut Vec<TensorInfo>, info: TensorInfo| -> usize {
        tensors.push(info);
        tensors.len() - 1
    };

    let inputs: Vec<usize> = g
        .inputs
        .iter()
        .map(|&i| map_act(i, &mut uf, &mut tensors, &mut tensor_map))
        .collect();
    let mut nodes: Vec<Node> = Vec::new();
    for (ni, node) in g.nodes.iter().enumerate() {
        let mut new_in: Vec<Option<usize>> = Vec::with_capacity(node.inputs.len());
        match &node.op {
            Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::FullyConnected { .. } => {
                let x = node.inputs[0].ok_or("convolution without input")?;
                let w = node.inputs[1].ok_or("convolution without weights")?;
                if !g.tensors[w].is_const() {
                    return Err(format!(
                        "operator {ni} ({}) has non-constant weights '{}'",
                        node.op.name(),
                        g.tensors[w].name
                    ));
                }
                let xi = map_act(x, &mut uf, &mut tensors, &mut tensor_map);
                let in_scale = act_params(&mut uf, x).0;
                let wv = const_f32(g, w)?;
                let wshape = g.tensors[w].shape.clone();
                let (axis, channels) = match &node.op {
                    Op::DepthwiseConv2D(_) => (3, *wshape.last().unwrap_or(&1)),
                    _ => (0, wshape[0]),
                };
                let mut bias = match node.inputs.get(2).copied().flatten() {
                    Some(b) => const_f32(g, b)?,
                    None => vec![0.0; channels],
                };
                if bias.len() != channels {
                    return Err(format!(
                        "operator {ni}: bias has {} values for {channels} channels",
                        bias.len()
                    ));
                }
                if let Some(shift) = opts.bias_shift.get(&ni) {
                    for (b, s) in bias.iter_mut().zip(shift) {
                        *b -= s;
                    }
                }
                let (wq, wscales) = if matches!(node.op, Op::FullyConnected { .. }) {
                    // Per tensor: one scale over all channels, floored for the largest bias.
                    let max_abs = wv.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let bmax = bias.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let s = quant::weight_scale(max_abs, bmax, in_scale);
                    let q: Vec<i8> = wv
                        .iter()
                        .map(|&v| quant::quantize_value(v, s, 0).clamp(-127, 127) as i8)
                        .collect();
                    (q, vec![s])
                } else {
                    quant::quantize_weights_per_channel(&wv, &wshape, axis, Some(&bias), in_scale)
                };
                let winfo = &g.tensors[w];
                let wi = push(
                    &mut tensors,
                    TensorInfo {
                        name: winfo.name.clone(),
                        dtype: DType::I8,
                        shape: wshape.clone(),
                        quant: Some(Quant {
                            scale: wscales.clone(),
                            zero_point: vec![0; wscales.len()],
                            axis,
                        }),
                        data: Some(owned(&wq)),
                    },
                );
                if let Some(mu) = opts.input_means.get(&x) {
                    let shift = weight_error_means(&node.op, &wv, &wq, &wshape, &wscales, mu);
                    if let Some(shift) = shift {
                        for (b, s) in bias.iter_mut().zip(shift) {
                            *b -= s;
                        }
                    }
                }
                let (bq, bscales) = quant::quantize_bias(&bias, in_scale, &wscales);
                let bname = node.inputs.get(2).copied().flatten().map_or_else(
                    || format!("{}/bias", g.tensors[node.outputs[0]].name),
                    |b| g.tensors[b].name.clone(),
                );
                let bi = push(
                    &mut tensors,
                    TensorInfo {
                        name: bname,
                        dtype: DType::I32,
                        shape: vec![channels],
                        quant: Some(Quant {
                            scale: bscales.clone(),
                            zero_point: vec![0; bscales.len()],
                            axis: 0,
                        }),
                        data: Some(owned(&bq)),
                    },
                );
                new_in.extend([Some(xi), Some(wi), Some(bi)]);
            }
            Op::DetectionPostProcess(_) => {
                for (k, inp) in node.inputs.iter().enumerate() {
                    let Some(t) = *inp else {
                        new_in.push(None);
                        continue;
                    };
                    if k < 2 && is_act[t] {
                        // int8 → float32 in front of the operator.
                        let q = map_act(t, &mut uf, &mut tensors, &mut tensor_map);
                        let info = &g.tensors[t];
                        let name = format!("{}/dequantized", info.name);
                        let f = dequantize(&mut tensors, &mut nodes, q, name, info.shape.clone());
                        new_in.push(Some(f));
                    } else if g.tensors[t].is_const() {
                        new_in.push(Some(keep_const(t, &mut tensors)));
                    } else {
                        return Err(format!(
                            "TFLite_Detection_PostProcess input {k} '{}' is not supported",
                            g.tensors[t].name
                        ));
                    }
                }
            }
            _ => {
                for inp in &node.inputs {
                    let Some(t) = *inp else {
                        new_in.push(None);
                        continue;
                    };
                    let info = &g.tensors[t];
                    if is_act[t] {
                        new_in.push(Some(map_act(t, &mut uf, &mut tensors, &mut tensor_map)));
                    } else if info.is_const() && info.dtype == DType::F32 {
                        // A float constant operand: its group's parameters, or its own range.
                        let v = const_f32(g, t)?;
                        let r = uf.find(t);
                        let (s, z) = match params.get(&r) {
                            Some(p) => *p,
                            None => {
                                let lo = v.iter().copied().fold(0f32, f32::min);
                                let hi = v.iter().copied().fold(0f32, f32::max);
                                choose_qparams(lo, hi, -128, 127)
                            }
                        };
                        let q: Vec<i8> = v.iter().map(|&x| quant::quantize_i8(x, s, z)).collect();
                        new_in.push(Some(push(
                            &mut tensors,
                            TensorInfo {
                                name: info.name.clone(),
                                dtype: DType::I8,
                                shape: info.shape.clone(),
                                quant: Some(Quant::per_tensor(s, z as i64)),
                                data: Some(owned(&q)),
                            },
                        )));
                    } else if info.is_const() {
                        new_in.push(Some(keep_const(t, &mut tensors)));
                    } else {
                        return Err(format!(
                            "operator {ni} ({}) reads '{}' ({}), which the quantizer cannot place",
                            node.op.name(),
                            info.name,
                            info.dtype.name()
                        ));
                    }
                }
            }
        }
        let new_out: Vec<usize> = node
            .outputs
            .iter()
            .map(|&t| {
                if is_act[t] {
                    map_act(t, &mut uf, &mut tensors, &mut tensor_map)
                } else {
                    let mut info = g.tensors[t].clone();
                    info.data = None;
                    let n = push(&mut tensors, info);
                    tensor_map[t] = Some(n);
                    n
                }
            })
            .collect();
        nodes.push(Node {
            op: node.op.clone(),
            inputs: new_in,
            outputs: new_out,
        });
    }
    let mut outputs = Vec::new();
    for &o in &g.outputs {
        let q = tensor_map[o].ok_or_else(|| format!("graph output {o} is never produced"))?;
        if opts.float_outputs && tensors[q].dtype == DType::I8 {
            let name = tensors[q].name.clone();
            let shape = tensors[q].shape.clone();
            tensors[q].name = format!("{name}/int8");
            outputs.push(dequantize(&mut tensors, &mut nodes, q, name, shape));
        } else {
            outputs.push(q);
        }
    }
    Ok(Quantized {
        graph: Graph {
            bytes: ModelBytes::new(&[]),
            tensors,
            nodes,
            inputs,
            outputs,
            input_names: g.input_names.clone(),
            output_names: g.output_names.clone(),
            description: opts.description.clone(),
        },
        tensor_map,
    })
}

/// Expected error of each output channel caused by quantizing the weights,
/// given the mean `mu` of every input channel: `Σ (ŵ·s − w)·μ` over the taps
/// of the channel (padding taps are counted as if they saw the mean).
fn weight_error_means(
    op: &Op,
    w: &[f32],
    wq: &[i8],
    shape: &[usize],
    scales: &[f32],
    mu: &[f32],
) -> Option<Vec<f32>> {
    let scale = |c: usize| scales[if scales.len() == 1 { 0 } else { c }];
    match op {
        Op::Conv2D(_) | Op::FullyConnected { .. } => {
            let o = shape[0];
            let per = w.len() / o.max(1);
            let cin = *shape.last()?;
            if cin != mu.len() || !per.is_multiple_of(cin) {
                return None;
            }
            Some(
                (0..o)
                    .map(|c| {
                        let s = scale(c);
                        (0..per)
                            .map(|k| {
                                let i = c * per + k;
                                (wq[i] as f32 * s - w[i]) * mu[k % cin]
                            })
                            .sum()
                    })
                    .collect(),
            )
        }
        Op::DepthwiseConv2D(_) => {
            let oc = *shape.last()?;
            if mu.is_empty() || oc % mu.len() != 0 {
                return None;
            }
            let m = oc / mu.len();
            let mut out = vec![0f32; oc];
            for (i, (&q, &f)) in wq.iter().zip(w).enumerate() {
                let c = i % oc;
                out[c] += (q as f32 * scale(c) - f) * mu[c / m];
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Interpreter;

    fn act(name: &str, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            quant: None,
            data: None,
        }
    }

    /// input → PRELU (constant alpha) → DEPTH_TO_SPACE: the data-movement operator shares
    /// its input's parameters, PRELU's output gets its own range, alpha its own int8
    /// parameters, and the result builds in the engine.
    #[test]
    fn depth_to_space_shares_parameters_and_prelu_does_not() {
        assert_eq!(
            shared_inputs(&Node {
                op: Op::DepthToSpace { block_size: 2 },
                inputs: vec![Some(0)],
                outputs: vec![1],
            }),
            Some(vec![0])
        );
        assert_eq!(
            shared_inputs(&Node {
                op: Op::Prelu,
                inputs: vec![Some(0), Some(1)],
                outputs: vec![2],
            }),
            None
        );
        let alpha = [0.25f32, -0.5, 0.1, 0.75];
        let mut a = act("alpha", &[1, 1, 4]);
        a.data = Some(owned(&alpha));
        let g = Graph {
            bytes: ModelBytes::new(&[]),
            tensors: vec![
                act("x", &[1, 2, 2, 4]),
                a,
                act("prelu", &[1, 2, 2, 4]),
                act("d2s", &[1, 4, 4, 1]),
            ],
            nodes: vec![
                Node {
                    op: Op::Prelu,
                    inputs: vec![Some(0), Some(1)],
                    outputs: vec![2],
                },
                Node {
                    op: Op::DepthToSpace { block_size: 2 },
                    inputs: vec![Some(2)],
                    outputs: vec![3],
                },
            ],
            inputs: vec![0],
            outputs: vec![3],
            input_names: vec![],
            output_names: vec![],
            description: String::new(),
        };
        let ranges = vec![
            Some((-2.0, 2.0)),
            None,
            Some((-1.0, 2.0)),
            Some((-1.0, 2.0)),
        ];
        let opts = BuildOptions {
            inputs: vec![(4.0 / 255.0, 0)],
            ..BuildOptions::default()
        };
        let q = quantize(&g, &ranges, &opts).unwrap();
        let t = |i: usize| &q.graph.tensors[i];
        let prelu = &q.graph.nodes[0];
        let d2s = &q.graph.nodes[1];
        let (p_out, d_in, d_out) = (prelu.outputs[0], d2s.inputs[0].unwrap(), d2s.outputs[0]);
        assert_eq!(p_out, d_in);
        assert_eq!(t(p_out).quant, t(d_out).quant);
        let want = choose_qparams(-1.0, 2.0, -128, 127);
        assert_eq!(
            t(p_out).quant,
            Some(Quant::per_tensor(want.0, want.1 as i64))
        );
        let ai = prelu.inputs[1].unwrap();
        assert_eq!(t(ai).dtype, DType::I8);
        let (s, z) = choose_qparams(-0.5, 0.75, -128, 127);
        assert_eq!(t(ai).quant, Some(Quant::per_tensor(s, z as i64)));
        assert_ne!(t(ai).quant, t(prelu.inputs[0].unwrap()).quant);
        Interpreter::new(q.graph).expect("the quantized graph builds");
    }
}
