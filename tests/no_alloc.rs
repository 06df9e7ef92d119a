//! Issue 4, item 4: no allocation per inference. A counting global allocator wraps the system
//! one; after warm-up invocations, further invocations of the bundled SSD models (int8, float32,
//! float16 weights) must not allocate at all, on every kernel path this CPU offers, with one and
//! two inference threads. Under qemu (aarch64), to keep the run short, the portable scalar path
//! (checked on x86_64) and the float16-weight model (the float32 kernels) are left out, and the
//! float32 model runs on the best path only (the NEON paths share their float kernels).
//!
//! Built without the test harness (`harness = false` in Cargo.toml): the harness's own thread
//! allocates while a test runs (its "running for over 60 seconds" notice under qemu), which a
//! process-wide counter would blame on the engine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use edgecam::engine::kernels::KernelPath;
use edgecam::engine::{tflite, Interpreter, InterpreterOptions};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    invoke_does_not_allocate();
    detect_does_not_allocate();
    println!("no_alloc: ok");
}

/// Issue 23, item 3: the whole detect path (preprocessing a camera-sized frame, inference,
/// decoding and NMS, labelled detections) allocates nothing per frame after warm-up, for the
/// bundled SSD (raw outputs decoded with its anchors) and Coral's SSD (TFLite_Detection_PostProcess),
/// on the best kernel path with two threads, on a bundled still scaled to 1280x720 (a Pi
/// camera's frame) and to 300x300 (no resize).
fn detect_does_not_allocate() {
    use edgecam::detect::{Detector, DetectorConfig};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let still = image::open(root.join("tests/data/person.jpg"))
        .unwrap()
        .to_rgb8();
    let frames = [
        image::imageops::resize(&still, 1280, 720, image::imageops::FilterType::Triangle),
        image::imageops::resize(&still, 300, 300, image::imageops::FilterType::Triangle),
    ];
    let mut failures = Vec::new();
    // Under qemu, to keep the run short: the bundled SSD on the camera-sized frame only.
    let emulated = cfg!(target_arch = "aarch64");
    let models = [
        ("int8", "models/ssd_mobilenetv2_oidv4_int8.tflite", None),
        (
            "coral",
            "models/ssd_mobilenet_v2_coco_quant_postprocess.tflite",
            Some("models/coco_labels.txt"),
        ),
    ];
    let (models, frames) = if emulated {
        (&models[..1], &frames[..1])
    } else {
        (&models[..], &frames[..])
    };
    for &(name, model, labels) in models {
        let mut cfg = DetectorConfig::new(root.join(model));
        cfg.labels = labels.map(|l| root.join(l));
        cfg.score_threshold = Some(0.3);
        cfg.engine = InterpreterOptions {
            threads: 2,
            ..Default::default()
        };
        let mut det = Detector::from_config(&cfg).unwrap();
        let mut out = Vec::new();
        for f in frames {
            for _ in 0..3 {
                det.detect_into(f, &mut out).unwrap();
            }
            assert!(!out.is_empty(), "{name}: the still has objects");
            let before = ALLOCS.load(Ordering::SeqCst);
            for _ in 0..3 {
                det.detect_into(f, &mut out).unwrap();
            }
            let n = ALLOCS.load(Ordering::SeqCst) - before;
            if n != 0 {
                failures.push(format!(
                    "{name} {}x{}: {n} allocations in 3 frames ({} detections a frame)",
                    f.width(),
                    f.height(),
                    out.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn invoke_does_not_allocate() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    let emulated = cfg!(target_arch = "aarch64");
    // The bundled SSD's variants, and Coral's uint8 SSD ("coral").
    let variants: &[&str] = if emulated {
        &["int8", "fp32", "coral"]
    } else {
        &["int8", "fp32", "fp16", "coral"]
    };
    let best = KernelPath::best();
    for variant in variants {
        let model = if *variant == "coral" {
            root.join("models/ssd_mobilenet_v2_coco_quant_postprocess.tflite")
        } else {
            root.join(format!("models/ssd_mobilenetv2_oidv4_{variant}.tflite"))
        };
        for path in KernelPath::available() {
            // Under qemu: int8 on every NEON path; float (one kernel for all of them) on the best.
            if emulated
                && (path == KernelPath::Scalar
                    || (!matches!(*variant, "int8" | "coral") && path != best))
            {
                continue;
            }
            for threads in [1, 2] {
                let graph = tflite::load_file(&model).unwrap();
                let opts = InterpreterOptions {
                    kernels: path,
                    threads,
                    ..Default::default()
                };
                let mut it = Interpreter::with_options(graph, &opts).unwrap();
                // Warm-up. The pool's workers claim tasks dynamically, so the one
                // allocation of a thread's kernel working memory (kernels::scratch)
                // happens in whichever early invocation first hands that thread the
                // largest task of a kind: give every thread several chances.
                for _ in 0..3 {
                    it.invoke().unwrap();
                }
                let before = ALLOCS.load(Ordering::SeqCst);
                for _ in 0..2 {
                    it.invoke().unwrap();
                }
                let n = ALLOCS.load(Ordering::SeqCst) - before;
                if n != 0 {
                    failures.push(format!(
                        "{variant} {path} x{threads}: {n} allocations in 2 invocations"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
