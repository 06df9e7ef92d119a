//! Control over MQTT against a real `mosquitto` and the real daemon on the bundled clip:
//! `<base>/threshold/set` changes the score threshold of the detections that follow,
//! `<base>/detect/set` switches detection off (objects end, counts go to 0, no detections) and
//! on again, bad payloads are ignored, both echo on their retained `/state`, and Home
//! Assistant's birth message makes the daemon publish its discovery again. On aarch64 (under
//! qemu) built, not run.

use std::time::{Duration, Instant, SystemTime};

mod common;
use common::*;

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn threshold_detect_switch_and_birth_message() {
    let dir = tmpdir("control");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let base = "edgecam/ctl";
    let rx = subscribe(port, &format!("{base}/#"));
    let ha = subscribe(port, "homeassistant/+/ctl/+/config");
    std::thread::sleep(Duration::from_millis(300));
    let cfg = write_config(
        &dir,
        port,
        "ctl",
        "\n[homeassistant]\nenabled = true\nlabels = [\"person\"]\n",
    );
    let d = Logged::start(&cfg, &[]);
    let mut all = vec![];
    let on = |topic: String, v: &'static str| move |m: &Msg| m.0 == topic && m.1 == v;
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(60),
        on(format!("{base}/detect/state"), "ON")
    ));
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(10),
        on(format!("{base}/threshold/state"), "0.3")
    ));
    let det_topic = format!("{base}/detections");
    assert!(wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0
        == det_topic
        && m.1.contains("\"person\"")));
    // Every count starts at 0, before the first detection (a retained count of an earlier
    // run must not linger).
    let first_det = all.iter().position(|m| m.0 == det_topic).unwrap();
    for label in ["car", "person", "boot"] {
        let zero = all
            .iter()
            .position(|m| m.0 == format!("{base}/counts/{label}") && m.1 == "0");
        assert!(
            zero.is_some_and(|z| z < first_det),
            "counts/{label} is not 0 before the first detection"
        );
    }
    let low: Vec<f64> = json_on(&all, &det_topic)
        .iter()
        .flat_map(|v| v["objects"].as_array().cloned().unwrap_or_default())
        .map(|o| o["score"].as_f64().unwrap())
        .collect();
    assert!(
        low.iter().any(|&s| s < 0.8),
        "no score under 0.8 at threshold 0.3: {low:?}"
    );

    // The threshold: frames captured after the echo score at least 0.8 (frames already in
    // the detector when it changed keep the old one).
    let set = format!("{base}/threshold/set");
    publish(port, &set, "0.8", false);
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(10),
        on(format!("{base}/threshold/state"), "0.8")
    ));
    let changed = now();
    let mark = all.len();
    collect(&rx, &mut all, Duration::from_secs(3));
    let after = captured_after(&json_on(&all[mark..], &det_topic), &changed);
    assert!(!after.is_empty(), "detections stopped");
    for v in &after {
        for o in v["objects"].as_array().unwrap() {
            assert!(o["score"].as_f64().unwrap() >= 0.8, "{v}");
        }
    }
    // Bad payloads change nothing.
    for bad in ["2", "abc", "0.5 0.6"] {
        publish(port, &set, bad, false);
    }
    publish(port, &format!("{base}/detect/set"), "off", false);
    let t0 = Instant::now();
    while d.lines_with(&["ignoring"]).len() < 4 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        d.lines_with(&["ignoring"]).len(),
        4,
        "bad payloads not all refused"
    );
    collect(&rx, &mut all, Duration::from_millis(500));
    let states: Vec<&str> = all
        .iter()
        .filter(|m| m.0 == format!("{base}/threshold/state"))
        .map(|m| m.1.as_str())
        .collect();
    assert_eq!(states.last(), Some(&"0.8"), "{states:?}");

    // Back to 0.3, with people in view.
    publish(port, &set, "0.3", false);
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(10),
        on(format!("{base}/threshold/state"), "0.3")
    ));
    let low_again = now();
    assert!(wait_for(&rx, &mut all, Duration::from_secs(20), |m| m.0
        == det_topic
        && m.1.contains("\"person\"")
        && !captured_after(
            &[serde_json::from_str(&m.1).unwrap()],
            &low_again
        )
        .is_empty()));

    // Detection off: objects end, counts go to 0, no detections.
    let mark = all.len();
    publish(port, &format!("{base}/detect/set"), "OFF", false);
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(10),
        on(format!("{base}/detect/state"), "OFF")
    ));
    let off = now();
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(10),
        on(format!("{base}/counts/person"), "0")
    ));
    collect(&rx, &mut all, Duration::from_secs(2));
    assert!(
        captured_after(&json_on(&all[mark..], &det_topic), &off).is_empty(),
        "detections of frames captured while detection is off"
    );
    let ended = json_on(&all[mark..], &format!("{base}/events"))
        .iter()
        .filter(|e| e["type"] == "end")
        .count();
    assert!(
        ended >= 1,
        "no object ended when detection was switched off"
    );
    // And on again.
    publish(port, &format!("{base}/detect/set"), "ON", false);
    assert!(wait_for(
        &rx,
        &mut all,
        Duration::from_secs(10),
        on(format!("{base}/detect/state"), "ON")
    ));
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(20), |m| m.0 == det_topic),
        "detections did not resume"
    );

    // Home Assistant: the controls have entities, and its birth message brings discovery again.
    let mut disc = vec![];
    collect(&ha, &mut disc, Duration::from_millis(500));
    for id in ["switch/ctl/detect", "number/ctl/threshold"] {
        assert!(
            disc.iter()
                .any(|m| m.0 == format!("homeassistant/{id}/config")),
            "no discovery for {id}"
        );
    }
    collect(&ha, &mut disc, Duration::from_millis(500));
    publish(port, "homeassistant/status", "online", false);
    let mut again = vec![];
    assert!(
        wait_for(&ha, &mut again, Duration::from_secs(10), |m| m.0
            == "homeassistant/switch/ctl/detect/config"),
        "no discovery after the birth message"
    );
    // A clean stop leaves every count at 0.
    let mut d = d;
    let people = |all: &[Msg]| {
        all.iter()
            .filter(|m| m.0 == format!("{base}/counts/person"))
            .map(|m| m.1.clone())
            .next_back()
    };
    assert!(wait_for(&rx, &mut all, Duration::from_secs(20), |m| m.0
        == format!("{base}/counts/person")
        && m.1 != "0"));
    sigterm(&d.child);
    assert!(wait_exit(&mut d.child, Duration::from_secs(10)).is_some());
    collect(&rx, &mut all, Duration::from_millis(500));
    assert_eq!(
        people(&all).as_deref(),
        Some("0"),
        "counts/person after a clean stop"
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Now, as the daemon writes capture times (RFC 3339 UTC with milliseconds: they sort as text).
fn now() -> String {
    edgecam::publish::time::rfc3339(SystemTime::now())
}

/// The detections of frames captured after `t`.
fn captured_after(v: &[serde_json::Value], t: &str) -> Vec<serde_json::Value> {
    v.iter()
        .filter(|d| d["timestamp"].as_str().is_some_and(|s| s > t))
        .cloned()
        .collect()
}
