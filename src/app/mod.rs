//! The daemon: wires the stage threads, the MQTT connection, signals and the
//! systemd watchdog together. tokio runs only the I/O side.

pub mod control;
pub mod latest;
pub mod pipeline;
pub mod stats;
pub mod systemd;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::calibrate::service;
use crate::capture::{sources, Frame};
use crate::config::Config;
use crate::postprocess::tracker::Object;
use crate::publish::mqtt::{self, ConnState};
use crate::publish::{Entities, Outbox, Publisher};
use pipeline::{Infer, Processed, PublishCtx, Shared};

/// The int8 detector behind the detect stage.
pub struct EngineInfer {
    det: crate::detect::Detector,
    /// How `det` was loaded: calibration loads the models it promotes the same way.
    template: crate::detect::DetectorConfig,
    model: Arc<str>,
    scratch: Vec<crate::postprocess::boxes::Detection>,
    shadow: Option<crate::drift::shadow::ShadowFeed>,
    calibration: Option<service::CalibrationFeed>,
    swaps: Option<crossbeam_channel::Receiver<service::Swap>>,
}

impl EngineInfer {
    /// Load `detector.model`, or the model calibration promoted for it (see
    /// [`service::startup_model`]); a promoted model that does not load is logged and the
    /// configured one used.
    pub fn load(
        cfg: &Config,
        min_threshold: f32,
        engine: &crate::engine::InterpreterOptions,
    ) -> Result<Self> {
        let mut dc = crate::detect::DetectorConfig::new(&cfg.detector.model);
        dc.engine = engine.clone();
        dc.desc = cfg.detector.desc.clone();
        dc.labels = cfg.detector.labels.clone();
        dc.model_type = cfg.detector.model_type;
        dc.score_threshold = Some(min_threshold);
        let promoted = service::startup_model(cfg).and_then(|p| {
            let mut d = dc.clone();
            d.model = p.clone();
            d.desc = Some(service::description_path(cfg).ok()?);
            match crate::detect::Detector::from_config(&d) {
                Ok(det) => {
                    tracing::info!(model = %p.display(), "starting on the model calibration promoted");
                    Some(det)
                }
                Err(e) => {
                    tracing::warn!(
                        "calibration: the promoted model {} does not load ({e:#}); starting on detector.model",
                        p.display()
                    );
                    None
                }
            }
        });
        let det = match promoted {
            Some(d) => d,
            None => crate::detect::Detector::from_config(&dc).with_context(|| {
                format!("detector.model: loading {}", cfg.detector.model.display())
            })?,
        };
        Ok(EngineInfer {
            model: det.name().into(),
            det,
            template: dc,
            scratch: Vec::new(),
            shadow: None,
            calibration: None,
            swaps: None,
        })
    }

    /// Set up on-device calibration fed by this detector: the service (to run on its own
    /// thread) and the sender for its commands.
    pub fn start_calibration(
        &mut self,
        cfg: &Config,
        out: Publisher,
    ) -> Result<(service::Service, crossbeam_channel::Sender<mqtt::Incoming>)> {
        let (svc, w) = service::Service::new(cfg, self.template.clone(), out)?;
        self.calibration = Some(w.feed);
        self.swaps = Some(w.swaps);
        Ok((svc, w.commands))
    }

    /// Take a model calibration promoted (or rolled back to), between two frames.
    fn take_swap(&mut self) {
        let Some(s) = self.swaps.as_ref().and_then(|r| r.try_recv().ok()) else {
            return;
        };
        let from = self.det.name().to_string();
        self.det = s.detector;
        self.model = self.det.name().into();
        if let Some(feed) = self.shadow.as_mut() {
            if let Err(e) = feed.retarget(&self.det) {
                tracing::warn!("shadow: following the new model: {e:#}");
            }
        }
        tracing::info!(model = %s.path.display(), from = %from, "detector swapped between two frames");
    }
    /// Start the float shadow model (its own thread) fed by this detector.
    pub fn start_shadow(
        &mut self,
        cfg: &Config,
        out: Publisher,
    ) -> Result<std::thread::JoinHandle<()>> {
        let (feed, handle) = crate::drift::shadow::start(cfg, &self.det, out)?;
        self.shadow = Some(feed);
        Ok(handle)
    }
    /// The running shadow's counters and figures (None without a shadow).
    pub fn drift_monitor(&self) -> Option<crate::drift::shadow::DriftMonitor> {
        self.shadow.as_ref().map(|f| f.monitor())
    }
    pub fn labels(&self) -> Vec<String> {
        self.det.labels().to_vec()
    }
}

impl Infer for EngineInfer {
    fn infer(&mut self, frame: &Frame, out: &mut Vec<Object>) -> Result<f64> {
        self.take_swap();
        self.det.detect_into(&frame.image, &mut self.scratch)?;
        if let Some(feed) = self.shadow.as_mut() {
            feed.offer(frame.seq, frame.wall, &frame.image, &self.det);
        }
        if let Some(feed) = self.calibration.as_mut() {
            feed.offer(frame.ts, &frame.image);
        }
        let t = self.det.transform();
        out.extend(self.scratch.iter().map(|d| Object {
            label: crate::postprocess::labels::slug(&d.label),
            class_id: d.class_id,
            score: d.score,
            bbox: d.to_pixels(&t),
        }));
        Ok(self.det.inference_time().as_secs_f64() * 1000.0)
    }
    fn model(&self) -> Arc<str> {
        self.model.clone()
    }
    fn set_score_threshold(&mut self, t: f32) {
        self.det.set_score_threshold(t);
    }
}

/// How long shutdown may take in all, child processes included (systemd's
/// `TimeoutStopSec` is larger).
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(3);

/// The MQTT connection settings of `cfg` for `base` (`<prefix>/<device_id>`).
pub fn mqtt_settings(cfg: &Config) -> mqtt::Settings {
    let device_id = cfg.device_id();
    let base = cfg.base_topic();
    mqtt::Settings {
        host: cfg.mqtt.host.clone(),
        port: cfg.mqtt.port,
        client_id: if cfg.mqtt.client_id.is_empty() {
            format!("edgecam-{device_id}")
        } else {
            cfg.mqtt.client_id.clone()
        },
        keep_alive: Duration::from_secs(cfg.mqtt.keep_alive_s),
        username: cfg.mqtt.username.clone(),
        password: cfg.mqtt.password.clone(),
        tls: cfg.mqtt.tls,
        ca_file: cfg.mqtt.ca_file.clone(),
        availability_topic: Publisher::availability_topic(&base),
        backoff_min: Duration::from_secs_f64(cfg.mqtt.backoff_min_s),
        backoff_max: Duration::from_secs_f64(cfg.mqtt.backoff_max_s),
        echo: cfg.mqtt.echo,
        commands: Vec::new(),
        birth_topic: cfg.homeassistant.enabled.then(|| {
            format!(
                "{}/status",
                cfg.homeassistant.discovery_prefix.trim_end_matches('/')
            )
        }),
        discovery_topics: cfg.homeassistant.enabled.then(|| {
            format!(
                "{}/+/{device_id}/+/config",
                cfg.homeassistant.discovery_prefix.trim_end_matches('/')
            )
        }),
    }
}

/// Everything `run` builds from the configuration before any thread starts; each failure
/// here is a configuration error (a file the configuration names, a value only the model can
/// judge). `check-config` builds the same.
pub struct Prepared {
    pub engine: crate::engine::InterpreterOptions,
    pub infer: EngineInfer,
    pub source: Box<dyn crate::capture::FrameSource>,
    /// The labels the daemon reports, as (slug, display name): [`tracked_labels`].
    pub labels: Vec<(String, String)>,
}

/// Load the model (with its labels and description), build the source and check the TLS
/// set-up: what `run` and `check-config` both need.
pub fn prepare(cfg: &Config) -> Result<Prepared> {
    let engine = crate::engine::InterpreterOptions::resolve(
        cfg.detector.kernels,
        cfg.detector.threads,
        &cfg.detector.cores,
    )
    .map_err(|e| anyhow::anyhow!("detector.kernels: {e}"))?;
    let filter = pipeline::Filter::from_config(cfg);
    let infer = EngineInfer::load(cfg, filter.min_threshold(), &engine)?;
    let labels = tracked_labels(cfg, &infer.labels())?;
    if cfg.shadow.enabled {
        if let Some(m) = &cfg.shadow.model {
            let g = crate::engine::tflite::load_file(m)
                .with_context(|| format!("shadow.model: {}", m.display()))?;
            crate::engine::Interpreter::new(g)
                .with_context(|| format!("shadow.model: {}", m.display()))?;
        }
    }
    if cfg.mqtt.tls {
        mqtt::tls_transport(cfg.mqtt.ca_file.as_deref())?;
    }
    let source = sources::from_config(&cfg.source)?;
    if cfg.source.kind == crate::config::SourceKind::Synthetic {
        tracing::warn!(
            "source.kind = synthetic: a moving test pattern, not a camera (set [source] kind and uri)"
        );
    }
    Ok(Prepared {
        engine,
        infer,
        source,
        labels,
    })
}

/// The labels the daemon reports, as (slug, display name): the model's, narrowed by
/// `detector.labels_allow` and `labels_deny`. Every label name of the configuration
/// (`labels_allow`, `labels_deny`, `thresholds`, `homeassistant.labels`) must name one of the
/// model's labels, by display name or slug: otherwise an error names the key and suggests the
/// closest label. A model without a label map (class numbers) is not checked.
pub fn tracked_labels(cfg: &Config, model_labels: &[String]) -> Result<Vec<(String, String)>> {
    use crate::postprocess::labels;
    let model = labels::of_model(model_labels);
    let check = |key: &str, names: &mut dyn Iterator<Item = &String>| -> Result<Vec<String>> {
        names
            .map(|n| {
                if model.is_empty() {
                    return Ok(labels::slug(n));
                }
                labels::resolve(n, &model).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid configuration: {key}: {e}; the labels are those of {}",
                        cfg.detector
                            .labels
                            .as_deref()
                            .unwrap_or(&cfg.detector.model)
                            .display()
                    )
                })
            })
            .collect()
    };
    let d = &cfg.detector;
    let allow = check("detector.labels_allow", &mut d.labels_allow.iter())?;
    let deny = check("detector.labels_deny", &mut d.labels_deny.iter())?;
    check("detector.thresholds", &mut d.thresholds.keys())?;
    let ha = check("homeassistant.labels", &mut cfg.homeassistant.labels.iter())?;
    let tracked: Vec<(String, String)> = model
        .into_iter()
        .filter(|(s, _)| (allow.is_empty() || allow.contains(s)) && !deny.contains(s))
        .collect();
    for s in &ha {
        if !tracked.iter().any(|(t, _)| t == s) {
            tracing::warn!(
                label = %s,
                "homeassistant.labels: '{s}' is not reported (detector.labels_allow / labels_deny): no entity for it"
            );
        }
    }
    Ok(tracked)
}

/// Publish what subscribers need before the first frame: a count of 0 for every reported
/// label of `tracked` (a retained count left by an earlier run must not keep a presence
/// sensor on) and Home Assistant discovery, for reported labels only.
fn announce(
    cfg: &Config,
    tracked: &[(String, String)],
    infer: &EngineInfer,
    publisher: &Publisher,
) {
    for (slug, _) in tracked {
        publisher.count(slug, 0);
    }
    if !cfg.homeassistant.enabled {
        return;
    }
    let wanted: Vec<String> = cfg
        .homeassistant
        .labels
        .iter()
        .map(|l| crate::postprocess::labels::slug(l))
        .collect();
    let labels: Vec<(String, String)> = tracked
        .iter()
        .filter(|(s, _)| wanted.is_empty() || wanted.contains(s))
        .cloned()
        .collect();
    publisher.discovery(
        &cfg.homeassistant.discovery_prefix,
        &cfg.device_id(),
        &labels,
        Entities {
            drift: cfg.shadow.enabled && infer.det.desc().is_some(),
            calibration: cfg.calibration.enabled && infer.det.desc().is_some(),
            snapshots: cfg.snapshots.enabled,
            expire_after_s: (cfg.mqtt.stats_interval_s * 3.0).ceil().max(30.0) as u64,
        },
    );
}

/// A stage thread the supervisor watches.
pub struct Stage {
    pub name: &'static str,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Stage {
    pub fn new(name: &'static str, handle: std::thread::JoinHandle<()>) -> Self {
        Stage {
            name,
            handle: Some(handle),
        }
    }
    pub fn finished(&self) -> bool {
        self.handle
            .as_ref()
            .map(|h| h.is_finished())
            .unwrap_or(true)
    }
    /// Join a finished thread: its panic message, if it panicked.
    pub fn reap(&mut self) -> Option<String> {
        let h = self.handle.take()?;
        match h.join() {
            Ok(()) => None,
            Err(p) => Some(
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into()),
            ),
        }
    }
}

/// The stage threads of a running pipeline, in data-flow order.
pub struct Stages(pub Vec<Stage>);

impl Stages {
    /// A stage that ended while the pipeline should run: the fault, naming it (and its panic).
    /// While the pipeline finishes (end of file with `exit_on_eof`, `max_frames`) the stages
    /// end one after another as they drain; only a panic is a fault then.
    pub fn check(&mut self, shared: &Shared) -> Option<String> {
        if shared.stopping() {
            return None;
        }
        let finishing = shared.finishing();
        for st in &mut self.0 {
            let ended = st.handle.as_ref().map(|h| h.is_finished()).unwrap_or(false);
            if !ended {
                continue;
            }
            match st.reap() {
                Some(p) => return Some(format!("the {} stage panicked: {p}", st.name)),
                None if !finishing => {
                    return Some(format!("the {} stage stopped unexpectedly", st.name))
                }
                None => {}
            }
        }
        None
    }
    pub fn all_finished(&self) -> bool {
        self.0.iter().all(Stage::finished)
    }
    fn finished(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name && s.finished())
    }
    /// Join what has finished; name what has not.
    fn reap_all(&mut self) -> Vec<&'static str> {
        let mut late = Vec::new();
        for st in &mut self.0 {
            if st.finished() {
                if let Some(p) = st.reap() {
                    tracing::error!(stage = st.name, "the {} stage panicked: {p}", st.name);
                }
            } else {
                late.push(st.name);
            }
        }
        late
    }
}

/// Why the supervisor stopped the daemon.
enum Outcome {
    Signal,
    Finished,
    Fault(String),
}

/// Run the daemon until SIGTERM/SIGINT (or the end of a finite source when
/// `pipeline.exit_on_eof`). Configuration errors exit 78; a stage or the MQTT task that dies
/// exits 70 after an orderly shutdown, so that systemd restarts the service.
pub fn run(mut cfg: Config) -> Result<()> {
    let Prepared {
        engine,
        mut infer,
        source,
        labels,
    } = prepare(&cfg).map_err(crate::exit::config)?;
    let path = engine.kernels;
    // The HTTP endpoint's socket, before any thread starts: an address that cannot be used
    // stops start-up naming http.bind (a port in use may free up: "unavailable", 69).
    let http_listener = if cfg.http.enabled {
        let l = crate::http::bind(&cfg.http).map_err(|e| {
            let in_use = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
            });
            if in_use {
                anyhow::Error::new(crate::exit::Failure::Unavailable(e))
            } else {
                crate::exit::config(e)
            }
        })?;
        Some(l)
    } else {
        None
    };

    // First-run mode: no broker configured → embedded broker on loopback.
    let _broker = if cfg.mqtt.host.is_empty() {
        // mqtt.port (1883 by default) when it is free, else any free port.
        let b = crate::publish::broker::Embedded::start_on(&[cfg.mqtt.port, 0])
            .context("starting the embedded MQTT broker")
            .map_err(|e| anyhow::Error::new(crate::exit::Failure::Unavailable(e)))?;
        tracing::info!(
            port = b.port(),
            "no mqtt.host configured: embedded broker on 127.0.0.1; watch it with \
             mosquitto_sub -h 127.0.0.1 -p {} -t '{}/#' -v",
            b.port(),
            cfg.base_topic()
        );
        cfg.mqtt.host = "127.0.0.1".into();
        cfg.mqtt.port = b.port();
        Some(b)
    } else {
        None
    };

    let mut settings = mqtt_settings(&cfg);
    let outbox = Arc::new(Outbox::with_max_bytes(
        cfg.mqtt.buffer,
        (cfg.mqtt.buffer_mb * 1024.0 * 1024.0) as usize,
    ));
    let conn = Arc::new(ConnState::default());
    let publisher = Publisher::new(
        cfg.base_topic(),
        cfg.mqtt.qos,
        cfg.mqtt.retain,
        outbox.clone(),
        conn.clone(),
    )
    .with_events(
        &cfg.device_id(),
        cfg.mqtt.events_format,
        cfg.snapshots.enabled,
    );
    announce(&cfg, &labels, &infer, &publisher);
    // Calibration works on raw SSD outputs (with a description); drift compares raw outputs,
    // or the detections of two models ending in TFLite_Detection_PostProcess. A YOLO model
    // has neither, and a post-processed model may have no float twin. Say so; detection runs
    // on.
    let raw = infer.det.desc().is_some();
    let own = crate::drift::decodes_itself(&infer.det);
    if !raw && cfg.calibration.enabled {
        tracing::warn!(
            model = %cfg.detector.model.display(),
            model_type = infer.det.model_type().name(),
            "the model has no raw SSD outputs to calibrate from (it ends in \
             TFLite_Detection_PostProcess or is a YOLO model): calibration is off for it"
        );
    }
    if !raw && !own && cfg.shadow.enabled {
        tracing::warn!(
            model = %cfg.detector.model.display(),
            model_type = infer.det.model_type().name(),
            "the shadow (drift) compares raw SSD outputs or TFLite_Detection_PostProcess \
             detections, which this model has neither of: the shadow is off for it"
        );
    }
    let shadow_thread = match cfg.shadow.enabled && (raw || own) {
        false => None,
        true => match infer.start_shadow(&cfg, publisher.clone()) {
            Ok(h) => {
                tracing::info!(
                    every_n = cfg.shadow.every_n,
                    cpu_budget = cfg.shadow.cpu_budget,
                    "shadow model started"
                );
                Some(h)
            }
            // A post-processed model (Coral's) seldom has a float twin: no drift, no stop. (A
            // shadow model that cannot be loaded stays a configuration error.)
            Err(e) if own && e.downcast_ref::<crate::drift::MixedPair>().is_some() => {
                tracing::warn!(
                    model = %cfg.detector.model.display(),
                    "the shadow (drift) is off: {e:#}"
                );
                None
            }
            Err(e) => return Err(crate::exit::config(e)),
        },
    };

    let calibration = if cfg.calibration.enabled && raw {
        let (svc, commands) = infer
            .start_calibration(&cfg, publisher.clone())
            .map_err(crate::exit::config)?;
        settings.commands.push((
            Publisher::calibration_command_topic(&cfg.base_topic()),
            commands,
        ));
        Some(svc)
    } else {
        None
    };

    let (control_tx, control_rx) = crossbeam_channel::bounded(8);
    let control = control::Control::new(&cfg.base_topic(), control_rx, publisher.clone());
    for t in control.topics() {
        settings.commands.push((t, control_tx.clone()));
    }

    let shared = Shared::new();
    shared.set_threshold(cfg.detector.score_threshold);
    control.announce(&shared);
    let latest_slot = http_listener
        .is_some()
        .then(crate::http::LatestSlot::default);
    let drift_monitor = infer.drift_monitor();
    let ctx = PublishCtx {
        kernels: path.to_string(),
        stats_interval: Duration::from_secs_f64(cfg.mqtt.stats_interval_s),
        latest: latest_slot.clone(),
    };
    let (frame_tx, frame_rx) = latest::latest::<Frame>(1, shared.stats.dropped_capture.clone());
    let (res_tx, res_rx) = latest::latest::<Processed>(8, shared.stats.dropped_results.clone());
    let cfg = Arc::new(cfg);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut mqtt_task = rt.spawn(mqtt::run(settings, outbox.clone(), conn.clone(), stop_rx));
    if let (Some(listener), Some(slot)) = (http_listener, latest_slot) {
        if let Ok(a) = listener.local_addr() {
            tracing::info!(address = %a, "HTTP endpoint on http://{a}/ (/latest.jpg /stream.mjpeg /metrics /healthz)");
        }
        let sources = crate::http::metrics::Sources::new(
            shared.clone(),
            conn.clone(),
            outbox.clone(),
            drift_monitor,
        );
        let http = crate::http::Http::new(cfg.http.clone(), slot, sources, stop_tx.subscribe());
        rt.spawn(crate::http::serve(Arc::new(http), listener));
    }

    let mut stages = {
        let (c1, s1) = (cfg.clone(), shared.clone());
        let capture = std::thread::Builder::new()
            .name("edgecam-capture".into())
            .spawn(move || pipeline::capture_loop(&c1, source, frame_tx, &s1))?;
        let (c2, s2) = (cfg.clone(), shared.clone());
        let detect = std::thread::Builder::new()
            .name("edgecam-detect".into())
            .spawn(move || pipeline::detect_loop(&c2, &mut infer, frame_rx, res_tx, &s2))?;
        let (c3, s3) = (cfg.clone(), shared.clone());
        let publish = std::thread::Builder::new()
            .name("edgecam-publish".into())
            .spawn(move || pipeline::publish_loop(&c3, &ctx, res_rx, &publisher, &s3))?;
        let mut v = vec![
            Stage::new("capture", capture),
            Stage::new("detect", detect),
            Stage::new("publish", publish),
        ];
        if let Some(h) = shadow_thread {
            v.push(Stage::new("shadow", h));
        }
        if let Some(svc) = calibration {
            let s5 = shared.clone();
            let h = std::thread::Builder::new()
                .name("edgecam-calib".into())
                .spawn(move || svc.run(&s5.stop))?;
            v.push(Stage::new("calibration", h));
        }
        Stages(v)
    };

    let notifier = systemd::Notifier::from_env();
    let outcome = rt.block_on(supervise(
        &notifier,
        &shared,
        &conn,
        &control,
        &mut stages,
        &mut mqtt_task,
    ))?;

    // Orderly shutdown within SHUTDOWN_BUDGET: stop the stages (capture first, its child
    // processes with it), let in-flight frames finish, flush MQTT, say offline.
    let t0 = std::time::Instant::now();
    notifier.notify("STOPPING=1");
    shared.stop.store(true, Ordering::SeqCst);
    let stage_deadline = t0 + Duration::from_millis(2000);
    while !stages.all_finished() && std::time::Instant::now() < stage_deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let late = stages.reap_all();
    if !late.is_empty() {
        tracing::warn!(stages = ?late, "stages still busy at the shutdown deadline: leaving them");
    }
    rt.block_on(async {
        let flush_deadline = tokio::time::Instant::from_std(t0 + Duration::from_millis(2300));
        while !outbox.is_empty()
            && conn.connected.load(Ordering::SeqCst)
            && !mqtt_task.is_finished()
            && tokio::time::Instant::now() < flush_deadline
        {
            outbox.notify.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(true);
        let end = tokio::time::Instant::from_std(t0 + SHUTDOWN_BUDGET - Duration::from_millis(150));
        match tokio::time::timeout_at(end, &mut mqtt_task).await {
            Ok(Ok(Err(e))) => tracing::warn!("MQTT: {e:#}"),
            Ok(Err(e)) if !e.is_cancelled() => tracing::warn!("MQTT task: {e}"),
            Err(_) => tracing::warn!("MQTT: no clean disconnect within the shutdown budget"),
            _ => {}
        }
    });
    let st = &shared.stats;
    tracing::info!(
        captured = st.captured.load(Ordering::Relaxed),
        processed = st.processed.load(Ordering::Relaxed),
        dropped = st.dropped_capture.load(Ordering::Relaxed),
        published = conn.published.load(Ordering::Relaxed),
        shutdown_ms = t0.elapsed().as_millis() as u64,
        "stopped"
    );
    match outcome {
        Outcome::Fault(why) => Err(anyhow::Error::new(crate::exit::Failure::Fault(
            anyhow::anyhow!("{why}"),
        ))),
        Outcome::Finished if shared.source_state() == pipeline::SourceState::Truncated => {
            Err(anyhow::Error::new(crate::exit::Failure::Data(
                anyhow::anyhow!("the source ended early (truncated): see the log"),
            )))
        }
        Outcome::Signal | Outcome::Finished => Ok(()),
    }
}

/// The supervisor on the I/O runtime: signals, the systemd watchdog and status, dead stages
/// and a lost MQTT task. The watchdog is fed only while frames reach detection or while the
/// pipeline is idle by design (a file that has ended): a stalled camera or a jammed stage
/// stops the pings, and systemd restarts the service.
async fn supervise(
    notifier: &systemd::Notifier,
    shared: &Shared,
    conn: &ConnState,
    control: &control::Control,
    stages: &mut Stages,
    mqtt_task: &mut tokio::task::JoinHandle<Result<()>>,
) -> Result<Outcome> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    notifier.notify("READY=1");
    let wd = systemd::watchdog_interval();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_progress = shared.stats.progress.load(Ordering::Relaxed);
    let mut last_ping = std::time::Instant::now();
    let mut last_status = std::time::Instant::now() - Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(Outcome::Signal); }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(Outcome::Signal); }
            r = &mut *mqtt_task => {
                let why = match r {
                    Ok(Ok(())) => "the MQTT task ended unexpectedly".to_string(),
                    Ok(Err(e)) => format!("the MQTT task failed: {e:#}"),
                    Err(e) => format!("the MQTT task panicked: {e}"),
                };
                tracing::error!("{why}: shutting down (exit 70; systemd restarts the service)");
                return Ok(Outcome::Fault(why));
            }
            _ = tick.tick() => {
                control.poll(shared);
                if let Some(why) = stages.check(shared) {
                    tracing::error!("{why}: shutting down (exit 70; systemd restarts the service)");
                    return Ok(Outcome::Fault(why));
                }
                let progress = shared.stats.progress.load(Ordering::Relaxed);
                let advanced = progress != last_progress;
                last_progress = progress;
                if let Some(iv) = wd {
                    // Ping only on real progress since the last tick, or while idle by design.
                    if (advanced || shared.legitimately_idle()) && last_ping.elapsed() >= iv {
                        notifier.notify("WATCHDOG=1");
                        last_ping = std::time::Instant::now();
                    }
                }
                if notifier.enabled() && last_status.elapsed() >= Duration::from_secs(1) {
                    last_status = std::time::Instant::now();
                    let st = &shared.stats;
                    notifier.notify(&format!(
                        "STATUS=source {} frames {} processed {} mqtt {}",
                        shared.source_state().as_str(),
                        st.captured.load(Ordering::Relaxed),
                        st.processed.load(Ordering::Relaxed),
                        if conn.connected.load(Ordering::Relaxed) { "connected" } else { "disconnected" }
                    ));
                }
                if shared.finishing() && stages.finished("detect") {
                    tracing::info!("source finished: shutting down");
                    return Ok(Outcome::Finished);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &'static str, f: impl FnOnce() + Send + 'static) -> Stage {
        Stage::new(name, std::thread::spawn(f))
    }

    fn settle(stages: &Stages) {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(5)
            && stages.0.iter().filter(|s| s.finished()).count() == 0
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_panicked_stage_is_a_fault_naming_it() {
        let shared = Shared::new();
        let hold = Arc::new(std::sync::Barrier::new(2));
        let h2 = hold.clone();
        let mut stages = Stages(vec![
            stage("capture", move || {
                h2.wait();
            }),
            stage("detect", || panic!("index out of bounds: the len is 3")),
        ]);
        settle(&stages);
        let why = stages.check(&shared).expect("a fault");
        assert!(
            why.contains("detect") && why.contains("index out of bounds"),
            "{why}"
        );
        hold.wait();
    }

    #[test]
    fn a_stage_that_returns_while_running_is_a_fault() {
        let shared = Shared::new();
        let mut stages = Stages(vec![stage("capture", || {})]);
        settle(&stages);
        let why = stages.check(&shared).expect("a fault");
        assert!(why.contains("capture stage stopped unexpectedly"), "{why}");
    }

    #[test]
    fn stages_ending_while_finishing_are_no_fault_but_panics_are() {
        let shared = Shared::new();
        shared.finish.store(true, Ordering::SeqCst);
        let hold = Arc::new(std::sync::Barrier::new(2));
        let h2 = hold.clone();
        let mut stages = Stages(vec![
            stage("capture", move || {
                h2.wait();
            }),
            stage("detect", || {}),
        ]);
        settle(&stages);
        assert_eq!(
            stages.check(&shared),
            None,
            "draining stages end in any order"
        );
        hold.wait();
        let mut stages = Stages(vec![stage("publish", || panic!("boom"))]);
        settle(&stages);
        let why = stages
            .check(&shared)
            .expect("a panic is a fault even while finishing");
        assert!(why.contains("publish stage panicked: boom"), "{why}");
        // Once stopping, nothing is a fault.
        let shared = Shared::new();
        shared.stop.store(true, Ordering::SeqCst);
        let mut stages = Stages(vec![stage("capture", || {})]);
        settle(&stages);
        assert_eq!(stages.check(&shared), None);
    }
}
