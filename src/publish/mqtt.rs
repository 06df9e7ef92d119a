//! The MQTT connection (rumqttc) on the tokio side: connects, re-connects with
//! exponential back-off and jitter, re-publishes retained state after every
//! (re)connect, drains the [`Outbox`] only while connected, and publishes
//! `offline` (also registered as the last will) on clean shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::sync::watch;

use super::outbox::{Message, Outbox};

/// Connection settings resolved from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub keep_alive: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
    pub ca_file: Option<std::path::PathBuf>,
    pub availability_topic: String,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub echo: bool,
}

/// Connection state shared with the pipeline (for stats) and tests.
#[derive(Default)]
pub struct ConnState {
    pub connected: AtomicBool,
    pub connects: AtomicU64,
    pub published: AtomicU64,
    /// Latest retained message per topic, re-sent after each reconnect.
    pub retained: Mutex<BTreeMap<String, Message>>,
}

impl ConnState {
    /// Remember a retained message so that it is restored after a reconnect.
    pub fn remember(&self, m: &Message) {
        if m.retain {
            self.retained
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(m.topic.clone(), m.clone());
        }
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn tls_transport(ca_file: Option<&std::path::Path>) -> Result<Transport> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let path = ca_file.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("mqtt.ca_file: reading {}", path.display()))?;
    for c in certs {
        let c = c.with_context(|| format!("mqtt.ca_file: bad PEM in {}", path.display()))?;
        roots
            .add(c)
            .with_context(|| format!("mqtt.ca_file: bad certificate in {}", path.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(cfg)),
    ))
}

fn jitter(d: Duration) -> Duration {
    // Up to +25 % jitter from the clock's low bits: enough to de-synchronise
    // a fleet of cameras reconnecting to one broker.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64((nanos % 1000) as f64 / 4000.0)
}

/// Run the connection until `shutdown` turns true; then publish `offline`
/// and disconnect (bounded by a short timeout).
pub async fn run(
    s: Settings,
    outbox: Arc<Outbox>,
    state: Arc<ConnState>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut opts = MqttOptions::new(&s.client_id, &s.host, s.port);
    opts.set_keep_alive(s.keep_alive);
    opts.set_clean_session(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts.set_last_will(LastWill::new(
        &s.availability_topic,
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(u) = &s.username {
        opts.set_credentials(u, s.password.clone().unwrap_or_default());
    }
    if s.tls {
        opts.set_transport(tls_transport(s.ca_file.as_deref())?);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut backoff = s.backoff_min;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = s.backoff_min;
                    state.connected.store(true, Ordering::SeqCst);
                    let n = state.connects.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::info!(host = %s.host, port = s.port, connects = n, "MQTT connected");
                    let online = Message {
                        topic: s.availability_topic.clone(),
                        payload: b"online".to_vec(),
                        retain: true,
                        qos: 1,
                    };
                    let restore: Vec<Message> = state
                        .retained
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .values()
                        .cloned()
                        .collect();
                    for m in std::iter::once(online).chain(restore) {
                        if client.try_publish(&m.topic, qos(m.qos), m.retain, m.payload.clone()).is_ok() {
                            echo(&s, &m);
                        }
                    }
                    outbox.notify.notify_one();
                }
                Ok(_) => {}
                Err(e) => {
                    if state.connected.swap(false, Ordering::SeqCst) {
                        tracing::warn!("MQTT connection lost: {e}");
                    } else {
                        tracing::debug!("MQTT connect failed: {e}");
                    }
                    let wait = jitter(backoff);
                    backoff = (backoff * 2).min(s.backoff_max);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => { if *shutdown.borrow() { break; } }
                    }
                }
            },
            _ = outbox.notify.notified(), if state.connected.load(Ordering::SeqCst) => {
                drain(&s, &client, &outbox, &state);
            }
            _ = tokio::time::sleep(Duration::from_millis(200)), if state.connected.load(Ordering::SeqCst) && !outbox.is_empty() => {
                drain(&s, &client, &outbox, &state);
            }
        }
    }

    // Clean shutdown: flush what we can, say offline, disconnect.
    if state.connected.load(Ordering::SeqCst) {
        drain(&s, &client, &outbox, &state);
        let off = Message {
            topic: s.availability_topic.clone(),
            payload: b"offline".to_vec(),
            retain: true,
            qos: 1,
        };
        let _ = client.try_publish(&off.topic, QoS::AtLeastOnce, true, off.payload.clone());
        echo(&s, &off);
        let _ = client.try_disconnect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, eventloop.poll()).await {
            if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = ev {
                break;
            }
        }
        state.connected.store(false, Ordering::SeqCst);
    }
    Ok(())
}

fn echo(s: &Settings, m: &Message) {
    if s.echo {
        println!("{} {}", m.topic, String::from_utf8_lossy(&m.payload));
    }
}

/// Hand queued messages to the client until it is full or the outbox is empty.
fn drain(s: &Settings, client: &AsyncClient, outbox: &Outbox, state: &ConnState) {
    while let Some(m) = outbox.pop() {
        match client.try_publish(&m.topic, qos(m.qos), m.retain, m.payload.clone()) {
            Ok(()) => {
                state.published.fetch_add(1, Ordering::Relaxed);
                echo(s, &m);
            }
            Err(_) => {
                outbox.unpop(m);
                break;
            }
        }
    }
}
