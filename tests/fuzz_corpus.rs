//! Stable-toolchain stand-in for the `fuzz/` target: deterministic mutations of
//! real and writer-built models must load or fail cleanly (no panic), and a
//! graph that loads must be accepted or rejected cleanly by the interpreter.

use std::path::PathBuf;

use edgecam::engine::graph::{Activation, Graph, ModelBytes, Node, Op};
use edgecam::engine::tensor::{DType, Quant, TensorInfo};
use edgecam::engine::tflite::{load_bytes, write_model};
use edgecam::engine::Interpreter;

mod common;
use common::Rng;

/// Same body as `fuzz/fuzz_targets/load.rs`.
fn fuzz_one(data: &[u8]) -> bool {
    match load_bytes(data) {
        Ok(g) => {
            let _ = Interpreter::new(g);
            true
        }
        Err(_) => false,
    }
}

fn small_graph() -> Graph {
    let q = |s| Some(Quant::per_tensor(s, 1));
    let t = |name: &str, shape: &[usize], quant| TensorInfo {
        name: name.into(),
        dtype: DType::I8,
        shape: shape.to_vec(),
        quant,
        data: None,
    };
    let mut c = t("c", &[1, 2, 2, 3], q(0.5));
    let bytes: Vec<u8> = (0..12).collect();
    c.data = Some(edgecam::engine::tensor::ConstData::Owned(
        std::sync::Arc::new(vec![
            u64::from_le_bytes(bytes[..8].try_into().unwrap()),
            u64::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11], 0, 0, 0, 0]),
        ]),
        12,
    ));
    Graph {
        bytes: ModelBytes::new(&[]),
        tensors: vec![
            t("x", &[1, 2, 2, 3], q(0.25)),
            c,
            t("s", &[1, 2, 2, 3], q(0.5)),
            t("y", &[1, 2, 2, 3], q(0.5)),
        ],
        nodes: vec![
            Node {
                op: Op::Add {
                    activation: Activation::Relu6,
                },
                inputs: vec![Some(0), Some(1)],
                outputs: vec![2],
            },
            Node {
                op: Op::Logistic,
                inputs: vec![Some(2)],
                outputs: vec![3],
            },
        ],
        inputs: vec![0],
        outputs: vec![3],
        input_names: vec!["x".into()],
        output_names: vec!["y".into()],
        description: "fuzz seed".into(),
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], hot: usize) -> Vec<u8> {
    let mut b = seed.to_vec();
    // Flatbuffer structure (root table, vtables, vectors of offsets) of these files
    // sits mostly in the first `hot` bytes; weights fill the rest.
    let pos = |rng: &mut Rng, len: usize| {
        if rng.below(4) == 0 {
            rng.below(len)
        } else {
            rng.below(hot.min(len))
        }
    };
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 => {
                let p = pos(rng, b.len());
                b[p] ^= 1 << rng.below(8);
            }
            1 => {
                let cut = rng.below(b.len());
                b.truncate(cut);
            }
            2 | 3 => {
                // Overwrite an aligned u32 (offsets, lengths, vtable entries) with a
                // small, huge, or random value.
                if b.len() >= 8 {
                    let p = pos(rng, b.len() - 4) & !3;
                    let v: u32 = match rng.below(4) {
                        0 => rng.below(64) as u32,
                        1 => u32::MAX - rng.below(64) as u32,
                        2 => 0x8000_0000,
                        _ => rng.next_u64() as u32,
                    };
                    b[p..p + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            _ => {
                let p = pos(rng, b.len());
                b[p] = rng.next_u64() as u8;
            }
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

#[test]
fn mutated_models_never_panic() {
    let mut seeds: Vec<(String, Vec<u8>, usize)> = vec![];
    let small = write_model(&small_graph());
    assert!(load_bytes(&small).is_ok());
    let n = small.len();
    seeds.push(("writer-seed".into(), small, n));
    let dir = std::env::var_os("EDGECAM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/models"));
    let p = dir.join("face_detection_short_range_fp16.tflite");
    if let Ok(b) = std::fs::read(&p) {
        seeds.push(("face_short".into(), b, 64 * 1024));
    } else {
        eprintln!(
            "note: {} missing; only the writer seed is mutated",
            p.display()
        );
    }
    let iters: usize = std::env::var("EDGECAM_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    let mut rng = Rng::xorshift(0xdead_beef_cafe_f00d);
    for (name, seed, hot) in &seeds {
        let mut loaded = 0;
        for _ in 0..iters {
            let m = mutate(&mut rng, seed, *hot);
            loaded += fuzz_one(&m) as usize;
        }
        eprintln!("{name}: {iters} mutations, {loaded} still loaded");
    }
}
