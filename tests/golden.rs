//! Golden tests: the bundled SSD models on real images, against outputs of
//! TFLite's reference kernels (made by `scripts/make-goldens`).
//! int8 outputs must be bit-exact; float outputs within 1e-4 (relative, with
//! a 1e-4 absolute floor). Every kernel path this CPU offers runs, with one and
//! two inference threads (`EDGECAM_KERNELS` restricts the run to one path).

use std::path::{Path, PathBuf};

use edgecam::engine::kernels::KernelPath;
use edgecam::engine::{tflite, DType, Interpreter, InterpreterOptions};
use edgecam::npy::NpyArray;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_dir() -> PathBuf {
    root().join("tests/data/golden")
}

fn stems() -> Vec<String> {
    let list = std::fs::read_to_string(golden_dir().join("images.txt")).unwrap();
    list.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            Path::new(l.trim())
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// The float input exactly as scripts/make-goldens computes it (float32 arithmetic).
fn float_input(rgb: &[u8]) -> Vec<f32> {
    rgb.iter().map(|&v| v as f32 / 127.5 - 1.0).collect()
}

/// (kernel path, threads) combinations to run: every available path (or the one
/// `EDGECAM_KERNELS` names) on 1 thread, and the best of them on 2 threads.
fn configs() -> Vec<(KernelPath, usize)> {
    let paths = match std::env::var("EDGECAM_KERNELS") {
        Ok(k) => vec![KernelPath::resolve(&k).unwrap()],
        Err(_) => KernelPath::available(),
    };
    let mut c: Vec<(KernelPath, usize)> = paths.iter().map(|&p| (p, 1)).collect();
    c.push((*paths.last().unwrap(), 2));
    c
}

fn run_variant(
    variant: &str,
    stem: &str,
    path: KernelPath,
    threads: usize,
) -> (Interpreter, Vec<NpyArray>) {
    let model = root().join(format!("models/ssd_mobilenetv2_oidv4_{variant}.tflite"));
    let graph = tflite::load_file(&model).unwrap();
    let opts = InterpreterOptions {
        kernels: path,
        threads,
        ..Default::default()
    };
    let mut it = Interpreter::with_options(graph, &opts).unwrap();
    let rgb = NpyArray::read(&golden_dir().join(format!("{stem}_rgb.npy"))).unwrap();
    assert_eq!(rgb.shape, vec![1, 300, 300, 3]);
    let xf = float_input(&rgb.data);
    let info = it.input_info(0).unwrap().clone();
    match info.dtype {
        DType::F32 => it.set_input(0, DType::F32, &xf).unwrap(),
        DType::I8 => {
            let q = info.quant.as_ref().unwrap();
            let (s, z) = (q.scale0(), q.zp0());
            let xq: Vec<i8> = xf
                .iter()
                .map(|&v| ((v / s).round() as i32 + z).clamp(-128, 127) as i8)
                .collect();
            it.set_input(0, DType::I8, &xq).unwrap();
        }
        d => panic!("unexpected input type {d:?}"),
    }
    it.invoke().unwrap();
    let mut refs = Vec::new();
    for k in 0..it.output_count() {
        refs.push(
            NpyArray::read(&golden_dir().join(format!("{stem}_{variant}_out{k}.npy"))).unwrap(),
        );
    }
    (it, refs)
}

#[test]
fn int8_ssd_is_bit_exact_with_tflite_reference() {
    for (path, threads) in configs() {
        for stem in stems() {
            let (it, refs) = run_variant("int8", &stem, path, threads);
            for (k, r) in refs.iter().enumerate() {
                let out = it.output(k).unwrap();
                assert_eq!(out.dtype(), DType::I8);
                assert_eq!(out.shape(), &r.shape[..], "{stem} output {k} shape");
                let got = out.i8().unwrap();
                let want: &[i8] = bytemuck::cast_slice(&r.data);
                let diff = got.iter().zip(want).filter(|(a, b)| a != b).count();
                assert_eq!(
                diff,
                0,
                "{stem} int8 output {k} ({path}, {threads} threads): {diff} of {} values differ",
                want.len()
            );
            }
        }
    }
}

fn check_float(variant: &str) {
    for (path, threads) in configs() {
        let mut worst = 0f32;
        for stem in stems() {
            let (it, refs) = run_variant(variant, &stem, path, threads);
            for (k, r) in refs.iter().enumerate() {
                let out = it.output(k).unwrap();
                assert_eq!(out.shape(), &r.shape[..], "{stem} output {k} shape");
                let got = out.f32().unwrap();
                let want: Vec<f32> = bytemuck::pod_collect_to_vec(&r.data);
                for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                    let err = (a - b).abs();
                    worst = worst.max(err / b.abs().max(1.0));
                    assert!(
                    err <= 1e-4 * b.abs() + 1e-4,
                    "{variant} {stem} output {k}[{i}] ({path}, {threads} threads): got {a}, TFLite {b}"
                );
                }
            }
        }
        println!("{variant} {path} x{threads}: max deviation from TFLite (relative, floor 1) = {worst:e}");
    }
}

#[test]
fn fp32_ssd_matches_tflite_reference() {
    check_float("fp32");
}

#[test]
fn fp16_weight_ssd_matches_tflite_reference() {
    check_float("fp16");
}
