//! `edgecam bench`: a model timed on a fixed input after warm-up.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::{tflite, DType, Interpreter, InterpreterOptions, KernelRequest};
use crate::percentile::percentile_of_sorted;

// No doc comment here: the subcommand's help text is the `Cmd::Bench` variant's in `main.rs`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The .tflite model to time.
    #[arg(long)]
    pub model: PathBuf,
    /// Inference threads (the engine's own pool; the calling thread counts).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Timed inferences (at least 1): the median and p95 are over these.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// Untimed inferences before the timed ones.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Warm up for at least this many milliseconds too (the core's clock and the
    /// scheduler's placement of the threads settle over the first ~100 ms).
    #[arg(long, default_value_t = 0)]
    pub warmup_ms: u64,
    /// Kernel path: auto, scalar, neon, dotprod, i8mm, avx2 or avx512 (default: EDGECAM_KERNELS, else auto).
    #[arg(long)]
    pub kernels: Option<String>,
    /// Cores to pin the worker threads to, e.g. 1,2,3.
    #[arg(long, value_delimiter = ',')]
    pub cores: Vec<usize>,
    /// Also print the time per operator type (text; with --json a "profile" key).
    #[arg(long)]
    pub profile: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keep the model loaded and time one round per line of standard input
    /// (`ITERATIONS WARMUP [WARMUP_MS]`), one result per round, until end of input (for
    /// scripts/bench-peers, which keeps its peers' interpreters loaded the same way).
    #[arg(long)]
    pub serve: bool,
}

/// Loads the model, fills its inputs with a fixed ramp and times it: one round, or with
/// `--serve` one round per line of standard input.
pub fn run(args: &BenchArgs) -> Result<()> {
    let BenchArgs {
        ref model,
        threads,
        iterations,
        warmup,
        warmup_ms,
        ref kernels,
        ref cores,
        profile,
        json,
        serve,
    } = *args;
    anyhow::ensure!(iterations > 0, "--iterations must be at least 1");
    anyhow::ensure!(
        (1..=64).contains(&threads),
        "--threads must be 1..=64, got {threads}"
    );
    let mut opts = match kernels.as_deref() {
        // An explicit --kernels wins over EDGECAM_KERNELS.
        Some(k) => {
            let path = crate::engine::kernels::KernelPath::resolve(k)
                .map_err(|e| anyhow::anyhow!("--kernels: {e}"))?;
            tracing::info!(kernels = %path, threads, "engine kernel path");
            InterpreterOptions {
                kernels: path,
                threads,
                cores: cores.to_vec(),
                ..Default::default()
            }
        }
        None => InterpreterOptions::resolve(KernelRequest::Auto, threads, cores)?,
    };
    opts.profile = profile;
    let path = opts.kernels;
    let graph = tflite::load_file(model)?;
    let mut it = Interpreter::with_options(graph, &opts)?;
    // A fixed, deterministic input: a smooth ramp over the input's value range.
    for i in 0..it.input_count() {
        let bytes = it.input_bytes_mut(i)?;
        for (k, b) in bytes.iter_mut().enumerate() {
            *b = (k * 7 % 251) as u8;
        }
        let info = it.input_info(i)?.clone();
        if info.dtype == DType::F32 {
            let n = info.num_elements();
            let v: Vec<f32> = (0..n)
                .map(|k| ((k * 7 % 255) as f32) / 127.5 - 1.0)
                .collect();
            it.set_input(i, DType::F32, &v)?;
        }
    }
    let round = BenchRound {
        model,
        threads,
        path,
        profile,
        json,
    };
    if !serve {
        return round.run(&mut it, iterations, warmup, warmup_ms);
    }
    for line in std::io::stdin().lines() {
        let line = line?;
        let nums: Option<Vec<usize>> = line.split_whitespace().map(|s| s.parse().ok()).collect();
        let (iterations, warmup, ms) = match nums.as_deref() {
            Some([]) => continue,
            Some(&[i, w]) => (i, w, 0),
            Some(&[i, w, ms]) => (i, w, ms as u64),
            _ => anyhow::bail!(
                "--serve: expected a line `ITERATIONS WARMUP [WARMUP_MS]`, got {line:?}"
            ),
        };
        anyhow::ensure!(iterations > 0, "--serve: ITERATIONS must be at least 1");
        round.run(&mut it, iterations, warmup, ms)?;
        std::io::Write::flush(&mut std::io::stdout())?;
    }
    Ok(())
}

/// What `bench` prints with each round's timings.
struct BenchRound<'a> {
    model: &'a Path,
    threads: usize,
    path: crate::engine::kernels::KernelPath,
    profile: bool,
    json: bool,
}

impl BenchRound<'_> {
    /// At least `warmup` untimed inferences over at least `warmup_ms`, then `iterations`
    /// timed ones; prints the result.
    fn run(
        &self,
        it: &mut Interpreter,
        iterations: usize,
        warmup: usize,
        warmup_ms: u64,
    ) -> Result<()> {
        let BenchRound {
            model,
            threads,
            path,
            profile,
            json,
        } = *self;
        let (t0, min) = (
            std::time::Instant::now(),
            std::time::Duration::from_millis(warmup_ms),
        );
        let mut n = 0;
        while n < warmup || t0.elapsed() < min {
            it.invoke()?;
            n += 1;
        }
        it.reset_profile();
        let mut ms = Vec::with_capacity(iterations);
        let cpu0 = process_cpu_seconds();
        for _ in 0..iterations {
            let t = std::time::Instant::now();
            it.invoke()?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        // CPU time of all threads per inference: robust on a busy machine, where the
        // wall-clock numbers include time the threads waited for a core.
        let cpu_ms = match (cpu0, process_cpu_seconds()) {
            (Some(a), Some(b)) => Some((b - a) * 1e3 / iterations as f64),
            _ => None,
        };
        ms.sort_by(f64::total_cmp);
        let median = percentile_of_sorted(&ms, 0.5).context("no iterations")?;
        let p95 = percentile_of_sorted(&ms, 0.95).context("no iterations")?;
        let (ops, runs) = it.profile();
        let per_run = |t: f64| t / runs.max(1) as f64;
        if json {
            let mut v = serde_json::json!({"median_ms": median, "p95_ms": p95, "threads": threads, "kernels": path.name(), "iterations": iterations, "cpu_ms_per_inference": cpu_ms});
            if profile {
                v["profile"] = ops
                .iter()
                .map(|p| serde_json::json!({"op": p.op, "nodes": p.nodes, "ms": per_run(p.total_ms)}))
                .collect();
                v["steps"] = it
                .step_profile()
                .iter()
                .map(|s| serde_json::json!({"step": s.step, "op": s.op, "output_shape": s.output_shape, "ms": per_run(s.total_ms)}))
                .collect();
            }
            println!("{v}");
        } else {
            println!(
            "{}: median {median:.2} ms, p95 {p95:.2} ms over {iterations} runs, threads {threads}, kernels {path}, cpu {} ms/inference",
            model.display(),
            cpu_ms.map_or("?".to_string(), |c| format!("{c:.2}"))
        );
            if profile {
                let total: f64 = ops.iter().map(|p| per_run(p.total_ms)).sum();
                println!(
                "per operator type, mean ms per inference (timed runs include profiling overhead):"
            );
                for p in &ops {
                    let ms = per_run(p.total_ms);
                    println!(
                        "  {:<28} {:>3} nodes {:>9.3} ms {:>5.1}%",
                        p.op,
                        p.nodes,
                        ms,
                        100.0 * ms / total.max(1e-9)
                    );
                }
                println!("slowest operators, mean ms per inference:");
                for s in it.step_profile().iter().take(PROFILE_STEPS) {
                    println!(
                        "  step {:>3} {:<24} {:<18} {:>9.3} ms",
                        s.step,
                        s.op,
                        format!("{:?}", s.output_shape),
                        per_run(s.total_ms)
                    );
                }
            }
        }
        Ok(())
    }
}

/// Operators listed by `bench --profile` (slowest first).
const PROFILE_STEPS: usize = 15;

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`,
/// in USER_HZ = 100 ticks per second), or `None` where unavailable.
fn process_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14, 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
