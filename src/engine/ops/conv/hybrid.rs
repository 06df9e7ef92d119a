//! Dynamic-range ("hybrid") CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: float input and
//! output, int8 weights (per tensor or per channel, zero point 0), float bias. What TFLite's
//! converter writes by default (`Optimize.DEFAULT` without a representative dataset) and
//! ai-edge-quantizer's `dynamic_wi8_afp32`. TFLite's semantics, chosen at prepare time:
//!
//! | operator | input quantization | epilogue |
//! |---|---|---|
//! | CONV_2D, weight scales not all equal | asymmetric, per batch | `(acc · ws[j]) · s` |
//! | CONV_2D, one weight scale | symmetric, per batch | `acc · (s · ws)` |
//! | DEPTHWISE_CONV_2D | asymmetric, per batch | `acc · (ws[j] · s)` |
//! | FULLY_CONNECTED | per row; asymmetric with `asymmetric_quantize_inputs` | `acc · (s · ws[j])` |
//!
//! then `+ bias[j]` and the fused activation's clamp (see `kernels::scalar::hybrid`).
//!
//! With constant weights the int32 sums run on the int8 GEMM of the dispatch point: the input
//! is quantized once per run into a preallocated buffer, im2col pads with the zero point (so a
//! padded tap adds `w · 0`, as TFLite's skipped taps do), and `Σ w·(x − zp) = Σ w·x − zp·Σ w`
//! with the weights' row sums computed at build time. Integer sums are exact in any order, so
//! every path gives the oracle's sums, and the shared epilogue gives the same floats.
//! Depthwise (multiplier 1) accumulates rows channel-innermost, which vectorizes. Anything
//! else (run-time weights, batches of several images, other multipliers) runs the reference
//! loops.

use std::sync::Arc;

use super::gemm::{gemm_shape, ASource, ACC_ROWS};
use super::im2col::{im2col, RUN};
use super::params::{bias_info, const_weights};
use super::tasks::{depthwise_sub, depthwise_tasks, run_tasks, task_rows, RowTasks, Split};
use crate::engine::error::OpResult;
use crate::engine::graph::Node;
use crate::engine::kernels::scalar::conv::ConvGeom;
use crate::engine::kernels::scalar::hybrid::{self as hy, Epilogue, InputQuant};
use crate::engine::kernels::{self, KernelPath, PackedI8};
use crate::engine::ops::common::{in_slice, out_slice};
use crate::engine::ops::{BuildCtx, Kernel, OpIo};
use crate::engine::pool::{PerWorker, ThreadPool};
use crate::engine::tensor::{DType, TensorInfo};
use crate::op_bail;

/// What kind of hybrid operator.
#[derive(Clone, Copy, Debug)]
pub(super) enum HybridOp {
    Conv(ConvGeom),
    Depthwise(ConvGeom, usize),
    /// `rows` of `depth` inputs, `units` outputs; asymmetric input quantization or not.
    Fc {
        rows: usize,
        depth: usize,
        units: usize,
        asymmetric: bool,
    },
}

impl HybridOp {
    fn input_len(&self) -> usize {
        match self {
            HybridOp::Conv(g) | HybridOp::Depthwise(g, _) => g.input_len(),
            HybridOp::Fc { rows, depth, .. } => rows * depth,
        }
    }
    fn output_len(&self) -> usize {
        match self {
            HybridOp::Conv(g) | HybridOp::Depthwise(g, _) => g.output_len(),
            HybridOp::Fc { rows, units, .. } => rows * units,
        }
    }
    fn channels(&self) -> usize {
        match self {
            HybridOp::Conv(g) | HybridOp::Depthwise(g, _) => g.out_c,
            HybridOp::Fc { units, .. } => *units,
        }
    }
    /// Groups quantized on their own (batches, or FC rows) and the input values of each.
    fn groups(&self) -> (usize, usize) {
        match self {
            HybridOp::Conv(g) | HybridOp::Depthwise(g, _) => (g.batch, g.input_len() / g.batch),
            HybridOp::Fc { rows, depth, .. } => (*rows, *depth),
        }
    }
}

/// The per-channel weight scales of a hybrid operator (one scale repeated when per tensor),
/// its input quantization (asymmetric or not) and its epilogue.
struct Scheme {
    scales: Vec<f32>,
    asymmetric: bool,
    epilogue: Epilogue,
}

/// The float side of a hybrid operator with constant weights: its scheme, the bias and the
/// fused activation's clamp.
struct FloatSide {
    s: Scheme,
    bias: Vec<f32>,
    clamp: (f32, f32),
}

impl FloatSide {
    /// The epilogue of a group quantized with `input_scale`.
    fn epilogue_args(&self, input_scale: f32) -> kernels::hybrid::EpilogueArgs<'_> {
        kernels::hybrid::EpilogueArgs {
            epilogue: self.s.epilogue,
            weight_scales: &self.s.scales,
            input_scale,
            bias: &self.bias,
            clamp: self.clamp,
        }
    }
}

fn scheme(op: &HybridOp, filter: &TensorInfo, axis: usize) -> OpResult<Scheme> {
    let n = op.channels();
    let q = filter.quant.as_ref().ok_or_else(|| {
        format!(
            "filter '{}' is int8 without quantization parameters (a dynamic-range filter needs its scales)",
            filter.name
        )
    })?;
    if q.zero_point.iter().any(|&z| z != 0) {
        op_bail!(
            "filter '{}': dynamic-range weights must have zero point 0",
            filter.name
        );
    }
    let scales = match q.scale.len() {
        1 => vec![q.scale[0]; n],
        l if l == n && q.axis == axis => q.scale.clone(),
        l => {
            op_bail!(
                "filter '{}' has {l} scales on axis {}, expected 1 or {n} on axis {axis}",
                filter.name,
                q.axis
            )
        }
    };
    if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        op_bail!("filter '{}' has an invalid scale {s}", filter.name);
    }
    let per_channel = scales.windows(2).any(|w| w[0] != w[1]);
    let (asymmetric, epilogue) = match op {
        HybridOp::Conv(_) if per_channel => (true, Epilogue::ConvPerChannel),
        HybridOp::Conv(_) => (false, Epilogue::Combined),
        HybridOp::Depthwise(..) => (true, Epilogue::Combined),
        HybridOp::Fc { asymmetric, .. } => (*asymmetric, Epilogue::Combined),
    };
    Ok(Scheme {
        scales,
        asymmetric,
        epilogue,
    })
}

/// Input quantization state of one run: the int8 input and each group's parameters.
struct Quantized {
    xq: Vec<i8>,
    params: Vec<InputQuant>,
    /// Each group's zero point (the reference loops take them as a slice).
    zp: Vec<i32>,
    /// One (min, max) per pool thread: the pieces of a large group's range.
    ranges: Vec<(f32, f32)>,
}

/// Below this many values a group's range and quantization run on one thread (a second
/// thread's hand-over costs more than it saves).
const SPLIT_VALUES: usize = 1 << 14;

impl Quantized {
    /// `values`: whether the quantized input is kept here (not when the GEMM tasks quantize
    /// their own rows).
    fn new(op: &HybridOp, threads: usize, values: bool) -> Self {
        let (groups, _) = op.groups();
        Quantized {
            // RUN slack: the GEMM may read a last partial k chunk in place.
            xq: vec![0; if values { op.input_len() + RUN } else { 0 }],
            params: vec![InputQuant::new(false, 0.0, 0.0); groups],
            zp: vec![0; groups],
            ranges: vec![(0.0, 0.0); threads.max(1)],
        }
    }

    /// Tasks for a group of `len` values.
    fn tasks(&self, len: usize) -> usize {
        if len < SPLIT_VALUES {
            1
        } else {
            self.ranges.len()
        }
    }

    /// Every group's parameters and quantized values, one group after another (FC rows,
    /// batches), or for one large group cut across the pool.
    fn run(
        &mut self,
        pool: &Option<Arc<ThreadPool>>,
        path: KernelPath,
        op: &HybridOp,
        asymmetric: bool,
        input: &[f32],
    ) {
        let (groups, len) = op.groups();
        if groups == 1 && self.tasks(len) > 1 {
            self.range(pool, path, asymmetric, &input[..len]);
            let tasks = self.tasks(len);
            let bounds = |t: usize| t * len / tasks..(t + 1) * len / tasks;
            let q = self.params[0];
            let task = |t: usize, out: &mut [i8], _w: usize| {
                kernels::hybrid::quantize_with(path, &q, &input[bounds(t)], out)
            };
            run_tasks(pool, &mut self.xq[..len], tasks, &bounds, &task);
            return;
        }
        for g in 0..groups {
            let x = &input[g * len..(g + 1) * len];
            let q = &mut self.xq[g * len..(g + 1) * len];
            self.params[g] = kernels::hybrid::quantize(path, asymmetric, x, q);
            self.zp[g] = self.params[g].zp;
        }
    }

    /// The parameters of one group (`input`), its range found in pieces across the pool;
    /// the values are left for the caller to quantize.
    fn range(
        &mut self,
        pool: &Option<Arc<ThreadPool>>,
        path: KernelPath,
        asymmetric: bool,
        input: &[f32],
    ) {
        let len = input.len();
        let tasks = self.tasks(len);
        let task = |t: usize, out: &mut [(f32, f32)], _w: usize| {
            out[0] = kernels::hybrid::min_max(path, &input[t * len / tasks..(t + 1) * len / tasks]);
        };
        run_tasks(pool, &mut self.ranges[..tasks], tasks, &|t| t..t + 1, &task);
        let (lo, hi) = self.ranges[..tasks]
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |r, &p| {
                hy::combine(r, p)
            });
        self.params[0] = InputQuant::new(asymmetric, lo, hi);
        self.zp[0] = self.params[0].zp;
    }
}

/// Prepare a hybrid operator (input 0 float32, input 1 int8): checks the types and the
/// quantization, and picks the fast kernel where it applies.
pub(super) fn build(
    ctx: &BuildCtx<'_>,
    node: &Node,
    op: HybridOp,
    clamp: (f32, f32),
) -> OpResult<Box<dyn Kernel>> {
    let filter = ctx.input(node, 1)?;
    let output = ctx.output(node, 0)?;
    if output.dtype != DType::F32 {
        op_bail!(
            "output '{}' is {}, expected float32 (dynamic-range operator)",
            output.name,
            output.dtype.name()
        );
    }
    let axis = match op {
        HybridOp::Depthwise(..) => 3,
        _ => 0,
    };
    let s = scheme(&op, filter, axis)?;
    let n = op.channels();
    let has_bias = bias_info(ctx, node, DType::F32, n)?.is_some();
    let consts = const_weights(ctx, node, has_bias, |t| t.i8(), |t| t.f32())?;
    let Some((w, bias)) = consts else {
        return Ok(Box::new(HybridRef {
            q: Quantized::new(&op, 1, true),
            acc: vec![0; op.output_len()],
            op,
            s,
            has_bias,
            clamp,
        }));
    };
    let f = FloatSide {
        s,
        bias: bias.map_or_else(|| vec![0.0; n], <[f32]>::to_vec),
        clamp,
    };
    match op {
        HybridOp::Conv(g) if g.batch == 1 => {
            let (src, m, k) = gemm_shape(&g);
            Ok(Box::new(HybridGemm::new(
                op,
                src,
                (m, k, n),
                w,
                f,
                ctx.kernels,
                ctx.pool.clone(),
            )))
        }
        HybridOp::Fc { rows, depth, .. } => Ok(Box::new(HybridGemm::new(
            op,
            ASource::Direct,
            (rows, depth, n),
            w,
            f,
            ctx.kernels,
            ctx.pool.clone(),
        ))),
        HybridOp::Depthwise(g, 1) if g.batch == 1 => Ok(Box::new(HybridDepthwise::new(
            g,
            w,
            f,
            ctx.kernels,
            ctx.pool.clone(),
        ))),
        _ => Ok(Box::new(HybridRef {
            q: Quantized::new(&op, 1, true),
            acc: vec![0; op.output_len()],
            op,
            s: f.s,
            has_bias,
            clamp: f.clamp,
        })),
    }
}

/// The reference loops, weights read at run time.
struct HybridRef {
    op: HybridOp,
    s: Scheme,
    has_bias: bool,
    clamp: (f32, f32),
    q: Quantized,
    acc: Vec<i32>,
}

impl Kernel for HybridRef {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let op = self.op;
        let n = op.channels();
        let input = in_slice(io, 0, op.input_len(), |t| t.f32())?;
        self.q
            .run(&None, KernelPath::Scalar, &op, self.s.asymmetric, input);
        let q = &self.q;
        let bias = if self.has_bias {
            in_slice(io, 2, n, |t| t.f32())?.to_vec()
        } else {
            vec![0.0; n]
        };
        let rows_per_group = match op {
            HybridOp::Conv(g) => {
                let w = in_slice(io, 1, n * g.filter_h * g.filter_w * g.in_c, |t| t.i8())?;
                hy::conv_acc(&g, &q.xq, &q.zp, w, &mut self.acc);
                g.out_h * g.out_w
            }
            HybridOp::Depthwise(g, mult) => {
                let w = in_slice(io, 1, g.filter_h * g.filter_w * n, |t| t.i8())?;
                hy::depthwise_acc(&g, mult, &q.xq, &q.zp, w, &mut self.acc);
                g.out_h * g.out_w
            }
            HybridOp::Fc {
                rows, depth, units, ..
            } => {
                let w = in_slice(io, 1, units * depth, |t| t.i8())?;
                hy::fc_acc(rows, depth, units, &q.xq, &q.zp, w, &mut self.acc);
                1
            }
        };
        let out = out_slice(io, op.output_len(), |t| t.f32())?;
        for (r, (a, o)) in self
            .acc
            .chunks_exact(n)
            .zip(out.chunks_exact_mut(n))
            .enumerate()
        {
            let g = r / rows_per_group;
            self.s
                .epilogue
                .row(a, &self.s.scales, q.params[g].scale, &bias, self.clamp, o);
        }
        Ok(())
    }
}

struct Scratch {
    cols: Vec<i8>,
    acc: Vec<i32>,
}

/// Hybrid convolution (one image) or fully connected on the int8 GEMM.
struct HybridGemm {
    op: HybridOp,
    src: ASource,
    m: usize,
    k: usize,
    n: usize,
    packed: PackedI8,
    /// Σ_k w[j][k] per output channel.
    rowsum: Vec<i32>,
    f: FloatSide,
    q: Quantized,
    /// GEMM rows of one quantization group (all of them for one image; 1 for FC).
    rows_per_group: usize,
    /// The input is quantized inside the GEMM tasks (1×1 convolution).
    fused: bool,
    path: KernelPath,
    pool: Option<Arc<ThreadPool>>,
    rows: RowTasks,
    scratch: PerWorker<Scratch>,
}

impl HybridGemm {
    fn new(
        op: HybridOp,
        src: ASource,
        (m, k, n): (usize, usize, usize),
        w: &[i8],
        f: FloatSide,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let packed = kernels::pack_i8(path, w, n, k);
        let rowsum = (0..n)
            .map(|j| {
                w[j * k..(j + 1) * k]
                    .iter()
                    .fold(0i32, |s, &v| s.wrapping_add(v as i32))
            })
            .collect();
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let im2col = matches!(src, ASource::Im2col(_));
        let rows = task_rows(
            m,
            threads,
            kernels::gemm_i8_tile_rows(path),
            Split::int8(n, k, im2col),
        );
        let task_rows = rows.max;
        let rows_per_group = match op {
            HybridOp::Fc { .. } => 1,
            _ => m,
        };
        // A 1×1 convolution (one group, its GEMM rows the input's rows) quantizes each
        // task's rows into the task's scratch right before their GEMM, once the range is
        // known: no separate pass over the input.
        let fused = !im2col && rows_per_group == m;
        let block = task_rows.min(ACC_ROWS);
        let scratch = PerWorker::new(threads, || Scratch {
            cols: vec![0; if im2col || fused { block * k + RUN } else { 0 }],
            acc: vec![0; block * n],
        });
        HybridGemm {
            q: Quantized::new(&op, threads, !fused),
            op,
            src,
            m,
            k,
            n,
            packed,
            rowsum,
            f,
            rows_per_group,
            fused,
            path,
            pool,
            rows,
            scratch,
        }
    }
}

impl Kernel for HybridGemm {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let input = in_slice(io, 0, self.op.input_len(), |t| t.f32())?;
        if self.fused {
            self.q
                .range(&self.pool, self.path, self.f.s.asymmetric, input);
        } else {
            self.q
                .run(&self.pool, self.path, &self.op, self.f.s.asymmetric, input);
        }
        let out = out_slice(io, self.m * self.n, |t| t.f32())?;
        let this = &*self;
        let (k, n) = (this.k, this.n);
        let q = &this.q;
        let task = |t: usize, chunk: &mut [f32], w: usize| {
            let rows = this.rows.rows(t);
            let mut s = this.scratch.get(w);
            let Scratch { cols, acc } = &mut *s;
            let mut r = rows.start;
            while r < rows.end {
                let rr = (rows.end - r).min(ACC_ROWS);
                let a: &[i8] = match this.src {
                    ASource::Direct if this.fused => {
                        kernels::hybrid::quantize_with(
                            this.path,
                            &q.params[0],
                            &input[r * k..(r + rr) * k],
                            &mut cols[..rr * k],
                        );
                        &cols[..rr * k]
                    }
                    ASource::Direct => &q.xq[r * k..(r + rr) * k],
                    ASource::Im2col(g) => {
                        // One image: one zero point pads every tap.
                        im2col(
                            &g,
                            &q.xq,
                            r..r + rr,
                            q.zp[0] as i8,
                            &mut cols[..rr * k + RUN],
                        );
                        &cols[..rr * k]
                    }
                };
                kernels::gemm_i8(
                    &this.packed,
                    kernels::Mat::dense(a, rr, k),
                    kernels::MatMut::dense(&mut acc[..rr * n], rr, n),
                );
                // Runs of rows in one quantization group (all of them for a convolution).
                let mut i = 0;
                while i < rr {
                    let g = (r + i) / this.rows_per_group;
                    let run = ((g + 1) * this.rows_per_group - (r + i)).min(rr - i);
                    let a = &mut acc[i * n..(i + run) * n];
                    let zp = q.zp[g];
                    if zp != 0 {
                        for row in a.chunks_exact_mut(n) {
                            for (v, &rs) in row.iter_mut().zip(&this.rowsum) {
                                *v = v.wrapping_sub(zp.wrapping_mul(rs));
                            }
                        }
                    }
                    let at = (r + i - rows.start) * n;
                    let ep = this.f.epilogue_args(q.params[g].scale);
                    kernels::hybrid::epilogue_rows(
                        this.path,
                        a,
                        n,
                        &ep,
                        &mut chunk[at..at + run * n],
                    );
                    i += run;
                }
                r += rr;
            }
        };
        run_tasks(
            &this.pool,
            out,
            this.rows.tasks,
            &|t| this.rows.scaled(t, n),
            &task,
        );
        Ok(())
    }
}

/// Hybrid depthwise convolution, one image, multiplier 1, threaded by output rows.
struct HybridDepthwise {
    g: ConvGeom,
    /// The filter, `[fh][fw][c]`, as i8 and as i32.
    w8: Vec<i8>,
    w: Vec<i32>,
    f: FloatSide,
    q: Quantized,
    path: KernelPath,
    pool: Option<Arc<ThreadPool>>,
    tasks: usize,
    acc: PerWorker<Vec<i32>>,
}

impl HybridDepthwise {
    fn new(
        g: ConvGeom,
        w: &[i8],
        f: FloatSide,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let row = g.out_w * g.out_c;
        HybridDepthwise {
            w8: w.to_vec(),
            w: w.iter().map(|&v| v as i32).collect(),
            f,
            q: Quantized::new(&HybridOp::Depthwise(g, 1), threads, true),
            tasks: depthwise_tasks(&g, threads),
            acc: PerWorker::new(threads, || vec![0; row]),
            path,
            pool,
            g,
        }
    }
}

impl Kernel for HybridDepthwise {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.f32())?;
        self.q.run(
            &self.pool,
            self.path,
            &HybridOp::Depthwise(g, 1),
            self.f.s.asymmetric,
            input,
        );
        let out = out_slice(io, g.output_len(), |t| t.f32())?;
        let this = &*self;
        let q = &this.q;
        let task = |t: usize, chunk: &mut [f32], w: usize| {
            let (sub, ir, _) = depthwise_sub(&g, this.tasks, t);
            let mut acc = this.acc.get(w);
            let op = kernels::hybrid::DepthwiseRowOperands {
                g: &sub,
                xq: &q.xq[ir],
                w8: &this.w8,
                w: &this.w,
                in_off: -q.zp[0],
                ep: this.f.epilogue_args(q.params[0].scale),
            };
            kernels::hybrid::depthwise(this.path, &op, &mut acc, chunk);
        };
        let bounds = |t: usize| depthwise_sub(&g, this.tasks, t).2;
        run_tasks(&this.pool, out, this.tasks, &bounds, &task);
        Ok(())
    }
}
