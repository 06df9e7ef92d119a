//! Stock detectors that describe themselves: Coral's uint8 SSD-MobileNetV2 COCO, ending in
//! TFLite_Detection_PostProcess with its outputs declared with empty shapes, runs with no
//! description file, matches TFLite's reference kernels on real photos on every kernel path,
//! gives COCO labels from Coral's `id  name` label file, and runs in the daemon (whose shadow
//! says it cannot compare such a model, and keeps detecting).

use std::path::PathBuf;
use std::time::Duration;

use edgecam::detect::{Detector, DetectorConfig};
use edgecam::engine::kernels::KernelPath;
use edgecam::engine::{tflite, DType, Interpreter, InterpreterOptions};
use edgecam::npy::NpyArray;

mod common;
use common::oracle::*;
use common::*;

fn coral() -> (PathBuf, PathBuf) {
    let m = root().join("models");
    (
        m.join("ssd_mobilenet_v2_coco_quant_postprocess.tflite"),
        m.join("coco_labels.txt"),
    )
}

/// Point the daemon configuration `cfg` (from `write_config`) at `model` and `labels` instead
/// of the bundled int8 SSD and its label map.
fn use_model(cfg: &std::path::Path, model: &std::path::Path, labels: &std::path::Path) {
    let r = root();
    let text = std::fs::read_to_string(cfg)
        .unwrap()
        .replace(
            &r.join("models/ssd_mobilenetv2_oidv4_int8.tflite")
                .display()
                .to_string(),
            &model.display().to_string(),
        )
        .replace(
            &r.join("models/oidv4_labelmap.txt").display().to_string(),
            &labels.display().to_string(),
        );
    std::fs::write(cfg, text).unwrap();
}

#[test]
fn postprocess_outputs_declared_empty_are_sized_at_load() {
    let (model, _) = coral();
    let g = tflite::load_file(&model).unwrap();
    let shapes: Vec<Vec<usize>> = g
        .outputs
        .iter()
        .map(|&t| g.tensors[t].shape.clone())
        .collect();
    assert_eq!(shapes, [vec![1, 20, 4], vec![1, 20], vec![1, 20], vec![1]]);
    assert_eq!(edgecam::detect::postprocess_outputs(&g), Some([0, 1, 2, 3]));
}

#[test]
fn coral_ssd_needs_no_description_and_matches_tflite_on_every_path() {
    let (model, labels) = coral();
    let dir = tmpdir("coral");
    // Under qemu one photo (every NEON path still runs).
    let photos: &[&str] = if cfg!(target_arch = "aarch64") {
        &["dog.jpg"]
    } else {
        &["dog.jpg", "person.jpg"]
    };
    let want: [&[&str]; 2] = [&["dog", "bicycle", "car"], &["person", "horse"]];
    let mut paths: Vec<(KernelPath, usize)> =
        KernelPath::available().iter().map(|&p| (p, 1)).collect();
    paths.push((*KernelPath::available().last().unwrap(), 2));
    for (photo, want) in photos.iter().zip(want) {
        let img = image::open(root().join("tests/data").join(photo))
            .unwrap()
            .to_rgb8();
        // The detector: no description, COCO labels from Coral's file (ids with gaps).
        let mut c = DetectorConfig::new(&model);
        c.labels = Some(labels.clone());
        c.score_threshold = Some(0.5);
        let mut det = Detector::from_config(&c).unwrap();
        assert!(det.desc().is_none());
        let found = det.detect(&img).unwrap();
        let names: Vec<&str> = found.iter().map(|d| d.label.as_ref()).collect();
        for w in want {
            assert!(names.contains(w), "{photo}: {names:?} lacks {w}");
        }
        for d in &found {
            assert!(d.score >= 0.5 && d.class_id < 90, "{d:?}");
        }
        // The engine against TFLite's reference kernels on the same input: the photo's
        // pixels at 300×300 (uint8 input, scale 1/128, zero point 128: pixels go in as they are).
        let small = image::imageops::resize(&img, 300, 300, image::imageops::FilterType::Triangle);
        let x = NpyArray {
            dtype: DType::U8,
            shape: vec![1, 300, 300, 3],
            data: small.into_raw(),
        };
        let r = tflite_reference(&dir, &model, &x, 4);
        for &(path, threads) in &paths {
            let opts = InterpreterOptions {
                kernels: path,
                threads,
                ..Default::default()
            };
            let mut it =
                Interpreter::with_options(tflite::load_file(&model).unwrap(), &opts).unwrap();
            it.input_bytes_mut(0).unwrap().copy_from_slice(&x.data);
            it.invoke().unwrap();
            for (k, want) in r.iter().enumerate() {
                let ours = it.output(k).unwrap();
                let a: &[f32] = ours.f32().unwrap();
                let b: Vec<f32> = bytemuck::pod_collect_to_vec(&want.data);
                assert_eq!(a.len(), b.len(), "{photo} {path}: output {k} size");
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-5 * y.abs() + 1e-6,
                        "{photo} {path} x{threads}: output {k}[{i}] ours {x}, TFLite {y}"
                    );
                }
            }
            let count = it.output(3).unwrap().f32().unwrap()[0];
            assert!(count >= 1.0, "{photo}: nothing detected");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_label_file_too_short_for_the_model_is_an_error_naming_both() {
    let (model, _) = coral();
    let dir = tmpdir("coral-labels");
    let short = dir.join("ten_labels.txt");
    std::fs::write(
        &short,
        (0..10).map(|i| format!("c{i}\n")).collect::<String>(),
    )
    .unwrap();
    let mut c = DetectorConfig::new(&model);
    c.labels = Some(short.clone());
    let e = format!("{:#}", Detector::from_config(&c).err().expect("an error"));
    assert!(
        e.contains("ssd_mobilenet_v2_coco_quant_postprocess.tflite")
            && e.contains("ten_labels.txt")
            && e.contains("10 classes")
            && e.contains("90"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn the_daemon_runs_the_coral_model_with_coco_labels() {
    let dir = tmpdir("coral-daemon");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let base = "edgecam/coral";
    let rx = subscribe(port, &format!("{base}/#"));
    std::thread::sleep(Duration::from_millis(300));
    let (model, labels) = coral();
    let r = root();
    let extra = format!(
        r#"
[shadow]
enabled = true
model = "{float}"
"#,
        float = r.join("models/ssd_mobilenetv2_oidv4_fp32.tflite").display(),
    );
    let cfg = write_config(&dir, port, "coral", &extra);
    use_model(&cfg, &model, &labels);
    let d = Logged::start(&cfg, &[]);
    let mut all = vec![];
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(120), |m| m.0
            == format!("{base}/detections")
            && m.1.contains("\"person\"")),
        "no detections of a person"
    );
    let det = json_on(&all, &format!("{base}/detections"));
    assert!(det
        .iter()
        .all(|v| v["model"] == "ssd_mobilenet_v2_coco_quant_postprocess"));
    assert!(wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
        == format!("{base}/counts/person")
        && m.1 != "0"));
    assert!(
        d.wait_line(
            &["TFLite_Detection_PostProcess", "shadow"],
            Duration::from_secs(5)
        )
        .is_some(),
        "the log does not say why the shadow is off"
    );
    assert!(!all.iter().any(|m| m.0 == format!("{base}/drift")));
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Coral's model with a shadow model that cannot be loaded: a configuration error (exit 78)
/// naming `shadow.model`, as for any detector; only a float model of the other kind (no twin)
/// turns the shadow off and lets detection run on.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn a_missing_shadow_model_stops_the_daemon_with_a_config_error() {
    let dir = tmpdir("coral-noshadow");
    let missing = dir.join("no_such_float.tflite");
    let extra = format!(
        "\n[shadow]\nenabled = true\nmodel = \"{}\"\n",
        missing.display()
    );
    let cfg = write_config(&dir, free_port(), "coral-noshadow", &extra);
    let (model, labels) = coral();
    use_model(&cfg, &model, &labels);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.and_then(|s| s.0.code()), Some(78), "{err}");
    assert!(
        err.contains("shadow.model") && err.contains("no_such_float.tflite"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A post-processed int8 model with a post-processed float twin (the bundled SSD with
/// TFLite_Detection_PostProcess appended to both): the daemon's shadow compares their
/// detections and publishes `<base>/drift` while detections go on.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn the_shadow_compares_a_postprocessed_model_with_its_float_twin() {
    let dir = tmpdir("postprocess-shadow");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let base = "edgecam/pptwin";
    let rx = subscribe(port, &format!("{base}/#"));
    std::thread::sleep(Duration::from_millis(300));
    let (int8, float) = (
        ssd_with_postprocess(&dir, "int8"),
        ssd_with_postprocess(&dir, "fp32"),
    );
    let labels = postprocess_labels(&dir);
    let extra = format!(
        r#"
[shadow]
enabled = true
model = "{float}"
every_n = 1
cpu_budget = 0.0
"#,
        float = float.display(),
    );
    let cfg = write_config(&dir, port, "pptwin", &extra);
    use_model(&cfg, &int8, &labels);
    let d = Logged::start(&cfg, &[]);
    let mut all = vec![];
    let drift = format!("{base}/drift");
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(180), |m| m.0 == drift),
        "no drift message arrived"
    );
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
            == format!("{base}/detections")
            && m.1.contains("\"person\"")),
        "no detections of a person: {:?}",
        all.iter()
            .filter(|m| m.0.ends_with("/detections"))
            .take(3)
            .collect::<Vec<_>>()
    );
    drop(d);
    let msgs: Vec<serde_json::Value> = all
        .iter()
        .filter(|m| m.0 == drift)
        .map(|m| serde_json::from_str(&m.1).unwrap())
        .collect();
    let first = &msgs[0];
    for k in ["f1", "precision", "recall", "map50"] {
        let v = first["metrics"][k].as_f64();
        assert!(
            v.is_some_and(|v| (0.0..=1.0).contains(&v)),
            "metrics.{k}: {first}"
        );
    }
    assert!(
        first["frames"]["compared"].as_u64().unwrap() >= 1,
        "{first}"
    );
    assert!(first["frame"]["float_objects"].is_number(), "{first}");
    let det = json_on(&all, &format!("{base}/detections"));
    assert!(det
        .iter()
        .all(|v| v["model"] == "ssd_oidv4_int8_postprocess"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Python with TFLite's metadata tools (`EDGECAM_META_PYTHON`, default `.venv-meta`,
/// which `scripts/test` makes).
fn meta_python() -> PathBuf {
    std::env::var("EDGECAM_META_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".venv-meta/bin/python"))
}

#[test]
fn labels_packed_in_the_model_metadata_serve_when_no_label_file_is_given() {
    let (model, labels) = coral();
    let dir = tmpdir("coral-metadata");
    // TFLite's own metadata tool packs Coral's label file into a copy of the model.
    let packed = dir.join("coral_labelled.tflite");
    let out = std::process::Command::new(meta_python())
        .arg(root().join("scripts/embed_labels.py"))
        .args([&model, &labels, &packed])
        .output()
        .expect("run scripts/embed_labels.py with .venv-meta's Python (made by scripts/test)");
    assert!(
        out.status.success(),
        "embed_labels.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&packed).unwrap();
    let file = tflite::metadata::embedded_labels(&bytes)
        .unwrap()
        .expect("a label file in the metadata");
    assert_eq!(file.name, "coco_labels.txt");
    assert_eq!(file.text, std::fs::read_to_string(&labels).unwrap());
    assert_eq!(
        tflite::metadata::embedded_labels(&std::fs::read(&model).unwrap()).unwrap(),
        None
    );

    let img = image::open(root().join("tests/data/dog.jpg"))
        .unwrap()
        .to_rgb8();
    let run = |model: &std::path::Path, labels: Option<&std::path::Path>| {
        let mut c = DetectorConfig::new(model);
        c.labels = labels.map(|p| p.to_path_buf());
        c.score_threshold = Some(0.5);
        let found = Detector::from_config(&c).unwrap().detect(&img).unwrap();
        found
            .iter()
            .map(|d| (d.label.to_string(), d.class_id, d.score.to_bits()))
            .collect::<Vec<_>>()
    };
    let given = run(&model, Some(&labels));
    let embedded = run(&packed, None);
    let bare = run(&model, None);
    assert!(given.iter().any(|d| d.0 == "dog"), "{given:?}");
    // The packed model with no label file names its detections as the label file does...
    assert_eq!(embedded, given);
    // ...which the model without metadata cannot (its labels are class numbers).
    assert!(bare.iter().all(|d| d.0 != "dog"), "{bare:?}");
    // A label file given explicitly overrides the packed one.
    let mine = dir.join("mine.txt");
    std::fs::write(
        &mine,
        (0..91).map(|i| format!("thing{i}\n")).collect::<String>(),
    )
    .unwrap();
    assert!(run(&packed, Some(&mine))
        .iter()
        .all(|d| d.0.starts_with("thing")));

    // The metadata naming a file the archive lost is an error naming the model and the file.
    let cut = dir.join("coral_cut.tflite");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let c = DetectorConfig::new(&cut);
    let e = format!("{:#}", Detector::from_config(&c).err().expect("an error"));
    assert!(
        e.contains("coral_cut.tflite") && e.contains("coco_labels.txt"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
