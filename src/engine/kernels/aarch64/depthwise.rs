//! Depthwise convolution (NHWC) on NEON, vectorized along channels, for a range of output rows.
//!
//! Depth multiplier 1 runs the vector kernels (16, then 8 (int8) / 4 (f32) channels at a time,
//! then a scalar tail); other multipliers use a plain per-element loop. int8: `x + input_offset`
//! is formed with SADDW in int16, the filter (plus `filter_offset`) is widened to int16 once per
//! call, and products are accumulated exactly with SMLAL/SMLAL2 into int32 (the scalar oracle
//! computes the same products in i32 and adds them with wrapping); then the requantization of
//! `requant.rs`. Offsets outside the int16-safe range (never in TFLite) use the plain loop.

use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

use super::requant::{finish1, finish4, narrow8, requant_kinds, Params4, Requant16};
use crate::engine::kernels::scalar::conv::{ConvGeom, Depthwise};
use crate::engine::kernels::scratch::reuse;
use crate::engine::kernels::{Clamp, KernelPath};
use crate::engine::quant::RequantPerChannel;

/// Channels from which the border pixels of a 3x3 convolution take the register kernel
/// ([`dw3x3_edge`]); with fewer, building its tap pointers costs more than it saves.
const EDGE_MIN_C: usize = 64;

/// Reserve this thread's slots ([`crate::engine::kernels::scratch::prewarm_thread`]): per
/// channel up to 4096 channels, 32 Ki weights, tap lists for filters up to 32x32.
pub(crate) fn prewarm_scratch() {
    use crate::engine::kernels::scratch::reserve;
    for s in [&LEFT, &RIGHT, &BIAS] {
        reserve(s, 4096);
    }
    reserve(&PAD, 4096);
    reserve(&W16, 32 << 10);
    reserve(&REL, 1024);
    reserve(&TAPS, 1024);
    reserve(&TAP_PTRS, 1024);
}

thread_local! {
    static LEFT: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
    static RIGHT: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
    static BIAS: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
    static PAD: std::cell::RefCell<Vec<i8>> = const { std::cell::RefCell::new(Vec::new()) };
    static W16: std::cell::RefCell<Vec<i16>> = const { std::cell::RefCell::new(Vec::new()) };
    static REL: std::cell::RefCell<Vec<(usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    static TAPS: std::cell::RefCell<Vec<(usize, usize)>> = const { std::cell::RefCell::new(Vec::new()) };
    static TAP_PTRS: std::cell::RefCell<Vec<(*const i8, *const i8)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

fn check_geometry(
    g: &ConvGeom,
    dm: usize,
    input: usize,
    filter: usize,
    rows: &Range<usize>,
    out: usize,
) {
    assert!(
        dm >= 1 && g.out_c == g.in_c * dm,
        "depthwise: out_c {} != in_c {} * {dm}",
        g.out_c,
        g.in_c
    );
    assert!(input >= g.input_len(), "depthwise: input too short");
    assert!(
        filter >= g.filter_h * g.filter_w * g.out_c,
        "depthwise: filter too short"
    );
    assert!(out >= g.output_len(), "depthwise: output too short");
    assert!(
        rows.start <= rows.end && rows.end <= g.batch * g.out_h,
        "depthwise: rows {rows:?} out of range"
    );
    assert!(g.stride_h >= 1 && g.stride_w >= 1, "depthwise: zero stride");
}

/// int8 depthwise convolution of output rows `rows` (of the `batch * out_h` rows).
pub fn depthwise_i8(
    path: KernelPath,
    op: &Depthwise<'_, i8, i32>,
    q: &RequantPerChannel<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let _ = path;
    let Depthwise {
        g,
        depth_multiplier,
        input,
        filter,
        bias,
    } = *op;
    check_geometry(
        g,
        depth_multiplier,
        input.len(),
        filter.len(),
        &rows,
        out.len(),
    );
    if let Some(b) = bias {
        assert!(b.len() >= g.out_c, "depthwise_i8: bias too short");
    }
    assert!(
        q.multipliers.len() >= g.out_c && q.shifts.len() >= g.out_c,
        "depthwise_i8: per-channel parameters too short"
    );
    let i16_safe = |o: i32| (-32640..=32640).contains(&o);
    if depth_multiplier != 1 || !i16_safe(q.input_offset) || !i16_safe(q.filter_offset) {
        depthwise_i8_plain(op, q, rows, out);
        return;
    }
    let taps = g.filter_h * g.filter_w;
    let c = g.in_c;
    let mut left = reuse(&LEFT);
    left.extend(q.shifts[..c].iter().map(|&s| s.max(0)));
    let mut right = reuse(&RIGHT);
    right.extend(q.shifts[..c].iter().map(|&s| s.min(0)));
    if q.filter_offset == 0 && (-127..=128).contains(&q.input_offset) {
        // Zero-point padding (int8 TFLite models): a padded tap reads the input zero point
        // `-input_offset`, whose term (x + input_offset) * w is 0 like the skipped tap of the
        // oracle; `input_offset * sum(w)` over all taps moves into the bias, so the taps need
        // only x * w (SMULL, exact in i16; SMLAL pairs two taps when no weight is -128).
        let mut bias2 = reuse(&BIAS);
        bias2.resize(c, 0);
        for (ch, b2) in bias2.iter_mut().enumerate() {
            let s = (0..taps).fold(0i32, |s, t| s.wrapping_add(filter[t * c + ch] as i32));
            *b2 = bias
                .map_or(0, |b| b[ch])
                .wrapping_add(q.input_offset.wrapping_mul(s));
        }
        let mut pad = reuse(&PAD);
        pad.resize(c, (-q.input_offset) as i8);
        let k = ZpKernel {
            g,
            input,
            filter,
            pad: &pad,
            bias: &bias2,
            q,
            left: &left,
            right: &right,
        };
        // SAFETY: geometry and lengths validated above; pad, bias2, left, right have c values.
        unsafe {
            if filter[..taps * c].contains(&i8::MIN) {
                dw_i8_zp::<false>(&k, rows, out)
            } else {
                dw_i8_zp::<true>(&k, rows, out)
            }
        }
        return;
    }
    let mut w16 = reuse(&W16);
    w16.extend(
        filter[..taps * c]
            .iter()
            .map(|&w| (w as i32 + q.filter_offset) as i16),
    );
    let mut zero = reuse(&BIAS);
    zero.resize(c, 0);
    let bias = bias.map_or(&zero[..], |b| &b[..c]);
    let k = NeonKernel {
        g,
        input,
        w16: &w16,
        bias,
        q,
        left: &left,
        right: &right,
    };
    // SAFETY: geometry and lengths validated above; w16, left, right, bias have c (per tap) values.
    unsafe { dw_i8_neon(&k, rows, out) }
}

/// Operands of the general int8 depthwise kernel [`dw_i8_neon`] (validated by
/// `depthwise_i8`).
struct NeonKernel<'a> {
    g: &'a ConvGeom,
    input: &'a [i8],
    /// The filter plus `filter_offset`, in int16.
    w16: &'a [i16],
    /// `c` biases (zeros without a bias).
    bias: &'a [i32],
    q: &'a RequantPerChannel<'a>,
    left: &'a [i32],
    right: &'a [i32],
}

/// Operands of the zero-point-padding int8 depthwise kernel (validated by `depthwise_i8`).
struct ZpKernel<'a> {
    g: &'a ConvGeom,
    input: &'a [i8],
    filter: &'a [i8],
    /// `c` copies of the input zero point.
    pad: &'a [i8],
    /// bias + input_offset * sum of the channel's weights.
    bias: &'a [i32],
    q: &'a RequantPerChannel<'a>,
    left: &'a [i32],
    right: &'a [i32],
}

impl ZpKernel<'_> {
    /// The 9 weight vectors and the requantization parameters of channels `ch..ch + 16` of a
    /// 3x3 filter.
    ///
    /// # Safety
    /// `ch + 16 <= c`, the filter is 3x3 (9 * c values), and `requant_kinds` accepted the
    /// channel parameters (see [`Requant16::load`]).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn block3x3(&self, ch: usize) -> ([int8x16_t; 9], Requant16) {
        let (c, q) = (self.g.in_c, self.q);
        // SAFETY: caller contract: 16 values of each tap's weights and of each parameter.
        unsafe {
            let w = std::array::from_fn(|t| vld1q_s8(self.filter.as_ptr().add(t * c + ch)));
            let p = Requant16::load(
                self.bias.as_ptr(),
                q.multipliers.as_ptr(),
                q.shifts.as_ptr(),
                ch,
                q.output_offset,
                q.act_min,
                q.act_max,
            );
            (w, p)
        }
    }
}

/// Depth multiplier 1, filter_offset 0; `PAIR`: no weight is -128, so two taps share an i16
/// lane (|x·w| <= 128·127, two of them fit in i16).
#[target_feature(enable = "neon")]
unsafe fn dw_i8_zp<const PAIR: bool>(k: &ZpKernel<'_>, rows: Range<usize>, out: &mut [i8]) {
    let (g, q) = (k.g, k.q);
    let c = g.in_c;
    let off = vdupq_n_s32(q.output_offset);
    let lo = vdupq_n_s32(q.act_min);
    let hi = vdupq_n_s32(q.act_max);
    let op = out.as_mut_ptr();
    let params = |ch: usize| {
        // SAFETY: callers pass ch + 4 <= c; mult/left/right have >= c values.
        unsafe {
            Params4 {
                mult: vld1q_s32(q.multipliers.as_ptr().add(ch)),
                left: vld1q_s32(k.left.as_ptr().add(ch)),
                right: vld1q_s32(k.right.as_ptr().add(ch)),
            }
        }
    };
    // Taps relative to the window's first pixel: (input offset, filter offset), and the extent.
    let mut rel = reuse(&REL);
    for fy in 0..g.filter_h {
        for fx in 0..g.filter_w {
            rel.push((
                (fy * g.dilation_h * g.in_w + fx * g.dilation_w) * c,
                (fy * g.filter_w + fx) * c,
            ));
        }
    }
    let span_h = g.filter_h.saturating_sub(1) * g.dilation_h + 1;
    let span_w = g.filter_w.saturating_sub(1) * g.dilation_w + 1;
    // Every tap of the current output pixel: (input or pad pointer at channel 0, filter pointer).
    let mut taps = reuse(&TAP_PTRS);
    // The 9-tap register kernel: 3x3 filters, channels in blocks of 16, weights that pair.
    let kinds = requant_kinds(&q.shifts[..c], &q.multipliers[..c], q.output_offset);
    let fast = PAIR && g.filter_h * g.filter_w == 9 && c % 16 == 0 && c > 0 && kinds.is_some();
    let (left, shifted) = kinds.unwrap_or_default();
    // The activation clamp is skipped where its bounds are the int8 limits.
    let clamp = q.act_min > i8::MIN as i32 || q.act_max < i8::MAX as i32;
    // The 3x3 kernel `$f` for this call's requantization variant.
    macro_rules! variant {
        ($f:ident, ($($arg:expr),*)) => {
            match (left, shifted, clamp) {
                (true, true, true) => $f::<true, true, true>($($arg),*),
                (true, false, true) => $f::<true, false, true>($($arg),*),
                (false, true, true) => $f::<false, true, true>($($arg),*),
                (false, false, true) => $f::<false, false, true>($($arg),*),
                (true, true, false) => $f::<true, true, false>($($arg),*),
                (true, false, false) => $f::<true, false, false>($($arg),*),
                (false, true, false) => $f::<false, true, false>($($arg),*),
                (false, false, false) => $f::<false, false, false>($($arg),*),
            }
        };
    }
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        // Interior output columns x_lo..x_hi of an interior row: every tap inside the input.
        let mut interior = 0..0;
        if fast {
            if let Some(y0) = (oy * g.stride_h).checked_sub(g.pad_top) {
                if y0 + span_h <= g.in_h && g.in_w >= span_w {
                    let x_lo = g.pad_left.div_ceil(g.stride_w);
                    let x_hi = ((g.in_w - span_w + g.pad_left) / g.stride_w + 1).min(g.out_w);
                    if x_lo < x_hi {
                        interior = x_lo..x_hi;
                        // SAFETY: rows y0..y0 + span_h of image b and columns
                        // x_lo*stride - pad_left .. (x_hi-1)*stride - pad_left + span_w of them
                        // are inside the input; out row `row`, columns x_lo..x_hi are inside out.
                        unsafe {
                            let start =
                                ((b * g.in_h + y0) * g.in_w + (x_lo * g.stride_w - g.pad_left)) * c;
                            let dst = op.add((row * g.out_w + x_lo) * c);
                            let n = x_hi - x_lo;
                            variant!(dw3x3_row, (k, start, n, dst))
                        }
                    }
                }
            }
        }
        for ox in 0..g.out_w {
            if interior.contains(&ox) {
                continue;
            }
            let obase = (row * g.out_w + ox) * c;
            taps.clear();
            // Interior pixel: every tap is inside the input, at a fixed offset from the first.
            let (y0, x0) = (
                (oy * g.stride_h).checked_sub(g.pad_top),
                (ox * g.stride_w).checked_sub(g.pad_left),
            );
            match (y0, x0) {
                (Some(y0), Some(x0)) if y0 + span_h <= g.in_h && x0 + span_w <= g.in_w => {
                    // SAFETY: (y0, x0) and every tap offset stay inside image b (checked above).
                    let base =
                        unsafe { k.input.as_ptr().add(((b * g.in_h + y0) * g.in_w + x0) * c) };
                    for &(xo, wo) in rel.iter() {
                        // SAFETY: as above; wo < filter_h * filter_w * c.
                        taps.push(unsafe { (base.add(xo), k.filter.as_ptr().add(wo)) });
                    }
                }
                _ => {
                    for fy in 0..g.filter_h {
                        for fx in 0..g.filter_w {
                            // SAFETY: tap (fy, fx) < filter_h * filter_w: its c weights are in filter.
                            let wptr = unsafe { k.filter.as_ptr().add((fy * g.filter_w + fx) * c) };
                            let xptr = match (g.in_y(oy, fy), g.in_x(ox, fx)) {
                                // SAFETY: iy < in_h, ix < in_w, b < batch: the pixel's c values are in input.
                                (Some(iy), Some(ix)) => unsafe {
                                    k.input.as_ptr().add(((b * g.in_h + iy) * g.in_w + ix) * c)
                                },
                                _ => k.pad.as_ptr(),
                            };
                            taps.push((xptr, wptr));
                        }
                    }
                }
            }
            if fast && c >= EDGE_MIN_C {
                let t9: [*const i8; 9] = std::array::from_fn(|t| taps[t].0);
                // SAFETY: every tap pointer has c readable values (an input pixel or the pad
                // row); out row `row`, column ox has c bytes; `fast` checked the kernel's
                // conditions.
                unsafe {
                    let dst = op.add(obase);
                    variant!(dw3x3_edge, (k, &t9, dst))
                }
                continue;
            }
            let mut ch = 0;
            while ch + 16 <= c {
                // SAFETY: ch + 16 <= c = len(bias).
                let mut acc = unsafe {
                    let bp = k.bias.as_ptr().add(ch);
                    [
                        vld1q_s32(bp),
                        vld1q_s32(bp.add(4)),
                        vld1q_s32(bp.add(8)),
                        vld1q_s32(bp.add(12)),
                    ]
                };
                let mut t = 0;
                if PAIR {
                    while t + 2 <= taps.len() {
                        let ((x0, w0), (x1, w1)) = (taps[t], taps[t + 1]);
                        // SAFETY: every tap pointer has c readable values; ch + 16 <= c.
                        let (x0, w0, x1, w1) = unsafe {
                            (
                                vld1q_s8(x0.add(ch)),
                                vld1q_s8(w0.add(ch)),
                                vld1q_s8(x1.add(ch)),
                                vld1q_s8(w1.add(ch)),
                            )
                        };
                        let pl = vmlal_s8(
                            vmull_s8(vget_low_s8(x0), vget_low_s8(w0)),
                            vget_low_s8(x1),
                            vget_low_s8(w1),
                        );
                        let ph = vmlal_high_s8(vmull_high_s8(x0, w0), x1, w1);
                        acc[0] = vaddw_s16(acc[0], vget_low_s16(pl));
                        acc[1] = vaddw_high_s16(acc[1], pl);
                        acc[2] = vaddw_s16(acc[2], vget_low_s16(ph));
                        acc[3] = vaddw_high_s16(acc[3], ph);
                        t += 2;
                    }
                }
                while t < taps.len() {
                    let (xp, wp) = taps[t];
                    // SAFETY: every tap pointer has c readable values; ch + 16 <= c.
                    let (x, w) = unsafe { (vld1q_s8(xp.add(ch)), vld1q_s8(wp.add(ch))) };
                    let pl = vmull_s8(vget_low_s8(x), vget_low_s8(w));
                    let ph = vmull_high_s8(x, w);
                    acc[0] = vaddw_s16(acc[0], vget_low_s16(pl));
                    acc[1] = vaddw_high_s16(acc[1], pl);
                    acc[2] = vaddw_s16(acc[2], vget_low_s16(ph));
                    acc[3] = vaddw_high_s16(acc[3], ph);
                    t += 1;
                }
                let y0 = narrow8(
                    finish4(acc[0], &params(ch), off, lo, hi),
                    finish4(acc[1], &params(ch + 4), off, lo, hi),
                );
                let y1 = narrow8(
                    finish4(acc[2], &params(ch + 8), off, lo, hi),
                    finish4(acc[3], &params(ch + 12), off, lo, hi),
                );
                // SAFETY: row < batch*out_h, ox < out_w, ch + 16 <= c: inside out.
                unsafe { vst1q_s8(op.add(obase + ch), vcombine_s8(y0, y1)) };
                ch += 16;
            }
            while ch + 8 <= c {
                // SAFETY: ch + 8 <= c = len(bias).
                let mut acc = unsafe {
                    [
                        vld1q_s32(k.bias.as_ptr().add(ch)),
                        vld1q_s32(k.bias.as_ptr().add(ch + 4)),
                    ]
                };
                for &(xp, wp) in taps.iter() {
                    // SAFETY: every tap pointer has c readable values; ch + 8 <= c.
                    let p = unsafe { vmull_s8(vld1_s8(xp.add(ch)), vld1_s8(wp.add(ch))) };
                    acc[0] = vaddw_s16(acc[0], vget_low_s16(p));
                    acc[1] = vaddw_high_s16(acc[1], p);
                }
                let y = narrow8(
                    finish4(acc[0], &params(ch), off, lo, hi),
                    finish4(acc[1], &params(ch + 4), off, lo, hi),
                );
                // SAFETY: ch + 8 <= c: inside out.
                unsafe { vst1_s8(op.add(obase + ch), y) };
                ch += 8;
            }
            for ch in ch..c {
                let mut acc = k.bias[ch];
                for &(xp, wp) in taps.iter() {
                    // SAFETY: every tap pointer has c readable values; ch < c.
                    let (x, w) = unsafe { (*xp.add(ch) as i32, *wp.add(ch) as i32) };
                    acc = acc.wrapping_add(x * w);
                }
                out[obase + ch] = finish1(
                    acc,
                    q.multipliers[ch],
                    q.shifts[ch],
                    q.output_offset,
                    q.act_min,
                    q.act_max,
                );
            }
        }
    }
}

/// One row segment of `n` interior output pixels of a 3x3, depth-multiplier-1, zero-point-padded
/// int8 depthwise convolution whose weights pair (no -128): channels in blocks of 16, the block's
/// 9 weight vectors and requantization parameters held in registers across the pixels. Per pixel
/// and block: 9 loads, taps (0,1) (2,3) (4,5) (6,7) paired in int16 (SMULL + SMLAL, exact: two
/// products of |x| <= 128, |w| <= 127), widened into the bias with SADDW, tap 8 alone, then
/// [`Requant16`]. Integer sums are exact in any order: bit-identical to the per-pixel path.
///
/// # Safety
/// `k` validated by `depthwise_i8`; `start` is the input index of channel 0 of the first pixel's
/// top-left tap, and the `n` pixels (stride `stride_w`) with all their taps lie inside the input;
/// `dst` points to `n * c` writable output bytes; `c % 16 == 0`; 3x3 filter; `requant_kinds`
/// accepted the channel parameters (`LEFT`, `SHIFTED` are its answer).
#[target_feature(enable = "neon")]
unsafe fn dw3x3_row<const LEFT: bool, const SHIFTED: bool, const CLAMP: bool>(
    k: &ZpKernel<'_>,
    start: usize,
    n: usize,
    dst: *mut i8,
) {
    let g = k.g;
    let c = g.in_c;
    let step = g.stride_w * c;
    let rel: [usize; 9] = std::array::from_fn(|t| {
        let (fy, fx) = (t / 3, t % 3);
        (fy * g.dilation_h * g.in_w + fx * g.dilation_w) * c
    });
    for ch in (0..c).step_by(16) {
        // SAFETY: ch + 16 <= c: the block's weights of every tap (filter holds 9 * c values),
        // the channel parameters (c values each), the input taps (caller contract) and the
        // outputs (n pixels of c bytes from dst) are in bounds.
        unsafe {
            let (w, p) = k.block3x3(ch);
            let mut x0 = k.input.as_ptr().add(start + ch);
            let mut o = dst.add(ch);
            for _ in 0..n {
                let x: [int8x16_t; 9] = std::array::from_fn(|t| vld1q_s8(x0.add(rel[t])));
                vst1q_s8(o, dw3x3_px::<LEFT, SHIFTED, CLAMP>(&x, &w, &p));
                x0 = x0.add(step);
                o = o.add(c);
            }
        }
    }
}

/// One border output pixel of the kernel of [`dw3x3_row`], whose 9 taps are read from `taps[t]`
/// (channel 0 of the tap's input pixel, or the `c` zero points of `k.pad` for a tap outside the
/// input: its term is 0, as the oracle's skipped tap): every block of 16 channels, weights and
/// channel parameters loaded per block.
///
/// # Safety
/// As [`dw3x3_row`], with every `taps[t]` pointing to `c` readable bytes and `dst` to `c`
/// writable bytes.
#[target_feature(enable = "neon")]
unsafe fn dw3x3_edge<const LEFT: bool, const SHIFTED: bool, const CLAMP: bool>(
    k: &ZpKernel<'_>,
    taps: &[*const i8; 9],
    dst: *mut i8,
) {
    let c = k.g.in_c;
    for ch in (0..c).step_by(16) {
        // SAFETY: ch + 16 <= c: the block's weights of every tap (filter holds 9 * c values),
        // the channel parameters (c values each), the taps and the output (caller contract).
        unsafe {
            let (w, p) = k.block3x3(ch);
            let x: [int8x16_t; 9] = std::array::from_fn(|t| vld1q_s8(taps[t].add(ch)));
            vst1q_s8(dst.add(ch), dw3x3_px::<LEFT, SHIFTED, CLAMP>(&x, &w, &p));
        }
    }
}

/// The 16 channels of one output pixel of the 3x3 kernels: taps (0,1) (2,3) (4,5) (6,7) paired
/// in int16 (SMULL + SMLAL, exact: two products of |x| <= 128, |w| <= 127), widened into the bias
/// with SADDW, tap 8 alone, then [`Requant16`]. Integer sums are exact in any order.
#[inline(always)]
fn dw3x3_px<const LEFT: bool, const SHIFTED: bool, const CLAMP: bool>(
    x: &[int8x16_t; 9],
    w: &[int8x16_t; 9],
    p: &Requant16,
) -> int8x16_t {
    // SAFETY: the assembly only reads and writes the named vector registers (NEON is part of
    // the aarch64 baseline); `finish` is plain NEON arithmetic.
    unsafe {
        // Inline assembly keeps SMULL2/SMLAL2 on the high halves (the intrinsics were
        // lowered to EXT + SMULL) and starts the sums from the bias registers.
        let mut acc = [vdupq_n_s32(0); 4];
        asm!(
            "smull {pl:v}.8h, {x0:v}.8b, {w0:v}.8b",
            "smull2 {ph:v}.8h, {x0:v}.16b, {w0:v}.16b",
            "smlal {pl:v}.8h, {x1:v}.8b, {w1:v}.8b",
            "smlal2 {ph:v}.8h, {x1:v}.16b, {w1:v}.16b",
            "saddw {a0:v}.4s, {b0:v}.4s, {pl:v}.4h",
            "saddw2 {a1:v}.4s, {b1:v}.4s, {pl:v}.8h",
            "saddw {a2:v}.4s, {b2:v}.4s, {ph:v}.4h",
            "saddw2 {a3:v}.4s, {b3:v}.4s, {ph:v}.8h",
            x0 = in(vreg) x[0], x1 = in(vreg) x[1], w0 = in(vreg) w[0], w1 = in(vreg) w[1],
            b0 = in(vreg) p.bias[0], b1 = in(vreg) p.bias[1],
            b2 = in(vreg) p.bias[2], b3 = in(vreg) p.bias[3],
            a0 = out(vreg) acc[0], a1 = out(vreg) acc[1],
            a2 = out(vreg) acc[2], a3 = out(vreg) acc[3],
            pl = out(vreg) _, ph = out(vreg) _,
            options(pure, nomem, nostack),
        );
        for t in [2, 4, 6] {
            asm!(
                "smull {pl:v}.8h, {x0:v}.8b, {w0:v}.8b",
                "smull2 {ph:v}.8h, {x0:v}.16b, {w0:v}.16b",
                "smlal {pl:v}.8h, {x1:v}.8b, {w1:v}.8b",
                "smlal2 {ph:v}.8h, {x1:v}.16b, {w1:v}.16b",
                "saddw {a0:v}.4s, {a0:v}.4s, {pl:v}.4h",
                "saddw2 {a1:v}.4s, {a1:v}.4s, {pl:v}.8h",
                "saddw {a2:v}.4s, {a2:v}.4s, {ph:v}.4h",
                "saddw2 {a3:v}.4s, {a3:v}.4s, {ph:v}.8h",
                x0 = in(vreg) x[t], x1 = in(vreg) x[t + 1],
                w0 = in(vreg) w[t], w1 = in(vreg) w[t + 1],
                a0 = inout(vreg) acc[0], a1 = inout(vreg) acc[1],
                a2 = inout(vreg) acc[2], a3 = inout(vreg) acc[3],
                pl = out(vreg) _, ph = out(vreg) _,
                options(pure, nomem, nostack),
            );
        }
        asm!(
            "smull {pl:v}.8h, {x0:v}.8b, {w0:v}.8b",
            "smull2 {ph:v}.8h, {x0:v}.16b, {w0:v}.16b",
            "saddw {a0:v}.4s, {a0:v}.4s, {pl:v}.4h",
            "saddw2 {a1:v}.4s, {a1:v}.4s, {pl:v}.8h",
            "saddw {a2:v}.4s, {a2:v}.4s, {ph:v}.4h",
            "saddw2 {a3:v}.4s, {a3:v}.4s, {ph:v}.8h",
            x0 = in(vreg) x[8], w0 = in(vreg) w[8],
            a0 = inout(vreg) acc[0], a1 = inout(vreg) acc[1],
            a2 = inout(vreg) acc[2], a3 = inout(vreg) acc[3],
            pl = out(vreg) _, ph = out(vreg) _,
            options(pure, nomem, nostack),
        );
        if CLAMP {
            p.finish::<LEFT, SHIFTED>(acc)
        } else {
            p.unclamped::<LEFT, SHIFTED>(acc)
        }
    }
}

#[target_feature(enable = "neon")]
unsafe fn dw_i8_neon(k: &NeonKernel<'_>, rows: Range<usize>, out: &mut [i8]) {
    let NeonKernel {
        g,
        input,
        w16,
        bias,
        q,
        left,
        right,
    } = *k;
    let c = g.in_c;
    let io = vdupq_n_s16(q.input_offset as i16);
    let off = vdupq_n_s32(q.output_offset);
    let lo = vdupq_n_s32(q.act_min);
    let hi = vdupq_n_s32(q.act_max);
    let (ip, wp, op) = (input.as_ptr(), w16.as_ptr(), out.as_mut_ptr());
    let params = |ch: usize| {
        // SAFETY: callers pass ch + 4 <= c; mult/left/right have >= c values.
        unsafe {
            Params4 {
                mult: vld1q_s32(q.multipliers.as_ptr().add(ch)),
                left: vld1q_s32(left.as_ptr().add(ch)),
                right: vld1q_s32(right.as_ptr().add(ch)),
            }
        }
    };
    // Valid taps of the current output pixel: (input offset of channel 0, filter offset).
    let mut taps = reuse(&TAPS);
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        for ox in 0..g.out_w {
            let obase = (row * g.out_w + ox) * c;
            taps.clear();
            for fy in 0..g.filter_h {
                let Some(iy) = g.in_y(oy, fy) else { continue };
                for fx in 0..g.filter_w {
                    let Some(ix) = g.in_x(ox, fx) else { continue };
                    taps.push((
                        ((b * g.in_h + iy) * g.in_w + ix) * c,
                        (fy * g.filter_w + fx) * c,
                    ));
                }
            }
            let mut ch = 0;
            while ch + 16 <= c {
                // SAFETY: ch + 16 <= c = len(bias).
                let mut acc = unsafe {
                    let bp = bias.as_ptr().add(ch);
                    [
                        vld1q_s32(bp),
                        vld1q_s32(bp.add(4)),
                        vld1q_s32(bp.add(8)),
                        vld1q_s32(bp.add(12)),
                    ]
                };
                for &(xo, wo) in taps.iter() {
                    // SAFETY: the tap's pixel is inside the input (iy < in_h, ix < in_w,
                    // b < batch) and ch + 16 <= c: 16 bytes inside input; the tap's 16 filter
                    // values are inside w16 (filter_h * filter_w * c).
                    let (x, wl, wh) = unsafe {
                        let w = wp.add(wo + ch);
                        (vld1q_s8(ip.add(xo + ch)), vld1q_s16(w), vld1q_s16(w.add(8)))
                    };
                    let xl = vaddw_s8(io, vget_low_s8(x));
                    let xh = vaddw_high_s8(io, x);
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(xl), vget_low_s16(wl));
                    acc[1] = vmlal_high_s16(acc[1], xl, wl);
                    acc[2] = vmlal_s16(acc[2], vget_low_s16(xh), vget_low_s16(wh));
                    acc[3] = vmlal_high_s16(acc[3], xh, wh);
                }
                let y0 = narrow8(
                    finish4(acc[0], &params(ch), off, lo, hi),
                    finish4(acc[1], &params(ch + 4), off, lo, hi),
                );
                let y1 = narrow8(
                    finish4(acc[2], &params(ch + 8), off, lo, hi),
                    finish4(acc[3], &params(ch + 12), off, lo, hi),
                );
                // SAFETY: row < batch*out_h, ox < out_w, ch + 16 <= c: inside out.
                unsafe { vst1q_s8(op.add(obase + ch), vcombine_s8(y0, y1)) };
                ch += 16;
            }
            while ch + 8 <= c {
                // SAFETY: ch + 8 <= c = len(bias).
                let mut acc = unsafe {
                    [
                        vld1q_s32(bias.as_ptr().add(ch)),
                        vld1q_s32(bias.as_ptr().add(ch + 4)),
                    ]
                };
                for &(xo, wo) in taps.iter() {
                    // SAFETY: as above with 8 channels.
                    let (x, w) = unsafe { (vld1_s8(ip.add(xo + ch)), vld1q_s16(wp.add(wo + ch))) };
                    let x = vaddw_s8(io, x);
                    acc[0] = vmlal_s16(acc[0], vget_low_s16(x), vget_low_s16(w));
                    acc[1] = vmlal_high_s16(acc[1], x, w);
                }
                let y = narrow8(
                    finish4(acc[0], &params(ch), off, lo, hi),
                    finish4(acc[1], &params(ch + 4), off, lo, hi),
                );
                // SAFETY: ch + 8 <= c: inside out.
                unsafe { vst1_s8(op.add(obase + ch), y) };
                ch += 8;
            }
            for ch in ch..c {
                let mut acc = bias[ch];
                for &(xo, wo) in taps.iter() {
                    let x = input[xo + ch] as i32;
                    acc = acc.wrapping_add(w16[wo + ch] as i32 * (x + q.input_offset));
                }
                out[obase + ch] = finish1(
                    acc,
                    q.multipliers[ch],
                    q.shifts[ch],
                    q.output_offset,
                    q.act_min,
                    q.act_max,
                );
            }
        }
    }
}

/// Per-element int8 depthwise (any depth multiplier), same arithmetic as the scalar oracle.
fn depthwise_i8_plain(
    op: &Depthwise<'_, i8, i32>,
    q: &RequantPerChannel<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    let Depthwise {
        g,
        depth_multiplier: dm,
        input,
        filter,
        bias,
    } = *op;
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        for ox in 0..g.out_w {
            let obase = (row * g.out_w + ox) * g.out_c;
            for c in 0..g.in_c {
                for m in 0..dm {
                    let oc = c * dm + m;
                    let mut acc = 0i32;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            let x = input[((b * g.in_h + iy) * g.in_w + ix) * g.in_c + c] as i32;
                            let w = filter[(fy * g.filter_w + fx) * g.out_c + oc] as i32;
                            acc = acc.wrapping_add(
                                (w.wrapping_add(q.filter_offset))
                                    .wrapping_mul(x.wrapping_add(q.input_offset)),
                            );
                        }
                    }
                    if let Some(bias) = bias {
                        acc = acc.wrapping_add(bias[oc]);
                    }
                    out[obase + oc] = finish1(
                        acc,
                        q.multipliers[oc],
                        q.shifts[oc],
                        q.output_offset,
                        q.act_min,
                        q.act_max,
                    );
                }
            }
        }
    }
}

/// Float depthwise convolution of output rows `rows`, clamped to `clamp`.
pub fn depthwise_f32(
    path: KernelPath,
    op: &Depthwise<'_, f32, f32>,
    clamp: Clamp,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let _ = path;
    let Depthwise {
        g,
        depth_multiplier,
        input,
        filter,
        bias,
    } = *op;
    let clamp = (clamp.min, clamp.max);
    check_geometry(
        g,
        depth_multiplier,
        input.len(),
        filter.len(),
        &rows,
        out.len(),
    );
    if let Some(b) = bias {
        assert!(b.len() >= g.out_c, "depthwise_f32: bias too short");
    }
    if depth_multiplier != 1 {
        depthwise_f32_plain(op, clamp, rows, out);
        return;
    }
    // SAFETY: geometry and lengths validated above.
    unsafe { dw_f32_neon(g, input, filter, bias, clamp, rows, out) }
}

#[target_feature(enable = "neon")]
unsafe fn dw_f32_neon(
    g: &ConvGeom,
    input: &[f32],
    filter: &[f32],
    bias: Option<&[f32]>,
    clamp: (f32, f32),
    rows: Range<usize>,
    out: &mut [f32],
) {
    let c = g.in_c;
    let (lo, hi) = (vdupq_n_f32(clamp.0), vdupq_n_f32(clamp.1));
    let (ip, wp, op) = (input.as_ptr(), filter.as_ptr(), out.as_mut_ptr());
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        for ox in 0..g.out_w {
            let obase = (row * g.out_w + ox) * c;
            let mut ch = 0;
            while ch + 16 <= c {
                let mut acc = [vdupq_n_f32(0.0); 4];
                for fy in 0..g.filter_h {
                    let Some(iy) = g.in_y(oy, fy) else { continue };
                    for fx in 0..g.filter_w {
                        let Some(ix) = g.in_x(ox, fx) else { continue };
                        let ib = ((b * g.in_h + iy) * g.in_w + ix) * c + ch;
                        let wb = (fy * g.filter_w + fx) * c + ch;
                        for (v, a) in acc.iter_mut().enumerate() {
                            // SAFETY: ch + 16 <= c: 4 values at +4v inside input and filter.
                            let (x, w) = unsafe {
                                (vld1q_f32(ip.add(ib + 4 * v)), vld1q_f32(wp.add(wb + 4 * v)))
                            };
                            // Multiply then add (no FMA), in the scalar kernel's order: the same rounding.
                            *a = vaddq_f32(*a, vmulq_f32(x, w));
                        }
                    }
                }
                for (v, a) in acc.iter().enumerate() {
                    let mut y = *a;
                    if let Some(bias) = bias {
                        // SAFETY: ch + 16 <= c <= len(bias).
                        y = vaddq_f32(y, unsafe { vld1q_f32(bias.as_ptr().add(ch + 4 * v)) });
                    }
                    // SAFETY: inside out (row, ox, ch + 16 <= c).
                    unsafe {
                        vst1q_f32(op.add(obase + ch + 4 * v), vminq_f32(vmaxq_f32(y, lo), hi))
                    };
                }
                ch += 16;
            }
            while ch + 4 <= c {
                let mut acc = vdupq_n_f32(0.0);
                for fy in 0..g.filter_h {
                    let Some(iy) = g.in_y(oy, fy) else { continue };
                    for fx in 0..g.filter_w {
                        let Some(ix) = g.in_x(ox, fx) else { continue };
                        let ib = ((b * g.in_h + iy) * g.in_w + ix) * c + ch;
                        let wb = (fy * g.filter_w + fx) * c + ch;
                        // SAFETY: ch + 4 <= c: inside input and filter.
                        let (x, w) = unsafe { (vld1q_f32(ip.add(ib)), vld1q_f32(wp.add(wb))) };
                        acc = vaddq_f32(acc, vmulq_f32(x, w));
                    }
                }
                if let Some(bias) = bias {
                    // SAFETY: ch + 4 <= c <= len(bias).
                    acc = vaddq_f32(acc, unsafe { vld1q_f32(bias.as_ptr().add(ch)) });
                }
                // SAFETY: inside out.
                unsafe { vst1q_f32(op.add(obase + ch), vminq_f32(vmaxq_f32(acc, lo), hi)) };
                ch += 4;
            }
            for ch in ch..c {
                let mut acc = 0.0f32;
                for fy in 0..g.filter_h {
                    let Some(iy) = g.in_y(oy, fy) else { continue };
                    for fx in 0..g.filter_w {
                        let Some(ix) = g.in_x(ox, fx) else { continue };
                        acc += input[((b * g.in_h + iy) * g.in_w + ix) * c + ch]
                            * filter[(fy * g.filter_w + fx) * c + ch];
                    }
                }
                if let Some(bias) = bias {
                    acc += bias[ch];
                }
                out[obase + ch] = acc.max(clamp.0).min(clamp.1);
            }
        }
    }
}

fn depthwise_f32_plain(
    op: &Depthwise<'_, f32, f32>,
    clamp: (f32, f32),
    rows: Range<usize>,
    out: &mut [f32],
) {
    let Depthwise {
        g,
        depth_multiplier: dm,
        input,
        filter,
        bias,
    } = *op;
    for row in rows {
        let (b, oy) = (row / g.out_h, row % g.out_h);
        for ox in 0..g.out_w {
            let obase = (row * g.out_w + ox) * g.out_c;
            for c in 0..g.in_c {
                for m in 0..dm {
                    let oc = c * dm + m;
                    let mut acc = 0.0f32;
                    for fy in 0..g.filter_h {
                        let Some(iy) = g.in_y(oy, fy) else { continue };
                        for fx in 0..g.filter_w {
                            let Some(ix) = g.in_x(ox, fx) else { continue };
                            acc += input[((b * g.in_h + iy) * g.in_w + ix) * g.in_c + c]
                                * filter[(fy * g.filter_w + fx) * g.out_c + oc];
                        }
                    }
                    if let Some(bias) = bias {
                        acc += bias[oc];
                    }
                    out[obase + oc] = acc.max(clamp.0).min(clamp.1);
                }
            }
        }
    }
}
