//! Replays single-operator fixtures produced by TFLite's reference kernels
//! (`scripts/gen_op_fixtures.py`, resolver BUILTIN_REF) through edgecam's
//! interpreter. Integer outputs must match exactly; float outputs within 1e-5
//! relative (plus a tiny absolute slack).

use std::sync::Arc;

use edgecam::engine::graph::{
    Activation, ModelBytes, Node, Op, ResizeOptions, StridedSliceOptions,
};
use edgecam::engine::tensor::ConstData;
use edgecam::engine::{DType, Graph, Interpreter, Quant, TensorInfo};
use serde_json::Value;

fn dtype(s: &str) -> DType {
    match s {
        "float32" => DType::F32,
        "float16" => DType::F16,
        "int32" => DType::I32,
        "int64" => DType::I64,
        "uint8" => DType::U8,
        "int8" => DType::I8,
        other => panic!("dtype {other}"),
    }
}

fn act(v: &Value) -> Activation {
    match v.as_str().unwrap_or("NONE") {
        "NONE" => Activation::None,
        "RELU" => Activation::Relu,
        "RELU6" => Activation::Relu6,
        "RELU_N1_TO_1" => Activation::ReluN1To1,
        other => panic!("activation {other}"),
    }
}

fn op(name: &str, o: &Value) -> Op {
    let b = |k: &str| o.get(k).and_then(Value::as_bool).unwrap_or(false);
    let f = |k: &str| o.get(k).and_then(Value::as_f64).unwrap_or(0.0) as f32;
    let ro = || ResizeOptions {
        align_corners: b("align_corners"),
        half_pixel_centers: b("half_pixel_centers"),
    };
    match name {
        "ADD" => Op::Add {
            activation: act(&o["activation"]),
        },
        "SUB" => Op::Sub {
            activation: act(&o["activation"]),
        },
        "MUL" => Op::Mul {
            activation: act(&o["activation"]),
        },
        "CONCATENATION" => Op::Concatenation {
            axis: o["axis"].as_i64().unwrap() as i32,
            activation: act(&o["activation"]),
        },
        "PAD" | "PADV2" => Op::Pad,
        "TRANSPOSE" => Op::Transpose,
        "SPLIT" => Op::Split {
            num_splits: o["num_splits"].as_u64().unwrap() as usize,
        },
        "STRIDED_SLICE" => {
            let i = |k: &str| o[k].as_i64().unwrap() as i32;
            Op::StridedSlice(StridedSliceOptions {
                begin_mask: i("begin_mask"),
                end_mask: i("end_mask"),
                ellipsis_mask: i("ellipsis_mask"),
                new_axis_mask: i("new_axis_mask"),
                shrink_axis_mask: i("shrink_axis_mask"),
                offset: b("offset"),
            })
        }
        "RESIZE_BILINEAR" => Op::ResizeBilinear(ro()),
        "RESIZE_NEAREST_NEIGHBOR" => Op::ResizeNearestNeighbor(ro()),
        "LOGISTIC" => Op::Logistic,
        "TANH" => Op::Tanh,
        "RELU" => Op::Relu,
        "RELU6" => Op::Relu6,
        "RELU_N1_TO_1" => Op::ReluN1To1,
        "HARD_SWISH" => Op::HardSwish,
        "LEAKY_RELU" => Op::LeakyRelu { alpha: f("alpha") },
        "SOFTMAX" => Op::Softmax { beta: f("beta") },
        "QUANTIZE" => Op::Quantize,
        "DEQUANTIZE" => Op::Dequantize,
        other => panic!("op {other}"),
    }
}

fn bytes_of(dt: DType, data: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in data {
        match dt {
            DType::F32 => out.extend((v.as_f64().unwrap() as f32).to_le_bytes()),
            DType::I32 => out.extend((v.as_i64().unwrap() as i32).to_le_bytes()),
            DType::I64 => out.extend(v.as_i64().unwrap().to_le_bytes()),
            DType::U8 => out.push(v.as_i64().unwrap() as u8),
            DType::I8 => out.push(v.as_i64().unwrap() as i8 as u8),
            d => panic!("{d:?}"),
        }
    }
    out
}

fn owned(bytes: &[u8]) -> ConstData {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    ConstData::Owned(Arc::new(words), bytes.len())
}

/// Run every case of one fixture file; returns failures as messages.
fn run_file(file: &str, filter: impl Fn(&str) -> bool) -> (usize, Vec<String>) {
    let path = format!("{}/tests/data/ops/{file}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let root: Value = serde_json::from_str(&text).unwrap();
    let mut fails = Vec::new();
    let mut n = 0;
    for c in root["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        if !filter(name) {
            continue;
        }
        n += 1;
        let mut tensors = Vec::new();
        let mut inputs = Vec::new();
        let mut feeds = Vec::new();
        let mut expect = Vec::new();
        for (i, t) in c["tensors"].as_array().unwrap().iter().enumerate() {
            let dt = dtype(t["dtype"].as_str().unwrap());
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            let quant = t["scale"]
                .as_f64()
                .map(|s| Quant::per_tensor(s as f32, t["zp"].as_i64().unwrap()));
            let data = t["data"].as_array().unwrap();
            let bytes = bytes_of(dt, data);
            let role = t["role"].as_str().unwrap();
            let cdata = match role {
                "const" => Some(owned(&bytes)),
                "input" => {
                    inputs.push(i);
                    feeds.push(bytes);
                    None
                }
                _ => {
                    expect.push((i, dt, data.clone()));
                    None
                }
            };
            tensors.push(TensorInfo {
                name: format!("t{i}"),
                dtype: dt,
                shape,
                quant,
                data: cdata,
            });
        }
        let node = Node {
            op: op(c["op"].as_str().unwrap(), &c["options"]),
            inputs: c["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| Some(v.as_u64().unwrap() as usize))
                .collect(),
            outputs: c["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect(),
        };
        let graph = Graph {
            bytes: ModelBytes::new(&[]),
            tensors,
            nodes: vec![node],
            inputs: inputs.clone(),
            outputs: expect.iter().map(|e| e.0).collect(),
            input_names: vec![],
            output_names: vec![],
            description: String::new(),
        };
        let mut it = match Interpreter::new(graph) {
            Ok(it) => it,
            Err(e) => {
                fails.push(format!("{name}: build failed: {e}"));
                continue;
            }
        };
        for (k, f) in feeds.iter().enumerate() {
            it.input_bytes_mut(k).unwrap().copy_from_slice(f);
        }
        if let Err(e) = it.invoke() {
            fails.push(format!("{name}: invoke failed: {e}"));
            continue;
        }
        for (k, (_, dt, want)) in expect.iter().enumerate() {
            let got = it.output(k).unwrap();
            let mut bad = 0;
            let mut first = String::new();
            for (j, w) in want.iter().enumerate() {
                let ok = match dt {
                    DType::F32 => {
                        let g = got.f32().unwrap()[j];
                        let w = w.as_f64().unwrap() as f32;
                        let okv = (g - w).abs() <= 1e-5 * w.abs().max(g.abs()) + 1e-7;
                        if !okv && first.is_empty() {
                            first = format!("[{j}] got {g} want {w}");
                        }
                        okv
                    }
                    DType::I8 | DType::U8 => {
                        let g = if *dt == DType::I8 {
                            got.bytes[j] as i8 as i64
                        } else {
                            got.bytes[j] as i64
                        };
                        let w = w.as_i64().unwrap();
                        if g != w && first.is_empty() {
                            first = format!("[{j}] got {g} want {w}");
                        }
                        g == w
                    }
                    DType::I32 => {
                        let g = got.i32().unwrap()[j] as i64;
                        let w = w.as_i64().unwrap();
                        if g != w && first.is_empty() {
                            first = format!("[{j}] got {g} want {w}");
                        }
                        g == w
                    }
                    d => panic!("{d:?}"),
                };
                if !ok {
                    bad += 1;
                }
            }
            if bad > 0 {
                fails.push(format!(
                    "{name}: {bad}/{} elements differ, first {first}",
                    want.len()
                ));
            }
        }
    }
    (n, fails)
}

fn check(file: &str, filter: impl Fn(&str) -> bool) {
    let (n, fails) = run_file(file, filter);
    assert!(n > 0, "no cases in {file}");
    assert!(
        fails.is_empty(),
        "{} of {n} cases failed:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

#[test]
fn ref_unary_activations_and_requantize() {
    check("unary", |_| true);
}

#[test]
fn ref_quantize_float() {
    check("quantize", |_| true);
}

#[test]
fn ref_binary_add_sub_mul() {
    check("binary", |_| true);
}

#[test]
fn ref_concatenation() {
    check("concat", |_| true);
}

#[test]
fn ref_pad() {
    check("pad", |_| true);
}

#[test]
fn ref_resize() {
    check("resize", |_| true);
}

#[test]
fn ref_softmax() {
    check("softmax", |_| true);
}

#[test]
fn ref_shape_ops() {
    check("shape", |_| true);
}
