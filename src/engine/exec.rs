//! The executor: constant folding, arena planning and the inference loop.

use std::ops::Range;
use std::sync::Arc;

use smallvec::SmallVec;

use super::error::{EngineError, OpError, Result};
use super::graph::{const_data_bytes, Graph};
use super::kernels::KernelPath;
use super::ops::{self, Kernel, OpIo};
use super::pool::ThreadPool;
use super::tensor::{ConstData, DType, TensorInfo, TensorMut, TensorRef};
use std::time::{Duration, Instant};

/// Alignment of every tensor placed in the arena, in bytes (and of the arena itself: a
/// 64-byte vector load at a tensor's start then stays within one cache line).
const ARENA_ALIGN: usize = 64;

/// The activation memory: `len` bytes starting at an [`ARENA_ALIGN`]-aligned address
/// inside an 8-byte-aligned allocation.
#[derive(Debug)]
struct Arena {
    words: Vec<u64>,
    /// First byte of the aligned region.
    start: usize,
    len: usize,
}

impl Arena {
    fn new(len: usize) -> Arena {
        let words = vec![0u64; (len + ARENA_ALIGN).div_ceil(8)];
        let start = (words.as_ptr() as usize).wrapping_neg() % ARENA_ALIGN;
        Arena { words, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[self.start..][..self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[self.start..][..self.len]
    }
}

/// How the interpreter is built.
#[derive(Clone, Debug)]
pub struct InterpreterOptions {
    /// Give every tensor its own arena slot so that intermediate tensors can be
    /// read after `invoke` (used by the per-layer drift analysis). Costs memory.
    pub keep_intermediates: bool,
    /// Kernel path of the convolution / fully-connected kernels, chosen once
    /// (default: the best path this CPU supports). An unsupported path is an error.
    pub kernels: KernelPath,
    /// Threads that run one inference: the caller plus `threads - 1` workers of
    /// the interpreter's own pool (`edgecam-infer-N`). 0 counts as 1.
    pub threads: usize,
    /// Cores to pin the worker threads to (empty: no pinning).
    pub cores: Vec<usize>,
    /// Measure the time of every operator (see [`Interpreter::profile`]).
    pub profile: bool,
}

impl Default for InterpreterOptions {
    fn default() -> Self {
        InterpreterOptions {
            keep_intermediates: false,
            kernels: KernelPath::best(),
            threads: 1,
            cores: Vec::new(),
            profile: false,
        }
    }
}

impl InterpreterOptions {
    /// Options for `threads` threads pinned to `cores`, with the kernel path
    /// requested by `request` (`auto` or a path name); the `EDGECAM_KERNELS`
    /// environment variable, when set, overrides `request`. A path this CPU lacks
    /// is an error naming the available ones. The chosen path is logged.
    pub fn resolve(request: &str, threads: usize, cores: &[usize]) -> Result<Self> {
        let (req, from) = match std::env::var("EDGECAM_KERNELS") {
            Ok(v) if !v.trim().is_empty() => (v.trim().to_string(), "EDGECAM_KERNELS"),
            _ => (request.to_string(), "configuration"),
        };
        let kernels =
            KernelPath::resolve(&req).map_err(|e| EngineError::Usage(format!("{from}: {e}")))?;
        tracing::info!(kernels = %kernels, requested = %req, threads, "engine kernel path");
        Ok(InterpreterOptions {
            kernels,
            threads: threads.max(1),
            cores: cores.to_vec(),
            ..Default::default()
        })
    }
}

/// Time spent in one operator type during the profiled invocations.
#[derive(Clone, Debug, PartialEq)]
pub struct OpProfile {
    pub op: String,
    /// Nodes of this type that run at inference time.
    pub nodes: usize,
    /// Total milliseconds over all profiled invocations.
    pub total_ms: f64,
}

/// Time spent in one operator (one step of the execution plan) during the profiled
/// invocations.
#[derive(Clone, Debug, PartialEq)]
pub struct StepProfile {
    /// Position in the execution plan.
    pub step: usize,
    pub op: String,
    /// Shape of the operator's first output.
    pub output_shape: Vec<usize>,
    /// Total milliseconds over all profiled invocations.
    pub total_ms: f64,
}

/// A model prepared for repeated inference. `invoke` allocates nothing.
pub struct Interpreter {
    graph: Arc<Graph>,
    /// Tensor infos; constant-folded tensors gain `data` here.
    tensors: Vec<TensorInfo>,
    /// (node index, kernel) for each node that runs at inference time.
    steps: Vec<(usize, Box<dyn Kernel>)>,
    /// Arena byte range of each non-constant tensor.
    place: Vec<Option<Range<usize>>>,
    arena: Arena,
    pool: Arc<ThreadPool>,
    /// Per-step accumulated time when profiling (preallocated; empty otherwise).
    step_time: Vec<Duration>,
    invocations: u64,
}

fn op_err(graph: &Graph, index: usize, e: OpError) -> EngineError {
    EngineError::Operator {
        index,
        op: graph.nodes[index].op.name().to_string(),
        msg: e.0,
    }
}

fn align_up(v: usize) -> usize {
    v.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

impl Interpreter {
    pub fn new(graph: Graph) -> Result<Self> {
        Self::with_options(graph, &InterpreterOptions::default())
    }

    pub fn with_options(graph: Graph, opts: &InterpreterOptions) -> Result<Self> {
        if !opts.kernels.supported() {
            return Err(EngineError::Usage(format!(
                "kernel path '{}' is not supported by this CPU (available: {})",
                opts.kernels,
                KernelPath::available()
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let pool = Arc::new(
            ThreadPool::new(opts.threads.max(1), &opts.cores).map_err(|e| {
                EngineError::Usage(format!("cannot start the inference threads: {e}"))
            })?,
        );
        let graph = Arc::new(graph);
        let nt = graph.tensors.len();
        let mut tensors = graph.tensors.clone();

        // Data-flow check: each non-constant tensor is a graph input or produced
        // exactly once, before it is used.
        let mut produced = vec![false; nt];
        for &i in &graph.inputs {
            if i >= nt {
                return Err(EngineError::InvalidModel(format!(
                    "graph input index {i} out of range"
                )));
            }
            produced[i] = true;
        }
        for (ni, node) in graph.nodes.iter().enumerate() {
            for &t in node.inputs.iter().flatten() {
                if t >= nt {
                    return Err(op_err(
                        &graph,
                        ni,
                        format!("input tensor {t} out of range").into(),
                    ));
                }
                if !produced[t] && !tensors[t].is_const() {
                    return Err(op_err(
                        &graph,
                        ni,
                        format!(
                            "input tensor {t} '{}' is used before it is produced",
                            tensors[t].name
                        )
                        .into(),
                    ));
                }
            }
            for &t in &node.outputs {
                if t >= nt {
                    return Err(op_err(
                        &graph,
                        ni,
                        format!("output tensor {t} out of range").into(),
                    ));
                }
                if produced[t] || tensors[t].is_const() {
                    return Err(op_err(
                        &graph,
                        ni,
                        format!("output tensor {t} '{}' is written twice", tensors[t].name).into(),
                    ));
                }
                produced[t] = true;
            }
        }
        for &o in &graph.outputs {
            if o >= nt || !(produced[o] || tensors[o].is_const()) {
                return Err(EngineError::InvalidModel(format!(
                    "graph output {o} is never produced"
                )));
            }
        }

        // Build kernels; fold nodes whose inputs are all constant.
        let mut steps: Vec<(usize, Box<dyn Kernel>)> = Vec::new();
        for (ni, node) in graph.nodes.iter().enumerate() {
            // Kernels are prepared against the current tensor infos (folded constants included).
            let ctx = ops::BuildCtx {
                tensors: &tensors,
                bytes: &graph.bytes,
                kernels: opts.kernels,
                pool: Some(pool.clone()),
            };
            let mut kernel = ops::build(&ctx, node).map_err(|e| op_err(&graph, ni, e))?;
            let all_const = node.inputs.iter().flatten().all(|&t| tensors[t].is_const())
                && !node
                    .inputs
                    .iter()
                    .flatten()
                    .any(|&t| graph.inputs.contains(&t));
            if all_const {
                let mut outs: Vec<Vec<u64>> = node
                    .outputs
                    .iter()
                    .map(|&t| vec![0u64; tensors[t].byte_len().div_ceil(8)])
                    .collect();
                {
                    let mut io = OpIo {
                        inputs: SmallVec::new(),
                        outputs: SmallVec::new(),
                    };
                    for inp in &node.inputs {
                        io.inputs.push(match inp {
                            None => None,
                            Some(t) => {
                                let info = &tensors[*t];
                                let bytes = info
                                    .data
                                    .as_ref()
                                    .and_then(|d| const_data_bytes(&graph.bytes, d))
                                    .ok_or_else(|| {
                                        op_err(&graph, ni, "constant data out of range".into())
                                    })?;
                                Some(TensorRef { info, bytes })
                            }
                        });
                    }
                    for (k, buf) in outs.iter_mut().enumerate() {
                        let info = &tensors[node.outputs[k]];
                        let bytes =
                            &mut bytemuck::cast_slice_mut::<u64, u8>(buf)[..info.byte_len()];
                        io.outputs.push(TensorMut { info, bytes });
                    }
                    kernel.eval(&mut io).map_err(|e| op_err(&graph, ni, e))?;
                }
                for (k, buf) in outs.into_iter().enumerate() {
                    let t = node.outputs[k];
                    let len = tensors[t].byte_len();
                    tensors[t].data = Some(ConstData::Owned(Arc::new(buf), len));
                }
            } else {
                steps.push((ni, kernel));
            }
        }

        // Lifetimes of arena tensors, in step units.
        let nsteps = steps.len();
        let mut first = vec![usize::MAX; nt];
        let mut last = vec![0usize; nt];
        for &i in &graph.inputs {
            first[i] = 0;
        }
        for (s, (ni, _)) in steps.iter().enumerate() {
            let node = &graph.nodes[*ni];
            for &t in node.inputs.iter().flatten() {
                if !tensors[t].is_const() {
                    last[t] = last[t].max(s);
                }
            }
            for &t in &node.outputs {
                first[t] = first[t].min(s);
                last[t] = last[t].max(s);
            }
        }
        for &o in &graph.outputs {
            last[o] = nsteps;
        }
        if opts.keep_intermediates {
            for l in last.iter_mut() {
                *l = nsteps;
            }
            for f in first.iter_mut() {
                if *f != usize::MAX {
                    *f = 0;
                }
            }
        }

        // Greedy placement, largest first, at the lowest offset that does not
        // overlap a tensor whose lifetime intersects.
        let mut order: Vec<usize> = (0..nt)
            .filter(|&t| first[t] != usize::MAX && !tensors[t].is_const())
            .collect();
        order.sort_by_key(|&t| std::cmp::Reverse(tensors[t].byte_len()));
        let mut place: Vec<Option<Range<usize>>> = vec![None; nt];
        let mut placed: Vec<usize> = Vec::new();
        let mut total = 0usize;
        for &t in &order {
            let size = align_up(tensors[t].byte_len().max(1));
            let mut busy: Vec<Range<usize>> = placed
                .iter()
                .filter(|&&u| first[u] <= last[t] && first[t] <= last[u])
                .filter_map(|&u| place[u].clone())
                .collect();
            busy.sort_by_key(|r| r.start);
            let mut off = 0usize;
            for r in &busy {
                if off + size <= r.start {
                    break;
                }
                off = off.max(align_up(r.end));
            }
            place[t] = Some(off..off + tensors[t].byte_len());
            total = total.max(off + size);
            placed.push(t);
        }
        let arena = Arena::new(total);
        let step_time = if opts.profile {
            vec![Duration::ZERO; steps.len()]
        } else {
            Vec::new()
        };
        Ok(Interpreter {
            graph,
            tensors,
            steps,
            place,
            arena,
            pool,
            step_time,
            invocations: 0,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Threads that run one inference (the caller included).
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Time per operator type over the invocations so far (built with
    /// `InterpreterOptions::profile`; empty otherwise), slowest first, and the
    /// number of profiled invocations.
    pub fn profile(&self) -> (Vec<OpProfile>, u64) {
        let mut by: Vec<OpProfile> = Vec::new();
        for ((ni, _), t) in self.steps.iter().zip(&self.step_time) {
            let name = self.graph.nodes[*ni].op.name();
            let ms = t.as_secs_f64() * 1e3;
            match by.iter_mut().find(|p| p.op == name) {
                Some(p) => {
                    p.nodes += 1;
                    p.total_ms += ms;
                }
                None => by.push(OpProfile {
                    op: name.to_string(),
                    nodes: 1,
                    total_ms: ms,
                }),
            }
        }
        by.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        (by, self.invocations)
    }

    /// Time per operator over the invocations so far (built with
    /// `InterpreterOptions::profile`; empty otherwise), slowest first.
    pub fn step_profile(&self) -> Vec<StepProfile> {
        let mut v: Vec<StepProfile> = self
            .steps
            .iter()
            .zip(&self.step_time)
            .enumerate()
            .map(|(step, ((ni, _), t))| {
                let node = &self.graph.nodes[*ni];
                StepProfile {
                    step,
                    op: node.op.name().to_string(),
                    output_shape: node
                        .outputs
                        .first()
                        .map(|&o| self.tensors[o].shape.clone())
                        .unwrap_or_default(),
                    total_ms: t.as_secs_f64() * 1e3,
                }
            })
            .collect();
        v.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        v
    }

    /// Reset the profile counters (e.g. after warm-up).
    pub fn reset_profile(&mut self) {
        self.step_time.iter_mut().for_each(|t| *t = Duration::ZERO);
        self.invocations = 0;
    }

    pub fn input_count(&self) -> usize {
        self.graph.inputs.len()
    }

    pub fn output_count(&self) -> usize {
        self.graph.outputs.len()
    }

    /// Info of graph input `i`.
    pub fn input_info(&self, i: usize) -> Result<&TensorInfo> {
        let t = self.graph_input(i)?;
        Ok(&self.tensors[t])
    }

    /// Info of graph output `i`.
    pub fn output_info(&self, i: usize) -> Result<&TensorInfo> {
        let t = self.graph_output(i)?;
        Ok(&self.tensors[t])
    }

    fn graph_input(&self, i: usize) -> Result<usize> {
        self.graph.inputs.get(i).copied().ok_or_else(|| {
            EngineError::Usage(format!(
                "input {i} out of range: model has {} inputs",
                self.graph.inputs.len()
            ))
        })
    }

    fn graph_output(&self, i: usize) -> Result<usize> {
        self.graph.outputs.get(i).copied().ok_or_else(|| {
            EngineError::Usage(format!(
                "output {i} out of range: model has {} outputs",
                self.graph.outputs.len()
            ))
        })
    }

    /// Index of the output with this signature or tensor name.
    pub fn output_index(&self, name: &str) -> Result<usize> {
        find_name(
            &self.graph,
            &self.graph.outputs,
            &self.graph.output_names,
            name,
        )
        .ok_or_else(|| EngineError::Usage(format!("no output named '{name}'")))
    }

    /// Writable bytes of graph input `i`.
    pub fn input_bytes_mut(&mut self, i: usize) -> Result<&mut [u8]> {
        let t = self.graph_input(i)?;
        let r = self.place[t]
            .clone()
            .ok_or_else(|| EngineError::Usage(format!("input {i} has no storage")))?;
        Ok(&mut self.arena.bytes_mut()[r])
    }

    /// Copy `data` into input `i`; the length and type must match exactly.
    pub fn set_input<T: bytemuck::Pod>(
        &mut self,
        i: usize,
        dtype: DType,
        data: &[T],
    ) -> Result<()> {
        let info = self.input_info(i)?;
        if info.dtype != dtype {
            return Err(EngineError::Usage(format!(
                "input {i} '{}' is {}, got {}",
                info.name,
                info.dtype.name(),
                dtype.name()
            )));
        }
        let want = info.byte_len();
        let src: &[u8] = bytemuck::cast_slice(data);
        if src.len() != want {
            return Err(EngineError::Usage(format!(
                "input {i} '{}' takes {} bytes (shape {:?}), got {}",
                info.name,
                want,
                info.shape,
                src.len()
            )));
        }
        self.input_bytes_mut(i)?.copy_from_slice(src);
        Ok(())
    }

    /// View of any tensor after `invoke` (constants, graph inputs/outputs, and
    /// intermediates when built with `keep_intermediates`).
    pub fn tensor(&self, t: usize) -> Result<TensorRef<'_>> {
        let info = self
            .tensors
            .get(t)
            .ok_or_else(|| EngineError::Usage(format!("tensor {t} out of range")))?;
        if let Some(d) = &info.data {
            let bytes = const_data_bytes(&self.graph.bytes, d)
                .ok_or_else(|| EngineError::Usage(format!("tensor {t} data out of range")))?;
            return Ok(TensorRef { info, bytes });
        }
        let r = self.place[t].clone().ok_or_else(|| {
            EngineError::Usage(format!("tensor {t} '{}' has no storage", info.name))
        })?;
        Ok(TensorRef {
            info,
            bytes: &self.arena.bytes()[r],
        })
    }

    /// View of graph output `i` after `invoke`.
    pub fn output(&self, i: usize) -> Result<TensorRef<'_>> {
        let t = self.graph_output(i)?;
        self.tensor(t)
    }

    /// Tensor infos (including constant-folded tensors).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Tensor indices produced at inference time, in execution order.
    pub fn executed_outputs(&self) -> impl Iterator<Item = usize> + '_ {
        self.steps
            .iter()
            .flat_map(|(ni, _)| self.graph.nodes[*ni].outputs.iter().copied())
    }

    /// Indices of the graph's nodes that run at inference time (the others
    /// were folded into constants), in execution order.
    pub fn executed_nodes(&self) -> impl Iterator<Item = usize> + '_ {
        self.steps.iter().map(|(ni, _)| *ni)
    }

    /// Run the model once.
    pub fn invoke(&mut self) -> Result<()> {
        let arena = self.arena.bytes_mut();
        let profiling = !self.step_time.is_empty();
        for (s, (ni, kernel)) in self.steps.iter_mut().enumerate() {
            let t0 = profiling.then(Instant::now);
            let node = &self.graph.nodes[*ni];
            let graph = &self.graph;
            let tensors = &self.tensors;
            let place = &self.place;
            let res = (|| -> std::result::Result<(), OpError> {
                // Ranges of arena operands.
                let mut ranges: SmallVec<[(Range<usize>, i32); 12]> = SmallVec::new();
                for (k, inp) in node.inputs.iter().enumerate() {
                    if let Some(t) = inp {
                        if !tensors[*t].is_const() {
                            let r = place[*t].clone().ok_or("input has no storage")?;
                            ranges.push((r, k as i32));
                        }
                    }
                }
                for (k, &t) in node.outputs.iter().enumerate() {
                    let r = place[t].clone().ok_or("output has no storage")?;
                    ranges.push((r, -(k as i32) - 1));
                }
                let mut ins: SmallVec<[Option<&[u8]>; 8]> =
                    SmallVec::from_elem(None, node.inputs.len());
                let mut outs: SmallVec<[Option<&mut [u8]>; 4]> = SmallVec::new();
                outs.resize_with(node.outputs.len(), || None);
                carve(arena, &mut ranges, &mut ins, &mut outs)?;
                let mut io = OpIo {
                    inputs: SmallVec::new(),
                    outputs: SmallVec::new(),
                };
                for (k, inp) in node.inputs.iter().enumerate() {
                    io.inputs.push(match inp {
                        None => None,
                        Some(t) => {
                            let info = &tensors[*t];
                            let bytes = match &info.data {
                                Some(d) => const_data_bytes(&graph.bytes, d)
                                    .ok_or("constant data out of range")?,
                                None => ins[k].ok_or("input not carved")?,
                            };
                            Some(TensorRef { info, bytes })
                        }
                    });
                }
                for (k, o) in outs.into_iter().enumerate() {
                    io.outputs.push(TensorMut {
                        info: &tensors[node.outputs[k]],
                        bytes: o.ok_or("output not carved")?,
                    });
                }
                kernel.eval(&mut io)
            })();
            res.map_err(|e| op_err(&self.graph, *ni, e))?;
            if let Some(t0) = t0 {
                self.step_time[s] += t0.elapsed();
            }
        }
        if profiling {
            self.invocations += 1;
        }
        Ok(())
    }
}

fn find_name(graph: &Graph, idx: &[usize], sig: &[String], name: &str) -> Option<usize> {
    if let Some(p) = sig.iter().position(|s| s == name) {
        return Some(p);
    }
    idx.iter().position(|&t| graph.tensors[t].name == name)
}

/// Split `arena` into the disjoint operand slices of one operator.
/// `ranges` holds (byte range, k) with k >= 0 for input k and k < 0 for output -k-1.
/// Inputs that name the same tensor share one slice. Overlap between distinct
/// ranges is a planning bug and is reported, never undefined behaviour.
fn carve<'a>(
    arena: &'a mut [u8],
    ranges: &mut [(Range<usize>, i32)],
    ins: &mut [Option<&'a [u8]>],
    outs: &mut [Option<&'a mut [u8]>],
) -> std::result::Result<(), OpError> {
    ranges.sort_by_key(|(r, k)| (r.start, r.end, *k));
    let mut rest: &'a mut [u8] = arena;
    let mut consumed = 0usize;
    let mut prev: Option<(Range<usize>, &'a [u8])> = None;
    for (r, k) in ranges.iter() {
        if let Some((pr, ps)) = &prev {
            if pr == r && *k >= 0 {
                ins[*k as usize] = Some(*ps);
                continue;
            }
        }
        if r.start < consumed {
            return Err("operands overlap in the arena".into());
        }
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut(r.start - consumed);
        if r.len() > tail.len() {
            return Err("operand beyond the arena".into());
        }
        let (piece, tail) = tail.split_at_mut(r.len());
        rest = tail;
        consumed = r.end;
        if *k >= 0 {
            let shared: &'a [u8] = piece;
            ins[*k as usize] = Some(shared);
            prev = Some((r.clone(), shared));
        } else {
            outs[(-*k - 1) as usize] = Some(piece);
            prev = None;
        }
    }
    Ok(())
}
