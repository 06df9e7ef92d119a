//! Quantization drift on real data: the shipped int8 SSD against its float
//! version on the bundled clip (plausible, stable figures, no alarm at the
//! defaults); a deliberately damaged int8 model (one mid-network convolution's
//! weight scales rewritten) raises the alarm within a few sampled frames and
//! the per-layer view points at the damaged layer; and `edgecam evaluate`
//! writes its JSON and HTML reports, for one int8 model or several candidates
//! side by side.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgecam::drift::evaluate::{self, EvalOptions};
use edgecam::engine::graph::Op;
use edgecam::engine::tflite::{load_file, write_model};

mod common;
use common::{postprocess_labels, ssd_with_postprocess};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model(kind: &str) -> PathBuf {
    root().join(format!("models/ssd_mobilenetv2_oidv4_{kind}.tflite"))
}

fn clip() -> String {
    root()
        .join("tests/data/vtest_10s.mjpeg")
        .display()
        .to_string()
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgecam-drift-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The CONV_2D node producing the tensor whose name starts with `prefix`;
/// multiply its filter's per-channel scales by `factor` and write the model
/// next to `dir`. Returns (model path, output tensor name).
fn damage_conv(dir: &Path, prefix: &str, factor: f32) -> (PathBuf, String) {
    let mut g = load_file(model("int8")).unwrap();
    let node = g
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::Conv2D(_)) && g.tensors[n.outputs[0]].name.starts_with(prefix))
        .expect("conv node")
        .clone();
    let w = node.inputs[1].unwrap();
    let q = g.tensors[w].quant.as_mut().unwrap();
    assert!(q.scale.len() > 1, "per-channel weights");
    for s in q.scale.iter_mut() {
        *s *= factor;
    }
    let out = g.tensors[node.outputs[0]].name.clone();
    let p = dir.join("damaged_int8.tflite");
    std::fs::write(&p, write_model(&g)).unwrap();
    (p, out)
}

#[test]
fn shipped_int8_agrees_with_float_on_the_clip_without_alarm() {
    let mut o = EvalOptions::new(model("int8"), model("fp32"));
    o.every = 20; // frames 1, 21, 41, 61, 81
    o.layers = false;
    let ev = evaluate::run(o, &clip(), |_, _| {}).unwrap();
    let s = ev.summary();
    assert_eq!(s.frames, 5);
    // The float model sees the pedestrians; int8 agrees on most of them.
    assert!(s.float_objects >= 10, "{}", s.float_objects);
    assert!(s.f1 > 0.6 && s.f1 <= 1.0, "F1 {}", s.f1);
    assert!(s.precision > 0.8, "precision {}", s.precision);
    assert!(
        s.map50 > 0.5 && s.map50_95 < s.map50,
        "{} {}",
        s.map50,
        s.map50_95
    );
    assert!(s.mean_iou.unwrap() > 0.7);
    assert!(s.class_flip_rate.unwrap_or(0.0) < 0.2);
    for (name, e) in &s.outputs {
        assert!(
            e.sqnr_db() > 5.0 && e.sqnr_db() < 60.0,
            "{name}: {}",
            e.sqnr_db()
        );
        assert!(e.cosine() > 0.9, "{name}: {}", e.cosine());
    }
    // Stable: every sampled frame agrees reasonably, the window never alarms.
    for c in &ev.frames {
        assert!(c.f1() >= 0.4, "frame {} F1 {}", c.seq, c.f1());
    }
    assert!(ev.timeline.iter().all(|t| !t.alarm));
    assert_eq!(ev.alarm_first, None);
}

#[test]
fn damaged_int8_raises_the_alarm_and_the_layer_view_points_at_it() {
    let dir = tmpdir("damaged");
    let (bad, damaged) = damage_conv(
        &dir,
        "FeatureExtractor/MobilenetV2/expanded_conv_6/expand/",
        8.0,
    );

    // Baseline per-layer view of the shipped model on the first frame.
    let mut o = EvalOptions::new(model("int8"), model("fp32"));
    o.max_frames = 1;
    let good = evaluate::run(o, &clip(), |_, _| {}).unwrap();

    let desc = root().join("models/ssd_mobilenetv2_oidv4.json");
    let mut o = EvalOptions::new(&bad, model("fp32"));
    o.desc = Some(desc.clone());
    o.every = 20;
    o.max_frames = 4;
    let ev = evaluate::run(o, &clip(), |_, _| {}).unwrap();
    let min_frames = ev.opts.alarm_min_frames;
    assert_eq!(
        ev.alarm_first,
        Some(min_frames),
        "the alarm fires as soon as the window may judge: {:?}",
        ev.timeline.iter().map(|t| t.window_f1).collect::<Vec<_>>()
    );
    assert!(ev.alarm_active());
    assert!(ev.summary().f1 < 0.3, "{}", ev.summary().f1);

    // The per-layer view: the same tensors in the same order; identical up to
    // the damaged convolution, which is where the error starts (and the worst).
    assert_eq!(good.layer_stats.len(), ev.layer_stats.len());
    assert!(ev.layer_stats.len() > 50);
    // Compare the first frame only: rerun the damaged model on it.
    let mut o = EvalOptions::new(&bad, model("fp32"));
    o.desc = Some(desc);
    o.max_frames = 1;
    let bad1 = evaluate::run(o, &clip(), |_, _| {}).unwrap();
    let first_drop = good
        .layer_stats
        .iter()
        .zip(&bad1.layer_stats)
        .position(|(g, b)| {
            assert_eq!(g.name, b.name);
            b.sqnr_db() < g.sqnr_db() - 6.0
        })
        .expect("some layer loses accuracy");
    assert_eq!(bad1.layer_stats[first_drop].name, damaged);
    for (g, b) in good.layer_stats[..first_drop]
        .iter()
        .zip(&bad1.layer_stats[..first_drop])
    {
        assert_eq!(g.sqnr_db(), b.sqnr_db(), "{} before the damage", g.name);
    }
    assert_eq!(ev.worst_layers()[0].name, damaged);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn evaluate_writes_json_and_html_reports() {
    let dir = tmpdir("cli");
    let (json, html) = (dir.join("r.json"), dir.join("r.html"));
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .arg("evaluate")
        .arg("--int8")
        .arg(model("int8"))
        .arg("--float")
        .arg(model("fp16"))
        .arg("--source")
        .arg(root().join("tests/data/person.jpg"))
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("agreement F1"), "{stdout}");
    assert!(stdout.contains("pseudo-mAP@0.5"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let s = &r["summary"];
    assert_eq!(s["frames"], 1);
    for k in ["f1", "map50", "map50_95"] {
        let v = s[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{k} {v}");
    }
    // person.jpg: the float model finds the person, the dog and the horse.
    assert!(s["objects"]["float"].as_u64().unwrap() >= 2, "{s}");
    // Layers: named by the int8 model's tensor names, in execution order.
    let g = load_file(model("int8")).unwrap();
    let it = edgecam::engine::Interpreter::new(g.clone()).unwrap();
    let exec: Vec<String> = g
        .inputs
        .iter()
        .copied()
        .chain(it.executed_outputs())
        .map(|t| g.tensors[t].name.clone())
        .collect();
    let layers = r["layers"].as_array().unwrap();
    assert!(layers.len() > 50);
    let mut pos = 0;
    for l in layers {
        let name = l["name"].as_str().unwrap();
        let k = exec[pos..]
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} out of execution order"));
        pos += k + 1;
        assert!(l["sqnr_db"].as_f64().is_some());
    }
    assert_eq!(layers[0]["name"], "normalized_input_image_tensor");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.matches("<svg").count() >= 4);
    assert!(!page.contains("<script"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `edgecam evaluate` runs the command line with `args` (plus `--float`, `--desc`,
/// `--source`, the sampling and `--json`); returns stdout and the JSON report.
fn evaluate_cli(dir: &Path, tag: &str, int8: &[&Path]) -> (String, serde_json::Value) {
    let json = dir.join(format!("{tag}.json"));
    let html = dir.join(format!("{tag}.html"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgecam"));
    cmd.arg("evaluate");
    for m in int8 {
        cmd.arg("--int8").arg(m);
    }
    let out = cmd
        .arg("--float")
        .arg(model("fp32"))
        .arg("--desc")
        .arg(root().join("models/ssd_mobilenetv2_oidv4.json"))
        .arg("--source")
        .arg(clip())
        .args(["--every", "25", "--max-frames", "3", "--no-layers"])
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), r)
}

/// Two int8 candidates, the shipped model and a damaged copy, in one run: the report
/// has both with their own figures, the first's equal a single-model run's on the same
/// frames, the table has a row per candidate and the page shows them side by side.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn evaluate_compares_several_int8_candidates_in_one_report() {
    let dir = tmpdir("candidates");
    let (bad, _) = damage_conv(
        &dir,
        "FeatureExtractor/MobilenetV2/expanded_conv_6/expand/",
        8.0,
    );
    let good = model("int8");
    let (single_out, single) = evaluate_cli(&dir, "single", &[&good]);
    let (table, many) = evaluate_cli(&dir, "many", &[&good, &bad]);

    // One model: today's report, no candidates array.
    assert!(single.get("candidates").is_none());
    assert_eq!(single["summary"]["frames"], 3);
    assert!(single_out.contains("agreement F1"), "{single_out}");

    let c = many["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    assert_eq!(many["float"], model("fp32").display().to_string());
    assert_eq!(c[0]["int8"], good.display().to_string());
    assert_eq!(c[1]["int8"], bad.display().to_string());
    assert_eq!(c[0]["name"], "ssd_mobilenetv2_oidv4_int8.tflite");
    assert_eq!(c[1]["name"], "damaged_int8.tflite");
    // The first candidate is exactly the single-model run: same frames, same figures
    // (all but the inference times).
    let untimed = |r: &serde_json::Value| {
        let mut s = r["summary"].clone();
        s.as_object_mut().unwrap().remove("inference_ms").unwrap();
        s
    };
    assert_eq!(untimed(&c[0]), untimed(&single));
    for k in ["frames", "labels", "settings", "int8", "float", "source"] {
        assert_eq!(c[0][k], single[k], "{k}");
    }
    // Same frames for both, different figures: the damaged model agrees far less.
    let seqs = |r: &serde_json::Value| -> Vec<u64> {
        r["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&c[0]), vec![1, 26, 51]);
    assert_eq!(seqs(&c[1]), seqs(&c[0]));
    let f1 = |r: &serde_json::Value| r["summary"]["f1"].as_f64().unwrap();
    assert!(f1(&c[0]) > 0.6, "shipped F1 {}", f1(&c[0]));
    assert!(
        f1(&c[1]) < f1(&c[0]) - 0.3,
        "damaged F1 {} vs shipped {}",
        f1(&c[1]),
        f1(&c[0])
    );
    assert_ne!(c[0]["summary"]["sqnr_db"], c[1]["summary"]["sqnr_db"]);

    // The table: a header and one row per candidate with its F1.
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.starts_with("  ") && l.split_whitespace().next().unwrap().ends_with(".tflite")
        })
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(table.contains("pseudo-mAP@[.5:.95]") && table.contains("min out SQNR"));
    for (row, cand) in rows.iter().zip(c) {
        assert!(row.contains(cand["name"].as_str().unwrap()), "{row}");
        assert!(row.contains(&format!("{:.4}", f1(cand))), "{row}");
    }
    // The page: both candidates in one summary table, then each one's sections.
    let page = std::fs::read_to_string(dir.join("many.html")).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<h1>Quantization drift: 2 int8 candidates</h1>"));
    assert!(page.contains("<th title=\""), "candidates as columns");
    for cand in c {
        let name = cand["name"].as_str().unwrap();
        assert_eq!(page.matches(&format!("<h2>{name}</h2>")).count(), 1);
        assert!(page.contains(&format!("<td>{:.4}</td>", f1(cand))));
    }
    assert!(!page.contains("<script"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 19: every quantization scheme can be the quantized side. The dynamic-range SSD (float
/// activations) and the 16×8 one (int16 activations) are compared with float on the clip, with
/// the per-layer view pairing their activations with the float model's; the dynamic-range
/// model, which quantizes each layer's input on the fly from its real range, stays closer to
/// float than the shipped static int8 model on both outputs.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "three models with every intermediate kept: too slow under qemu"
)]
fn dynamic_range_and_16x8_models_are_measured_against_float_layer_by_layer() {
    let run = |kind: &str| {
        let mut o = EvalOptions::new(model(kind), model("fp32"));
        o.every = 25; // frames 1, 26, 51, 76
        let ev = evaluate::run(o, &clip(), |_, _| {}).unwrap();
        assert_eq!(ev.summary().frames, 4, "{kind}");
        ev
    };
    let int8 = run("int8");
    let dynamic = run("dynamic");
    let int16 = run("int16");
    for (kind, ev) in [("dynamic", &dynamic), ("int16", &int16)] {
        let layers = ev.worst_layers();
        assert!(
            layers.len() > 60,
            "{kind}: only {} layers paired with the float model",
            layers.len()
        );
        // Every paired layer has a finite error (the graph input may be identical: +inf).
        assert!(
            layers.iter().all(|l| l.sqnr_db() > -20.0),
            "{kind}: {:?}",
            layers.first().map(|l| (&l.name, l.sqnr_db()))
        );
    }
    let min_sqnr = |ev: &evaluate::Evaluator| {
        ev.summary()
            .outputs
            .iter()
            .map(|(_, e)| e.sqnr_db())
            .fold(f64::INFINITY, f64::min)
    };
    let (a, b) = (min_sqnr(&int8), min_sqnr(&dynamic));
    assert!(
        b > a + 3.0,
        "dynamic range {b:.1} dB, static int8 {a:.1} dB"
    );
    assert!(dynamic.summary().f1 >= 0.8, "{}", dynamic.summary().f1);
}

/// `evaluate` shows frames done, rate and ETA on a log; Ctrl-C stops it after the current frame
/// with a partial report of the frames compared (and exit status 130); `calibrate` interrupted
/// writes no model, and a report that says where it stopped.
#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary for seconds; built, not run, under qemu"
)]
fn ctrl_c_leaves_a_partial_report_and_progress_has_an_eta() {
    use std::io::{BufRead, BufReader};
    let dir = tmpdir("interrupt");
    let json = dir.join("partial.json");
    let sigint = |pid: u32| {
        Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .arg("evaluate")
        .arg("--int8")
        .arg(model("int8"))
        .arg("--float")
        .arg(model("fp32"))
        .arg("--desc")
        .arg(root().join("models/ssd_mobilenetv2_oidv4.json"))
        .arg("--source")
        .arg(clip())
        .args(["--no-layers", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    // The clip has 100 frames: stop after the third is shown.
    while lines.len() < 3 {
        let mut l = String::new();
        assert!(
            err.read_line(&mut l).unwrap() > 0,
            "evaluate ended early: {lines:?}"
        );
        if l.contains("frame") {
            lines.push(l);
        }
    }
    assert!(sigint(child.id()).success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{rest}");
    assert!(
        lines[0].starts_with("1/100 [") && lines[0].contains("ETA"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with("3/100 ["), "{lines:?}");
    assert!(rest.contains("interrupted after"), "{rest}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["partial"], true);
    let n = r["summary"]["frames"].as_u64().unwrap();
    assert!((3..100).contains(&n), "{n} frames");
    assert_eq!(r["frames"].as_array().unwrap().len() as u64, n);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(partial: interrupted)"), "{stdout}");

    // calibrate: stopped while reading or calibrating, nothing written but the report.
    let out_model = dir.join("never.tflite");
    let cjson = dir.join("calib.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .arg("calibrate")
        .arg("--float")
        .arg(model("fp32"))
        .arg("--source")
        .arg(clip())
        .arg("--out")
        .arg(&out_model)
        .args(["--frames", "40", "--method", "minmax", "--json"])
        .arg(&cjson)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut l = String::new();
        assert!(
            err.read_line(&mut l).unwrap() > 0,
            "calibrate ended early: {seen}"
        );
        seen.push_str(&l);
        if l.contains("calibrating on") {
            break;
        }
    }
    assert!(sigint(child.id()).success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{seen}{rest}");
    assert!(seen.contains("ETA"), "{seen}");
    assert!(rest.contains("calibration interrupted"), "{rest}");
    assert!(
        !out_model.exists(),
        "no model from an interrupted calibration"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&cjson).unwrap()).unwrap();
    assert_eq!(r["partial"], true);
    assert!(
        r["interrupted_at"].as_str().is_some_and(|s| !s.is_empty()),
        "{r}"
    );
}

/// Drift between two models that decode themselves (both ending in
/// TFLite_Detection_PostProcess, no description): their detections are compared. A model
/// against itself agrees perfectly; the int8 model against its float twin shows the same
/// drift as the raw-output pair; a raw model against a post-processed one is refused, naming
/// both.
#[test]
fn models_ending_in_postprocess_are_compared_by_their_detections() {
    let dir = tmpdir("postprocess");
    let (int8, float) = (
        ssd_with_postprocess(&dir, "int8"),
        ssd_with_postprocess(&dir, "fp32"),
    );
    let labels = postprocess_labels(&dir);
    // Under qemu two frames, and the int8 twin against the raw-output pair only natively (the
    // comparison is the same code on every target; the kernels are tested elsewhere).
    let qemu = cfg!(target_arch = "aarch64");
    let frames = if qemu { 2 } else { 5 };
    let eval = |a: &Path, b: &Path| {
        let mut o = EvalOptions::new(a, b);
        o.labels = Some(labels.clone());
        o.every = 20;
        o.max_frames = frames;
        o.layers = false;
        evaluate::run(o, &clip(), |_, _| {})
    };
    let same = eval(&float, &float).unwrap().summary();
    assert_eq!(same.frames, frames);
    assert!(same.float_objects >= 2 * frames, "{}", same.float_objects);
    assert_eq!((same.f1, same.map50), (1.0, 1.0));
    assert!(same.outputs.is_empty(), "no raw outputs to compare");

    let mut o = EvalOptions::new(model("int8"), &float);
    o.max_frames = 1;
    let mixed = evaluate::run(o, &clip(), |_, _| {})
        .err()
        .expect("a mixed pair is refused");
    let e = format!("{mixed:#}");
    assert!(
        e.contains("ssd_mobilenetv2_oidv4_int8")
            && e.contains("ssd_oidv4_fp32_postprocess")
            && e.contains("TFLite_Detection_PostProcess"),
        "{e}"
    );
    if qemu {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }

    let post = eval(&int8, &float).unwrap().summary();
    let mut o = EvalOptions::new(model("int8"), model("fp32"));
    o.every = 20;
    o.layers = false;
    let raw = evaluate::run(o, &clip(), |_, _| {}).unwrap().summary();
    eprintln!(
        "post-processed pair: F1 {:.3} mAP {:.3} ({} float objects); raw pair: F1 {:.3} mAP {:.3} ({})",
        post.f1, post.map50, post.float_objects, raw.f1, raw.map50, raw.float_objects
    );
    assert_eq!(post.frames, 5);
    assert!(post.float_objects >= 10, "{}", post.float_objects);
    assert!(post.f1 < 1.0 && post.map50 < 1.0, "int8 drifts: {post:?}");
    assert!(
        (post.f1 - raw.f1).abs() < 0.15 && (post.map50 - raw.map50).abs() < 0.15,
        "post-processed F1 {} mAP {} against raw F1 {} mAP {}",
        post.f1,
        post.map50,
        raw.f1,
        raw.map50
    );
    let _ = std::fs::remove_dir_all(&dir);
}
