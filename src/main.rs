use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use edgecam::detect::model_desc::{Colour, ModelDesc};
use edgecam::detect::{detections_json, Detector, DetectorConfig};
use edgecam::engine::{tflite, DType, Interpreter, InterpreterOptions};
use edgecam::npy::NpyArray;
use edgecam::percentile::percentile_of_sorted;
use edgecam::preprocess::{Preprocessor, ResizeMode};

/// edgecam: int8 object detection on the edge, with live quantization-drift monitoring.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time a model on a fixed input after warm-up: median and p95 milliseconds.
    Bench {
        #[arg(long)]
        model: PathBuf,
        /// Inference threads (the engine's own pool; the calling thread counts).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Warm up for at least this many milliseconds too (the core's clock and the
        /// scheduler's placement of the threads settle over the first ~100 ms).
        #[arg(long, default_value_t = 0)]
        warmup_ms: u64,
        /// Kernel path: auto, scalar, neon, dotprod, i8mm, avx2 or avx512 (default: EDGECAM_KERNELS, else auto).
        #[arg(long)]
        kernels: Option<String>,
        /// Cores to pin the worker threads to, e.g. 1,2,3.
        #[arg(long, value_delimiter = ',')]
        cores: Vec<usize>,
        /// Also print the time per operator type (text; with --json a "profile" key).
        #[arg(long)]
        profile: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Keep the model loaded and time one round per line of standard input
        /// (`ITERATIONS WARMUP [WARMUP_MS]`), one result per round, until end of input (for
        /// scripts/bench-peers, which keeps its peers' interpreters loaded the same way).
        #[arg(long)]
        serve: bool,
    },
    /// Run the daemon: capture → int8 detector → MQTT (config: /etc/edgecam/edgecam.toml).
    Run {
        /// Configuration file (default /etc/edgecam/edgecam.toml); EDGECAM__SECTION__KEY variables override keys.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check the configuration as `run` would, short of streaming: the keys and values, the
    /// model with its labels and description, the CA and password files, and that the
    /// source opens and delivers a frame. Exit status: 0 good, 78 a configuration error,
    /// 69 the source (or, with --connect, the broker) is unavailable.
    CheckConfig {
        /// Configuration file (default /etc/edgecam/edgecam.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also connect to the MQTT broker (and log in) once.
        #[arg(long)]
        connect: bool,
    },
    /// Run a model on one .npy input and write every output as DIR/<index>.npy.
    Infer {
        #[arg(long)]
        model: PathBuf,
        /// Inference threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Detect objects in images; prints one JSON line per image.
    Detect {
        #[arg(long)]
        model: PathBuf,
        /// Label file (default: the description's `labels`).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Model description JSON (default: `<base>.json` next to the model, then `models/<base>.json`).
        #[arg(long)]
        desc: Option<PathBuf>,
        /// Score threshold (default: the description's).
        #[arg(long)]
        threshold: Option<f32>,
        /// Keep the aspect ratio (pad) instead of stretching to the model size.
        #[arg(long)]
        letterbox: bool,
        /// Inference threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Compare an int8 model with its float version over a source (quantization
    /// drift, offline): agreement F1, pseudo-mAP, raw-output SQNR, per-layer error.
    Evaluate {
        #[arg(long)]
        int8: PathBuf,
        #[arg(long)]
        float: PathBuf,
        /// A video file or stream (ffmpeg), a directory of images, an MJPEG clip or one image.
        #[arg(long)]
        source: String,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a self-contained HTML page with plots here.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Model description JSON (default: next to the int8 model).
        #[arg(long)]
        desc: Option<PathBuf>,
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Compare every k-th frame of the source.
        #[arg(long, default_value_t = 1)]
        every: usize,
        /// Stop after this many compared frames (0 = the whole source).
        #[arg(long, default_value_t = 0)]
        max_frames: usize,
        /// Score threshold of the comparison (default: shadow.score_threshold's default).
        #[arg(long)]
        threshold: Option<f32>,
        /// Skip the per-layer view (saves memory).
        #[arg(long)]
        no_layers: bool,
    },
    /// Preprocess an image exactly as `detect` does and write the float32
    /// NHWC tensor (normalised, before any quantisation) as .npy.
    Preprocess {
        /// Model description JSON (input size and normalisation).
        #[arg(long)]
        desc: PathBuf,
        #[arg(long)]
        letterbox: bool,
        #[arg(long)]
        out: PathBuf,
        image: PathBuf,
    },
}

fn resize_mode(letterbox: bool) -> ResizeMode {
    if letterbox {
        ResizeMode::Letterbox { pad: [0, 0, 0] }
    } else {
        ResizeMode::Stretch
    }
}

fn load_rgb(path: &Path) -> Result<image::RgbImage> {
    Ok(image::open(path)
        .with_context(|| format!("reading image {}", path.display()))?
        .to_rgb8())
}

fn detect(
    model: &Path,
    labels: Option<&Path>,
    desc: Option<&Path>,
    threshold: Option<f32>,
    letterbox: bool,
    threads: usize,
    images: &[PathBuf],
) -> Result<()> {
    let cfg = DetectorConfig {
        model: model.to_path_buf(),
        desc: desc.map(Path::to_path_buf),
        labels: labels.map(Path::to_path_buf),
        resize: resize_mode(letterbox),
        score_threshold: threshold,
        engine: InterpreterOptions::resolve("auto", threads, &[])?,
    };
    let mut det = Detector::from_config(&cfg)?;
    let mut found = Vec::new();
    for path in images {
        let img = load_rgb(path)?;
        det.detect_into(&img, &mut found)?;
        let line = detections_json(
            &path.display().to_string(),
            img.width(),
            img.height(),
            det.name(),
            det.inference_time().as_secs_f64() * 1e3,
            &found,
            &det.transform(),
        );
        println!("{line}");
    }
    Ok(())
}

fn preprocess(desc: &Path, letterbox: bool, out: &Path, image: &Path) -> Result<()> {
    let d = ModelDesc::load(desc)?;
    let i = &d.input;
    let mut pre = Preprocessor::new(
        i.width,
        i.height,
        i.mean,
        i.std,
        i.colour == Colour::Bgr,
        resize_mode(letterbox),
    )?;
    let img = load_rgb(image)?;
    let mut buf = vec![0f32; pre.len()];
    pre.to_f32(&img, &mut buf)?;
    NpyArray {
        dtype: DType::F32,
        shape: vec![1, i.height, i.width, 3],
        data: bytemuck::cast_slice(&buf).to_vec(),
    }
    .write(out)
}

fn infer(model: &Path, threads: usize, input: &Path, out: &Path) -> Result<()> {
    let graph = tflite::load_file(model)?;
    let mut it =
        Interpreter::with_options(graph, &InterpreterOptions::resolve("auto", threads, &[])?)?;
    let x = NpyArray::read(input)?;
    let info = it.input_info(0)?.clone();
    if x.dtype != info.dtype || x.shape != info.shape {
        anyhow::bail!(
            "input {} is {} {:?}, the model's input '{}' is {} {:?}",
            input.display(),
            x.dtype.name(),
            x.shape,
            info.name,
            info.dtype.name(),
            info.shape
        );
    }
    it.input_bytes_mut(0)?.copy_from_slice(&x.data);
    it.invoke()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for i in 0..it.output_count() {
        let t = it.output(i)?;
        let arr = NpyArray {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            data: t.bytes.to_vec(),
        };
        arr.write(&out.join(format!("{i}.npy")))?;
    }
    Ok(())
}

struct BenchArgs<'a> {
    model: &'a Path,
    threads: usize,
    iterations: usize,
    warmup: usize,
    warmup_ms: u64,
    kernels: Option<&'a str>,
    cores: &'a [usize],
    profile: bool,
    json: bool,
    serve: bool,
}

fn bench(a: BenchArgs<'_>) -> Result<()> {
    let BenchArgs {
        model,
        threads,
        iterations,
        warmup,
        warmup_ms,
        kernels,
        cores,
        profile,
        json,
        serve,
    } = a;
    anyhow::ensure!(iterations > 0, "--iterations must be at least 1");
    anyhow::ensure!(
        (1..=64).contains(&threads),
        "--threads must be 1..=64, got {threads}"
    );
    let mut opts = match kernels {
        // An explicit --kernels wins over EDGECAM_KERNELS.
        Some(k) => {
            let path = edgecam::engine::kernels::KernelPath::resolve(k)
                .map_err(|e| anyhow::anyhow!("--kernels: {e}"))?;
            tracing::info!(kernels = %path, threads, "engine kernel path");
            InterpreterOptions {
                kernels: path,
                threads,
                cores: cores.to_vec(),
                ..Default::default()
            }
        }
        None => InterpreterOptions::resolve("auto", threads, cores)?,
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
        if info.dtype == edgecam::engine::DType::F32 {
            let n = info.num_elements();
            let v: Vec<f32> = (0..n)
                .map(|k| ((k * 7 % 255) as f32) / 127.5 - 1.0)
                .collect();
            it.set_input(i, edgecam::engine::DType::F32, &v)?;
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
    path: edgecam::engine::kernels::KernelPath,
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

#[allow(clippy::too_many_arguments)]
fn evaluate(
    int8: &Path,
    float: &Path,
    source: &str,
    json: Option<&Path>,
    html: Option<&Path>,
    desc: Option<&Path>,
    labels: Option<&Path>,
    every: usize,
    max_frames: usize,
    threshold: Option<f32>,
    no_layers: bool,
) -> Result<()> {
    use edgecam::drift::evaluate::{self, EvalOptions};
    let mut o = EvalOptions::new(int8, float);
    o.desc = desc.map(Path::to_path_buf);
    o.labels = labels.map(Path::to_path_buf);
    o.every = every.max(1);
    o.max_frames = max_frames;
    o.layers = !no_layers;
    if let Some(t) = threshold {
        anyhow::ensure!((0.0..=1.0).contains(&t), "--threshold must be in 0..1");
        o.score_threshold = t;
    }
    let ev = evaluate::run(o, source, |c, n| {
        let (p, r, f) = c.prf();
        eprintln!(
            "frame {:>5} ({n} compared): F1 {f:.3} (P {p:.3} R {r:.3}), float {} / int8 {} objects",
            c.seq,
            c.float.len(),
            c.int8.len()
        );
    })?;
    let report = ev.report();
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = html {
        std::fs::write(p, edgecam::drift::html::render(&report))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    print!("{}", ev.summary_table());
    Ok(())
}

fn check_config(path: Option<&Path>, connect: bool) -> Result<()> {
    use edgecam::exit::Failure;
    let unavailable = |e: anyhow::Error| anyhow::Error::new(Failure::Unavailable(e));
    let cfg = edgecam::config::Config::load(path)?;
    let mut prepared = edgecam::app::prepare(&cfg).map_err(edgecam::exit::config)?;
    println!(
        "configuration OK: model {} ({} labels), base topic {}",
        cfg.detector.model.display(),
        prepared.infer.labels().len(),
        cfg.base_topic()
    );
    // The source: opens, and delivers a frame within the stall timeout.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let src = &mut prepared.source;
    src.open(&stop)
        .with_context(|| format!("source: {}", src.describe()))
        .map_err(unavailable)?;
    // As the daemon allows a freshly opened source for its first frame.
    let stall = std::time::Duration::from_secs_f64(cfg.source.stall_timeout_s)
        + edgecam::app::pipeline::FIRST_FRAME_GRACE;
    let t0 = std::time::Instant::now();
    loop {
        use edgecam::capture::Read;
        match src
            .read(edgecam::capture::READ_WAIT)
            .with_context(|| format!("source: {}", src.describe()))
            .map_err(unavailable)?
        {
            Read::Frame(img) => {
                println!(
                    "source OK: {} delivered a {}x{} frame",
                    src.describe(),
                    img.width(),
                    img.height()
                );
                break;
            }
            Read::Pending if t0.elapsed() < stall => {}
            Read::Pending => {
                return Err(unavailable(anyhow::anyhow!(
                    "source: {} opened but sent no frame within {stall:?} (source.stall_timeout_s + 10 s)",
                    src.describe()
                )))
            }
            Read::Skipped(e) => println!("source: skipping an unusable frame: {e:#}"),
            Read::Eof | Read::Truncated(_) => {
                return Err(unavailable(anyhow::anyhow!(
                    "source: {} has no frame",
                    src.describe()
                )))
            }
        }
    }
    if cfg.mqtt.host.is_empty() {
        println!("broker: none configured (run starts an embedded one on 127.0.0.1)");
    } else if connect {
        let settings = edgecam::app::mqtt_settings(&cfg);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match rt.block_on(edgecam::publish::mqtt::probe(
            &settings,
            std::time::Duration::from_secs(10),
        )) {
            Ok(()) => println!(
                "broker OK: connected to {}:{}",
                settings.host, settings.port
            ),
            Err((cause, e)) => {
                return Err(unavailable(anyhow::anyhow!(
                    "broker {}:{}: connection failed ({}): {e}; {}",
                    settings.host,
                    settings.port,
                    cause.as_str(),
                    cause.hint()
                )))
            }
        }
    } else {
        println!(
            "broker: {}:{} (not contacted; --connect tries it)",
            cfg.mqtt.host, cfg.mqtt.port
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    edgecam::telemetry::init(cli.log_json, cli.verbose);
    let r = match &cli.cmd {
        Cmd::Bench {
            model,
            threads,
            iterations,
            warmup,
            warmup_ms,
            kernels,
            cores,
            profile,
            json,
            serve,
        } => bench(BenchArgs {
            model,
            threads: *threads,
            iterations: *iterations,
            warmup: *warmup,
            warmup_ms: *warmup_ms,
            kernels: kernels.as_deref(),
            cores,
            profile: *profile,
            json: *json,
            serve: *serve,
        }),
        Cmd::Run { config } => {
            edgecam::config::Config::load(config.as_deref()).and_then(edgecam::app::run)
        }
        Cmd::CheckConfig { config, connect } => check_config(config.as_deref(), *connect),
        Cmd::Infer {
            model,
            threads,
            input,
            out,
        } => infer(model, *threads, input, out),
        Cmd::Detect {
            model,
            labels,
            desc,
            threshold,
            letterbox,
            threads,
            images,
        } => detect(
            model,
            labels.as_deref(),
            desc.as_deref(),
            *threshold,
            *letterbox,
            *threads,
            images,
        ),
        Cmd::Evaluate {
            int8,
            float,
            source,
            json,
            html,
            desc,
            labels,
            every,
            max_frames,
            threshold,
            no_layers,
        } => evaluate(
            int8,
            float,
            source,
            json.as_deref(),
            html.as_deref(),
            desc.as_deref(),
            labels.as_deref(),
            *every,
            *max_frames,
            *threshold,
            *no_layers,
        ),
        Cmd::Preprocess {
            desc,
            letterbox,
            out,
            image,
        } => preprocess(desc, *letterbox, out, image),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecam: error: {e:#}");
            ExitCode::from(edgecam::exit::status(&e))
        }
    }
}
