//! How the conv family's work is cut into tasks across the interpreter's threads:
//! the output rows (pixels for a GEMM, image rows for depthwise) are cut into tasks;
//! each task writes its own disjoint rows and uses its worker's preallocated scratch
//! (im2col rows, int32 accumulators). No allocation per run.

use std::ops::Range;
use std::sync::Arc;

use crate::engine::kernels::scalar::conv::ConvGeom;
use crate::engine::pool::{split_range, split_range_last, ThreadPool};

/// Rows (output pixels) per GEMM task at most (int8; float on one thread): long enough that
/// the per-task costs (claiming a task, the GEMM's argument checks and per-block constants)
/// stay small next to the work.
const MAX_TASK_ROWS: usize = 512;
/// An im2col task's buffer holds at most this many elements (or [`MIN_IM2COL_ROWS`] rows),
/// so that it is still in cache when the GEMM reads it.
const IM2COL_TASK_ELEMS: usize = 1 << 16;
const MIN_IM2COL_ROWS: usize = 64;

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
    pub(super) fn f32(threads: usize) -> Split {
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

/// A GEMM's `m` rows cut into `tasks` contiguous runs of whole register tiles of `tile`
/// rows, as even as the tiles allow: the last `tiles % tasks` runs one tile longer, the
/// last one ending with the partial tile. The first runs, the calling thread's share (see
/// the pool), are the shorter: it also runs the operators that are not cut into tasks.
/// (Runs of equal length with a short last one left one thread of four nearly idle on a
/// 100-row layer: 32, 32, 32 and 4 rows.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RowTasks {
    m: usize,
    tile: usize,
    pub(super) tasks: usize,
    /// Rows of the longest task (the scratch a task needs).
    pub(super) max: usize,
}

impl RowTasks {
    /// Task `t`'s rows.
    pub(super) fn rows(&self, t: usize) -> Range<usize> {
        let r = split_range_last(self.m.div_ceil(self.tile), self.tasks, t);
        (r.start * self.tile).min(self.m)..(r.end * self.tile).min(self.m)
    }

    /// Task `t`'s elements of a row-major output with `n` columns.
    pub(super) fn scaled(&self, t: usize, n: usize) -> Range<usize> {
        let r = self.rows(t);
        r.start * n..r.end * n
    }
}

/// Task split of a GEMM of `m` rows over `threads` (see [`RowTasks`]).
pub(super) fn task_rows(m: usize, threads: usize, tile: usize, split: Split) -> RowTasks {
    let (rows, tasks) = task_count(m, threads, tile, split);
    let mut t = RowTasks {
        m,
        tile,
        tasks,
        max: rows,
    };
    // The last task but one is a longest one (the last may end with the partial tile);
    // never longer than the equal runs (tasks ≥ m / rows, so a task's ⌈tiles / tasks⌉
    // tiles are at most rows / tile).
    t.max = (tasks.saturating_sub(2)..tasks)
        .map(|i| t.rows(i).len())
        .max()
        .unwrap_or(rows);
    t
}

/// (rows per task, tasks) of equal runs of whole tiles; [`task_rows`] evens them out.
fn task_count(m: usize, threads: usize, tile: usize, split: Split) -> (usize, usize) {
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

pub(super) fn run_pool(pool: &Option<Arc<ThreadPool>>) -> Option<&ThreadPool> {
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

/// `dst[i] = src[i] − 128` as int8 (a uint8 tensor shifted to int8: the same bits with the
/// top one flipped), cut across the pool's threads: the uint8 operators' input pass, which
/// would otherwise run on one thread.
pub(super) fn shift_u8_to_i8(pool: &Option<Arc<ThreadPool>>, src: &[u8], dst: &mut [i8]) {
    let n = dst.len().min(src.len());
    let threads = pool.as_ref().map_or(1, |p| p.threads());
    // Below ~64 KiB a second thread costs more than it saves.
    let tasks = if n < 1 << 16 { 1 } else { threads };
    let bounds = |t: usize| t * n / tasks..(t + 1) * n / tasks;
    let task = |t: usize, d: &mut [i8], _w: usize| {
        for (d, &s) in d.iter_mut().zip(&src[bounds(t)]) {
            *d = (s ^ 0x80) as i8;
        }
    };
    run_tasks(pool, &mut dst[..n], tasks, &bounds, &task);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The tasks cover `0..m` in order, each a run of whole tiles (the last may end with
    /// the partial one), none longer than `max`, and their lengths in tiles differ by at
    /// most one.
    #[test]
    fn row_tasks_cover_the_rows_evenly_in_whole_tiles() {
        for m in 0..300 {
            for threads in 1..=4 {
                for tile in [1, 4, 8, 12] {
                    for split in [Split::int8(64, 64, false), Split::int8(512, 512, true)] {
                        let t = task_rows(m, threads, tile, split);
                        let mut next = 0;
                        let (mut lo, mut hi) = (usize::MAX, 0);
                        for i in 0..t.tasks {
                            let r = t.rows(i);
                            assert_eq!(r.start, next, "m {m} threads {threads} tile {tile}");
                            assert!(
                                r.start.is_multiple_of(tile)
                                    && (r.end.is_multiple_of(tile) || r.end == m)
                            );
                            assert!(!r.is_empty() && r.len() <= t.max);
                            let tiles = r.len().div_ceil(tile);
                            (lo, hi) = (lo.min(tiles), hi.max(tiles));
                            next = r.end;
                        }
                        assert_eq!(next, m);
                        assert!(t.tasks == 0 || hi - lo <= 1, "m {m}: {lo}..{hi} tiles");
                        // As many tasks as the equal runs had.
                        assert_eq!(t.tasks, task_count(m, threads, tile, split).1);
                    }
                }
            }
        }
        // 100 rows, tiles of 8, four threads, heavy weights: 24, 24, 24, 28 rows
        // (not 32, 32, 32, 4).
        let t = task_rows(100, 4, 8, Split::int8(1024, 1024, false));
        let lens: Vec<usize> = (0..t.tasks).map(|i| t.rows(i).len()).collect();
        assert_eq!(lens, [24, 24, 24, 28]);
        assert_eq!(t.max, 28);
    }
}
