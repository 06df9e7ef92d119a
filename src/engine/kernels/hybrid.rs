//! The hot loops of the dynamic-range operators on the dispatch point: the on-the-fly input
//! quantization, the int8 depthwise row sums and the float epilogue. The bodies are the
//! scalar oracle's ([`super::scalar::hybrid`], [`super::scalar::conv::depthwise_acc_row`]),
//! written for the compiler to vectorize; on the x86_64 AVX2 / AVX-512 paths they are compiled
//! once more with AVX2 enabled (32-bit multiplies, rounding and min/max in 256-bit vectors;
//! baseline x86_64 has neither `pmulld` nor a rounding instruction). No FMA is enabled, so the
//! float results are the oracle's bit for bit. aarch64 vectorizes the bodies with baseline NEON.

use super::scalar::conv::{depthwise_acc_row, ConvGeom};
use super::scalar::hybrid::{self as oracle, Epilogue};
use super::KernelPath;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_avx2(asymmetric: bool, values: &[f32], out: &mut [i8]) -> (f32, i32) {
    body_quantize(asymmetric, values, out)
}

#[inline(always)]
fn body_quantize(asymmetric: bool, values: &[f32], out: &mut [i8]) -> (f32, i32) {
    if asymmetric {
        oracle::quantize_asymmetric(values, out)
    } else {
        (oracle::quantize_symmetric(values, out), 0)
    }
}

/// Quantize `values` into `out` as TFLite's hybrid operators do (asymmetric: with a zero
/// point; else symmetric on ±127): returns (scale, zero point).
pub fn quantize(path: KernelPath, asymmetric: bool, values: &[f32], out: &mut [i8]) -> (f32, i32) {
    match super::effective(path) {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            // SAFETY: `effective` returns an AVX2 / AVX-512 path only when the CPU supports
            // it (both include AVX2); the body is safe code.
            unsafe { quantize_avx2(asymmetric, values, out) }
        }
        _ => body_quantize(asymmetric, values, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn depthwise_row_avx2(
    g: &ConvGeom,
    xq: &[i8],
    w: &[i32],
    in_off: i32,
    oy: usize,
    acc: &mut [i32],
    ep: &EpilogueArgs<'_>,
    out: &mut [f32],
) {
    body_depthwise_row(g, xq, w, in_off, oy, acc, ep, out)
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

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn body_depthwise_row(
    g: &ConvGeom,
    xq: &[i8],
    w: &[i32],
    in_off: i32,
    oy: usize,
    acc: &mut [i32],
    ep: &EpilogueArgs<'_>,
    out: &mut [f32],
) {
    depthwise_acc_row(g, xq, w, in_off, oy, acc);
    for (a, o) in acc.chunks_exact(g.out_c).zip(out.chunks_exact_mut(g.out_c)) {
        ep.row(a, o);
    }
}

/// Output row `oy` of a hybrid depthwise convolution (multiplier 1, one image): the int32
/// sums `Σ (x + in_off) · w` of the quantized input `xq` (see `depthwise_acc_row`) into
/// `acc`, then the epilogue into `out` (`out_w × out_c` floats).
#[allow(clippy::too_many_arguments)]
pub fn depthwise_row(
    path: KernelPath,
    g: &ConvGeom,
    xq: &[i8],
    w: &[i32],
    in_off: i32,
    oy: usize,
    acc: &mut [i32],
    ep: &EpilogueArgs<'_>,
    out: &mut [f32],
) {
    assert!(
        out.len() >= g.out_w * g.out_c,
        "depthwise_row: out too short"
    );
    match super::effective(path) {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            // SAFETY: as in `quantize`: AVX2 is supported on this path.
            unsafe { depthwise_row_avx2(g, xq, w, in_off, oy, acc, ep, out) }
        }
        _ => body_depthwise_row(g, xq, w, in_off, oy, acc, ep, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn epilogue_rows_avx2(acc: &[i32], n: usize, ep: &EpilogueArgs<'_>, out: &mut [f32]) {
    body_epilogue_rows(acc, n, ep, out)
}

#[inline(always)]
fn body_epilogue_rows(acc: &[i32], n: usize, ep: &EpilogueArgs<'_>, out: &mut [f32]) {
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
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => {
            // SAFETY: as in `quantize`: AVX2 is supported on this path.
            unsafe { epilogue_rows_avx2(acc, n, ep, out) }
        }
        _ => body_epilogue_rows(acc, n, ep, out),
    }
}
