//! A small embedded MQTT 3.1.1 broker for first-run mode (no `mqtt.host`
//! configured): it listens on 127.0.0.1 only, keeps retained messages, routes
//! publishes to subscribers (delivered at QoS 0) and sends last wills. It is a
//! convenience so a new user sees messages flow; production deployments use a
//! real broker (mosquitto, EMQX, Home Assistant's add-on).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest packet accepted (bounded memory per client).
const MAX_PACKET: usize = super::MAX_PACKET;
/// Outgoing messages queued per subscriber before new ones are dropped.
const CLIENT_QUEUE: usize = 256;

struct State {
    retained: HashMap<String, Vec<u8>>,
    clients: HashMap<u64, Client>,
    next_id: u64,
}

struct Client {
    filters: Vec<String>,
    tx: mpsc::Sender<Vec<u8>>,
}

/// A running embedded broker; dropping it stops the listener thread's runtime.
pub struct Embedded {
    port: u16,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Embedded {
    /// Start on 127.0.0.1 on the first of `ports` that can be bound (0: any free port).
    pub fn start_on(ports: &[u16]) -> Result<Self> {
        let std_listener = ports
            .iter()
            .find_map(|&p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .with_context(|| format!("binding 127.0.0.1 on any of the ports {ports:?}"))?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("edgecam-broker".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("embedded broker: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("embedded broker: {e}");
                            return;
                        }
                    };
                    let state = Arc::new(Mutex::new(State {
                        retained: HashMap::new(),
                        clients: HashMap::new(),
                        next_id: 1,
                    }));
                    tokio::select! {
                        _ = rx => {}
                        _ = accept_loop(listener, state) => {}
                    }
                });
            })?;
        Ok(Embedded {
            port,
            _shutdown: tx,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let st = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(sock, st).await {
                        tracing::debug!("embedded broker client: {e:#}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("embedded broker accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// MQTT topic filter matching with `+` and `#`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

async fn read_packet(sock: &mut tokio::net::tcp::OwnedReadHalf) -> Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; 1];
    if sock.read(&mut h).await? == 0 {
        return Ok(None);
    }
    let mut len = 0usize;
    for i in 0..4 {
        let mut b = [0u8; 1];
        sock.read_exact(&mut b).await?;
        len |= ((b[0] & 0x7f) as usize) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
        anyhow::ensure!(i < 3, "malformed remaining length");
    }
    anyhow::ensure!(len <= MAX_PACKET, "packet of {len} bytes is too large");
    let mut body = vec![0u8; len];
    sock.read_exact(&mut body).await?;
    Ok(Some((h[0], body)))
}

fn encode(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn publish_packet(topic: &str, payload: &[u8], retain: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + topic.len() + payload.len());
    body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(payload);
    encode(0x30 | u8::from(retain), &body)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8> {
        let (&b, rest) = self.0.split_first().context("truncated packet")?;
        self.0 = rest;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        anyhow::ensure!(n <= self.0.len(), "truncated field");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn string(&mut self) -> Result<String> {
        Ok(String::from_utf8(self.bytes()?.to_vec())?)
    }
}

fn route(state: &Mutex<State>, topic: &str, payload: &[u8], retain: bool) {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    if retain {
        if payload.is_empty() {
            st.retained.remove(topic);
        } else {
            st.retained.insert(topic.to_string(), payload.to_vec());
        }
    }
    let pkt = publish_packet(topic, payload, false);
    for c in st.clients.values() {
        if c.filters.iter().any(|f| topic_matches(f, topic)) {
            // A slow subscriber loses messages instead of growing memory.
            let _ = c.tx.try_send(pkt.clone());
        }
    }
}

async fn serve(sock: TcpStream, state: Arc<Mutex<State>>) -> Result<()> {
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CLIENT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            if wr.write_all(&p).await.is_err() {
                break;
            }
        }
    });
    let id = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        let id = st.next_id;
        st.next_id += 1;
        st.clients.insert(
            id,
            Client {
                filters: vec![],
                tx: tx.clone(),
            },
        );
        id
    };
    let mut will: Option<(String, Vec<u8>, bool)> = None;
    let mut clean = false;
    let res: Result<()> = async {
        // CONNECT first.
        let (h, body) = read_packet(&mut rd)
            .await?
            .context("closed before CONNECT")?;
        anyhow::ensure!(h >> 4 == 1, "first packet is not CONNECT");
        let mut c = Cursor(&body);
        let _proto = c.bytes()?;
        let _level = c.u8()?;
        let flags = c.u8()?;
        let _keep_alive = c.u16()?;
        let _client_id = c.string()?;
        if flags & 0x04 != 0 {
            let t = c.string()?;
            let m = c.bytes()?.to_vec();
            will = Some((t, m, flags & 0x20 != 0));
        }
        tx.send(vec![0x20, 2, 0, 0]).await?; // CONNACK accepted
        while let Some((h, body)) = read_packet(&mut rd).await? {
            match h >> 4 {
                3 => {
                    let qos = (h >> 1) & 3;
                    let retain = h & 1 == 1;
                    let mut c = Cursor(&body);
                    let topic = c.string()?;
                    let pid = if qos > 0 { Some(c.u16()?) } else { None };
                    route(&state, &topic, c.0, retain);
                    match (qos, pid) {
                        (1, Some(p)) => tx.send(encode(0x40, &p.to_be_bytes())).await?,
                        (2, Some(p)) => tx.send(encode(0x50, &p.to_be_bytes())).await?,
                        _ => {}
                    }
                }
                6 => {
                    // PUBREL → PUBCOMP
                    let mut c = Cursor(&body);
                    let p = c.u16()?;
                    tx.send(encode(0x70, &p.to_be_bytes())).await?;
                }
                8 => {
                    let mut c = Cursor(&body);
                    let pid = c.u16()?;
                    let mut granted = vec![];
                    let mut filters = vec![];
                    while !c.0.is_empty() {
                        filters.push(c.string()?);
                        let _q = c.u8()?;
                        granted.push(0u8);
                    }
                    let retained: Vec<Vec<u8>> = {
                        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(cl) = st.clients.get_mut(&id) {
                            cl.filters.extend(filters.iter().cloned());
                        }
                        st.retained
                            .iter()
                            .filter(|(t, _)| filters.iter().any(|f| topic_matches(f, t)))
                            .map(|(t, m)| publish_packet(t, m, true))
                            .collect()
                    };
                    let mut ack = pid.to_be_bytes().to_vec();
                    ack.extend(granted);
                    tx.send(encode(0x90, &ack)).await?;
                    for p in retained {
                        tx.send(p).await?;
                    }
                }
                10 => {
                    let mut c = Cursor(&body);
                    let pid = c.u16()?;
                    tx.send(encode(0xB0, &pid.to_be_bytes())).await?;
                }
                12 => tx.send(vec![0xD0, 0]).await?,
                14 => {
                    clean = true;
                    break;
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clients
        .remove(&id);
    if !clean {
        if let Some((t, m, r)) = will {
            route(&state, &t, &m, r);
        }
    }
    drop(tx);
    let _ = writer.await;
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_first_port_it_can_bind() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = busy.local_addr().unwrap().port();
        let b = Embedded::start_on(&[taken, 0]).unwrap();
        assert_ne!(b.port(), taken, "a busy port is skipped");
        let free = b.port();
        drop(b);
        // The stopped broker's listener closes within moments.
        let again = (0..100)
            .find_map(|_| {
                let r = Embedded::start_on(&[free]).ok();
                if r.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r
            })
            .expect("the freed port is taken again");
        assert_eq!(again.port(), free);
        assert!(Embedded::start_on(&[taken]).is_err(), "no port: an error");
    }

    #[test]
    fn wildcards() {
        assert!(topic_matches("edgecam/#", "edgecam/cam/detections"));
        assert!(topic_matches(
            "edgecam/+/detections",
            "edgecam/cam/detections"
        ));
        assert!(!topic_matches("edgecam/+/stats", "edgecam/cam/detections"));
        assert!(topic_matches("a/b", "a/b"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(!topic_matches("a/b/c", "a/b"));
    }
}
