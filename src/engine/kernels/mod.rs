//! Arithmetic kernels grouped by instruction set, behind one dispatch point.
//!
//! - [`scalar`]: portable reference kernels; the oracle every SIMD kernel is tested against.
//! - `aarch64`: NEON (baseline, dotprod, i8mm) kernels.
//! - `x86_64`: AVX2 kernels, and AVX-512 (VNNI) kernels for the GEMMs and depthwise
//!   convolutions.
//!
//! Every choice between instruction sets (and between a SIMD kernel and the scalar
//! reference for shapes a SIMD kernel does not take) is made here, on [`KernelPath`]: the
//! entry points of each `aarch64` / `x86_64` file run one instruction set.

pub mod mat;
pub mod scalar;

pub use mat::{Clamp, Mat, MatMut};

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

use std::fmt;
use std::str::FromStr;

/// An instruction-set path for the kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelPath {
    Scalar,
    /// aarch64 ARMv8.0 NEON (Cortex-A72, Raspberry Pi 4).
    Neon,
    /// aarch64 NEON + SDOT (Cortex-A76, Raspberry Pi 5).
    Dotprod,
    /// aarch64 NEON + SDOT + SMMLA (ARMv8.6).
    I8mm,
    /// x86_64 AVX2 + FMA.
    Avx2,
    /// x86_64 AVX-512 (F, BW, DQ, VL) + VNNI, with AVX2 + FMA: the int8 GEMM runs VPDPBUSD on
    /// 512-bit vectors, the int8 depthwise kernel VPDPWSSD, the float GEMM and depthwise
    /// kernels 512-bit FMA / multiply-add; the other kernels are the AVX2 ones.
    Avx512,
}

impl KernelPath {
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Neon => "neon",
            KernelPath::Dotprod => "dotprod",
            KernelPath::I8mm => "i8mm",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run this path.
    pub fn supported(self) -> bool {
        match self {
            KernelPath::Scalar => true,
            #[cfg(target_arch = "aarch64")]
            KernelPath::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "aarch64")]
            KernelPath::Dotprod => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
            }
            #[cfg(target_arch = "aarch64")]
            KernelPath::I8mm => {
                std::arch::is_aarch64_feature_detected!("neon")
                    && std::arch::is_aarch64_feature_detected!("dotprod")
                    && std::arch::is_aarch64_feature_detected!("i8mm")
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => {
                KernelPath::Avx2.supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every path this CPU supports, lowest first.
    pub fn available() -> Vec<KernelPath> {
        [
            KernelPath::Scalar,
            KernelPath::Neon,
            KernelPath::Dotprod,
            KernelPath::I8mm,
            KernelPath::Avx2,
            KernelPath::Avx512,
        ]
        .into_iter()
        .filter(|p| p.supported())
        .collect()
    }

    /// The best path this CPU supports.
    pub fn best() -> KernelPath {
        *Self::available().last().unwrap_or(&KernelPath::Scalar)
    }

    /// Resolve a user request (`auto` or a path name).
    pub fn resolve(request: &str) -> Result<KernelPath, String> {
        if request == "auto" {
            return Ok(Self::best());
        }
        let p: KernelPath = request.parse()?;
        if !p.supported() {
            return Err(format!(
                "kernel path '{request}' is not supported by this CPU (available: {})",
                Self::available()
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(p)
    }
}

impl fmt::Display for KernelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KernelPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "scalar" => KernelPath::Scalar,
            "neon" => KernelPath::Neon,
            "dotprod" => KernelPath::Dotprod,
            "i8mm" => KernelPath::I8mm,
            "avx2" => KernelPath::Avx2,
            "avx512" => KernelPath::Avx512,
            other => {
                return Err(format!(
                    "unknown kernel path '{other}' (expected auto, scalar, neon, dotprod, i8mm, avx2 or avx512)"
                ))
            }
        })
    }
}

/// A quantized binary operator's table lookup on the chosen path: `out[i] =
/// lut[(a[i] as usize) << 8 | b[i] as usize]` (same-shape operands; `lut` holds the operator's
/// 256 x 256 results).
///
/// # Panics
/// When `a` or `b` is shorter than `out`.
pub fn lut2_u8(path: KernelPath, lut: &[u8; 1 << 16], a: &[u8], b: &[u8], out: &mut [u8]) {
    let n = out.len();
    assert!(
        a.len() >= n && b.len() >= n,
        "lut2_u8: operands shorter than the output"
    );
    match path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm if path.supported() => {
            aarch64::lut2_u8(lut, a, b, out)
        }
        _ => scalar::elementwise::lut2_u8(lut, a, b, out),
    }
}

// ------------------------------------------------------------------ matrix kernels
//
// The convolution / fully-connected operators reduce to these: a GEMM against
// constant weights packed once per path at build time, the TFLite requantization
// epilogue, and depthwise convolution over a range of output rows. Every path is
// bit-exact with the scalar oracle for int8 (integer sums are exact in any order);
// float paths agree within rounding.

pub mod conv16;
pub mod hybrid;
pub(crate) mod scratch;

use std::ops::Range;

use crate::engine::quant::RequantPerChannel as Requant;
use scalar::conv::ConvGeom;

/// The path whose code actually runs for `path` on this CPU: `path` itself when
/// supported, else the scalar reference.
fn effective(path: KernelPath) -> KernelPath {
    if path.supported() {
        path
    } else {
        KernelPath::Scalar
    }
}

/// A cache line of bytes: the unit of [`Aligned`].
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// An immutable buffer of `T` whose first element starts a cache line, so that the kernels'
/// 64-byte loads of packed weights never straddle two lines. Dereferences to `[T]`.
#[derive(Clone, Debug)]
pub struct Aligned<T: bytemuck::Pod> {
    lines: Vec<Line>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod> Aligned<T> {
    /// A copy of `v`.
    pub fn from_slice(v: &[T]) -> Self {
        let bytes = std::mem::size_of_val(v);
        let mut lines = vec![Line([0; 64]); bytes.div_ceil(64)];
        bytemuck::cast_slice_mut::<Line, u8>(&mut lines)[..bytes]
            .copy_from_slice(bytemuck::cast_slice(v));
        Aligned {
            lines,
            len: v.len(),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: bytemuck::Pod> std::ops::Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &bytemuck::cast_slice::<Line, T>(&self.lines)[..self.len]
    }
}

/// int8 weight matrix W (n rows x k cols, row-major: `W[j*k + kk]`) packed for one
/// path; the layout of `data` is private to the path.
#[derive(Clone, Debug)]
pub struct PackedI8 {
    pub path: KernelPath,
    pub n: usize,
    pub k: usize,
    pub data: Aligned<i8>,
}

/// Pack `w` (`n x k`, row-major) for `path` (an unsupported path packs for scalar).
pub fn pack_i8(path: KernelPath, w: &[i8], n: usize, k: usize) -> PackedI8 {
    assert!(w.len() >= n * k, "pack_i8: {} weights for {n}x{k}", w.len());
    let path = effective(path);
    let data = match path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            aarch64::pack_i8(path, w, n, k)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => x86_64::gemm_i8_avx2::pack_i8(w, n, k),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => x86_64::gemm_vnni::pack_i8(w, n, k),
        _ => scalar::gemm::pack_i8(path, w, n, k),
    };
    PackedI8 {
        path,
        n,
        k,
        data: Aligned::from_slice(&data),
    }
}

/// `acc[i][j] = sum_kk a[i][kk] as i32 * W[j][kk] as i32` (wrapping i32), for the `a.rows`
/// rows of `a` (`k` columns) and the `n` columns of the weights. No offsets.
///
/// # Panics
/// When the shapes disagree (`a` is `m x k`, `acc` `m x n`) or a view does not hold its rows.
pub fn gemm_i8(p: &PackedI8, a: Mat<'_, i8>, acc: MatMut<'_, i32>) {
    let n = p.n;
    check_shapes("gemm_i8", p, &a, (acc.rows, acc.cols));
    if a.rows == 0 || n == 0 {
        return;
    }
    assert!(a.holds(), "gemm_i8: a too short");
    assert!(acc.holds(), "gemm_i8: acc too short");
    match p.path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            aarch64::gemm_i8(p.path, &p.data, a, acc)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => x86_64::gemm_i8_avx2::gemm_i8(&p.data, a, acc),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => x86_64::gemm_vnni::gemm_i8(&p.data, a, acc),
        _ => scalar::gemm::gemm_i8(p.path, &p.data, a, acc),
    }
}

/// That `a` is `m x p.k` and the result (`rows x cols`) `m x p.n`.
fn check_shapes(what: &str, p: &PackedI8, a: &Mat<'_, i8>, (rows, cols): (usize, usize)) {
    assert!(
        a.cols == p.k && rows == a.rows && cols == p.n,
        "{what}: a ({}x{}) and the result ({rows}x{cols}) do not fit {}x{} weights",
        a.rows,
        a.cols,
        p.n,
        p.k
    );
}

/// Requantization epilogue, TFLite int8 per-channel, with the column parameters of `rq`:
/// `out[i][j] = clamp(output_offset + MultiplyByQuantizedMultiplier(acc[i][j] + bias[j],
/// multipliers[j], shifts[j]), act_min, act_max)` for the `m x n` of `acc` (and `out`),
/// bit-exact with `quant::RequantPerChannel::finish`.
///
/// # Panics
/// When `out` is not the shape of `acc`, a view does not hold its rows, or `rq` has fewer than
/// `n` channels or a shift outside [-31, 31].
pub fn requant_i8(path: KernelPath, acc: Mat<'_, i32>, rq: &RequantCols<'_>, out: MatMut<'_, i8>) {
    let (m, n) = (acc.rows, acc.cols);
    assert!(
        out.rows == m && out.cols == n,
        "requant_i8: out ({}x{}) is not the shape of acc ({m}x{n})",
        out.rows,
        out.cols
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(acc.holds(), "requant_i8: acc too short");
    check_requant_out("requant_i8", rq, &out.as_ref());
    let path = effective(path);
    match path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            aarch64::requant_i8(path, acc, rq, out)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => x86_64::requant_avx2::requant_i8(acc, rq, out),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => x86_64::gemm_vnni::requant_i8(acc, rq, out),
        _ => scalar::gemm::requant_i8(path, acc, rq, out),
    }
}

/// Rows of the int8 GEMM register tile of `path`: row blocks cut in multiples of it
/// leave no partial tiles.
pub fn gemm_i8_tile_rows(path: KernelPath) -> usize {
    #[cfg(target_arch = "x86_64")]
    match effective(path) {
        KernelPath::Avx2 => return x86_64::gemm_i8_avx2::MR,
        KernelPath::Avx512 => return x86_64::gemm_vnni::MR,
        _ => {}
    }
    #[cfg(target_arch = "aarch64")]
    if effective(path) == KernelPath::Dotprod {
        return 8;
    }
    let _ = path;
    4
}

/// Rows of the float GEMM register tile of `path` (see [`gemm_i8_tile_rows`]).
pub fn gemm_f32_tile_rows(path: KernelPath) -> usize {
    #[cfg(target_arch = "x86_64")]
    match effective(path) {
        KernelPath::Avx2 => return x86_64::gemm_f32_avx2::MR,
        KernelPath::Avx512 => return x86_64::gemm_f32_avx512::MR,
        _ => {}
    }
    let _ = path;
    4
}

/// Whether [`gemm_requant_i8`] with these weights requantizes every row in the
/// register tile, never touching its int32 scratch (which may then be empty).
pub fn gemm_requant_in_tile(p: &PackedI8) -> bool {
    #[cfg(target_arch = "x86_64")]
    match p.path {
        KernelPath::Avx2 => return x86_64::gemm_i8_avx2::gemm_requant_in_tile(p.k),
        KernelPath::Avx512 => return x86_64::gemm_vnni::gemm_requant_in_tile(p.k),
        _ => {}
    }
    // The dotprod kernel requantizes every row (given a shift per column, as the
    // operators pass).
    #[cfg(target_arch = "aarch64")]
    if p.path == KernelPath::Dotprod {
        return p.k > 0;
    }
    let _ = p;
    false
}

/// Requantization parameters of the `n` output columns of a GEMM (see [`requant_i8`]).
#[derive(Clone, Copy, Debug)]
pub struct RequantCols<'a> {
    pub bias: &'a [i32],
    pub multipliers: &'a [i32],
    pub shifts: &'a [i32],
    pub output_offset: i32,
    pub act_min: i32,
    pub act_max: i32,
}

/// [`gemm_i8`] then [`requant_i8`] of its `m x n` result into `out` (`m x n`), bit-exact with
/// the two calls. Paths with a fused kernel (baseline NEON, dotprod, AVX2, AVX-512) requantize
/// inside the register tiles; the others, and the rows a fused kernel leaves, go through
/// `scratch` (at least `m * n` values; the x86 kernels use it only for k beyond one panel
/// chunk).
pub fn gemm_requant_i8(
    p: &PackedI8,
    a: Mat<'_, i8>,
    rq: &RequantCols<'_>,
    scratch: &mut [i32],
    out: MatMut<'_, i8>,
) {
    let n = p.n;
    let m = a.rows;
    check_shapes("gemm_requant_i8", p, &a, (out.rows, out.cols));
    if m == 0 || n == 0 {
        return;
    }
    // Rows the path's fused kernel did (baseline NEON: the 4-row tiles, when they apply;
    // dotprod: all of them).
    #[cfg(target_arch = "aarch64")]
    let (done, out) = {
        let mut out = out;
        let done = aarch64::gemm_requant_i8(p.path, &p.data, a, rq, out.reborrow());
        (done, out)
    };
    #[cfg(target_arch = "x86_64")]
    if matches!(p.path, KernelPath::Avx2 | KernelPath::Avx512) {
        check_gemm_requant(&a, rq, &out.as_ref());
        let fused = if p.path == KernelPath::Avx512 {
            x86_64::gemm_vnni::gemm_requant_i8
        } else {
            x86_64::gemm_i8_avx2::gemm_requant_i8
        };
        return fused(&p.data, a, rq, scratch, out);
    }
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    if done == m {
        return;
    }
    let rest = m - done;
    assert!(
        scratch.len() >= rest * n,
        "gemm_requant_i8: acc scratch too short"
    );
    let mut acc = MatMut::dense(&mut scratch[..rest * n], rest, n);
    gemm_i8(p, a.skip_rows(done), acc.reborrow());
    requant_i8(p.path, acc.as_ref(), rq, out.skip_rows(done));
}

/// The argument checks of [`gemm_i8`] + [`requant_i8`], for a fused kernel (the
/// aarch64 kernels check their own arguments); `a` has at least one row.
#[cfg(target_arch = "x86_64")]
fn check_gemm_requant(a: &Mat<'_, i8>, rq: &RequantCols<'_>, out: &Mat<'_, i8>) {
    assert!(a.holds(), "gemm_requant_i8: a too short");
    check_requant_out("gemm_requant_i8", rq, out);
}

/// The checks [`requant_i8`] and the fused GEMMs share: `out` (`m x n`, `m >= 1`) holds its
/// rows, `rq` has `n` channel parameters, shifts in range.
fn check_requant_out(what: &str, rq: &RequantCols<'_>, out: &Mat<'_, i8>) {
    let n = out.cols;
    assert!(out.holds(), "{what}: out too short");
    assert!(
        rq.bias.len() >= n && rq.multipliers.len() >= n && rq.shifts.len() >= n,
        "{what}: fewer than {n} channel parameters"
    );
    assert!(
        rq.shifts[..n].iter().all(|&s| (-31..=31).contains(&s)),
        "{what}: shift out of range"
    );
}

pub use scalar::conv::Depthwise;

/// Check the slices of a depthwise call against its geometry.
fn check_depthwise<T, B>(op: &Depthwise<'_, T, B>, rows: &Range<usize>, out: &[T]) {
    let Depthwise {
        g,
        depth_multiplier,
        input,
        filter,
        bias,
    } = *op;
    assert_eq!(g.out_c, g.in_c * depth_multiplier, "depthwise: channels");
    assert!(input.len() >= g.input_len(), "depthwise: input too short");
    assert!(
        filter.len() >= g.filter_h * g.filter_w * g.out_c,
        "depthwise: filter too short"
    );
    assert!(
        bias.is_none_or(|b| b.len() >= g.out_c),
        "depthwise: bias too short"
    );
    assert!(
        rows.start <= rows.end && rows.end <= g.batch * g.out_h,
        "depthwise: rows {rows:?} out of range"
    );
    assert!(out.len() >= g.output_len(), "depthwise: output too short");
}

/// Depthwise int8 (per-channel), output rows `rows` of the `batch*out_h` rows only
/// (for threading); same semantics as `scalar::conv::depthwise_q::<i8>`.
/// `out` is the whole output tensor.
pub fn depthwise_i8(
    path: KernelPath,
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    check_depthwise(op, &rows, out);
    assert!(
        q.multipliers.len() >= op.g.out_c && q.shifts.len() >= op.g.out_c,
        "depthwise: fewer than out_c channel parameters"
    );
    let path = effective(path);
    match path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            aarch64::depthwise_i8(path, op, q, rows, out)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 if x86_64::depthwise_vnni::applies(op.g, op.depth_multiplier, q) => {
            let prep = x86_64::depthwise_vnni::prepare(op.g, op.filter, op.bias, q);
            x86_64::depthwise_vnni::depthwise_i8(&prep, op, q, rows, out)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512
            if x86_64::depthwise_i8_avx2::applies(op.depth_multiplier, q) =>
        {
            x86_64::depthwise_i8_avx2::depthwise_i8(op, q, rows, out)
        }
        _ => scalar::gemm::depthwise_i8(path, op, q, rows, out),
    }
}

/// An int8 depthwise convolution's per-operator constants for one path (weights laid
/// out for the kernel, biases with the input offset folded in, requantization
/// constants), made once by [`prepare_depthwise_i8`] so that calls do not redo them.
pub struct DepthwisePrepI8 {
    path: KernelPath,
    #[cfg(target_arch = "x86_64")]
    avx2: Option<x86_64::depthwise_i8_avx2::DwPrepI8>,
    #[cfg(target_arch = "x86_64")]
    avx512: Option<x86_64::depthwise_vnni::DwPrep>,
}

/// Prepare [`depthwise_i8_prepared`] calls with this filter, bias and `q` on `path`,
/// for geometries with `g`'s channels and filter size (row ranges and sub-images may
/// vary). Paths without preparation get an empty value.
pub fn prepare_depthwise_i8(
    path: KernelPath,
    g: &ConvGeom,
    depth_multiplier: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    q: &Requant<'_>,
) -> DepthwisePrepI8 {
    let path = effective(path);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (g, depth_multiplier, filter, bias, q);
    // AVX-512 takes its VNNI kernel where that applies, else the AVX2 one (filter offsets:
    // uint8 convolutions shifted to int8).
    #[cfg(target_arch = "x86_64")]
    let vnni =
        path == KernelPath::Avx512 && x86_64::depthwise_vnni::applies(g, depth_multiplier, q);
    DepthwisePrepI8 {
        path,
        #[cfg(target_arch = "x86_64")]
        avx2: (matches!(path, KernelPath::Avx2 | KernelPath::Avx512) && !vnni)
            .then(|| {
                x86_64::depthwise_i8_avx2::prepare_depthwise_i8(
                    g,
                    depth_multiplier,
                    filter,
                    bias,
                    q,
                )
            })
            .flatten(),
        #[cfg(target_arch = "x86_64")]
        avx512: vnni.then(|| x86_64::depthwise_vnni::prepare(g, filter, bias, q)),
    }
}

/// [`depthwise_i8`] with the constants of [`prepare_depthwise_i8`] (made for the same
/// path, filter, bias and `q`).
pub fn depthwise_i8_prepared(
    prep: &DepthwisePrepI8,
    op: &Depthwise<'_, i8, i32>,
    q: &Requant<'_>,
    rows: Range<usize>,
    out: &mut [i8],
) {
    #[cfg(target_arch = "x86_64")]
    if prep.avx2.is_some() || prep.avx512.is_some() {
        check_depthwise(op, &rows, out);
        let g = op.g;
        assert!(
            op.depth_multiplier == 1 && q.multipliers.len() >= g.out_c && q.shifts.len() >= g.out_c,
            "depthwise: prepared for another operator"
        );
        if let Some(p) = &prep.avx512 {
            return x86_64::depthwise_vnni::depthwise_i8(p, op, q, rows, out);
        }
        if let Some(p) = &prep.avx2 {
            return x86_64::depthwise_i8_avx2::depthwise_i8_prepared(p, op, q, rows, out);
        }
    }
    depthwise_i8(prep.path, op, q, rows, out)
}

/// float32 weight matrix W (n x k, row-major) packed for one path.
#[derive(Clone, Debug)]
pub struct PackedF32 {
    pub path: KernelPath,
    pub n: usize,
    pub k: usize,
    pub data: Aligned<f32>,
}

/// Pack `w` (`n x k`, row-major) for `path` (an unsupported path packs for scalar).
pub fn pack_f32(path: KernelPath, w: &[f32], n: usize, k: usize) -> PackedF32 {
    assert!(
        w.len() >= n * k,
        "pack_f32: {} weights for {n}x{k}",
        w.len()
    );
    let path = effective(path);
    let data = match path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            aarch64::pack_f32(path, w, n, k)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 => x86_64::gemm_f32_avx2::pack_f32(w, n, k),
        _ => scalar::gemm::pack_f32(path, w, n, k),
    };
    PackedF32 {
        path,
        n,
        k,
        data: Aligned::from_slice(&data),
    }
}

/// `out[i][j] = clamp(sum_kk a[i][kk] * W[j][kk] + bias[j])` for the `m = a.rows` rows of `a`
/// (`m x k`) and the `n` columns of W: `out` is `m x n`.
pub fn gemm_f32(
    p: &PackedF32,
    a: Mat<'_, f32>,
    bias: Option<&[f32]>,
    clamp: Clamp,
    out: MatMut<'_, f32>,
) {
    let (m, n, k) = (a.rows, p.n, p.k);
    if m == 0 || n == 0 {
        return;
    }
    assert_eq!(a.cols, k, "gemm_f32: a has {} columns, k = {k}", a.cols);
    assert!(a.holds(), "gemm_f32: a too short");
    assert!(
        out.rows == m && out.cols == n,
        "gemm_f32: out is {}x{}, not {m}x{n}",
        out.rows,
        out.cols
    );
    assert!(out.holds(), "gemm_f32: out too short");
    assert!(
        bias.is_none_or(|b| b.len() >= n),
        "gemm_f32: bias too short"
    );
    match p.path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            aarch64::gemm_f32(p, a, bias, clamp, out)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => x86_64::gemm_f32_avx2::gemm_f32(p, a, bias, clamp, out),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => x86_64::gemm_f32_avx512::gemm_f32(p, a, bias, clamp, out),
        _ => scalar::gemm::gemm_f32(p, a, bias, clamp, out),
    }
}

/// Float depthwise convolution over output rows `rows`; `out` is the whole output tensor.
pub fn depthwise_f32(
    path: KernelPath,
    op: &Depthwise<'_, f32, f32>,
    clamp: Clamp,
    rows: Range<usize>,
    out: &mut [f32],
) {
    check_depthwise(op, &rows, out);
    let path = effective(path);
    #[cfg(target_arch = "x86_64")]
    let dm1 = op.depth_multiplier == 1;
    match path {
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::Dotprod | KernelPath::I8mm => {
            aarch64::depthwise_f32(path, op, clamp, rows, out)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 if dm1 && x86_64::depthwise_f32_avx512::is_3x3_s1(op.g) => {
            x86_64::depthwise_f32_avx512::depthwise_f32_3x3(op, clamp, rows, out)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 if dm1 => {
            x86_64::depthwise_f32_avx512::depthwise_f32(op, clamp, rows, out)
        }
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 if dm1 => x86_64::depthwise_f32_avx2::depthwise_f32(op, clamp, rows, out),
        _ => scalar::gemm::depthwise_f32(path, op, clamp, rows, out),
    }
}

#[cfg(test)]
mod aligned_tests {
    use super::Aligned;

    #[test]
    fn aligned_copies_start_on_a_cache_line() {
        for len in [0usize, 1, 15, 16, 17, 1000, 4099] {
            let f: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
            let a = Aligned::from_slice(&f);
            assert_eq!(&a[..], &f[..]);
            assert_eq!(a.as_ptr() as usize % 64, 0, "f32 x {len}");
            let b: Vec<i8> = (0..len).map(|i| (i % 251) as i8).collect();
            let a = Aligned::from_slice(&b);
            assert_eq!(&a[..], &b[..]);
            assert_eq!(a.as_ptr() as usize % 64, 0, "i8 x {len}");
        }
    }
}
