//! Progress of the long offline commands (`evaluate`, `calibrate`): a bar with the rate and an
//! ETA on a terminal (one line, redrawn), one line per step otherwise; and Ctrl-C / SIGTERM
//! turned into a flag the command checks between frames, so that it stops and writes what it
//! has (a second Ctrl-C ends the process at once).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The exit status of a command stopped by Ctrl-C (128 + SIGINT), after its partial report.
pub const INTERRUPTED: i32 = 130;

pub struct Progress {
    t0: Instant,
    total: Option<u64>,
    tty: bool,
}

impl Progress {
    /// `total`: the number of steps expected, when known.
    pub fn new(total: Option<u64>) -> Self {
        Progress {
            t0: Instant::now(),
            total: total.filter(|&t| t > 0),
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn tty(&self) -> bool {
        self.tty
    }

    /// `done` steps so far: `37/79 [#########-----------] 47% 2.1/s ETA 0:18`, or without a
    /// total `37 2.1/s 0:17 elapsed`.
    pub fn status(&self, done: u64) -> String {
        let secs = self.t0.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        match self.total {
            Some(total) => {
                let frac = (done as f64 / total as f64).min(1.0);
                let width = 20;
                let full = (frac * width as f64).round() as usize;
                let eta = if rate > 0.0 {
                    clock(total.saturating_sub(done) as f64 / rate)
                } else {
                    "?".into()
                };
                format!(
                    "{done}/{total} [{}{}] {:>3.0}% {rate:.1}/s ETA {eta}",
                    "#".repeat(full),
                    "-".repeat(width - full),
                    frac * 100.0
                )
            }
            None => format!("{done} {rate:.1}/s {} elapsed", clock(secs)),
        }
    }

    /// Show `done` with `detail` after it: redrawn in place on a terminal, a line otherwise.
    pub fn show(&self, done: u64, detail: &str) {
        let line = format!("{} {detail}", self.status(done));
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    /// End the redrawn line (a terminal).
    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// `m:ss`, or `h:mm:ss` from an hour.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// A flag raised by the first Ctrl-C (SIGINT) or SIGTERM; the second ends the process with
/// [`INTERRUPTED`]. Watched by a thread of its own (a one-thread tokio runtime).
pub fn stop_on_signals() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(rt) = rt else {
        tracing::warn!("cannot watch for Ctrl-C: it will end the command without a report");
        return stop;
    };
    // The handlers are installed here, before the command starts.
    let signals = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Some((
            signal(SignalKind::interrupt()).ok()?,
            signal(SignalKind::terminate()).ok()?,
        ))
    });
    let Some((mut int, mut term)) = signals else {
        tracing::warn!("cannot watch for Ctrl-C: it will end the command without a report");
        return stop;
    };
    std::thread::spawn(move || {
        rt.block_on(async {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if flag.swap(true, Ordering::SeqCst) {
                    eprintln!("\ninterrupted again: stopping now, without a report");
                    std::process::exit(INTERRUPTED);
                }
                eprintln!("\ninterrupted: finishing the current frame and writing a partial report (Ctrl-C again to stop now)");
            }
        })
    });
    stop
}

/// How many frames `source` holds, when that is cheap to know: images in a directory, JPEGs
/// in an MJPEG file, one image, or the video packets of a file ffprobe counts (demuxing only).
/// `None` for streams and devices.
pub fn source_frames(source: &str) -> Option<u64> {
    let p = Path::new(source);
    let ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .unwrap_or_default()
    };
    const IMAGES: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "ppm"];
    if p.is_dir() {
        let n = std::fs::read_dir(p)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| IMAGES.contains(&ext(&e.path()).as_str()))
            .count();
        return Some(n as u64);
    }
    if !p.is_file() {
        return None;
    }
    match ext(p).as_str() {
        "mjpeg" | "mjpg" => {
            let bytes = std::fs::read(p).ok()?;
            Some(
                bytes
                    .windows(3)
                    .filter(|w| w == &[0xff, 0xd8, 0xff])
                    .count() as u64,
            )
        }
        e if IMAGES.contains(&e) => Some(1),
        _ => {
            let out = std::process::Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-select_streams",
                    "v:0",
                    "-count_packets",
                    "-show_entries",
                    "stream=nb_read_packets",
                    "-of",
                    "csv=p=0",
                ])
                .arg(p)
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .trim_end_matches(',')
                .parse()
                .ok()
        }
    }
}

/// The frames a pass over `total` source frames takes: after `skip`, every `every`-th, at
/// most `max` (0: no limit).
pub fn frames_taken(total: Option<u64>, skip: u64, every: u64, max: u64) -> Option<u64> {
    let n = total?.saturating_sub(skip).div_ceil(every.max(1));
    Some(if max > 0 { n.min(max) } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_has_a_bar_a_rate_and_an_eta() {
        let p = Progress {
            t0: Instant::now() - std::time::Duration::from_secs(10),
            total: Some(100),
            tty: false,
        };
        let s = p.status(25);
        assert!(
            s.starts_with("25/100 [#####---------------]  25% 2.5/s ETA 0:30"),
            "{s}"
        );
        let p = Progress { total: None, ..p };
        assert!(
            p.status(25).starts_with("25 2.5/s 0:10 elapsed"),
            "{}",
            p.status(25)
        );
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn frames_of_sources_and_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let clip = root.join("tests/data/vtest_10s.mjpeg");
        assert_eq!(source_frames(clip.to_str().unwrap()), Some(100));
        assert_eq!(source_frames("rtsp://camera/stream"), None);
        assert_eq!(frames_taken(Some(100), 10, 4, 0), Some(23));
        assert_eq!(frames_taken(Some(100), 0, 1, 30), Some(30));
        assert_eq!(frames_taken(None, 0, 1, 30), None);
    }
}
