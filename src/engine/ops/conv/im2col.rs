//! im2col: the rows of a convolution's GEMM left-hand matrix, one per output pixel,
//! copied from the NHWC input (padded taps filled with a given value).

use std::ops::Range;

use crate::engine::kernels;
use crate::engine::kernels::scalar::conv::ConvGeom;

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
                let rows = kernels::scalar::copy::ShortRows {
                    input,
                    srcs: &srcs[..srow.len()],
                    sstep: g.stride_w * ic,
                    d0: d,
                    dstep: k,
                    row_len,
                    n,
                    pad,
                };
                kernels::scalar::copy::short_rows(&rows, dst);
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
