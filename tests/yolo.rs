//! YOLO-family outputs. No exported YOLO model is at hand here (and none is bundled), so the
//! tests build YOLO-shaped graphs with the `.tflite` writer: a real photo goes through 1×1
//! convolutions whose outputs are laid out as YOLOv5 (`[1, N, 5 + C]`, normalised boxes, with
//! objectness) or YOLOv8 (`[1, 4 + C, N]`, boxes in pixels). `model_type = auto` must recognise
//! each, and the detections must equal those of an independent numpy decoder
//! (`scripts/yolo_reference.py`) run on TFLite's reference outputs of the same file and input.

use std::path::PathBuf;
use std::process::Command;

use edgecam::detect::{Detector, DetectorConfig, ModelType};
use edgecam::engine::graph::*;
use edgecam::engine::tensor::DType;
use edgecam::engine::tflite;
use edgecam::npy::NpyArray;
use edgecam::preprocess::{InputKind, Preprocessor, ResizeMode};

mod common;
use common::graph::B;
use common::{root, tmpdir, Rng};

const SIZE: usize = 32;
const CLASSES: usize = 3;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// A 1×1 convolution of the 3-channel input to `out` channels, weights × `gain` + `bias`.
fn conv(b: &mut B, r: &mut Rng, x: usize, out: usize, gain: f32, bias: f32) -> usize {
    let w: Vec<f32> = (0..out * 3).map(|_| r.f32() * gain).collect();
    let bs: Vec<f32> = (0..out).map(|_| bias + r.f32() * gain * 0.2).collect();
    let wt = b.constant(DType::F32, &[out, 1, 1, 3], None, &f32_bytes(&w));
    let bt = b.constant(DType::F32, &[out], None, &f32_bytes(&bs));
    let y = b.tensor(DType::F32, &[1, SIZE, SIZE, out], None);
    b.op(
        Op::Conv2D(Conv2DOptions {
            padding: Padding::Valid,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            activation: Activation::None,
        }),
        vec![Some(x), Some(wt), Some(bt)],
        vec![y],
    );
    y
}

fn logistic(b: &mut B, x: usize, c: usize) -> usize {
    let y = b.tensor(DType::F32, &[1, SIZE, SIZE, c], None);
    b.op(Op::Logistic, vec![Some(x)], vec![y]);
    y
}

/// v5: sigmoid(box) (normalised), sigmoid(objectness, classes) → [1, N, 5 + C].
/// v8: box in pixels (no sigmoid), sigmoid(classes) → [1, 4 + C, N].
fn yolo_graph(v8: bool, seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let mut b = B::default();
    let x = b.tensor(DType::F32, &[1, SIZE, SIZE, 3], None);
    b.inputs.push(x);
    let per = if v8 { 4 + CLASSES } else { 5 + CLASSES };
    let bx = if v8 {
        // Centres and sizes of tens of pixels.
        conv(&mut b, &mut r, x, 4, 12.0, 14.0)
    } else {
        let c = conv(&mut b, &mut r, x, 4, 3.0, -1.0);
        logistic(&mut b, c, 4)
    };
    let sc_n = per - 4;
    let sc = conv(&mut b, &mut r, x, sc_n, 4.0, -0.5);
    let sc = logistic(&mut b, sc, sc_n);
    let cat = b.tensor(DType::F32, &[1, SIZE, SIZE, per], None);
    b.op(
        Op::Concatenation {
            axis: 3,
            activation: Activation::None,
        },
        vec![Some(bx), Some(sc)],
        vec![cat],
    );
    let n = SIZE * SIZE;
    let shape = b.const_i32(&[3], &[1, n as i32, per as i32]);
    let rows = b.tensor(DType::F32, &[1, n, per], None);
    b.op(Op::Reshape, vec![Some(cat), Some(shape)], vec![rows]);
    let out = if v8 {
        let perm = b.const_i32(&[3], &[0, 2, 1]);
        let t = b.tensor(DType::F32, &[1, per, n], None);
        b.op(Op::Transpose, vec![Some(rows), Some(perm)], vec![t]);
        t
    } else {
        rows
    };
    let (g, _) = b.finish(&[out]);
    tflite::writer::write_model(&g)
}

fn python() -> PathBuf {
    std::env::var("EDGECAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv/bin/python"))
}

#[test]
fn yolo_outputs_are_recognised_and_decoded_as_a_reference_decoder_does() {
    let dir = tmpdir("yolo");
    let img = image::open(root().join("tests/data/horses.jpg"))
        .unwrap()
        .to_rgb8();
    for (v8, layout, want) in [
        (false, "v5", ModelType::Yolov5),
        (true, "v8", ModelType::Yolov8),
    ] {
        let model = dir.join(format!("yolo_{layout}.tflite"));
        std::fs::write(&model, yolo_graph(v8, 7)).unwrap();
        let labels = dir.join("labels.txt");
        std::fs::write(&labels, "horse\nperson\ndog\n").unwrap();
        let mut c = DetectorConfig::new(&model);
        c.labels = Some(labels.clone());
        c.score_threshold = Some(0.4);
        let mut det = Detector::from_config(&c).unwrap();
        assert_eq!(det.model_type(), want, "auto chose the wrong layout");
        let ours = det.detect(&img).unwrap();
        assert!(!ours.is_empty(), "{layout}: nothing detected");

        // The same input for TFLite: the photo at 32×32, pixels / 255.
        let mut pre =
            Preprocessor::new(SIZE, SIZE, [0.0; 3], [255.0; 3], false, ResizeMode::Stretch)
                .unwrap();
        let mut x = vec![0u8; SIZE * SIZE * 3 * 4];
        pre.to_bytes(&img, InputKind::F32, &mut x).unwrap();
        let inp = dir.join(format!("in_{layout}.npy"));
        NpyArray {
            dtype: DType::F32,
            shape: vec![1, SIZE, SIZE, 3],
            data: x,
        }
        .write(&inp)
        .unwrap();
        let out = dir.join(format!("ref_{layout}.json"));
        let st = Command::new(python())
            .arg(root().join("scripts/yolo_reference.py"))
            .args([&model, &inp])
            .args([layout, "0.4", "0.45", "100"])
            .arg(&out)
            .status()
            .expect("running scripts/yolo_reference.py (scripts/test makes .venv)");
        assert!(st.success());
        let reference: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(
            ours.len(),
            reference.len(),
            "{layout}: {} detections, the reference {}",
            ours.len(),
            reference.len()
        );
        for (o, r) in ours.iter().zip(&reference) {
            assert_eq!(o.class_id as u64, r["class"].as_u64().unwrap(), "{layout}");
            assert_eq!(&*o.label, ["horse", "person", "dog"][o.class_id]);
            let rs = r["score"].as_f64().unwrap() as f32;
            assert!(
                (o.score - rs).abs() <= 1e-4,
                "{layout}: score {} vs {rs}",
                o.score
            );
            for (a, b) in o.bbox.iter().zip(r["box"].as_array().unwrap()) {
                let b = b.as_f64().unwrap() as f32;
                assert!((a - b).abs() <= 1e-4, "{layout}: box {:?} vs {r}", o.bbox);
            }
        }
        // Class-aware NMS kept overlapping boxes of different classes somewhere, or only
        // one class survived: either way, no two kept boxes of one class overlap > 0.45.
        for (i, a) in ours.iter().enumerate() {
            for b in &ours[i + 1..] {
                if a.class_id == b.class_id {
                    assert!(edgecam::postprocess::nms::iou(&a.bbox, &b.bbox) <= 0.45);
                }
            }
        }
    }
    // A forced type that does not fit is an error naming the model and its outputs.
    let model = root().join("models/ssd_mobilenet_v2_coco_quant_postprocess.tflite");
    let mut c = DetectorConfig::new(&model);
    c.model_type = ModelType::Yolov5;
    let e = format!("{:#}", Detector::from_config(&c).err().expect("an error"));
    assert!(
        e.contains("YOLO")
            && e.contains("ssd_mobilenet_v2_coco_quant_postprocess")
            && e.contains("[1, 20, 4]"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
