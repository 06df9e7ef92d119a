//! Fast CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernels on the dispatch point
//! of [`crate::engine::kernels`], threaded over the interpreter's own pool.
//!
//! Used when the filter is a constant tensor (packed once at build time) and, for
//! int8, the filter zero point is 0 (TFLite's int8 spec): then
//! `sum w * (x + in_off) = sum w * x + in_off * sum w`, so `in_off * rowsum(W)` is
//! folded into the bias and the GEMM runs on raw int8 activations; im2col pads
//! padded taps with the input zero point, whose contribution cancels exactly.
//! Integer sums are exact in any order, so the results are bit-identical to the
//! scalar reference kernels. Run-time filters keep the scalar kernels of `conv.rs` /
//! `depthwise.rs` / `fully_connected.rs`.
//!
//! uint8 (legacy asymmetric, with a filter zero point) runs on the same int8 GEMM: with
//! `X = x − 128`, `W = w − 128` (int8), `ZX = zx − 128`, `ZW = zw − 128`,
//! `Σ (x − zx)(w − zw) = Σ X·W − ZW·Σ X − ZX·Σ W + K·ZX·ZW`: the GEMM gives `Σ X·W`, the
//! per-channel constants are folded into the bias, and `ZW·Σ X` is a per-row correction
//! from the row sums of the (im2col) input. Requantizing in the int8 domain with the output
//! zero point and clamp shifted by −128 gives the uint8 result minus 128. Exact integer
//! arithmetic again, so bit-identical to TFLite's uint8 reference kernels.
//!
//! Threading: the output rows (pixels for a GEMM, image rows for depthwise) are cut
//! into tasks; each task writes its own disjoint rows and uses its worker's
//! preallocated scratch (im2col rows, int32 accumulators). No allocation per run.

use std::ops::Range;
use std::sync::Arc;

use super::conv::{in_slice, out_slice, QParams};
use super::{Kernel, OpIo};
use crate::engine::error::OpResult;
use crate::engine::kernels::scalar::conv::ConvGeom;
use crate::engine::kernels::{self, KernelPath, PackedF32, PackedI8};
use crate::engine::pool::{split_range, PerWorker, ThreadPool};

/// Rows (output pixels) per GEMM task at most (int8; float on one thread): long enough that
/// the per-task costs (claiming a task, the GEMM's argument checks and per-block constants)
/// stay small next to the work.
const MAX_TASK_ROWS: usize = 512;
/// An im2col task's buffer holds at most this many elements (or [`MIN_IM2COL_ROWS`] rows),
/// so that it is still in cache when the GEMM reads it.
const IM2COL_TASK_ELEMS: usize = 1 << 16;
const MIN_IM2COL_ROWS: usize = 64;
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

/// How a GEMM is cut into tasks on several threads (see [`task_rows`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Split {
    /// Rows per task at most.
    max_rows: usize,
    /// Tasks a thread, claimed as they come, for the load balance.
    per_thread: usize,
    /// One task a thread instead: every task streams all the (large) weights.
    heavy: bool,
}

impl Split {
    /// int8: up to [`MAX_TASK_ROWS`] rows (an im2col task's buffer at most
    /// [`IM2COL_TASK_ELEMS`] values), [`WANT_TASKS`] tasks a thread, one a thread where the
    /// packed weights (`n * k` bytes) are [`HEAVY_WEIGHTS`] or more.
    pub(super) fn int8(n: usize, k: usize, im2col: bool) -> Split {
        let max_rows = if im2col {
            (IM2COL_TASK_ELEMS / k.max(1)).clamp(MIN_IM2COL_ROWS, MAX_TASK_ROWS)
        } else {
            MAX_TASK_ROWS
        };
        Split {
            max_rows,
            per_thread: WANT_TASKS,
            heavy: n * k >= HEAVY_WEIGHTS,
        }
    }

    /// float: one thread takes tasks of up to [`MAX_TASK_ROWS`] rows, several threads tasks
    /// of up to [`F32_TASK_ROWS`], 4 a thread (the int8 split measured no better for fp32).
    fn f32(threads: usize) -> Split {
        Split {
            max_rows: if threads <= 1 {
                MAX_TASK_ROWS
            } else {
                F32_TASK_ROWS
            },
            per_thread: 4,
            heavy: false,
        }
    }
}

/// Task split of a GEMM of `m` rows over `threads`: (rows per task, tasks). Tasks take
/// whole register tiles of `tile` rows.
pub(super) fn task_rows(m: usize, threads: usize, tile: usize, split: Split) -> (usize, usize) {
    if m == 0 {
        return (1, 0);
    }
    let threads = threads.max(1);
    let want = match (threads, split.heavy) {
        (1, _) => 1,
        (t, true) => t,
        (t, false) => t * split.per_thread,
    };
    let max = (split.max_rows / tile * tile).max(tile);
    let mut per = m.div_ceil(want);
    if per > max {
        // Shorter tasks, as many as a multiple of the threads.
        let tasks = m.div_ceil(max).div_ceil(threads) * threads;
        per = m.div_ceil(tasks);
    }
    let rows = per.div_ceil(tile).clamp(1, max / tile) * tile;
    (rows, m.div_ceil(rows))
}

/// Tasks a thread of an int8 GEMM with small weights.
const WANT_TASKS: usize = 8;
/// Packed int8 weights of at least this many bytes make a GEMM split into one task a thread.
const HEAVY_WEIGHTS: usize = 32 << 10;
/// Rows per float GEMM task at most with several threads.
const F32_TASK_ROWS: usize = 64;

fn run_pool(pool: &Option<Arc<ThreadPool>>) -> Option<&ThreadPool> {
    pool.as_deref()
}

/// Run `task` over `tasks` disjoint chunks of `out` (`bounds(t)`) on the pool, or one after
/// another on this thread without one. `task` gets the task, its chunk and the worker index.
pub(super) fn run_tasks<T: Send>(
    pool: &Option<Arc<ThreadPool>>,
    out: &mut [T],
    tasks: usize,
    bounds: &(dyn Fn(usize) -> Range<usize> + Sync),
    task: &(dyn Fn(usize, &mut [T], usize) + Sync),
) {
    match run_pool(pool) {
        Some(pool) => pool.run_chunks(out, tasks, bounds, task),
        None => {
            for t in 0..tasks {
                task(t, &mut out[bounds(t)], 0);
            }
        }
    }
}

/// Elements a short run of im2col is copied with at once (see [`im2col`]).
pub(super) const RUN: usize = kernels::scalar::copy::RUN;
/// Filter heights up to which [`im2col`] copies the short rows of interior pixels from a
/// table of row starts.
const SHORT_ROWS: usize = 8;

/// Copy the im2col rows of output pixels `pixels` into `dst[..pixels.len() * k]`,
/// filling padded taps with `pad`. With dilation 1 along the width, the valid taps
/// of one filter row are one contiguous input run and are copied at once; a run of
/// at most [`RUN`] elements (small channel counts, e.g. the RGB input of the first
/// convolution) is copied as exactly `RUN` elements when both sides have room, so
/// the copy has a fixed length. The extra elements land after the run, on places
/// written later (rows are filled in order) or in `dst`'s slack past `pixels.len() * k`.
pub(super) fn im2col<T: Copy>(
    g: &ConvGeom,
    input: &[T],
    pixels: Range<usize>,
    pad: T,
    dst: &mut [T],
) {
    if g.dilation_w != 1 {
        im2col_dilated(g, input, pixels, pad, dst);
        return;
    }
    let ic = g.in_c;
    let row_len = g.filter_w * ic;
    let image = g.in_h * g.in_w * ic;
    let mut d = 0;
    let mut p = pixels.start;
    while p < pixels.end {
        // The pixels of one output row at a time.
        let ox0 = p % g.out_w;
        let oy = (p / g.out_w) % g.out_h;
        let base = p / (g.out_w * g.out_h) * image;
        let count = (g.out_w - ox0).min(pixels.end - p);
        // Short filter rows (e.g. 3 pixels of RGB) of interior columns (every tap inside the
        // input width): one fixed-length copy per filter row from the row starts in `srow`
        // (`usize::MAX`: a padding row).
        let mut srow = [usize::MAX; SHORT_ROWS];
        let short = row_len <= RUN && g.filter_h <= SHORT_ROWS;
        if short {
            for (fy, r) in srow.iter_mut().enumerate().take(g.filter_h) {
                if let Some(iy) = g.in_y(oy, fy) {
                    *r = base + iy * g.in_w * ic;
                }
            }
        }
        let srow = &srow[..g.filter_h.min(SHORT_ROWS)];
        // Interior columns (every tap inside the input width) of this row segment: one call of
        // the fixed-size copy kernel for all of them.
        let end = ox0 + count;
        let (mut in_lo, mut in_hi) = (end, end);
        if short && g.in_w + g.pad_left >= g.filter_w {
            let lo = g.pad_left.div_ceil(g.stride_w).clamp(ox0, end);
            let hi = ((g.in_w + g.pad_left - g.filter_w) / g.stride_w + 1).clamp(lo, end);
            let fits = |r: usize| {
                r + ((hi.max(1) - 1) * g.stride_w - g.pad_left) * ic + RUN <= input.len()
            };
            if lo < hi
                && srow.iter().all(|&r| r == usize::MAX || fits(r))
                && d + (hi - ox0) * g.filter_h * row_len + RUN <= dst.len()
            {
                (in_lo, in_hi) = (lo, hi);
            }
        }
        let mut ox = ox0;
        while ox < end {
            let left = ox * g.stride_w;
            if ox == in_lo {
                let x = (left - g.pad_left) * ic;
                let mut srcs = [usize::MAX; SHORT_ROWS];
                for (s, &r) in srcs.iter_mut().zip(srow) {
                    if r != usize::MAX {
                        *s = r + x;
                    }
                }
                let n = in_hi - in_lo;
                let k = g.filter_h * row_len;
                kernels::scalar::copy::short_rows(
                    dst,
                    d,
                    k,
                    row_len,
                    input,
                    &srcs[..srow.len()],
                    g.stride_w * ic,
                    n,
                    pad,
                );
                d += n * k;
                ox = in_hi;
                continue;
            }
            ox += 1;
            if short && left >= g.pad_left && left + g.filter_w <= g.in_w + g.pad_left {
                let x = (left - g.pad_left) * ic;
                for &r in srow {
                    if r == usize::MAX {
                        dst[d..d + row_len].fill(pad);
                    } else {
                        copy_run(dst, d, input, r + x, row_len);
                    }
                    d += row_len;
                }
                continue;
            }
            // Valid taps fx0..fx1 of every filter row read input columns x0 .. x0 + fx1 - fx0.
            let fx0 = g.pad_left.saturating_sub(left).min(g.filter_w);
            let fx1 = (g.in_w + g.pad_left).saturating_sub(left).min(g.filter_w);
            let (lo, hi) = (fx0 * ic, fx1.max(fx0) * ic);
            let x0 = (left + fx0).saturating_sub(g.pad_left);
            for fy in 0..g.filter_h {
                let at = d;
                d += row_len;
                let iy = match g.in_y(oy, fy) {
                    Some(iy) if lo < hi => iy,
                    _ => {
                        dst[at..at + row_len].fill(pad);
                        continue;
                    }
                };
                let s = base + (iy * g.in_w + x0) * ic;
                let run = hi - lo;
                if lo > 0 {
                    dst[at..at + lo].fill(pad);
                }
                copy_run(dst, at + lo, input, s, run);
                if hi < row_len {
                    dst[at + hi..at + row_len].fill(pad);
                }
            }
        }
        p += count;
    }
}

/// `dst[at..at + len] = input[s..s + len]`; a run of at most [`RUN`] elements is copied as
/// exactly `RUN` elements (a fixed-size copy, not a `memcpy` call) when both sides have room.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], at: usize, input: &[T], s: usize, len: usize) {
    if len <= RUN {
        if let (Some(from), Some(to)) = (input.get(s..s + RUN), dst.get_mut(at..at + RUN)) {
            if let (Ok(from), Ok(to)) = (<&[T; RUN]>::try_from(from), <&mut [T; RUN]>::try_from(to))
            {
                *to = *from;
                return;
            }
        }
    }
    dst[at..at + len].copy_from_slice(&input[s..s + len]);
}

/// [`im2col`] with a dilated filter width: tap by tap.
fn im2col_dilated<T: Copy>(g: &ConvGeom, input: &[T], pixels: Range<usize>, pad: T, dst: &mut [T]) {
    let ic = g.in_c;
    let row_len = g.filter_w * ic;
    let mut d = 0;
    for p in pixels {
        let ox = p % g.out_w;
        let oy = (p / g.out_w) % g.out_h;
        let b = p / (g.out_w * g.out_h);
        for fy in 0..g.filter_h {
            let dst = &mut dst[d..d + row_len];
            d += row_len;
            let Some(iy) = g.in_y(oy, fy) else {
                dst.fill(pad);
                continue;
            };
            for fx in 0..g.filter_w {
                let dst = &mut dst[fx * ic..(fx + 1) * ic];
                match g.in_x(ox, fx) {
                    Some(ix) => {
                        let s = ((b * g.in_h + iy) * g.in_w + ix) * ic;
                        dst.copy_from_slice(&input[s..s + ic]);
                    }
                    None => dst.fill(pad),
                }
            }
        }
    }
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
    task_rows: usize,
    tasks: usize,
    scratch: PerWorker<ScratchI8>,
}

impl GemmI8 {
    /// `w` is the constant `n x k` weight matrix (OHWI for a convolution), `bias` the
    /// optional constant int32 bias; `q.filter_offset` must be 0.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        src: ASource,
        m: usize,
        k: usize,
        n: usize,
        input_len: usize,
        w: &[i8],
        bias: Option<&[i32]>,
        q: QParams,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> OpResult<Self> {
        if q.filter_offset != 0 {
            return Err("fast int8 GEMM needs a zero filter offset".into());
        }
        let in_zp = i8::try_from(-q.input_offset).map_err(|_| "input zero point out of range")?;
        let packed = kernels::pack_i8(path, w, n, k);
        let folded: Vec<i32> = (0..n)
            .map(|j| {
                let sum = w[j * k..(j + 1) * k]
                    .iter()
                    .fold(0i32, |s, &v| s.wrapping_add(v as i32));
                bias.map_or(0, |b| b[j])
                    .wrapping_add(q.input_offset.wrapping_mul(sum))
            })
            .collect();
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let im2col = matches!(src, ASource::Im2col(_));
        let (task_rows, tasks) = task_rows(
            m,
            threads,
            kernels::gemm_i8_tile_rows(path),
            Split::int8(n, k, im2col),
        );
        // No int32 scratch where the register tile requantizes every row.
        let acc_len = if kernels::gemm_requant_in_tile(&packed) {
            0
        } else {
            task_rows.min(ACC_ROWS) * n
        };
        let scratch = PerWorker::new(threads, || ScratchI8 {
            // RUN slack: im2col's fixed-length copies, and the GEMM's last partial k
            // chunk read in place (see `kernels::gemm_i8`).
            cols: vec![0; if im2col { task_rows * k + RUN } else { 0 }],
            acc: vec![0; acc_len],
        });
        Ok(GemmI8 {
            src,
            m,
            k,
            n,
            input_len,
            packed,
            bias: folded,
            q,
            in_zp,
            pool,
            task_rows,
            tasks,
            scratch,
        })
    }
}

impl Kernel for GemmI8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let input = in_slice(io, 0, self.input_len, |t| t.i8())?;
        let out = out_slice(io, self.m * self.n, |t| t.i8())?;
        let this = &*self;
        let (k, n, tr) = (this.k, this.n, this.task_rows);
        let task = |t: usize, chunk: &mut [i8], w: usize| {
            let rows = t * tr..((t + 1) * tr).min(this.m);
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
                    &a[r * k..],
                    rr,
                    k,
                    &rq,
                    acc,
                    &mut chunk[r * n..],
                    n,
                );
                r += rr;
            }
        };
        run_tasks(
            &this.pool,
            out,
            this.tasks,
            &|t| t * tr * n..((t + 1) * tr).min(this.m) * n,
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
    task_rows: usize,
    tasks: usize,
    scratch: PerWorker<ScratchU8>,
}

/// A uint8 value as the int8 value 128 below it (the same bits with the top one flipped).
#[inline(always)]
fn shift_u8(v: u8) -> i8 {
    (v ^ 0x80) as i8
}

impl GemmU8 {
    /// `w` is the constant `n x k` uint8 weight matrix, `q` the uint8 operator's parameters
    /// (`q.filter_offset` = −zw, one multiplier for every channel).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        src: ASource,
        m: usize,
        k: usize,
        n: usize,
        input_len: usize,
        w: &[u8],
        bias: Option<&[i32]>,
        q: QParams,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> OpResult<Self> {
        let zx = -q.input_offset - 128;
        let zw = -q.filter_offset - 128;
        let in_zp = i8::try_from(zx).map_err(|_| "input zero point out of range")?;
        i8::try_from(zw).map_err(|_| "filter zero point out of range")?;
        let wi: Vec<i8> = w.iter().map(|&v| shift_u8(v)).collect();
        let packed = kernels::pack_i8(path, &wi, n, k);
        let kzz = (k as i32).wrapping_mul(zx).wrapping_mul(zw);
        let folded: Vec<i32> = (0..n)
            .map(|j| {
                let sum = wi[j * k..(j + 1) * k]
                    .iter()
                    .fold(0i32, |s, &v| s.wrapping_add(v as i32));
                bias.map_or(0, |b| b[j])
                    .wrapping_sub(zx.wrapping_mul(sum))
                    .wrapping_add(kzz)
            })
            .collect();
        let q = QParams {
            output_offset: q.output_offset - 128,
            act_min: q.act_min - 128,
            act_max: q.act_max - 128,
            ..q
        };
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let im2col = matches!(src, ASource::Im2col(_));
        let (task_rows, tasks) = task_rows(
            m,
            threads,
            kernels::gemm_i8_tile_rows(path),
            Split::int8(n, k, im2col),
        );
        let scratch = PerWorker::new(threads, || ScratchU8 {
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
            src,
            m,
            k,
            n,
            packed,
            bias: folded,
            zw,
            q,
            in_zp,
            input: vec![0; input_len],
            path,
            pool,
            task_rows,
            tasks,
            scratch,
        })
    }
}

impl Kernel for GemmU8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let input = in_slice(io, 0, self.input.len(), |t| t.u8())?;
        for (d, &s) in self.input.iter_mut().zip(input) {
            *d = shift_u8(s);
        }
        let out = out_slice(io, self.m * self.n, |t| t.u8())?;
        let this = &*self;
        let (k, n, tr) = (this.k, this.n, this.task_rows);
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
            let rows = t * tr..((t + 1) * tr).min(this.m);
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
                kernels::gemm_i8(&this.packed, a, rr, k, &mut acc[..rr * n], n);
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
                    &acc[..rr * n],
                    rr,
                    n,
                    n,
                    &rq,
                    bytemuck::cast_slice_mut(o),
                    n,
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
            this.tasks,
            &|t| t * tr * n..((t + 1) * tr).min(this.m) * n,
            &task,
        );
        Ok(())
    }
}

/// uint8 depthwise convolution (depth multiplier 1), threaded by output rows: the
/// accumulation in [`kernels::scalar::conv::depthwise_acc_row`] (channel-innermost, it
/// vectorizes), the requantization on the path's int8 kernel (shifted by −128 as in
/// [`GemmU8`]).
pub(super) struct DepthwiseU8 {
    g: ConvGeom,
    /// The filter minus its zero point, `[fh][fw][c]`.
    w: Vec<i32>,
    bias: Vec<i32>,
    q: QParams,
    path: KernelPath,
    pool: Option<Arc<ThreadPool>>,
    tasks: usize,
    acc: PerWorker<Vec<i32>>,
}

impl DepthwiseU8 {
    pub(super) fn new(
        g: ConvGeom,
        filter: &[u8],
        bias: Option<&[i32]>,
        q: QParams,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let w = filter.iter().map(|&v| v as i32 + q.filter_offset).collect();
        let q = QParams {
            output_offset: q.output_offset - 128,
            act_min: q.act_min - 128,
            act_max: q.act_max - 128,
            ..q
        };
        let row = g.out_w * g.out_c;
        DepthwiseU8 {
            w,
            bias: bias.map_or_else(|| vec![0; g.out_c], <[i32]>::to_vec),
            q,
            path,
            tasks: depthwise_tasks(&g, threads),
            acc: PerWorker::new(threads, || vec![0; row]),
            pool,
            g,
        }
    }
}

impl Kernel for DepthwiseU8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.u8())?;
        let out = out_slice(io, g.output_len(), |t| t.u8())?;
        let this = &*self;
        let q = &this.q;
        let rq = kernels::RequantCols {
            bias: &this.bias,
            multipliers: &q.multipliers,
            shifts: &q.shifts,
            output_offset: q.output_offset,
            act_min: q.act_min,
            act_max: q.act_max,
        };
        let row = g.out_w * g.out_c;
        let task = |t: usize, chunk: &mut [u8], w: usize| {
            let (sub, ir, _) = depthwise_sub(&g, this.tasks, t);
            let mut acc = this.acc.get(w);
            for (oy, o) in chunk.chunks_exact_mut(row).enumerate() {
                kernels::scalar::conv::depthwise_acc_row(
                    &sub,
                    &input[ir.clone()],
                    &this.w,
                    q.input_offset,
                    oy,
                    &mut acc,
                );
                kernels::requant_i8(
                    this.path,
                    &acc,
                    g.out_w,
                    g.out_c,
                    g.out_c,
                    &rq,
                    bytemuck::cast_slice_mut(o),
                    g.out_c,
                );
                for v in o.iter_mut() {
                    *v ^= 0x80;
                }
            }
        };
        let bounds = |t: usize| depthwise_sub(&g, this.tasks, t).2;
        run_tasks(&this.pool, out, this.tasks, &bounds, &task);
        Ok(())
    }
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
    task_rows: usize,
    tasks: usize,
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        src: ASource,
        m: usize,
        k: usize,
        n: usize,
        input_len: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        clamp: (f32, f32),
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let im2col = matches!(src, ASource::Im2col(_));
        let by_cols = ColSplitF32::new(m, k, n, w, path, threads, im2col);
        // The row cut's weights and scratch only where it runs.
        let rows_cut = by_cols.is_none();
        let packed = kernels::pack_f32(path, w, if rows_cut { n } else { 0 }, k);
        let (task_rows, tasks) = task_rows(
            m,
            threads,
            kernels::gemm_f32_tile_rows(path),
            Split::f32(threads),
        );
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
            task_rows,
            tasks,
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
                a,
                m,
                k,
                b,
                clamp,
                &mut o[..m * (c1 - c0)],
                c1 - c0,
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
        let (k, n, tr) = (this.k, this.n, this.task_rows);
        let task = |t: usize, chunk: &mut [f32], w: usize| {
            let rows = t * tr..((t + 1) * tr).min(this.m);
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
                a,
                mr,
                k,
                this.bias.as_deref(),
                this.clamp,
                chunk,
                n,
            );
        };
        run_tasks(
            &this.pool,
            out,
            this.tasks,
            &|t| t * tr * n..((t + 1) * tr).min(this.m) * n,
            &task,
        );
        Ok(())
    }
}

/// Depthwise row tasks: (batch, output rows) per task.
pub(super) fn depthwise_tasks(g: &ConvGeom, threads: usize) -> usize {
    let per_batch = if threads <= 1 {
        1
    } else {
        (threads * 4).min(g.out_h)
    };
    g.batch * per_batch.max(1)
}

/// The geometry, input range and output range of task `t`: output rows `oy0..oy1`
/// of batch `b` as a stand-alone one-image depthwise problem (same arithmetic:
/// the leading padding and input rows are shifted together).
pub(super) fn depthwise_sub(
    g: &ConvGeom,
    tasks: usize,
    t: usize,
) -> (ConvGeom, Range<usize>, Range<usize>) {
    let per_batch = tasks / g.batch;
    let b = t / per_batch;
    let r = split_range(g.out_h, per_batch, t % per_batch);
    let top = r.start * g.stride_h;
    let (skip, pad_top) = if top >= g.pad_top {
        ((top - g.pad_top).min(g.in_h), 0)
    } else {
        (0, g.pad_top - top)
    };
    let sub = ConvGeom {
        batch: 1,
        in_h: g.in_h - skip,
        out_h: r.len(),
        pad_top,
        ..*g
    };
    let row = g.in_w * g.in_c;
    let in_start = (b * g.in_h + skip) * row;
    let in_range = in_start..(b + 1) * g.in_h * row;
    let orow = g.out_w * g.out_c;
    let out_range = (b * g.out_h + r.start) * orow..(b * g.out_h + r.end) * orow;
    (sub, in_range, out_range)
}

/// int8 depthwise convolution on the dispatch point, threaded by output rows.
pub(super) struct DepthwiseI8 {
    pub g: ConvGeom,
    pub mult: usize,
    pub filter: Vec<i8>,
    pub bias: Option<Vec<i32>>,
    pub q: QParams,
    pub prep: kernels::DepthwisePrepI8,
    pub pool: Option<Arc<ThreadPool>>,
    pub tasks: usize,
}

impl DepthwiseI8 {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        g: ConvGeom,
        mult: usize,
        filter: &[i8],
        bias: Option<&[i32]>,
        q: QParams,
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        let prep = kernels::prepare_depthwise_i8(path, &g, mult, filter, bias, &q.view());
        DepthwiseI8 {
            g,
            mult,
            filter: filter.to_vec(),
            bias: bias.map(<[i32]>::to_vec),
            q,
            prep,
            pool,
            tasks: depthwise_tasks(&g, threads),
        }
    }
}

impl Kernel for DepthwiseI8 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.i8())?;
        let out = out_slice(io, g.output_len(), |t| t.i8())?;
        let this = &*self;
        let q = this.q.view();
        let task = |t: usize, chunk: &mut [i8], _w: usize| {
            let (sub, ir, _) = depthwise_sub(&g, this.tasks, t);
            kernels::depthwise_i8_prepared(
                &this.prep,
                &sub,
                this.mult,
                &input[ir],
                &this.filter,
                this.bias.as_deref(),
                &q,
                0..sub.out_h,
                chunk,
            );
        };
        let bounds = |t: usize| depthwise_sub(&g, this.tasks, t).2;
        run_tasks(&this.pool, out, this.tasks, &bounds, &task);
        Ok(())
    }
}

/// float32 depthwise convolution on the dispatch point, threaded by output rows.
pub(super) struct DepthwiseF32 {
    pub g: ConvGeom,
    pub mult: usize,
    pub filter: Vec<f32>,
    pub bias: Option<Vec<f32>>,
    pub clamp: (f32, f32),
    pub path: KernelPath,
    pub pool: Option<Arc<ThreadPool>>,
    pub tasks: usize,
}

impl DepthwiseF32 {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        g: ConvGeom,
        mult: usize,
        filter: &[f32],
        bias: Option<&[f32]>,
        clamp: (f32, f32),
        path: KernelPath,
        pool: Option<Arc<ThreadPool>>,
    ) -> Self {
        let threads = pool.as_ref().map_or(1, |p| p.threads());
        DepthwiseF32 {
            g,
            mult,
            filter: filter.to_vec(),
            bias: bias.map(<[f32]>::to_vec),
            clamp,
            path,
            pool,
            tasks: depthwise_tasks(&g, threads),
        }
    }
}

impl Kernel for DepthwiseF32 {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let g = self.g;
        let input = in_slice(io, 0, g.input_len(), |t| t.f32())?;
        let out = out_slice(io, g.output_len(), |t| t.f32())?;
        let this = &*self;
        let task = |t: usize, chunk: &mut [f32], _w: usize| {
            let (sub, ir, _) = depthwise_sub(&g, this.tasks, t);
            kernels::depthwise_f32(
                this.path,
                &sub,
                this.mult,
                &input[ir],
                &this.filter,
                this.bias.as_deref(),
                this.clamp,
                0..sub.out_h,
                chunk,
            );
        };
        let bounds = |t: usize| depthwise_sub(&g, this.tasks, t).2;
        run_tasks(&this.pool, out, this.tasks, &bounds, &task);
        Ok(())
    }
}
