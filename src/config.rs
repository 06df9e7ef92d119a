//! Daemon configuration: `/etc/edgecam/edgecam.toml` (or `--config`), layered
//! with `EDGECAM__SECTION__KEY` environment variables through the `config`
//! crate. Unknown keys and invalid values fail start-up with a message naming
//! the key. `config/edgecam.toml` documents every key with its default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/edgecam/edgecam.toml";

/// An enum whose configuration value is one word of a fixed list: typed once at load, with an
/// error that lists the words (`... expected one of a, b, c`), named by the `config` crate
/// with its key.
macro_rules! word_enum {
    ($(#[$m:meta])* pub enum $name:ident {
        $($(#[$vm:meta])* $var:ident = $word:literal),+ $(,)?
    }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub const NAMES: &'static [&'static str] = &[$($word),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$var => $word),+ }
            }

            pub fn parse(s: &str) -> Result<Self, String> {
                match s {
                    $($word => Ok($name::$var),)+
                    _ => Err(format!(
                        "unknown value '{s}', expected one of {}",
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub source: SourceConfig,
    pub detector: DetectorConfig,
    pub mqtt: MqttConfig,
    pub homeassistant: HomeAssistantConfig,
    pub tracker: TrackerConfig,
    pub shadow: ShadowConfig,
    pub calibration: CalibrationConfig,
    pub snapshots: SnapshotConfig,
    pub pipeline: PipelineConfig,
    pub http: HttpConfig,
}

word_enum! {
    /// `source.kind`.
    pub enum SourceKind {
        V4l2 = "v4l2",
        Ffmpeg = "ffmpeg",
        Images = "images",
        Mjpeg = "mjpeg",
        Synthetic = "synthetic",
        /// A Raspberry Pi camera through `rpicam-vid` (or `libcamera-vid`) writing MJPEG.
        Libcamera = "libcamera",
    }
}

word_enum! {
    /// `source.format`: the pixel format a V4L2 camera is asked for.
    pub enum PixelFormat {
        Mjpeg = "mjpeg",
        Yuyv = "yuyv",
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `v4l2`, `ffmpeg`, `images`, `mjpeg`, `libcamera` or `synthetic`.
    pub kind: SourceKind,
    /// Device index or path (v4l2), file/URL (ffmpeg), directory (images), file, pipe, `-`
    /// or `http://` URL (mjpeg), camera index (libcamera).
    pub uri: String,
    /// Capture rate cap in frames per second (0 = as fast as the source gives).
    pub fps: f64,
    /// Requested width/height (v4l2, synthetic; ffmpeg scales to it when set). 0 = native.
    pub width: u32,
    pub height: u32,
    /// v4l2 pixel format preference: `mjpeg` or `yuyv`.
    pub format: PixelFormat,
    /// Start again at the end of a file source (images, mjpeg, ffmpeg files).
    #[serde(rename = "loop")]
    pub looping: bool,
    /// Seconds without a frame before the source is considered stalled and reopened.
    pub stall_timeout_s: f64,
    /// Reconnect back-off bounds in seconds.
    pub backoff_min_s: f64,
    pub backoff_max_s: f64,
    /// libcamera: the program to run; empty = `rpicam-vid`, else `libcamera-vid`.
    pub command: String,
    /// libcamera: more arguments for the program, after edgecam's own.
    pub extra_args: Vec<String>,
    /// ffmpeg: input options, before `-i` (e.g. `["-re"]`, `["-ss", "5"]`).
    pub input_args: Vec<String>,
    /// ffmpeg: hardware decoding options, before `-i` (e.g. `["-hwaccel", "drm"]`).
    pub hwaccel_args: Vec<String>,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            kind: SourceKind::Synthetic,
            uri: String::new(),
            fps: 10.0,
            width: 0,
            height: 0,
            format: PixelFormat::Mjpeg,
            looping: false,
            stall_timeout_s: 5.0,
            backoff_min_s: 0.5,
            backoff_max_s: 30.0,
            command: String::new(),
            extra_args: vec![],
            input_args: vec![],
            hwaccel_args: vec![],
        }
    }
}

word_enum! {
    /// How the detector's outputs are read (`detector.model_type`, like Frigate's).
    #[derive(Default)]
    pub enum ModelType {
        /// A description file → `ssd`; a graph ending in TFLite_Detection_PostProcess →
        /// `ssd_postprocess`; one `[1, N, 5 + C]` / `[1, 4 + C, N]` output → `yolov5` / `yolov8`.
        #[default]
        Auto = "auto",
        /// Raw SSD outputs decoded with the description's anchors.
        Ssd = "ssd",
        /// The graph ends in TFLite_Detection_PostProcess.
        SsdPostprocess = "ssd_postprocess",
        /// `[1, N, 5 + C]`: centre/size box, objectness, class scores.
        Yolov5 = "yolov5",
        /// `[1, 4 + C, N]` (v8, v11): centre/size box, class scores.
        Yolov8 = "yolov8",
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// `auto`, `ssd`, `ssd_postprocess`, `yolov5` or `yolov8`.
    pub model_type: ModelType,
    pub labels: Option<PathBuf>,
    /// Model description (anchors, box coder); default: next to the model.
    pub desc: Option<PathBuf>,
    pub threads: usize,
    /// `auto`, `scalar`, `neon`, `dotprod`, `i8mm`, `avx2` or `avx512` (EDGECAM_KERNELS overrides).
    pub kernels: crate::engine::KernelRequest,
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
            model: PathBuf::from("/usr/share/edgecam/models/ssd_mobilenetv2_oidv4_int8.tflite"),
            model_type: ModelType::Auto,
            labels: None,
            desc: None,
            threads: 2,
            kernels: crate::engine::KernelRequest::Auto,
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
    /// A file holding the password on one line (mode 600), instead of `password`. Unset, and
    /// without `password`: the systemd credential `mqtt_password` when the unit loads one.
    pub password_file: Option<PathBuf>,
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    /// Messages kept while the broker is away (oldest dropped beyond this).
    pub buffer: usize,
    /// ... and at most this many megabytes of them (snapshots are large).
    pub buffer_mb: f64,
    /// Reconnect back-off bounds in seconds (doubled per failure, with jitter).
    pub backoff_min_s: f64,
    pub backoff_max_s: f64,
    /// Seconds between `stats` messages.
    pub stats_interval_s: f64,
    /// Print every published message to stdout (first-run mode turns this on).
    pub echo: bool,
    /// `edgecam` or `frigate` (Frigate's `{type, before, after}` events).
    pub events_format: EventsFormat,
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
            password_file: None,
            tls: false,
            ca_file: None,
            buffer: 1000,
            buffer_mb: 32.0,
            backoff_min_s: 0.25,
            backoff_max_s: 30.0,
            stats_interval_s: 10.0,
            echo: false,
            events_format: EventsFormat::Edgecam,
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

/// `[tracker]`: the tracker's settings, as they are.
pub type TrackerConfig = crate::postprocess::tracker::Settings;

word_enum! {
    /// The shape of `<base>/events`.
    #[derive(Default)]
    pub enum EventsFormat {
        /// edgecam's own: the event's fields at the top level (docs/MQTT.md).
        #[default]
        Edgecam = "edgecam",
        /// Frigate's `{type, before, after}`, for blueprints and Node-RED flows made for Frigate.
        Frigate = "frigate",
    }
}

word_enum! {
    /// The window metric the shadow's alarm watches (`shadow.alarm_metric`).
    pub enum AlarmMetric {
        F1 = "f1",
        Precision = "precision",
        Recall = "recall",
        Map50 = "map50",
        Map50_95 = "map50_95",
        SqnrDb = "sqnr_db",
        Cosine = "cosine",
        MeanIou = "mean_iou",
        ClassFlipRate = "class_flip_rate",
    }
}

impl AlarmMetric {
    /// Whether larger values are better (everything except the flip rate).
    pub fn higher_is_better(self) -> bool {
        self != AlarmMetric::ClassFlipRate
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
    pub alarm_metric: AlarmMetric,
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
            alarm_metric: AlarmMetric::F1,
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

word_enum! {
    /// What the daemon does with a calibrated candidate that beats the running model.
    pub enum Promote {
        /// Swap it in by itself.
        Auto = "auto",
        /// Wait for `promote` on `<base>/calibration/set`.
        Manual = "manual",
    }
}

/// On-device calibration (`[calibration]`): collect the camera's frames, re-quantize the int8
/// model from the float one (`shadow.model`), A/B it against the running model and promote it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    pub enabled: bool,
    /// Collected frames, candidates, promoted models and the history.
    pub dir: PathBuf,
    /// Calibration frames to collect (one in four more are collected and held out for the A/B).
    pub frames: usize,
    /// Seconds between two collected frames.
    pub interval_s: f64,
    /// A frame closer than this to the last kept one (mean absolute difference of 32×32
    /// thumbnails, 0..255) is skipped.
    pub min_difference: f64,
    /// Disk bound of the collected frames, bytes.
    pub max_bytes: u64,
    /// Calibrate as soon as the frames are collected (false: wait for `start`).
    pub auto_start: bool,
    /// `auto` (score every method) or one of `minmax`, `percentile`, `mse`, `kl`.
    pub method: String,
    /// `auto` or `manual`.
    pub promote: Promote,
    /// A candidate must beat the running model by this much (mean of agreement F1 and
    /// pseudo-mAP@0.5 against float on the held-out frames).
    pub margin: f64,
    /// CPU budget of the calibration thread in percent of one core (0 = no budget).
    pub cpu_budget: f64,
    /// Nice value of the calibration thread (0 = leave it alone, up to 19).
    pub nice: i32,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            enabled: false,
            dir: PathBuf::from("/var/lib/edgecam/calibration"),
            frames: 200,
            interval_s: 60.0,
            min_difference: 2.0,
            max_bytes: 200_000_000,
            auto_start: true,
            method: "auto".into(),
            promote: Promote::Auto,
            margin: 0.02,
            cpu_budget: 50.0,
            nice: 15,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Publish a JPEG per tracked object on `<base>/<label>/snapshot`.
    pub enabled: bool,
    /// The object's box with a margin around it instead of the whole frame.
    pub crop: bool,
    /// Draw the object's box.
    pub draw_box: bool,
    /// Largest size of the JPEG in pixels (scaled down keeping the aspect ratio, never up).
    pub max_width: u32,
    pub max_height: u32,
    /// JPEG quality, 1..=100.
    pub quality: u32,
    /// Least seconds between two snapshots of one object for a better-scoring frame.
    pub min_interval_s: f64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            enabled: false,
            crop: false,
            draw_box: true,
            max_width: 640,
            max_height: 480,
            quality: 70,
            min_interval_s: 2.0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve `/latest.jpg`, `/stream.mjpeg`, `/metrics` and `/healthz` (see docs/HTTP.md).
    pub enabled: bool,
    /// Address and port to listen on, `IP:PORT` (`0.0.0.0:8080` for every interface).
    pub bind: String,
    /// JPEG quality of `/latest.jpg` and `/stream.mjpeg`, 1..=100.
    pub quality: u32,
    /// Largest size of the served frames in pixels (scaled down keeping the aspect ratio).
    pub max_width: u32,
    pub max_height: u32,
    /// Most frames per second sent to one `/stream.mjpeg` client.
    pub stream_fps: f64,
    /// Most `/stream.mjpeg` clients at once; more get 503.
    pub max_stream_clients: u32,
    /// `/healthz` answers 503 when no frame has reached detection for this long.
    pub unhealthy_after_s: f64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: false,
            bind: "127.0.0.1:8080".into(),
            quality: 75,
            max_width: 1280,
            max_height: 720,
            stream_fps: 5.0,
            max_stream_clients: 4,
            unhealthy_after_s: 10.0,
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

/// Warn when a configuration file that holds the MQTT password can be read by other users.
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the configuration holds mqtt.password and every user can read it: \
                 chmod 600 it, or use mqtt.password_file or the systemd credential mqtt_password"
            );
        }
    }
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

/// Longest back-off, stall timeout or interval a key may ask for: one hour (a day for
/// `mqtt.stats_interval_s`). Beyond, a typo such as `1e300` would overflow a `Duration`.
pub const MAX_SECONDS: f64 = 3600.0;

/// Largest `snapshots.max_width` / `snapshots.max_height`.
pub const MAX_SNAPSHOT_SIDE: u32 = 4096;

/// The name of the systemd credential (`LoadCredential=mqtt_password:...`) that holds the
/// MQTT password when neither `mqtt.password` nor `mqtt.password_file` is set.
pub const PASSWORD_CREDENTIAL: &str = "mqtt_password";

impl Config {
    /// Load `path` layered with environment variables `EDGECAM__SECTION__KEY`, then
    /// validate. Without `path`, [`DEFAULT_PATH`] must exist: a daemon that finds no
    /// configuration does not quietly run on a test pattern. Every error is a
    /// configuration error (exit status 78, see [`crate::exit`]).
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let path = match path {
            Some(p) => p,
            None => {
                let p = Path::new(DEFAULT_PATH);
                if !p.exists() {
                    return Err(crate::exit::config(anyhow::anyhow!(
                        "no configuration: {DEFAULT_PATH} does not exist; pass --config FILE \
                         (config/edgecam.toml documents every key)"
                    )));
                }
                p
            }
        };
        Self::load_with_env(Some(path), std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests); without `path`
    /// only the environment and the defaults count.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        Self::load_inner(path, env).map_err(crate::exit::config)
    }

    fn load_inner(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let mut b = config::Config::builder();
        if let Some(p) = path {
            if !p.exists() {
                bail!("config file {} does not exist", p.display());
            }
            b = b.add_source(config::File::from(p).format(config::FileFormat::Toml));
        }
        let mut env_map = std::collections::HashMap::new();
        let mut credentials = None;
        for (k, v) in env {
            if k.starts_with("EDGECAM__") {
                env_map.insert(k, v);
            } else if k == "CREDENTIALS_DIRECTORY" {
                credentials = Some(PathBuf::from(v));
            }
        }
        let password_from_env = env_map.contains_key("EDGECAM__MQTT__PASSWORD");
        // Values stay strings until serde gives them their key's type: parsing them as
        // numbers first would turn a password "0123" into 123.
        b = b.add_source(
            config::Environment::with_prefix("EDGECAM")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(false)
                .source(Some(env_map)),
        );
        let raw = b.build().context("reading configuration")?;
        let mut cfg: Config = raw
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cfg.validate()?;
        let inline_password = cfg.mqtt.password.is_some() && !password_from_env;
        cfg.resolve_password(credentials.as_deref())?;
        if let (Some(p), true) = (path, inline_password) {
            warn_if_readable_by_others(p);
        }
        Ok(cfg)
    }

    /// The MQTT password: `mqtt.password`, else the contents of `mqtt.password_file`, else
    /// the systemd credential [`PASSWORD_CREDENTIAL`] when the unit loads one.
    fn resolve_password(&mut self, credentials: Option<&Path>) -> Result<()> {
        let m = &mut self.mqtt;
        let file = match (&m.password, &m.password_file) {
            (Some(_), Some(_)) => bail!(
                "invalid configuration: mqtt.password_file: set either mqtt.password or \
                 mqtt.password_file, not both"
            ),
            (Some(_), None) => return Ok(()),
            (None, Some(f)) => f.clone(),
            (None, None) => match credentials.map(|d| d.join(PASSWORD_CREDENTIAL)) {
                Some(c) if c.is_file() => c,
                _ => return Ok(()),
            },
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("mqtt.password_file: reading {}", file.display()))?;
        let pw = text.strip_suffix('\n').unwrap_or(&text);
        let pw = pw.strip_suffix('\r').unwrap_or(pw);
        if pw.is_empty() || pw.contains('\n') {
            bail!(
                "mqtt.password_file: {} must hold the password on one line",
                file.display()
            );
        }
        m.password = Some(pw.to_string());
        Ok(())
    }

    /// Check values that the types alone do not constrain. Errors name the key.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, why: String| -> Result<()> { bail!("invalid configuration: {key}: {why}") };
        // A duration in seconds: finite and within [min, max].
        let secs = |key: &str, v: f64, min: f64, max: f64| -> Result<()> {
            if !(v.is_finite() && v >= min && v <= max) {
                bad(
                    key,
                    format!("must be a number of seconds in {min}..={max}, got {v}"),
                )?;
            }
            Ok(())
        };
        let at_most = |key: &str, v: u64, min: u64, max: u64| -> Result<()> {
            if v < min || v > max {
                bad(key, format!("must be in {min}..={max}, got {v}"))?;
            }
            Ok(())
        };
        let s = &self.source;
        if !(s.fps >= 0.0 && s.fps <= 1000.0) {
            bad("source.fps", format!("must be in 0..=1000, got {}", s.fps))?;
        }
        match s.kind {
            SourceKind::Ffmpeg | SourceKind::Images | SourceKind::Mjpeg if s.uri.is_empty() => bad(
                "source.uri",
                format!("required for source.kind = {:?}", s.kind).to_lowercase(),
            )?,
            _ => {}
        }
        if s.uri.contains('\0') {
            bad("source.uri", "must not contain a NUL character".into())?;
        }
        if s.kind == SourceKind::Libcamera && !s.uri.is_empty() && s.uri.parse::<u32>().is_err() {
            bad(
                "source.uri",
                format!(
                    "for source.kind = libcamera, a camera index (\"0\", \"1\") or empty, got '{}'",
                    s.uri
                ),
            )?;
        }
        if s.kind == SourceKind::Mjpeg && s.uri.starts_with("https://") {
            bad(
                "source.uri",
                "https:// is not supported by source.kind = mjpeg (use kind = ffmpeg)".into(),
            )?;
        }
        for (key, kind, set) in [
            (
                "source.command",
                SourceKind::Libcamera,
                !s.command.is_empty(),
            ),
            (
                "source.extra_args",
                SourceKind::Libcamera,
                !s.extra_args.is_empty(),
            ),
            (
                "source.input_args",
                SourceKind::Ffmpeg,
                !s.input_args.is_empty(),
            ),
            (
                "source.hwaccel_args",
                SourceKind::Ffmpeg,
                !s.hwaccel_args.is_empty(),
            ),
        ] {
            if set && s.kind != kind {
                bad(
                    key,
                    format!("only for source.kind = {kind:?}, not {:?}", s.kind).to_lowercase(),
                )?;
            }
        }
        for (key, args) in [
            ("source.extra_args", &s.extra_args),
            ("source.input_args", &s.input_args),
            ("source.hwaccel_args", &s.hwaccel_args),
        ] {
            if args.iter().any(|a| a.is_empty() || a.contains('\0')) {
                bad(key, "arguments must be non-empty, without NUL".into())?;
            }
        }
        if s.command.contains('\0') {
            bad("source.command", "must not contain a NUL character".into())?;
        }
        at_most("source.width", s.width.into(), 0, 16384)?;
        at_most("source.height", s.height.into(), 0, 16384)?;
        secs("source.backoff_min_s", s.backoff_min_s, 0.01, MAX_SECONDS)?;
        secs("source.backoff_max_s", s.backoff_max_s, 0.01, MAX_SECONDS)?;
        if s.backoff_max_s < s.backoff_min_s {
            bad(
                "source.backoff_min_s",
                "need 0 < backoff_min_s <= backoff_max_s".into(),
            )?;
        }
        secs(
            "source.stall_timeout_s",
            s.stall_timeout_s,
            0.5,
            MAX_SECONDS,
        )?;
        let d = &self.detector;
        if d.threads == 0 || d.threads > 64 {
            bad(
                "detector.threads",
                format!("must be 1..=64, got {}", d.threads),
            )?;
        }
        if d.cores.len() > 64 {
            bad("detector.cores", "at most 64 cores".into())?;
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
        if !(d.max_fps >= 0.0 && d.max_fps <= 1000.0) {
            bad(
                "detector.max_fps",
                format!("must be in 0..=1000, got {}", d.max_fps),
            )?;
        }
        let m = &self.mqtt;
        if !(m.buffer_mb.is_finite() && (1.0..=4096.0).contains(&m.buffer_mb)) {
            bad(
                "mqtt.buffer_mb",
                format!("must be in 1..=4096, got {}", m.buffer_mb),
            )?;
        }
        if m.qos > 2 {
            bad("mqtt.qos", format!("must be 0, 1 or 2, got {}", m.qos))?;
        }
        if m.host.contains(['\0', '/', ' ']) {
            bad(
                "mqtt.host",
                format!("must be a host name or address, got {:?}", m.host),
            )?;
        }
        if m.prefix.is_empty()
            || m.prefix.contains(['+', '#', '\0'])
            || m.prefix.starts_with('$')
            || m.prefix.chars().any(char::is_control)
        {
            bad(
                "mqtt.prefix",
                format!(
                    "must be a non-empty topic without wildcards (+ #), control characters or a \
                     leading '$' (reserved for the broker), got {:?}",
                    m.prefix
                ),
            )?;
        }
        if m.device_id.contains(['+', '#', '/', ' '])
            || m.device_id.starts_with('$')
            || m.device_id.chars().any(char::is_control)
        {
            bad(
                "mqtt.device_id",
                format!(
                    "must not contain '/', '+', '#', spaces or control characters, or start \
                     with '$', got {:?}",
                    m.device_id
                ),
            )?;
        }
        if m.client_id.chars().any(char::is_control) {
            bad(
                "mqtt.client_id",
                "must not contain control characters".into(),
            )?;
        }
        secs("mqtt.backoff_min_s", m.backoff_min_s, 0.01, MAX_SECONDS)?;
        secs("mqtt.backoff_max_s", m.backoff_max_s, 0.01, MAX_SECONDS)?;
        if m.backoff_max_s < m.backoff_min_s {
            bad(
                "mqtt.backoff_min_s",
                "need 0 < backoff_min_s <= backoff_max_s".into(),
            )?;
        }
        // Every message waits in memory while the broker is away: keep that bounded.
        at_most("mqtt.buffer", m.buffer as u64, 1, 1_000_000)?;
        secs(
            "mqtt.stats_interval_s",
            m.stats_interval_s,
            0.1,
            24.0 * MAX_SECONDS,
        )?;
        // MQTT carries the keep-alive as a 16-bit number of seconds.
        at_most("mqtt.keep_alive_s", m.keep_alive_s, 5, 65535)?;
        if let Some(p) = &m.ca_file {
            if !p.is_file() {
                bad(
                    "mqtt.ca_file",
                    format!("{} does not exist or is not a file", p.display()),
                )?;
            }
        }
        if !(0.0..=1.0).contains(&self.tracker.iou) {
            bad("tracker.iou", "must be in 0..1".into())?;
        }
        at_most(
            "tracker.max_missed",
            self.tracker.max_missed.into(),
            0,
            100_000,
        )?;
        at_most(
            "tracker.update_every",
            self.tracker.update_every.into(),
            0,
            100_000,
        )?;
        at_most(
            "tracker.min_frames",
            self.tracker.min_frames.into(),
            1,
            100_000,
        )?;
        if !(0.0..=1.0).contains(&self.tracker.min_score) {
            bad("tracker.min_score", "must be in 0..1".into())?;
        }
        if !(0.0..=1.0).contains(&self.tracker.update_iou) {
            bad("tracker.update_iou", "must be in 0..1".into())?;
        }
        let sh = &self.shadow;
        if sh.enabled && sh.model.is_none() {
            bad("shadow.model", "required when shadow.enabled = true".into())?;
        }
        at_most("shadow.every_n", sh.every_n.into(), 1, 1_000_000)?;
        at_most("shadow.threads", sh.threads as u64, 1, 64)?;
        if !(0.0..=100.0).contains(&sh.cpu_budget) {
            bad("shadow.cpu_budget", "must be in 0..100 (percent)".into())?;
        }
        if !(0..=19).contains(&sh.nice) {
            bad("shadow.nice", format!("must be in 0..=19, got {}", sh.nice))?;
        }
        if !(0.0..=1.0).contains(&sh.score_threshold) {
            bad("shadow.score_threshold", "must be in 0..1".into())?;
        }
        at_most("shadow.window", sh.window as u64, 1, 100_000)?;
        if !(sh.ewma_alpha > 0.0 && sh.ewma_alpha <= 1.0) {
            bad("shadow.ewma_alpha", "must be in (0, 1]".into())?;
        }
        if !sh.alarm_threshold.is_finite() {
            bad("shadow.alarm_threshold", "must be a number".into())?;
        }
        if !(sh.alarm_hysteresis >= 0.0 && sh.alarm_hysteresis.is_finite()) {
            bad("shadow.alarm_hysteresis", "must be >= 0".into())?;
        }
        at_most(
            "shadow.alarm_min_frames",
            sh.alarm_min_frames as u64,
            1,
            100_000,
        )?;
        at_most(
            "shadow.store_max_frames",
            sh.store_max_frames as u64,
            1,
            100_000,
        )?;
        if !(0.0..=1.0).contains(&sh.store_min_disagreement) {
            bad("shadow.store_min_disagreement", "must be in 0..1".into())?;
        }
        let ca = &self.calibration;
        if ca.enabled && sh.model.is_none() {
            bad(
                "calibration.enabled",
                "needs shadow.model (the float model it quantizes)".into(),
            )?;
        }
        at_most("calibration.frames", ca.frames as u64, 8, 10_000)?;
        secs(
            "calibration.interval_s",
            ca.interval_s,
            0.0,
            24.0 * MAX_SECONDS,
        )?;
        if !(0.0..=255.0).contains(&ca.min_difference) {
            bad("calibration.min_difference", "must be in 0..255".into())?;
        }
        at_most("calibration.max_bytes", ca.max_bytes, 1_000_000, 1 << 40)?;
        if let Err(e) = crate::engine::quantizer::Method::parse_list(&ca.method) {
            bad("calibration.method", e)?;
        }
        if !(ca.margin.is_finite() && (-1.0..=1.0).contains(&ca.margin)) {
            bad("calibration.margin", "must be in -1..1".into())?;
        }
        if !(0.0..=100.0).contains(&ca.cpu_budget) {
            bad(
                "calibration.cpu_budget",
                "must be in 0..100 (percent)".into(),
            )?;
        }
        if !(0..=19).contains(&ca.nice) {
            bad(
                "calibration.nice",
                format!("must be in 0..=19, got {}", ca.nice),
            )?;
        }
        let sn = &self.snapshots;
        at_most(
            "snapshots.max_width",
            sn.max_width.into(),
            16,
            MAX_SNAPSHOT_SIDE.into(),
        )?;
        at_most(
            "snapshots.max_height",
            sn.max_height.into(),
            16,
            MAX_SNAPSHOT_SIDE.into(),
        )?;
        at_most("snapshots.quality", sn.quality.into(), 1, 100)?;
        secs(
            "snapshots.min_interval_s",
            sn.min_interval_s,
            0.0,
            MAX_SECONDS,
        )?;
        let h = &self.http;
        if let Err(e) = h.bind.parse::<std::net::SocketAddr>() {
            bad(
                "http.bind",
                format!(
                    "must be IP:PORT such as 127.0.0.1:8080, got {:?} ({e})",
                    h.bind
                ),
            )?;
        }
        at_most(
            "http.max_width",
            h.max_width.into(),
            16,
            MAX_SNAPSHOT_SIDE.into(),
        )?;
        at_most(
            "http.max_height",
            h.max_height.into(),
            16,
            MAX_SNAPSHOT_SIDE.into(),
        )?;
        at_most("http.quality", h.quality.into(), 1, 100)?;
        at_most(
            "http.max_stream_clients",
            h.max_stream_clients.into(),
            0,
            64,
        )?;
        if !(h.stream_fps.is_finite() && h.stream_fps > 0.0 && h.stream_fps <= 60.0) {
            bad(
                "http.stream_fps",
                format!("must be in (0, 60], got {}", h.stream_fps),
            )?;
        }
        secs(
            "http.unhealthy_after_s",
            h.unhealthy_after_s,
            0.5,
            MAX_SECONDS,
        )?;
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
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("edgecam-cfg-{}-{n}", std::process::id()));
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

    /// Each configuration text fails to load with an error naming its key.
    fn assert_rejected(cases: &[(&str, &str)]) {
        for (text, key) in cases {
            let (dir, p) = write(text);
            let e = Config::load_with_env(Some(&p), vec![])
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{text}: {e}");
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn calibration_keys_are_checked() {
        assert_rejected(&[
            ("[calibration]\nenabled = true\n", "calibration.enabled"),
            (
                "[calibration]\nmethod = \"entropy\"\n",
                "calibration.method",
            ),
            ("[calibration]\npromote = \"sometimes\"\n", "promote"),
            ("[calibration]\nframes = 3\n", "calibration.frames"),
            ("[calibration]\nmargin = 2.0\n", "calibration.margin"),
            ("[calibration]\nnice = 20\n", "calibration.nice"),
            ("[calibration]\ninterval = 5\n", "interval"),
        ]);
        let (dir, p) = write(
            "[shadow]\nmodel = \"f.tflite\"\n[calibration]\nenabled = true\npromote = \"manual\"\nmethod = \"kl\"\n",
        );
        let c = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert_eq!(c.calibration.promote, Promote::Manual);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn snapshot_keys_are_checked() {
        assert_rejected(&[
            ("[snapshots]\nmax_width = 8\n", "snapshots.max_width"),
            ("[snapshots]\nmax_width = 5000\n", "snapshots.max_width"),
            ("[snapshots]\nmax_height = 0\n", "snapshots.max_height"),
            ("[snapshots]\nquality = 0\n", "snapshots.quality"),
            ("[snapshots]\nquality = 101\n", "snapshots.quality"),
            (
                "[snapshots]\nmin_interval_s = -1.0\n",
                "snapshots.min_interval_s",
            ),
            (
                "[snapshots]\nmin_interval_s = nan\n",
                "snapshots.min_interval_s",
            ),
            (
                "[snapshots]\nmin_interval_s = 1e300\n",
                "snapshots.min_interval_s",
            ),
            ("[snapshots]\ncropped = true\n", "cropped"),
        ]);
        let env = vec![("EDGECAM__SNAPSHOTS__QUALITY".to_string(), "0".to_string())];
        let e = Config::load_with_env(None, env).unwrap_err().to_string();
        assert!(e.contains("snapshots.quality"), "{e}");
        let (dir, p) = write(
            "[snapshots]\nenabled = true\ncrop = true\ndraw_box = false\nmax_width = 4096\nmax_height = 16\nquality = 100\nmin_interval_s = 0.0\n",
        );
        let c = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert!(c.snapshots.enabled && c.snapshots.crop && !c.snapshots.draw_box);
        assert_eq!((c.snapshots.max_width, c.snapshots.max_height), (4096, 16));
        let env = vec![(
            "EDGECAM__SNAPSHOTS__ENABLED".to_string(),
            "true".to_string(),
        )];
        assert!(Config::load_with_env(None, env).unwrap().snapshots.enabled);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn http_keys_are_checked() {
        assert_rejected(&[
            ("[http]\nbind = \"localhost\"\n", "http.bind"),
            ("[http]\nbind = \"127.0.0.1:99999\"\n", "http.bind"),
            ("[http]\nbind = \"127.0.0.1\"\n", "http.bind"),
            ("[http]\nquality = 0\n", "http.quality"),
            ("[http]\nmax_width = 8\n", "http.max_width"),
            ("[http]\nstream_fps = 0.0\n", "http.stream_fps"),
            ("[http]\nstream_fps = nan\n", "http.stream_fps"),
            (
                "[http]\nmax_stream_clients = 65\n",
                "http.max_stream_clients",
            ),
            (
                "[http]\nunhealthy_after_s = 0.0\n",
                "http.unhealthy_after_s",
            ),
            ("[http]\nport = 8080\n", "port"),
        ]);
        let c = Config::default();
        assert!(!c.http.enabled, "off by default");
        assert_eq!(c.http.bind, "127.0.0.1:8080");
        let (dir, p) = write("[http]\nenabled = true\nbind = \"[::1]:0\"\nstream_fps = 2.5\n");
        let c = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert!(c.http.enabled);
        assert_eq!(c.http.bind, "[::1]:0");
        assert_eq!(c.http.stream_fps, 2.5);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn capture_source_keys_are_checked() {
        assert_rejected(&[
            (
                "[source]\nkind = \"libcamera\"\nuri = \"/dev/video0\"\n",
                "source.uri",
            ),
            (
                "[source]\nkind = \"mjpeg\"\nuri = \"https://cam/x\"\n",
                "source.uri",
            ),
            (
                "[source]\nkind = \"mjpeg\"\nuri = \"-\"\ninput_args = [\"-re\"]\n",
                "source.input_args",
            ),
            (
                "[source]\nkind = \"ffmpeg\"\nuri = \"a.avi\"\nextra_args = [\"-x\"]\n",
                "source.extra_args",
            ),
            (
                "[source]\nkind = \"v4l2\"\ncommand = \"rpicam-vid\"\n",
                "source.command",
            ),
            (
                "[source]\nkind = \"ffmpeg\"\nuri = \"a.avi\"\nhwaccel_args = [\"\"]\n",
                "source.hwaccel_args",
            ),
            (
                "[source]\nkind = \"ffmpeg\"\nuri = \"a.avi\"\ninput_args = \"-re\"\n",
                "input_args",
            ),
        ]);
        let (dir, p) = write(
            "[source]\nkind = \"libcamera\"\nuri = \"1\"\ncommand = \"/opt/cam\"\nextra_args = [\"--hflip\", \"--awb\", \"indoor\"]\n",
        );
        let c = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert_eq!(c.source.kind, SourceKind::Libcamera);
        assert_eq!(c.source.extra_args, ["--hflip", "--awb", "indoor"]);
        assert_eq!(c.source.command, "/opt/cam");
        let (dir2, p) = write(
            "[source]\nkind = \"ffmpeg\"\nuri = \"a.avi\"\ninput_args = [\"-ss\", \"5\"]\nhwaccel_args = [\"-hwaccel\", \"drm\"]\n",
        );
        let c = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert_eq!(c.source.input_args, ["-ss", "5"]);
        assert_eq!(c.source.hwaccel_args, ["-hwaccel", "drm"]);
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(dir2);
    }

    /// Config values at and beyond their limits, from TOML and from the environment: the
    /// limit loads, the value beyond it is an error naming the key (never a panic later).
    #[test]
    fn word_values_are_typed_at_load() {
        // (section, key, a good word, its typed value's name, a bad word, a word the error lists)
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            ("source", "kind", "libcamera", "webcam", "synthetic"),
            ("source", "format", "yuyv", "rgb", "mjpeg"),
            ("detector", "kernels", "scalar", "avx9", "avx512"),
            (
                "detector",
                "model_type",
                "yolov8",
                "yolo",
                "ssd_postprocess",
            ),
            (
                "shadow",
                "alarm_metric",
                "class_flip_rate",
                "f2",
                "map50_95",
            ),
            ("calibration", "promote", "manual", "later", "auto"),
            ("mqtt", "events_format", "frigate", "x", "edgecam"),
        ];
        for &(section, key, good, bad, listed) in cases {
            let name = format!("{section}.{key}");
            let var = format!(
                "EDGECAM__{}__{}",
                section.to_uppercase(),
                key.to_uppercase()
            );
            let c = Config::load_with_env(None, vec![(var.clone(), good.to_string())])
                .unwrap_or_else(|e| panic!("{var}={good} must load: {e:#}"));
            let typed = match key {
                "kind" => c.source.kind.to_string(),
                "format" => c.source.format.to_string(),
                "kernels" => c.detector.kernels.to_string(),
                "model_type" => c.detector.model_type.to_string(),
                "alarm_metric" => c.shadow.alarm_metric.to_string(),
                "promote" => c.calibration.promote.to_string(),
                _ => c.mqtt.events_format.to_string(),
            };
            assert_eq!(typed, good, "{name}");
            for e in [
                Config::load_with_env(None, vec![(var.clone(), bad.to_string())]).unwrap_err(),
                {
                    let (dir, p) = write(&format!("[{section}]\n{key} = \"{bad}\"\n"));
                    let e = Config::load_with_env(Some(&p), vec![]).unwrap_err();
                    let _ = std::fs::remove_dir_all(dir);
                    e
                },
            ] {
                let text = format!("{e:#}");
                assert!(text.contains(&name), "{name} = {bad}: {text}");
                assert!(text.contains(&format!("'{bad}'")), "{name} = {bad}: {text}");
                assert!(text.contains(listed), "{name}: lists the words: {text}");
                assert_eq!(crate::exit::status(&e), 78, "{name}: a configuration error");
            }
        }
        assert_eq!(
            AlarmMetric::ALL
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>(),
            AlarmMetric::NAMES
        );
        assert!(
            !AlarmMetric::ClassFlipRate.higher_is_better() && AlarmMetric::F1.higher_is_better()
        );
    }

    #[test]
    fn limits_from_toml_and_environment() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (section, key, at the limit, beyond it)
            ("source", "backoff_max_s", "3600", "1e300"),
            ("source", "backoff_max_s", "3600", "inf"),
            ("source", "backoff_min_s", "0.01", "nan"),
            ("source", "stall_timeout_s", "3600", "1e12"),
            ("source", "fps", "1000", "1e9"),
            ("mqtt", "backoff_max_s", "3600", "inf"),
            ("mqtt", "stats_interval_s", "86400", "1e30"),
            ("mqtt", "keep_alive_s", "65535", "65536"),
            ("mqtt", "buffer", "1000000", "1000000000"),
            ("shadow", "threads", "64", "2000"),
            ("shadow", "window", "100000", "100000000"),
            ("detector", "threads", "64", "65"),
            ("detector", "max_fps", "1000", "inf"),
        ];
        for &(section, key, ok, beyond) in cases {
            let name = format!("{section}.{key}");
            let (dir, p) = write(&format!("[{section}]\n{key} = {ok}\n"));
            if let Err(e) = Config::load_with_env(Some(&p), vec![]) {
                panic!("{name} = {ok} must load: {e:#}");
            }
            let _ = std::fs::remove_dir_all(dir);
            // TOML spells infinity and NaN `inf` and `nan`.
            let (dir, p) = write(&format!("[{section}]\n{key} = {beyond}\n"));
            let e = Config::load_with_env(Some(&p), vec![]).unwrap_err();
            assert!(format!("{e:#}").contains(&name), "{name} = {beyond}: {e:#}");
            assert_eq!(crate::exit::status(&e), 78, "{name}: a configuration error");
            let _ = std::fs::remove_dir_all(dir);
            let var = format!(
                "EDGECAM__{}__{}",
                section.to_uppercase(),
                key.to_uppercase()
            );
            let e =
                Config::load_with_env(None, vec![(var.clone(), beyond.to_string())]).unwrap_err();
            assert!(format!("{e:#}").contains(&name), "{var}={beyond}: {e:#}");
            Config::load_with_env(None, vec![(var.clone(), ok.to_string())])
                .unwrap_or_else(|e| panic!("{var}={ok} must load: {e:#}"));
        }
    }

    #[test]
    fn environment_values_keep_their_text() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let c = Config::load_with_env(None, env("EDGECAM__MQTT__PASSWORD", "0123")).unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("0123"));
        let c = Config::load_with_env(None, env("EDGECAM__MQTT__USERNAME", "1e5")).unwrap();
        assert_eq!(c.mqtt.username.as_deref(), Some("1e5"));
        let c = Config::load_with_env(None, env("EDGECAM__MQTT__DEVICE_ID", "007")).unwrap();
        assert_eq!(c.mqtt.device_id, "007");
        let c = Config::load_with_env(None, env("EDGECAM__MQTT__TLS", "true")).unwrap();
        assert!(c.mqtt.tls);
        let c = Config::load_with_env(None, env("EDGECAM__SOURCE__FPS", "2.5")).unwrap();
        assert_eq!(c.source.fps, 2.5);
        let e = Config::load_with_env(None, env("EDGECAM__MQTT__PORT", "x")).unwrap_err();
        assert!(format!("{e:#}").contains("port"), "{e:#}");
    }

    #[test]
    fn topic_names_are_checked() {
        for (toml, key) in [
            ("[mqtt]\ndevice_id = \"cam\\u0000one\"\n", "mqtt.device_id"),
            ("[mqtt]\ndevice_id = \"front door\"\n", "mqtt.device_id"),
            ("[mqtt]\ndevice_id = \"$SYS\"\n", "mqtt.device_id"),
            ("[mqtt]\nprefix = \"$SYS/edgecam\"\n", "mqtt.prefix"),
            ("[mqtt]\nprefix = \"a\\u0000b\"\n", "mqtt.prefix"),
            ("[mqtt]\nprefix = \"a/#\"\n", "mqtt.prefix"),
            (
                "[source]\nkind = \"ffmpeg\"\nuri = \"a\\u0000b\"\n",
                "source.uri",
            ),
        ] {
            let (dir, p) = write(toml);
            let e = Config::load_with_env(Some(&p), vec![]).unwrap_err();
            assert!(format!("{e:#}").contains(key), "{toml}: {e:#}");
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    #[test]
    fn password_file_and_credential() {
        let dir = std::env::temp_dir().join(format!("edgecam-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret 0123\n").unwrap();
        let (d1, p) = write(&format!("[mqtt]\npassword_file = \"{}\"\n", pw.display()));
        let c = Config::load_with_env(Some(&p), vec![]).unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("s3cret 0123"));
        let _ = std::fs::remove_dir_all(d1);
        // Both: an error naming the key.
        let (d1, p) = write(&format!(
            "[mqtt]\npassword = \"x\"\npassword_file = \"{}\"\n",
            pw.display()
        ));
        let e = Config::load_with_env(Some(&p), vec![]).unwrap_err();
        assert!(format!("{e:#}").contains("mqtt.password_file"), "{e:#}");
        let _ = std::fs::remove_dir_all(d1);
        // A missing file: an error at load, not a connection that fails forever.
        let e = Config::load_with_env(
            None,
            vec![(
                "EDGECAM__MQTT__PASSWORD_FILE".into(),
                "/nonexistent/pw".into(),
            )],
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/pw"), "{e:#}");
        // The systemd credential, when nothing else names a password.
        let creds = dir.join("creds");
        std::fs::create_dir_all(&creds).unwrap();
        std::fs::write(creds.join(PASSWORD_CREDENTIAL), "from-systemd").unwrap();
        let env = vec![(
            "CREDENTIALS_DIRECTORY".to_string(),
            creds.display().to_string(),
        )];
        let c = Config::load_with_env(None, env.clone()).unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("from-systemd"));
        let mut env2 = env;
        env2.push(("EDGECAM__MQTT__PASSWORD".into(), "explicit".into()));
        let c = Config::load_with_env(None, env2).unwrap();
        assert_eq!(c.mqtt.password.as_deref(), Some("explicit"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_ca_file_is_a_configuration_error() {
        let (dir, p) = write("[mqtt]\ntls = true\nca_file = \"/nonexistent/ca.pem\"\n");
        let e = Config::load_with_env(Some(&p), vec![]).unwrap_err();
        assert!(format!("{e:#}").contains("mqtt.ca_file"), "{e:#}");
        assert_eq!(crate::exit::status(&e), 78);
        let _ = std::fs::remove_dir_all(dir);
    }
}
