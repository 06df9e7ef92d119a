//! Sparse constants (TFLite's sparsity format) behind DENSIFY, written by edgecam's writer:
//! the loader densifies them at load (the DENSIFY operators disappear, their outputs become
//! the dense constants), and edgecam's outputs equal those of TFLite's reference kernels
//! running the same sparse file. Covers float32, float16 (behind DEQUANTIZE, as MediaPipe's
//! models are) and int8 values, and uint8, uint16 and int32 index vectors.

use edgecam::engine::graph::{Activation, Conv2DOptions, Graph, Op, Padding};
use edgecam::engine::tensor::{DType, Quant};
use edgecam::engine::tflite::{load_bytes, write_model_sparse};
use edgecam::engine::Interpreter;
use edgecam::npy::NpyArray;

mod common;
use common::graph::B;
use common::oracle::tflite_reference;
use common::{tmpdir, Rng};

/// `n` floats in [-1, 1), about `zeros` of them zero.
fn sparse_f32(rng: &mut Rng, n: usize, zeros: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let keep = rng.unit() >= zeros;
            let v = rng.f32();
            if keep {
                v
            } else {
                0.0
            }
        })
        .collect()
}

fn f32_input(rng: &mut Rng, b: &mut B, shape: &[usize]) -> usize {
    let n: usize = shape.iter().product();
    let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
    b.input(DType::F32, shape, None, bytemuck::cast_slice(&x).to_vec())
}

/// FULLY_CONNECTED with sparse float weights `[units, depth]`.
fn fc(rng: &mut Rng, units: usize, depth: usize, zeros: f32) -> (Graph, Vec<NpyArray>, usize) {
    let mut b = B::default();
    let x = f32_input(rng, &mut b, &[1, depth]);
    let w = sparse_f32(rng, units * depth, zeros);
    let w = b.constant(DType::F32, &[units, depth], None, bytemuck::cast_slice(&w));
    let bias: Vec<f32> = (0..units).map(|i| i as f32 * 0.25).collect();
    let bias = b.constant(DType::F32, &[units], None, bytemuck::cast_slice(&bias));
    let y = b.tensor(DType::F32, &[1, units], None);
    b.op(
        Op::FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
            asymmetric_quantize_inputs: false,
        },
        vec![Some(x), Some(w), Some(bias)],
        vec![y],
    );
    let (g, feeds) = b.finish(&[y]);
    (g, feeds, w)
}

/// A float16 constant behind DEQUANTIZE, added to the input (MediaPipe's weights are
/// sparse float16 constants, densified then dequantized).
fn f16_add(rng: &mut Rng) -> (Graph, Vec<NpyArray>, usize) {
    let mut b = B::default();
    let x = f32_input(rng, &mut b, &[3, 5, 7]);
    let w: Vec<u16> = sparse_f32(rng, 3 * 5 * 7, 0.6)
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let w = b.constant(DType::F16, &[3, 5, 7], None, bytemuck::cast_slice(&w));
    let wf = b.tensor(DType::F32, &[3, 5, 7], None);
    b.op(Op::Dequantize, vec![Some(w)], vec![wf]);
    let y = b.tensor(DType::F32, &[3, 5, 7], None);
    b.op(
        Op::Add {
            activation: Activation::None,
        },
        vec![Some(x), Some(wf)],
        vec![y],
    );
    let (g, feeds) = b.finish(&[y]);
    (g, feeds, w)
}

/// An int8 CONV_2D with sparse per-channel int8 weights.
fn conv_i8(rng: &mut Rng) -> (Graph, Vec<NpyArray>, usize) {
    let (cin, cout) = (3usize, 4usize);
    let mut b = B::default();
    let xs: Vec<u8> = (0..5 * 5 * cin).map(|_| rng.below(256) as u8).collect();
    let x = b.input(
        DType::I8,
        &[1, 5, 5, cin],
        Some(Quant::per_tensor(0.05, -3)),
        xs,
    );
    let weights: Vec<u8> = (0..cout * 9 * cin)
        .map(|_| {
            if rng.below(3) == 0 {
                (rng.below(255) as i32 - 127) as i8 as u8
            } else {
                0
            }
        })
        .collect();
    let wscale: Vec<f32> = (0..cout).map(|i| 0.01 + 0.002 * i as f32).collect();
    let w = b.constant(
        DType::I8,
        &[cout, 3, 3, cin],
        Some(Quant {
            scale: wscale.clone(),
            zero_point: vec![0; cout],
            axis: 0,
        }),
        &weights,
    );
    let bias: Vec<i32> = (0..cout as i32).map(|i| i * 100 - 150).collect();
    let bias = b.constant(
        DType::I32,
        &[cout],
        Some(Quant {
            scale: wscale.iter().map(|s| s * 0.05).collect(),
            zero_point: vec![0; cout],
            axis: 0,
        }),
        bytemuck::cast_slice(&bias),
    );
    let y = b.tensor(DType::I8, &[1, 3, 3, cout], Some(Quant::per_tensor(0.1, 2)));
    b.op(
        Op::Conv2D(Conv2DOptions {
            padding: Padding::Valid,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            activation: Activation::None,
        }),
        vec![Some(x), Some(w), Some(bias)],
        vec![y],
    );
    let (g, feeds) = b.finish(&[y]);
    (g, feeds, w)
}

/// Write `g` with tensor `w` sparse; load it back and check the densified constant and
/// that no DENSIFY remains; run it in edgecam and in TFLite's reference kernels.
fn check(name: &str, g: &Graph, feeds: &[NpyArray], w: usize) {
    let bytes = write_model_sparse(g, &[w]);
    let loaded = load_bytes(&bytes).unwrap();
    assert_eq!(loaded.nodes.len(), g.nodes.len(), "{name}: DENSIFY dropped");
    for (a, b) in g.nodes.iter().zip(&loaded.nodes) {
        assert_eq!(a.op, b.op, "{name}");
    }
    assert_eq!(
        loaded.const_bytes(w),
        g.const_bytes(w),
        "{name}: densified weights"
    );
    let sparse = loaded.tensors.len() - 1;
    assert!(loaded.tensors[sparse].name.ends_with("/sparse"));

    let dir = tmpdir(&format!("sparse-{name}"));
    let model = dir.join("model.tflite");
    std::fs::write(&model, &bytes).unwrap();
    let want = tflite_reference(&dir, &model, &feeds[0], 1).remove(0);
    let mut it = Interpreter::new(loaded).unwrap();
    for (i, f) in feeds.iter().enumerate() {
        it.input_bytes_mut(i).unwrap().copy_from_slice(&f.data);
    }
    it.invoke().unwrap();
    let ours = it.output(0).unwrap();
    match ours.dtype() {
        DType::F32 => {
            let a = ours.f32().unwrap();
            let b: Vec<f32> = bytemuck::pod_collect_to_vec(&want.data);
            assert_eq!(a.len(), b.len(), "{name}");
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                    "{name}[{i}]: ours {x}, TFLite {y}"
                );
            }
        }
        DType::I8 => assert_eq!(
            bytemuck::cast_slice::<i8, u8>(ours.i8().unwrap()),
            &want.data[..],
            "{name}"
        ),
        d => panic!("{name}: output type {d:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sparse_float_weights_with_uint8_indices() {
    let mut rng = Rng::new(1);
    let (g, feeds, w) = fc(&mut rng, 8, 16, 0.75);
    check("fc_u8", &g, &feeds, w);
}

#[test]
fn sparse_float_weights_with_uint16_indices() {
    // 300 columns: indices up to 299 need uint16.
    let mut rng = Rng::new(2);
    let (g, feeds, w) = fc(&mut rng, 3, 300, 0.9);
    check("fc_u16", &g, &feeds, w);
}

#[test]
fn sparse_float_weights_with_int32_indices() {
    // 70000 columns: indices beyond 65535 need int32.
    let mut rng = Rng::new(3);
    let (g, feeds, w) = fc(&mut rng, 1, 70_000, 0.999);
    check("fc_i32", &g, &feeds, w);
}

#[test]
fn sparse_float16_weights_behind_dequantize() {
    let mut rng = Rng::new(4);
    let (g, feeds, w) = f16_add(&mut rng);
    check("f16", &g, &feeds, w);
}

#[test]
fn sparse_int8_conv_weights() {
    let mut rng = Rng::new(5);
    let (g, feeds, w) = conv_i8(&mut rng);
    check("conv_i8", &g, &feeds, w);
}

#[test]
fn corrupt_sparse_files_are_load_errors() {
    // Every byte of the sparsity structure flipped in turn: an error or a valid graph,
    // never a panic (the fuzz corpus does the same for whole files).
    let mut rng = Rng::new(6);
    let (g, _, w) = fc(&mut rng, 4, 12, 0.5);
    let bytes = write_model_sparse(&g, &[w]);
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        let _ = load_bytes(&b);
    }
}
