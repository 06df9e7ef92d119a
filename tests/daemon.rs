//! End-to-end daemon tests against a real `mosquitto` process on a free
//! loopback port: the bundled clip through the bundled int8 model to MQTT,
//! broker restarts, the last will, clean shutdown and configuration errors.
//! They run the real `edgecam` binary. On aarch64 (under qemu) they are built
//! but not run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn clip_to_mqtt_end_to_end_and_clean_shutdown() {
    let dir = tmpdir("e2e");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let rx = subscribe(port, "edgecam/e2e/#");
    std::thread::sleep(Duration::from_millis(300));
    let cfg = write_config(&dir, port, "e2e", "");
    let mut child = daemon(&cfg);
    let mut all = vec![];
    let base = "edgecam/e2e";
    assert!(wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
        == format!("{base}/availability")
        && m.1 == "online"));
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(120), |m| m.0
            == format!("{base}/detections")
            && m.1.contains("\"person\"")),
        "no detections with a Person arrived"
    );
    assert!(wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
        == format!("{base}/counts/person")
        && m.1 != "0"));
    assert!(wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
        == format!("{base}/events")
        && m.1.contains("\"new\"")));
    assert!(wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
        == format!("{base}/stats")));

    // Payload shapes.
    let det: serde_json::Value = serde_json::from_str(
        &all.iter()
            .find(|m| m.0 == format!("{base}/detections") && m.1.contains("\"person\""))
            .unwrap()
            .1,
    )
    .unwrap();
    let clip: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/vtest_10s.json")).unwrap(),
    )
    .unwrap();
    let (cw, ch) = (
        clip["width"].as_f64().unwrap(),
        clip["height"].as_f64().unwrap(),
    );
    assert_eq!(det["frame"]["width"].as_f64(), Some(cw));
    assert_eq!(det["frame"]["height"].as_f64(), Some(ch));
    assert!(det["seq"].as_u64().unwrap() >= 1);
    assert!(det["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(det["inference_ms"].as_f64().unwrap() > 0.0);
    let obj = &det["objects"][0];
    let b: Vec<f64> = obj["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        b[0] < b[2] && b[1] < b[3] && b[2] <= 768.0 && b[3] <= 576.0,
        "box {b:?}"
    );
    let count: u64 = all
        .iter()
        .find(|m| m.0 == format!("{base}/counts/person") && m.1 != "0")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(count >= 1);
    let stats: serde_json::Value = serde_json::from_str(
        &all.iter()
            .find(|m| m.0 == format!("{base}/stats"))
            .unwrap()
            .1,
    )
    .unwrap();
    for key in [
        "capture_fps",
        "processed_fps",
        "dropped_frames",
        "inference_ms",
        "queues",
        "kernels",
        "uptime_s",
        "version",
    ] {
        assert!(!stats[key].is_null(), "stats has no {key}: {stats}");
    }

    // Clean shutdown on SIGTERM: offline, exit 0, within a few seconds.
    let t0 = Instant::now();
    sigterm(&child);
    assert!(wait_for(&rx, &mut all, Duration::from_secs(10), |m| m.0
        == format!("{base}/availability")
        && m.1 == "offline"));
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "daemon did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn event_snapshots_reach_mqtt_as_jpegs_with_the_box_drawn() {
    let dir = tmpdir("snap");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let rx = subscribe_bytes(port, "edgecam/snap/#");
    let ha = subscribe(port, "homeassistant/image/snap/+/config");
    std::thread::sleep(Duration::from_millis(300));
    let extra = r#"
[homeassistant]
enabled = true
labels = ["Person", "Car"]

[snapshots]
enabled = true
max_width = 320
max_height = 320
quality = 60
min_interval_s = 0.5
"#;
    let cfg = write_config(&dir, port, "snap", extra);
    // Logged: killed when the test fails, never left behind.
    let mut d = Logged::start(&cfg, &[]);
    let base = "edgecam/snap";
    let snap_topic = format!("{base}/person/snapshot");
    let is_new_person = |m: &BinMsg| {
        m.0 == format!("{base}/events")
            && serde_json::from_slice::<serde_json::Value>(&m.1)
                .map(|v| v["type"] == "new" && v["label"] == "person")
                .unwrap_or(false)
    };
    let mut all: Vec<BinMsg> = vec![];
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(120), is_new_person),
        "no new Person event arrived"
    );
    // The snapshot of a new object goes out before its event.
    let at = all.iter().position(is_new_person).unwrap();
    let new: serde_json::Value = serde_json::from_slice(&all[at].1).unwrap();
    let since_events = all[..at]
        .iter()
        .rposition(|m| m.0 == format!("{base}/events"))
        .map_or(0, |i| i + 1);
    let shots: Vec<image::RgbImage> = all[since_events..at]
        .iter()
        .filter(|m| m.0 == snap_topic)
        .map(|m| {
            image::load_from_memory(&m.1)
                .expect("the payload is a JPEG")
                .to_rgb8()
        })
        .collect();
    assert!(!shots.is_empty(), "no snapshot before the new event");
    // The clip (384 × 288), scaled down to fit 320 × 320 keeping its aspect ratio.
    let clip: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/vtest_10s.json")).unwrap(),
    )
    .unwrap();
    let (cw, ch) = (
        clip["width"].as_f64().unwrap(),
        clip["height"].as_f64().unwrap(),
    );
    assert!(cw > 320.0 && cw > ch, "the clip is {cw} × {ch}");
    let k = 320.0 / cw;
    let size = (320, (ch * k).round() as u32);
    for s in &shots {
        assert_eq!(s.dimensions(), size);
    }
    // The new object's box is drawn (red) along its left edge, at the scaled position.
    let b: Vec<f64> = new["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let x = ((b[0] * k).floor() as u32).min(319);
    let (y1, y2) = (
        ((b[1] * k).ceil() as u32 + 2).min(size.1 - 1),
        ((b[3] * k).floor() as u32)
            .saturating_sub(2)
            .min(size.1 - 1),
    );
    let red_share = |s: &image::RgbImage| {
        let red = (y1..=y2.max(y1))
            .filter(|&y| {
                let p = s.get_pixel(x, y);
                p[0] > 150 && p[1] < 120 && p[2] < 120
            })
            .count();
        red as f64 / (y2.max(y1) - y1 + 1) as f64
    };
    let best = shots.iter().map(red_share).fold(0.0, f64::max);
    assert!(
        best > 0.6,
        "the box {b:?} is not drawn at x = {x} (red share {best})"
    );

    // Retained: a subscriber that comes later gets the latest snapshot at once.
    let late = subscribe_bytes(port, &snap_topic);
    let mut got = vec![];
    assert!(wait_for(&late, &mut got, Duration::from_secs(10), |m| m.2
        && image::load_from_memory(&m.1).is_ok()));

    // Home Assistant: an image entity per label, showing the snapshot topic.
    let mut disc = vec![];
    let person = "homeassistant/image/snap/person_snapshot/config";
    assert!(wait_for(&ha, &mut disc, Duration::from_secs(10), |m| m.0 == person));
    let c: serde_json::Value =
        serde_json::from_str(&disc.iter().find(|m| m.0 == person).unwrap().1).unwrap();
    assert_eq!(c["image_topic"], snap_topic);
    assert_eq!(c["content_type"], "image/jpeg");
    assert_eq!(c["availability_topic"], format!("{base}/availability"));
    assert!(wait_for(&ha, &mut disc, Duration::from_secs(10), |m| m.0
        == "homeassistant/image/snap/car_snapshot/config"));

    // stats counts them.
    let stats_with_snapshots = |m: &BinMsg| {
        m.0 == format!("{base}/stats")
            && serde_json::from_slice::<serde_json::Value>(&m.1)
                .map(|v| v["snapshots"]["published"].as_u64() >= Some(1))
                .unwrap_or(false)
    };
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(10),
        stats_with_snapshots
    ));
    let stats: serde_json::Value =
        serde_json::from_slice(&all.iter().rfind(|m| stats_with_snapshots(m)).unwrap().1).unwrap();
    assert_eq!(stats["snapshots"]["failed"], 0, "{stats}");

    // At shutdown every live object ends with its best snapshot, before its end event.
    let before = all.len();
    sigterm(&d.child);
    assert!(wait_for(&rx, &mut all, Duration::from_secs(10), |m| m.0
        == format!("{base}/availability")
        && m.1 == b"offline"));
    let status = d.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        d.lines_with(&["no snapshot"]).is_empty(),
        "every snapshot was made"
    );
    // The end events of shutdown carry no timestamp; each follows its object's snapshot.
    let mut ends = 0;
    for i in before..all.len() {
        let m = &all[i];
        let Ok(e) = serde_json::from_slice::<serde_json::Value>(&m.1) else {
            continue;
        };
        if m.0 != format!("{base}/events") || e["type"] != "end" || !e["timestamp"].is_null() {
            continue;
        }
        ends += 1;
        let label = e["label"].as_str().unwrap();
        let prev = &all[i - 1];
        assert_eq!(prev.0, format!("{base}/{label}/snapshot"), "before {e}");
        let img = image::load_from_memory(&prev.1).unwrap();
        assert_eq!((img.width(), img.height()), size);
    }
    assert!(
        ends >= 1,
        "no object was live at shutdown (the clip loops with people in view)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn survives_broker_restart_and_delivers_buffered_messages() {
    let dir = tmpdir("restart");
    let port = free_port();
    let mut broker = Broker::start(port, &dir);
    let rx = subscribe(port, "edgecam/restart/#");
    std::thread::sleep(Duration::from_millis(300));
    // A slow first retry (2 s, then 4 s) lets the test's subscriber be back on
    // the restarted broker before the daemon reconnects and flushes its buffer.
    let cfg = write_config(&dir, port, "restart", "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("qos = 1\n", "qos = 1\nbackoff_min_s = 2.0\n");
    std::fs::write(&cfg, text).unwrap();
    let mut child = daemon(&cfg);
    let base = "edgecam/restart";
    let mut all = vec![];
    assert!(wait_for(&rx, &mut all, Duration::from_secs(120), |m| m.0
        == format!("{base}/detections")));

    // Broker away for 3 s while the daemon keeps processing.
    broker.kill();
    let down_at = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_secs(3));
    let up_at = std::time::SystemTime::now();
    broker.restart();
    assert!(
        child.try_wait().unwrap().is_none(),
        "daemon died while the broker was down"
    );

    // After the restart: availability online again, and detections of frames
    // captured while the daemon was disconnected (they waited in the bounded
    // buffer) arrive. The daemon is disconnected from the kill until its
    // reconnect, which the `online` message marks.
    let mut after = vec![];
    assert!(wait_for(&rx, &mut after, Duration::from_secs(60), |m| m.0
        == format!("{base}/availability")
        && m.1 == "online"));
    let online = after.iter().find(|m| m.1 == "online").unwrap().2;
    let reconnected_at =
        std::time::SystemTime::now() - online.elapsed() - Duration::from_millis(100);
    let _ = up_at;
    let ts = |m: &Msg| -> Option<std::time::SystemTime> {
        let v: serde_json::Value = serde_json::from_str(&m.1).ok()?;
        let s = v["timestamp"].as_str()?.to_string();
        parse_rfc3339(&s)
    };
    let during = |m: &Msg| {
        m.0 == format!("{base}/detections")
            && ts(m)
                .map(|t| t > down_at && t < reconnected_at)
                .unwrap_or(false)
    };
    assert!(
        wait_for(&rx, &mut after, Duration::from_secs(60), during),
        "no detection captured during the outage was delivered after the reconnect"
    );
    assert!(wait_for(&rx, &mut after, Duration::from_secs(30), |m| m.0
        == format!("{base}/stats")
        && serde_json::from_str::<serde_json::Value>(&m.1)
            .map(|v| v["mqtt"]["connects"].as_u64() >= Some(2))
            .unwrap_or(false)));
    sigterm(&child);
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Minimal parser for the daemon's own `YYYY-MM-DDTHH:MM:SS.mmmZ` timestamps.
fn parse_rfc3339(s: &str) -> Option<std::time::SystemTime> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, ms) = time.split_once('.')?;
    let t: Vec<i64> = hms
        .split(':')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // days from civil (H. Hinnant)
    let (y, m, dd) = (d[0], d[1], d[2]);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    Some(
        std::time::UNIX_EPOCH
            + Duration::from_secs(secs as u64)
            + Duration::from_millis(ms.parse().ok()?),
    )
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn killed_daemon_goes_offline_through_the_last_will() {
    let dir = tmpdir("will");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let rx = subscribe(port, "edgecam/will/availability");
    std::thread::sleep(Duration::from_millis(300));
    let cfg = write_config(&dir, port, "will", "");
    let mut child = daemon(&cfg);
    let mut all = vec![];
    assert!(wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.1 == "online"));
    child.kill().unwrap(); // SIGKILL: no chance to say goodbye
    let _ = child.wait();
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(30), |m| m.1 == "offline"),
        "the last will did not arrive"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn check_config(text: &str) -> (bool, String) {
    let dir = tmpdir(&format!("cfg{}", free_port()));
    let p = dir.join("bad.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn bad_configs_are_rejected_naming_the_key() {
    let model = root().join("models/ssd_mobilenetv2_oidv4_int8.tflite");
    let good = format!("[detector]\nmodel = \"{}\"\n", model.display());
    let (ok, err) = check_config(&good);
    assert!(ok, "a minimal valid config is accepted: {err}");

    let (ok, err) = check_config(&format!("{good}[source]\nfsp = 3\n"));
    assert!(!ok);
    assert!(err.contains("fsp"), "unknown key named: {err}");

    let (ok, err) = check_config(&format!("{good}[mqtt]\nqos = 7\n"));
    assert!(!ok);
    assert!(err.contains("mqtt.qos"), "invalid value named: {err}");

    let (ok, err) = check_config(&format!("{good}[detector.thresholds]\nPerson = 1.5\n"));
    assert!(!ok);
    assert!(err.contains("detector.thresholds.Person"), "{err}");

    let (ok, err) = check_config(&format!("{good}labels_allow = [\"persn\"]\n"));
    assert!(!ok);
    assert!(
        err.contains("detector.labels_allow") && err.contains("did you mean 'person'"),
        "{err}"
    );

    let (ok, err) = check_config(&format!("{good}[homeassistant]\nlabels = [\"Kat\"]\n"));
    assert!(!ok);
    assert!(
        err.contains("homeassistant.labels") && err.contains("did you mean 'cat'"),
        "{err}"
    );

    let (ok, err) = check_config(&format!("{good}[source]\nkind = \"webcam\"\n"));
    assert!(!ok);
    assert!(err.contains("webcam"), "{err}");

    let (ok, err) = check_config("[detector]\nmodel = \"/nonexistent/model.tflite\"\n");
    assert!(!ok);
    assert!(err.contains("detector.model"), "{err}");
}

/// The shipped int8 model with one mid-network convolution's weight scales
/// multiplied by 8 (see tests/drift.rs), written into `dir`.
fn damaged_int8(dir: &Path) -> PathBuf {
    use edgecam::engine::graph::Op;
    let mut g =
        edgecam::engine::tflite::load_file(root().join("models/ssd_mobilenetv2_oidv4_int8.tflite"))
            .unwrap();
    let node = g
        .nodes
        .iter()
        .find(|n| {
            matches!(n.op, Op::Conv2D(_))
                && g.tensors[n.outputs[0]]
                    .name
                    .starts_with("FeatureExtractor/MobilenetV2/expanded_conv_6/expand/")
        })
        .unwrap()
        .clone();
    let w = node.inputs[1].unwrap();
    for s in g.tensors[w].quant.as_mut().unwrap().scale.iter_mut() {
        *s *= 8.0;
    }
    let p = dir.join("damaged_int8.tflite");
    std::fs::write(&p, edgecam::engine::tflite::write_model(&g)).unwrap();
    p
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn shadow_drift_alarm_reaches_mqtt_end_to_end() {
    let dir = tmpdir("drift");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let rx = subscribe(port, "edgecam/drift/#");
    let ha = subscribe(port, "homeassistant/+/drift/+/config");
    std::thread::sleep(Duration::from_millis(300));
    let bad = damaged_int8(&dir);
    let store = dir.join("store");
    let r = root();
    let extra = format!(
        r#"
[homeassistant]
enabled = true
labels = ["Person"]

[shadow]
enabled = true
model = "{float}"
every_n = 1
cpu_budget = 0.0
alarm_min_frames = 2
store_dir = "{store}"
store_min_disagreement = 0.3
"#,
        float = r.join("models/ssd_mobilenetv2_oidv4_fp32.tflite").display(),
        store = store.display(),
    );
    let cfg = write_config(&dir, port, "drift", &extra);
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text
        .replace(
            &r.join("models/ssd_mobilenetv2_oidv4_int8.tflite")
                .display()
                .to_string(),
            &bad.display().to_string(),
        )
        .replace(
            "score_threshold = 0.3\n",
            &format!(
                "score_threshold = 0.3\ndesc = \"{}\"\n",
                r.join("models/ssd_mobilenetv2_oidv4.json").display()
            ),
        );
    std::fs::write(&cfg, text).unwrap();
    let mut child = daemon(&cfg);
    let topic = "edgecam/drift/drift";
    let mut all = vec![];
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(180), |m| m.0 == topic),
        "no drift message arrived"
    );
    let alarm_on = |m: &Msg| {
        m.0 == topic
            && serde_json::from_str::<serde_json::Value>(&m.1)
                .map(|v| v["alarm"]["active"] == true)
                .unwrap_or(false)
    };
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(180), alarm_on),
        "the drift alarm did not fire"
    );
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let drift: Vec<serde_json::Value> = all
        .iter()
        .filter(|m| m.0 == topic)
        .map(|m| serde_json::from_str(&m.1).unwrap())
        .collect();
    let first = &drift[0];
    assert_eq!(first["window"]["size"], 20);
    assert_eq!(first["frames"]["compared"], 1);
    assert_eq!(
        first["alarm"]["active"], false,
        "not judged before 2 frames"
    );
    for k in [
        "f1",
        "precision",
        "recall",
        "map50",
        "map50_95",
        "sqnr_db_min",
    ] {
        assert!(first["metrics"][k].is_number(), "metrics.{k}: {first}");
    }
    let sq = first["metrics"]["sqnr_db"].as_object().unwrap();
    assert!(sq.contains_key("raw_outputs/box_encodings"));
    assert!(sq.contains_key("raw_outputs/class_predictions"));
    assert!(first["frames"]["skipped"].is_number());
    assert!(first["frame"]["float_objects"].as_u64().unwrap() >= 1);
    // The alarm fires as soon as the window may judge it (2 compared frames).
    let fired = drift.iter().find(|v| v["alarm"]["active"] == true).unwrap();
    assert_eq!(fired["frames"]["compared"], 2, "{fired}");
    assert!(fired["metrics"]["f1"].as_f64().unwrap() < 0.5, "{fired}");
    assert_eq!(fired["alarm"]["metric"], "f1");
    let f = &fired["frames"];
    assert!(f["sampled"].as_u64() >= f["compared"].as_u64());

    // Home Assistant entities for the drift.
    let mut disc = vec![];
    assert!(wait_for(&ha, &mut disc, Duration::from_secs(5), |m| m.0
        == "homeassistant/binary_sensor/drift/drift_alarm/config"));
    assert!(wait_for(&ha, &mut disc, Duration::from_secs(5), |m| m.0
        == "homeassistant/sensor/drift/drift_f1/config"));

    // The disagreeing frames were kept with both models' detections.
    let kept: Vec<PathBuf> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert!(!kept.is_empty());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&kept[0]).unwrap()).unwrap();
    assert!(!meta["float"].as_array().unwrap().is_empty());
    assert!(kept[0].with_extension("jpg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
