//! MediaPipe's public detectors (PyPI `mediapipe==0.10.14`, fetched by
//! `scripts/fetch-mediapipe` into `target/mediapipe`, or `EDGECAM_MEDIAPIPE_DIR`) against
//! TFLite's reference kernels on real photos. Their weights are sparse float16 constants
//! behind DENSIFY and DEQUANTIZE, which the loader densifies at load.
//!
//! Every output must agree within 1e-4: absolute for values of magnitude below 1, relative
//! above (`|ours − TFLite| ≤ 1e-4 · max(1, |TFLite|)`), or within 1.5× the deviation of
//! TFLite's own optimized kernels from its reference kernels on the same photo where that is
//! larger (float sums in another order: on the full palm detector XNNPACK strays up to 3e-2
//! from the reference).
//!
//! The face and pose detectors use DEPTH_TO_SPACE, the palm detectors PRELU.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use edgecam::engine::graph::Op;
use edgecam::engine::{tflite, DType, Interpreter};
use edgecam::npy::NpyArray;

mod common;
use common::oracle::{python, tflite_cases};
use common::{root, tmpdir};

const FACE: &str = "face_detection_full_range_sparse.tflite";
const PALM_FULL: &str = "palm_detection_full.tflite";
const PALM_LITE: &str = "palm_detection_lite.tflite";
const POSE: &str = "pose_detection.tflite";

fn mediapipe_dir() -> PathBuf {
    std::env::var_os("EDGECAM_MEDIAPIPE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/mediapipe"))
}

/// The model file, fetched (once per test binary) when missing.
fn model(name: &str) -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    let path = mediapipe_dir().join(name);
    let _g = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let st = Command::new(root().join("scripts/fetch-mediapipe"))
            .arg(mediapipe_dir())
            .env("EDGECAM_PYTHON", python())
            .status()
            .expect("running scripts/fetch-mediapipe");
        assert!(st.success(), "scripts/fetch-mediapipe failed");
    }
    assert!(path.exists(), "{} missing", path.display());
    path
}

/// `src` cut before its first `op` operator, written under `dir`.
fn cut(src: &Path, op: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!(
        "cut-{}",
        src.file_name().unwrap().to_string_lossy()
    ));
    let st = Command::new(python())
        .arg(root().join("scripts/cut_model.py"))
        .arg(src)
        .arg(&out)
        .arg(op)
        .status()
        .expect("running scripts/cut_model.py");
    assert!(st.success());
    out
}

/// The test photos at `size`×`size`, RGB mapped to [-1, 1] as MediaPipe's detectors
/// expect (float32 NHWC).
fn photos(size: u32) -> Vec<(String, NpyArray)> {
    let names: &[&str] = if cfg!(target_arch = "aarch64") {
        &["person.jpg"]
    } else {
        &["person.jpg", "dog.jpg", "horses.jpg", "eagle.jpg"]
    };
    names
        .iter()
        .map(|n| {
            let img = image::open(root().join("tests/data").join(n))
                .unwrap()
                .to_rgb8();
            let small =
                image::imageops::resize(&img, size, size, image::imageops::FilterType::Triangle);
            let x: Vec<f32> = small.iter().map(|&p| p as f32 / 127.5 - 1.0).collect();
            let x = NpyArray {
                dtype: DType::F32,
                shape: vec![1, size as usize, size as usize, 3],
                data: bytemuck::cast_slice(&x).to_vec(),
            };
            (n.to_string(), x)
        })
        .collect()
}

/// Relative error, absolute below magnitude 1.
fn err(x: f32, y: f32) -> f32 {
    (x - y).abs() / y.abs().max(1.0)
}

/// Run `model` on the photos in edgecam and in TFLite's reference kernels. Float results of
/// deep networks depend on the order of summation, so every output must agree within 1e-4
/// (absolute below 1, relative above), or, where TFLite's own optimized kernels (XNNPACK)
/// stray further than that from its reference kernels on the same photo, within 1.5× their
/// largest deviation on any output of that photo (how sensitive the model is there to the
/// order of float sums).
fn matches_tflite(tag: &str, model: &Path, size: u32) {
    let dir = tmpdir(&format!("mediapipe-run-{tag}"));
    let g = tflite::load_file(model).unwrap();
    let n_out = g.outputs.len();
    let inputs = photos(size);
    let feeds: Vec<NpyArray> = inputs.iter().map(|(_, x)| x.clone()).collect();
    let want = tflite_cases(&dir.join("ref"), model, &feeds, n_out, "BUILTIN_REF");
    let opt = tflite_cases(&dir.join("opt"), model, &feeds, n_out, "BUILTIN");
    let mut it = Interpreter::new(g).unwrap();
    for (((photo, x), want), opt) in inputs.iter().zip(&want).zip(&opt) {
        it.input_bytes_mut(0).unwrap().copy_from_slice(&x.data);
        it.invoke().unwrap();
        let xnnpack = want
            .iter()
            .zip(opt)
            .map(|(want, opt)| {
                let b: Vec<f32> = bytemuck::pod_collect_to_vec(&want.data);
                let c: Vec<f32> = bytemuck::pod_collect_to_vec(&opt.data);
                b.iter()
                    .zip(&c)
                    .map(|(&y, &z)| err(z, y))
                    .fold(0f32, f32::max)
            })
            .fold(0f32, f32::max);
        let bound = 1e-4f32.max(1.5 * xnnpack);
        for (k, want) in want.iter().enumerate() {
            let ours = it.output(k).unwrap();
            assert_eq!(
                ours.shape(),
                &want.shape[..],
                "{tag} {photo}: output {k} shape"
            );
            let a = ours.f32().unwrap();
            let b: Vec<f32> = bytemuck::pod_collect_to_vec(&want.data);
            let mut worst = 0f32;
            for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    err(x, y) <= bound,
                    "{tag} {photo}: output {k}[{i}] ours {x}, TFLite {y} (bound {bound:.2e}; \
                     XNNPACK's largest deviation {xnnpack:.2e})"
                );
                worst = worst.max(err(x, y));
            }
            eprintln!(
                "{tag} {photo}: output {k} {:?}, worst error {worst:.2e} (XNNPACK's {xnnpack:.2e})",
                want.shape
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn face_detector_weights_are_densified_at_load() {
    // The sparse face detector up to its first DEPTH_TO_SPACE: all 46 DENSIFY operators
    // are gone at load, their outputs dense float16 constants that DEQUANTIZE reads.
    let dir = tmpdir("mediapipe-face-load");
    let m = cut(&model(FACE), "DEPTH_TO_SPACE", &dir);
    let g = tflite::load_file(&m).unwrap();
    assert_eq!(g.nodes.len(), 377 - 46);
    let dense_f16 = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Dequantize))
        .filter(|n| {
            let t = &g.tensors[n.inputs[0].unwrap()];
            t.dtype == DType::F16 && t.is_const()
        })
        .count();
    assert_eq!(dense_f16, 178, "every DEQUANTIZE reads a float16 constant");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn face_detection_full_range_sparse_matches_tflite() {
    matches_tflite("face", &model(FACE), 192);
}

#[test]
fn pose_detection_matches_tflite() {
    matches_tflite("pose", &model(POSE), 224);
}

#[test]
fn palm_detection_full_matches_tflite() {
    matches_tflite("palm-full", &model(PALM_FULL), 192);
}

#[test]
fn palm_detection_lite_matches_tflite() {
    matches_tflite("palm-lite", &model(PALM_LITE), 192);
}
