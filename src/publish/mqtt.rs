//! The MQTT connection (rumqttc) on the tokio side: connects, re-connects with
//! exponential back-off and jitter (failures logged at warn, rate-limited, with their cause:
//! auth, TLS, DNS, refused), re-publishes retained state after every
//! (re)connect, drains the [`Outbox`] only while connected, and publishes
//! `offline` (also registered as the last will) on clean shutdown. Topics and payloads come
//! from [`super::publisher`]; `availability_topic` is [`super::Publisher::availability_topic`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, Transport};
use tokio::sync::watch;

use super::outbox::{Message, Outbox};
use super::publisher::{OFFLINE, ONLINE};
use crate::backoff::Backoff;

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
    /// Command topics to subscribe to (again after every reconnect), each with the channel
    /// what arrives on it goes to.
    pub commands: Vec<(String, crossbeam_channel::Sender<Incoming>)>,
    /// Home Assistant's birth topic (`<discovery_prefix>/status`): on `online` every retained
    /// message (discovery included) is published again, as after a reconnect.
    pub birth_topic: Option<String>,
    /// The filter of this device's Home Assistant discovery configs
    /// (`<discovery_prefix>/+/<device_id>/+/config`): a retained config found there that the
    /// daemon no longer publishes (a label no longer reported, a feature switched off) is
    /// removed, so Home Assistant drops its entity.
    pub discovery_topics: Option<String>,
}

/// A message received on one of [`Settings::commands`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Connection state shared with the [`super::Publisher`] (retained messages, `stats`) and tests.
#[derive(Default)]
pub struct ConnState {
    pub connected: AtomicBool,
    /// Announce `offline` instead of `online` on (re)connect: the daemon is up but has
    /// nothing to report (its file source ended).
    pub offline: AtomicBool,
    /// Failed connection attempts since start.
    pub failures: AtomicU64,
    pub connects: AtomicU64,
    pub published: AtomicU64,
    /// Latest retained message per topic, re-sent after each reconnect.
    pub retained: Mutex<BTreeMap<String, Message>>,
}

impl ConnState {
    /// Remember a retained message so that it is restored after a reconnect.
    pub fn remember(&self, m: &Message) {
        // One too large for a packet would fail every reconnect ([`super::MAX_PACKET`]).
        if m.retain && super::fits_packet(&m.topic, m.payload.len()) {
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

/// The TLS transport: the CA file's certificates (or the system's) as roots. Errors name
/// `mqtt.ca_file`; the daemon builds it before it starts, so a bad file is a configuration
/// error at start rather than a connection that never comes.
pub fn tls_transport(ca_file: Option<&std::path::Path>) -> Result<Transport> {
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
    if roots.is_empty() {
        anyhow::bail!("mqtt.ca_file: no certificate in {}", path.display());
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

/// Why a connection attempt failed, in the words a user acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The broker refused the user name or password, or the client is not authorised.
    Auth,
    /// The TLS handshake failed: a wrong CA, a name mismatch, or TLS against a plain port.
    Tls,
    /// The broker's host name does not resolve.
    Dns,
    /// Nothing listens on the port, or a firewall rejects it.
    Refused,
    /// No answer in time.
    Timeout,
    /// The broker refused the connection for another reason, or the link broke.
    Other,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Auth => "auth",
            Cause::Tls => "TLS",
            Cause::Dns => "DNS",
            Cause::Refused => "refused",
            Cause::Timeout => "timeout",
            Cause::Other => "other",
        }
    }
    /// What to check, for the log line.
    pub fn hint(self) -> &'static str {
        match self {
            Cause::Auth => {
                "check mqtt.username and the password (mqtt.password, mqtt.password_file)"
            }
            Cause::Tls => "check mqtt.tls, mqtt.ca_file and that the port speaks TLS",
            Cause::Dns => "check mqtt.host: the name does not resolve",
            Cause::Refused => "check mqtt.host and mqtt.port: nothing accepts connections there",
            Cause::Timeout => "the broker did not answer in time",
            Cause::Other => "",
        }
    }
}

fn io_cause(e: &std::io::Error) -> Cause {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => return Cause::Refused,
        K::TimedOut => return Cause::Timeout,
        _ => {}
    }
    let text = e.to_string().to_lowercase();
    if text.contains("lookup address")
        || text.contains("name or service not known")
        || text.contains("name resolution")
        || text.contains("no address associated")
    {
        Cause::Dns
    } else {
        Cause::Other
    }
}

/// Classify a failed connection attempt.
pub fn classify(e: &rumqttc::ConnectionError) -> Cause {
    use rumqttc::{ConnectReturnCode as R, ConnectionError as E};
    match e {
        E::ConnectionRefused(R::BadUserNamePassword | R::NotAuthorized) => Cause::Auth,
        E::ConnectionRefused(_) => Cause::Other,
        E::Tls(t) => match t {
            rumqttc::TlsError::Io(io) if io_cause(io) != Cause::Other => io_cause(io),
            _ => Cause::Tls,
        },
        E::Io(io) => io_cause(io),
        E::NetworkTimeout | E::FlushTimeout => Cause::Timeout,
        _ => Cause::Other,
    }
}

/// Rate-limited warnings about failed connection attempts: the first failure of a cause at
/// once, then at most one line a minute while the cause stays the same, with the count.
struct FailureLog {
    last: Option<(Cause, std::time::Instant)>,
    quiet: u64,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn new() -> Self {
        FailureLog {
            last: None,
            quiet: 0,
        }
    }

    fn failed(&mut self, s: &Settings, cause: Cause, e: &rumqttc::ConnectionError, lost: bool) {
        let now = std::time::Instant::now();
        let due = match self.last {
            Some((c, t)) => c != cause || now.duration_since(t) >= Self::EVERY,
            None => true,
        };
        if !due {
            self.quiet += 1;
            return;
        }
        let hint = cause.hint();
        let what = if lost {
            "MQTT connection lost"
        } else {
            "MQTT connection failed"
        };
        tracing::warn!(
            host = %s.host,
            port = s.port,
            cause = cause.as_str(),
            repeated = self.quiet,
            "{what} ({}): {e}{}{hint}",
            cause.as_str(),
            if hint.is_empty() { "" } else { "; " },
        );
        self.last = Some((cause, now));
        self.quiet = 0;
    }

    fn connected(&mut self) {
        self.last = None;
        self.quiet = 0;
    }
}

/// `s` as rumqttc options (last will, credentials, TLS).
fn options(s: &Settings) -> Result<MqttOptions> {
    let mut opts = MqttOptions::new(&s.client_id, &s.host, s.port);
    opts.set_keep_alive(s.keep_alive);
    opts.set_clean_session(true);
    opts.set_max_packet_size(super::MAX_PACKET, super::MAX_PACKET);
    opts.set_last_will(LastWill::new(
        &s.availability_topic,
        OFFLINE,
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(u) = &s.username {
        opts.set_credentials(u, s.password.clone().unwrap_or_default());
    }
    if s.tls {
        opts.set_transport(tls_transport(s.ca_file.as_deref())?);
    }
    Ok(opts)
}

/// Connect once and disconnect (`check-config --connect`): `Ok` on the broker's CONNACK,
/// else the cause and the error.
pub async fn probe(s: &Settings, timeout: Duration) -> Result<(), (Cause, String)> {
    let mut opts = options(s).map_err(|e| (Cause::Tls, format!("{e:#}")))?;
    // Not the daemon's client id (a running daemon would be kicked off) and no last will.
    opts.set_client_id(format!("{}-check-{}", s.client_id, std::process::id()));
    opts.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(opts, 4);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                let _ = client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
                return Ok(());
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err((classify(&e), e.to_string())),
            Err(_) => return Err((Cause::Timeout, format!("no answer within {timeout:?}"))),
        }
    }
}

/// Run the connection until `shutdown` turns true; then publish `offline`
/// and disconnect (bounded by a short timeout).
pub async fn run(
    s: Settings,
    outbox: Arc<Outbox>,
    state: Arc<ConnState>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let opts = options(&s)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let mut backoff = Backoff::new(s.backoff_min, s.backoff_max);
    let mut failures = FailureLog::new();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    failures.connected();
                    state.connected.store(true, Ordering::SeqCst);
                    let n = state.connects.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::info!(host = %s.host, port = s.port, connects = n, "MQTT connected");
                    let now = if state.offline.load(Ordering::SeqCst) { OFFLINE } else { ONLINE };
                    let online = Message {
                        topic: s.availability_topic.clone(),
                        payload: now.as_bytes().to_vec(),
                        retain: true,
                        qos: 1,
                    };
                    publish_now(&s, &client, std::iter::once(online).chain(retained(&state)));
                    for t in s.commands.iter().map(|c| &c.0).chain(&s.birth_topic).chain(&s.discovery_topics) {
                        if let Err(e) = client.try_subscribe(t, QoS::AtLeastOnce) {
                            tracing::warn!(topic = %t, "MQTT: cannot subscribe: {e}");
                        }
                    }
                    outbox.notify.notify_one();
                }
                Ok(Event::Incoming(Packet::Publish(p))) if s.birth_topic.as_deref() == Some(p.topic.as_str()) => {
                    if &p.payload[..] == b"online" {
                        tracing::info!(topic = %p.topic, "Home Assistant is online: publishing discovery and state again");
                        publish_now(&s, &client, retained(&state));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if s.discovery_topics.as_deref().is_some_and(|f| topic_matches(f, &p.topic)) => {
                    if let Some(gone) = stale_discovery(&state, &p) {
                        tracing::info!(topic = %gone.topic, "Home Assistant: removing an entity no longer configured");
                        publish_now(&s, &client, std::iter::once(gone));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => deliver(&s, &p),
                Ok(_) => {}
                Err(e) => {
                    let lost = state.connected.swap(false, Ordering::SeqCst);
                    state.failures.fetch_add(1, Ordering::Relaxed);
                    failures.failed(&s, classify(&e), &e, lost);
                    let wait = backoff.next_wait();
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
            payload: OFFLINE.as_bytes().to_vec(),
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

/// Every retained message remembered, to publish again (after a reconnect, on Home
/// Assistant's birth message).
fn retained(state: &ConnState) -> Vec<Message> {
    state
        .retained
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect()
}

/// Whether `topic` matches the subscription `filter` (`+` one level, `#` the rest).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut t = topic.split('/');
    for f in filter.split('/') {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(l)) if f == l => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

/// A retained discovery config on the broker that the daemon does not publish (not among the
/// remembered retained messages): the empty retained message that deletes it.
fn stale_discovery(state: &ConnState, p: &rumqttc::Publish) -> Option<Message> {
    if !p.retain || p.payload.is_empty() {
        return None;
    }
    let kept = state.retained.lock().unwrap_or_else(|e| e.into_inner());
    if kept.contains_key(&p.topic) {
        return None;
    }
    Some(Message {
        topic: p.topic.clone(),
        payload: Vec::new(),
        retain: true,
        qos: 1,
    })
}

/// Hand `msgs` to the client at once (ahead of the outbox).
fn publish_now(s: &Settings, client: &AsyncClient, msgs: impl IntoIterator<Item = Message>) {
    for m in msgs {
        if client
            .try_publish(&m.topic, qos(m.qos), m.retain, m.payload.clone())
            .is_ok()
        {
            echo(s, &m);
        }
    }
}

/// Hand a received message to the inbox. Retained messages are refused: a command left
/// retained on the broker would run again after every reconnect. A full inbox drops it.
fn deliver(s: &Settings, p: &rumqttc::Publish) {
    let Some((_, inbox)) = s.commands.iter().find(|c| c.0 == p.topic) else {
        return;
    };
    if p.retain {
        tracing::warn!(topic = %p.topic, "MQTT: ignoring a retained command (publish commands without retain)");
        return;
    }
    let m = Incoming {
        topic: p.topic.clone(),
        payload: p.payload.to_vec(),
    };
    if inbox.try_send(m).is_err() {
        tracing::warn!(topic = %p.topic, "MQTT: command dropped (the previous ones are still pending)");
    }
}

fn echo(s: &Settings, m: &Message) {
    if s.echo {
        match std::str::from_utf8(&m.payload) {
            Ok(text) => println!("{} {text}", m.topic),
            // A snapshot: not for a terminal.
            Err(_) => println!("{} <{} bytes>", m.topic, m.payload.len()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_the_broker_does() {
        let f = "homeassistant/+/cam1/+/config";
        assert!(topic_matches(
            f,
            "homeassistant/sensor/cam1/person_count/config"
        ));
        assert!(!topic_matches(
            f,
            "homeassistant/sensor/cam2/person_count/config"
        ));
        assert!(!topic_matches(f, "homeassistant/sensor/cam1/person_count"));
        assert!(!topic_matches(f, "homeassistant/sensor/cam1/a/config/x"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("a/b", "a/b"));
    }

    #[test]
    fn only_retained_configs_the_daemon_no_longer_publishes_are_removed() {
        let state = ConnState::default();
        state.remember(&Message {
            topic: "ha/sensor/cam1/person_count/config".into(),
            payload: b"{}".to_vec(),
            retain: true,
            qos: 1,
        });
        let publish = |topic: &str, payload: &[u8], retain: bool| {
            let mut p = rumqttc::Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
            p.retain = retain;
            p
        };
        let gone = stale_discovery(
            &state,
            &publish("ha/sensor/cam1/dog_count/config", b"{}", true),
        )
        .expect("a config nobody publishes any more");
        assert_eq!(gone.topic, "ha/sensor/cam1/dog_count/config");
        assert!(gone.payload.is_empty() && gone.retain);
        assert!(
            stale_discovery(
                &state,
                &publish("ha/sensor/cam1/person_count/config", b"{}", true)
            )
            .is_none(),
            "still published"
        );
        assert!(
            stale_discovery(
                &state,
                &publish("ha/sensor/cam1/dog_count/config", b"", true)
            )
            .is_none(),
            "already removed"
        );
        assert!(
            stale_discovery(
                &state,
                &publish("ha/sensor/cam1/dog_count/config", b"{}", false)
            )
            .is_none(),
            "a live message, not one left on the broker"
        );
    }
}
