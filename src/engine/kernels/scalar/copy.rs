//! Element copies: the fixed-size ones of the im2col of short filter rows, and the runs of
//! DEPTH_TO_SPACE (portable; every ISA uses them).

/// Elements each [`short_rows`] copy moves at once.
pub const RUN: usize = 16;

/// What [`short_rows`] copies: `n` pixels of `srcs.len()` filter rows of `row_len` elements.
#[derive(Clone, Copy, Debug)]
pub struct ShortRows<'a, T> {
    pub input: &'a [T],
    /// Where filter row `fy` of pixel 0 starts in `input` (`usize::MAX`: a padding row).
    pub srcs: &'a [usize],
    /// Elements between the rows of two consecutive pixels in `input`.
    pub sstep: usize,
    /// Where pixel 0's first row goes in the destination.
    pub d0: usize,
    /// Elements between two consecutive pixels in the destination.
    pub dstep: usize,
    pub row_len: usize,
    pub n: usize,
    /// The value of a padding row.
    pub pad: T,
}

/// The im2col rows of `n` interior output pixels whose filter rows are short (`row_len <= RUN`
/// elements, e.g. 3 RGB pixels): for pixel `i` and filter row `fy`, the `RUN` elements at
/// `input[srcs[fy] + i * sstep..]` are copied to `dst[d0 + i * dstep + fy * row_len..]`, or
/// `row_len` copies of `pad` are written there when `srcs[fy] == usize::MAX` (a padding row).
/// Pixels and rows go in order, so the `RUN - row_len` elements a copy writes past its row are
/// overwritten by the next row or pixel, or land after the last row (callers leave `RUN`
/// elements of slack there).
///
/// # Panics
/// When a copy would reach outside `input` or `dst`, or `row_len > RUN`.
pub fn short_rows<T: Copy>(op: &ShortRows<'_, T>, dst: &mut [T]) {
    let ShortRows {
        input,
        srcs,
        sstep,
        d0,
        dstep,
        row_len,
        n,
        pad,
    } = *op;
    if n == 0 || srcs.is_empty() {
        return;
    }
    assert!(row_len <= RUN, "short_rows: row of {row_len} > {RUN}");
    let reach = |start: usize, step: usize| {
        step.checked_mul(n - 1)
            .and_then(|x| x.checked_add(start))
            .and_then(|x| x.checked_add(RUN))
    };
    for &r in srcs.iter().filter(|&&r| r != usize::MAX) {
        assert!(
            reach(r, sstep).is_some_and(|end| end <= input.len()),
            "short_rows: input too short"
        );
    }
    let last_row = (srcs.len() - 1)
        .checked_mul(row_len)
        .and_then(|x| x.checked_add(d0));
    assert!(
        last_row
            .and_then(|at| reach(at, dstep))
            .is_some_and(|end| end <= dst.len()),
        "short_rows: destination too short"
    );
    let (src, out) = (input.as_ptr(), dst.as_mut_ptr());
    for i in 0..n {
        for (fy, &r) in srcs.iter().enumerate() {
            let at = d0 + i * dstep + fy * row_len;
            // SAFETY: checked above: every copy's RUN elements (and so a pad row's row_len <=
            // RUN) are inside `input` and `dst`, which are distinct slices.
            unsafe {
                if r == usize::MAX {
                    for e in 0..row_len {
                        out.add(at + e).write(pad);
                    }
                } else {
                    let v = src.add(r + i * sstep).cast::<[T; RUN]>().read_unaligned();
                    out.add(at).cast::<[T; RUN]>().write_unaligned(v);
                }
            }
        }
    }
}

/// What [`depth_to_space`] rearranges: an NHWC input of `batch × height × width` pixels whose
/// channels are `block × block` runs of `run` bytes each (the output pixel's channels).
#[derive(Clone, Copy, Debug)]
pub struct DepthToSpace<'a> {
    pub input: &'a [u8],
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub block: usize,
    /// Bytes of one output pixel (output channels × element size).
    pub run: usize,
}

/// DEPTH_TO_SPACE on bytes: output pixel `(b, h·block + dy, w·block + dx)` is run
/// `dy·block + dx` of input pixel `(b, h, w)`. The output is written in order, one run at a
/// time.
///
/// # Panics
/// When `input` or `out` does not hold `batch·height·width·block²·run` bytes.
pub fn depth_to_space(op: &DepthToSpace<'_>, out: &mut [u8]) {
    let DepthToSpace {
        input,
        batch,
        height,
        width,
        block,
        run,
    } = *op;
    let pixel = block * block * run;
    let n = batch * height * width * pixel;
    assert!(
        input.len() == n && out.len() == n,
        "depth_to_space: operand sizes"
    );
    if n == 0 {
        return;
    }
    let mut dst = out.chunks_exact_mut(run);
    for row in input.chunks_exact(width * pixel) {
        for dy in 0..block {
            for px in row.chunks_exact(pixel) {
                let src = &px[dy * block * run..(dy + 1) * block * run];
                for s in src.chunks_exact(run) {
                    if let Some(d) = dst.next() {
                        d.copy_from_slice(s);
                    }
                }
            }
        }
    }
}
