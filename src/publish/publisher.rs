//! The one place that names the topics of docs/MQTT.md and builds their payloads.
//!
//! A [`Publisher`] is a cheap, cloneable handle onto the [`Outbox`] and the [`ConnState`]:
//! the publish stage and the shadow thread each hold one. Every message goes through
//! [`Publisher::send`], which remembers retained messages (re-published after every
//! reconnect) and queues the message. The callers hand over plain figures
//! ([`FrameReport`], [`StatsFigures`], [`DriftFigures`]); the payload shapes (keys,
//! rounding) live here only.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;

use super::homeassistant;
use super::mqtt::ConnState;
use super::outbox::{Message, Outbox};
use super::time::rfc3339;
use super::topic_level;
use crate::config::EventsFormat;
use crate::postprocess::tracker::{Event, Object};

/// The `availability` payload while the daemon reports (after every (re)connect).
pub const ONLINE: &str = "online";
/// The `availability` payload on clean shutdown, as the last will, and once a file source
/// has ended.
pub const OFFLINE: &str = "offline";

/// Publishes the daemon's topics under `<base>` (`<prefix>/<device_id>`).
#[derive(Clone)]
pub struct Publisher {
    base: String,
    qos: u8,
    retain_detections: bool,
    outbox: Arc<Outbox>,
    conn: Arc<ConnState>,
    /// `camera` of events (the device id).
    camera: Arc<str>,
    events_format: EventsFormat,
    /// Events say `has_snapshot` (Frigate's format).
    snapshots: bool,
}

/// One processed frame, for `detections`.
pub struct FrameReport<'a> {
    pub seq: u64,
    /// Capture time.
    pub wall: SystemTime,
    pub width: u32,
    pub height: u32,
    /// The int8 model's name.
    pub model: &'a str,
    pub inference_ms: f64,
    pub objects: &'a [Object],
}

/// The pipeline's figures for `stats`, as measured (the payload rounds them). The MQTT
/// figures (outbox length, drops, connection), the timestamp (now) and the version are the
/// publisher's own.
#[derive(Clone, Debug, Default)]
pub struct StatsFigures {
    pub capture_fps: f64,
    pub processed_fps: f64,
    pub captured: u64,
    pub processed: u64,
    /// `dropped_frames`: replaced before detection, skipped by the rate cap, replaced
    /// before publishing.
    pub dropped_capture: u64,
    pub dropped_rate_cap: u64,
    pub dropped_results: u64,
    pub source_errors: u64,
    pub detect_errors: u64,
    /// `source.state` (`opening`, `streaming`, ...).
    pub source_state: &'static str,
    pub stalls: u64,
    pub reopens: u64,
    pub skipped: u64,
    /// (p50, p95).
    pub inference_ms: (f64, f64),
    pub latency_ms: (f64, f64),
    pub capture_queue: u64,
    pub result_queue: u64,
    pub cpu_capture: f64,
    pub cpu_detect: f64,
    pub cpu_publish: f64,
    pub rss_bytes: u64,
    pub kernels: String,
    pub cpu_temp_c: Option<f64>,
    /// With `snapshots.enabled`: snapshots (published, shrunk to fit, failed).
    pub snapshots: Option<SnapshotFigures>,
    pub uptime_s: f64,
}

/// The snapshots made so far, for `stats.snapshots`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotFigures {
    pub published: u64,
    /// Made smaller than configured to fit one MQTT message.
    pub shrunk: u64,
    /// Could not be made.
    pub failed: u64,
}

/// The optional entity groups of Home Assistant discovery, beside the per-label sensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entities {
    /// Drift sensors and alarm (`shadow.enabled`).
    pub drift: bool,
    /// Calibration state and buttons (`calibration.enabled`).
    pub calibration: bool,
    /// An `image` per label (`snapshots.enabled`).
    pub snapshots: bool,
    /// Seconds without `stats` after which its sensors are unavailable.
    pub expire_after_s: u64,
}

/// One shadow comparison, for `drift`. The sub-objects `frame`, `metrics`, `ewma` and
/// `alarm` come as the drift module reports them (also in its HTML and stored frames);
/// `inference_ms` and `busy_percent` come rounded like them (4 decimals).
#[derive(Clone, Debug)]
pub struct DriftFigures<'a> {
    /// Capture time of the compared frame.
    pub wall: SystemTime,
    pub seq: u64,
    pub int8_model: &'a str,
    pub float_model: &'a str,
    pub score_threshold: f32,
    pub window_size: usize,
    pub window_frames: usize,
    pub sampled: u64,
    pub compared: u64,
    pub skipped_busy: u64,
    pub skipped_budget: u64,
    pub errors: u64,
    pub frame: serde_json::Value,
    pub metrics: serde_json::Value,
    pub ewma: serde_json::Value,
    pub alarm: serde_json::Value,
    pub inference_ms: f64,
    pub busy_percent: f64,
    pub cpu_budget_percent: f64,
}

/// Three decimals, as `detections` and `stats` carry their measurements.
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl Publisher {
    pub fn new(
        base: impl Into<String>,
        qos: u8,
        retain_detections: bool,
        outbox: Arc<Outbox>,
        conn: Arc<ConnState>,
    ) -> Self {
        Publisher {
            base: base.into(),
            qos,
            retain_detections,
            outbox,
            conn,
            camera: "".into(),
            events_format: EventsFormat::Edgecam,
            snapshots: false,
        }
    }

    /// Events name `camera`, take `format`, and say whether they have snapshots.
    pub fn with_events(mut self, camera: &str, format: EventsFormat, snapshots: bool) -> Self {
        self.camera = camera.into();
        self.events_format = format;
        self.snapshots = snapshots;
        self
    }

    /// The `availability` topic under `base`. The connection ([`super::mqtt`]) publishes
    /// [`ONLINE`] / [`OFFLINE`] there itself (after each connect, at shutdown, as the last
    /// will), so it takes the topic from its settings.
    pub fn availability_topic(base: &str) -> String {
        format!("{base}/availability")
    }

    fn topic(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.base)
    }

    /// Remember a retained message (restored after every reconnect) and queue it.
    fn send(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let m = Message {
            topic,
            payload,
            retain,
            qos: self.qos,
        };
        self.conn.remember(&m);
        self.outbox.push(m);
    }

    /// The `<label>/snapshot` topic (the label made safe as one topic level, as in
    /// `counts/<label>`).
    pub fn snapshot_topic(base: &str, label: &str) -> String {
        format!("{base}/{}/snapshot", topic_level(label))
    }

    /// `<label>/snapshot` (retained): a JPEG of an object of `label`, the raw bytes as the
    /// payload. While the broker is away a snapshot still queued for the same label is
    /// replaced (the outbox then holds at most one per label: the latest is what the
    /// retained topic shows anyway); one too large for a packet is refused and counted
    /// (`mqtt.invalid`).
    pub fn snapshot(&self, label: &str, jpeg: &[u8]) {
        let m = Message {
            topic: Self::snapshot_topic(&self.base, label),
            payload: jpeg.to_vec(),
            retain: true,
            qos: self.qos,
        };
        self.conn.remember(&m);
        if self.conn.connected.load(Ordering::SeqCst) {
            self.outbox.push(m);
        } else {
            self.outbox.push_latest(m);
        }
    }

    /// `detections`: one message per processed frame (retained as `mqtt.retain` says).
    pub fn detections(&self, f: &FrameReport<'_>) {
        let msg = json!({
            "seq": f.seq,
            "timestamp": rfc3339(f.wall),
            "frame": {"width": f.width, "height": f.height},
            "model": f.model,
            "inference_ms": r3(f.inference_ms),
            "objects": f.objects,
        });
        self.send(
            self.topic("detections"),
            msg.to_string().into_bytes(),
            self.retain_detections,
        );
    }

    /// `counts/<label>` (retained): `n` objects of `label` in the latest frame. The label is
    /// made safe as one topic level ([`topic_level`]).
    pub fn count(&self, label: &str, n: u64) {
        self.send(
            format!("{}/counts/{}", self.base, topic_level(label)),
            n.to_string().into_bytes(),
            true,
        );
    }

    /// `counts/<label>` for each label of `now` whose count differs from `before` (including
    /// back to zero: `now` should hold every label of `before`).
    pub fn counts_changed(&self, before: &BTreeMap<String, u64>, now: &BTreeMap<String, u64>) {
        for (label, n) in now {
            if before.get(label) != Some(n) {
                self.count(label, *n);
            }
        }
    }

    /// `events`: a tracker event, with `camera`, and the capture time of its frame when
    /// there is one (the `end` events at shutdown have none). In Frigate's format:
    /// `{type, before, after}`.
    pub fn event(&self, e: &Event, at: Option<SystemTime>) {
        let v = match self.events_format {
            EventsFormat::Edgecam => {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["camera"] = json!(&*self.camera);
                if let Some(t) = at {
                    v["timestamp"] = json!(rfc3339(t));
                }
                v
            }
            EventsFormat::Frigate => json!({
                "type": e.kind,
                "before": self.frigate_object(e.before.as_deref().unwrap_or(e)),
                "after": self.frigate_object(e),
            }),
        };
        self.send(self.topic("events"), v.to_string().into_bytes(), false);
    }

    /// A tracked object as Frigate's `events` show it (`before` / `after`): the fields it
    /// has, with the features edgecam lacks (zones, clips, sub-labels, attributes) empty.
    fn frigate_object(&self, e: &Event) -> serde_json::Value {
        let b = e.bbox.map(|v| v.round() as i64);
        let (w, h) = ((b[2] - b[0]).max(0), (b[3] - b[1]).max(0));
        let ratio = if h > 0 { w as f64 / h as f64 } else { 0.0 };
        json!({
            "id": e.id,
            "camera": &*self.camera,
            "frame_time": e.frame_time,
            "snapshot": null,
            "label": e.label,
            "sub_label": null,
            "top_score": e.top_score,
            "false_positive": false,
            "start_time": e.start_time,
            "end_time": e.end_time,
            "score": e.score,
            "box": b,
            "area": w * h,
            "ratio": (ratio * 1e6).round() / 1e6,
            "region": b,
            "active": true,
            "stationary": false,
            "motionless_count": 0,
            "position_changes": 0,
            "current_zones": [],
            "entered_zones": [],
            "thumbnail": null,
            "has_snapshot": self.snapshots,
            "has_clip": false,
            "attributes": {},
            "current_attributes": [],
        })
    }

    /// `stats`: the pipeline's figures with the MQTT side's own.
    pub fn stats(&self, f: &StatsFigures) {
        let c = &self.conn;
        let msg = json!({
            "timestamp": rfc3339(SystemTime::now()),
            "capture_fps": r3(f.capture_fps),
            "processed_fps": r3(f.processed_fps),
            "frames": {"captured": f.captured, "processed": f.processed},
            "dropped_frames": {
                "capture": f.dropped_capture,
                "rate_cap": f.dropped_rate_cap,
                "results": f.dropped_results,
            },
            "errors": {
                "source": f.source_errors,
                "detect": f.detect_errors,
            },
            "source": {
                "state": f.source_state,
                "stalls": f.stalls,
                "reopens": f.reopens,
                "skipped": f.skipped,
            },
            "inference_ms": {"p50": r3(f.inference_ms.0), "p95": r3(f.inference_ms.1)},
            "latency_ms": {"p50": r3(f.latency_ms.0), "p95": r3(f.latency_ms.1)},
            "queues": {
                "capture": f.capture_queue,
                "results": f.result_queue,
                "mqtt": self.outbox.len(),
            },
            "mqtt": {
                "connected": c.connected.load(Ordering::Relaxed),
                "connects": c.connects.load(Ordering::Relaxed),
                "failures": c.failures.load(Ordering::Relaxed),
                "dropped": self.outbox.dropped(),
                "invalid": self.outbox.invalid(),
            },
            "cpu_seconds": {
                "capture": r3(f.cpu_capture),
                "detect": r3(f.cpu_detect),
                "publish": r3(f.cpu_publish),
            },
            "rss_bytes": f.rss_bytes,
            "kernels": f.kernels,
            "cpu_temp_c": f.cpu_temp_c,
            "uptime_s": r3(f.uptime_s),
            "version": env!("CARGO_PKG_VERSION"),
        });
        let mut msg = msg;
        if let Some(sn) = &f.snapshots {
            msg["snapshots"] = json!({
                "published": sn.published,
                "shrunk": sn.shrunk,
                "failed": sn.failed,
            });
        }
        self.send(self.topic("stats"), msg.to_string().into_bytes(), false);
    }

    /// `availability` = `offline` (retained) once a file source has ended and the daemon
    /// stays up idle; it is also what the connection announces after a reconnect from now on.
    pub fn availability_offline_at_end(&self) {
        self.conn.offline.store(true, Ordering::SeqCst);
        self.send(
            Self::availability_topic(&self.base),
            OFFLINE.as_bytes().to_vec(),
            true,
        );
    }

    /// `drift`: one message per shadow comparison.
    pub fn drift(&self, d: &DriftFigures<'_>) {
        let msg = json!({
            "timestamp": rfc3339(d.wall),
            "seq": d.seq,
            "models": {"int8": d.int8_model, "float": d.float_model},
            "score_threshold": d.score_threshold,
            "window": {"size": d.window_size, "frames": d.window_frames},
            "frames": {
                "sampled": d.sampled,
                "compared": d.compared,
                "skipped": d.skipped_busy + d.skipped_budget,
                "skipped_busy": d.skipped_busy,
                "skipped_budget": d.skipped_budget,
                "errors": d.errors,
            },
            "frame": d.frame,
            "metrics": d.metrics,
            "ewma": d.ewma,
            "alarm": d.alarm,
            "shadow": {
                "inference_ms": d.inference_ms,
                "busy_percent": d.busy_percent,
                "cpu_budget_percent": d.cpu_budget_percent,
            },
        });
        self.send(self.topic("drift"), msg.to_string().into_bytes(), false);
    }

    /// `calibration`: the on-device calibration's state (retained; built by
    /// [`crate::calibrate::service`]).
    pub fn calibration(&self, state: &serde_json::Value) {
        self.send(
            self.topic("calibration"),
            state.to_string().into_bytes(),
            true,
        );
    }

    /// `detect/state`: `ON` / `OFF` (retained).
    pub fn detect_state(&self, on: bool) {
        let v: &[u8] = if on { b"ON" } else { b"OFF" };
        self.send(self.topic("detect/state"), v.to_vec(), true);
    }

    /// `threshold/state`: the default score threshold (retained).
    pub fn threshold_state(&self, t: f32) {
        self.send(
            self.topic("threshold/state"),
            format!("{}", r3(t as f64)).into_bytes(),
            true,
        );
    }

    pub fn detect_command_topic(base: &str) -> String {
        format!("{base}/detect/set")
    }

    pub fn threshold_command_topic(base: &str) -> String {
        format!("{base}/threshold/set")
    }

    /// The command topic of the on-device calibration.
    pub fn calibration_command_topic(base: &str) -> String {
        format!("{base}/calibration/set")
    }

    /// Home Assistant discovery configs (retained, QoS 1) for `labels`, and for the entity
    /// groups of `extra`: remembered only, so that the connection publishes them after
    /// every (re)connect, before anything else is drained.
    pub fn discovery(
        &self,
        discovery_prefix: &str,
        device_id: &str,
        labels: &[(String, String)],
        extra: Entities,
    ) {
        for m in homeassistant::discovery(
            discovery_prefix,
            &self.base,
            device_id,
            labels,
            extra.expire_after_s,
        ) {
            self.conn.remember(&m);
        }
        if extra.snapshots {
            for m in
                homeassistant::snapshot_discovery(discovery_prefix, &self.base, device_id, labels)
            {
                self.conn.remember(&m);
            }
        }
        let Entities {
            drift, calibration, ..
        } = extra;
        if drift {
            for m in homeassistant::drift_discovery(discovery_prefix, &self.base, device_id) {
                self.conn.remember(&m);
            }
        }
        if calibration {
            for m in homeassistant::calibration_discovery(discovery_prefix, &self.base, device_id) {
                self.conn.remember(&m);
            }
        }
        for m in homeassistant::control_discovery(discovery_prefix, &self.base, device_id) {
            self.conn.remember(&m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(retain: bool) -> (Publisher, Arc<Outbox>, Arc<ConnState>) {
        let outbox = Arc::new(Outbox::new(64));
        let conn = Arc::new(ConnState::default());
        let p = Publisher::new("edgecam/cam1", 1, retain, outbox.clone(), conn.clone());
        (p, outbox, conn)
    }

    fn event() -> Event {
        let mut e = Event {
            kind: crate::postprocess::tracker::EventKind::End,
            id: "1700000000.250000-abc123".into(),
            track: 1,
            label: "person".into(),
            score: 0.5,
            top_score: 0.75,
            bbox: crate::postprocess::PixelBox([10.2, 20.0, 60.0, 120.6]),
            start_time: 1_700_000_000.25,
            end_time: Some(1_700_000_003.5),
            frame_time: 1_700_000_003.5,
            first_seq: 1,
            last_seq: 2,
            frames: 2,
            before: None,
        };
        let mut before = e.clone();
        before.kind = crate::postprocess::tracker::EventKind::Update;
        before.score = 0.75;
        before.end_time = None;
        e.before = Some(Box::new(before));
        e
    }

    #[test]
    fn events_in_both_formats() {
        let (p, o, _) = publisher(false);
        let p = p.with_events("cam1", EventsFormat::Edgecam, false);
        p.event(&event(), None);
        let frigate = p.clone().with_events("cam1", EventsFormat::Frigate, true);
        frigate.event(&event(), None);
        let m = drain(&o);
        assert!(m
            .iter()
            .all(|m| m.topic == "edgecam/cam1/events" && !m.retain));
        let own = json(&m[0]);
        assert_eq!(own["id"], "1700000000.250000-abc123");
        assert_eq!(own["camera"], "cam1");
        assert_eq!(own["type"], "end");
        assert_eq!(own["label"], "person");
        assert_eq!(own["start_time"], 1_700_000_000.25);
        assert_eq!(own["end_time"], 1_700_000_003.5);
        assert!(own.get("before").is_none() && own.get("track").is_none());
        let f = json(&m[1]);
        assert_eq!(f["type"], "end");
        let (b, a) = (&f["before"], &f["after"]);
        for v in [a, b] {
            assert_eq!(v["id"], "1700000000.250000-abc123");
            assert_eq!(v["camera"], "cam1");
            assert_eq!(v["label"], "person");
            assert_eq!(v["box"], json!([10, 20, 60, 121]));
            assert_eq!(v["area"], 50 * 101);
            assert_eq!(v["has_snapshot"], true);
            assert_eq!(v["false_positive"], false);
            assert!(v["sub_label"].is_null() && v["current_zones"] == json!([]));
        }
        assert_eq!((&a["score"], &b["score"]), (&json!(0.5), &json!(0.75)));
        assert_eq!(a["end_time"], 1_700_000_003.5);
        assert!(b["end_time"].is_null(), "before: still going");
    }

    fn drain(o: &Outbox) -> Vec<Message> {
        std::iter::from_fn(|| o.pop()).collect()
    }

    fn json(m: &Message) -> serde_json::Value {
        serde_json::from_slice(&m.payload).unwrap()
    }

    #[test]
    fn detections_and_counts_keep_their_shape() {
        let (p, o, conn) = publisher(true);
        let objects = vec![Object {
            label: "C++".into(),
            class_id: 3,
            score: 0.5,
            bbox: crate::postprocess::PixelBox([1.0, 2.0, 3.0, 4.0]),
        }];
        p.detections(&FrameReport {
            seq: 7,
            wall: std::time::UNIX_EPOCH,
            width: 640,
            height: 480,
            model: "m",
            inference_ms: 1.23456,
            objects: &objects,
        });
        let before = BTreeMap::from([("Person".to_string(), 2)]);
        let now = BTreeMap::from([("Person".to_string(), 0), ("C++".to_string(), 1)]);
        p.counts_changed(&before, &now);
        p.counts_changed(&now, &now);
        let m = drain(&o);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].topic, "edgecam/cam1/detections");
        assert!(m[0].retain && m[0].qos == 1);
        assert_eq!(
            String::from_utf8_lossy(&m[0].payload),
            r#"{"frame":{"height":480,"width":640},"inference_ms":1.235,"model":"m","objects":[{"box":[1.0,2.0,3.0,4.0],"class_id":3,"label":"C++","score":0.5}],"seq":7,"timestamp":"1970-01-01T00:00:00.000Z"}"#
        );
        assert_eq!(m[1].topic, "edgecam/cam1/counts/C__");
        assert_eq!(m[1].payload, b"1");
        assert_eq!(m[2].topic, "edgecam/cam1/counts/Person");
        assert_eq!(m[2].payload, b"0");
        // Retained messages are remembered for the next reconnect.
        let kept = conn.retained.lock().unwrap();
        assert!(kept.contains_key("edgecam/cam1/detections"));
        assert!(kept.contains_key("edgecam/cam1/counts/Person"));
    }

    #[test]
    fn events_stats_availability_and_drift() {
        let (p, o, conn) = publisher(false);
        let e = event();
        p.event(&e, Some(std::time::UNIX_EPOCH));
        p.event(&e, None);
        p.stats(&StatsFigures {
            capture_fps: 9.87654,
            inference_ms: (1.0, 2.0004),
            source_state: "streaming",
            kernels: "scalar".into(),
            ..Default::default()
        });
        p.availability_offline_at_end();
        p.drift(&DriftFigures {
            wall: std::time::UNIX_EPOCH,
            seq: 3,
            int8_model: "i",
            float_model: "f",
            score_threshold: 0.5,
            window_size: 20,
            window_frames: 1,
            sampled: 2,
            compared: 1,
            skipped_busy: 1,
            skipped_budget: 0,
            errors: 0,
            frame: json!({"f1": 1.0}),
            metrics: json!({}),
            ewma: json!({}),
            alarm: json!({"active": false}),
            inference_ms: 12.5,
            busy_percent: 3.25,
            cpu_budget_percent: 25.0,
        });
        let m = drain(&o);
        let topics: Vec<&str> = m.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "edgecam/cam1/events",
                "edgecam/cam1/events",
                "edgecam/cam1/stats",
                "edgecam/cam1/availability",
                "edgecam/cam1/drift"
            ]
        );
        assert_eq!(json(&m[0])["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json(&m[0])["type"], "end");
        assert!(json(&m[1]).get("timestamp").is_none());
        let s = json(&m[2]);
        assert_eq!(s["capture_fps"], 9.877);
        assert_eq!(s["inference_ms"]["p95"], 2.0);
        assert_eq!(s["source"]["state"], "streaming");
        assert_eq!(s["queues"]["mqtt"], 2);
        assert_eq!(s["mqtt"]["connected"], false);
        assert!(s["cpu_temp_c"].is_null());
        assert!(!m[2].retain);
        assert_eq!(m[3].payload, b"offline");
        assert!(m[3].retain);
        assert!(conn.offline.load(Ordering::SeqCst));
        let d = String::from_utf8_lossy(&m[4].payload).to_string();
        assert!(d.contains(r#""score_threshold":0.5,"#), "{d}");
        let d = json(&m[4]);
        assert_eq!(d["frames"]["skipped"], 1);
        assert_eq!(d["shadow"]["busy_percent"], 3.25);
    }

    #[test]
    fn discovery_is_remembered_not_queued() {
        let (p, o, conn) = publisher(false);
        p.discovery(
            "homeassistant",
            "cam1",
            &[("person".into(), "Person".into())],
            Entities {
                drift: true,
                ..Default::default()
            },
        );
        assert!(o.is_empty());
        // Labels (3), drift (4), controls (2).
        assert_eq!(conn.retained.lock().unwrap().len(), 3 + 4 + 2);
        p.discovery(
            "homeassistant",
            "cam1",
            &[
                ("person".into(), "Person".into()),
                ("car".into(), "Car".into()),
            ],
            Entities {
                snapshots: true,
                ..Default::default()
            },
        );
        let kept = conn.retained.lock().unwrap();
        assert!(kept.contains_key("homeassistant/image/cam1/person_snapshot/config"));
        assert!(kept.contains_key("homeassistant/image/cam1/car_snapshot/config"));
    }

    #[test]
    fn snapshots_are_raw_retained_and_one_per_label_waits() {
        let (p, o, conn) = publisher(false);
        let jpeg = [0xff, 0xd8, 0x00, 0x80, 0xff, 0xd9];
        p.snapshot("Person", &jpeg);
        p.snapshot("C++", &jpeg);
        p.snapshot("Person", &[0xff, 0xd8, 0xff, 0xd9]);
        let m = drain(&o);
        assert_eq!(
            m.len(),
            2,
            "away: the newer Person snapshot replaced the queued one"
        );
        assert_eq!(m[0].topic, "edgecam/cam1/Person/snapshot");
        assert_eq!(m[0].payload, [0xff, 0xd8, 0xff, 0xd9]);
        assert!(m[0].retain && m[0].qos == 1);
        assert_eq!(m[1].topic, "edgecam/cam1/C__/snapshot");
        assert_eq!(m[1].payload, jpeg, "bytes as they are");
        // Connected, every snapshot goes out in turn.
        conn.connected.store(true, Ordering::SeqCst);
        p.snapshot("Person", &jpeg);
        p.snapshot("Person", &jpeg);
        assert_eq!(drain(&o).len(), 2);
        assert!(conn
            .retained
            .lock()
            .unwrap()
            .contains_key("edgecam/cam1/Person/snapshot"));
        // Too large for one packet: neither queued nor remembered, counted.
        p.snapshot("Dog", &vec![0; crate::publish::MAX_PACKET]);
        assert!(o.is_empty());
        assert_eq!(o.invalid(), 1);
        assert!(!conn
            .retained
            .lock()
            .unwrap()
            .contains_key("edgecam/cam1/Dog/snapshot"));
        // stats.snapshots only when there are snapshots.
        p.stats(&StatsFigures::default());
        p.stats(&StatsFigures {
            snapshots: Some(SnapshotFigures {
                published: 3,
                shrunk: 1,
                failed: 0,
            }),
            ..Default::default()
        });
        let m = drain(&o);
        assert!(json(&m[0]).get("snapshots").is_none());
        assert_eq!(json(&m[1])["snapshots"]["published"], 3);
        assert_eq!(json(&m[1])["snapshots"]["shrunk"], 1);
    }
}
