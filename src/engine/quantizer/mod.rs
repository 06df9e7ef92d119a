//! The quantizer: a float model and calibration frames in, a full-integer
//! int8 model out (TFLite's quantization spec, written by
//! [`crate::engine::tflite::writer`]).
//!
//! 1. [`prepare_float`] turns a float32, float16-weight, weight-only or
//!    dynamic-range model into a plain float32 graph: quantized weights are
//!    dequantized and constant DEQUANTIZE operators are folded.
//! 2. [`Calibration`] watches that graph run on calibration frames and keeps,
//!    per tensor, [`observe::TensorStats`] (order-independent), and per
//!    convolution output the mean of every channel (for bias correction).
//! 3. A [`ranges::Method`] turns the statistics into ranges, and
//!    [`build::quantize`] writes the int8 graph.
//! 4. Bias correction, two parts: the error the weight quantization adds to
//!    each channel's mean is computed from the calibration input means
//!    ([`Calibration::input_means`], `E[(ŵ − w)·x] = (ŵ − w)·E[x]`), and the
//!    heads' remaining mean error is measured by running the int8 graph on
//!    the same frames as the float one ([`Calibration::head_shift`]).

pub mod build;
pub mod observe;
pub mod ranges;

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::graph::{Graph, Op};
use crate::engine::tensor::{ConstData, DType};
use crate::engine::{Interpreter, InterpreterOptions};

pub use build::{quantize, BuildOptions, Quantized};
pub use observe::TensorStats;
pub use ranges::Method;

fn owned_f32(v: &[f32]) -> ConstData {
    let bytes: &[u8] = bytemuck::cast_slice(v);
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    ConstData::Owned(Arc::new(words), bytes.len())
}

/// The float values of a quantized constant (`scale × (q − zero_point)`,
/// per channel where it has one scale per channel).
fn dequantize_const(g: &Graph, t: usize) -> Option<Vec<f32>> {
    let info = &g.tensors[t];
    let q = info.quant.as_ref()?;
    let b = g.const_bytes(t)?;
    let vals: Vec<i64> = match info.dtype {
        DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
        DType::U8 => b.iter().map(|&x| x as i64).collect(),
        DType::I16 => bytemuck::pod_collect_to_vec::<u8, i16>(b)
            .into_iter()
            .map(i64::from)
            .collect(),
        _ => return None,
    };
    let n = q.scale.len();
    let inner: usize = info.shape.get(q.axis + 1..)?.iter().product();
    Some(
        vals.iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = if n == 1 { 0 } else { (i / inner.max(1)) % n };
                q.scale[c] * (v - q.zero_point.get(c).copied().unwrap_or(0)) as f32
            })
            .collect(),
    )
}

/// A float32 graph the quantizer can calibrate and quantize: quantized
/// weights of float operators (weight-only and dynamic-range models) are
/// dequantized, and operators on constants only (float16 DEQUANTIZE) are
/// folded away. Tensor indices of the result are those the calibration
/// interpreter uses.
pub fn prepare_float(mut g: Graph) -> Result<Graph, String> {
    // Quantized constants read by operators on float activations.
    let mut to_float: Vec<usize> = Vec::new();
    for node in &g.nodes {
        let float_op = node
            .inputs
            .iter()
            .flatten()
            .any(|&t| !g.tensors[t].is_const() && g.tensors[t].dtype == DType::F32);
        if float_op && !matches!(node.op, Op::Dequantize) {
            for &t in node.inputs.iter().flatten() {
                let i = &g.tensors[t];
                if i.is_const() && i.quant.is_some() && i.dtype != DType::F32 {
                    to_float.push(t);
                }
            }
        }
    }
    for t in to_float {
        if g.tensors[t].dtype == DType::F32 {
            continue;
        }
        let v = dequantize_const(&g, t)
            .ok_or_else(|| format!("cannot dequantize '{}'", g.tensors[t].name))?;
        let info = &mut g.tensors[t];
        info.dtype = DType::F32;
        info.quant = None;
        info.data = Some(owned_f32(&v));
    }
    for &i in &g.inputs {
        if g.tensors[i].dtype != DType::F32 {
            return Err(format!(
                "input '{}' is {}: give the float model (float32 or float16 weights)",
                g.tensors[i].name,
                g.tensors[i].dtype.name()
            ));
        }
    }
    let interp = Interpreter::with_options(g.clone(), &InterpreterOptions::default())
        .map_err(|e| format!("{e}"))?;
    let nodes = interp
        .executed_nodes()
        .map(|ni| g.nodes[ni].clone())
        .collect();
    g.tensors = interp.tensors().to_vec();
    g.nodes = nodes;
    for (ni, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Quantize | Op::Dequantize) {
            return Err(format!(
                "operator {ni} ({}) quantizes activations: the model is already quantized; give the float model",
                node.op.name()
            ));
        }
    }
    Ok(g)
}

/// Statistics of the float graph over the calibration frames.
#[derive(Clone, Debug)]
pub struct Calibration {
    pub float: Graph,
    /// Per tensor index of `float`; `None` for tensors not observed.
    pub stats: Vec<Option<TensorStats>>,
    /// Per-channel sums of every convolution input (for the weight-error part of
    /// bias correction), over the bias-correction frames.
    input_sums: HashMap<usize, (Vec<f64>, u64)>,
    /// Per head convolution node: its output tensor and per-channel sums, over
    /// the bias-correction frames.
    head_sums: HashMap<usize, (usize, Vec<f64>, u64)>,
    pub frames: usize,
}

/// Output channels (last dimension) of `v`, summed into `sums`; returns values per channel.
fn add_channel_sums(v: &[f32], sums: &mut [f64]) -> u64 {
    let c = sums.len();
    for row in v.chunks_exact(c) {
        for (s, &x) in sums.iter_mut().zip(row) {
            *s += x as f64;
        }
    }
    (v.len() / c.max(1)) as u64
}

fn is_conv(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv2D(_) | Op::DepthwiseConv2D(_) | Op::FullyConnected { .. }
    )
}

fn fused_none(op: &Op) -> bool {
    use crate::engine::graph::Activation;
    match op {
        Op::Conv2D(o) => o.activation == Activation::None,
        Op::DepthwiseConv2D(o) => o.activation == Activation::None,
        Op::FullyConnected { activation, .. } => *activation == Activation::None,
        _ => false,
    }
}

/// Linear convolutions whose output reaches a graph output through operators
/// that only move values (the detector's box and class heads): node → output.
pub fn head_nodes(g: &Graph) -> Vec<(usize, usize)> {
    let mut reach: std::collections::HashSet<usize> = g.outputs.iter().copied().collect();
    for node in g.nodes.iter().rev() {
        let moves = matches!(
            node.op,
            Op::Reshape | Op::Squeeze { .. } | Op::Concatenation { .. } | Op::Transpose
        );
        if moves && node.outputs.iter().any(|o| reach.contains(o)) {
            reach.extend(node.inputs.iter().flatten().copied());
        }
    }
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| is_conv(&n.op) && fused_none(&n.op) && reach.contains(&n.outputs[0]))
        .map(|(ni, n)| (ni, n.outputs[0]))
        .collect()
}

fn channels_of(g: &Graph, t: usize) -> usize {
    *g.tensors[t].shape.last().unwrap_or(&1)
}

impl Calibration {
    pub fn new(float: Graph) -> Self {
        let mut input_sums = HashMap::new();
        for n in float.nodes.iter().filter(|n| is_conv(&n.op)) {
            if let Some(x) = n.inputs[0] {
                input_sums.insert(x, (vec![0.0; channels_of(&float, x)], 0));
            }
        }
        let head_sums = head_nodes(&float)
            .into_iter()
            .map(|(ni, t)| (ni, (t, vec![0.0; channels_of(&float, t)], 0)))
            .collect();
        Calibration {
            stats: vec![None; float.tensors.len()],
            float,
            input_sums,
            head_sums,
            frames: 0,
        }
    }

    /// Record one frame: `interp` runs [`Self::float`] built with
    /// `keep_intermediates`, and has just been invoked. With `channels`, the
    /// frame also counts towards the channel means of bias correction (which
    /// must be taken over the frames the int8 model then runs on).
    pub fn observe(&mut self, interp: &Interpreter, channels: bool) -> Result<(), String> {
        let produced: Vec<usize> = interp.executed_outputs().collect();
        for t in produced {
            let r = interp.tensor(t).map_err(|e| e.to_string())?;
            if r.dtype() != DType::F32 {
                continue;
            }
            let v = r.f32().map_err(|e| e.0)?;
            self.stats[t]
                .get_or_insert_with(TensorStats::default)
                .add(v);
        }
        if channels {
            for (&t, (sums, n)) in self.input_sums.iter_mut() {
                let r = interp.tensor(t).map_err(|e| e.to_string())?;
                *n += add_channel_sums(r.f32().map_err(|e| e.0)?, sums);
            }
            for (t, sums, n) in self.head_sums.values_mut() {
                let r = interp.tensor(*t).map_err(|e| e.to_string())?;
                *n += add_channel_sums(r.f32().map_err(|e| e.0)?, sums);
            }
        }
        self.frames += 1;
        Ok(())
    }

    /// The activation ranges `method` gives, per tensor of [`Self::float`].
    pub fn ranges(&self, method: Method) -> Vec<Option<(f32, f32)>> {
        self.stats
            .iter()
            .map(|s| s.as_ref().map(|s| method.range(s)))
            .collect()
    }

    /// Per-channel means of the convolution inputs, for
    /// [`BuildOptions::input_means`] (the weight-error part of bias correction).
    pub fn input_means(&self) -> HashMap<usize, Vec<f32>> {
        self.input_sums
            .iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(&t, (s, n))| (t, s.iter().map(|v| (v / *n as f64) as f32).collect()))
            .collect()
    }

    /// Empirical bias correction of the heads: `int8_sums` are the dequantized
    /// per-channel sums of `q`'s tensors over the bias-correction frames.
    /// Returns, per head node, the mean error of each output channel
    /// (int8 − float), which [`BuildOptions::bias_shift`] subtracts.
    pub fn head_shift(
        &self,
        q: &Quantized,
        int8_sums: &HashMap<usize, (Vec<f64>, u64)>,
    ) -> HashMap<usize, Vec<f32>> {
        let mut out = HashMap::new();
        for (&ni, (t, fsum, fn_)) in &self.head_sums {
            let Some(qt) = q.tensor_map[*t] else { continue };
            let Some((qsum, qn)) = int8_sums.get(&qt) else {
                continue;
            };
            if *fn_ == 0 || *qn == 0 {
                continue;
            }
            let shift: Vec<f32> = fsum
                .iter()
                .zip(qsum)
                .map(|(f, q)| (q / *qn as f64 - f / *fn_ as f64) as f32)
                .collect();
            out.insert(ni, shift);
        }
        out
    }

    /// The int8 tensors whose channel means [`Self::head_shift`] needs.
    pub fn head_tensors(&self, q: &Quantized) -> Vec<usize> {
        self.head_sums
            .values()
            .filter_map(|(t, _, _)| q.tensor_map[*t])
            .collect()
    }
}

/// Add the dequantized per-channel sums of the int8 tensors `ts` after a run of `interp`.
pub fn accumulate_int8_sums(
    interp: &Interpreter,
    ts: &[usize],
    sums: &mut HashMap<usize, (Vec<f64>, u64)>,
) -> Result<(), String> {
    for &t in ts {
        let r = interp.tensor(t).map_err(|e| e.to_string())?;
        let q = r
            .quant()
            .cloned()
            .unwrap_or_else(|| crate::engine::Quant::per_tensor(1.0, 0));
        let (s, z) = (q.scale0(), q.zp0());
        let c = *r.shape().last().unwrap_or(&1);
        let e = sums.entry(t).or_insert_with(|| (vec![0.0; c], 0));
        let v: Vec<f32> = r
            .i8()
            .map_err(|e| e.0)?
            .iter()
            .map(|&x| s * (x as i32 - z) as f32)
            .collect();
        e.1 += add_channel_sums(&v, &mut e.0);
    }
    Ok(())
}
