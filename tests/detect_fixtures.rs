//! Decoding of REAL model outputs: raw SSD outputs produced by the TFLite
//! interpreter (fp32 and int8 models) on person.jpg and dog.jpg, written by
//! `scripts/make-detect-fixtures`, decoded by edgecam and compared with the
//! script's independent Python decoding.

use std::path::{Path, PathBuf};

use edgecam::detect::model_desc::{load_labels, ModelDesc};
use edgecam::detect::{decoder_for, model_desc::Colour};
use edgecam::engine::DType;
use edgecam::npy::NpyArray;
use edgecam::postprocess::nms::iou;
use edgecam::postprocess::{Detection, RawOutput};
use edgecam::preprocess::{Preprocessor, ResizeMode};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn desc_path() -> PathBuf {
    root().join("models/ssd_mobilenetv2_oidv4.json")
}

fn fixtures() -> Value {
    let p = root().join("tests/data/detect/fixtures.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn npy(name: &str) -> NpyArray {
    NpyArray::read(&root().join("tests/data/detect").join(name)).unwrap()
}

/// A fixture output as owned typed data.
enum Owned {
    F32(Vec<f32>),
    I8(Vec<i8>, f32, i32),
}

impl Owned {
    fn new(a: &NpyArray, o: &Value) -> Self {
        let scale = o["quant"][0].as_f64().unwrap() as f32;
        let zero_point = o["quant"][1].as_i64().unwrap() as i32;
        match a.dtype {
            DType::F32 => Owned::F32(bytemuck::pod_collect_to_vec(&a.data)),
            DType::I8 => Owned::I8(bytemuck::pod_collect_to_vec(&a.data), scale, zero_point),
            d => panic!("unexpected fixture type {d:?}"),
        }
    }

    fn raw(&self) -> RawOutput<'_> {
        match self {
            Owned::F32(v) => RawOutput::F32(v),
            Owned::I8(v, scale, zero_point) => RawOutput::I8 {
                data: v,
                scale: *scale,
                zero_point: *zero_point,
            },
        }
    }
}

/// Decode the stored raw outputs of `stem` (e.g. "person") for `tag` ("fp32"/"int8").
fn decode(stem: &str, tag: &str) -> Vec<Detection> {
    let desc = ModelDesc::load(&desc_path()).unwrap();
    let labels = load_labels(&desc.labels_path(&desc_path()).unwrap()).unwrap();
    let mut dec = decoder_for(&desc, labels).unwrap();
    let fx = fixtures();
    let outs = &fx["models"][tag]["outputs"];
    let b = npy(&format!("{stem}_{tag}_boxes.npy"));
    let s = npy(&format!("{stem}_{tag}_scores.npy"));
    assert_eq!(b.shape, vec![1917, 4]);
    assert_eq!(s.shape, vec![1917, 24]);
    let (b, s) = (Owned::new(&b, &outs[0]), Owned::new(&s, &outs[1]));
    dec.decode(b.raw(), s.raw()).unwrap()
}

fn python(stem: &str, tag: &str) -> Vec<Value> {
    fixtures()["detections"][format!("{stem}_{tag}")]
        .as_array()
        .unwrap()
        .clone()
}

fn check_matches_python(stem: &str, tag: &str) {
    let ours = decode(stem, tag);
    let py = python(stem, tag);
    assert_eq!(ours.len(), py.len(), "{stem} {tag}: {ours:?} vs {py:?}");
    for (d, p) in ours.iter().zip(&py) {
        assert_eq!(d.class_id as u64, p["class_id"].as_u64().unwrap());
        assert_eq!(&*d.label, p["label"].as_str().unwrap());
        assert!((d.score as f64 - p["score"].as_f64().unwrap()).abs() < 1e-4);
        for k in 0..4 {
            let want = p["bbox"][k].as_f64().unwrap();
            assert!(
                (d.bbox[k] as f64 - want).abs() < 1e-4,
                "{stem} {tag}: box {:?} vs {}",
                d.bbox,
                p["bbox"]
            );
        }
    }
}

#[test]
fn person_fp32_matches_python_decoding() {
    check_matches_python("person", "fp32");
}

#[test]
fn person_int8_matches_python_decoding() {
    check_matches_python("person", "int8");
}

#[test]
fn dog_fp32_matches_python_decoding() {
    check_matches_python("dog", "fp32");
}

#[test]
fn dog_int8_matches_python_decoding() {
    check_matches_python("dog", "int8");
}

/// The best detection of `label`, if any.
fn best<'a>(d: &'a [Detection], label: &str) -> Option<&'a Detection> {
    d.iter().find(|x| &*x.label == label)
}

#[test]
fn person_image_yields_a_person() {
    for tag in ["fp32", "int8"] {
        let d = decode("person", tag);
        let p = best(&d, "Person").unwrap_or_else(|| panic!("{tag}: no Person in {d:?}"));
        assert!(p.score > 0.5);
        // person.jpg (640x424): the woman stands left of centre (x ~ 190..270
        // px), from the upper quarter of the frame down to near its bottom.
        let [ymin, xmin, ymax, xmax] = *p.bbox;
        assert!(ymin < 0.3 && ymax > 0.8, "{tag}: {:?}", p.bbox);
        assert!(
            xmin > 0.2 && xmax < 0.55 && xmax - xmin > 0.08,
            "{tag}: {:?}",
            p.bbox
        );
        // ... and the dog at her feet, lower left.
        let dog = best(&d, "Dog").unwrap_or_else(|| panic!("{tag}: no Dog in {d:?}"));
        assert!(
            dog.bbox[0] > 0.5 && dog.bbox[3] < 0.45,
            "{tag}: {:?}",
            dog.bbox
        );
    }
}

#[test]
fn dog_image_yields_a_dog() {
    for tag in ["fp32", "int8"] {
        let d = decode("dog", tag);
        let p = best(&d, "Dog").unwrap_or_else(|| panic!("{tag}: no Dog in {d:?}"));
        assert!(p.score > 0.5);
        // dog.jpg (768x576): the dog sits in the lower left part of the frame.
        let [ymin, xmin, ymax, xmax] = *p.bbox;
        assert!(
            ymin > 0.25 && ymax > 0.8 && xmin < 0.3 && xmax < 0.6,
            "{tag}: {:?}",
            p.bbox
        );
    }
}

#[test]
fn int8_agrees_with_fp32() {
    for stem in ["person", "dog"] {
        let f = decode(stem, "fp32");
        let q = decode(stem, "int8");
        // Every confident float detection has an int8 twin of the same class.
        for d in f.iter().filter(|d| d.score > 0.6) {
            let twin = q
                .iter()
                .filter(|e| e.class_id == d.class_id)
                .map(|e| iou(&d.bbox, &e.bbox))
                .fold(0.0f32, f32::max);
            assert!(twin > 0.7, "{stem}: {d:?} has no int8 twin in {q:?}");
        }
    }
}

/// The preprocessing that produced the fixtures' model input is still the same
/// (needs the shared images; skipped without them).
#[test]
fn preprocess_matches_fixture_inputs() {
    let shared = std::env::var("EDGECAM_SHARED").unwrap_or_else(|_| "/work/shared".into());
    let fx = fixtures();
    let desc = ModelDesc::load(&desc_path()).unwrap();
    let i = &desc.input;
    let mut pre = Preprocessor::new(
        i.width,
        i.height,
        i.mean,
        i.std,
        i.colour == Colour::Bgr,
        ResizeMode::Stretch,
    )
    .unwrap();
    let mut buf = vec![0f32; pre.len()];
    for stem in ["person", "dog"] {
        let p = Path::new(&shared).join(format!("media/images/{stem}.jpg"));
        if !p.is_file() {
            eprintln!("skipping: {} not found", p.display());
            return;
        }
        let img = image::open(&p).unwrap().to_rgb8();
        pre.to_f32(&img, &mut buf).unwrap();
        let want = &fx["images"][stem];
        let sum: f64 = buf.iter().map(|&v| v as f64).sum();
        assert!(
            (sum - want["sum"].as_f64().unwrap()).abs() < 1e-3,
            "{stem}: sum {sum}"
        );
        for (k, v) in want["samples"].as_object().unwrap() {
            let k: usize = k.parse().unwrap();
            // (serde_json's float parsing is not bit-exact without `float_roundtrip`)
            let want = v.as_f64().unwrap();
            assert!(
                (buf[k] as f64 - want).abs() < 1e-7,
                "{stem}: element {k}: {} vs {want}",
                buf[k]
            );
        }
    }
}

/// The `Detector` glue (input checks, preprocessing into the interpreter's
/// input, output lookup by name, dequantisation, decoding, pixel mapping) on a
/// stand-in graph whose outputs are the fixture tensors as constants: the
/// engine cannot run the real network yet.
fn stand_in_detector(tag: &str, stem: &str) -> edgecam::detect::Detector {
    use edgecam::engine::graph::{Graph, ModelBytes};
    use edgecam::engine::tensor::ConstData;
    use edgecam::engine::{Interpreter, Quant, TensorInfo};
    use std::sync::Arc;

    let fx = fixtures();
    let m = &fx["models"][tag];
    let konst = |a: &NpyArray, name: &str, q: &Value| -> TensorInfo {
        let mut words = vec![0u64; a.data.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..a.data.len()].copy_from_slice(&a.data);
        let mut shape = vec![1];
        shape.extend(&a.shape);
        TensorInfo {
            name: name.into(),
            dtype: a.dtype,
            shape,
            quant: (a.dtype != DType::F32)
                .then(|| Quant::per_tensor(q[0].as_f64().unwrap() as f32, q[1].as_i64().unwrap())),
            data: Some(ConstData::Owned(Arc::new(words), a.data.len())),
        }
    };
    let outs = &m["outputs"];
    let input_q = &m["input_quant"];
    let input = TensorInfo {
        name: "normalized_input_image_tensor".into(),
        dtype: if tag == "int8" { DType::I8 } else { DType::F32 },
        shape: vec![1, 300, 300, 3],
        quant: (tag == "int8").then(|| {
            Quant::per_tensor(
                input_q[0].as_f64().unwrap() as f32,
                input_q[1].as_i64().unwrap(),
            )
        }),
        data: None,
    };
    // Scores first, to check that outputs are found by name, not position.
    let tensors = vec![
        input,
        konst(
            &npy(&format!("{stem}_{tag}_scores.npy")),
            "raw_outputs/class_predictions",
            &outs[1]["quant"],
        ),
        konst(
            &npy(&format!("{stem}_{tag}_boxes.npy")),
            "raw_outputs/box_encodings",
            &outs[0]["quant"],
        ),
    ];
    let graph = Graph {
        bytes: ModelBytes::new(&[]),
        tensors,
        nodes: vec![],
        inputs: vec![0],
        outputs: vec![1, 2],
        input_names: vec![],
        output_names: vec![],
        description: "stand-in".into(),
    };
    let desc = ModelDesc::load(&desc_path()).unwrap();
    let labels = load_labels(&desc.labels_path(&desc_path()).unwrap()).unwrap();
    edgecam::detect::Detector::new(
        Interpreter::new(graph).unwrap(),
        desc,
        labels,
        format!("stand-in-{tag}"),
        ResizeMode::Stretch,
    )
    .unwrap()
}

#[test]
fn detector_glue_on_stand_in_graph() {
    for tag in ["fp32", "int8"] {
        let mut det = stand_in_detector(tag, "person");
        // Any frame: the stand-in's outputs are constant.
        let img = image::RgbImage::from_pixel(640, 424, image::Rgb([90, 120, 200]));
        let got = det.detect(&img).unwrap();
        let py = python("person", tag);
        assert_eq!(got.len(), py.len());
        for (d, p) in got.iter().zip(&py) {
            assert_eq!(&*d.label, p["label"].as_str().unwrap());
        }
        let t = det.transform();
        assert_eq!((t.src_w, t.src_h, t.dst_w, t.dst_h), (640, 424, 300, 300));
        let person = best(&got, "Person").unwrap();
        let px = person.to_pixels(&t);
        for k in 0..4 {
            let n = person.bbox[[1, 0, 3, 2][k]];
            let size = if k % 2 == 0 { 640.0 } else { 424.0 };
            assert!((px[k] - n.clamp(0.0, 1.0) * size).abs() < 1e-2, "{px:?}");
        }
        // A frame of another size reuses the detector.
        let img = image::RgbImage::new(320, 240);
        assert_eq!(det.detect(&img).unwrap().len(), py.len());
        assert_eq!(det.transform().src_w, 320);
    }
}
