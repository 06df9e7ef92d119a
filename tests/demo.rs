//! The README's run command: `edgecam run --config config/demo.toml` runs the daemon on the
//! bundled clip with the bundled int8 model, an embedded broker and the float shadow, echoes what
//! it publishes and exits at the end of the clip. This runs exactly that configuration (only the
//! embedded broker's port is moved to a free one, through the documented environment override, so
//! that a broker already on 1883 cannot interfere) and checks what a new user would see.
//! x86_64 only, like the other daemon tests (the aarch64 suite builds it).

use std::path::Path;
use std::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[test]
#[cfg_attr(target_arch = "aarch64", ignore)]
fn readme_run_command_publishes_detections_and_drift_for_the_whole_clip() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .current_dir(root)
        .args(["run", "--config", "config/demo.toml"])
        .env("EDGECAM__MQTT__PORT", free_port().to_string())
        .env("RUST_LOG", "warn")
        .output()
        .expect("start edgecam");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let payloads = |topic: &str| -> Vec<serde_json::Value> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(topic))
            .map(|p| serde_json::from_str(p.trim()).expect("JSON payload"))
            .collect()
    };
    // The 100-frame clip at its 10 fps: every frame is published, or dropped and counted
    // (latest frame wins: a busy machine drops some); the final `stats` accounts for all.
    let dets = payloads("edgecam/demo/detections ");
    let stats = payloads("edgecam/demo/stats ");
    let last = stats.last().expect("a stats message at shutdown");
    let n = |k: &str| last.pointer(k).and_then(|v| v.as_u64()).unwrap_or(u64::MAX);
    assert_eq!(n("/frames/captured"), 100, "{last}");
    let dropped =
        n("/dropped_frames/capture") + n("/dropped_frames/rate_cap") + n("/dropped_frames/results");
    assert_eq!(
        dets.len() as u64 + dropped,
        100,
        "{} detections messages and {dropped} frames dropped: {last}",
        dets.len()
    );
    assert!(
        dets.len() >= 50,
        "{} detections messages for 100 frames: {last}",
        dets.len()
    );
    let people: usize = dets
        .iter()
        .map(|d| {
            d["objects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["label"] == "person")
                .count()
        })
        .sum();
    assert!(
        people >= 100,
        "the street clip shows people: {people} found"
    );
    // The shadow compares sampled frames and reports agreement without an alarm.
    let drift = payloads("edgecam/demo/drift ");
    assert!(!drift.is_empty(), "no drift message");
    let last = drift.last().unwrap();
    assert_eq!(last["alarm"]["active"], false, "{last}");
    let f1 = last["ewma"]["f1"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&f1), "EWMA F1 {f1}");
    assert!(stdout.contains("edgecam/demo/availability online"));
    assert!(stdout.contains("edgecam/demo/availability offline"));
}
