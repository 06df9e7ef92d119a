//! On-device calibration end to end: the real daemon on the bundled clip, a real `mosquitto`,
//! the shipped int8 model and its float version. The daemon collects frames, calibrates,
//! A/B-tests the candidate against the running model, promotes it between two frames
//! without a restart, comes back on it after a restart, and rolls back on command; commands
//! other than the three words change nothing. On aarch64 (under qemu) it is built, not run.

use std::path::PathBuf;
use std::time::Duration;

mod common;
use common::*;

const SHIPPED: &str = "ssd_mobilenetv2_oidv4_int8";

/// The `model` of the detections received after `from` (an index into `all`).
fn models_after(all: &[Msg], base: &str, from: usize) -> Vec<String> {
    json_on(&all[from..], &format!("{base}/detections"))
        .iter()
        .map(|v| v["model"].as_str().unwrap_or("").to_string())
        .collect()
}

fn state_is(m: &Msg, base: &str, state: &str) -> bool {
    m.0 == format!("{base}/calibration")
        && serde_json::from_str::<serde_json::Value>(&m.1)
            .map(|v| v["state"] == state)
            .unwrap_or(false)
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto and several calibrations; built, not run, under qemu"
)]
fn collect_calibrate_evaluate_promote_restart_rollback() {
    let dir = tmpdir("calib");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let base = "edgecam/calib";
    let rx = subscribe(port, &format!("{base}/#"));
    let ha = subscribe(port, "homeassistant/+/calib/+/config");
    std::thread::sleep(Duration::from_millis(300));
    let r = root();
    let cal = dir.join("calibration");
    let extra = format!(
        r#"
[homeassistant]
enabled = true
labels = ["Person"]

[shadow]
enabled = true
model = "{float}"
every_n = 5

[calibration]
enabled = true
dir = "{cal}"
frames = 24
interval_s = 0.15
min_difference = 0.5
method = "minmax"
margin = 0.0
cpu_budget = 0.0
nice = 0
"#,
        float = r.join("models/ssd_mobilenetv2_oidv4_fp32.tflite").display(),
        cal = cal.display(),
    );
    let cfg = write_config(&dir, port, "calib", &extra);
    let d = Logged::start(&cfg, &[]);
    let pid = d.child.id();
    let mut all = vec![];

    // Collect → calibrate → evaluate → promote, in that order.
    for state in ["collecting", "calibrating", "evaluating", "promoted"] {
        assert!(
            wait_for(&rx, &mut all, Duration::from_secs(300), |m| state_is(
                m, base, state
            )),
            "calibration never reached {state}"
        );
    }
    let states: Vec<serde_json::Value> = json_on(&all, &format!("{base}/calibration"));
    let collected: Vec<u64> = states
        .iter()
        .filter(|v| v["state"] == "collecting")
        .map(|v| v["frames"]["collected"].as_u64().unwrap())
        .collect();
    assert!(
        collected.windows(2).all(|w| w[0] <= w[1]) && collected.last() == Some(&30),
        "collecting counts {collected:?} (24 frames + 6 held out)"
    );
    let promoted = states.last().unwrap();
    assert_eq!(promoted["state"], "promoted", "{promoted}");
    let (b, a) = (&promoted["before"], &promoted["after"]);
    for v in [b, a] {
        let (f1, map) = (v["f1"].as_f64().unwrap(), v["map50"].as_f64().unwrap());
        assert!(
            (0.0..=1.0).contains(&f1) && (0.0..=1.0).contains(&map),
            "{promoted}"
        );
    }
    let gain = promoted["gain"].as_f64().unwrap();
    let mean =
        |v: &serde_json::Value| (v["f1"].as_f64().unwrap() + v["map50"].as_f64().unwrap()) / 2.0;
    assert!((gain - (mean(a) - mean(b))).abs() < 2e-3, "{promoted}");
    assert!(
        gain >= 0.0,
        "promoted although below the margin: {promoted}"
    );
    let new_model = promoted["model"].as_str().unwrap().to_string();
    assert!(
        new_model.starts_with(&format!("{SHIPPED}-cal-")),
        "{promoted}"
    );
    assert_eq!(promoted["rollback_to"], SHIPPED);

    // Detections continue under the new model's name, in the same process, with no gap in
    // the frame numbering beyond the one frame in flight.
    let mark = all.len();
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
            == format!("{base}/detections")
            && m.1.contains(&new_model)),
        "no detections under {new_model}"
    );
    assert!(alive(pid), "the daemon restarted");
    assert!(
        !all.iter()
            .any(|m| m.0 == format!("{base}/availability") && m.1 == "offline"),
        "availability went offline around the promotion"
    );
    assert!(
        d.wait_line(
            &["detector swapped between two frames"],
            Duration::from_secs(5)
        )
        .is_some(),
        "no swap in the log"
    );
    let seqs: Vec<u64> = json_on(&all, &format!("{base}/detections"))
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "frame numbers restarted: {seqs:?}"
    );
    let after = models_after(&all, base, mark);
    let first_new = after.iter().position(|m| *m == new_model).unwrap();
    assert!(
        after[first_new..].iter().all(|m| *m == new_model),
        "detections went back to the old model: {after:?}"
    );

    // The promotion is on disk.
    let hist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cal.join("history.json")).unwrap()).unwrap();
    let active = PathBuf::from(hist["active"].as_str().unwrap());
    assert!(active.is_file(), "{hist}");
    assert_eq!(
        active.file_stem().unwrap().to_str().unwrap(),
        new_model,
        "{hist}"
    );
    assert_eq!(
        hist["entries"].as_array().unwrap().last().unwrap()["action"],
        "promoted"
    );
    // The frames of the finished cycle are gone.
    assert_eq!(std::fs::read_dir(cal.join("frames")).unwrap().count(), 0);

    // Home Assistant: the calibration sensor and its three buttons.
    let mut disc = vec![];
    collect(&ha, &mut disc, Duration::from_millis(500));
    for id in [
        "sensor/calib/calibration",
        "button/calib/calibration_start",
        "button/calib/calibration_promote",
        "button/calib/calibration_rollback",
    ] {
        assert!(
            disc.iter()
                .any(|m| m.0 == format!("homeassistant/{id}/config")),
            "no discovery for {id}"
        );
    }

    // Anything but the three words is ignored.
    let set = format!("{base}/calibration/set");
    publish(port, &set, "rollback please", false);
    publish(port, &set, "{\"command\":\"rollback\"}", false);
    assert!(
        d.wait_line(&["calibration: ignoring"], Duration::from_secs(10))
            .is_some(),
        "the bad command was not refused"
    );
    let mark = all.len();
    collect(&rx, &mut all, Duration::from_secs(2));
    let after = models_after(&all, base, mark);
    assert!(
        !after.is_empty() && after.iter().all(|m| *m == new_model),
        "{after:?}"
    );

    // A restart comes back on the promoted model. A command left retained on the broker
    // meanwhile is refused (it would run again after every reconnect).
    let mut d = d;
    sigterm(&d.child);
    assert!(wait_exit(&mut d.child, Duration::from_secs(10)).is_some());
    drop(d);
    publish(port, &set, "rollback", true);
    let d = Logged::start(&cfg, &[]);
    let mark = all.len();
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
            == format!("{base}/detections")),
        "no detections after the restart"
    );
    collect(&rx, &mut all, Duration::from_secs(1));
    let after = models_after(&all, base, mark);
    assert!(
        !after.is_empty() && after.iter().all(|m| *m == new_model),
        "after a restart: {after:?}"
    );
    assert!(d
        .wait_line(
            &["starting on the model calibration promoted"],
            Duration::from_secs(5)
        )
        .is_some());
    // The cycle is done: the restart does not calibrate again.
    assert!(wait_for(&rx, &mut all, Duration::from_secs(10), |m| {
        state_is(m, base, "promoted")
    }));

    // Rollback: back to the shipped model, without a restart.
    let mark = all.len();
    publish(port, &set, "rollback", false);
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(30), |m| state_is(
            m,
            base,
            "rolled_back"
        )),
        "no rollback"
    );
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(30), |m| m.0
            == format!("{base}/detections")
            && m.1.contains(&format!("\"model\":\"{SHIPPED}\""))),
        "detections did not return to {SHIPPED}"
    );
    let hist: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cal.join("history.json")).unwrap()).unwrap();
    assert!(hist["active"].is_null(), "{hist}");
    assert_eq!(
        hist["entries"].as_array().unwrap().last().unwrap()["action"],
        "rolled_back"
    );
    let rolled = json_on(&all[mark..], &format!("{base}/calibration"));
    assert_eq!(
        rolled.last().unwrap()["rollback_to"].as_str(),
        Some(new_model.as_str())
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto and a calibration; built, not run, under qemu"
)]
fn manual_mode_waits_for_start_and_promote() {
    let dir = tmpdir("calman");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let base = "edgecam/calman";
    let rx = subscribe(port, &format!("{base}/#"));
    std::thread::sleep(Duration::from_millis(300));
    let r = root();
    let cal = dir.join("calibration");
    let extra = format!(
        r#"
[shadow]
enabled = true
model = "{float}"

[calibration]
enabled = true
dir = "{cal}"
frames = 8
interval_s = 0.2
auto_start = false
promote = "manual"
method = "minmax"
margin = 0.0
cpu_budget = 50.0
"#,
        float = r.join("models/ssd_mobilenetv2_oidv4_fp32.tflite").display(),
        cal = cal.display(),
    );
    let cfg = write_config(&dir, port, "calman", &extra);
    let d = Logged::start(&cfg, &[]);
    let mut all = vec![];
    let topic = format!("{base}/calibration");
    let set = format!("{base}/calibration/set");
    let full = |m: &Msg| {
        m.0 == topic
            && serde_json::from_str::<serde_json::Value>(&m.1)
                .map(|v| v["frames"]["collected"] == 10)
                .unwrap_or(false)
    };
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(60), full),
        "10 frames were not collected"
    );
    // Without auto_start it waits, collecting no more.
    collect(&rx, &mut all, Duration::from_secs(2));
    let last = json_on(&all, &topic).pop().unwrap();
    assert_eq!(last["state"], "collecting", "{last}");
    assert_eq!(last["frames"]["collected"], 10, "{last}");
    assert!(
        last["message"].as_str().unwrap().contains("send start"),
        "{last}"
    );
    assert_eq!(std::fs::read_dir(cal.join("frames")).unwrap().count(), 10);
    // Nothing to promote yet.
    publish(port, &set, "promote", false);
    assert!(wait_for(&rx, &mut all, Duration::from_secs(10), |m| m.0
        == topic
        && m.1.contains("no candidate")));
    publish(port, &set, "start", false);
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(300), |m| state_is(
            m, base, "ready"
        )),
        "no candidate ready"
    );
    let ready = json_on(&all, &topic).pop().unwrap();
    assert_eq!(
        ready["model"], SHIPPED,
        "manual mode does not swap by itself: {ready}"
    );
    let candidate = ready["candidate"].as_str().unwrap().to_string();
    // A restart keeps the candidate waiting.
    let mut d = d;
    sigterm(&d.child);
    assert!(wait_exit(&mut d.child, Duration::from_secs(10)).is_some());
    drop(d);
    let d = Logged::start(&cfg, &[]);
    let mut fresh = vec![];
    assert!(
        wait_for(&rx, &mut fresh, Duration::from_secs(60), |m| m.0 == topic),
        "no calibration state after the restart"
    );
    let again = json_on(&fresh, &topic).pop().unwrap();
    all.extend(fresh);
    assert_eq!(again["state"], "ready", "{again}");
    assert_eq!(
        again["candidate"].as_str(),
        Some(candidate.as_str()),
        "{again}"
    );
    assert_eq!(again["after"], ready["after"], "{again}");
    let mark = all.len();
    collect(&rx, &mut all, Duration::from_secs(1));
    assert!(models_after(&all, base, mark).iter().all(|m| m == SHIPPED));
    publish(port, &set, "promote", false);
    assert!(wait_for(&rx, &mut all, Duration::from_secs(30), |m| {
        state_is(m, base, "promoted")
    }));
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(30), |m| m.0
            == format!("{base}/detections")
            && m.1.contains(&candidate)),
        "no detections under {candidate}"
    );
    // The promoted state keeps the A/B figures (retained, for whoever subscribes later).
    let promoted = json_on(&all, &topic).pop().unwrap();
    assert_eq!(promoted["state"], "promoted", "{promoted}");
    assert!(
        promoted["gain"].is_number() && promoted["candidate"].is_null(),
        "{promoted}"
    );
    assert_eq!(
        std::fs::read_dir(cal.join("candidates")).unwrap().count(),
        0
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
