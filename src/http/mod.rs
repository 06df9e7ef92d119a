//! The HTTP endpoint (`[http]`, off by default): `/latest.jpg`, `/stream.mjpeg`, `/metrics`,
//! `/healthz`, served by hyper (HTTP/1.1) on the daemon's I/O runtime.
//!
//! The publish thread hands each processed frame and its boxes over through a
//! [`LatestSlot`] (a `watch` channel holding an `Arc`: no copy, nothing queued). JPEG encoding
//! happens here, on tokio's blocking pool, only when a client asks: once per frame, whatever
//! the number of clients (the last encoded frame is cached), never on a pipeline thread.
//! Memory stays bounded: at most [`MAX_CONNECTIONS`] connections and
//! `http.max_stream_clients` streams (503 beyond), and a slow stream client gets the latest
//! frame when it can take one, never a queue (one part in flight at most).

pub mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hyper::body::{Bytes, Frame, SizeHint};
use hyper::{Method, Request, Response, StatusCode};
use image::RgbImage;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::config::HttpConfig;
use crate::postprocess::tracker::Object;
use crate::postprocess::PixelBox;
use crate::snapshot::render;

/// Most connections at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;

/// The multipart boundary of `/stream.mjpeg`.
pub const BOUNDARY: &str = "edgecamframe";

/// How long a stream client may take to accept one frame before it is dropped.
const STREAM_SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// The latest processed frame and its objects' boxes.
pub struct Latest {
    pub seq: u64,
    pub wall: SystemTime,
    pub image: Arc<RgbImage>,
    pub boxes: Vec<PixelBox>,
}

/// The publish thread's end of the hand-off: the latest frame replaces the previous one.
#[derive(Clone)]
pub struct LatestSlot(Arc<watch::Sender<Option<Arc<Latest>>>>);

impl Default for LatestSlot {
    fn default() -> Self {
        LatestSlot(Arc::new(watch::channel(None).0))
    }
}

impl LatestSlot {
    /// Frame `seq` with its (filtered) objects: replaces the one held.
    pub fn offer(&self, seq: u64, wall: SystemTime, image: Arc<RgbImage>, objects: &[Object]) {
        self.0.send_replace(Some(Arc::new(Latest {
            seq,
            wall,
            image,
            boxes: objects.iter().map(|o| o.bbox).collect(),
        })));
    }
    fn subscribe(&self) -> watch::Receiver<Option<Arc<Latest>>> {
        self.0.subscribe()
    }
    fn get(&self) -> Option<Arc<Latest>> {
        self.0.borrow().clone()
    }
}

/// `http.bind` as a listening socket (non-blocking, for tokio). Called before any thread
/// starts, so that a bad address stops start-up with an error naming the key.
pub fn bind(cfg: &HttpConfig) -> Result<std::net::TcpListener> {
    let addr: SocketAddr = cfg
        .bind
        .parse()
        .with_context(|| format!("http.bind: {:?} is not IP:PORT", cfg.bind))?;
    let l = std::net::TcpListener::bind(addr)
        .with_context(|| format!("http.bind: cannot listen on {addr}"))?;
    l.set_nonblocking(true)
        .context("http.bind: a non-blocking socket")?;
    Ok(l)
}

/// The server's state, shared by its connections.
pub struct Http {
    cfg: HttpConfig,
    latest: LatestSlot,
    /// The JPEG of the last frame encoded, by sequence number; the lock also makes encodes
    /// one at a time.
    encoded: tokio::sync::Mutex<Option<(u64, Bytes)>>,
    streams: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    metrics: metrics::Sources,
    stop: watch::Receiver<bool>,
}

/// A response body: all at once, or the parts of a stream as they come.
pub enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }
    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(body.into())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_str(content_type)
            .unwrap_or(hyper::header::HeaderValue::from_static("text/plain")),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.into())
}

impl Http {
    pub fn new(
        cfg: HttpConfig,
        latest: LatestSlot,
        metrics: metrics::Sources,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Http {
            streams: Arc::new(Semaphore::new(cfg.max_stream_clients as usize)),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            cfg,
            latest,
            encoded: tokio::sync::Mutex::new(None),
            metrics,
            stop,
        }
    }

    fn stream_clients(&self) -> usize {
        (self.cfg.max_stream_clients as usize).saturating_sub(self.streams.available_permits())
    }

    /// `/healthz`: Ok while frames reach detection, else why not.
    pub fn health(&self) -> Result<(), String> {
        let sh = &self.metrics.shared;
        let st = &sh.stats;
        let limit = Duration::from_secs_f64(self.cfg.unhealthy_after_s);
        let source = sh.source_state().as_str();
        match st.since_progress() {
            Some(age) if age <= limit => Ok(()),
            Some(age) => Err(format!(
                "no frame for {:.1} s (source {source})",
                age.as_secs_f64()
            )),
            None if st.started.elapsed() <= limit => Ok(()),
            None => Err(format!(
                "no frame since start {:.1} s ago (source {source})",
                st.started.elapsed().as_secs_f64()
            )),
        }
    }

    /// The JPEG of `f` with its boxes, encoded once per frame on the blocking pool.
    async fn jpeg(&self, f: Arc<Latest>) -> Result<Bytes> {
        let mut cache = self.encoded.lock().await;
        if let Some((seq, b)) = cache.as_ref() {
            if *seq >= f.seq {
                return Ok(b.clone());
            }
        }
        let (mw, mh, q) = (
            self.cfg.max_width,
            self.cfg.max_height,
            self.cfg.quality.clamp(1, 100) as u8,
        );
        let seq = f.seq;
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let img = render::frame_with_boxes(&f.image, &f.boxes, mw, mh)?;
            render::encode(&img, q)
        })
        .await
        .context("the JPEG encoder")??;
        let b = Bytes::from(bytes);
        *cache = Some((seq, b.clone()));
        Ok(b)
    }

    async fn route(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            return r;
        }
        match req.uri().path() {
            "/" => text(
                StatusCode::OK,
                "edgecam: /latest.jpg /stream.mjpeg /metrics /healthz\n",
            ),
            "/healthz" => match self.health() {
                Ok(()) => text(StatusCode::OK, "ok\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("unhealthy: {why}\n"),
                ),
            },
            "/metrics" => respond(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                self.metrics.render(self.stream_clients()),
            ),
            "/latest.jpg" => {
                let Some(f) = self.latest.get() else {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n");
                };
                let (seq, wall) = (f.seq, f.wall);
                match self.jpeg(f).await {
                    Ok(j) => {
                        let mut r = respond(StatusCode::OK, "image/jpeg", j);
                        let h = r.headers_mut();
                        if let Ok(v) = hyper::header::HeaderValue::from_str(&seq.to_string()) {
                            h.insert("x-edgecam-seq", v);
                        }
                        let ts = crate::publish::time::rfc3339(wall);
                        if let Ok(v) = hyper::header::HeaderValue::from_str(&ts) {
                            h.insert("x-edgecam-timestamp", v);
                        }
                        r
                    }
                    Err(e) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("encoding the frame: {e:#}\n"),
                    ),
                }
            }
            "/stream.mjpeg" => self.stream(),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// A `multipart/x-mixed-replace` stream of JPEG parts at most `http.stream_fps`.
    fn stream(self: Arc<Self>) -> Response<Body> {
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many stream clients (http.max_stream_clients = {})\n",
                    self.cfg.max_stream_clients
                ),
            );
        };
        // One part in flight: a slow client holds back its own stream only.
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let mut frames = self.latest.subscribe();
        let mut stop = self.stop.clone();
        let gap = Duration::from_secs_f64(1.0 / self.cfg.stream_fps);
        let h = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut sent: Option<u64> = None;
            let mut next = tokio::time::Instant::now();
            loop {
                if *stop.borrow() {
                    break;
                }
                let f = frames.borrow_and_update().clone();
                let Some(f) = f.filter(|f| Some(f.seq) != sent) else {
                    tokio::select! {
                        r = frames.changed() => if r.is_err() { break },
                        _ = tx.closed() => break,
                        r = stop.changed() => if r.is_err() { break },
                    }
                    continue;
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {},
                    _ = tx.closed() => break,
                    r = stop.changed() => if r.is_err() { break } else { continue },
                }
                // The newest frame once the pacing wait is over.
                let f = frames
                    .borrow_and_update()
                    .clone()
                    .filter(|g| g.seq > f.seq)
                    .unwrap_or(f);
                let seq = f.seq;
                let jpeg = match h.jpeg(f).await {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::warn!("http: encoding frame {seq}: {e:#}");
                        sent = Some(seq);
                        continue;
                    }
                };
                let mut part = Vec::with_capacity(jpeg.len() + 100);
                part.extend_from_slice(
                    format!(
                        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nX-Edgecam-Seq: {seq}\r\n\r\n",
                        jpeg.len()
                    )
                    .as_bytes(),
                );
                part.extend_from_slice(&jpeg);
                part.extend_from_slice(b"\r\n");
                match tokio::time::timeout(STREAM_SEND_TIMEOUT, tx.send(Bytes::from(part))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::info!("http: a stream client took no frame for 20 s: dropped");
                        break;
                    }
                }
                sent = Some(seq);
                next = (next + gap).max(tokio::time::Instant::now());
            }
        });
        let mut r = Response::new(Body::Stream(rx));
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!(
            "multipart/x-mixed-replace; boundary={BOUNDARY}"
        )) {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r.headers_mut().insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        r
    }
}

/// Serve on `listener` until `stop` turns true (a task on the daemon's I/O runtime).
pub async fn serve(http: Arc<Http>, listener: std::net::TcpListener) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("http: the listening socket: {e}");
            return;
        }
    };
    let mut stop = http.stop.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
            _ = tick.tick() => http.metrics.sample_rates(),
            r = listener.accept() => match r {
                Ok((sock, _)) => {
                    // Past the bound, the connection is closed at once.
                    let Ok(permit) = http.connections.clone().try_acquire_owned() else {
                        continue;
                    };
                    let h = http.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        let svc = hyper::service::service_fn(move |req| {
                            let h = h.clone();
                            async move { Ok::<_, Infallible>(h.route(req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                            .await;
                    });
                }
                Err(e) => {
                    tracing::warn!("http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::pipeline::Shared;
    use crate::publish::mqtt::ConnState;
    use crate::publish::Outbox;

    fn server(cfg: HttpConfig) -> (Arc<Http>, LatestSlot, Arc<Shared>, watch::Sender<bool>) {
        let slot = LatestSlot::default();
        let shared = Shared::new();
        let (stop_tx, stop_rx) = watch::channel(false);
        let sources = metrics::Sources::new(
            shared.clone(),
            Arc::new(ConnState::default()),
            Arc::new(Outbox::new(4)),
            None,
        );
        let h = Arc::new(Http::new(cfg, slot.clone(), sources, stop_rx));
        (h, slot, shared, stop_tx)
    }

    fn offer(slot: &LatestSlot, seq: u64) {
        let img = RgbImage::from_pixel(64, 48, image::Rgb([seq as u8, 90, 160]));
        let o = Object {
            label: "Person".into(),
            class_id: 1,
            score: 0.9,
            bbox: crate::postprocess::PixelBox([8.0, 8.0, 40.0, 40.0]),
        };
        slot.offer(seq, SystemTime::now(), Arc::new(img), &[o]);
    }

    /// The frame number of a stream part.
    fn seq_of(part: &[u8]) -> u64 {
        let head = String::from_utf8_lossy(&part[..part.len().min(200)]).into_owned();
        let v = head
            .lines()
            .find_map(|l| l.strip_prefix("X-Edgecam-Seq: "))
            .unwrap();
        v.trim().parse().unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_slow_stream_client_gets_the_latest_frame_not_a_backlog() {
        runtime().block_on(async {
            let cfg = HttpConfig {
                stream_fps: 60.0,
                ..HttpConfig::default()
            };
            let (h, slot, _shared, stop) = server(cfg);
            offer(&slot, 1);
            let r = h.clone().stream();
            assert_eq!(r.status(), StatusCode::OK);
            let Body::Stream(mut rx) = r.into_body() else {
                panic!("not a stream")
            };
            let first = rx.recv().await.unwrap();
            assert_eq!(seq_of(&first), 1);
            assert!(first.starts_with(b"--edgecamframe\r\nContent-Type: image/jpeg\r\n"));
            let jpeg_at = first.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let img = image::load_from_memory(&first[jpeg_at..first.len() - 2]).unwrap();
            assert_eq!((img.width(), img.height()), (64, 48));
            // 200 frames while the client reads nothing.
            for seq in 2..=200 {
                offer(&slot, seq);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            // At most the part waiting and the one being sent, then the latest frame.
            let mut got = vec![];
            while got.last() != Some(&200) {
                let p = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("the latest frame comes")
                    .unwrap();
                got.push(seq_of(&p));
            }
            assert!(got.len() <= 3, "a backlog: {got:?}");
            // Nothing more without a new frame.
            let more = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
            assert!(more.is_err(), "the same frame twice");
            // At stop, the stream ends.
            stop.send(true).unwrap();
            let end = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
            assert_eq!(end.ok().map(|p| p.is_none()), Some(true));
        });
    }

    #[test]
    fn stream_clients_are_limited_and_their_places_freed() {
        runtime().block_on(async {
            let cfg = HttpConfig {
                max_stream_clients: 1,
                ..HttpConfig::default()
            };
            let (h, slot, _shared, _stop) = server(cfg);
            offer(&slot, 1);
            let a = h.clone().stream();
            assert_eq!(a.status(), StatusCode::OK);
            assert_eq!(h.stream_clients(), 1);
            assert_eq!(h.clone().stream().status(), StatusCode::SERVICE_UNAVAILABLE);
            // The client goes away: its place is free again.
            drop(a);
            let t0 = std::time::Instant::now();
            while h.stream_clients() > 0 && t0.elapsed() < Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(h.clone().stream().status(), StatusCode::OK);
        });
    }

    #[test]
    fn health_follows_the_frames() {
        let cfg = HttpConfig {
            unhealthy_after_s: 0.5,
            ..HttpConfig::default()
        };
        let (h, _slot, shared, _stop) = server(cfg);
        assert_eq!(h.health(), Ok(()), "at start, within the limit");
        std::thread::sleep(Duration::from_millis(600));
        let e = h.health().unwrap_err();
        assert!(e.starts_with("no frame since start"), "{e}");
        shared.stats.note_progress();
        assert_eq!(h.health(), Ok(()));
        std::thread::sleep(Duration::from_millis(600));
        let e = h.health().unwrap_err();
        assert!(
            e.starts_with("no frame for ") && e.ends_with(" s (source opening)"),
            "{e}"
        );
    }

    #[test]
    fn one_encode_serves_every_client_of_a_frame() {
        runtime().block_on(async {
            let (h, slot, _shared, _stop) = server(HttpConfig::default());
            offer(&slot, 7);
            let f = slot.get().unwrap();
            let a = h.jpeg(f.clone()).await.unwrap();
            let b = h.jpeg(f).await.unwrap();
            // The same bytes, not a second encode of them.
            assert_eq!(a.as_ptr(), b.as_ptr());
            offer(&slot, 8);
            let c = h.jpeg(slot.get().unwrap()).await.unwrap();
            assert_ne!(a.as_ptr(), c.as_ptr());
            // The box is drawn on the frame.
            let img = image::load_from_memory(&c).unwrap().to_rgb8();
            let p = img.get_pixel(8, 24);
            assert!(p[0] > 200 && p[1] < 90, "{p:?}");
        });
    }
}
