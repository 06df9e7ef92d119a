//! The aarch64 kernels (NEON, dotprod, i8mm) against the scalar oracle: int8 GEMM, requantization
//! and depthwise bit-exact, f32 GEMM and depthwise within rounding, on random shapes (empty, odd,
//! tails, k > 1000), extreme values, per-channel parameters and row subranges.
//!
//! Run under qemu for each CPU, since each offers different paths:
//! `QEMU_CPU=cortex-a72|cortex-a76|max RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=target/aarch64-debian
//! /usr/bin/cargo test --target aarch64-unknown-linux-gnu --test kernels_aarch64`.
#![cfg(target_arch = "aarch64")]

use edgecam::engine::kernels::aarch64 as arm;
use edgecam::engine::kernels::scalar::conv::{self, ConvGeom};
use edgecam::engine::kernels::{KernelPath, Mat, MatMut, RequantCols};
use edgecam::engine::quant::{multiply_by_quantized_multiplier, RequantPerChannel};

mod common;
use common::Rng;

/// int8 data in one of several regimes: uniform, all -128, all 127, only {-128, 127}.
fn i8s_mode(rng: &mut Rng, n: usize, mode: u32) -> Vec<i8> {
    match mode {
        1 => vec![-128; n],
        2 => vec![127; n],
        3 => (0..n)
            .map(|_| if rng.next_u64() & 1 == 0 { -128 } else { 127 })
            .collect(),
        4 => (0..n).map(|_| rng.range(-127, 127) as i8).collect(),
        _ => rng.i8s(n),
    }
}

fn f32s(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| rng.range(-1_000_000, 1_000_000) as f32 / 500_000.0)
        .collect()
}

/// The SIMD paths this CPU offers (the test passes trivially only if there are none, which
/// cannot happen on aarch64: NEON is mandatory).
fn simd_paths() -> Vec<KernelPath> {
    let p: Vec<KernelPath> = KernelPath::available()
        .into_iter()
        .filter(|p| *p != KernelPath::Scalar)
        .collect();
    assert!(
        p.contains(&KernelPath::Neon),
        "NEON must be available on aarch64: {p:?}"
    );
    p
}

fn gemm_ref(w: &[i8], n: usize, k: usize, a: &[i8], m: usize, lda: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0i32;
            for kk in 0..k {
                s = s.wrapping_add(a[i * lda + kk] as i32 * w[j * k + kk] as i32);
            }
            out[i * n + j] = s;
        }
    }
    out
}

/// Runs gemm_i8 with `ldacc > n` and a sentinel-filled acc; checks the result and that nothing
/// outside the m x n block was written.
fn check_gemm(
    path: KernelPath,
    w: &[i8],
    n: usize,
    k: usize,
    a: &[i8],
    m: usize,
    lda: usize,
    what: &str,
) {
    let packed = arm::pack_i8(path, w, n, k);
    let ldacc = n + 3;
    let sentinel = 0x5A5A_5A5A;
    let mut acc = vec![sentinel; m * ldacc];
    arm::gemm_i8(
        path,
        &packed,
        Mat::new(a, m, k, lda),
        MatMut::new(&mut acc, m, n, ldacc),
    );
    let want = gemm_ref(w, n, k, a, m, lda);
    for i in 0..m {
        for j in 0..ldacc {
            let got = acc[i * ldacc + j];
            if j < n {
                assert_eq!(
                    got,
                    want[i * n + j],
                    "{path} gemm_i8 {what}: m={m} n={n} k={k} lda={lda} at ({i},{j})"
                );
            } else {
                assert_eq!(
                    got, sentinel,
                    "{path} gemm_i8 {what}: wrote padding at ({i},{j})"
                );
            }
        }
    }
}

#[test]
fn gemm_i8_matches_triple_loop_on_random_shapes() {
    let mut rng = Rng::new(0x4B4E_454F_4E00_0001);
    let ms = [0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 16, 17, 23];
    let ns = [0, 1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 33];
    let ks = [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 27, 31, 32, 33, 63, 96, 100, 144,
    ];
    for path in simd_paths() {
        for case in 0..300 {
            let (m, n, k) = (rng.pick(&ms), rng.pick(&ns), rng.pick(&ks));
            let lda = k + rng.pick(&[0, 0, 1, 5, 16]);
            let mode = (case % 10) as u32;
            let w = i8s_mode(&mut rng, n * k, if mode < 5 { mode } else { 0 });
            let alen = if m == 0 { 0 } else { (m - 1) * lda + k };
            let a = i8s_mode(
                &mut rng,
                alen,
                if mode < 5 {
                    (mode + case as u32 / 10) % 5
                } else {
                    0
                },
            );
            check_gemm(
                path,
                &w,
                n,
                k,
                &a,
                m,
                lda,
                &format!("case {case} mode {mode}"),
            );
        }
    }
}

#[test]
fn gemm_i8_large_k_and_extremes() {
    let mut rng = Rng::new(99);
    for path in simd_paths() {
        for &(m, n, k) in &[
            (9, 17, 1000),
            (3, 8, 1031),
            (5, 24, 1152),
            (1, 1, 1),
            (8, 8, 16),
        ] {
            for mode in 0..5 {
                let w = i8s_mode(&mut rng, n * k, mode);
                let a = i8s_mode(&mut rng, m * k, (mode + 1) % 5);
                check_gemm(path, &w, n, k, &a, m, k, &format!("large k mode {mode}"));
                // Same sign extremes on both sides: the i16 pair sums would overflow if two
                // (-128)·(-128) products shared a lane.
                let a = i8s_mode(&mut rng, m * k, mode);
                check_gemm(
                    path,
                    &w,
                    n,
                    k,
                    &a,
                    m,
                    k,
                    &format!("large k same mode {mode}"),
                );
            }
        }
        // Weights in [-127, 127] take the SMLAL path on Neon; A at -128 everywhere.
        let (m, n, k) = (6, 10, 515);
        let w: Vec<i8> = (0..n * k)
            .map(|i| if i % 3 == 0 { 127 } else { -127 })
            .collect();
        let a = vec![-128i8; m * k];
        check_gemm(path, &w, n, k, &a, m, k, "smlal extremes");
        let w = vec![-127i8; n * k];
        check_gemm(path, &w, n, k, &a, m, k, "smlal all -127");
        // The i32 sum wraps: 140000 * 16384 > i32::MAX.
        let (m, n, k) = (2, 3, 140_000);
        let w = vec![-128i8; n * k];
        let a = vec![-128i8; m * k];
        check_gemm(path, &w, n, k, &a, m, k, "wrapping");
    }
}

#[test]
fn gemm_i8_pack_is_checked_against_path_and_shape() {
    for path in simd_paths() {
        let w = vec![1i8; 6 * 10];
        let packed = arm::pack_i8(path, &w, 6, 10);
        assert_eq!(packed.len(), arm::packed_len_i8(path, 6, 10));
        let a = vec![2i8; 3 * 10];
        let mut acc = vec![0i32; 3 * 6];
        arm::gemm_i8(
            path,
            &packed,
            Mat::dense(&a, 3, 10),
            MatMut::dense(&mut acc, 3, 6),
        );
        assert!(acc.iter().all(|&x| x == 20), "{path}: {acc:?}");
        let mismatched = std::panic::catch_unwind(|| {
            let mut acc = vec![0i32; 3 * 7];
            arm::gemm_i8(
                path,
                &packed,
                Mat::dense(&a, 3, 10),
                MatMut::dense(&mut acc, 3, 7),
            );
        });
        assert!(
            mismatched.is_err(),
            "{path}: a packed buffer of another shape must be refused"
        );
    }
}

fn requant_ref(x: i32, mult: i32, shift: i32, off: i32, lo: i32, hi: i32) -> i8 {
    (multiply_by_quantized_multiplier(x, mult, shift).wrapping_add(off)).clamp(lo, hi) as i8
}

#[test]
fn requant_i8_matches_scalar() {
    let mut rng = Rng::new(0x5245_5155_414E_5400);
    let special_acc = [
        i32::MIN,
        i32::MIN + 1,
        i32::MAX,
        i32::MAX - 1,
        0,
        1,
        -1,
        2,
        -2,
        3,
        -3,
        1 << 30,
        -(1 << 30),
        12345,
        -12345,
    ];
    for path in simd_paths() {
        for case in 0..400 {
            let m = rng.usize(1, 9);
            let n = rng.pick(&[1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 40]);
            let ldacc = n + rng.usize(0, 3);
            let ldo = n + rng.usize(0, 3);
            let acc: Vec<i32> = (0..m * ldacc)
                .map(|_| match rng.usize(0, 3) {
                    0 => rng.pick(&special_acc),
                    1 => rng.range(-100_000, 100_000) as i32,
                    2 => rng.range(i32::MIN as i64, i32::MAX as i64) as i32,
                    _ => {
                        rng.range(i32::MAX as i64 - 1000, i32::MAX as i64) as i32
                            * rng.pick(&[1, -1])
                    }
                })
                .collect();
            let bias: Vec<i32> = (0..n)
                .map(|_| match rng.usize(0, 2) {
                    0 => 0,
                    1 => rng.range(-100_000, 100_000) as i32,
                    _ => rng.pick(&special_acc),
                })
                .collect();
            let mults: Vec<i32> = (0..n)
                .map(|_| match rng.usize(0, 4) {
                    0 => rng.pick(&[i32::MAX, 1 << 30, i32::MIN, 0, 1, -1]),
                    1 => rng.range(i32::MIN as i64, i32::MAX as i64) as i32,
                    _ => rng.range(1 << 30, i32::MAX as i64) as i32,
                })
                .collect();
            let shifts: Vec<i32> = (0..n)
                .map(|_| match rng.usize(0, 2) {
                    0 => rng.pick(&[-31, -30, -1, 0, 1, 29, 30, 31]),
                    1 => rng.range(-31, 31) as i32,
                    _ => rng.range(-12, 2) as i32,
                })
                .collect();
            let r = rng.range(-128, 127) as i32;
            let off = rng.pick(&[-128, 127, 0, r]);
            let (lo, hi) = match case % 4 {
                0 => (-128, 127),
                1 => (rng.range(-128, 0) as i32, rng.range(0, 127) as i32),
                2 => (off, 127),
                _ => (-128, -128),
            };
            let rq = RequantCols {
                bias: &bias,
                multipliers: &mults,
                shifts: &shifts,
                output_offset: off,
                act_min: lo,
                act_max: hi,
            };
            let mut out = vec![0x55u8 as i8; m * ldo];
            arm::requant_i8(
                path,
                Mat::new(&acc, m, n, ldacc),
                &rq,
                MatMut::new(&mut out, m, n, ldo),
            );
            for i in 0..m {
                for j in 0..ldo {
                    let got = out[i * ldo + j];
                    if j < n {
                        let x = acc[i * ldacc + j].wrapping_add(bias[j]);
                        let want = requant_ref(x, mults[j], shifts[j], off, lo, hi);
                        assert_eq!(
                            got, want,
                            "{path} requant case {case} ({i},{j}): x={x} mult={} shift={} off={off} [{lo},{hi}]",
                            mults[j], shifts[j]
                        );
                    } else {
                        assert_eq!(got, 0x55, "{path} requant wrote padding at ({i},{j})");
                    }
                }
            }
        }
    }
}

#[test]
fn requant_rounding_ties_are_away_from_zero() {
    // x * 2^30 / 2^31 = x/2, then a right shift by 2: exact ties at every rounding step.
    for path in simd_paths() {
        let n = 8;
        let xs: Vec<i32> = (-64..64).collect();
        let m = xs.len() / n;
        let mults = vec![1 << 30; n];
        let shifts = vec![-2; n];
        let bias = vec![0; n];
        let rq = RequantCols {
            bias: &bias,
            multipliers: &mults,
            shifts: &shifts,
            output_offset: 0,
            act_min: -128,
            act_max: 127,
        };
        let mut out = vec![0i8; xs.len()];
        arm::requant_i8(
            path,
            Mat::dense(&xs, m, n),
            &rq,
            MatMut::dense(&mut out, m, n),
        );
        for (x, y) in xs.iter().zip(&out) {
            assert_eq!(
                *y,
                requant_ref(*x, 1 << 30, -2, 0, -128, 127),
                "{path}: x={x}"
            );
        }
        // -5 * 0.5 = -2.5 -> -2 in the high multiply (ties toward +inf there), -6/8 = -0.75 -> -1.
        let idx = |x: i32| (x + 64) as usize;
        assert_eq!(out[idx(-6)], -1, "{path}");
        assert_eq!(
            out[idx(-4)],
            -1,
            "{path}: -4/2/4 = -0.5 rounds away from zero"
        );
        assert_eq!(out[idx(4)], 1, "{path}: 0.5 rounds away from zero");
    }
}

struct DwCase {
    g: ConvGeom,
    dm: usize,
}

fn random_geom(rng: &mut Rng) -> DwCase {
    let dm = rng.pick(&[1, 1, 1, 2, 3]);
    let in_c = rng.usize(1, 40);
    let (fh, fw) = rng.pick(&[(3, 3), (3, 3), (3, 3), (1, 1), (2, 3), (5, 5), (3, 1)]);
    let (sh, sw) = rng.pick(&[(1, 1), (2, 2), (1, 2), (2, 1)]);
    let (dh, dw) = rng.pick(&[(1, 1), (1, 1), (2, 2), (1, 2)]);
    let in_h = rng.usize(1, 9);
    let in_w = rng.usize(1, 9);
    let out_len = |inp: usize, f: usize, s: usize, d: usize, pad: usize, pad2: usize| {
        let span = d * (f - 1) + 1;
        let total = inp + pad + pad2;
        if total < span {
            0
        } else {
            (total - span) / s + 1
        }
    };
    let pad_top = rng.usize(0, fh - 1);
    let pad_left = rng.usize(0, fw - 1);
    let out_h = out_len(in_h, fh, sh, dh, pad_top, rng.usize(0, fh - 1)).max(1);
    let out_w = out_len(in_w, fw, sw, dw, pad_left, rng.usize(0, fw - 1)).max(1);
    DwCase {
        g: ConvGeom {
            batch: rng.usize(1, 2),
            in_h,
            in_w,
            in_c,
            out_h,
            out_w,
            out_c: in_c * dm,
            filter_h: fh,
            filter_w: fw,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            pad_top,
            pad_left,
        },
        dm,
    }
}

/// Random row subranges covering `0..rows` (possibly several pieces).
fn split_rows(rng: &mut Rng, rows: usize) -> Vec<std::ops::Range<usize>> {
    let mut cuts = vec![0, rows];
    for _ in 0..rng.usize(0, 3) {
        cuts.push(rng.usize(0, rows));
    }
    cuts.sort();
    cuts.windows(2).map(|w| w[0]..w[1]).collect()
}

#[test]
fn depthwise_i8_matches_scalar_on_random_geometries() {
    let mut rng = Rng::new(0x4457_4938_0000_0001);
    for path in simd_paths() {
        for case in 0..250 {
            let DwCase { g, dm } = random_geom(&mut rng);
            let mode = (case % 7) as u32;
            let input = i8s_mode(&mut rng, g.input_len(), if mode < 5 { mode } else { 0 });
            let filter = i8s_mode(
                &mut rng,
                g.filter_h * g.filter_w * g.out_c,
                if mode < 5 { (mode + 2) % 5 } else { 0 },
            );
            let bias: Option<Vec<i32>> = (case % 5 != 0).then(|| {
                (0..g.out_c)
                    .map(|_| rng.range(-200_000, 200_000) as i32)
                    .collect()
            });
            let mults: Vec<i32> = (0..g.out_c)
                .map(|_| rng.range(1 << 30, i32::MAX as i64) as i32)
                .collect();
            let shifts: Vec<i32> = (0..g.out_c)
                .map(|_| {
                    (if case % 3 == 0 {
                        rng.range(-31, 30)
                    } else {
                        rng.range(-14, 1)
                    }) as i32
                })
                .collect();
            let r = rng.range(-127, 128) as i32;
            let input_offset = rng.pick(&[128, -127, 0, r]);
            let filter_offset = if case % 6 == 5 {
                rng.range(-20, 20) as i32
            } else {
                0
            };
            let output_offset = rng.range(-128, 127) as i32;
            let (act_min, act_max) = if case % 2 == 0 {
                (-128, 127)
            } else {
                (output_offset.max(-128), 127.min(output_offset + 100))
            };
            let q = RequantPerChannel {
                input_offset,
                filter_offset,
                output_offset,
                multipliers: &mults,
                shifts: &shifts,
                act_min,
                act_max,
            };
            let mut want = vec![0i8; g.output_len()];
            conv::depthwise_q::<i8>(&g, dm, &input, &filter, bias.as_deref(), &q, &mut want);
            let mut got = vec![0x33i8; g.output_len()];
            let rows_total = g.batch * g.out_h;
            let ranges = split_rows(&mut rng, rows_total);
            let row_len = g.out_w * g.out_c;
            // First a single subrange: only its rows may change.
            let first = ranges[0].clone();
            let op = conv::Depthwise {
                g: &g,
                depth_multiplier: dm,
                input: &input,
                filter: &filter,
                bias: bias.as_deref(),
            };
            arm::depthwise_i8(path, &op, &q, first.clone(), &mut got);
            for (r, chunk) in got.chunks(row_len).enumerate() {
                if first.contains(&r) {
                    assert_eq!(
                        chunk,
                        &want[r * row_len..(r + 1) * row_len],
                        "{path} dw_i8 case {case} row {r} {g:?} dm {dm}"
                    );
                } else {
                    assert!(
                        chunk.iter().all(|&x| x == 0x33),
                        "{path} dw_i8 case {case}: row {r} outside {first:?} written"
                    );
                }
            }
            for r in &ranges[1..] {
                arm::depthwise_i8(path, &op, &q, r.clone(), &mut got);
            }
            assert_eq!(
                got, want,
                "{path} dw_i8 case {case} {g:?} dm {dm} offsets {input_offset} {filter_offset}"
            );
        }
    }
}

fn close(got: f32, want: f32, scale: f32) -> bool {
    (got - want).abs() <= 1e-5 * scale + 1e-6
}

#[test]
fn gemm_f32_matches_reference_within_rounding() {
    use edgecam::engine::kernels::{Aligned, Mat, MatMut, PackedF32};
    let mut rng = Rng::new(0x4633_3200);
    let ms = [0, 1, 2, 3, 5, 7, 8, 9, 13, 16, 17];
    let ns = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 24];
    let ks = [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 144, 1001];
    for path in simd_paths() {
        for case in 0..200 {
            let (m, n, k) = (rng.pick(&ms), rng.pick(&ns), rng.pick(&ks));
            let lda = k + rng.pick(&[0, 0, 3]);
            let ldo = n + rng.pick(&[0, 2]);
            let w = f32s(&mut rng, n * k);
            let a = f32s(&mut rng, if m == 0 { 0 } else { (m - 1) * lda + k });
            let bias = (case % 3 != 0).then(|| f32s(&mut rng, n));
            let clamp = rng.pick(&[(f32::MIN, f32::MAX), (0.0, 6.0), (-1.0, 1.0)]);
            let packed = PackedF32 {
                path,
                n,
                k,
                data: Aligned::from_slice(&arm::pack_f32(path, &w, n, k)),
            };
            let mut out = vec![f32::NAN; m * ldo];
            arm::gemm_f32(
                &packed,
                Mat::new(&a, m, k, lda),
                bias.as_deref(),
                clamp.into(),
                MatMut::new(&mut out, m, n, ldo),
            );
            for i in 0..m {
                for j in 0..ldo {
                    let got = out[i * ldo + j];
                    if j >= n {
                        assert!(got.is_nan(), "{path} gemm_f32 wrote padding ({i},{j})");
                        continue;
                    }
                    let mut s = 0f64;
                    let mut mag = 0f64;
                    for kk in 0..k {
                        let p = a[i * lda + kk] as f64 * w[j * k + kk] as f64;
                        s += p;
                        mag += p.abs();
                    }
                    if let Some(b) = &bias {
                        s += b[j] as f64;
                        mag += (b[j] as f64).abs();
                    }
                    let want = (s as f32).max(clamp.0).min(clamp.1);
                    assert!(
                        close(got, want, mag as f32),
                        "{path} gemm_f32 case {case} m={m} n={n} k={k} ({i},{j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn depthwise_f32_matches_scalar_within_rounding() {
    let mut rng = Rng::new(0x4457_4633_32);
    for path in simd_paths() {
        for case in 0..150 {
            let DwCase { g, dm } = random_geom(&mut rng);
            let input = f32s(&mut rng, g.input_len());
            let filter = f32s(&mut rng, g.filter_h * g.filter_w * g.out_c);
            let bias = (case % 4 != 0).then(|| f32s(&mut rng, g.out_c));
            let clamp = rng.pick(&[(f32::MIN, f32::MAX), (0.0, 6.0)]);
            let mut want = vec![0f32; g.output_len()];
            conv::depthwise_f32(&g, dm, &input, &filter, bias.as_deref(), clamp, &mut want);
            let mut got = vec![f32::NAN; g.output_len()];
            let op = conv::Depthwise {
                g: &g,
                depth_multiplier: dm,
                input: &input,
                filter: &filter,
                bias: bias.as_deref(),
            };
            for r in split_rows(&mut rng, g.batch * g.out_h) {
                arm::depthwise_f32(path, &op, clamp.into(), r, &mut got);
            }
            // Magnitude bound: |x|, |w| <= 2, at most 25 taps, |bias| <= 2.
            let scale = 4.0 * (g.filter_h * g.filter_w) as f32 + 2.0;
            for (o, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!(
                    close(*x, *y, scale),
                    "{path} dw_f32 case {case} at {o}: {x} vs {y} {g:?} dm {dm}"
                );
            }
        }
    }
}
