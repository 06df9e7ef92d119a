//! The daemon: wires the stage threads, the MQTT connection, signals and the
//! systemd watchdog together. tokio runs only the I/O side.

pub mod broker;
pub mod latest;
pub mod pipeline;
pub mod stats;
pub mod systemd;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::capture::{sources, Frame};
use crate::config::Config;
use crate::postprocess::tracker::Object;
use crate::publish::mqtt::{self, ConnState};
use crate::publish::{homeassistant, Outbox};
use pipeline::{Infer, Processed, PublishCtx, Shared};

/// The int8 detector behind the detect stage.
pub struct EngineInfer {
    det: crate::detect::Detector,
    scratch: Vec<crate::postprocess::boxes::Detection>,
    shadow: Option<crate::drift::shadow::ShadowFeed>,
}

impl EngineInfer {
    pub fn load(
        cfg: &Config,
        min_threshold: f32,
        engine: &crate::engine::InterpreterOptions,
    ) -> Result<Self> {
        let mut dc = crate::detect::DetectorConfig::new(&cfg.detector.model);
        dc.engine = engine.clone();
        dc.desc = cfg.detector.desc.clone();
        dc.labels = cfg.detector.labels.clone();
        dc.score_threshold = Some(min_threshold);
        let det = crate::detect::Detector::from_config(&dc)
            .with_context(|| format!("detector.model: loading {}", cfg.detector.model.display()))?;
        Ok(EngineInfer {
            det,
            scratch: Vec::new(),
            shadow: None,
        })
    }
    /// Start the float shadow model (its own thread) fed by this detector.
    pub fn start_shadow(
        &mut self,
        cfg: &Config,
        out: crate::drift::shadow::ShadowOutput,
    ) -> Result<std::thread::JoinHandle<()>> {
        let (feed, handle) = crate::drift::shadow::start(cfg, &self.det, out)?;
        self.shadow = Some(feed);
        Ok(handle)
    }
    pub fn labels(&self) -> Vec<String> {
        self.det.labels().to_vec()
    }
    pub fn name(&self) -> String {
        self.det.name().to_string()
    }
}

impl Infer for EngineInfer {
    fn infer(&mut self, frame: &Frame, out: &mut Vec<Object>) -> Result<f64> {
        self.det.detect_into(&frame.image, &mut self.scratch)?;
        if let Some(feed) = self.shadow.as_mut() {
            feed.offer(frame.seq, frame.wall, &frame.image, &self.det);
        }
        let t = self.det.transform();
        out.extend(self.scratch.iter().map(|d| Object {
            label: d.label.clone(),
            class_id: d.class_id,
            score: d.score,
            bbox: d.to_pixels(&t),
        }));
        Ok(self.det.inference_time().as_secs_f64() * 1000.0)
    }
}

/// Run the daemon until SIGTERM/SIGINT (or the end of a finite source when
/// `pipeline.exit_on_eof`).
pub fn run(mut cfg: Config) -> Result<()> {
    let engine = crate::engine::InterpreterOptions::resolve(
        &cfg.detector.kernels,
        cfg.detector.threads,
        &cfg.detector.cores,
    )
    .map_err(|e| anyhow::anyhow!("detector.kernels: {e}"))?;
    let path = engine.kernels;

    let filter = pipeline::Filter::from_config(&cfg);
    let mut infer = EngineInfer::load(&cfg, filter.min_threshold(), &engine)?;
    let source = sources::from_config(&cfg.source)?;

    // First-run mode: no broker configured → embedded broker on loopback.
    let _broker = if cfg.mqtt.host.is_empty() {
        let b = broker::Embedded::start().context("starting the embedded MQTT broker")?;
        tracing::info!(
            port = b.port(),
            "no mqtt.host configured: embedded broker on 127.0.0.1"
        );
        cfg.mqtt.host = "127.0.0.1".into();
        cfg.mqtt.port = b.port();
        Some(b)
    } else {
        None
    };

    let device_id = cfg.device_id();
    let base = cfg.base_topic();
    let settings = mqtt::Settings {
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
        availability_topic: format!("{base}/availability"),
        backoff_min: Duration::from_secs_f64(cfg.mqtt.backoff_min_s),
        backoff_max: Duration::from_secs_f64(cfg.mqtt.backoff_max_s),
        echo: cfg.mqtt.echo,
    };
    let outbox = Arc::new(Outbox::new(cfg.mqtt.buffer));
    let conn = Arc::new(ConnState::default());
    if cfg.homeassistant.enabled {
        let labels: Vec<String> = if cfg.homeassistant.labels.is_empty() {
            infer
                .labels()
                .into_iter()
                .filter(|l| !l.is_empty() && l != "???" && l != "background")
                .collect()
        } else {
            cfg.homeassistant.labels.clone()
        };
        for m in homeassistant::discovery(
            &cfg.homeassistant.discovery_prefix,
            &base,
            &device_id,
            &labels,
        ) {
            conn.remember(&m);
        }
        if cfg.shadow.enabled {
            for m in homeassistant::drift_discovery(
                &cfg.homeassistant.discovery_prefix,
                &base,
                &device_id,
            ) {
                conn.remember(&m);
            }
        }
    }
    let shadow_thread = if cfg.shadow.enabled {
        let h = infer.start_shadow(
            &cfg,
            crate::drift::shadow::ShadowOutput {
                outbox: outbox.clone(),
                conn: conn.clone(),
                base: base.clone(),
                qos: cfg.mqtt.qos,
            },
        )?;
        tracing::info!(
            every_n = cfg.shadow.every_n,
            cpu_budget = cfg.shadow.cpu_budget,
            "shadow model started"
        );
        Some(h)
    } else {
        None
    };

    let shared = Shared::new();
    let ctx = PublishCtx {
        base: base.clone(),
        model: infer.name(),
        kernels: path.to_string(),
        qos: cfg.mqtt.qos,
        retain_detections: cfg.mqtt.retain,
        stats_interval: Duration::from_secs_f64(cfg.mqtt.stats_interval_s),
    };
    let (frame_tx, frame_rx) = latest::latest::<Frame>(1, shared.stats.dropped_capture.clone());
    let (res_tx, res_rx) = latest::latest::<Processed>(8, shared.stats.dropped_results.clone());
    let cfg = Arc::new(cfg);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mqtt_task = rt.spawn(mqtt::run(settings, outbox.clone(), conn.clone(), stop_rx));

    let threads = {
        let (c1, s1) = (cfg.clone(), shared.clone());
        let capture = std::thread::Builder::new()
            .name("edgecam-capture".into())
            .spawn(move || pipeline::capture_loop(&c1, source, frame_tx, &s1))?;
        let (c2, s2) = (cfg.clone(), shared.clone());
        let detect = std::thread::Builder::new()
            .name("edgecam-detect".into())
            .spawn(move || pipeline::detect_loop(&c2, &mut infer, frame_rx, res_tx, &s2))?;
        let (c3, s3, o3, k3) = (cfg.clone(), shared.clone(), outbox.clone(), conn.clone());
        let publish = std::thread::Builder::new()
            .name("edgecam-publish".into())
            .spawn(move || pipeline::publish_loop(&c3, &ctx, res_rx, &o3, &k3, &s3))?;
        vec![capture, detect, publish]
    };

    let notifier = systemd::Notifier::from_env();
    let exit_on_eof = cfg.pipeline.exit_on_eof;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        notifier.notify("READY=1");
        let wd = systemd::watchdog_interval();
        let mut tick = tokio::time::interval(wd.unwrap_or(Duration::from_secs(1)).min(Duration::from_secs(1)));
        let mut last_beat = 0u64;
        let mut last_ping = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = tick.tick() => {
                    let beat = shared.stats.heartbeat.load(Ordering::Relaxed);
                    let done = shared.source_done.load(Ordering::SeqCst);
                    let alive = beat != last_beat;
                    last_beat = beat;
                    if let Some(iv) = wd {
                        // Ping only while the detection thread makes progress: a
                        // stalled pipeline stops the pings and systemd restarts us.
                        if alive && last_ping.elapsed() >= iv {
                            notifier.notify("WATCHDOG=1");
                            last_ping = std::time::Instant::now();
                        }
                    }
                    if notifier.enabled() {
                        let st = &shared.stats;
                        notifier.notify(&format!(
                            "STATUS=frames {} processed {} mqtt {}",
                            st.captured.load(Ordering::Relaxed),
                            st.processed.load(Ordering::Relaxed),
                            if conn.connected.load(Ordering::Relaxed) { "connected" } else { "disconnected" }
                        ));
                    }
                    if done && exit_on_eof && threads[1].is_finished() {
                        tracing::info!("source finished: shutting down");
                        break;
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;

    // Orderly shutdown: stop capture, let in-flight frames finish, then MQTT.
    notifier.notify("STOPPING=1");
    shared.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    // The detection thread has dropped the shadow's feed: it ends after its current frame.
    if let Some(t) = shadow_thread {
        let _ = t.join();
    }
    // Give the connection a moment to flush what the pipeline produced last.
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !outbox.is_empty()
            && conn.connected.load(Ordering::SeqCst)
            && tokio::time::Instant::now() < deadline
        {
            outbox.notify.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(true);
        match tokio::time::timeout(Duration::from_secs(3), mqtt_task).await {
            Ok(Ok(Err(e))) => tracing::warn!("MQTT: {e:#}"),
            Ok(Err(e)) => tracing::warn!("MQTT task: {e}"),
            _ => {}
        }
    });
    let st = &shared.stats;
    tracing::info!(
        captured = st.captured.load(Ordering::Relaxed),
        processed = st.processed.load(Ordering::Relaxed),
        dropped = st.dropped_capture.load(Ordering::Relaxed),
        published = conn.published.load(Ordering::Relaxed),
        "stopped"
    );
    Ok(())
}
