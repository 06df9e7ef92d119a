//! Daemon configuration: `/etc/edgecam/edgecam.toml` (or `--config`), layered
//! with `EDGECAM__SECTION__KEY` environment variables through the `config`
//! crate. Unknown keys and invalid values fail start-up with a message naming
//! the key. `config/edgecam.toml` documents every key with its default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/edgecam/edgecam.toml";

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub detector: DetectorConfig,
    pub mqtt: MqttConfig,
    pub homeassistant: HomeAssistantConfig,
    pub tracker: TrackerConfig,
    pub shadow: ShadowConfig,
    pub pipeline: PipelineConfig,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    V4l2,
    Ffmpeg,
    Images,
    Mjpeg,
    Synthetic,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `v4l2`, `ffmpeg`, `images`, `mjpeg` or `synthetic`.
    pub kind: SourceKind,
    /// Device index or path (v4l2), file/URL (ffmpeg), directory (images), file (mjpeg).
    pub uri: String,
    /// Capture rate cap in frames per second (0 = as fast as the source gives).
    pub fps: f64,
    /// Requested width/height (v4l2, synthetic; ffmpeg scales to it when set). 0 = native.
    pub width: u32,
    pub height: u32,
    /// v4l2 pixel format preference: `mjpeg` or `yuyv`.
    pub format: String,
    /// Start again at the end of a file source (images, mjpeg, ffmpeg files).
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Seconds without a frame before the source is considered stalled and reopened.
    pub stall_timeout_s: f64,
    /// Reconnect back-off bounds in seconds.
    pub backoff_min_s: f64,
    pub backoff_max_s: f64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Synthetic,
            uri: String::new(),
            fps: 10.0,
            width: 0,
            height: 0,
            format: "mjpeg".into(),
            looping: false,
            stall_timeout_s: 5.0,
            backoff_min_s: 0.5,
            backoff_max_s: 30.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub model: PathBuf,
    pub labels: Option<PathBuf>,
    /// Model description (anchors, box coder); default: next to the model.
    pub desc: Option<PathBuf>,
    pub threads: usize,
    /// `auto`, `scalar`, `neon`, `dotprod`, `i8mm`, `avx2` or `avx512` (EDGECAM_KERNELS overrides).
    pub kernels: String,
    /// Worker cores to pin the engine's threads to (empty: no pinning).
    pub cores: Vec<usize>,
    pub score_threshold: f32,
    /// Per-label score thresholds overriding `score_threshold`.
    pub thresholds: BTreeMap<String, f32>,
    /// Only these labels (empty: all).
    pub labels_allow: Vec<String>,
    /// Never these labels.
    pub labels_deny: Vec<String>,
    /// Minimum box area as a fraction of the frame (0..1).
    pub min_box_area: f32,
    /// Detection rate cap in frames per second (0 = every frame the detector can take).
    pub max_fps: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            model: PathBuf::from(
                "/usr/local/share/edgecam/models/ssd_mobilenetv2_oidv4_int8.tflite",
            ),
            labels: None,
            desc: None,
            threads: 2,
            kernels: "auto".into(),
            cores: vec![],
            score_threshold: 0.5,
            thresholds: BTreeMap::new(),
            labels_allow: vec![],
            labels_deny: vec![],
            min_box_area: 0.0,
            max_fps: 0.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host; empty starts an embedded broker on loopback (first-run mode).
    pub host: String,
    pub port: u16,
    pub prefix: String,
    /// Default: the hostname.
    pub device_id: String,
    pub client_id: String,
    pub qos: u8,
    pub retain: bool,
    pub keep_alive_s: u64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    /// Messages kept while the broker is away (oldest dropped beyond this).
    pub buffer: usize,
    /// Reconnect back-off bounds in seconds (doubled per failure, with jitter).
    pub backoff_min_s: f64,
    pub backoff_max_s: f64,
    /// Seconds between `stats` messages.
    pub stats_interval_s: f64,
    /// Print every published message to stdout (first-run mode turns this on).
    pub echo: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "localhost".into(),
            port: 1883,
            prefix: "edgecam".into(),
            device_id: String::new(),
            client_id: String::new(),
            qos: 0,
            retain: false,
            keep_alive_s: 30,
            username: None,
            password: None,
            tls: false,
            ca_file: None,
            buffer: 1000,
            backoff_min_s: 0.25,
            backoff_max_s: 30.0,
            stats_interval_s: 10.0,
            echo: false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    pub enabled: bool,
    pub discovery_prefix: String,
    /// Labels that get sensors (empty: every label of the model).
    pub labels: Vec<String>,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            enabled: false,
            discovery_prefix: "homeassistant".into(),
            labels: vec![],
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// IoU needed to continue a track.
    pub iou: f32,
    /// Processed frames a track may be unseen before it ends.
    pub max_missed: u32,
    /// Minimum processed frames between `update` events of one track.
    pub update_every: u32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            iou: 0.3,
            max_missed: 5,
            update_every: 5,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowConfig {
    pub enabled: bool,
    /// float32 or float16-weight model of the same network.
    pub model: Option<PathBuf>,
    /// Compare every Nth processed frame.
    pub every_n: u32,
    /// CPU budget of the shadow in percent of one core (0 = no budget).
    pub cpu_budget: f64,
    pub threads: usize,
    /// Nice value of the shadow thread (0 = leave its priority alone, up to 19).
    pub nice: i32,
    /// Score threshold of both models' detections in the comparison.
    pub score_threshold: f32,
    /// Sampled frames in the rolling window.
    pub window: usize,
    /// Weight of the newest frame in the EWMA (0 < alpha <= 1).
    pub ewma_alpha: f64,
    /// Window metric the alarm watches: f1, precision, recall, map50, map50_95,
    /// sqnr_db, cosine, mean_iou or class_flip_rate.
    pub alarm_metric: String,
    /// The alarm fires when the metric falls below this (rises above it for class_flip_rate).
    pub alarm_threshold: f64,
    /// ... and clears once it is this far back on the good side.
    pub alarm_hysteresis: f64,
    /// Frames the window needs before the alarm judges it.
    pub alarm_min_frames: usize,
    /// Keep the most disagreeing frames here (unset = off).
    pub store_dir: Option<PathBuf>,
    pub store_max_frames: usize,
    pub store_max_bytes: u64,
    /// Keep frames whose disagreement (1 - F1) is at least this.
    pub store_min_disagreement: f64,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            enabled: false,
            model: None,
            every_n: 10,
            cpu_budget: 25.0,
            threads: 1,
            nice: 10,
            score_threshold: 0.5,
            window: 20,
            ewma_alpha: 0.2,
            alarm_metric: "f1".into(),
            alarm_threshold: 0.5,
            alarm_hysteresis: 0.1,
            alarm_min_frames: 3,
            store_dir: None,
            store_max_frames: 50,
            store_max_bytes: 50_000_000,
            store_min_disagreement: 0.5,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Stop after this many captured frames (0 = run until stopped). For tests and demos.
    pub max_frames: u64,
    /// Stop when a non-looping file source ends.
    pub exit_on_eof: bool,
}

/// The host name, for the default device id.
pub fn hostname() -> String {
    // /proc/sys may be hidden by systemd's ProcSubset=pid; /etc/hostname is the fallback.
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "edgecam".into())
}

impl Config {
    /// Load `path` (must exist when given explicitly) layered with environment
    /// variables `EDGECAM__SECTION__KEY`, then validate.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut b = config::Config::builder();
        match path {
            Some(p) => {
                if !p.exists() {
                    bail!("config file {} does not exist", p.display());
                }
                b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
            }
            None => {
                let p = Path::new(DEFAULT_PATH);
                if p.exists() {
                    b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
                }
            }
        }
        let env_map: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("EDGECAM__"))
            .collect();
        b = b.add_source(
            config::Environment::with_prefix("EDGECAM")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_map)),
        );
        let raw = b.build().context("reading configuration")?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check values that the types alone do not constrain. Errors name the key.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, why: String| -> Result<()> { bail!("invalid configuration: {key}: {why}") };
        let s = &self.source;
        if !(s.fps >= 0.0 && s.fps.is_finite()) {
            bad("source.fps", format!("must be >= 0, got {}", s.fps))?;
        }
        match s.kind {
            SourceKind::Ffmpeg | SourceKind::Images | SourceKind::Mjpeg if s.uri.is_empty() => bad(
                "source.uri",
                format!("required for source.kind = {:?}", s.kind).to_lowercase(),
            )?,
            _ => {}
        }
        if !["mjpeg", "yuyv"].contains(&s.format.as_str()) {
            bad(
                "source.format",
                format!("must be mjpeg or yuyv, got '{}'", s.format),
            )?;
        }
        if !(s.backoff_min_s > 0.0 && s.backoff_max_s >= s.backoff_min_s) {
            bad(
                "source.backoff_min_s",
                "need 0 < backoff_min_s <= backoff_max_s".into(),
            )?;
        }
        if s.stall_timeout_s <= 0.0 {
            bad("source.stall_timeout_s", "must be > 0".into())?;
        }
        let d = &self.detector;
        if d.threads == 0 || d.threads > 64 {
            bad(
                "detector.threads",
                format!("must be 1..=64, got {}", d.threads),
            )?;
        }
        if ![
            "auto", "scalar", "neon", "dotprod", "i8mm", "avx2", "avx512",
        ]
        .contains(&d.kernels.as_str())
        {
            bad(
                "detector.kernels",
                format!(
                    "must be auto, scalar, neon, dotprod, i8mm, avx2 or avx512, got '{}'",
                    d.kernels
                ),
            )?;
        }
        if !(0.0..=1.0).contains(&d.score_threshold) {
            bad(
                "detector.score_threshold",
                format!("must be in 0..1, got {}", d.score_threshold),
            )?;
        }
        for (label, t) in &d.thresholds {
            if !(0.0..=1.0).contains(t) {
                bad(
                    &format!("detector.thresholds.{label}"),
                    format!("must be in 0..1, got {t}"),
                )?;
            }
        }
        if !(0.0..=1.0).contains(&d.min_box_area) {
            bad(
                "detector.min_box_area",
                format!("must be in 0..1, got {}", d.min_box_area),
            )?;
        }
        if d.max_fps < 0.0 {
            bad("detector.max_fps", "must be >= 0".into())?;
        }
        let m = &self.mqtt;
        if m.qos > 2 {
            bad("mqtt.qos", format!("must be 0, 1 or 2, got {}", m.qos))?;
        }
        if m.prefix.is_empty() || m.prefix.contains(['+', '#']) {
            bad(
                "mqtt.prefix",
                format!(
                    "must be a non-empty topic without wildcards, got '{}'",
                    m.prefix
                ),
            )?;
        }
        if m.device_id.contains(['+', '#', '/']) {
            bad(
                "mqtt.device_id",
                format!("must not contain '/', '+' or '#', got '{}'", m.device_id),
            )?;
        }
        if !(m.backoff_min_s > 0.0 && m.backoff_max_s >= m.backoff_min_s) {
            bad(
                "mqtt.backoff_min_s",
                "need 0 < backoff_min_s <= backoff_max_s".into(),
            )?;
        }
        if m.buffer == 0 {
            bad("mqtt.buffer", "must be >= 1".into())?;
        }
        if m.stats_interval_s <= 0.0 {
            bad("mqtt.stats_interval_s", "must be > 0".into())?;
        }
        if m.keep_alive_s < 5 {
            bad("mqtt.keep_alive_s", "must be >= 5".into())?;
        }
        if !(0.0..=1.0).contains(&self.tracker.iou) {
            bad("tracker.iou", "must be in 0..1".into())?;
        }
        let sh = &self.shadow;
        if sh.enabled && sh.model.is_none() {
            bad("shadow.model", "required when shadow.enabled = true".into())?;
        }
        if sh.every_n == 0 {
            bad("shadow.every_n", "must be >= 1".into())?;
        }
        if !(0.0..=100.0).contains(&sh.cpu_budget) {
            bad("shadow.cpu_budget", "must be in 0..100 (percent)".into())?;
        }
        if !(0..=19).contains(&sh.nice) {
            bad("shadow.nice", format!("must be in 0..=19, got {}", sh.nice))?;
        }
        if !(0.0..=1.0).contains(&sh.score_threshold) {
            bad("shadow.score_threshold", "must be in 0..1".into())?;
        }
        if sh.window == 0 {
            bad("shadow.window", "must be >= 1".into())?;
        }
        if !(sh.ewma_alpha > 0.0 && sh.ewma_alpha <= 1.0) {
            bad("shadow.ewma_alpha", "must be in (0, 1]".into())?;
        }
        if let Err(e) = crate::drift::window::AlarmMetric::parse(&sh.alarm_metric) {
            bad("shadow.alarm_metric", e.to_string())?;
        }
        if !sh.alarm_threshold.is_finite() {
            bad("shadow.alarm_threshold", "must be a number".into())?;
        }
        if !(sh.alarm_hysteresis >= 0.0 && sh.alarm_hysteresis.is_finite()) {
            bad("shadow.alarm_hysteresis", "must be >= 0".into())?;
        }
        if sh.alarm_min_frames == 0 {
            bad("shadow.alarm_min_frames", "must be >= 1".into())?;
        }
        if sh.store_max_frames == 0 {
            bad("shadow.store_max_frames", "must be >= 1".into())?;
        }
        if !(0.0..=1.0).contains(&sh.store_min_disagreement) {
            bad("shadow.store_min_disagreement", "must be in 0..1".into())?;
        }
        Ok(())
    }

    /// The MQTT device id with the hostname default applied.
    pub fn device_id(&self) -> String {
        if self.mqtt.device_id.is_empty() {
            hostname().replace(['/', '+', '#', ' '], "_")
        } else {
            self.mqtt.device_id.clone()
        }
    }

    /// Base topic `<prefix>/<device_id>`.
    pub fn base_topic(&self) -> String {
        format!(
            "{}/{}",
            self.mqtt.prefix.trim_end_matches('/'),
            self.device_id()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (PathBuf, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("edgecam-cfg-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn documented_file_equals_the_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/edgecam.toml");
        let c = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert_eq!(
            c,
            Config::default(),
            "config/edgecam.toml documents every default"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let (dir, p) = write("[mqtt]\nhost = \"broker.lan\"\nport = 1884\n");
        let env = vec![
            ("EDGECAM__MQTT__PORT".to_string(), "1999".to_string()),
            ("EDGECAM__DETECTOR__THREADS".to_string(), "3".to_string()),
            ("EDGECAM__SHADOW__ENABLED".to_string(), "false".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load_with_env(Some(&p), env).unwrap();
        assert_eq!(c.mqtt.host, "broker.lan");
        assert_eq!(c.mqtt.port, 1999);
        assert_eq!(c.detector.threads, 3);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_name_the_key() {
        let (dir, p) = write("[mqtt]\nhots = \"x\"\n");
        let e = Config::load_with_env(Some(&p), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("hots"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
        let (dir, p) = write("[detector]\nthreads = 0\n");
        let e = Config::load_with_env(Some(&p), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("detector.threads"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
        let env = vec![("EDGECAM__MQTT__QOS".to_string(), "9".to_string())];
        let e = Config::load_with_env(None, env).unwrap_err().to_string();
        assert!(e.contains("mqtt.qos"), "{e}");
        let e = Config::load_with_env(Some(Path::new("/nonexistent.toml")), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
    }
}
