//! Depthwise convolution (NHWC) on NEON, vectorized along channels, for a range of output rows.
//!
//! Depth multiplier 1 runs the vector kernels (16, then 8 (int8) / 4 (f32) channels at a time,
//! then a scalar tail); other multipliers use a plain per-element loop. int8: `x + input_offset`
//! is formed with SADDW in int16, the filter (plus `filter_offset`) is widened to int16 once per
//! call, and products are accumulated exactly with SMLAL/SMLAL2 into int32 (the scalar oracle
//! computes the same products in i32 and adds them with wrapping); then the requantization of
//! `requant.rs`. Offsets outside the int16-safe range (never in TFLite) use the plain loop.
//! With filter offset 0 and an int8 zero point (TFLite's int8 models) the zero-point kernel
//! [`dw_zp`] multiplies raw int8 values (SMULL, two taps per int16 lane) and ends in a
//! [`ZpOut`]: the requantization, or the float epilogue of the dynamic-range operator
//! ([`depthwise_hybrid`]), which shares its sums.

use std::arch::aarch64::*;
use std::arch::asm;
use std::ops::Range;

use super::requant::{finish4, finish_channel, narrow8, requant_kinds, Params4, Requant16};
use crate::engine::kernels::hybrid::DepthwiseRowOperands;
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
        // Zero-point padding (int8 TFLite models): see `ZpKernel`.
        let (mut bias2, mut pad) = (reuse(&BIAS), reuse(&PAD));
        let k = ZpKernel::new(
            g,
            input,
            filter,
            q.input_offset,
            |ch| bias.map_or(0, |b| b[ch]),
            (&mut bias2, &mut pad),
        );
        // SAFETY: NEON is part of the aarch64 baseline.
        let (off, lo, hi) = unsafe {
            (
                vdupq_n_s32(q.output_offset),
                vdupq_n_s32(q.act_min),
                vdupq_n_s32(q.act_max),
            )
        };
        let rq = Rq {
            q,
            left: &left,
            right: &right,
            bias: k.bias,
            off,
            lo,
            hi,
        };
        let kinds = requant_kinds(&q.shifts[..c], &q.multipliers[..c], q.output_offset);
        // The activation clamp is skipped where its bounds are the int8 limits.
        let clamp = q.act_min > i8::MIN as i32 || q.act_max < i8::MAX as i32;
        // The 3x3 register kernels for this call's requantization variant.
        macro_rules! fast {
            ($($l:literal, $s:literal, $c:literal);*) => {
                match (kinds, clamp) {
                    $((Some(($l, $s)), $c) => dw_zp::<true, _>(&k, &Rq16::<$l, $s, $c>(rq), true, rows, out),)*
                    _ => unreachable!("requant_kinds answered"),
                }
            };
        }
        // SAFETY: geometry and lengths validated above; pad, bias2, left, right have c values;
        // `fast` (the 3x3 register kernels) only where the weights pair, the filter is 3x3
        // with channels in blocks of 16, and `requant_kinds` accepted the channel parameters.
        unsafe {
            if k.pair() && k.fits3x3() && kinds.is_some() {
                fast!(true, true, true; true, false, true; false, true, true; false, false, true;
                      true, true, false; true, false, false; false, true, false; false, false, false)
            } else if k.pair() {
                dw_zp::<true, _>(&k, &rq, false, rows, out)
            } else {
                dw_zp::<false, _>(&k, &rq, false, rows, out)
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

/// Operands of the zero-point-padding depthwise kernel [`dw_zp`], depth multiplier 1, filter
/// offset 0 (validated by its callers). A padded tap reads the input zero point
/// `-input_offset` (the row `pad`), whose term `(x + input_offset) · w` is 0 like the skipped tap
/// of the oracle; `input_offset · Σ w` over all taps moves into `bias`, so the taps need only
/// `x · w` (SMULL, exact in int16; SMLAL pairs two taps when no weight is -128).
struct ZpKernel<'a> {
    g: &'a ConvGeom,
    input: &'a [i8],
    filter: &'a [i8],
    /// `c` copies of the input zero point.
    pad: &'a [i8],
    /// bias + input_offset * sum of the channel's weights.
    bias: &'a [i32],
}

impl<'a> ZpKernel<'a> {
    /// The kernel's operands, with `bias` (`bias_of(ch) + input_offset · Σ_taps w`) and `pad`
    /// built into the two scratch vectors. `input_offset` is in [-127, 128] (minus an int8
    /// zero point); the geometry was validated (depth multiplier 1).
    fn new(
        g: &'a ConvGeom,
        input: &'a [i8],
        filter: &'a [i8],
        input_offset: i32,
        bias_of: impl Fn(usize) -> i32,
        (bias, pad): (&'a mut Vec<i32>, &'a mut Vec<i8>),
    ) -> Self {
        let (c, taps) = (g.in_c, g.filter_h * g.filter_w);
        bias.clear();
        bias.extend((0..c).map(|ch| {
            let s = (0..taps).fold(0i32, |s, t| s.wrapping_add(filter[t * c + ch] as i32));
            bias_of(ch).wrapping_add(input_offset.wrapping_mul(s))
        }));
        pad.clear();
        pad.resize(c, (-input_offset) as i8);
        ZpKernel {
            g,
            input,
            filter,
            pad,
            bias,
        }
    }

    /// No weight is -128: two taps' products share an int16 lane (|x·w| <= 128·127).
    fn pair(&self) -> bool {
        let g = self.g;
        !self.filter[..g.filter_h * g.filter_w * g.in_c].contains(&i8::MIN)
    }

    /// The shape of the 3x3 register kernels ([`dw3x3_row`], [`dw3x3_edge`]): a 3x3 filter and
    /// channels in blocks of 16.
    fn fits3x3(&self) -> bool {
        let g = self.g;
        g.filter_h == 3 && g.filter_w == 3 && g.in_c % 16 == 0 && g.in_c > 0
    }

    /// The 9 weight vectors and the 16 start values (`bias`) of channels `ch..ch + 16` of a
    /// 3x3 filter.
    ///
    /// # Safety
    /// `ch + 16 <= c` and the filter is 3x3 (9 * c values).
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn block3x3(&self, ch: usize) -> ([int8x16_t; 9], [int32x4_t; 4]) {
        let c = self.g.in_c;
        // SAFETY: caller contract: 16 values of each tap's weights and of the bias.
        unsafe {
            let w = std::array::from_fn(|t| vld1q_s8(self.filter.as_ptr().add(t * c + ch)));
            let b = std::array::from_fn(|q| vld1q_s32(self.bias.as_ptr().add(ch + 4 * q)));
            (w, b)
        }
    }
}

/// What [`dw_zp`] makes of the int32 sums of an output pixel's channels (the start value
/// [`ZpKernel::bias`] included): int8 by requantization ([`Rq`], [`Rq16`]), or floats by the
/// dynamic-range epilogue ([`FloatOut`]).
trait ZpOut {
    type T: Copy;
    /// Parameters of channels `ch..ch + 16` that the 3x3 kernels hold in registers.
    type Block;

    /// # Safety
    /// `ch + 16 <=` the channel count, and the implementation's own conditions hold.
    unsafe fn block(&self, ch: usize) -> Self::Block;

    /// The 16 channels of `block` from their sums `acc` into `dst`.
    ///
    /// # Safety
    /// `dst` has 16 writable values.
    unsafe fn put_block(&self, block: &Self::Block, acc: [int32x4_t; 4], dst: *mut Self::T);

    /// Channels `ch..ch + 16` outside the 3x3 kernels.
    ///
    /// # Safety
    /// `ch + 16 <=` the channel count; `dst` has 16 writable values.
    unsafe fn put16(&self, ch: usize, acc: [int32x4_t; 4], dst: *mut Self::T);

    /// Channels `ch..ch + 8`.
    ///
    /// # Safety
    /// `ch + 8 <=` the channel count; `dst` has 8 writable values.
    unsafe fn put8(&self, ch: usize, acc: [int32x4_t; 2], dst: *mut Self::T);

    /// Channel `ch` (`ch <` the channel count).
    fn put1(&self, ch: usize, acc: i32) -> Self::T;
}

/// Requantization to int8, any channel parameters ([`finish4`] with per-channel vectors).
#[derive(Clone, Copy)]
struct Rq<'a> {
    q: &'a RequantPerChannel<'a>,
    left: &'a [i32],
    right: &'a [i32],
    /// The kernel's start values (for [`Requant16::load`]).
    bias: &'a [i32],
    /// The output offset and the activation bounds in every lane.
    off: int32x4_t,
    lo: int32x4_t,
    hi: int32x4_t,
}

impl Rq<'_> {
    /// `finish4` of channels `ch..ch + 4`.
    ///
    /// # Safety
    /// `ch + 4 <=` the channel count (`left`, `right` and the multipliers have c values).
    #[inline(always)]
    unsafe fn finish(&self, acc: int32x4_t, ch: usize) -> int32x4_t {
        let q = self.q;
        // SAFETY: caller contract; NEON is part of the aarch64 baseline.
        unsafe {
            let p = Params4 {
                mult: vld1q_s32(q.multipliers.as_ptr().add(ch)),
                left: vld1q_s32(self.left.as_ptr().add(ch)),
                right: vld1q_s32(self.right.as_ptr().add(ch)),
            };
            finish4(acc, &p, self.off, self.lo, self.hi)
        }
    }
}

impl ZpOut for Rq<'_> {
    type T = i8;
    type Block = usize;

    #[inline(always)]
    unsafe fn block(&self, ch: usize) -> usize {
        ch
    }

    #[inline(always)]
    unsafe fn put_block(&self, &ch: &usize, acc: [int32x4_t; 4], dst: *mut i8) {
        // SAFETY: `block` was given ch + 16 <= c; dst has 16 values (caller contract).
        unsafe { self.put16(ch, acc, dst) }
    }

    #[inline(always)]
    unsafe fn put16(&self, ch: usize, acc: [int32x4_t; 4], dst: *mut i8) {
        // SAFETY: ch + 16 <= c, dst has 16 writable bytes (caller contract).
        unsafe {
            let y0 = narrow8(self.finish(acc[0], ch), self.finish(acc[1], ch + 4));
            let y1 = narrow8(self.finish(acc[2], ch + 8), self.finish(acc[3], ch + 12));
            vst1q_s8(dst, vcombine_s8(y0, y1));
        }
    }

    #[inline(always)]
    unsafe fn put8(&self, ch: usize, acc: [int32x4_t; 2], dst: *mut i8) {
        // SAFETY: ch + 8 <= c, dst has 8 writable bytes (caller contract).
        unsafe {
            let y = narrow8(self.finish(acc[0], ch), self.finish(acc[1], ch + 4));
            vst1_s8(dst, y);
        }
    }

    #[inline(always)]
    fn put1(&self, ch: usize, acc: i32) -> i8 {
        let q = self.q;
        finish_channel(q, acc, ch)
    }
}

/// Requantization to int8 with the channel parameters in registers ([`Requant16`]), in the
/// variant `requant_kinds` chose (`LEFT`, `SHIFTED`; `CLAMP`: the activation bounds are not the
/// int8 limits). Outside the 3x3 kernels as [`Rq`].
struct Rq16<'a, const LEFT: bool, const SHIFTED: bool, const CLAMP: bool>(Rq<'a>);

impl<const LEFT: bool, const SHIFTED: bool, const CLAMP: bool> ZpOut
    for Rq16<'_, LEFT, SHIFTED, CLAMP>
{
    type T = i8;
    type Block = Requant16;

    /// # Safety
    /// As the trait's, and `requant_kinds` accepted the channel parameters (see
    /// [`Requant16::load`]) with the answer `(LEFT, SHIFTED)`.
    #[inline(always)]
    unsafe fn block(&self, ch: usize) -> Requant16 {
        let (r, q) = (&self.0, self.0.q);
        // SAFETY: caller contract: ch + 16 values of each array.
        unsafe {
            Requant16::load(
                r.bias.as_ptr(),
                q.multipliers.as_ptr(),
                q.shifts.as_ptr(),
                ch,
                q.output_offset,
                q.act_min,
                q.act_max,
            )
        }
    }

    #[inline(always)]
    unsafe fn put_block(&self, p: &Requant16, acc: [int32x4_t; 4], dst: *mut i8) {
        // SAFETY: dst has 16 writable bytes (caller contract); `finish` is plain NEON
        // arithmetic on parameters `block` loaded.
        unsafe {
            let y = if CLAMP {
                p.finish::<LEFT, SHIFTED>(acc)
            } else {
                p.unclamped::<LEFT, SHIFTED>(acc)
            };
            vst1q_s8(dst, y);
        }
    }

    #[inline(always)]
    unsafe fn put16(&self, ch: usize, acc: [int32x4_t; 4], dst: *mut i8) {
        // SAFETY: the caller's contract is `Rq::put16`'s.
        unsafe { self.0.put16(ch, acc, dst) }
    }

    #[inline(always)]
    unsafe fn put8(&self, ch: usize, acc: [int32x4_t; 2], dst: *mut i8) {
        // SAFETY: the caller's contract is `Rq::put8`'s.
        unsafe { self.0.put8(ch, acc, dst) }
    }

    #[inline(always)]
    fn put1(&self, ch: usize, acc: i32) -> i8 {
        self.0.put1(ch, acc)
    }
}

/// The float epilogue of the dynamic-range depthwise convolution (`Epilogue::Combined`):
/// `acc · (input_scale · weight_scales[c]) + bias[c]`, then `max(lo)`, `min(hi)`, each step
/// rounded as the oracle's (SCVTF, FMUL, FADD: no fused multiply-add; FMAXNM / FMINNM keep the
/// number against a NaN as `f32::max` / `min` do).
struct FloatOut<'a> {
    weight_scales: &'a [f32],
    input_scale: f32,
    bias: &'a [f32],
    lo: f32,
    hi: f32,
}

impl FloatOut<'_> {
    /// The scales and biases of channels `ch..ch + 4 * N`.
    ///
    /// # Safety
    /// `ch + 4 * N <=` the channel count (`weight_scales` and `bias` have c values).
    #[inline(always)]
    unsafe fn params<const N: usize>(&self, ch: usize) -> [[float32x4_t; N]; 2] {
        // SAFETY: caller contract; NEON is part of the aarch64 baseline.
        unsafe {
            let s = vdupq_n_f32(self.input_scale);
            let (w, b) = (self.weight_scales.as_ptr(), self.bias.as_ptr());
            [
                std::array::from_fn(|q| vmulq_f32(s, vld1q_f32(w.add(ch + 4 * q)))),
                std::array::from_fn(|q| vld1q_f32(b.add(ch + 4 * q))),
            ]
        }
    }

    /// `N` vectors of sums through the epilogue into `dst`.
    ///
    /// # Safety
    /// `dst` has `4 * N` writable values.
    #[inline(always)]
    unsafe fn store<const N: usize>(
        &self,
        [s, b]: &[[float32x4_t; N]; 2],
        acc: [int32x4_t; N],
        dst: *mut f32,
    ) {
        // SAFETY: caller contract; NEON is part of the aarch64 baseline.
        unsafe {
            let (lo, hi) = (vdupq_n_f32(self.lo), vdupq_n_f32(self.hi));
            for q in 0..N {
                let v = vaddq_f32(vmulq_f32(vcvtq_f32_s32(acc[q]), s[q]), b[q]);
                vst1q_f32(dst.add(4 * q), vminnmq_f32(vmaxnmq_f32(v, lo), hi));
            }
        }
    }
}

impl ZpOut for FloatOut<'_> {
    type T = f32;
    type Block = [[float32x4_t; 4]; 2];

    #[inline(always)]
    unsafe fn block(&self, ch: usize) -> Self::Block {
        // SAFETY: ch + 16 <= c (caller contract).
        unsafe { self.params::<4>(ch) }
    }

    #[inline(always)]
    unsafe fn put_block(&self, p: &Self::Block, acc: [int32x4_t; 4], dst: *mut f32) {
        // SAFETY: dst has 16 writable values (caller contract).
        unsafe { self.store(p, acc, dst) }
    }

    #[inline(always)]
    unsafe fn put16(&self, ch: usize, acc: [int32x4_t; 4], dst: *mut f32) {
        // SAFETY: ch + 16 <= c, dst has 16 writable values (caller contract).
        unsafe { self.store(&self.params::<4>(ch), acc, dst) }
    }

    #[inline(always)]
    unsafe fn put8(&self, ch: usize, acc: [int32x4_t; 2], dst: *mut f32) {
        // SAFETY: ch + 8 <= c, dst has 8 writable values (caller contract).
        unsafe { self.store(&self.params::<2>(ch), acc, dst) }
    }

    #[inline(always)]
    fn put1(&self, ch: usize, acc: i32) -> f32 {
        let s = self.input_scale * self.weight_scales[ch];
        (acc as f32 * s + self.bias[ch]).max(self.lo).min(self.hi)
    }
}

/// Dynamic-range depthwise convolution, depth multiplier 1, every output row of `op.g` into
/// `out`: the zero-point kernel's int32 sums `Σ (x + in_off) · w` of the quantized input (the
/// oracle's, exact in any order) and the float epilogue of [`FloatOut`]. `op.in_off` is minus an
/// int8 zero point ([-127, 128]) and the epilogue is `Combined` (the dispatcher checks both).
pub fn depthwise_hybrid(op: &DepthwiseRowOperands<'_>, out: &mut [f32]) {
    let g = op.g;
    let rows = 0..g.batch * g.out_h;
    check_geometry(g, 1, op.xq.len(), op.w8.len(), &rows, out.len());
    assert!(
        (-127..=128).contains(&op.in_off),
        "depthwise_hybrid: input offset {} is not minus an int8 zero point",
        op.in_off
    );
    let ep = &op.ep;
    assert!(
        ep.weight_scales.len() >= g.out_c && ep.bias.len() >= g.out_c,
        "depthwise_hybrid: scales or bias too short"
    );
    let (mut bias, mut pad) = (reuse(&BIAS), reuse(&PAD));
    let k = ZpKernel::new(g, op.xq, op.w8, op.in_off, |_| 0, (&mut bias, &mut pad));
    let e = FloatOut {
        weight_scales: ep.weight_scales,
        input_scale: ep.input_scale,
        bias: ep.bias,
        lo: ep.clamp.0,
        hi: ep.clamp.1,
    };
    // SAFETY: geometry and lengths validated above; pad, bias, scales have c values; `fast`
    // only where the weights pair and the filter is 3x3 with channels in blocks of 16.
    unsafe {
        if k.pair() {
            dw_zp::<true, _>(&k, &e, k.fits3x3(), rows, out)
        } else {
            dw_zp::<false, _>(&k, &e, false, rows, out)
        }
    }
}

/// Depth multiplier 1, filter_offset 0, outputs by `e`; `PAIR`: no weight is -128, so two taps
/// share an i16 lane (|x·w| <= 128·127, two of them fit in i16); `fast`: the 3x3 register
/// kernels for interior row segments and (from [`EDGE_MIN_C`] channels) border pixels.
///
/// # Safety
/// `k` validated by its builder (geometry, `c` values of `pad` and `bias`), `out` holds every
/// output row, `e` holds `c` channel parameters; `fast` only with `PAIR`,
/// [`ZpKernel::fits3x3`] and `e`'s block conditions.
#[target_feature(enable = "neon")]
unsafe fn dw_zp<const PAIR: bool, E: ZpOut>(
    k: &ZpKernel<'_>,
    e: &E,
    fast: bool,
    rows: Range<usize>,
    out: &mut [E::T],
) {
    let g = k.g;
    let c = g.in_c;
    let op = out.as_mut_ptr();
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
                            dw3x3_row(k, e, start, x_hi - x_lo, dst)
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
                // row); out row `row`, column ox has c values; `fast` checked the kernel's
                // conditions.
                unsafe { dw3x3_edge(k, e, &t9, op.add(obase)) };
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
                // SAFETY: row < batch*out_h, ox < out_w, ch + 16 <= c: inside out.
                unsafe { e.put16(ch, acc, op.add(obase + ch)) };
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
                // SAFETY: ch + 8 <= c: inside out.
                unsafe { e.put8(ch, acc, op.add(obase + ch)) };
                ch += 8;
            }
            for ch in ch..c {
                let mut acc = k.bias[ch];
                for &(xp, wp) in taps.iter() {
                    // SAFETY: every tap pointer has c readable values; ch < c.
                    let (x, w) = unsafe { (*xp.add(ch) as i32, *wp.add(ch) as i32) };
                    acc = acc.wrapping_add(x * w);
                }
                out[obase + ch] = e.put1(ch, acc);
            }
        }
    }
}

/// One row segment of `n` interior output pixels of a 3x3, depth-multiplier-1, zero-point-padded
/// depthwise convolution whose weights pair (no -128): channels in blocks of 16, the block's
/// 9 weight vectors, start values and `e`'s parameters held in registers across the pixels. Per
/// pixel and block: 9 loads, [`dw3x3_px`], then `e`. Integer sums are exact in any order:
/// bit-identical to the per-pixel path.
///
/// # Safety
/// `k` validated by its builder; `start` is the input index of channel 0 of the first pixel's
/// top-left tap, and the `n` pixels (stride `stride_w`) with all their taps lie inside the input;
/// `dst` points to `n * c` writable output values; [`ZpKernel::fits3x3`]; `e`'s block
/// conditions hold.
#[target_feature(enable = "neon")]
unsafe fn dw3x3_row<E: ZpOut>(k: &ZpKernel<'_>, e: &E, start: usize, n: usize, dst: *mut E::T) {
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
        // outputs (n pixels of c values from dst) are in bounds.
        unsafe {
            let (w, bias) = k.block3x3(ch);
            let p = e.block(ch);
            let mut x0 = k.input.as_ptr().add(start + ch);
            let mut o = dst.add(ch);
            for _ in 0..n {
                let x: [int8x16_t; 9] = std::array::from_fn(|t| vld1q_s8(x0.add(rel[t])));
                e.put_block(&p, dw3x3_px(&x, &w, &bias), o);
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
/// writable values.
#[target_feature(enable = "neon")]
unsafe fn dw3x3_edge<E: ZpOut>(k: &ZpKernel<'_>, e: &E, taps: &[*const i8; 9], dst: *mut E::T) {
    let c = k.g.in_c;
    for ch in (0..c).step_by(16) {
        // SAFETY: ch + 16 <= c: the block's weights of every tap (filter holds 9 * c values),
        // the channel parameters (c values each), the taps and the output (caller contract).
        unsafe {
            let (w, bias) = k.block3x3(ch);
            let x: [int8x16_t; 9] = std::array::from_fn(|t| vld1q_s8(taps[t].add(ch)));
            e.put_block(&e.block(ch), dw3x3_px(&x, &w, &bias), dst.add(ch));
        }
    }
}

/// The int32 sums of 16 channels of one output pixel of the 3x3 kernels, from the start values
/// `bias`: taps (0,1) (2,3) (4,5) (6,7) paired in int16 (SMULL + SMLAL, exact: two products of
/// |x| <= 128, |w| <= 127), widened into the sums with SADDW, tap 8 alone. Integer sums are exact
/// in any order.
#[inline(always)]
fn dw3x3_px(x: &[int8x16_t; 9], w: &[int8x16_t; 9], bias: &[int32x4_t; 4]) -> [int32x4_t; 4] {
    // SAFETY: the assembly only reads and writes the named vector registers (NEON is part of
    // the aarch64 baseline).
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
            b0 = in(vreg) bias[0], b1 = in(vreg) bias[1],
            b2 = in(vreg) bias[2], b3 = in(vreg) bias[3],
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
        acc
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
                out[obase + ch] = finish_channel(q, acc, ch);
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
                    out[obase + oc] = finish_channel(q, acc, oc);
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
