//! Helpers shared by the tests: the deterministic random generator ([`Rng`]), and for the
//! tests that run the real `edgecam` binary against a real `mosquitto` on a free loopback
//! port, the broker, a reconnecting subscriber, waiting for messages, spawning and stopping
//! the daemon. Each test binary uses a part of them.
#![allow(dead_code)]

pub mod graph;
pub mod mjpeg_server;
pub mod oracle;
mod rng;
// Not every test binary uses it (the daemon tests do not).
#[allow(unused_imports)]
pub use rng::Rng;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh, empty directory for one test.
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgecam-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A `mosquitto` process on 127.0.0.1:`port`.
pub struct Broker {
    child: Child,
    pub port: u16,
    conf: PathBuf,
}

impl Broker {
    /// Anonymous access.
    pub fn start(port: u16, dir: &Path) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        Self::spawn(port, conf)
    }
    /// Only `user` with `password`.
    pub fn with_password(port: u16, dir: &Path, user: &str, password: &str) -> Broker {
        let pw = dir.join("mosquitto.passwd");
        let ok = Command::new("mosquitto_passwd")
            .args(["-c", "-b"])
            .arg(&pw)
            .args([user, password])
            .status()
            .expect("mosquitto_passwd (package mosquitto)");
        assert!(ok.success());
        let conf = dir.join("mosquitto-auth.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\npersistence false\n",
                pw.display()
            ),
        )
        .unwrap();
        Self::spawn(port, conf)
    }
    fn spawn(port: u16, conf: PathBuf) -> Broker {
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mosquitto is needed (scripts/test installs it)");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, port, conf }
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn restart(&mut self) {
        self.kill();
        *self = Self::spawn(self.port, self.conf.clone());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Received (topic, payload, time).
pub type Msg = (String, String, Instant);

/// A subscriber that reconnects by itself and forwards every message.
pub fn subscribe(port: u16, filter: &str) -> mpsc::Receiver<Msg> {
    let (tx, rx) = mpsc::channel();
    subscribe_with(port, filter, move |p| {
        let body = String::from_utf8_lossy(&p.payload).into_owned();
        tx.send((p.topic.clone(), body, Instant::now())).is_ok()
    });
    rx
}

/// Received (topic, payload bytes as they came, retain flag, time): for binary payloads.
pub type BinMsg = (String, Vec<u8>, bool, Instant);

/// As [`subscribe`], keeping payloads byte for byte (snapshots are JPEGs) and the retain flag.
pub fn subscribe_bytes(port: u16, filter: &str) -> mpsc::Receiver<BinMsg> {
    let (tx, rx) = mpsc::channel();
    subscribe_with(port, filter, move |p| {
        tx.send((
            p.topic.clone(),
            p.payload.to_vec(),
            p.retain,
            Instant::now(),
        ))
        .is_ok()
    });
    rx
}

/// A subscriber thread that hands every PUBLISH to `forward` until it returns false.
fn subscribe_with(
    port: u16,
    filter: &str,
    forward: impl Fn(&rumqttc::Publish) -> bool + Send + 'static,
) {
    let filter = filter.to_string();
    std::thread::spawn(move || {
        let mut opts = MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        // As large as the daemon sends (snapshots; rumqttc's default is 10 KiB).
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(opts, 100);
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(&filter, QoS::AtMostOnce);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if !forward(&p) {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
}

/// Publish one message (QoS 1, not retained unless `retain`) and wait until it has left.
pub fn publish(port: u16, topic: &str, payload: &str, retain: bool) {
    let mut opts = MqttOptions::new(format!("test-pub-{}", free_port()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(opts, 10);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
        .unwrap();
    for ev in conn.iter() {
        match ev {
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("publishing to {topic}: {e}"),
        }
    }
    let _ = client.disconnect();
}

/// Wait until `pred` holds for a received message; returns everything received meanwhile.
pub fn wait_for<M>(
    rx: &mpsc::Receiver<M>,
    all: &mut Vec<M>,
    timeout: Duration,
    pred: impl Fn(&M) -> bool,
) -> bool {
    let end = Instant::now() + timeout;
    if all.iter().any(&pred) {
        return true;
    }
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(m) => {
                let hit = pred(&m);
                all.push(m);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// Everything received for `wait`.
pub fn collect(rx: &mpsc::Receiver<Msg>, all: &mut Vec<Msg>, wait: Duration) {
    let end = Instant::now() + wait;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(m) => all.push(m),
            Err(mpsc::RecvTimeoutError::Timeout) => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Payloads on `topic`, parsed as JSON.
pub fn json_on(all: &[Msg], topic: &str) -> Vec<serde_json::Value> {
    all.iter()
        .filter(|m| m.0 == topic)
        .filter_map(|m| serde_json::from_str(&m.1).ok())
        .collect()
}

/// A daemon configuration on the bundled clip and int8 model, `extra` appended (later keys of
/// a section given again in `extra` are an error: use [`set_key`] to change one).
pub fn write_config(dir: &Path, port: u16, device: &str, extra: &str) -> PathBuf {
    let p = dir.join("edgecam.toml");
    let r = root();
    std::fs::write(
        &p,
        format!(
            r#"
[source]
kind = "mjpeg"
uri = "{clip}"
fps = 10.0
loop = true

[detector]
model = "{model}"
labels = "{labels}"
score_threshold = 0.3

[mqtt]
host = "127.0.0.1"
port = {port}
device_id = "{device}"
qos = 1
stats_interval_s = 1.0

[tracker]
update_every = 2
{extra}
"#,
            clip = r.join("tests/data/vtest_10s.mjpeg").display(),
            model = r.join("models/ssd_mobilenetv2_oidv4_int8.tflite").display(),
            labels = r.join("models/oidv4_labelmap.txt").display(),
        ),
    )
    .unwrap();
    p
}

/// Set `key = value` in `[section]` of the TOML file at `p` (replacing the key if present).
pub fn set_key(p: &Path, section: &str, key: &str, value: &str) {
    let text = std::fs::read_to_string(p).unwrap();
    let mut out = Vec::new();
    let mut in_section = false;
    let mut done = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_section && !done {
                out.push(format!("{key} = {value}"));
                done = true;
            }
            in_section = t == format!("[{section}]");
        } else if in_section && t.split('=').next().map(str::trim) == Some(key) {
            out.push(format!("{key} = {value}"));
            done = true;
            continue;
        }
        out.push(line.to_string());
    }
    if !done {
        if !in_section {
            out.push(format!("[{section}]"));
        }
        out.push(format!("{key} = {value}"));
    }
    std::fs::write(p, out.join("\n") + "\n").unwrap();
}

pub fn daemon(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// A daemon whose log lines (stderr) are collected, with extra environment variables.
pub struct Logged {
    pub child: Child,
    pub log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Logged {
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Logged {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgecam"));
        cmd.args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                eprintln!("  | {line}");
                l2.lock().unwrap().push((Instant::now(), line));
            }
        });
        Logged { child, log }
    }
    /// Log lines containing every one of `words`.
    pub fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| words.iter().all(|w| l.contains(w)))
            .map(|(_, l)| l.clone())
            .collect()
    }
    /// Wait until a log line contains every one of `words`; when it was logged.
    pub fn wait_line(&self, words: &[&str], timeout: Duration) -> Option<Instant> {
        let end = Instant::now() + timeout;
        loop {
            if let Some((t, _)) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| words.iter().all(|w| l.contains(w)))
            {
                return Some(*t);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// Wait for `child` to exit, at most `limit`: its status and how long it took.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<(ExitStatus, Duration)> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some((s, t0.elapsed()));
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process ids of `pid`'s children (all its threads'), from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .map(|state| state != "Z" && state != "X")
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The bundled SSD (`kind`) with TFLite_Detection_PostProcess appended to its raw outputs, as
/// a converter's post-processing step writes it: DEQUANTIZE (for a quantized model), LOGISTIC
/// on the class logits, the description's anchors as a constant, fast NMS. Written to `dir`
/// with the engine's own `.tflite` writer; returns its path.
pub fn ssd_with_postprocess(dir: &Path, kind: &str) -> PathBuf {
    use edgecam::engine::graph::{DetectionPostProcessOptions, Node};
    use edgecam::engine::tensor::{ConstData, DType, TensorInfo};
    let desc = edgecam::detect::model_desc::ModelDesc::load(
        &root().join("models/ssd_mobilenetv2_oidv4.json"),
    )
    .unwrap();
    let anchors = edgecam::postprocess::anchors::generate(&desc.anchors).unwrap();
    let mut g = edgecam::engine::tflite::load_file(
        root().join(format!("models/ssd_mobilenetv2_oidv4_{kind}.tflite")),
    )
    .unwrap();
    let tensor = |g: &mut edgecam::engine::Graph, name: &str, shape: &[usize]| {
        g.tensors.push(TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            quant: None,
            data: None,
        });
        g.tensors.len() - 1
    };
    let float = |g: &mut edgecam::engine::Graph, k: usize| {
        let t = g.outputs[k];
        if g.tensors[t].dtype == DType::F32 {
            return t;
        }
        let (name, shape) = (g.tensors[t].name.clone(), g.tensors[t].shape.clone());
        let d = tensor(g, &format!("{name}/dequantized"), &shape);
        g.nodes.push(Node {
            op: edgecam::engine::graph::Op::Dequantize,
            inputs: vec![Some(t)],
            outputs: vec![d],
        });
        d
    };
    let boxes = float(&mut g, 0);
    let logits = float(&mut g, 1);
    let shape = g.tensors[logits].shape.clone();
    let classes = shape[2] - 1; // column 0 is the background
    let scores = tensor(&mut g, "scores", &shape);
    g.nodes.push(Node {
        op: edgecam::engine::graph::Op::Logistic,
        inputs: vec![Some(logits)],
        outputs: vec![scores],
    });
    let bytes: Vec<u8> = anchors
        .iter()
        .flat_map(|a| [a.yc, a.xc, a.h, a.w])
        .flat_map(f32::to_le_bytes)
        .collect();
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let an = tensor(&mut g, "anchors", &[anchors.len(), 4]);
    g.tensors[an].data = Some(ConstData::Owned(std::sync::Arc::new(words), bytes.len()));
    let m = 50;
    let outs = [
        tensor(&mut g, "TFLite_Detection_PostProcess", &[1, m, 4]),
        tensor(&mut g, "TFLite_Detection_PostProcess:1", &[1, m]),
        tensor(&mut g, "TFLite_Detection_PostProcess:2", &[1, m]),
        tensor(&mut g, "TFLite_Detection_PostProcess:3", &[1]),
    ];
    g.nodes.push(Node {
        op: edgecam::engine::graph::Op::DetectionPostProcess(DetectionPostProcessOptions {
            max_detections: m,
            max_classes_per_detection: 1,
            detections_per_class: 100,
            use_regular_nms: false,
            nms_score_threshold: 0.01,
            nms_iou_threshold: 0.45,
            num_classes: classes,
            y_scale: 10.0,
            x_scale: 10.0,
            h_scale: 5.0,
            w_scale: 5.0,
        }),
        inputs: vec![Some(boxes), Some(scores), Some(an)],
        outputs: outs.to_vec(),
    });
    g.outputs = outs.to_vec();
    g.output_names.clear();
    let p = dir.join(format!("ssd_oidv4_{kind}_postprocess.tflite"));
    std::fs::write(&p, edgecam::engine::tflite::write_model(&g)).unwrap();
    p
}

/// The labels of [`ssd_with_postprocess`]'s models, written to `dir`: the bundled label map
/// without its background line (column 0 of the scores).
pub fn postprocess_labels(dir: &Path) -> PathBuf {
    let labels = dir.join("postprocess_labels.txt");
    let map = std::fs::read_to_string(root().join("models/oidv4_labelmap.txt")).unwrap();
    std::fs::write(&labels, map.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    labels
}
