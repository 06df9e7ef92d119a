//! The HTTP endpoint (`[http]`) of the real daemon on the bundled clip, through real HTTP
//! clients: a tiny HTTP/1.1 client over `std::net::TcpStream` and ffmpeg, which decodes
//! `/stream.mjpeg`. `/latest.jpg` shows the boxes of the detections published on MQTT for
//! that frame; `/metrics` parses as the Prometheus text format; `/healthz` turns 503 when the
//! frames stop; the endpoint is off by default; a bad `http.bind` is a configuration error.
//! On aarch64 (under qemu) built, not run.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// A response: status, headers (names lower-case), body.
struct Resp {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on 127.0.0.1:`port` with `Connection: close`; None when nothing answers.
fn get(port: u16, path: &str) -> Option<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = raw[end + 4..].to_vec();
    if let Some(n) = headers.get("content-length") {
        assert_eq!(body.len(), n.parse::<usize>().unwrap(), "Content-Length");
    }
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// GET `path` until `pred` holds for the response (at most `timeout`): the last response.
fn poll(port: u16, path: &str, timeout: Duration, pred: impl Fn(&Resp) -> bool) -> Option<Resp> {
    let end = Instant::now() + timeout;
    loop {
        let r = get(port, path);
        if r.as_ref().is_some_and(&pred) {
            return r;
        }
        if Instant::now() >= end {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One sample line of the exposition format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parse the Prometheus text format 0.0.4 strictly: every line is a `# HELP`/`# TYPE` comment
/// or `name{labels} value`; every sample's metric has a TYPE. Returns the samples and types.
fn parse_metrics(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut types = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("# ") {
            let mut f = c.splitn(3, ' ');
            let (kind, name, rest) = (f.next().unwrap(), f.next().unwrap(), f.next());
            match kind {
                "HELP" => {
                    assert!(rest.is_some_and(|h| !h.is_empty()), "empty HELP: {line}");
                    helped.insert(name.to_string());
                }
                "TYPE" => {
                    let t = rest.unwrap();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "{line}"
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "TYPE twice: {line}"
                    );
                }
                _ => panic!("unknown comment: {line}"),
            }
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.trim().is_empty(),
            "{line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect(line);
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => {
                let l = l.strip_suffix('}').expect(line);
                let mut m = BTreeMap::new();
                for kv in l.split(',') {
                    let (k, v) = kv.split_once('=').expect(line);
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    m.insert(k.to_string(), v.expect(line).to_string());
                }
                (n.to_string(), m)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && name.starts_with("edgecam_"),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| types.get(*b).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&name)
            .to_string();
        assert!(types.contains_key(&family), "no TYPE before {line}");
        assert!(helped.contains(&family), "no HELP for {line}");
        samples.push((name, labels, value));
    }
    (samples, types)
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

/// Check a histogram's buckets: ascending bounds, monotonic counts, `+Inf` == `_count`.
/// Returns its count.
fn check_histogram(samples: &[Sample], name: &str) -> f64 {
    let bucket = format!("{name}_bucket");
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.0 == bucket)
        .map(|s| {
            let le = &s.1["le"];
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (le, s.2)
        })
        .collect();
    assert!(buckets.len() >= 2, "{name}: {buckets:?}");
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{name} buckets not monotonic: {buckets:?}"
    );
    let last = buckets.last().unwrap();
    assert_eq!(last.0, f64::INFINITY, "{name}: no +Inf bucket");
    let count = value(samples, &format!("{name}_count"), &[]).expect("_count");
    assert_eq!(last.1, count, "{name}: +Inf bucket != count");
    assert!(value(samples, &format!("{name}_sum"), &[]).is_some());
    count
}

/// The clip's size (384 × 288).
fn clip_size() -> (f64, f64) {
    let clip: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/vtest_10s.json")).unwrap(),
    )
    .unwrap();
    (
        clip["width"].as_f64().unwrap(),
        clip["height"].as_f64().unwrap(),
    )
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto and ffmpeg; built, not run, under qemu"
)]
fn latest_jpeg_stream_metrics_and_health_over_http() {
    let dir = tmpdir("http");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let rx = subscribe(port, "edgecam/web/detections");
    std::thread::sleep(Duration::from_millis(300));
    let hport = free_port();
    let extra = format!(
        r#"
[http]
enabled = true
bind = "127.0.0.1:{hport}"
quality = 85
max_width = 320
max_height = 320
stream_fps = 4.0
max_stream_clients = 2
unhealthy_after_s = 5.0
"#
    );
    let cfg = write_config(&dir, port, "web", &extra);
    let d = Logged::start(&cfg, &[]);

    // Healthy once frames flow.
    let h = poll(hport, "/healthz", Duration::from_secs(60), |r| {
        r.status == 200
    })
    .expect("the endpoint answers");
    assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));
    assert!(
        d.wait_line(
            &["HTTP endpoint on", &hport.to_string()],
            Duration::from_secs(5)
        )
        .is_some(),
        "the address is logged"
    );

    // /latest.jpg: the frame scaled to fit 320 × 320, with the boxes of its detections.
    let (cw, ch) = clip_size();
    let k = 320.0 / cw;
    let size = (320u32, (ch * k).round() as u32);
    let mut all = vec![];
    let mut checked = false;
    let t0 = Instant::now();
    // Before the first processed frame: 503.
    let first = poll(hport, "/latest.jpg", Duration::from_secs(60), |r| {
        r.status != 503
    })
    .unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    while !checked && t0.elapsed() < Duration::from_secs(60) {
        let r = get(hport, "/latest.jpg").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.headers["content-type"], "image/jpeg");
        let img = image::load_from_memory(&r.body).expect("a JPEG").to_rgb8();
        assert_eq!(img.dimensions(), size);
        let seq: u64 = r.headers["x-edgecam-seq"].parse().unwrap();
        // The detections of that very frame, from MQTT.
        let is_seq = |m: &Msg| {
            serde_json::from_str::<serde_json::Value>(&m.1)
                .is_ok_and(|v| v["seq"].as_u64() == Some(seq))
        };
        assert!(
            wait_for(&rx, &mut all, Duration::from_secs(10), is_seq),
            "no detections message for frame {seq}"
        );
        let det: serde_json::Value =
            serde_json::from_str(&all.iter().find(|m| is_seq(m)).unwrap().1).unwrap();
        assert_eq!(
            det["timestamp"].as_str(),
            Some(r.headers["x-edgecam-timestamp"].as_str()),
            "the capture time of frame {seq}"
        );
        // The widest object (a person, mostly): its box's left edge is drawn (red) at the
        // scaled position.
        let Some(b) = det["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                o["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect::<Vec<f64>>()
            })
            .filter(|b| (b[3] - b[1]) * k > 20.0)
            .max_by(|a, b| (a[2] - a[0]).total_cmp(&(b[2] - b[0])))
        else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let red = |x: u32, y: u32| {
            let p = img.get_pixel(x.min(size.0 - 1), y.min(size.1 - 1));
            p[0] > 150 && p[1] < 120 && p[2] < 120
        };
        let x = (b[0] * k).floor() as u32;
        let (y1, y2) = ((b[1] * k).ceil() as u32 + 3, (b[3] * k).floor() as u32 - 3);
        let share = (y1..=y2).filter(|&y| red(x, y)).count() as f64 / (y2 - y1 + 1) as f64;
        assert!(
            share > 0.6,
            "frame {seq}: the box {b:?} is not drawn at x = {x} (red share {share})"
        );
        // Not the whole image: the middle of the box is the frame, not red.
        let xm = ((b[0] + b[2]) / 2.0 * k) as u32;
        let inside = (y1..=y2).filter(|&y| red(xm, y)).count() as f64 / (y2 - y1 + 1) as f64;
        assert!(inside < 0.5, "the box's inside is red ({inside})");
        checked = true;
    }
    assert!(checked, "no frame with an object to check the box on");

    // /stream.mjpeg: ffmpeg decodes parts of the right size, at most stream_fps of them.
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let t0 = Instant::now();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(format!("http://127.0.0.1:{hport}/stream.mjpeg"))
        .args(["-frames:v", "9", "-fps_mode", "passthrough", "-f", "image2"])
        .arg(frames.join("f%03d.png"))
        .output()
        .expect("ffmpeg");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoded: Vec<_> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(decoded.len(), 9, "{decoded:?}");
    for p in &decoded {
        let img = image::open(p).unwrap();
        assert_eq!((img.width(), img.height()), size, "{}", p.display());
    }
    // 9 parts at 4 per second: the first at once, then 8 gaps of 250 ms.
    assert!(
        took >= Duration::from_millis(1800),
        "9 frames in {took:?}: more than stream_fps = 4"
    );
    assert!(took < Duration::from_secs(30), "9 frames took {took:?}");

    // At most max_stream_clients streams: the third gets 503 while two are open.
    let open_stream = || {
        let mut s = TcpStream::connect(("127.0.0.1", hport)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /stream.mjpeg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut head = vec![0u8; 1024];
        let n = s.read(&mut head).unwrap();
        let head = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.contains("multipart/x-mixed-replace; boundary=edgecamframe"),
            "{head}"
        );
        s
    };
    let s1 = open_stream();
    let s2 = open_stream();
    let third = get(hport, "/stream.mjpeg").unwrap();
    assert_eq!(third.status, 503, "{}", third.text());
    assert!(third.text().contains("max_stream_clients"));
    let m = get(hport, "/metrics").unwrap();
    let (samples, _) = parse_metrics(&m.text());
    assert_eq!(
        value(&samples, "edgecam_http_stream_clients", &[]),
        Some(2.0)
    );
    drop((s1, s2));
    // Closed streams free their places.
    let back = poll(hport, "/metrics", Duration::from_secs(10), |r| {
        r.text().contains("\nedgecam_http_stream_clients 0\n")
    })
    .unwrap();
    assert!(back.text().contains("\nedgecam_http_stream_clients 0\n"));

    // /metrics: the exposition format, and the figures of a running pipeline (waited for: a
    // loaded machine processes fewer frames a second).
    let m = poll(hport, "/metrics", Duration::from_secs(60), |r| {
        let (samples, _) = parse_metrics(&r.text());
        value(&samples, "edgecam_frames_processed_total", &[]).is_some_and(|p| p > 10.0)
    })
    .unwrap();
    assert_eq!(m.status, 200);
    assert!(
        m.headers["content-type"].starts_with("text/plain; version=0.0.4"),
        "{:?}",
        m.headers
    );
    let (samples, types) = parse_metrics(&m.text());
    assert_eq!(
        types
            .get("edgecam_inference_latency_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    let count = check_histogram(&samples, "edgecam_inference_latency_seconds");
    let processed = value(&samples, "edgecam_frames_processed_total", &[]).unwrap();
    assert!(count >= 1.0 && count <= processed, "{count} {processed}");
    let captured = value(&samples, "edgecam_frames_captured_total", &[]).unwrap();
    assert!(captured >= processed && processed > 10.0);
    assert_eq!(
        types
            .get("edgecam_frames_captured_total")
            .map(String::as_str),
        Some("counter")
    );
    for reason in ["capture_queue", "rate_cap", "detection_off", "result_queue"] {
        assert!(
            value(
                &samples,
                "edgecam_frames_dropped_total",
                &[("reason", reason)]
            )
            .is_some(),
            "dropped {reason}"
        );
    }
    // The clip plays at 10 frames per second.
    let fps = value(&samples, "edgecam_capture_fps", &[]).unwrap();
    assert!((fps - 10.0).abs() < 2.0, "capture fps {fps}");
    assert_eq!(value(&samples, "edgecam_mqtt_connected", &[]), Some(1.0));
    assert!(value(&samples, "edgecam_mqtt_published_total", &[]).unwrap() > 0.0);
    assert_eq!(
        value(&samples, "edgecam_source_state", &[("state", "streaming")]),
        Some(1.0)
    );
    assert!(
        !samples.iter().any(|s| s.0.starts_with("edgecam_drift")),
        "no shadow, no drift metrics"
    );
    // Later counters never go down.
    std::thread::sleep(Duration::from_millis(500));
    let (later, _) = parse_metrics(&get(hport, "/metrics").unwrap().text());
    assert!(value(&later, "edgecam_frames_processed_total", &[]).unwrap() >= processed);
    assert!(check_histogram(&later, "edgecam_inference_latency_seconds") >= count);

    // Anything else.
    assert_eq!(get(hport, "/nope").unwrap().status, 404);
    let mut s = TcpStream::connect(("127.0.0.1", hport)).unwrap();
    write!(
        s,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = vec![];
    s.read_to_end(&mut raw).unwrap();
    assert_eq!(parse_response(&raw).unwrap().status, 405);

    // A clean stop with a stream open.
    let s3 = open_stream();
    let mut d = d;
    sigterm(&d.child);
    let (status, took) = wait_exit(&mut d.child, Duration::from_secs(10)).expect("it stops");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(4), "shutdown took {took:?}");
    drop(s3);
    assert!(
        TcpStream::connect(("127.0.0.1", hport)).is_err(),
        "still listening"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn healthz_turns_unhealthy_when_the_frames_stop() {
    let dir = tmpdir("http-health");
    // No broker: the endpoint does not depend on MQTT.
    let port = free_port();
    let hport = free_port();
    let extra = format!(
        "\n[http]\nenabled = true\nbind = \"127.0.0.1:{hport}\"\nunhealthy_after_s = 1.0\n"
    );
    let cfg = write_config(&dir, port, "health", &extra);
    // The clip once (100 frames) at 25 frames per second: 4 s of frames, then none; the
    // daemon stays up (pipeline.exit_on_eof is off).
    set_key(&cfg, "source", "loop", "false");
    set_key(&cfg, "source", "fps", "25.0");
    let d = Logged::start(&cfg, &[]);
    let ok = poll(hport, "/healthz", Duration::from_secs(60), |r| {
        r.status == 200
    })
    .expect("the endpoint answers");
    assert_eq!(ok.text(), "ok\n");
    let t_ok = Instant::now();
    let bad = poll(hport, "/healthz", Duration::from_secs(30), |r| {
        r.status == 503
    })
    .expect("the endpoint answers");
    assert_eq!(bad.status, 503, "{}", bad.text());
    assert!(
        bad.text().starts_with("unhealthy: no frame for ") && bad.text().contains("source ended"),
        "{}",
        bad.text()
    );
    assert!(
        d.wait_line(&["source ended"], Duration::from_secs(1))
            .is_some(),
        "the clip has ended"
    );
    // Frames flowed for a while before.
    assert!(t_ok.elapsed() > Duration::from_millis(500));
    let (samples, _) = parse_metrics(&get(hport, "/metrics").unwrap().text());
    assert_eq!(
        value(&samples, "edgecam_source_state", &[("state", "ended")]),
        Some(1.0)
    );
    assert!(value(&samples, "edgecam_last_frame_age_seconds", &[]).unwrap() > 1.0);
    assert_eq!(
        value(&samples, "edgecam_frames_captured_total", &[]),
        Some(100.0)
    );
    assert_eq!(value(&samples, "edgecam_mqtt_connected", &[]), Some(0.0));
    // With no broker, what the daemon publishes waits in the outbox.
    assert!(value(&samples, "edgecam_mqtt_outbox_messages", &[]).unwrap() > 0.0);
    assert!(value(&samples, "edgecam_mqtt_outbox_bytes", &[]).unwrap() > 100.0);
    assert_eq!(
        value(&samples, "edgecam_mqtt_published_total", &[]),
        Some(0.0)
    );
    // It stays unhealthy.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(hport, "/healthz").unwrap().status, 503);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Inodes of the listening TCP sockets (IPv4 and IPv6) of the whole network namespace.
fn listening_inodes() -> Vec<String> {
    let mut v = vec![];
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(t) = std::fs::read_to_string(f) else {
            continue;
        };
        for l in t.lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            // st 0A: LISTEN; the inode is the tenth column.
            if c.get(3) == Some(&"0A") {
                v.extend(c.get(9).map(|s| s.to_string()));
            }
        }
    }
    v
}

/// The listening TCP sockets that process `pid` holds.
fn listening_sockets_of(pid: u32) -> usize {
    let listening = listening_inodes();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter_map(|t| {
            t.to_str()
                .and_then(|s| s.strip_prefix("socket:["))
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .filter(|i| listening.contains(i))
        .count()
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "runs x86 mosquitto; built, not run, under qemu"
)]
fn http_is_off_by_default() {
    let dir = tmpdir("http-off");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let rx = subscribe(port, "edgecam/off/detections");
    std::thread::sleep(Duration::from_millis(300));
    let cfg = write_config(&dir, port, "off", "");
    let d = Logged::start(&cfg, &[]);
    let mut all = vec![];
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(60), |_| true),
        "the daemon runs"
    );
    assert_eq!(
        listening_sockets_of(d.child.id()),
        0,
        "the daemon listens on a TCP port without [http]"
    );
    assert!(d.lines_with(&["HTTP endpoint"]).is_empty());
    drop(d);
    // The same daemon with the endpoint on listens on exactly one.
    let hport = free_port();
    let cfg = write_config(
        &dir,
        port,
        "off",
        &format!("\n[http]\nenabled = true\nbind = \"127.0.0.1:{hport}\"\n"),
    );
    let d = Logged::start(&cfg, &[]);
    assert!(
        poll(hport, "/healthz", Duration::from_secs(60), |r| r.status
            == 200)
        .is_some()
    );
    assert_eq!(listening_sockets_of(d.child.id()), 1);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `edgecam run` on `dir/edgecam.toml` with `http` appended: its exit code and stderr.
fn run_with(dir: &Path, http: &str) -> (Option<i32>, String) {
    let cfg = write_config(dir, free_port(), "bind", http);
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut err = String::new();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.and_then(|s| s.0.code()), err)
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary; built, not run, under qemu"
)]
fn a_bad_bind_address_is_a_configuration_error() {
    let dir = tmpdir("http-bind");
    // Not IP:PORT: rejected when the configuration loads, by check-config too.
    let (code, err) = run_with(&dir, "\n[http]\nenabled = true\nbind = \"localhost\"\n");
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("http.bind") && err.contains("IP:PORT"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["check-config", "--config"])
        .arg(dir.join("edgecam.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.bind"));
    // An address of no interface here (TEST-NET-1): the daemon cannot listen on it.
    let (code, err) = run_with(
        &dir,
        "\n[http]\nenabled = true\nbind = \"192.0.2.1:8080\"\n",
    );
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("http.bind: cannot listen on 192.0.2.1:8080"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A port in use may free up: "unavailable" (69), which systemd restarts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = taken.local_addr().unwrap().port();
    let (code, err) = run_with(
        &dir,
        &format!("\n[http]\nenabled = true\nbind = \"127.0.0.1:{p}\"\n"),
    );
    assert_eq!(code, Some(69), "{err}");
    assert!(
        err.contains(&format!("http.bind: cannot listen on 127.0.0.1:{p}")),
        "{err}"
    );
    // Disabled, the address is still checked but never bound: the same port is no problem.
    let (code, err) = run_with(
        &dir,
        &format!("\n[http]\nbind = \"127.0.0.1:{p}\"\n[pipeline]\nmax_frames = 3\n"),
    );
    assert_eq!(code, Some(0), "{err}");
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "spawns the binary and the float model; built, not run, under qemu"
)]
fn metrics_carry_the_drift_figures_with_the_shadow_on() {
    let dir = tmpdir("http-drift");
    let hport = free_port();
    let r = root();
    let extra = format!(
        r#"
[shadow]
enabled = true
model = "{float}"
every_n = 1
cpu_budget = 0.0

[http]
enabled = true
bind = "127.0.0.1:{hport}"
"#,
        float = r.join("models/ssd_mobilenetv2_oidv4_fp32.tflite").display(),
    );
    let cfg = write_config(&dir, free_port(), "drift", &extra);
    set_key(
        &cfg,
        "detector",
        "desc",
        &format!(
            "\"{}\"",
            r.join("models/ssd_mobilenetv2_oidv4.json").display()
        ),
    );
    let d = Logged::start(&cfg, &[]);
    let compared = |r: &Resp| {
        let (s, _) = parse_metrics(&r.text());
        value(&s, "edgecam_drift_frames_compared_total", &[]).is_some_and(|v| v >= 2.0)
    };
    let m =
        poll(hport, "/metrics", Duration::from_secs(120), compared).expect("the endpoint answers");
    assert!(compared(&m), "no comparison counted: {}", m.text());
    let (s, types) = parse_metrics(&m.text());
    assert_eq!(
        types
            .get("edgecam_drift_frames_compared_total")
            .map(String::as_str),
        Some("counter")
    );
    let sampled = value(&s, "edgecam_drift_frames_sampled_total", &[]).unwrap();
    let compared_n = value(&s, "edgecam_drift_frames_compared_total", &[]).unwrap();
    assert!(sampled >= compared_n, "{sampled} {compared_n}");
    for reason in ["busy", "budget"] {
        assert!(value(
            &s,
            "edgecam_drift_frames_skipped_total",
            &[("reason", reason)]
        )
        .is_some());
    }
    // The shipped int8 model agrees with its float model: an F1 in (0.5, 1], the alarm off.
    let f1 = value(&s, "edgecam_drift_window", &[("metric", "f1")]).expect("window f1");
    assert!(f1 > 0.5 && f1 <= 1.0, "f1 {f1}");
    let sqnr = value(&s, "edgecam_drift_window", &[("metric", "sqnr_db_min")]).unwrap();
    assert!(sqnr > 5.0, "sqnr {sqnr}");
    assert!(value(&s, "edgecam_drift_window_frames", &[]).unwrap() >= 2.0);
    assert_eq!(value(&s, "edgecam_drift_alarm", &[]), Some(0.0));
    assert!(value(&s, "edgecam_drift_ewma", &[("metric", "f1")]).is_some());
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
