//! The matrix kernels behind the dispatch point (`gemm_i8`, `requant_i8`, `depthwise_i8`,
//! `gemm_f32`, `depthwise_f32`): every path this CPU offers (`KernelPath::available()`)
//! against the scalar oracle, on random shapes (0/1/odd sizes, tails, large k), random
//! data with the int8 extremes, per-channel multipliers and extreme shifts, and
//! offsets at the extremes. int8 must be bit-exact; float within a tight tolerance.
//! The same file runs under qemu-aarch64 (cortex-a72 / cortex-a76 / max).

use edgecam::engine::kernels::scalar::conv::ConvGeom;
use edgecam::engine::kernels::{self, KernelPath, Mat, MatMut};
use edgecam::engine::quant::{quantize_multiplier, RequantPerChannel};

mod common;
use common::Rng;

/// An output offset, now and then outside int8 (the NEON epilogues then take their
/// general variant).
fn out_offset(rng: &mut Rng) -> i32 {
    [
        -128,
        127,
        0,
        rng.range(-128, 127) as i32,
        rng.range(-70_000, 70_000) as i32,
    ][rng.below(5)]
}

/// An activation range: the int8 range, a random one, or from the offset up.
fn act_range(rng: &mut Rng, off: i32) -> (i32, i32) {
    match rng.below(3) {
        0 => (-128, 127),
        1 => (rng.range(-128, 0) as i32, rng.range(0, 127) as i32),
        _ => (off.clamp(-128, 127), 127),
    }
}

/// A quantized multiplier: real TFLite-like ones, plus raw extremes.
fn mult_shift(rng: &mut Rng) -> (i32, i32) {
    match rng.below(6) {
        0 => (i32::MIN + rng.below(2) as i32, rng.range(-31, 1) as i32),
        1 => (i32::MAX, rng.range(-31, 30) as i32),
        2 => (rng.next_u64() as i32, rng.range(-31, 31) as i32),
        _ => quantize_multiplier(10f64.powf(rng.range(-60, 5) as f64 / 10.0)),
    }
}

fn f32s(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.f32()).collect()
}

fn paths() -> Vec<KernelPath> {
    KernelPath::available()
}

fn sizes(rng: &mut Rng) -> (usize, usize, usize) {
    const EDGE: [usize; 10] = [0, 1, 2, 3, 4, 5, 7, 8, 15, 17];
    let pick = |rng: &mut Rng, big: usize| {
        if rng.below(2) == 0 {
            EDGE[rng.below(EDGE.len())]
        } else {
            1 + rng.below(big)
        }
    };
    let m = pick(rng, 40);
    let n = pick(rng, 70);
    let k = match rng.below(10) {
        0 => 2048 + rng.below(1100), // several panel chunks
        _ => pick(rng, 300),
    };
    (m, n, k)
}

#[test]
fn gemm_i8_is_bit_exact_on_every_path() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0101);
    for case in 0..300 {
        let (m, n, k) = sizes(&mut rng);
        let lda = k + rng.below(3);
        let ldacc = n + rng.below(3);
        let a = rng.i8s_extreme(m * lda + 1);
        let w = rng.i8s_extreme(n * k);
        let mut want = vec![0x5555_5555i32; m * ldacc + 1];
        let ps = kernels::pack_i8(KernelPath::Scalar, &w, n, k);
        kernels::gemm_i8(
            &ps,
            Mat::new(&a, m, k, lda),
            MatMut::new(&mut want, m, n, ldacc),
        );
        // Direct check of the oracle on one element.
        if m > 0 && n > 0 {
            let (i, j) = (m - 1, n - 1);
            let s: i32 = (0..k)
                .map(|kk| a[i * lda + kk] as i32 * w[j * k + kk] as i32)
                .sum();
            assert_eq!(want[i * ldacc + j], s);
        }
        for path in paths() {
            let p = kernels::pack_i8(path, &w, n, k);
            assert_eq!(p.path, path);
            let mut got = vec![0x5555_5555i32; m * ldacc + 1];
            kernels::gemm_i8(
                &p,
                Mat::new(&a, m, k, lda),
                MatMut::new(&mut got, m, n, ldacc),
            );
            assert_eq!(
                got, want,
                "case {case}: {path} m={m} n={n} k={k} lda={lda} ldacc={ldacc}"
            );
        }
    }
}

#[test]
fn gemm_i8_all_extremes() {
    // -128 * -128 everywhere, long k: the largest possible sums (and wrapping).
    for &(v, wv) in &[(-128i8, -128i8), (127, -128), (-128, 127)] {
        for &k in &[1usize, 2, 31, 4095, 70_000] {
            let (m, n) = (5, 19);
            let a = vec![v; m * k];
            let w = vec![wv; n * k];
            let want = (0..k).fold(0i32, |s, _| s.wrapping_add(v as i32 * wv as i32));
            for path in paths() {
                let p = kernels::pack_i8(path, &w, n, k);
                let mut got = vec![0; m * n];
                kernels::gemm_i8(&p, Mat::dense(&a, m, k), MatMut::dense(&mut got, m, n));
                assert!(got.iter().all(|&g| g == want), "{path} k={k}");
            }
        }
    }
}

/// The fused GEMM + requantization (`gemm_requant_i8`; baseline NEON requantizes inside its
/// 4x4 register tiles when the weights have no -128, `n % 4 == 0` and no shift is positive;
/// dotprod inside its 8-column tiles of 8/4/2/1 rows, always) against the scalar `gemm_i8` then
/// `requant_i8`, on every path: row counts with and without a remainder of 4 or 8 (partial
/// tiles), column counts with and without a remainder of 4 or 8 (column tails), TFLite-like
/// multipliers (right shifts, some zero; only those in half the cases) and, in some cases, left
/// shifts, extreme multipliers, biases that wrap the int32 sums or a -128 weight, which
/// send the rows through the unfused kernels on baseline NEON.
#[test]
fn gemm_requant_i8_is_bit_exact_on_every_path() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0303);
    for case in 0..400 {
        // Now and then more rows than one x86 row block (AVX2 30, AVX-512 32), or a k longer
        // than one x86 panel chunk (AVX2 1024, AVX-512 2048), whose partial sums wait in the
        // scratch.
        let tall = rng.below(8) == 0;
        let m = if tall {
            31 + rng.below(40)
        } else {
            1 + rng.below(23)
        };
        let n = if rng.below(4) == 0 {
            1 + rng.below(40)
        } else {
            4 * (1 + rng.below(12))
        };
        let k = if !tall && rng.below(12) == 0 {
            1025 + rng.below(2200)
        } else {
            match rng.below(4) {
                0 => 1 + rng.below(15),
                1 => 16 * (1 + rng.below(4)),
                _ => 1 + rng.below(200),
            }
        };
        let lda = k + rng.below(3);
        let ldo = n + rng.below(3);
        let a = rng.i8s_extreme(m * lda + 1);
        let tflite_weights = rng.below(5) != 0;
        let w: Vec<i8> = (0..n * k)
            .map(|_| {
                let v = rng.i8_extreme();
                if tflite_weights {
                    v.max(-127)
                } else {
                    v
                }
            })
            .collect();
        let wrap_bias = rng.below(8) == 0;
        let bias: Vec<i32> = (0..n)
            .map(|_| {
                if wrap_bias && rng.below(2) == 0 {
                    [i32::MIN, i32::MAX, rng.next_u64() as i32][rng.below(3)]
                } else {
                    rng.range(-200_000, 200_000) as i32
                }
            })
            .collect();
        // Some cases with TFLite-like multipliers only (no left shift), so that the fused
        // kernels' right-shift-only epilogues run on most shapes.
        let tflite_mults = rng.below(2) == 0;
        let (mults, shifts): (Vec<i32>, Vec<i32>) = (0..n)
            .map(|_| match rng.below(10) + usize::from(tflite_mults) {
                0 => mult_shift(&mut rng),
                1 => quantize_multiplier(0.5 + rng.below(1000) as f64 / 2000.0),
                _ => quantize_multiplier(10f64.powf(-(rng.range(5, 40) as f64) / 10.0)),
            })
            .unzip();
        let off = out_offset(&mut rng);
        let (amin, amax) = act_range(&mut rng, off);
        let rq = kernels::RequantCols {
            bias: &bias,
            multipliers: &mults,
            shifts: &shifts,
            output_offset: off,
            act_min: amin,
            act_max: amax,
        };
        let mut want = vec![0x11i8; m * ldo + 1];
        let mut acc = vec![0i32; m * n];
        let ps = kernels::pack_i8(KernelPath::Scalar, &w, n, k);
        kernels::gemm_i8(&ps, Mat::new(&a, m, k, lda), MatMut::dense(&mut acc, m, n));
        kernels::requant_i8(
            KernelPath::Scalar,
            Mat::dense(&acc, m, n),
            &rq,
            MatMut::new(&mut want, m, n, ldo),
        );
        for path in paths() {
            let p = kernels::pack_i8(path, &w, n, k);
            let mut got = vec![0x11i8; m * ldo + 1];
            let mut scratch = vec![0x5555_5555i32; m * n];
            kernels::gemm_requant_i8(
                &p,
                Mat::new(&a, m, k, lda),
                &rq,
                &mut scratch,
                MatMut::new(&mut got, m, n, ldo),
            );
            assert_eq!(
                got, want,
                "case {case}: {path} m={m} n={n} k={k} lda={lda} ldo={ldo}"
            );
        }
    }
}

#[test]
fn requant_i8_is_bit_exact_on_every_path() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0202);
    for case in 0..400 {
        let m = rng.below(6);
        let n = rng.below(45);
        let ldacc = n + rng.below(3);
        let ldo = n + rng.below(3);
        let acc: Vec<i32> = (0..m * ldacc)
            .map(|_| match rng.below(6) {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => rng.range(-300, 300) as i32,
                _ => rng.next_u64() as i32,
            })
            .collect();
        let bias: Vec<i32> = (0..n)
            .map(|_| match rng.below(4) {
                0 => 0,
                1 => rng.next_u64() as i32,
                _ => rng.range(-100_000, 100_000) as i32,
            })
            .collect();
        let (mults, shifts): (Vec<i32>, Vec<i32>) = (0..n).map(|_| mult_shift(&mut rng)).unzip();
        let off = out_offset(&mut rng);
        let (amin, amax) = match rng.below(4) {
            0 => (-128, 127),
            1 => (rng.range(-128, 0) as i32, rng.range(0, 127) as i32),
            2 => (-1000, 1000),
            _ => (off.clamp(-128, 127), 127),
        };
        let rq = kernels::RequantCols {
            bias: &bias,
            multipliers: &mults,
            shifts: &shifts,
            output_offset: off,
            act_min: amin,
            act_max: amax,
        };
        let run = |path: KernelPath| {
            let mut out = vec![0x11i8; m * ldo + 1];
            kernels::requant_i8(
                path,
                Mat::new(&acc, m, n, ldacc),
                &rq,
                MatMut::new(&mut out, m, n, ldo),
            );
            out
        };
        let want = run(KernelPath::Scalar);
        // The scalar path is RequantPerChannel::finish.
        let q = RequantPerChannel {
            input_offset: 0,
            filter_offset: 0,
            output_offset: off,
            multipliers: &mults,
            shifts: &shifts,
            act_min: amin,
            act_max: amax,
        };
        for i in 0..m {
            for j in 0..n {
                let v = q.finish(acc[i * ldacc + j].wrapping_add(bias[j]), j);
                assert_eq!(want[i * ldo + j] as i32, v.clamp(-128, 127));
            }
        }
        for path in paths() {
            assert_eq!(run(path), want, "case {case}: {path} m={m} n={n}");
        }
    }
}

fn random_geom(rng: &mut Rng, mult: usize) -> ConvGeom {
    let in_c = [1, 3, 8, 15, 16, 17, 32, 33, 48][rng.below(9)];
    let filter_h = 1 + rng.below(4);
    let filter_w = 1 + rng.below(4);
    let stride_h = 1 + rng.below(3);
    let stride_w = 1 + rng.below(3);
    let dilation_h = 1 + rng.below(2);
    let dilation_w = 1 + rng.below(2);
    let in_h = 1 + rng.below(9);
    let in_w = 1 + rng.below(9);
    let same = rng.below(2) == 0;
    let dim = |size: usize, f: usize, s: usize, d: usize| {
        let eff = (f - 1) * d + 1;
        let out = if same {
            size.div_ceil(s)
        } else if size + s < eff {
            0
        } else {
            (size + s - eff) / s
        };
        let pad = ((out.max(1) - 1) * s + eff).saturating_sub(size) / 2;
        (out, pad)
    };
    let (out_h, pad_top) = dim(in_h, filter_h, stride_h, dilation_h);
    let (out_w, pad_left) = dim(in_w, filter_w, stride_w, dilation_w);
    ConvGeom {
        batch: 1 + rng.below(2),
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        out_c: in_c * mult,
        filter_h,
        filter_w,
        stride_h,
        stride_w,
        dilation_h,
        dilation_w,
        pad_top,
        pad_left,
    }
}

#[test]
fn depthwise_i8_is_bit_exact_on_every_path() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0303);
    for case in 0..300 {
        let mult = [1, 1, 1, 2, 3][rng.below(5)];
        let g = random_geom(&mut rng, mult);
        if g.out_h == 0 || g.out_w == 0 {
            continue;
        }
        let input = rng.i8s_extreme(g.input_len());
        let filter = rng.i8s_extreme(g.filter_h * g.filter_w * g.out_c);
        let bias: Option<Vec<i32>> = (rng.below(4) != 0).then(|| {
            (0..g.out_c)
                .map(|_| rng.range(-50_000, 50_000) as i32)
                .collect()
        });
        let (mults, shifts): (Vec<i32>, Vec<i32>) =
            (0..g.out_c).map(|_| mult_shift(&mut rng)).unzip();
        let in_zp = [-128, 127, 0, rng.range(-128, 127) as i32][rng.below(4)];
        let out_zp = [-128, 127, 0, rng.range(-128, 127) as i32][rng.below(4)];
        let q = RequantPerChannel {
            input_offset: -in_zp,
            filter_offset: 0,
            output_offset: out_zp,
            multipliers: &mults,
            shifts: &shifts,
            act_min: [-128, out_zp][rng.below(2)],
            act_max: 127,
        };
        let rows = g.batch * g.out_h;
        let mut want = vec![0i8; g.output_len()];
        edgecam::engine::kernels::scalar::conv::depthwise_q(
            &g,
            mult,
            &input,
            &filter,
            bias.as_deref(),
            &q,
            &mut want,
        );
        for path in paths() {
            // Whole tensor at once, and in two row ranges (as the thread pool splits it).
            let mut got = vec![0x33i8; g.output_len()];
            let op = kernels::Depthwise {
                g: &g,
                depth_multiplier: mult,
                input: &input,
                filter: &filter,
                bias: bias.as_deref(),
            };
            kernels::depthwise_i8(path, &op, &q, 0..rows, &mut got);
            assert_eq!(got, want, "case {case}: {path} {g:?} mult {mult}");
            // The split run goes through the per-operator preparation, as the
            // interpreter's depthwise operator does.
            let prep = kernels::prepare_depthwise_i8(path, &g, mult, &filter, bias.as_deref(), &q);
            let cut = rng.below(rows + 1);
            let mut got = vec![0x33i8; g.output_len()];
            for r in [cut..rows, 0..cut] {
                kernels::depthwise_i8_prepared(&prep, &op, &q, r, &mut got);
            }
            assert_eq!(got, want, "case {case}: {path} split at {cut} (prepared)");
        }
    }
}

fn assert_close(got: &[f32], want: &[f32], scale: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, ((g, w), s)) in got.iter().zip(want).zip(scale).enumerate() {
        let tol = 1e-5 * s.max(1.0);
        assert!((g - w).abs() <= tol, "{what}: [{i}] {g} vs {w} (tol {tol})");
    }
}

#[test]
fn gemm_f32_matches_scalar_on_every_path() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0404);
    for case in 0..200 {
        let (m, n, k) = sizes(&mut rng);
        let lda = k + rng.below(3);
        let ldo = n + rng.below(3);
        let a = f32s(&mut rng, m * lda + 1);
        let w = f32s(&mut rng, n * k);
        let bias = (rng.below(2) == 0).then(|| f32s(&mut rng, n));
        let clamp = [(f32::MIN, f32::MAX), (0.0, 6.0), (-1.0, 1.0)][rng.below(3)];
        let run = |path: KernelPath| {
            let p = kernels::pack_f32(path, &w, n, k);
            let mut out = vec![f32::NAN; m * ldo + 1];
            kernels::gemm_f32(
                &p,
                kernels::Mat::new(&a, m, k, lda),
                bias.as_deref(),
                clamp.into(),
                kernels::MatMut::new(&mut out, m, n, ldo),
            );
            out
        };
        let want = run(KernelPath::Scalar);
        // Tolerance scale: the sum of |terms| of each output.
        let mut scale = vec![0f32; want.len()];
        for i in 0..m {
            for j in 0..n {
                scale[i * ldo + j] = (0..k)
                    .map(|kk| (a[i * lda + kk] * w[j * k + kk]).abs())
                    .sum();
            }
        }
        for path in paths() {
            let got = run(path);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // Untouched padding stays NaN on both sides.
                assert_eq!(g.is_nan(), w.is_nan(), "case {case}: {path} [{i}]");
            }
            let fix = |v: &[f32]| {
                v.iter()
                    .map(|x| if x.is_nan() { 0.0 } else { *x })
                    .collect::<Vec<_>>()
            };
            assert_close(
                &fix(&got),
                &fix(&want),
                &scale,
                &format!("case {case}: {path} m={m} n={n} k={k}"),
            );
        }
        // The x86 float GEMMs run the same FMA chain per output: the same bits.
        #[cfg(target_arch = "x86_64")]
        if KernelPath::Avx512.supported() {
            let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
            assert_eq!(
                bits(run(KernelPath::Avx512)),
                bits(run(KernelPath::Avx2)),
                "case {case}: avx512 vs avx2 m={m} n={n} k={k}"
            );
        }
    }
}

#[test]
fn depthwise_f32_matches_scalar_on_every_path() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0505);
    for case in 0..200 {
        let mult = [1, 1, 2][rng.below(3)];
        let g = random_geom(&mut rng, mult);
        if g.out_h == 0 || g.out_w == 0 {
            continue;
        }
        let input = f32s(&mut rng, g.input_len());
        let filter = f32s(&mut rng, g.filter_h * g.filter_w * g.out_c);
        let bias = (rng.below(2) == 0).then(|| f32s(&mut rng, g.out_c));
        let clamp = [(f32::MIN, f32::MAX), (0.0, 6.0)][rng.below(2)];
        let mut want = vec![0f32; g.output_len()];
        edgecam::engine::kernels::scalar::conv::depthwise_f32(
            &g,
            mult,
            &input,
            &filter,
            bias.as_deref(),
            clamp,
            &mut want,
        );
        let scale = vec![(g.filter_h * g.filter_w) as f32; want.len()];
        for path in paths() {
            let mut got = vec![f32::NAN; g.output_len()];
            let rows = g.batch * g.out_h;
            let op = kernels::Depthwise {
                g: &g,
                depth_multiplier: mult,
                input: &input,
                filter: &filter,
                bias: bias.as_deref(),
            };
            kernels::depthwise_f32(path, &op, clamp.into(), 0..rows, &mut got);
            assert_close(&got, &want, &scale, &format!("case {case}: {path} {g:?}"));
        }
    }
}

/// Wide-channel depthwise shapes (the model's: 3x3, strides 1 and 2, channel counts
/// that exercise every 8/16/32-channel group and tail), plus random filters,
/// dilations and tiny images where no pixel is interior.
fn wide_geom(rng: &mut Rng) -> ConvGeom {
    let mut g = random_geom(rng, 1);
    if rng.below(2) == 0 {
        let (fh, fw, s) = (3, 3, 1 + rng.below(2));
        let same = rng.below(3) != 0;
        let dim = |size: usize, f: usize, s: usize| {
            let out = if same {
                size.div_ceil(s)
            } else if size < f {
                0
            } else {
                (size - f) / s + 1
            };
            let pad = ((out.max(1) - 1) * s + f).saturating_sub(size) / 2;
            (out, pad)
        };
        g.in_h = 1 + rng.below(12);
        g.in_w = 1 + rng.below(12);
        (g.filter_h, g.filter_w, g.stride_h, g.stride_w) = (fh, fw, s, s);
        (g.dilation_h, g.dilation_w) = (1, 1);
        (g.out_h, g.pad_top) = dim(g.in_h, fh, s);
        (g.out_w, g.pad_left) = dim(g.in_w, fw, s);
    }
    g.in_c = [1, 3, 8, 17, 24, 31, 40, 56, 64, 72, 96, 144, 160, 200][rng.below(14)];
    g.out_c = g.in_c;
    g
}

#[test]
fn depthwise_wide_channels_bit_exact() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0606);
    for case in 0..300 {
        let g = wide_geom(&mut rng);
        if g.out_h == 0 || g.out_w == 0 {
            continue;
        }
        let rows = g.batch * g.out_h;
        let cut = rng.below(rows + 1);
        // int8: every path equals the reference loops.
        let input = rng.i8s_extreme(g.input_len());
        let filter = rng.i8s_extreme(g.filter_h * g.filter_w * g.out_c);
        let bias: Option<Vec<i32>> = (rng.below(4) != 0).then(|| {
            (0..g.out_c)
                .map(|_| rng.range(-50_000, 50_000) as i32)
                .collect()
        });
        let (mults, shifts): (Vec<i32>, Vec<i32>) = if rng.below(2) == 0 {
            (0..g.out_c).map(|_| mult_shift(&mut rng)).unzip()
        } else {
            (0..g.out_c)
                .map(|_| quantize_multiplier(10f64.powf(rng.range(-40, -5) as f64 / 10.0)))
                .unzip()
        };
        let in_zp = [-128, 127, 0, rng.range(-128, 127) as i32][rng.below(4)];
        let out_zp = [-128, 127, 0, rng.range(-128, 127) as i32][rng.below(4)];
        let q = RequantPerChannel {
            input_offset: -in_zp,
            filter_offset: 0,
            output_offset: out_zp,
            multipliers: &mults,
            shifts: &shifts,
            act_min: [-128, out_zp, -1000][rng.below(3)],
            act_max: [127, 1000, out_zp.max(100)][rng.below(3)],
        };
        let mut want = vec![0i8; g.output_len()];
        edgecam::engine::kernels::scalar::conv::depthwise_q(
            &g,
            1,
            &input,
            &filter,
            bias.as_deref(),
            &q,
            &mut want,
        );
        for path in paths() {
            let mut got = vec![0x33i8; g.output_len()];
            let op = kernels::Depthwise {
                g: &g,
                depth_multiplier: 1,
                input: &input,
                filter: &filter,
                bias: bias.as_deref(),
            };
            for r in [cut..rows, 0..cut] {
                kernels::depthwise_i8(path, &op, &q, r, &mut got);
            }
            assert_eq!(got, want, "case {case}: {path} {g:?} split at {cut}");
        }
        // float: every path keeps the scalar operation order, bit for bit.
        let input = f32s(&mut rng, g.input_len());
        let filter = f32s(&mut rng, g.filter_h * g.filter_w * g.out_c);
        let bias = (rng.below(2) == 0).then(|| f32s(&mut rng, g.out_c));
        let clamp = [(f32::MIN, f32::MAX), (0.0, 6.0)][rng.below(2)];
        let run = |path: KernelPath| {
            let mut got = vec![f32::NAN; g.output_len()];
            let op = kernels::Depthwise {
                g: &g,
                depth_multiplier: 1,
                input: &input,
                filter: &filter,
                bias: bias.as_deref(),
            };
            for r in [cut..rows, 0..cut] {
                kernels::depthwise_f32(path, &op, clamp.into(), r, &mut got);
            }
            got.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let want = run(KernelPath::Scalar);
        for path in paths() {
            assert_eq!(
                run(path),
                want,
                "case {case}: {path} f32 {g:?} split at {cut}"
            );
        }
    }
}

/// The requantization epilogue with TFLite-like multipliers only (no left shift, no
/// i32::MIN multiplier: the specialised vector variant), over extreme accumulators.
#[test]
fn requant_i8_right_shift_only_is_bit_exact() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0707);
    for case in 0..300 {
        let m = 1 + rng.below(5);
        let n = rng.below(70);
        let ldacc = n + rng.below(3);
        let ldo = n + rng.below(3);
        let acc: Vec<i32> = (0..m * ldacc)
            .map(|_| match rng.below(5) {
                0 => i32::MIN,
                1 => i32::MAX,
                2 => rng.range(-3000, 3000) as i32,
                _ => rng.next_u64() as i32,
            })
            .collect();
        let bias: Vec<i32> = (0..n)
            .map(|_| match rng.below(3) {
                0 => rng.next_u64() as i32,
                _ => rng.range(-100_000, 100_000) as i32,
            })
            .collect();
        let (mults, shifts): (Vec<i32>, Vec<i32>) = (0..n)
            .map(|_| match rng.below(8) {
                0 => (i32::MAX, -(rng.below(32) as i32)),
                1 => (
                    rng.range(0, i32::MAX as i64) as i32,
                    -(rng.below(32) as i32),
                ),
                _ => quantize_multiplier(10f64.powf(rng.range(-60, 0) as f64 / 10.0)),
            })
            .unzip();
        let off = [-128, 127, 0, rng.range(-128, 127) as i32][rng.below(4)];
        let (amin, amax) = act_range(&mut rng, off);
        let rq = kernels::RequantCols {
            bias: &bias,
            multipliers: &mults,
            shifts: &shifts,
            output_offset: off,
            act_min: amin,
            act_max: amax,
        };
        let run = |path: KernelPath| {
            let mut out = vec![0x11i8; m * ldo + 1];
            kernels::requant_i8(
                path,
                Mat::new(&acc, m, n, ldacc),
                &rq,
                MatMut::new(&mut out, m, n, ldo),
            );
            out
        };
        let want = run(KernelPath::Scalar);
        for path in paths() {
            assert_eq!(run(path), want, "case {case}: {path} m={m} n={n}");
        }
    }
}

/// The requantization epilogue over sweeps of consecutive sums (the AVX-512 path computes
/// most vectors through an f32 shortcut that is exact only away from rounding boundaries,
/// and takes the integer arithmetic for a vector with a lane near one): 16 columns of
/// multipliers (powers of two, whose products land exactly on ties; the largest; random
/// 31-bit ones; zero; TFLite scales), right shifts 0..=31, biases that centre each
/// column's sweep where its outputs cross the int8 range, mostly around rounding
/// boundaries (or anywhere), offsets at and
/// past the shortcut's bound of 256, on every path against the scalar oracle, through the
/// epilogue alone (`requant_i8`) and through the fused GEMM's register tile.
#[test]
fn requant_i8_sweeps_are_bit_exact() {
    let mut rng = Rng::new(0xED6E_CA30_0000_0808);
    let (m, n) = (1usize << 14, 16usize);
    let half = (m / 2) as i32;
    let acc: Vec<i32> = (0..m * n).map(|v| (v / n) as i32 - half).collect();
    for case in 0..48 {
        let (mults, shifts): (Vec<i32>, Vec<i32>) = (0..n)
            .map(|_| {
                let right = -(rng.below(32) as i32);
                match rng.below(6) {
                    0 => (1 << 30, right),
                    1 => (i32::MAX, right),
                    2 => (rng.range(1 << 30, i32::MAX as i64) as i32, right),
                    3 => (0, right),
                    _ => quantize_multiplier(10f64.powf(-(rng.range(3, 60) as f64) / 10.0)),
                }
            })
            .unzip();
        let bias: Vec<i32> = (0..n)
            .map(|j| {
                let scale = mults[j] as f64 * 2f64.powi(shifts[j] - 31);
                match rng.below(4) {
                    0 => rng.next_u64() as i32,
                    _ if scale == 0.0 => 0,
                    _ => {
                        // Sums whose exact product lies near an integer (the sweep then
                        // passes close to the rounding boundaries, for small scales within
                        // 2^-20 of them), or anywhere between.
                        let near = [-0.5, -0.5, 0.0, rng.below(1000) as f64 / 1000.0];
                        let target = rng.range(-300, 300) as f64 + near[rng.below(4)];
                        (target / scale).clamp(-2e9, 2e9) as i32
                    }
                }
            })
            .collect();
        let off = [-128, 127, 0, 256, -256, 257, rng.range(-128, 127) as i32][rng.below(7)];
        let (amin, amax) = act_range(&mut rng, off);
        let rq = kernels::RequantCols {
            bias: &bias,
            multipliers: &mults,
            shifts: &shifts,
            output_offset: off,
            act_min: amin,
            act_max: amax,
        };
        let run = |path: KernelPath| {
            let mut out = vec![0x11i8; m * n];
            kernels::requant_i8(
                path,
                Mat::dense(&acc, m, n),
                &rq,
                MatMut::dense(&mut out, m, n),
            );
            out
        };
        let want = run(KernelPath::Scalar);
        // The fused GEMM's epilogue over the same sums: k = 1, weights 1, activations
        // -128..=127 as 256 rows, and each call's biases moved on by 256.
        let a: Vec<i8> = (-128..=127).collect();
        let fused = |path: KernelPath| {
            let p = kernels::pack_i8(path, &vec![1i8; n], n, 1);
            let mut out = vec![0x11i8; m * n];
            let mut scratch = vec![0i32; 256 * n];
            for t in 0..m / 256 {
                let shift = (t * 256 + 128) as i32 - half;
                let bias_t: Vec<i32> = bias.iter().map(|b| b.wrapping_add(shift)).collect();
                let rq_t = kernels::RequantCols {
                    bias: &bias_t,
                    ..rq
                };
                let o = &mut out[t * 256 * n..(t + 1) * 256 * n];
                kernels::gemm_requant_i8(
                    &p,
                    Mat::dense(&a, 256, 1),
                    &rq_t,
                    &mut scratch,
                    MatMut::dense(o, 256, n),
                );
            }
            out
        };
        for path in paths() {
            for (how, got) in [("requant_i8", run(path)), ("gemm_requant_i8", fused(path))] {
                if let Some(i) = (0..m * n).find(|&i| got[i] != want[i]) {
                    let j = i % n;
                    panic!(
                        "case {case}: {path} {how} sum {} column {j} (multiplier {}, shift {}, \
                         bias {}, offset {off}): got {}, want {}",
                        acc[i], mults[j], shifts[j], bias[j], got[i], want[i]
                    );
                }
            }
        }
    }
}
