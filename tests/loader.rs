//! Loader tests on the real models in /work/shared/models (or `$EDGECAM_MODELS`),
//! the writer round trip, and robustness against corrupted files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use edgecam::engine::graph::{Graph, Op};
use edgecam::engine::tflite::{load_bytes, load_file, write_model};
use edgecam::engine::{DType, EngineError};

mod common;
use common::Rng;

fn models_dir() -> PathBuf {
    std::env::var_os("EDGECAM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/models"))
}

fn model_path(name: &str) -> Option<PathBuf> {
    let p = models_dir().join(format!("{name}.tflite"));
    if p.exists() {
        Some(p)
    } else {
        eprintln!("note: {} missing, test skipped", p.display());
        None
    }
}

fn op_counts(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for n in &g.nodes {
        *m.entry(n.op.name()).or_insert(0) += 1;
    }
    m
}

struct Expect {
    name: &'static str,
    tensors: usize,
    input: (&'static [usize], DType),
    outputs: [&'static [usize]; 2],
    ops: &'static [(&'static str, usize)],
    signature: bool,
}

/// Numbers computed once with TFLite's Python schema reader (ai_edge_litert.schema_py_generated).
const MODELS: &[Expect] = &[
    Expect {
        name: "ssd_mobilenetv2_oidv4_fp16",
        tensors: 389,
        input: (&[1, 300, 300, 3], DType::F32),
        outputs: [&[1, 1917, 4], &[1, 1917, 24]],
        ops: &[
            ("ADD", 10),
            ("CONCATENATION", 2),
            ("CONV_2D", 55),
            ("DEPTHWISE_CONV_2D", 17),
            ("DEQUANTIZE", 144),
            ("RESHAPE", 13),
        ],
        signature: false,
    },
    Expect {
        name: "ssd_mobilenetv2_oidv4_fp32",
        tensors: 245,
        input: (&[1, 300, 300, 3], DType::F32),
        outputs: [&[1, 1917, 4], &[1, 1917, 24]],
        ops: &[
            ("ADD", 10),
            ("CONCATENATION", 2),
            ("CONV_2D", 55),
            ("DEPTHWISE_CONV_2D", 17),
            ("RESHAPE", 13),
        ],
        signature: true,
    },
    Expect {
        name: "ssd_mobilenetv2_oidv4_int8",
        tensors: 256,
        input: (&[1, 300, 300, 3], DType::I8),
        outputs: [&[1, 1917, 4], &[1, 1917, 24]],
        ops: &[
            ("ADD", 10),
            ("CONCATENATION", 2),
            ("CONV_2D", 55),
            ("DEPTHWISE_CONV_2D", 17),
            ("QUANTIZE", 11),
            ("RESHAPE", 13),
        ],
        signature: true,
    },
    Expect {
        name: "face_detection_short_range_fp16",
        tensors: 250,
        input: (&[1, 128, 128, 3], DType::F32),
        outputs: [&[1, 896, 16], &[1, 896, 1]],
        ops: &[
            ("ADD", 16),
            ("CONCATENATION", 2),
            ("CONV_2D", 21),
            ("DEPTHWISE_CONV_2D", 16),
            ("DEQUANTIZE", 74),
            ("MAX_POOL_2D", 3),
            ("PAD", 11),
            ("RELU", 17),
            ("RESHAPE", 4),
        ],
        signature: false,
    },
    Expect {
        name: "face_detection_full_range_fp16",
        tensors: 544,
        input: (&[1, 192, 192, 3], DType::F32),
        outputs: [&[1, 2304, 16], &[1, 2304, 1]],
        ops: &[
            ("ADD", 23),
            ("CONV_2D", 49),
            ("DEPTHWISE_CONV_2D", 40),
            ("DEQUANTIZE", 178),
            ("MAX_POOL_2D", 4),
            ("PAD", 8),
            ("RELU", 47),
            ("RESHAPE", 2),
            ("RESIZE_BILINEAR", 3),
        ],
        signature: false,
    },
];

#[test]
fn real_models_load_with_expected_structure() {
    for e in MODELS {
        let Some(path) = model_path(e.name) else {
            continue;
        };
        let t0 = std::time::Instant::now();
        let g = load_file(&path).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        eprintln!("{}: loaded in {:?}", e.name, t0.elapsed());
        assert_eq!(g.tensors.len(), e.tensors, "{}", e.name);
        assert_eq!(g.inputs.len(), 1, "{}", e.name);
        let inp = &g.tensors[g.inputs[0]];
        assert_eq!(inp.shape, e.input.0, "{}", e.name);
        assert_eq!(inp.dtype, e.input.1, "{}", e.name);
        assert_eq!(g.outputs.len(), 2, "{}", e.name);
        for (o, want) in g.outputs.iter().zip(e.outputs) {
            assert_eq!(g.tensors[*o].shape, want, "{}", e.name);
            assert_eq!(g.tensors[*o].dtype, e.input.1, "{}", e.name);
        }
        let want: BTreeMap<&str, usize> = e.ops.iter().copied().collect();
        assert_eq!(op_counts(&g), want, "{}", e.name);
        assert_eq!(!g.input_names.is_empty(), e.signature, "{}", e.name);
        if e.signature {
            assert_eq!(g.input_names, ["normalized_input_image_tensor"]);
            assert_eq!(
                g.output_names,
                ["raw_outputs/box_encodings", "raw_outputs/class_predictions"]
            );
        }
        // Every constant is readable and has the declared size.
        for (i, t) in g.tensors.iter().enumerate() {
            if t.is_const() {
                assert_eq!(g.const_bytes(i).map(|b| b.len()), Some(t.byte_len()));
            }
        }
    }
}

#[test]
fn int8_model_quantization() {
    let Some(path) = model_path("ssd_mobilenetv2_oidv4_int8") else {
        return;
    };
    let g = load_file(path).unwrap();
    let q = g.tensors[g.inputs[0]].quant.as_ref().unwrap();
    assert_eq!(q.scale.len(), 1);
    assert_eq!(q.scale[0] as f64, 0.007811613846570253f64);
    assert_eq!(q.zero_point, [0]);
    let q0 = g.tensors[g.outputs[0]].quant.as_ref().unwrap();
    assert_eq!(
        (q0.scale0() as f64, q0.zp0()),
        (0.33270925283432007f64, 114)
    );
    let q1 = g.tensors[g.outputs[1]].quant.as_ref().unwrap();
    assert_eq!((q1.scale0() as f64, q1.zp0()), (0.11148913949728012f64, 44));
    // Per-channel conv weights: one scale per output channel (axis 0).
    let mut per_channel = 0;
    for n in &g.nodes {
        if let Op::Conv2D(_) = n.op {
            let w = &g.tensors[n.inputs[1].unwrap()];
            assert!(w.is_const());
            let q = w.quant.as_ref().unwrap();
            if !q.is_per_tensor() {
                assert_eq!(q.axis, 0);
                assert_eq!(q.scale.len(), w.shape[0]);
                per_channel += 1;
            }
        }
    }
    assert!(per_channel > 0);
    // Most of its buffers are stored after the flatbuffer (Buffer.offset/size).
    let after_fb = g
        .tensors
        .iter()
        .filter(|t| {
            matches!(t.data, Some(edgecam::engine::tensor::ConstData::File { offset, .. }) if offset > 500_000)
        })
        .count();
    assert!(after_fb >= 90, "{after_fb}");
}

fn assert_same_graph(a: &Graph, b: &Graph, what: &str) {
    assert_eq!(a.tensors.len(), b.tensors.len(), "{what}");
    for (i, (x, y)) in a.tensors.iter().zip(&b.tensors).enumerate() {
        assert_eq!(x.name, y.name, "{what} tensor {i}");
        assert_eq!(x.dtype, y.dtype, "{what} tensor {i}");
        assert_eq!(x.shape, y.shape, "{what} tensor {i}");
        assert_eq!(x.quant, y.quant, "{what} tensor {i}");
        assert_eq!(a.const_bytes(i), b.const_bytes(i), "{what} tensor {i} data");
    }
    assert_eq!(a.nodes.len(), b.nodes.len(), "{what}");
    for (i, (x, y)) in a.nodes.iter().zip(&b.nodes).enumerate() {
        assert_eq!(x.op, y.op, "{what} node {i}");
        assert_eq!(x.inputs, y.inputs, "{what} node {i}");
        assert_eq!(x.outputs, y.outputs, "{what} node {i}");
    }
    assert_eq!(a.inputs, b.inputs, "{what}");
    assert_eq!(a.outputs, b.outputs, "{what}");
    assert_eq!(a.description, b.description, "{what}");
    if !a.input_names.is_empty() {
        assert_eq!(a.input_names, b.input_names, "{what}");
        assert_eq!(a.output_names, b.output_names, "{what}");
    }
}

#[test]
fn real_models_round_trip_through_writer() {
    for e in MODELS {
        let Some(path) = model_path(e.name) else {
            continue;
        };
        let g = load_file(&path).unwrap();
        let bytes = write_model(&g);
        let g2 = load_bytes(&bytes).unwrap_or_else(|err| panic!("{}: reload: {err}", e.name));
        assert_same_graph(&g, &g2, e.name);
        // Writing is deterministic.
        assert_eq!(write_model(&g2), bytes, "{}", e.name);
    }
}

fn small_model() -> Option<Vec<u8>> {
    model_path("face_detection_short_range_fp16").map(|p| std::fs::read(p).unwrap())
}

#[test]
fn truncated_files_are_errors() {
    let Some(bytes) = small_model() else { return };
    let mut cuts: Vec<usize> = (0..256).collect();
    cuts.extend((0..bytes.len()).step_by(997));
    cuts.push(bytes.len() - 1);
    for cut in cuts {
        assert!(load_bytes(&bytes[..cut]).is_err(), "cut at {cut} loaded");
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let Some(bytes) = small_model() else { return };
    // The flatbuffer structure (vtables, offsets, tables) sits outside the big weight
    // buffers; bias the positions towards the first and last 16 KiB.
    let mut rng = Rng::xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut err) = (0, 0);
    for i in 0..3000 {
        let mut b = bytes.clone();
        let pos = match i % 3 {
            0 => rng.below(16384.min(b.len())),
            1 => b.len() - 1 - rng.below(16384.min(b.len())),
            _ => rng.below(b.len()),
        };
        b[pos] ^= 1 << rng.below(8);
        match load_bytes(&b) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    eprintln!("bit flips: {ok} loaded, {err} rejected");
}

#[test]
fn wrong_identifier_is_an_error() {
    let Some(mut bytes) = small_model() else {
        return;
    };
    bytes[4..8].copy_from_slice(b"TFL2");
    let e = load_bytes(&bytes).unwrap_err();
    assert!(matches!(e, EngineError::InvalidModel(_)), "{e}");
    assert!(e.to_string().contains("TFL2"), "{e}");
}

#[test]
fn empty_and_tiny_inputs_are_errors() {
    for n in 0..16 {
        assert!(load_bytes(&vec![0u8; n]).is_err());
        assert!(load_bytes(&vec![0xffu8; n]).is_err());
    }
}

/// Every activation of the real SSD models (int8 and float) starts on a 64-byte boundary, so
/// that the kernels' 64-byte vector loads and stores never straddle two cache lines.
#[test]
fn activations_start_on_cache_lines() {
    use edgecam::engine::{Interpreter, InterpreterOptions};
    for name in ["ssd_mobilenetv2_oidv4_int8", "ssd_mobilenetv2_oidv4_fp32"] {
        // The copies bundled with the repository.
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("models/{name}.tflite"));
        let graph = edgecam::engine::tflite::load_file(&path).unwrap();
        let opts = InterpreterOptions {
            keep_intermediates: true,
            ..Default::default()
        };
        let it = Interpreter::with_options(graph, &opts).unwrap();
        let mut checked = 0;
        for t in 0..it.tensors().len() {
            if it.tensors()[t].is_const() {
                continue;
            }
            let Ok(v) = it.tensor(t) else { continue };
            if v.bytes.is_empty() {
                continue;
            }
            assert_eq!(v.bytes.as_ptr() as usize % 64, 0, "{name}: tensor {t}");
            checked += 1;
        }
        assert!(checked > 50, "{name}: only {checked} activations");
    }
}
