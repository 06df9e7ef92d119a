//! The GEMM lowering of CONV_2D and FULLY_CONNECTED on the dispatch point of
//! [`crate::engine::kernels`], threaded over the interpreter's own pool (see
//! [`super::tasks`]).
//!
//! Used when the filter is a constant tensor (packed once at build time) and, for
//! int8, the filter zero point is 0 (TFLite's int8 spec): then
//! `sum w * (x + in_off) = sum w * x + in_off * sum w`, so `in_off * rowsum(W)` is
//! folded into the bias and the GEMM runs on raw int8 activations; im2col pads
//! padded taps with the input zero point, whose contribution cancels exactly.
//! Integer sums are exact in any order, so the results are bit-identical to the
//! scalar reference kernels. Run-time filters keep the scalar kernels of `conv/mod.rs` /
//! `conv/depthwise.rs` / `conv/fully_connected.rs`.
//!
//! uint8 (legacy asymmetric, with a filter zero point) runs on the same int8 GEMM: with
//! `X = x − 128`, `W = w − 128` (int8), `ZX = zx − 128`, `ZW = zw − 128`,
//! `Σ (x − zx)(w − zw) = Σ X·W − ZW·Σ X − ZX·Σ W + K·ZX·ZW`: the GEMM gives `Σ X·W`, the
//! per-channel constants are folded into the bias, and `ZW·Σ X` is a per-row correction
//! from the row sums of the (im2col) input. Requantizing in the int8 domain with the output
//! zero point and clamp shifted by −128 gives the uint8 result minus 128. Exact integer
//! arithmetic again, so bit-identical to TFLite's uint8 reference kernels.

use std::sync::Arc;

use super::im2col::{im2col, RUN};
use super::params::QParams;
use super::tasks::{run_pool, run_tasks, shift_u8_to_i8, task_rows, RowTasks, Split};
use crate::engine::error::OpResult;
use crate::engine::kernels::scalar::conv::ConvGeom;
use crate::engine::kernels::{self, KernelPath, PackedF32, PackedI8};
use crate::engine::ops::common::{in_slice, out_slice};
use crate::engine::ops::{Kernel, OpIo};
use crate::engine::pool::{split_range, PerWorker, ThreadPool};
use crate::op_bail;

/// Rows per int8 GEMM + requantization step within a task.
pub(super) const ACC_ROWS: usize = 32;

/// Where a GEMM's left-hand matrix comes from.
#[derive(Clone, Copy, Debug)]
pub(super) enum ASource {
    /// The input itself: `m` rows of `k` values (1x1 stride-1 convolutions, FC).
    Direct,
    /// im2col rows of a convolution with this geometry.
    Im2col(ConvGeom),
}

/// The GEMM of a convolution: the left-hand source, rows `m` and depth `k`.
/// 1x1 stride-1 unpadded convolutions read the input directly.
pub(super) fn gemm_shape(g: &ConvGeom) -> (ASource, usize, usize) {
    let m = g.batch * g.out_h * g.out_w;
    let k = g.filter_h * g.filter_w * g.in_c;
    let direct = g.filter_h == 1
        && g.filter_w == 1
        && g.stride_h == 1
        && g.stride_w == 1
        && g.pad_top == 0
        && g.pad_left == 0
        && g.out_h == g.in_h
        && g.out_w == g.in_w;
    let src = if direct {
        ASource::Direct
    } else {
        ASource::Im2col(*g)
    };
    (src, m, k)
}

struct ScratchI8 {
    cols: Vec<i8>,
    acc: Vec<i32>,
}

/// int8 GEMM-based convolution / fully connected.
pub(super) struct GemmI8 {
    src: ASource,
    m: usize,
    k: usize,
    n: usize,
    input_len: usize,
    packed: PackedI8,
    /// bias + in_off * rowsum(W), per output channel.
    bias: Vec<i32>,
    q: QParams,
    in_zp: i8,
    pool: Option<Arc<ThreadPool>>,
    rows: RowTasks,
    scratch: PerWorker<ScratchI8>,
}

/// What an int8 or uint8 GEMM operator ([`GemmI8`], [`GemmU8`]) is built from.
pub(super) struct QGemmParams<'a, W> {
    /// Where the left-hand `m x k` matrix comes from.
    pub src: ASource,
    pub m: usize,
    pub k: usize,
    /// Output channels.
    pub n: usize,
    /// Values of the input tensor.
    pub input_len: usize,
    /// The constant `n x k` weight matrix (OHWI for a convolution).
    pub w: &'a [W],
    /// The optional constant int32 bias.
    pub bias: Option<&'a [i32]>,
    pub q: QParams,
    pub path: KernelPath,
    pub pool: Option<Arc<ThreadPool>>,
}

/// What [`GemmI8`] and [`GemmU8`] make alike from their int8 weights: the packed weights, the
/// folded bias, and the cut into tasks.
struct QGemmPlan {
    packed: PackedI8,
    bias: Vec<i32>,
    threads: usize,
    im2col: bool,
    rows: RowTasks,
}

impl<W> QGemmParams<'_, W> {
    /// The plan for the int8 weights `wi` (`n x k`): column `j`'s bias is `fold(bias[j],
    /// sum_k wi[j][k])` (the sum wrapping; `bias[j]` 0 without a bias).
    fn plan(&self, wi: &[i8], fold: impl Fn(i32, i32) -> i32) -> QGemmPlan {
        let (m, k, n) = (self.m, self.k, self.n);
        let packed = kernels::pack_i8(self.path, wi, n, k);
        let bias = (0..n)
            .map(|j| {
                let sum = wi[j * k..(j + 1) * k]
                    .iter()
                    .fold(0i32, |s, &v| s.wrapping_add(v as i32));
                fold(self.bias.map_or(0, |b| b[j]), sum)
            })
            .collect();
        let threads = self.pool.as_ref().map_or(1, |p| p.threads());
        let im2col = matches!(self.src, ASource::Im2col(_));
        let rows = task_rows(
            m,
            threads,
            kernels::gemm_i8_tile_rows(self.path),
            Split::int8(n, k, im2col),
        );
        QGemmPlan {
            packed,
            bias,
            threads,
            im2col,
            rows,
        }
    }
}

impl GemmI8 {
    /// `p.w` is the constant `n x k` weight matrix (OHWI for a convolution), `p.bias` the
    /// optional constant int32 bias; `p.q.filter_offset` must be 0.
    pub(super) fn new(p: QGemmParams<'_, i8>) -> OpResult<Self> {
        if p.q.filter_offset != 0 {
            op_bail!("fast int8 GEMM needs a zero filter offset");
        }
        let in_zp = i8::try_from(-p.q.input_offset).map_err(|_| "input zero point out of range")?;
        let in_off = p.q.input_offset;
        let plan = p.plan(p.w, |b, sum| b.wrapping_add(in_off.wrapping_mul(sum)));
        let (k, n, task_rows, im2col) = (p.k, p.n, plan.rows.max, plan.im2col);
        // No int32 scratch where the register tile requantizes every row.
        let acc_len = if kernels::gemm_requant_in_tile(&plan.packed) {
            0
        } else {
            task_rows.min(ACC_ROWS) * n
        };
        let scratch = PerWorker::new(plan.threads, || ScratchI8 {
            // RUN slack: im2col's fixed-length copies, and the GEMM's last partial k
            // chunk read in place (see `kernels::gemm_i8`).
            cols: vec![0; if im2col { task_rows * k + RUN } else { 0 }],
            acc: vec![0; acc_len],
        });
        Ok(GemmI8 {
            src: p.src,
            m: p.m,
            k,
            n,
            input_len: p.input_len,
            packed: plan.packed,
            bias: plan.bias,
            q: p.q,
            in_zp,
            pool: p.pool,
            rows: plan.rows,
            scratch,
        })
    }
}

impl Kernel for GemmI8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let input = in_slice(io, 0, self.input_len, |t| t.i8())?;
        let out = out_slice(io, self.m * self.n, |t| t.i8())?;
        let this = &*self;
        let (k, n) = (this.k, this.n);
        let task = |t: usize, chunk: &mut [i8], w: usize| {
            let rows = this.rows.rows(t);
            let mr = rows.len();
            let mut s = this.scratch.get(w);
            let ScratchI8 { cols, acc } = &mut *s;
            let a: &[i8] = match this.src {
                // To the end of the input: the GEMM may read a last partial k chunk in
                // place (bytes past a row's k meet zero weights).
                ASource::Direct => &input[rows.start * k..],
                ASource::Im2col(g) => {
                    im2col(
                        &g,
                        input,
                        rows.clone(),
                        this.in_zp,
                        &mut cols[..mr * k + RUN],
                    );
                    &cols[..mr * k + RUN]
                }
            };
            // GEMM + requantization in blocks of ACC_ROWS rows, so the int32
            // accumulators (where the path has no fused kernel) are still in cache
            // when they are requantized; all rows at once when they never leave the
            // register tile.
            let q = &this.q;
            let rq = kernels::RequantCols {
                bias: &this.bias,
                multipliers: &q.multipliers,
                shifts: &q.shifts,
                output_offset: q.output_offset,
                act_min: q.act_min,
                act_max: q.act_max,
            };
            let step = if acc.is_empty() { mr } else { ACC_ROWS };
            let mut r = 0;
            while r < mr {
                let rr = (mr - r).min(step);
                kernels::gemm_requant_i8(
                    &this.packed,
                    kernels::Mat::new(&a[r * k..], rr, k, k),
                    &rq,
                    acc,
                    kernels::MatMut::new(&mut chunk[r * n..], rr, n, n),
                );
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

struct ScratchU8 {
    cols: Vec<i8>,
    acc: Vec<i32>,
}

/// uint8 GEMM-based convolution / fully connected on the int8 kernels (see the module
/// documentation for the arithmetic).
pub(super) struct GemmU8 {
    src: ASource,
    m: usize,
    k: usize,
    n: usize,
    packed: PackedI8,
    /// bias − ZX·ΣW + K·ZX·ZW, per output channel.
    bias: Vec<i32>,
    /// ZW = zw − 128.
    zw: i32,
    /// The requantization in the int8 domain (output offset and clamp shifted by −128).
    q: QParams,
    /// ZX = zx − 128: the im2col padding.
    in_zp: i8,
    /// The input shifted to int8, made once per run.
    input: Vec<i8>,
    path: KernelPath,
    pool: Option<Arc<ThreadPool>>,
    rows: RowTasks,
    scratch: PerWorker<ScratchU8>,
}

/// A uint8 value as the int8 value 128 below it (the same bits with the top one flipped).
#[inline(always)]
fn shift_u8(v: u8) -> i8 {
    (v ^ 0x80) as i8
}

impl GemmU8 {
    /// `p.w` is the constant `n x k` uint8 weight matrix, `p.q` the uint8 operator's
    /// parameters (`q.filter_offset` = −zw, one multiplier for every channel).
    pub(super) fn new(p: QGemmParams<'_, u8>) -> OpResult<Self> {
        let zx = -p.q.input_offset - 128;
        let zw = -p.q.filter_offset - 128;
        let in_zp = i8::try_from(zx).map_err(|_| "input zero point out of range")?;
        i8::try_from(zw).map_err(|_| "filter zero point out of range")?;
        let wi: Vec<i8> = p.w.iter().map(|&v| shift_u8(v)).collect();
        let kzz = (p.k as i32).wrapping_mul(zx).wrapping_mul(zw);
        let plan = p.plan(&wi, |b, sum| {
            b.wrapping_sub(zx.wrapping_mul(sum)).wrapping_add(kzz)
        });
        let q = QParams {
            output_offset: p.q.output_offset - 128,
            act_min: p.q.act_min - 128,
            act_max: p.q.act_max - 128,
            ..p.q
        };
        let (k, n, task_rows, im2col) = (p.k, p.n, plan.rows.max, plan.im2col);
        let scratch = PerWorker::new(plan.threads, || ScratchU8 {
            cols: vec![
                0;
                if im2col {
                    task_rows.min(ACC_ROWS) * k + RUN
                } else {
                    0
                }
            ],
            acc: vec![0; task_rows.min(ACC_ROWS) * n],
        });
        Ok(GemmU8 {
            src: p.src,
            m: p.m,
            k,
            n,
            packed: plan.packed,
            bias: plan.bias,
            zw,
            q,
            in_zp,
            input: vec![0; p.input_len],
            path: p.path,
            pool: p.pool,
            rows: plan.rows,
            scratch,
        })
    }
}

impl Kernel for GemmU8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let input = in_slice(io, 0, self.input.len(), |t| t.u8())?;
        shift_u8_to_i8(&self.pool, input, &mut self.input);
        let out = out_slice(io, self.m * self.n, |t| t.u8())?;
        let this = &*self;
        let (k, n) = (this.k, this.n);
        let q = &this.q;
        let rq = kernels::RequantCols {
            bias: &this.bias,
            multipliers: &q.multipliers,
            shifts: &q.shifts,
            output_offset: q.output_offset,
            act_min: q.act_min,
            act_max: q.act_max,
        };
        let task = |t: usize, chunk: &mut [u8], w: usize| {
            let rows = this.rows.rows(t);
            let mut s = this.scratch.get(w);
            let ScratchU8 { cols, acc } = &mut *s;
            let mut r = rows.start;
            while r < rows.end {
                let rr = (rows.end - r).min(ACC_ROWS);
                let a: &[i8] = match this.src {
                    ASource::Direct => &this.input[r * k..(r + rr) * k],
                    ASource::Im2col(g) => {
                        im2col(
                            &g,
                            &this.input,
                            r..r + rr,
                            this.in_zp,
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
                for (row, acc) in a.chunks_exact(k).zip(acc.chunks_exact_mut(n)) {
                    let sum = row.iter().fold(0i32, |s, &v| s.wrapping_add(v as i32));
                    let fix = this.zw.wrapping_mul(sum);
                    for v in acc.iter_mut() {
                        *v = v.wrapping_sub(fix);
                    }
                }
                let o = &mut chunk[(r - rows.start) * n..(r - rows.start + rr) * n];
                kernels::requant_i8(
                    this.path,
                    kernels::Mat::dense(&acc[..rr * n], rr, n),
                    &rq,
                    kernels::MatMut::dense(bytemuck::cast_slice_mut(o), rr, n),
                );
                for v in o.iter_mut() {
                    *v ^= 0x80;
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

/// What a [`GemmF32`] is made of: the left-hand side (`m x k`, from an input of
/// `input_len` values), the constant `n x k` weights `w` (OHWI for a convolution), the
/// optional constant bias and the activation bounds.
pub(super) struct GemmF32Spec<'a> {
    pub src: ASource,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub input_len: usize,
    pub w: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub clamp: (f32, f32),
}

/// float32 GEMM-based convolution / fully connected.
pub(super) struct GemmF32 {
    src: ASource,
    m: usize,
    k: usize,
    n: usize,
    input_len: usize,
    packed: PackedF32,
    bias: Option<Vec<f32>>,
    clamp: (f32, f32),
    pool: Option<Arc<ThreadPool>>,
    rows: RowTasks,
    scratch: PerWorker<Vec<f32>>,
    /// Few rows and many columns on several threads: the tasks take column ranges.
    by_cols: Option<ColSplitF32>,
}

/// A float GEMM cut by columns: one task per thread, each with its own packed weights
/// (a range of whole 32-column groups), so every weight is read by one thread only. The
/// weights are then the larger operand (the late 1×1 and 3×3 layers of a detector, on maps
/// of at most 64 pixels), which a cut by rows would have every task stream in full.
struct ColSplitF32 {
    /// First column of each part, and `n` at the end.
    cols: Vec<usize>,
    packed: Vec<PackedF32>,
    /// The left-hand matrix (im2col rows), made once per call before the parts run.
    a: Vec<f32>,
    /// Each part's `m x cols` result, copied into the output after the parts ran.
    out: PerWorker<Vec<f32>>,
}

/// Columns of a [`ColSplitF32`] part are multiples of this (whole register-tile widths).
const COL_ALIGN: usize = 32;
/// Rows of a GEMM cut by columns at most (see [`ColSplitF32::new`]).
const COL_SPLIT_MAX_M: usize = 64;

impl ColSplitF32 {
    /// The cut of an `m x n` GEMM with weights `w` (`n x k`) over `threads`, or `None`
    /// where rows are the better cut: one thread, more than [`COL_SPLIT_MAX_M`] rows (a
    /// 10×10 map already runs faster cut by rows: its weights stay in cache and the cut by
    /// columns copies its results once more), fewer than `4 * m` columns, or too few
    /// columns for a part per thread.
    fn new(
        m: usize,
        k: usize,
        n: usize,
        w: &[f32],
        path: KernelPath,
        threads: usize,
        im2col: bool,
    ) -> Option<Self> {
        if threads <= 1 || m > COL_SPLIT_MAX_M || n < 4 * m || n < COL_ALIGN * threads {
            return None;
        }
        let groups = n.div_ceil(COL_ALIGN);
        let mut cols: Vec<usize> = (0..threads)
            .map(|t| split_range(groups, threads, t).start * COL_ALIGN)
            .collect();
        cols.push(n);
        let packed = cols
            .windows(2)
            .map(|c| kernels::pack_f32(path, &w[c[0] * k..c[1] * k], c[1] - c[0], k))
            .collect();
        let widest = cols.windows(2).map(|c| c[1] - c[0]).max().unwrap_or(0);
        Some(ColSplitF32 {
            cols,
            packed,
            a: vec![0.0; if im2col { m * k + RUN } else { 0 }],
            out: PerWorker::new(threads, || vec![0.0; m * widest]),
        })
    }
}

impl GemmF32 {
    pub(super) fn new(
        spec: GemmF32Spec<'_>,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let GemmF32Spec {
            src,
            m,
            k,
            n,
            input_len,
            w,
            bias,
            clamp,
        } = spec;
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let im2col = matches!(src, ASource::Im2col(_));
        let by_cols = ColSplitF32::new(m, k, n, w, path, threads, im2col);
        // The row cut's weights and scratch only where it runs.
        let rows_cut = by_cols.is_none();
        let packed = kernels::pack_f32(path, w, if rows_cut { n } else { 0 }, k);
        let rows = task_rows(
            m,
            threads,
            kernels::gemm_f32_tile_rows(path),
            Split::f32(threads),
        );
        let task_rows = rows.max;
        GemmF32 {
            src,
            m,
            k,
            n,
            input_len,
            packed,
            bias: bias.map(<[f32]>::to_vec),
            clamp,
            pool,
            rows,
            scratch: PerWorker::new(threads, || {
                vec![
                    0.0;
                    if im2col && rows_cut {
                        task_rows * k + RUN
                    } else {
                        0
                    }
                ]
            }),
            by_cols,
        }
    }

    /// [`Kernel::eval`] cut by columns (see [`ColSplitF32`]).
    fn eval_by_cols(&mut self, input: &[f32], out: &mut [f32]) {
        let (m, k, n) = (self.m, self.k, self.n);
        let Some(cs) = self.by_cols.as_mut() else {
            return;
        };
        let a: &[f32] = match self.src {
            ASource::Direct => &input[..m * k],
            ASource::Im2col(g) => {
                im2col(&g, input, 0..m, 0.0, &mut cs.a[..m * k + RUN]);
                &cs.a[..m * k]
            }
        };
        let cs = &*cs;
        let (bias, clamp) = (self.bias.as_deref(), self.clamp);
        let part = |t: usize, _worker: usize| {
            let (c0, c1) = (cs.cols[t], cs.cols[t + 1]);
            let mut o = cs.out.get(t);
            let b = bias.map(|b| &b[c0..c1]);
            kernels::gemm_f32(
                &cs.packed[t],
                kernels::Mat::dense(a, m, k),
                b,
                clamp.into(),
                kernels::MatMut::dense(&mut o[..m * (c1 - c0)], m, c1 - c0),
            );
        };
        match run_pool(&self.pool) {
            Some(pool) => pool.run(cs.packed.len(), &part),
            None => (0..cs.packed.len()).for_each(|t| part(t, 0)),
        }
        for (t, c) in cs.cols.windows(2).enumerate() {
            let w = c[1] - c[0];
            let o = cs.out.get(t);
            for (row, src) in out.chunks_exact_mut(n).zip(o.chunks_exact(w)).take(m) {
                row[c[0]..c[1]].copy_from_slice(src);
            }
        }
    }
}

impl Kernel for GemmF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let input = in_slice(io, 0, self.input_len, |t| t.f32())?;
        let out = out_slice(io, self.m * self.n, |t| t.f32())?;
        if self.by_cols.is_some() {
            self.eval_by_cols(input, out);
            return Ok(());
        }
        let this = &*self;
        let (k, n) = (this.k, this.n);
        let task = |t: usize, chunk: &mut [f32], w: usize| {
            let rows = this.rows.rows(t);
            let mr = rows.len();
            let mut cols = this.scratch.get(w);
            let a: &[f32] = match this.src {
                ASource::Direct => &input[rows.start * k..rows.end * k],
                ASource::Im2col(g) => {
                    im2col(&g, input, rows.clone(), 0.0, &mut cols[..mr * k + RUN]);
                    &cols[..mr * k]
                }
            };
            kernels::gemm_f32(
                &this.packed,
                kernels::Mat::dense(a, mr, k),
                this.bias.as_deref(),
                this.clamp.into(),
                kernels::MatMut::dense(chunk, mr, n),
            );
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
