//! Pipeline counters shared by the stage threads and the stats publisher.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::percentile::percentile_of_sorted;

/// A bounded window of recent samples with percentiles.
pub struct Window {
    samples: Mutex<VecDeque<f64>>,
    cap: usize,
}

impl Window {
    pub fn new(cap: usize) -> Self {
        Window {
            samples: Mutex::new(VecDeque::with_capacity(cap)),
            cap,
        }
    }
    pub fn push(&self, v: f64) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() >= self.cap {
            s.pop_front();
        }
        s.push_back(v);
    }
    /// (p50, p95) of the window (nearest rank, [`crate::percentile`]), or None
    /// when empty.
    pub fn percentiles(&self) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = {
            let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            s.iter().copied().collect()
        };
        v.sort_by(f64::total_cmp);
        Some((
            percentile_of_sorted(&v, 0.5)?,
            percentile_of_sorted(&v, 0.95)?,
        ))
    }
}

/// CPU time consumed by the calling thread, in seconds (Linux /proc).
pub fn thread_cpu_seconds() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) in parentheses.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 here.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Resident set size of this process in bytes, from `VmRSS` in `/proc/self/status` (in kB,
/// whatever the page size: 4 KiB on a Pi 4, 16 KiB on a Pi 5's kernel).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_vm_rss)
        .unwrap_or(0)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut f = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = f.next()?.parse().ok()?;
    match f.next() {
        Some("kB") | None => Some(n * 1024),
        _ => None,
    }
}

/// The board's CPU temperature in °C, where it exposes one.
pub fn cpu_temperature() -> Option<f64> {
    let s = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp").ok()?;
    Some(s.trim().parse::<f64>().ok()? / 1000.0)
}

/// Upper bounds (seconds) of the inference-latency histogram's buckets (`/metrics`).
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5,
];

/// A cumulative histogram of durations since start (Prometheus style): a count per bucket of
/// [`LATENCY_BUCKETS_S`] (non-cumulative here; cumulated when read), the count and the sum.
/// Lock-free: one relaxed add per field per sample.
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A consistent-enough reading of a [`Histogram`]: cumulative bucket counts (the last one is
/// `+Inf`, equal to `count`), the count and the sum in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramReading {
    pub cumulative: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_s: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// One sample of `ms` milliseconds (negative or NaN counts as 0).
    pub fn observe_ms(&self, ms: f64) {
        let s = if ms.is_finite() {
            ms.max(0.0) / 1000.0
        } else {
            0.0
        };
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&le| s <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add((s * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    /// The buckets cumulated, with `+Inf` (as `f64::INFINITY`) last. Read while samples
    /// arrive, the count is taken first and every bucket is capped at it: buckets stay
    /// monotonic and `+Inf` equals the count.
    pub fn read(&self) -> HistogramReading {
        let count = self.count.load(Ordering::Relaxed);
        let sum_s = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let mut acc = 0u64;
        let mut cumulative = Vec::with_capacity(LATENCY_BUCKETS_S.len() + 1);
        for (b, &le) in self.buckets.iter().zip(LATENCY_BUCKETS_S.iter()) {
            acc += b.load(Ordering::Relaxed);
            cumulative.push((le, acc.min(count)));
        }
        cumulative.push((f64::INFINITY, count));
        HistogramReading {
            cumulative,
            count,
            sum_s,
        }
    }
}

#[derive(Default)]
pub struct StageCpu {
    micros: AtomicU64,
}

impl StageCpu {
    pub fn set(&self, secs: f64) {
        self.micros.store((secs * 1e6) as u64, Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        self.micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

pub struct Stats {
    pub started: Instant,
    pub captured: AtomicU64,
    /// Frames evicted between capture and detection (latest frame wins).
    pub dropped_capture: Arc<AtomicU64>,
    /// Frames skipped by the detection rate cap.
    pub skipped_rate: AtomicU64,
    /// Frames not detected while detection is switched off (`<base>/detect/set`).
    pub skipped_disabled: AtomicU64,
    /// Results evicted between detection and publishing.
    pub dropped_results: Arc<AtomicU64>,
    pub processed: AtomicU64,
    pub source_errors: AtomicU64,
    pub detect_errors: AtomicU64,
    pub inference_ms: Window,
    /// Every inference's duration since start, for `/metrics`.
    pub inference_hist: Histogram,
    /// Capture → publish hand-off latency.
    pub latency_ms: Window,
    pub cpu_capture: StageCpu,
    pub cpu_detect: StageCpu,
    pub cpu_publish: StageCpu,
    /// Bumped by the detection thread for each frame it receives: the watchdog's signal of
    /// real progress.
    pub progress: AtomicU64,
    /// When `progress` was last bumped: microseconds after `started` (0: never).
    pub last_progress_us: AtomicU64,
    /// `SourceState` of the capture thread.
    pub source_state: std::sync::atomic::AtomicU8,
    /// Times the source went silent for `source.stall_timeout_s`.
    pub stalls: AtomicU64,
    /// Times the source was opened again (after an error or a stall).
    pub reopens: AtomicU64,
    /// Unusable items skipped (an empty or corrupt image).
    pub skipped_items: AtomicU64,
    pub capture_queue: AtomicU64,
    pub result_queue: AtomicU64,
}

impl Stats {
    /// A frame reached detection now.
    pub fn note_progress(&self) {
        self.progress.fetch_add(1, Ordering::Relaxed);
        let us = (self.started.elapsed().as_micros() as u64).max(1);
        self.last_progress_us.store(us, Ordering::Relaxed);
    }
    /// How long since a frame last reached detection (None: none has yet).
    pub fn since_progress(&self) -> Option<std::time::Duration> {
        let us = self.last_progress_us.load(Ordering::Relaxed);
        (us > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(std::time::Duration::from_micros(us))
        })
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            captured: AtomicU64::new(0),
            dropped_capture: Arc::new(AtomicU64::new(0)),
            skipped_rate: AtomicU64::new(0),
            skipped_disabled: AtomicU64::new(0),
            dropped_results: Arc::new(AtomicU64::new(0)),
            processed: AtomicU64::new(0),
            source_errors: AtomicU64::new(0),
            detect_errors: AtomicU64::new(0),
            inference_ms: Window::new(256),
            inference_hist: Histogram::default(),
            latency_ms: Window::new(256),
            cpu_capture: StageCpu::default(),
            cpu_detect: StageCpu::default(),
            cpu_publish: StageCpu::default(),
            progress: AtomicU64::new(0),
            last_progress_us: AtomicU64::new(0),
            source_state: std::sync::atomic::AtomicU8::new(0),
            stalls: AtomicU64::new(0),
            reopens: AtomicU64::new(0),
            skipped_items: AtomicU64::new(0),
            capture_queue: AtomicU64::new(0),
            result_queue: AtomicU64::new(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_percentiles_and_bound() {
        let w = Window::new(100);
        assert!(w.percentiles().is_none());
        for i in 0..1000 {
            w.push(i as f64);
        }
        // The last 100 samples, 900..=999; nearest rank: the 50th and 95th.
        let (p50, p95) = w.percentiles().unwrap();
        assert_eq!((p50, p95), (949.0, 994.0));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        let h = Histogram::default();
        let r = h.read();
        assert_eq!(r.count, 0);
        assert!(r.cumulative.iter().all(|&(_, n)| n == 0));
        // 3 ms, 10 ms (on a bound: le is inclusive), 60 ms, 4 s (beyond every bound), NaN → 0.
        for ms in [3.0, 10.0, 60.0, 4000.0, f64::NAN] {
            h.observe_ms(ms);
        }
        let r = h.read();
        assert_eq!(r.count, 5);
        assert!((r.sum_s - 4.073).abs() < 1e-6, "{}", r.sum_s);
        let at = |le: f64| r.cumulative.iter().find(|b| b.0 == le).unwrap().1;
        assert_eq!(at(0.005), 2, "3 ms and the NaN");
        assert_eq!(at(0.01), 3);
        assert_eq!(at(0.05), 3);
        assert_eq!(at(0.075), 4);
        assert_eq!(at(2.5), 4);
        assert_eq!(r.cumulative.last(), Some(&(f64::INFINITY, 5)));
        assert!(r.cumulative.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn progress_age() {
        let s = Stats::default();
        assert_eq!(s.since_progress(), None);
        s.note_progress();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let age = s.since_progress().unwrap();
        assert!(age >= std::time::Duration::from_millis(25), "{age:?}");
        assert_eq!(s.progress.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn rss_counts_kilobytes_not_pages() {
        let status = "Name:\tedgecam\nVmHWM:\t  9000 kB\nVmRSS:\t   51200 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(51200 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        // The live figure agrees with statm times the system's own page size, whatever it is.
        // Other tests allocate concurrently, so compare readings taken while statm held still.
        let page = std::process::Command::new("getconf")
            .arg("PAGESIZE")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        let Some(page) = page else { return };
        let statm = || -> u64 {
            let s = std::fs::read_to_string("/proc/self/statm").unwrap();
            s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * page
        };
        let mut last = (0, 0);
        for _ in 0..200 {
            let (before, rss, after) = (statm(), rss_bytes(), statm());
            if before == after {
                // VmRSS and statm count the same pages (statm may round differently).
                let (a, b) = (rss as f64, before as f64);
                if (a - b).abs() / b < 0.05 {
                    return;
                }
            }
            last = (rss, before);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("VmRSS {} never agreed with statm {}", last.0, last.1);
    }

    #[test]
    fn process_figures_are_readable() {
        assert!(rss_bytes() > 0);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(thread_cpu_seconds() >= 0.0);
    }
}
