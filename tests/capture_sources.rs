//! Capture on a Pi (issue 21 item 7): the `libcamera` source against a fake `rpicam-vid` that
//! streams the bundled clip as MJPEG, the MJPEG reader on a FIFO, on standard input and on a
//! `multipart/x-mixed-replace` HTTP stream, and ffmpeg's `input_args`/`hwaccel_args`.
//! Through the library API, plus daemon runs against a real mosquitto. The fakes run ffmpeg
//! and bash: x86_64 only, like the other daemon tests.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mjpeg_server::{clip_frames, MjpegServer};
use common::*;
use edgecam::capture::sources::{self, Ffmpeg, Libcamera};
use edgecam::capture::{FrameSource, Read};
use edgecam::config::{SourceConfig, SourceKind};
use image::RgbImage;

const CLIP: &str = "tests/data/vtest_10s.mjpeg";

fn decode(jpeg: &[u8]) -> RgbImage {
    image::load_from_memory(jpeg).unwrap().to_rgb8()
}

/// Mean absolute difference of two images of one size.
fn mad(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let s: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y) as u64)
        .sum();
    s as f64 / a.as_raw().len() as f64
}

/// What a source delivered until it ended, failed, or `limit` passed / `max` frames came.
struct Got {
    frames: Vec<RgbImage>,
    skipped: usize,
    end: Option<Result<Read, String>>,
}

fn drain(src: &mut dyn FrameSource, max: usize, limit: Duration) -> Got {
    let t0 = Instant::now();
    let mut got = Got {
        frames: vec![],
        skipped: 0,
        end: None,
    };
    while got.frames.len() < max && t0.elapsed() < limit {
        match src.read(Duration::from_millis(100)) {
            Ok(Read::Frame(f)) => got.frames.push(f),
            Ok(Read::Pending) => {}
            Ok(Read::Skipped(_)) => got.skipped += 1,
            Ok(end) => {
                got.end = Some(Ok(end));
                break;
            }
            Err(e) => {
                got.end = Some(Err(format!("{e:#}")));
                break;
            }
        }
    }
    got
}

fn no_stop() -> AtomicBool {
    AtomicBool::new(false)
}

// ---------------------------------------------------------------------------------------------
// libcamera: a fake rpicam-vid.

/// Write a fake `rpicam-vid` into `dir/bin`: it checks its arguments as the real one parses
/// them (an unknown option is an error), logs them to `dir/args`, writes its pid to `dir/pid`,
/// then streams the clip for `secs` seconds in real time as MJPEG at the asked size and rate,
/// and exits with an error like a camera that went away. With `dir/unplugged` present it fails
/// at once, like rpicam-vid without a camera.
fn fake_rpicam(dir: &Path, name: &str, secs: f64) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join(name);
    let text = format!(
        r#"#!/bin/bash
d='{dir}'
printf '%s\n' "$*" >> "$d/args"
echo $$ > "$d/pid"
w=640; h=480; fps=30; t=5000; codec=yuv420; out=""; flip=""
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--timeout) t=$2; shift;;
    --codec) codec=$2; shift;;
    --width) w=$2; shift;;
    --height) h=$2; shift;;
    --framerate) fps=$2; shift;;
    --camera) shift;;
    -o|--output) out=$2; shift;;
    -n|--nopreview|--flush) ;;
    --hflip) flip=",hflip";;
    *) echo "ERROR: *** unrecognised option '$1' ***" >&2; exit 3;;
  esac
  shift
done
if [ "$codec" != mjpeg ] || [ "$out" != - ] || [ "$t" != 0 ]; then
  echo "ERROR: wants --codec mjpeg -o - -t 0, got $codec $out $t" >&2; exit 4
fi
echo "[0:00:00.100] [1] INFO Camera camera_manager.cpp:327 libcamera v0.3.2 (fake)" >&2
if [ -e "$d/unplugged" ]; then
  echo "ERROR: *** no cameras available ***" >&2; exit 1
fi
{ffmpeg} -nostdin -loglevel error -re -framerate 10 -f mjpeg -i '{clip}' -t {secs} \
  -vf "scale=$w:$h$flip" -r "$fps" -q:v 5 -f mjpeg - || exit 9
echo "ERROR: *** camera disconnected (fake) ***" >&2
exit 1
"#,
        dir = dir.display(),
        clip = root().join(CLIP).display(),
        ffmpeg = ffmpeg_path().display(),
    );
    std::fs::write(&script, text).unwrap();
    let ok = Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    assert!(ok.success());
    script
}

/// ffmpeg's absolute path, so that the fake camera app runs with a PATH of its own.
fn ffmpeg_path() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("ffmpeg"))
        .find(|p| p.is_file())
        .expect("ffmpeg on PATH")
}

fn libcamera_config(command: &Path) -> SourceConfig {
    SourceConfig {
        kind: SourceKind::Libcamera,
        uri: "1".into(),
        command: command.display().to_string(),
        width: 320,
        height: 240,
        fps: 10.0,
        extra_args: vec!["--hflip".into()],
        ..Default::default()
    }
}

#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "runs an x86 ffmpeg")]
fn libcamera_runs_the_camera_app_splits_its_mjpeg_and_reopens_when_it_dies() {
    let dir = tmpdir("cap-libcamera");
    let script = fake_rpicam(&dir, "rpicam-vid", 2.0);
    let cfg = libcamera_config(&script);
    let mut src = sources::from_config(&cfg).unwrap();
    assert!(src.live(), "a camera paces itself");
    src.open(&no_stop()).unwrap();
    // The whole 2 s: 20 frames at 10 fps, each at the asked size, then the app's error.
    let got = drain(src.as_mut(), 1000, Duration::from_secs(20));
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    assert_eq!(
        args.trim(),
        "-t 0 -n --codec mjpeg --flush --width 320 --height 240 --framerate 10 --camera 1 --hflip -o -"
    );
    assert!(
        (12..=21).contains(&got.frames.len()),
        "{} frames in 2 s at 10 fps",
        got.frames.len()
    );
    assert_eq!(got.skipped, 0);
    assert!(got.frames.iter().all(|f| f.dimensions() == (320, 240)));
    // The frames are the clip's, mirrored (--hflip reached the app): the first frame matches
    // one of the clip's first frames scaled and flipped, far better than unflipped.
    let near = |flip: bool| {
        clip_frames()[..3]
            .iter()
            .map(|c| {
                let r = image::imageops::resize(
                    &decode(c),
                    320,
                    240,
                    image::imageops::FilterType::Triangle,
                );
                let r = if flip {
                    image::imageops::flip_horizontal(&r)
                } else {
                    r
                };
                mad(&got.frames[0], &r)
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (d_flip, d_plain) = (near(true), near(false));
    assert!(
        d_flip < 4.0 && d_plain > 2.0 * d_flip,
        "{d_flip} vs {d_plain}"
    );
    // The app's death is an error carrying its exit status and its last stderr lines.
    let err = match got.end {
        Some(Err(e)) => e,
        other => panic!("expected an error, got {:?}", other.map(|r| r.map(|_| ()))),
    };
    assert!(
        err.contains("camera disconnected (fake)") && err.contains("exit status: 1"),
        "{err}"
    );
    // Reopened (what the capture thread does after its back-off): frames again.
    src.open(&no_stop()).unwrap();
    let got = drain(src.as_mut(), 5, Duration::from_secs(10));
    assert_eq!(got.frames.len(), 5, "{:?}", got.end.map(|r| r.map(|_| ())));
    // Closing kills the app: no process left behind.
    let pid: i32 = std::fs::read_to_string(dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid as u32));
    drop(src);
    assert!(!alive(pid as u32), "the camera app is killed on close");
    // No camera: the error says so.
    std::fs::write(dir.join("unplugged"), "").unwrap();
    let mut src = Libcamera::new(&cfg);
    src.open(&no_stop()).unwrap();
    let got = drain(&mut src, 1, Duration::from_secs(10));
    match got.end {
        Some(Err(e)) => assert!(e.contains("no cameras available"), "{e}"),
        other => panic!("expected an error, got {:?}", other.map(|r| r.map(|_| ()))),
    }
    // A camera app that is not installed.
    let mut cfg2 = cfg.clone();
    cfg2.command = dir.join("bin/nonexistent").display().to_string();
    let e = format!("{:#}", Libcamera::new(&cfg2).open(&no_stop()).unwrap_err());
    assert!(e.contains("nonexistent"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check-config` with `kind = "libcamera"` and no `command`: with only `libcamera-vid` on
/// PATH (older Raspberry Pi OS) that is what runs; with neither, the error says what to
/// install (exit 69, the source is unavailable).
#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "runs an x86 ffmpeg")]
fn without_rpicam_vid_libcamera_vid_is_used_and_without_both_the_error_says_so() {
    let dir = tmpdir("cap-libcamera-vid");
    fake_rpicam(&dir, "libcamera-vid", 3.0);
    let cfg = write_config(&dir, free_port(), "caplcv", "");
    set_key(&cfg, "source", "kind", "\"libcamera\"");
    set_key(&cfg, "source", "uri", "\"\"");
    set_key(&cfg, "source", "width", "384");
    set_key(&cfg, "source", "height", "288");
    let check = |path: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
            .args(["check-config", "--config"])
            .arg(&cfg)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = check(&dir.join("bin"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("source OK: libcamera camera 0 delivered a 384x288 frame"),
        "{out}"
    );
    assert!(std::fs::read_to_string(dir.join("args"))
        .unwrap()
        .starts_with("-t 0 -n --codec mjpeg"));
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, out) = check(&empty);
    assert_eq!(code, 69, "{out}");
    assert!(
        out.contains("neither rpicam-vid nor libcamera-vid is on PATH"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// MJPEG over HTTP.

#[derive(Clone, Copy, PartialEq)]
enum Serve {
    /// Parts with Content-Length, HTTP/1.0 style (the body ends with the connection).
    Lengths,
    /// Parts without Content-Length.
    Bare,
    /// HTTP/1.1 chunked transfer coding, parts without Content-Length.
    Chunked,
    /// 404.
    NotFound,
    /// 200 with an HTML page.
    Html,
}

/// A one-shot server per connection: sends `frames` as `multipart/x-mixed-replace` in `how`,
/// then closes. Returns the port.
fn serve(how: Serve, frames: Vec<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let frames = frames.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                assert!(head.starts_with(b"GET /cam.mjpg HTTP/1.1\r\n"));
                let hdr: &str = match how {
                    Serve::NotFound => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                    Serve::Html => "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html></html>",
                    Serve::Chunked => "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=\"--edge\"\r\nTransfer-Encoding: chunked\r\n\r\n",
                    _ => "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=edge\r\n\r\n",
                };
                if conn.write_all(hdr.as_bytes()).is_err()
                    || matches!(how, Serve::NotFound | Serve::Html)
                {
                    return;
                }
                for f in &frames {
                    let mut part = b"--edge\r\nContent-Type: image/jpeg\r\n".to_vec();
                    if how == Serve::Lengths {
                        part.extend_from_slice(
                            format!("Content-Length: {}\r\n", f.len()).as_bytes(),
                        );
                    }
                    part.extend_from_slice(b"\r\n");
                    part.extend_from_slice(f);
                    part.extend_from_slice(b"\r\n");
                    let ok = if how == Serve::Chunked {
                        // Two chunks per part: a chunk boundary inside the JPEG.
                        let (a, b) = part.split_at(part.len() / 3);
                        [a, b].iter().all(|c| {
                            conn.write_all(format!("{:x}\r\n", c.len()).as_bytes())
                                .is_ok()
                                && conn.write_all(c).is_ok()
                                && conn.write_all(b"\r\n").is_ok()
                        })
                    } else {
                        conn.write_all(&part).is_ok()
                    };
                    if !ok {
                        return;
                    }
                }
                if how == Serve::Chunked {
                    let _ = conn.write_all(b"0\r\n\r\n");
                }
            });
        }
    });
    port
}

fn mjpeg_config(uri: &str) -> SourceConfig {
    SourceConfig {
        kind: SourceKind::Mjpeg,
        uri: uri.into(),
        fps: 0.0,
        stall_timeout_s: 2.0,
        ..Default::default()
    }
}

#[test]
fn http_multipart_frames_decode_equal_to_the_jpegs_sent() {
    let frames = clip_frames()[..15].to_vec();
    for how in [Serve::Lengths, Serve::Bare, Serve::Chunked] {
        let port = serve(how, frames.clone());
        let mut src =
            sources::from_config(&mjpeg_config(&format!("http://127.0.0.1:{port}/cam.mjpg")))
                .unwrap();
        src.open(&no_stop()).unwrap();
        // Read as they come (a read takes the newest frame waiting, so read eagerly and
        // compare each frame with the one sent in its place).
        let mut seen = vec![];
        let t0 = Instant::now();
        let end = loop {
            match src.read(Duration::from_millis(100)) {
                Ok(Read::Frame(f)) => seen.push(f),
                Ok(Read::Pending) if t0.elapsed() < Duration::from_secs(10) => {}
                other => break other.map(|_| ()).map_err(|e| format!("{e:#}")),
            }
        };
        // The stream ending is a failure to reconnect from, not the end of a file.
        let e = end.unwrap_err();
        assert!(e.contains("the stream ended"), "{e}");
        assert!(!seen.is_empty() && seen.len() <= 15);
        // Every frame delivered is one of the JPEGs sent, in order, decoded bit-exactly.
        let sent: Vec<RgbImage> = frames.iter().map(|f| decode(f)).collect();
        let mut at = 0;
        for f in &seen {
            let i = (at..sent.len())
                .find(|&i| sent[i] == *f)
                .unwrap_or_else(|| panic!("a frame that was not sent (after #{at})"));
            at = i + 1;
        }
        // The last part is always the newest, so it is among those delivered.
        assert_eq!(*seen.last().unwrap(), sent[14]);
    }
}

#[test]
fn http_errors_are_clear() {
    let open_err = |uri: &str| {
        let mut src = sources::from_config(&mjpeg_config(uri)).unwrap();
        format!("{:#}", src.open(&no_stop()).unwrap_err())
    };
    let port = serve(Serve::NotFound, vec![]);
    let e = open_err(&format!("http://127.0.0.1:{port}/cam.mjpg"));
    assert!(e.contains("HTTP status 404 Not Found"), "{e}");
    let port = serve(Serve::Html, vec![]);
    let e = open_err(&format!("http://127.0.0.1:{port}/cam.mjpg"));
    assert!(
        e.contains("content type 'text/html' is not an MJPEG stream"),
        "{e}"
    );
    let port = free_port();
    let e = open_err(&format!("http://127.0.0.1:{port}/cam.mjpg"));
    assert!(e.contains("connecting") && e.contains("refused"), "{e}");
    // A server that takes the connection and never answers: the open gives up after the
    // stall timeout (2 s here), or at once when the daemon stops.
    let mute = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!(
        "http://127.0.0.1:{}/cam.mjpg",
        mute.local_addr().unwrap().port()
    );
    let t0 = Instant::now();
    let e = open_err(&uri);
    assert!(e.contains("reading the response"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        s2.store(true, Ordering::SeqCst);
    });
    let t0 = Instant::now();
    let mut src = sources::from_config(&mjpeg_config(&uri)).unwrap();
    let e = format!("{:#}", src.open(&stop).unwrap_err());
    assert!(e.contains("stopped while connecting"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

#[test]
fn a_silent_http_camera_is_pending_not_blocking_and_close_hangs_up() {
    let server = MjpegServer::start(20.0);
    let mut src = sources::from_config(&mjpeg_config(&format!(
        "http://127.0.0.1:{}/video",
        server.port
    )))
    .unwrap();
    src.open(&no_stop()).unwrap();
    let got = drain(src.as_mut(), 5, Duration::from_secs(10));
    assert_eq!(got.frames.len(), 5);
    assert!(got.frames.iter().all(|f| f.dimensions() == (384, 288)));
    server.silent.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    let _ = drain(src.as_mut(), 100, Duration::from_millis(300));
    // Silence: every read returns within its wait, with nothing.
    for _ in 0..5 {
        let t0 = Instant::now();
        let r = src.read(Duration::from_millis(100)).unwrap();
        assert!(matches!(r, Read::Pending), "{r:?}");
        assert!(t0.elapsed() < Duration::from_millis(300));
    }
    // Reopening (after a stall) hangs up the old connection and makes a new one.
    src.open(&no_stop()).unwrap();
    server.silent.store(false, Ordering::SeqCst);
    let got = drain(src.as_mut(), 3, Duration::from_secs(10));
    assert_eq!(got.frames.len(), 3);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    let t0 = Instant::now();
    while server.closed_by_client.load(Ordering::SeqCst) < 1 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.closed_by_client.load(Ordering::SeqCst), 1);
    drop(src);
    let t0 = Instant::now();
    while server.closed_by_client.load(Ordering::SeqCst) < 2 && t0.elapsed().as_secs() < 5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.closed_by_client.load(Ordering::SeqCst), 2);
}

/// The daemon on an HTTP camera through `kind = "mjpeg"`: detections, a stall when the camera
/// goes silent, a reconnect, detections again.
#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "runs x86 mosquitto")]
fn the_daemon_reads_an_http_camera_and_reconnects_after_a_stall() {
    let dir = tmpdir("cap-http-daemon");
    let server = MjpegServer::start(10.0);
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let base = "edgecam/caphttp";
    let rx = subscribe(port, &format!("{base}/#"));
    std::thread::sleep(Duration::from_millis(300));
    let cfg = write_config(&dir, port, "caphttp", "");
    set_key(
        &cfg,
        "source",
        "uri",
        &format!("\"http://127.0.0.1:{}/video\"", server.port),
    );
    set_key(&cfg, "source", "loop", "false");
    set_key(&cfg, "source", "fps", "5.0");
    set_key(&cfg, "source", "stall_timeout_s", "1.0");
    set_key(&cfg, "source", "backoff_min_s", "0.3");
    set_key(&cfg, "source", "backoff_max_s", "1.0");
    set_key(&cfg, "mqtt", "stats_interval_s", "0.5");
    let mut d = Logged::start(&cfg, &[]);
    let mut all = vec![];
    let dets = format!("{base}/detections");
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0 == dets),
        "no detections from the HTTP camera"
    );
    server.silent.store(true, Ordering::SeqCst);
    assert!(
        d.wait_line(&["stalled"], Duration::from_secs(10)).is_some(),
        "the silence is a stall"
    );
    let t1 = Instant::now();
    server.silent.store(false, Ordering::SeqCst);
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(20), |m| m.0 == dets
            && m.2 > t1),
        "detections did not resume"
    );
    collect(&rx, &mut all, Duration::from_secs(1));
    let last = json_on(&all, &format!("{base}/stats")).pop().unwrap();
    assert!(
        last["source"]["stalls"].as_u64().unwrap_or(0) >= 1,
        "{last}"
    );
    assert!(
        last["source"]["reopens"].as_u64().unwrap_or(0) >= 1,
        "{last}"
    );
    assert_eq!(last["source"]["state"], "streaming", "{last}");
    assert!(server.connections.load(Ordering::SeqCst) >= 2);
    sigterm(&d.child);
    let (status, took) = wait_exit(&mut d.child, Duration::from_secs(10)).expect("exits");
    assert!(
        status.success() && took < Duration::from_secs(3),
        "{status} {took:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Pipes.

#[test]
fn a_fifo_delivers_every_frame_and_a_cut_frame_is_reported() {
    let dir = tmpdir("cap-fifo");
    let fifo = dir.join("cam.mjpeg");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let frames = clip_frames();
    let cfg = mjpeg_config(&fifo.display().to_string());
    for cut in [false, true] {
        let (f2, p2) = (frames.clone(), fifo.clone());
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&p2).unwrap();
            for (i, f) in f2.iter().enumerate() {
                // Written in small pieces, a frame split across writes.
                let f: &[u8] = if cut && i == f2.len() - 1 {
                    &f[..f.len() / 2]
                } else {
                    f
                };
                for c in f.chunks(3000) {
                    w.write_all(c).unwrap();
                }
            }
        });
        let mut src = sources::from_config(&cfg).unwrap();
        assert!(src.describe().contains("pipe"), "{}", src.describe());
        // Opening does not wait for the writer.
        src.open(&no_stop()).unwrap();
        let got = drain(src.as_mut(), 1000, Duration::from_secs(30));
        writer.join().unwrap();
        let want = if cut { frames.len() - 1 } else { frames.len() };
        assert_eq!(got.frames.len(), want);
        for (i, (g, f)) in got.frames.iter().zip(&frames).enumerate() {
            assert!(*g == decode(f), "frame {i}");
        }
        match got.end {
            Some(Ok(Read::Truncated(why))) if cut => assert!(why.contains("cut off"), "{why}"),
            Some(Ok(Read::Eof)) if !cut => {}
            other => panic!("cut {cut}: {:?}", other.map(|r| r.map(|_| ()))),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Standard input (`uri = "-"`) into the real daemon: `cat clip | edgecam run`, every frame
/// captured and processed, and the end of the input is the end of the run.
#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "runs x86 mosquitto")]
fn the_daemon_reads_mjpeg_from_standard_input() {
    let dir = tmpdir("cap-stdin");
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let cfg = write_config(&dir, port, "capstdin", "[pipeline]\nexit_on_eof = true\n");
    set_key(&cfg, "source", "uri", "\"-\"");
    set_key(&cfg, "source", "loop", "false");
    set_key(&cfg, "source", "fps", "0.0");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(std::fs::File::open(root().join(CLIP)).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("mjpeg standard input"), "{log}");
    assert!(log.contains("captured=100"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// ffmpeg input_args / hwaccel_args.

fn ffmpeg_config(input_args: &[&str], hwaccel_args: &[&str]) -> SourceConfig {
    SourceConfig {
        kind: SourceKind::Ffmpeg,
        uri: root().join(CLIP).display().to_string(),
        fps: 0.0,
        input_args: input_args.iter().map(|s| s.to_string()).collect(),
        hwaccel_args: hwaccel_args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "runs an x86 ffmpeg")]
fn ffmpeg_input_args_reach_ffmpeg_before_the_input() {
    let run = |input: &[&str], hw: &[&str]| {
        let mut src = Ffmpeg::new(&ffmpeg_config(input, hw));
        src.open(&no_stop()).unwrap();
        drain(&mut src, 1000, Duration::from_secs(60))
    };
    // The raw MJPEG demuxer's rate (-framerate, an input option) and a seek before -i.
    let all = run(&["-framerate", "10"], &[]);
    assert!(matches!(all.end, Some(Ok(Read::Eof))));
    assert_eq!(all.frames.len(), 100);
    let late = run(&["-framerate", "10", "-ss", "5"], &[]);
    assert!(
        matches!(late.end, Some(Ok(Read::Eof))),
        "a seek is not a truncated file"
    );
    assert_eq!(late.frames.len(), 50);
    // The first frame after the seek is frame 50 at 10 fps, not frame 0.
    let best = (0..all.frames.len())
        .min_by(|&a, &b| {
            mad(&late.frames[0], &all.frames[a]).total_cmp(&mad(&late.frames[0], &all.frames[b]))
        })
        .unwrap();
    assert_eq!(best, 50);
    assert!(mad(&late.frames[0], &all.frames[50]) < 0.5);
    assert!(mad(&late.frames[0], &all.frames[0]) > 2.0);
    // hwaccel_args go in too; "-hwaccel none" decodes in software, like no option.
    let hw = run(&["-framerate", "10", "-t", "1"], &["-hwaccel", "none"]);
    assert_eq!(hw.frames.len(), 10);
    assert!(mad(&hw.frames[0], &all.frames[0]) < 0.5);
    // A bad option: a clear error naming it, not a panic and not a "truncated" file.
    for (input, hwa, word) in [
        (&["-no_such_option"][..], &[][..], "no_such_option"),
        (&[][..], &["-hwaccel", "no_such_accel"][..], "no_such_accel"),
    ] {
        let got = run(input, hwa);
        match got.end {
            Some(Err(e)) => assert!(
                e.contains("before its first frame") && e.contains(word),
                "{e}"
            ),
            other => panic!("{word}: {:?}", other.map(|r| r.map(|_| ()))),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon with kind = "libcamera".

/// `rpicam-vid` is found on PATH (not configured), its MJPEG becomes detections on the broker,
/// and when the fake camera dies after 4 s the daemon reports it, reconnects, and detections
/// resume from the relaunched app.
#[test]
#[cfg_attr(target_arch = "aarch64", ignore = "runs x86 mosquitto and ffmpeg")]
fn the_daemon_publishes_detections_from_a_libcamera_source_and_reconnects() {
    let dir = tmpdir("cap-libcamera-daemon");
    fake_rpicam(&dir, "rpicam-vid", 4.0);
    let port = free_port();
    let _broker = Broker::start(port, &dir);
    let base = "edgecam/caplibcam";
    let rx = subscribe(port, &format!("{base}/#"));
    std::thread::sleep(Duration::from_millis(300));
    let cfg = write_config(&dir, port, "caplibcam", "");
    set_key(&cfg, "source", "kind", "\"libcamera\"");
    set_key(&cfg, "source", "uri", "\"\"");
    set_key(&cfg, "source", "loop", "false");
    set_key(&cfg, "source", "width", "384");
    set_key(&cfg, "source", "height", "288");
    set_key(&cfg, "source", "fps", "10.0");
    set_key(&cfg, "source", "backoff_min_s", "0.3");
    set_key(&cfg, "source", "backoff_max_s", "1.0");
    set_key(&cfg, "mqtt", "stats_interval_s", "0.5");
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut d = Logged::start(&cfg, &[("PATH", &path)]);
    let mut all = vec![];
    let dets = format!("{base}/detections");
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(60), |m| m.0 == dets),
        "no detections from the camera"
    );
    // The fake camera dies after 4 s: logged with the app's own words, then relaunched.
    assert!(
        d.wait_line(&["camera disconnected (fake)"], Duration::from_secs(20))
            .is_some(),
        "the camera app's death is logged with its stderr"
    );
    let t1 = Instant::now();
    assert!(
        wait_for(&rx, &mut all, Duration::from_secs(20), |m| m.0 == dets
            && m.2 > t1),
        "detections did not resume after the camera came back"
    );
    collect(&rx, &mut all, Duration::from_secs(1));
    let states: Vec<String> = json_on(&all, &format!("{base}/stats"))
        .iter()
        .filter_map(|s| s["source"]["state"].as_str().map(str::to_string))
        .collect();
    assert!(states.iter().any(|s| s == "streaming"), "{states:?}");
    let last = json_on(&all, &format!("{base}/stats")).pop().unwrap();
    assert!(
        last["source"]["reopens"].as_u64().unwrap_or(0) >= 1,
        "{last}"
    );
    let args = std::fs::read_to_string(dir.join("args")).unwrap();
    assert!(
        args.lines()
            .all(|l| l
                == "-t 0 -n --codec mjpeg --flush --width 384 --height 288 --framerate 10 -o -")
    );
    assert!(args.lines().count() >= 2, "relaunched: {args}");
    // Shutdown leaves no camera app behind.
    let children = children_of(d.child.id());
    assert!(!children.is_empty(), "the camera app runs as a child");
    sigterm(&d.child);
    let (status, took) = wait_exit(&mut d.child, Duration::from_secs(10)).expect("exits");
    assert!(
        status.success() && took < Duration::from_secs(3),
        "{status} {took:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    for c in children {
        assert!(!alive(c), "child {c} left running");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
