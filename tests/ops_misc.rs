//! Hand-built graphs for the non-convolution operators, with expected values
//! computed independently in the test.

use std::sync::Arc;

use edgecam::engine::graph::{ModelBytes, Node, Op};
use edgecam::engine::tensor::ConstData;
use edgecam::engine::{DType, Graph, Interpreter, Quant, TensorInfo};

fn t(dtype: DType, shape: &[usize]) -> TensorInfo {
    TensorInfo {
        name: String::new(),
        dtype,
        shape: shape.to_vec(),
        quant: None,
        data: None,
    }
}

fn konst(dtype: DType, shape: &[usize], bytes: &[u8]) -> TensorInfo {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    TensorInfo {
        data: Some(ConstData::Owned(Arc::new(words), bytes.len())),
        ..t(dtype, shape)
    }
}

fn graph(
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
) -> Graph {
    let mut tensors = tensors;
    for (i, t) in tensors.iter_mut().enumerate() {
        t.name = format!("t{i}");
    }
    Graph {
        bytes: ModelBytes::new(&[]),
        tensors,
        nodes,
        inputs,
        outputs,
        input_names: vec![],
        output_names: vec![],
        description: String::new(),
    }
}

fn node(op: Op, inputs: &[usize], outputs: &[usize]) -> Node {
    Node {
        op,
        inputs: inputs.iter().map(|&i| Some(i)).collect(),
        outputs: outputs.to_vec(),
    }
}

#[test]
fn dequantize_f16_constant_is_folded() {
    let vals = [1.0f32, -2.5, 0.333, 65504.0, 1e-5];
    let bits: Vec<u16> = vals
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let g = graph(
        vec![
            konst(DType::F16, &[5], bytemuck::cast_slice(&bits)),
            t(DType::F32, &[5]),
            t(DType::F32, &[5]),
            t(DType::F32, &[5]),
        ],
        vec![
            node(Op::Dequantize, &[0], &[1]),
            node(
                Op::Add {
                    activation: edgecam::engine::graph::Activation::None,
                },
                &[1, 2],
                &[3],
            ),
        ],
        vec![2],
        vec![3],
    );
    let mut it = Interpreter::new(g).unwrap();
    // The DEQUANTIZE node ran at load time: its output is now a constant.
    assert!(it.tensors()[1].is_const());
    it.set_input(0, DType::F32, &[0.0f32; 5]).unwrap();
    it.invoke().unwrap();
    let out = it.output(0).unwrap().f32().unwrap().to_vec();
    for (o, b) in out.iter().zip(&bits) {
        assert_eq!(*o, half::f16::from_bits(*b).to_f32());
    }
}

#[test]
fn reshape_and_squeeze_copy_and_validate() {
    let shape_bytes: Vec<u8> = [3i32, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let g = graph(
        vec![
            t(DType::F32, &[1, 2, 3]),
            konst(DType::I32, &[2], &shape_bytes),
            t(DType::F32, &[3, 2]),
            t(DType::F32, &[1, 3, 1, 2]),
            t(DType::F32, &[3, 2]),
        ],
        vec![
            node(Op::Reshape, &[0, 1], &[2]),
            node(Op::Reshape, &[2], &[3]),
            node(Op::Squeeze { dims: vec![0, -2] }, &[3], &[4]),
        ],
        vec![0],
        vec![4],
    );
    let mut it = Interpreter::new(g).unwrap();
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    it.set_input(0, DType::F32, &x).unwrap();
    it.invoke().unwrap();
    assert_eq!(it.output(0).unwrap().f32().unwrap(), &x);

    // Wrong element count is rejected at build time.
    let bad = graph(
        vec![t(DType::F32, &[2, 3]), t(DType::F32, &[5])],
        vec![node(Op::Reshape, &[0], &[1])],
        vec![0],
        vec![1],
    );
    assert!(Interpreter::new(bad).is_err());
    // Squeezing a non-1 dimension is rejected.
    let bad = graph(
        vec![t(DType::F32, &[2, 3]), t(DType::F32, &[2, 3])],
        vec![node(Op::Squeeze { dims: vec![1] }, &[0], &[1])],
        vec![0],
        vec![1],
    );
    assert!(Interpreter::new(bad).is_err());
}

#[test]
fn pad_int8_uses_output_zero_point_and_int64_paddings() {
    let pads: Vec<u8> = [1i64, 0, 0, 2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let q = Some(Quant::per_tensor(0.5, -7));
    let mut x = t(DType::I8, &[2, 2]);
    x.quant = q.clone();
    let mut y = t(DType::I8, &[3, 4]);
    y.quant = q;
    let g = graph(
        vec![x, konst(DType::I64, &[2, 2], &pads), y],
        vec![node(Op::Pad, &[0, 1], &[2])],
        vec![0],
        vec![2],
    );
    let mut it = Interpreter::new(g).unwrap();
    it.set_input(0, DType::I8, &[1i8, 2, 3, 4]).unwrap();
    it.invoke().unwrap();
    let out = it.output(0).unwrap().i8().unwrap().to_vec();
    assert_eq!(out, vec![-7, -7, -7, -7, 1, 2, -7, -7, 3, 4, -7, -7]);
}

#[test]
fn binary_broadcast_float_matches_naive() {
    // [2,1,3] * [4,1] -> [2,4,3]
    let g = graph(
        vec![
            t(DType::F32, &[2, 1, 3]),
            t(DType::F32, &[4, 1]),
            t(DType::F32, &[2, 4, 3]),
        ],
        vec![node(
            Op::Sub {
                activation: edgecam::engine::graph::Activation::Relu6,
            },
            &[0, 1],
            &[2],
        )],
        vec![0, 1],
        vec![2],
    );
    let mut it = Interpreter::new(g).unwrap();
    let a: Vec<f32> = (0..6).map(|v| v as f32 * 1.5).collect();
    let b: Vec<f32> = (0..4).map(|v| v as f32 - 1.0).collect();
    it.set_input(0, DType::F32, &a).unwrap();
    it.set_input(1, DType::F32, &b).unwrap();
    it.invoke().unwrap();
    let out = it.output(0).unwrap().f32().unwrap();
    for i in 0..2 {
        for j in 0..4 {
            for k in 0..3 {
                let want = (a[i * 3 + k] - b[j]).clamp(0.0, 6.0);
                assert_eq!(out[(i * 4 + j) * 3 + k], want);
            }
        }
    }
    // Non-broadcastable shapes are rejected.
    let bad = graph(
        vec![
            t(DType::F32, &[2, 3]),
            t(DType::F32, &[4]),
            t(DType::F32, &[2, 3]),
        ],
        vec![node(
            Op::Add {
                activation: edgecam::engine::graph::Activation::None,
            },
            &[0, 1],
            &[2],
        )],
        vec![0, 1],
        vec![2],
    );
    assert!(Interpreter::new(bad).is_err());
}

#[test]
fn concat_int8_with_differing_quantization_is_rejected_like_tflite() {
    let mut a = t(DType::I8, &[1, 2]);
    a.quant = Some(Quant::per_tensor(0.1, 0));
    let mut b = t(DType::I8, &[1, 2]);
    b.quant = Some(Quant::per_tensor(0.2, 0));
    let mut y = t(DType::I8, &[1, 4]);
    y.quant = Some(Quant::per_tensor(0.1, 0));
    let g = graph(
        vec![a, b, y],
        vec![node(
            Op::Concatenation {
                axis: -1,
                activation: edgecam::engine::graph::Activation::None,
            },
            &[0, 1],
            &[2],
        )],
        vec![0, 1],
        vec![2],
    );
    assert!(Interpreter::new(g).is_err());
}

#[test]
fn dequantize_per_channel_int8() {
    // shape [2, 3], channels along axis 1
    let vals: [i8; 6] = [-128, 0, 127, 5, -5, 10];
    let mut w = konst(DType::I8, &[2, 3], bytemuck::cast_slice(&vals));
    w.quant = Some(Quant {
        scale: vec![0.5, 0.25, 2.0],
        zero_point: vec![0, 1, -1],
        axis: 1,
    });
    let g = graph(
        vec![
            w,
            t(DType::F32, &[2, 3]),
            t(DType::F32, &[2, 3]),
            t(DType::F32, &[2, 3]),
        ],
        vec![
            node(Op::Dequantize, &[0], &[1]),
            node(
                Op::Add {
                    activation: edgecam::engine::graph::Activation::None,
                },
                &[1, 2],
                &[3],
            ),
        ],
        vec![2],
        vec![3],
    );
    let mut it = Interpreter::new(g).unwrap();
    it.set_input(0, DType::F32, &[0.0f32; 6]).unwrap();
    it.invoke().unwrap();
    let out = it.output(0).unwrap().f32().unwrap().to_vec();
    let scale = [0.5f32, 0.25, 2.0];
    let zp = [0i32, 1, -1];
    let want: Vec<f32> = vals
        .iter()
        .enumerate()
        .map(|(i, &v)| scale[i % 3] * (v as i32 - zp[i % 3]) as f32)
        .collect();
    assert_eq!(out, want);
}

/// Same-shape float ADD, SUB and MUL large enough to be cut over the pool: every thread
/// count gives the element-wise results (with the fused ReLU6), each element computed here.
#[test]
fn large_float_binary_ops_on_several_threads() {
    use edgecam::engine::graph::Activation;
    use edgecam::engine::InterpreterOptions;
    let n = 3 * 7 * 1031; // over the pool's threshold, not a multiple of the task count
    let a: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 1009) as f32 - 504.0) / 61.0)
        .collect();
    let b: Vec<f32> = (0..n)
        .map(|i| ((i * 91 % 997) as f32 - 498.0) / 83.0)
        .collect();
    type Want = fn(f32, f32) -> f32;
    let cases: [(Op, Want); 3] = [
        (
            Op::Add {
                activation: Activation::Relu6,
            },
            |x, y| (x + y).clamp(0.0, 6.0),
        ),
        (
            Op::Sub {
                activation: Activation::None,
            },
            |x, y| x - y,
        ),
        (
            Op::Mul {
                activation: Activation::Relu6,
            },
            |x, y| (x * y).clamp(0.0, 6.0),
        ),
    ];
    for (op, want) in cases {
        let name = format!("{op:?}");
        let mut one_thread: Vec<u32> = Vec::new();
        for threads in [1, 2, 3] {
            let g = graph(
                vec![
                    t(DType::F32, &[1, n]),
                    t(DType::F32, &[1, n]),
                    t(DType::F32, &[1, n]),
                ],
                vec![node(op.clone(), &[0, 1], &[2])],
                vec![0, 1],
                vec![2],
            );
            let opts = InterpreterOptions {
                threads,
                ..Default::default()
            };
            let mut it = Interpreter::with_options(g, &opts).unwrap();
            it.set_input(0, DType::F32, &a).unwrap();
            it.set_input(1, DType::F32, &b).unwrap();
            it.invoke().unwrap();
            let out = it.output(0).unwrap().f32().unwrap().to_vec();
            assert_eq!(out.len(), n);
            for (i, o) in out.iter().enumerate() {
                // Equal as numbers: the sign of a zero clamped by ReLU6 is the platform's
                // `f32::max` (aarch64's FMAXNM gives +0 for max(-0, +0)).
                assert_eq!(*o, want(a[i], b[i]), "{name} x{threads} [{i}]");
            }
            // Bit for bit the same on every thread count.
            let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
            if threads == 1 {
                one_thread = bits;
            } else {
                assert_eq!(bits, one_thread, "{name} x{threads} vs x1");
            }
        }
    }
}

/// PRELU and DEPTH_TO_SPACE compute the values checked by hand, and reject bad models
/// at build time (errors naming the problem, no panics).
#[test]
fn prelu_and_depth_to_space_values_and_build_errors() {
    let f = |v: &[f32]| -> Vec<u8> { bytemuck::cast_slice(v).to_vec() };
    let q = |t: TensorInfo, s: f32, z: i64| TensorInfo {
        quant: Some(Quant::per_tensor(s, z)),
        ..t
    };
    // PRELU, alpha [2] against [1, 2, 2]; then DEPTH_TO_SPACE 2 of a [1, 1, 1, 4].
    let g = graph(
        vec![
            t(DType::F32, &[1, 2, 2]),
            konst(DType::F32, &[2], &f(&[0.5, -2.0])),
            t(DType::F32, &[1, 2, 2]),
            t(DType::F32, &[1, 1, 1, 4]),
            t(DType::F32, &[1, 2, 2, 1]),
        ],
        vec![
            node(Op::Prelu, &[0, 1], &[2]),
            node(Op::DepthToSpace { block_size: 2 }, &[3], &[4]),
        ],
        vec![0, 3],
        vec![2, 4],
    );
    let mut it = Interpreter::new(g).unwrap();
    it.set_input(0, DType::F32, &[1.0f32, -1.0, -4.0, 3.0])
        .unwrap();
    it.set_input(1, DType::F32, &[1.0f32, 2.0, 3.0, 4.0])
        .unwrap();
    it.invoke().unwrap();
    assert_eq!(it.output(0).unwrap().f32().unwrap(), &[1.0, 2.0, -2.0, 3.0]);
    assert_eq!(it.output(1).unwrap().f32().unwrap(), &[1.0, 2.0, 3.0, 4.0]);

    let err = |g: Graph, want: &str| {
        let e = Interpreter::new(g).err().expect("rejected").to_string();
        assert!(e.contains(want), "{e}");
    };
    let prelu = |a: TensorInfo, y: TensorInfo| {
        graph(
            vec![t(DType::F32, &[1, 2, 3]), a, y],
            vec![node(Op::Prelu, &[0, 1], &[2])],
            vec![0],
            vec![2],
        )
    };
    err(
        prelu(
            konst(DType::F32, &[2], &f(&[1.0, 2.0])),
            t(DType::F32, &[1, 2, 3]),
        ),
        "does not broadcast",
    );
    err(
        prelu(
            konst(DType::F32, &[1, 1, 2, 3], &f(&[0.0; 6])),
            t(DType::F32, &[1, 2, 3]),
        ),
        "more dimensions",
    );
    err(
        prelu(
            konst(DType::F32, &[3], &f(&[0.0; 3])),
            t(DType::F32, &[2, 3]),
        ),
        "shape mismatch",
    );
    err(
        prelu(konst(DType::I8, &[3], &[0; 3]), t(DType::F32, &[1, 2, 3])),
        "one type",
    );
    // Quantized PRELU needs quantization parameters on every operand.
    let g = graph(
        vec![
            q(t(DType::I8, &[1, 3]), 0.1, 0),
            konst(DType::I8, &[3], &[1, 2, 3]),
            q(t(DType::I8, &[1, 3]), 0.1, 0),
        ],
        vec![node(Op::Prelu, &[0, 1], &[2])],
        vec![0],
        vec![2],
    );
    err(g, "no quantization parameters");

    let d2s = |x: TensorInfo, y: TensorInfo, bs: usize| {
        graph(
            vec![x, y],
            vec![node(Op::DepthToSpace { block_size: bs }, &[0], &[1])],
            vec![0],
            vec![1],
        )
    };
    err(
        d2s(
            t(DType::F32, &[1, 2, 2, 6]),
            t(DType::F32, &[1, 4, 4, 1]),
            2,
        ),
        "not divisible",
    );
    err(
        d2s(
            t(DType::F32, &[1, 2, 2, 8]),
            t(DType::F32, &[1, 4, 4, 1]),
            2,
        ),
        "output shape",
    );
    err(
        d2s(t(DType::F32, &[2, 8]), t(DType::F32, &[2, 8]), 2),
        "rank 4",
    );
    err(
        d2s(
            q(t(DType::I8, &[1, 1, 1, 4]), 0.1, 0),
            q(t(DType::I8, &[1, 2, 2, 1]), 0.2, 0),
            2,
        ),
        "quantization differ",
    );
    err(
        d2s(
            t(DType::I16, &[1, 1, 1, 4]),
            t(DType::I16, &[1, 2, 2, 1]),
            2,
        ),
        "not supported",
    );
}
