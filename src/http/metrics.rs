//! `/metrics`: the daemon's figures in the Prometheus text exposition format 0.0.4, every
//! metric named `edgecam_*` with its `# HELP` and `# TYPE`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::app::pipeline::{Shared, SourceState};
use crate::app::stats::HistogramReading;
use crate::drift::shadow::DriftMonitor;
use crate::publish::mqtt::ConnState;
use crate::publish::Outbox;

/// The content type of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How far back the frame rates look.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);

/// Where the figures come from.
pub struct Sources {
    pub shared: Arc<Shared>,
    pub conn: Arc<ConnState>,
    pub outbox: Arc<Outbox>,
    pub drift: Option<DriftMonitor>,
    /// (when, captured, processed), sampled once a second over [`RATE_WINDOW`].
    rates: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl Sources {
    pub fn new(
        shared: Arc<Shared>,
        conn: Arc<ConnState>,
        outbox: Arc<Outbox>,
        drift: Option<DriftMonitor>,
    ) -> Self {
        Sources {
            shared,
            conn,
            outbox,
            drift,
            rates: Mutex::new(VecDeque::new()),
        }
    }

    /// Record the frame counts now (called once a second).
    pub fn sample_rates(&self) {
        let st = &self.shared.stats;
        let now = Instant::now();
        let mut r = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        r.push_back((
            now,
            st.captured.load(Ordering::Relaxed),
            st.processed.load(Ordering::Relaxed),
        ));
        while r
            .front()
            .is_some_and(|f| now.duration_since(f.0) > RATE_WINDOW)
        {
            r.pop_front();
        }
    }

    /// (capture, processed) frames per second over the last [`RATE_WINDOW`] (0 until two
    /// samples are a second apart).
    fn fps(&self) -> (f64, f64) {
        let r = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        match (r.front(), r.back()) {
            (Some(a), Some(b)) if b.0.duration_since(a.0) >= Duration::from_millis(900) => {
                let dt = b.0.duration_since(a.0).as_secs_f64();
                (
                    b.1.saturating_sub(a.1) as f64 / dt,
                    b.2.saturating_sub(a.2) as f64 / dt,
                )
            }
            _ => (0.0, 0.0),
        }
    }

    /// The exposition text; `stream_clients` is the number of `/stream.mjpeg` clients.
    pub fn render(&self, stream_clients: usize) -> String {
        let sh = &self.shared;
        let st = &sh.stats;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut o = Exposition::default();
        o.gauge(
            "edgecam_uptime_seconds",
            "Seconds since the daemon started.",
            st.started.elapsed().as_secs_f64(),
        );
        o.counter(
            "edgecam_frames_captured_total",
            "Frames read from the source.",
            ld(&st.captured),
        );
        o.counter(
            "edgecam_frames_processed_total",
            "Frames the detector processed.",
            ld(&st.processed),
        );
        o.head(
            "edgecam_frames_dropped_total",
            "counter",
            "Frames not processed, by reason: evicted before detection (capture_queue), skipped by detector.max_fps (rate_cap), while detection is off (detection_off), or results evicted before publishing (result_queue).",
        );
        for (reason, v) in [
            ("capture_queue", ld(&st.dropped_capture)),
            ("rate_cap", ld(&st.skipped_rate)),
            ("detection_off", ld(&st.skipped_disabled)),
            ("result_queue", ld(&st.dropped_results)),
        ] {
            o.sample("edgecam_frames_dropped_total", &[("reason", reason)], v);
        }
        let (cap_fps, pro_fps) = self.fps();
        o.gauge(
            "edgecam_capture_fps",
            "Frames captured per second over the last 10 s.",
            cap_fps,
        );
        o.gauge(
            "edgecam_processed_fps",
            "Frames processed per second over the last 10 s.",
            pro_fps,
        );
        o.gauge(
            "edgecam_last_frame_age_seconds",
            "Seconds since a frame last reached detection (since start when none has).",
            st.since_progress()
                .unwrap_or_else(|| st.started.elapsed())
                .as_secs_f64(),
        );
        o.histogram(
            "edgecam_inference_latency_seconds",
            "Time the int8 detector took per frame.",
            &st.inference_hist.read(),
        );
        o.head(
            "edgecam_source_state",
            "gauge",
            "1 for the state the source is in, 0 for the others.",
        );
        let now = sh.source_state();
        for s in [
            SourceState::Opening,
            SourceState::Streaming,
            SourceState::Reconnecting,
            SourceState::Stalled,
            SourceState::Ended,
            SourceState::Truncated,
        ] {
            let v = if s == now { 1.0 } else { 0.0 };
            o.sample("edgecam_source_state", &[("state", s.as_str())], v);
        }
        o.counter(
            "edgecam_source_errors_total",
            "Source errors (failed opens, reads, unusable items).",
            ld(&st.source_errors),
        );
        o.counter(
            "edgecam_source_stalls_total",
            "Times the source was silent for source.stall_timeout_s.",
            ld(&st.stalls),
        );
        o.counter(
            "edgecam_source_reopens_total",
            "Times the source was opened again.",
            ld(&st.reopens),
        );
        o.counter(
            "edgecam_detect_errors_total",
            "Frames on which detection failed.",
            ld(&st.detect_errors),
        );
        o.gauge(
            "edgecam_detection_enabled",
            "1 while detection is on (<base>/detect/set).",
            bool_f(sh.detect_enabled.load(Ordering::Relaxed)),
        );
        o.gauge(
            "edgecam_mqtt_connected",
            "1 while connected to the MQTT broker.",
            bool_f(self.conn.connected.load(Ordering::Relaxed)),
        );
        o.counter(
            "edgecam_mqtt_published_total",
            "MQTT messages published.",
            ld(&self.conn.published),
        );
        o.counter(
            "edgecam_mqtt_connects_total",
            "Successful MQTT connections.",
            ld(&self.conn.connects),
        );
        o.counter(
            "edgecam_mqtt_connect_failures_total",
            "Failed MQTT connection attempts.",
            ld(&self.conn.failures),
        );
        o.gauge(
            "edgecam_mqtt_outbox_messages",
            "Messages waiting to be published.",
            self.outbox.len() as f64,
        );
        o.gauge(
            "edgecam_mqtt_outbox_bytes",
            "Bytes (topics and payloads) waiting to be published.",
            self.outbox.bytes() as f64,
        );
        o.counter(
            "edgecam_mqtt_dropped_total",
            "Messages dropped from the full outbox while the broker was away.",
            self.outbox.dropped() as f64,
        );
        o.gauge(
            "edgecam_http_stream_clients",
            "Clients of /stream.mjpeg.",
            stream_clients as f64,
        );
        if let Some(d) = &self.drift {
            drift(&mut o, d);
        }
        o.0
    }
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The shadow's figures (with `shadow.enabled` on a model with raw outputs).
fn drift(o: &mut Exposition, d: &DriftMonitor) {
    let s = d.stats();
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    o.counter(
        "edgecam_drift_frames_sampled_total",
        "Frames chosen for the float shadow (shadow.every_n).",
        ld(&s.sampled),
    );
    o.counter(
        "edgecam_drift_frames_compared_total",
        "Frames the float shadow compared with the int8 detector.",
        ld(&s.compared),
    );
    o.head(
        "edgecam_drift_frames_skipped_total",
        "counter",
        "Sampled frames the shadow skipped: still busy (busy) or over its CPU budget (budget).",
    );
    o.sample(
        "edgecam_drift_frames_skipped_total",
        &[("reason", "busy")],
        ld(&s.skipped_busy),
    );
    o.sample(
        "edgecam_drift_frames_skipped_total",
        &[("reason", "budget")],
        ld(&s.skipped_budget),
    );
    o.counter(
        "edgecam_drift_errors_total",
        "Failed shadow comparisons.",
        ld(&s.errors),
    );
    let latest = d.latest();
    o.gauge(
        "edgecam_drift_alarm",
        "1 while the quantization drift alarm is on.",
        bool_f(latest.as_ref().is_some_and(|l| l.alarm_active)),
    );
    o.counter(
        "edgecam_drift_alarm_fired_total",
        "Times the drift alarm fired.",
        latest.as_ref().map_or(0.0, |l| l.alarm_fired as f64),
    );
    let Some(l) = latest else { return };
    o.gauge(
        "edgecam_drift_window_frames",
        "Comparisons in the drift window.",
        l.window_frames as f64,
    );
    o.head(
        "edgecam_drift_window",
        "gauge",
        "Int8 against float, pooled over the drift window (as <base>/drift's metrics).",
    );
    for (k, v) in &l.window {
        o.sample("edgecam_drift_window", &[("metric", k)], *v);
    }
    if !l.ewma.is_empty() {
        o.head(
            "edgecam_drift_ewma",
            "gauge",
            "Exponentially weighted moving average of the per-frame drift figures.",
        );
        for (k, v) in &l.ewma {
            o.sample("edgecam_drift_ewma", &[("metric", k)], *v);
        }
    }
}

/// Text in the exposition format.
#[derive(Default)]
pub struct Exposition(pub String);

impl Exposition {
    pub fn head(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let val = val
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{val}\"");
            }
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(&number(v));
        self.0.push('\n');
    }
    pub fn gauge(&mut self, name: &str, help: &str, v: f64) {
        self.head(name, "gauge", help);
        self.sample(name, &[], v);
    }
    pub fn counter(&mut self, name: &str, help: &str, v: f64) {
        self.head(name, "counter", help);
        self.sample(name, &[], v);
    }
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramReading) {
        self.head(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for &(le, n) in &h.cumulative {
            self.sample(&bucket, &[("le", &number(le))], n as f64);
        }
        self.sample(&format!("{name}_sum"), &[], h.sum_s);
        self.sample(&format!("{name}_count"), &[], h.count as f64);
    }
}

/// A sample value as the format writes it (`+Inf`, `-Inf`, `NaN`, else a Go-parsable float).
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_labels_are_written_as_the_format_says() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.005), "0.005");
        let mut o = Exposition::default();
        o.head("x_total", "counter", "A\nB");
        o.sample("x_total", &[("a", "q\"b\\"), ("c", "d")], 1.5);
        assert_eq!(
            o.0,
            "# HELP x_total A\\nB\n# TYPE x_total counter\nx_total{a=\"q\\\"b\\\\\",c=\"d\"} 1.5\n"
        );
    }

    #[test]
    fn every_metric_has_help_and_type_and_the_rates_follow_the_counts() {
        let shared = Shared::new();
        let s = Sources::new(
            shared.clone(),
            Arc::new(ConnState::default()),
            Arc::new(Outbox::new(8)),
            None,
        );
        shared.stats.inference_hist.observe_ms(12.0);
        s.sample_rates();
        shared.stats.captured.fetch_add(20, Ordering::Relaxed);
        shared.stats.processed.fetch_add(10, Ordering::Relaxed);
        // Back-date the first sample by 2 s: 10 captured per second, 5 processed.
        {
            let mut r = s.rates.lock().unwrap();
            let f = r.front_mut().unwrap();
            f.0 -= Duration::from_secs(2);
        }
        s.sample_rates();
        let text = s.render(2);
        let mut typed = std::collections::BTreeSet::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if l.starts_with('#') {
                continue;
            }
            let name = l.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
                .unwrap_or(name);
            assert!(typed.contains(base), "{name} has no TYPE: {text}");
            assert!(name.starts_with("edgecam_"), "{l}");
        }
        let value = |key: &str| -> f64 {
            let l = text.lines().find(|l| l.starts_with(key)).unwrap();
            l.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!((value("edgecam_capture_fps ") - 10.0).abs() < 0.1, "{text}");
        assert!((value("edgecam_processed_fps ") - 5.0).abs() < 0.1);
        assert_eq!(value("edgecam_http_stream_clients "), 2.0);
        assert_eq!(value("edgecam_mqtt_connected "), 0.0);
        assert_eq!(value("edgecam_source_state{state=\"opening\"} "), 1.0);
        assert_eq!(
            value("edgecam_inference_latency_seconds_bucket{le=\"0.01\"} "),
            0.0
        );
        assert_eq!(
            value("edgecam_inference_latency_seconds_bucket{le=\"0.02\"} "),
            1.0
        );
        assert!(!text.contains("edgecam_drift"), "no shadow, no drift");
    }
}
