//! `edgecam bench` on the bundled int8 SSD model: the JSON object of issue 4 (`median_ms`,
//! `p95_ms`, `threads`, `kernels`), and `--serve`, which scripts/bench-peers drives: one
//! round per input line, the model loaded once, a clear error for a malformed line.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/ssd_mobilenetv2_oidv4_int8.tflite")
}

fn objects(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn check(v: &serde_json::Value, iterations: u64, threads: u64) {
    let median = v["median_ms"].as_f64().expect("median_ms");
    let p95 = v["p95_ms"].as_f64().expect("p95_ms");
    assert!(median > 0.0 && median <= p95, "{v}");
    assert_eq!(v["iterations"].as_u64(), Some(iterations), "{v}");
    assert_eq!(v["threads"].as_u64(), Some(threads), "{v}");
    let kernels = v["kernels"].as_str().expect("kernels");
    assert!(
        ["scalar", "neon", "dotprod", "i8mm", "avx2", "avx512"].contains(&kernels),
        "{v}"
    );
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn bench_prints_one_json_object() {
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args([
            "bench",
            "--threads",
            "2",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--json",
        ])
        .arg("--model")
        .arg(model())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = objects(&out.stdout);
    assert_eq!(v.len(), 1);
    check(&v[0], 3, 2);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn bench_serve_times_a_round_per_line() {
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
            .args(["bench", "--json", "--serve", "--model"])
            .arg(model())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("2 0\n\n3 1 50\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = objects(&out.stdout);
    assert_eq!(v.len(), 2, "{}", String::from_utf8_lossy(&out.stdout));
    check(&v[0], 2, 1);
    check(&v[1], 3, 1);
    // A malformed request ends the process with a clear error after the rounds before it.
    for bad in ["1 0\n5 x\n", "1 0\n0 1\n", "1 0\n1 2 3 4\n", "1 0\n7\n"] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert_eq!(objects(&out.stdout).len(), 1, "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--serve"), "{bad:?}: {err}");
    }
}
