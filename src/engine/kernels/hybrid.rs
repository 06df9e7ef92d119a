//! The hot loops of the dynamic-range operators on the dispatch point: the on-the-fly input
//! quantization, the int8 depthwise row sums and the float epilogue. The bodies are the
//! scalar oracle's ([`super::scalar::hybrid`], [`super::scalar::conv::depthwise_acc_row`]),
//! written for the compiler to vectorize; on the x86_64 AVX2 / AVX-512 paths they run compiled
//! once more with AVX2 enabled (`x86_64::hybrid_avx2`: 32-bit multiplies, rounding and
//! min/max in 256-bit vectors; baseline x86_64 has neither `pmulld` nor a rounding
//! instruction). No FMA is enabled, so the float results are the oracle's bit for bit.
//! aarch64 vectorizes the bodies with baseline NEON.

use super::scalar::conv::{depthwise_acc_row, ConvGeom};
use super::scalar::hybrid::{self as oracle, Epilogue, InputQuant};
use super::KernelPath;

/// The smallest and largest of `values` (see [`oracle::min_max`]).
pub fn min_max(path: KernelPath, values: &[f32]) -> (f32, f32) {
    match super::effective(path) {
        // `effective` returns an AVX2 / AVX-512 path only when the CPU supports it (both
        // include AVX2).
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => super::x86_64::hybrid_avx2::min_max(values),
        // NEON is baseline on aarch64 (`effective` returns these paths only when supported).
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            super::aarch64::hybrid::min_max(values)
        }
        _ => oracle::min_max(values),
    }
}

/// Quantize `values` into `out` with the parameters `q` (see [`InputQuant::apply`]).
pub fn quantize_with(path: KernelPath, q: &InputQuant, values: &[f32], out: &mut [i8]) {
    match super::effective(path) {
        // As in `min_max`: AVX2 is supported on this path.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            super::x86_64::hybrid_avx2::quantize_with(q, values, out)
        }
        // As in `min_max`.
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            super::aarch64::hybrid::quantize_with(q, values, out)
        }
        _ => q.apply(values, out),
    }
}

/// Quantize `values` into `out` as TFLite's hybrid operators do (asymmetric: with a zero
/// point; else symmetric on ±127): returns the parameters used.
pub fn quantize(path: KernelPath, asymmetric: bool, values: &[f32], out: &mut [i8]) -> InputQuant {
    let (lo, hi) = min_max(path, values);
    let q = InputQuant::new(asymmetric, lo, hi);
    quantize_with(path, &q, values, out);
    q
}

/// The float side of one output row: weight scales, the input's scale, bias and clamp.
pub struct EpilogueArgs<'a> {
    pub epilogue: Epilogue,
    pub weight_scales: &'a [f32],
    pub input_scale: f32,
    pub bias: &'a [f32],
    pub clamp: (f32, f32),
}

impl EpilogueArgs<'_> {
    /// One row of int32 sums (one per channel) into floats.
    #[inline(always)]
    pub fn row(&self, acc: &[i32], out: &mut [f32]) {
        self.epilogue.row(
            acc,
            self.weight_scales,
            self.input_scale,
            self.bias,
            self.clamp,
            out,
        );
    }
}

/// The operands of [`depthwise`]: the geometry (multiplier 1, one image), the quantized
/// input, the `[fh][fw][c]` filter as i8 and as i32, the offset added to every input value
/// (minus the input's zero point) and the epilogue.
pub struct DepthwiseRowOperands<'a> {
    pub g: &'a ConvGeom,
    pub xq: &'a [i8],
    pub w8: &'a [i8],
    pub w: &'a [i32],
    pub in_off: i32,
    pub ep: EpilogueArgs<'a>,
}

#[inline(always)]
pub(super) fn body_depthwise_row(
    op: &DepthwiseRowOperands<'_>,
    oy: usize,
    acc: &mut [i32],
    out: &mut [f32],
) {
    let DepthwiseRowOperands {
        g,
        xq,
        w,
        in_off,
        ref ep,
        ..
    } = *op;
    depthwise_acc_row(g, xq, w, in_off, oy, acc);
    for (a, o) in acc.chunks_exact(g.out_c).zip(out.chunks_exact_mut(g.out_c)) {
        ep.row(a, o);
    }
}

/// Every output row of a hybrid depthwise convolution (multiplier 1, one image) into `out`
/// (`out_h × out_w × out_c` floats): [`depthwise_row`] row by row with `acc` (`out_w × out_c`
/// sums), or on the aarch64 paths the NEON zero-point kernel of the int8 operator with the
/// float epilogue (`aarch64::depthwise_hybrid`; same sums, same float steps).
pub fn depthwise(
    path: KernelPath,
    op: &DepthwiseRowOperands<'_>,
    acc: &mut [i32],
    out: &mut [f32],
) {
    let g = op.g;
    match super::effective(path) {
        // The NEON kernel pads with the zero point: an int8 zero point, and the epilogue whose
        // scale `input_scale · ws` it forms per channel.
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm
            if (-127..=128).contains(&op.in_off)
                && matches!(op.ep.epilogue, Epilogue::Combined) =>
        {
            super::aarch64::depthwise_hybrid(op, out)
        }
        _ => {
            let row = g.out_w * g.out_c;
            assert!(
                out.len() >= g.out_h * row,
                "hybrid depthwise: out too short"
            );
            for (oy, o) in out.chunks_exact_mut(row).take(g.out_h).enumerate() {
                depthwise_row(path, op, oy, acc, o);
            }
        }
    }
}

/// Output row `oy` of a hybrid depthwise convolution (multiplier 1, one image): the int32
/// sums `Σ (x + in_off) · w` of the quantized input `op.xq` (see `depthwise_acc_row`) into
/// `acc`, then the epilogue into `out` (`out_w × out_c` floats).
fn depthwise_row(
    path: KernelPath,
    op: &DepthwiseRowOperands<'_>,
    oy: usize,
    acc: &mut [i32],
    out: &mut [f32],
) {
    let g = op.g;
    assert!(
        out.len() >= g.out_w * g.out_c,
        "depthwise_row: out too short"
    );
    match super::effective(path) {
        // As in `quantize`: AVX2 is supported on this path.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            super::x86_64::hybrid_avx2::depthwise_row(op, oy, acc, out)
        }
        _ => body_depthwise_row(op, oy, acc, out),
    }
}

#[inline(always)]
pub(super) fn body_epilogue_rows(acc: &[i32], n: usize, ep: &EpilogueArgs<'_>, out: &mut [f32]) {
    for (a, o) in acc.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        ep.row(a, o);
    }
}

/// The epilogue of whole rows of `n` channels: `acc` into `out`.
pub fn epilogue_rows(
    path: KernelPath,
    acc: &[i32],
    n: usize,
    ep: &EpilogueArgs<'_>,
    out: &mut [f32],
) {
    match super::effective(path) {
        // As in `quantize`: AVX2 is supported on this path.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            super::x86_64::hybrid_avx2::epilogue_rows(acc, n, ep, out)
        }
        _ => body_epilogue_rows(acc, n, ep, out),
    }
}
