//! `scripts/tflite2onnx.py`, the converter that gives ONNX Runtime the same SSD network for
//! `scripts/bench-peers`: each bundled SSD model is converted and the ONNX model's outputs on a
//! real photo are compared with TFLite's reference kernels by the script's `--check` (float:
//! within 1e-4 of the largest output; int8: within a few quantization steps, and ONNX Runtime's
//! optimized graph must run every convolution and addition with its int8 kernels).
//!
//! Needs the Python reference environment (`EDGECAM_PYTHON`, or `.venv` made by `scripts/test`,
//! with `onnx` from `scripts/requirements.txt`).

//! Pure Python (the converter and its peers), so it runs in the x86_64 suite only: running it again
//! under qemu would test nothing of ours.
#![cfg(not(target_arch = "aarch64"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("EDGECAM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the Python reference tools are needed: run scripts/test (it makes .venv) or set EDGECAM_PYTHON"
    );
    venv
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn convert(model: &str, out_name: &str, check: bool) -> (Output, PathBuf) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(out_name);
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new(python());
    cmd.arg(repo("scripts/tflite2onnx.py"))
        .arg(repo(model))
        .arg(&out);
    if check {
        cmd.arg("--check").arg(repo("tests/data/dog.jpg"));
    }
    let output = cmd.output().expect("running scripts/tflite2onnx.py");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    (output, out)
}

fn converts_and_matches(model: &str, out_name: &str, expect_lines: &[&str]) {
    let (output, out) = convert(model, out_name, true);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{model}: conversion or comparison failed (see above)"
    );
    assert!(
        std::fs::metadata(&out)
            .map(|m| m.len() > 1_000_000)
            .unwrap_or(false),
        "{model}: no ONNX model written at {}",
        out.display()
    );
    // Every compared output is reported, and none failed.
    for want in expect_lines {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(want)),
            "{model}: no passing line containing {want:?}"
        );
    }
    assert!(!stdout.contains("FAIL"), "{model}: a comparison failed");
}

#[test]
fn fp32_ssd_matches_tflite() {
    converts_and_matches(
        "models/ssd_mobilenetv2_oidv4_fp32.tflite",
        "ssd_fp32.onnx",
        &[
            "ORT raw_outputs/box_encodings",
            "ORT raw_outputs/class_predictions",
        ],
    );
}

#[test]
fn fp16_weight_ssd_matches_tflite() {
    // DEQUANTIZE of float16 constants is folded into float32 initializers.
    converts_and_matches(
        "models/ssd_mobilenetv2_oidv4_fp16.tflite",
        "ssd_fp16.onnx",
        &[
            "ORT raw_outputs/box_encodings",
            "ORT raw_outputs/class_predictions",
        ],
    );
}

#[test]
fn int8_ssd_matches_tflite_and_runs_int8_kernels() {
    converts_and_matches(
        "models/ssd_mobilenetv2_oidv4_int8.tflite",
        "ssd_int8.onnx",
        &[
            "ORT unfused raw_outputs/box_encodings",
            "ORT unfused raw_outputs/class_predictions",
            "ORT optimized graph: 72 QLinearConv, 10 QLinearAdd, 0 float Conv, 0 float Add",
            "ORT optimized raw_outputs/box_encodings",
            "ORT optimized raw_outputs/class_predictions",
        ],
    );
}

#[test]
fn unsupported_operator_is_a_clear_error() {
    // BlazeFace uses operators (RELU, PAD, MAX_POOL_2D, ...) the SSD converter does not map.
    let (output, out) = convert(
        "models/face_detection_short_range_fp16.tflite",
        "face.onnx",
        false,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "expected exit status 2");
    assert!(
        stderr.contains("is not supported by this converter") && stderr.contains("operator #"),
        "unclear error: {stderr}"
    );
    assert!(
        !out.exists(),
        "no ONNX file may be written for a rejected model"
    );
}
