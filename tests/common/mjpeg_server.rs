//! A live HTTP camera (what IP cameras serve): the bundled clip's frames
//! (`tests/data/vtest_10s.mjpeg`) as `multipart/x-mixed-replace` at `fps`, in a loop, each part
//! with its Content-Length, until told to go silent (the connection stays open and nothing
//! comes). It counts connections, and connections the client closed.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::root;

/// The frames of the bundled 10 s clip, as JPEG files.
pub fn clip_frames() -> Vec<Vec<u8>> {
    let data = std::fs::read(root().join("tests/data/vtest_10s.mjpeg")).unwrap();
    edgecam::capture::mjpeg::split_mjpeg(&data)
        .into_iter()
        .map(|f| f.to_vec())
        .collect()
}

pub struct MjpegServer {
    pub port: u16,
    /// Set: every connection goes silent mid-stream (held open, nothing sent).
    pub silent: Arc<AtomicBool>,
    pub connections: Arc<AtomicU64>,
    pub closed_by_client: Arc<AtomicU64>,
}

impl MjpegServer {
    pub fn start(fps: f64) -> MjpegServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let closed_by_client = Arc::new(AtomicU64::new(0));
        let frames = Arc::new(clip_frames());
        let (s2, c2, x2) = (
            silent.clone(),
            connections.clone(),
            closed_by_client.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                c2.fetch_add(1, Ordering::SeqCst);
                let (silent, frames, closed) = (s2.clone(), frames.clone(), x2.clone());
                std::thread::spawn(move || {
                    // Read the request head.
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        if conn.read(&mut b).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let hdr = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\nCache-Control: no-cache\r\n\r\n";
                    if conn.write_all(hdr.as_bytes()).is_err() {
                        return;
                    }
                    conn.set_nonblocking(true).unwrap();
                    let mut i = 0;
                    loop {
                        // The client closing its end shows as EOF on a read.
                        if matches!(conn.read(&mut b), Ok(0)) {
                            closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        if silent.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                        let f = &frames[i % frames.len()];
                        i += 1;
                        let part = format!(
                            "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                            f.len()
                        );
                        conn.set_nonblocking(false).unwrap();
                        let ok = conn.write_all(part.as_bytes()).is_ok()
                            && conn.write_all(f).is_ok()
                            && conn.write_all(b"\r\n").is_ok();
                        conn.set_nonblocking(true).unwrap();
                        if !ok {
                            closed.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        std::thread::sleep(Duration::from_secs_f64(1.0 / fps));
                    }
                });
            }
        });
        MjpegServer {
            port,
            silent,
            connections,
            closed_by_client,
        }
    }
}
