//! CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX/AVERAGE_POOL_2D and MEAN
//! through the `Interpreter`:
//! - `oracle_fixtures`: every case of `tests/data/ops/conv_pool_fc_mean.json`
//!   (outputs of TFLite's BUILTIN_REF kernels, made by `scripts/gen_op_fixtures.py`),
//!   bit-exact for int8/uint8, 1e-5 relative for float;
//! - hand-worked cases and a naive float convolution compared with int8 results.

use std::sync::Arc;

use edgecam::engine::graph::{
    Activation, Conv2DOptions, DepthwiseConv2DOptions, Graph, ModelBytes, Node, Op, Padding,
    Pool2DOptions,
};
use edgecam::engine::tensor::{ConstData, DType, Quant, TensorInfo};
use edgecam::engine::Interpreter;
use serde_json::Value;

mod common;
use common::Rng;

// ------------------------------------------------------------------ helpers

fn const_data(bytes: &[u8]) -> ConstData {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    ConstData::Owned(Arc::new(words), bytes.len())
}

fn info(name: &str, dtype: DType, shape: &[usize], quant: Option<Quant>) -> TensorInfo {
    TensorInfo {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        quant,
        data: None,
    }
}

fn konst(mut t: TensorInfo, bytes: &[u8]) -> TensorInfo {
    t.data = Some(const_data(bytes));
    t
}

fn q(scale: f32, zp: i64) -> Option<Quant> {
    Some(Quant::per_tensor(scale, zp))
}

fn qc(scales: &[f32], axis: usize) -> Option<Quant> {
    Some(Quant {
        scale: scales.to_vec(),
        zero_point: vec![0; scales.len()],
        axis,
    })
}

/// A one-operator graph: tensor 0 is the graph input, the last tensor the output.
fn one_op(op: Op, tensors: Vec<TensorInfo>, inputs: Vec<Option<usize>>) -> Graph {
    let out = tensors.len() - 1;
    Graph {
        bytes: ModelBytes::new(&[]),
        tensors,
        nodes: vec![Node {
            op,
            inputs,
            outputs: vec![out],
        }],
        inputs: vec![0],
        outputs: vec![out],
        input_names: vec![],
        output_names: vec![],
        description: String::new(),
    }
}

fn run<T: bytemuck::Pod, U: bytemuck::Pod>(g: Graph, dtype: DType, input: &[T]) -> Vec<U> {
    let mut it = Interpreter::new(g).expect("build");
    it.set_input(0, dtype, input).expect("set input");
    it.invoke().expect("invoke");
    bytemuck::cast_slice::<u8, U>(it.output(0).unwrap().bytes).to_vec()
}

fn conv_opts(
    padding: Padding,
    s: (usize, usize),
    d: (usize, usize),
    act: Activation,
) -> Conv2DOptions {
    Conv2DOptions {
        padding,
        stride_h: s.0,
        stride_w: s.1,
        dilation_h: d.0,
        dilation_w: d.1,
        activation: act,
    }
}

// ------------------------------------------------------------------ oracle fixtures

fn dtype_of(s: &str) -> DType {
    match s {
        "float32" => DType::F32,
        "int8" => DType::I8,
        "uint8" => DType::U8,
        "int32" => DType::I32,
        o => panic!("dtype {o}"),
    }
}

fn bytes_of(dtype: DType, v: &Value) -> Vec<u8> {
    let a = v.as_array().unwrap();
    match dtype {
        DType::F32 => a
            .iter()
            .flat_map(|x| (x.as_f64().unwrap() as f32).to_le_bytes())
            .collect(),
        DType::I32 => a
            .iter()
            .flat_map(|x| (x.as_i64().unwrap() as i32).to_le_bytes())
            .collect(),
        DType::I8 => a.iter().map(|x| x.as_i64().unwrap() as i8 as u8).collect(),
        DType::U8 => a.iter().map(|x| x.as_i64().unwrap() as u8).collect(),
        _ => unreachable!(),
    }
}

fn json_tensor(name: &str, t: &Value) -> TensorInfo {
    let dtype = dtype_of(t["dtype"].as_str().unwrap());
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let quant = t.get("scale").map(|s| Quant {
        scale: s
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect(),
        zero_point: t["zero_point"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect(),
        axis: t["axis"].as_u64().unwrap() as usize,
    });
    info(name, dtype, &shape, quant)
}

fn act_of(v: &Value) -> Activation {
    match v.as_str().unwrap() {
        "NONE" => Activation::None,
        "RELU" => Activation::Relu,
        "RELU6" => Activation::Relu6,
        "RELU_N1_TO_1" => Activation::ReluN1To1,
        o => panic!("activation {o}"),
    }
}

fn pad_of(v: &Value) -> Padding {
    match v.as_str().unwrap() {
        "SAME" => Padding::Same,
        "VALID" => Padding::Valid,
        o => panic!("padding {o}"),
    }
}

fn op_of(name: &str, o: &Value) -> Op {
    let u = |k: &str| o[k].as_u64().unwrap() as usize;
    match name {
        "CONV_2D" => Op::Conv2D(Conv2DOptions {
            padding: pad_of(&o["padding"]),
            stride_h: u("stride_h"),
            stride_w: u("stride_w"),
            dilation_h: u("dilation_h"),
            dilation_w: u("dilation_w"),
            activation: act_of(&o["activation"]),
        }),
        "DEPTHWISE_CONV_2D" => Op::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding: pad_of(&o["padding"]),
            stride_h: u("stride_h"),
            stride_w: u("stride_w"),
            dilation_h: u("dilation_h"),
            dilation_w: u("dilation_w"),
            depth_multiplier: u("depth_multiplier"),
            activation: act_of(&o["activation"]),
        }),
        "FULLY_CONNECTED" => Op::FullyConnected {
            activation: act_of(&o["activation"]),
            keep_num_dims: o["keep_num_dims"].as_bool().unwrap(),
            asymmetric_quantize_inputs: false,
        },
        "MAX_POOL_2D" | "AVERAGE_POOL_2D" => {
            let p = Pool2DOptions {
                padding: pad_of(&o["padding"]),
                stride_h: u("stride_h"),
                stride_w: u("stride_w"),
                filter_h: u("filter_h"),
                filter_w: u("filter_w"),
                activation: act_of(&o["activation"]),
            };
            if name == "MAX_POOL_2D" {
                Op::MaxPool2D(p)
            } else {
                Op::AveragePool2D(p)
            }
        }
        "MEAN" => Op::Mean {
            keep_dims: o["keep_dims"].as_bool().unwrap(),
        },
        o => panic!("op {o}"),
    }
}

#[test]
fn oracle_fixtures() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/ops/conv_pool_fc_mean.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let mut tensors = Vec::new();
        let mut inputs = Vec::new();
        for (i, t) in c["inputs"].as_array().unwrap().iter().enumerate() {
            if t.is_null() {
                inputs.push(None);
                continue;
            }
            let mut ti = json_tensor(&format!("in{i}"), t);
            if i > 0 {
                let b = bytes_of(ti.dtype, &t["data"]);
                ti = konst(ti, &b);
            }
            inputs.push(Some(tensors.len()));
            tensors.push(ti);
        }
        let out = json_tensor("out", &c["output"]);
        let out_dtype = out.dtype;
        tensors.push(out);
        let g = one_op(
            op_of(c["op"].as_str().unwrap(), &c["options"]),
            tensors,
            inputs,
        );
        let in0 = &c["inputs"][0];
        let in_dtype = dtype_of(in0["dtype"].as_str().unwrap());
        let in_bytes = bytes_of(in_dtype, &in0["data"]);
        let mut it = match Interpreter::new(g) {
            Ok(it) => it,
            Err(e) => {
                failures.push(format!("{name}: build failed: {e}"));
                continue;
            }
        };
        it.set_input(0, in_dtype, &in_bytes[..]).unwrap();
        it.invoke().unwrap();
        let got = it.output(0).unwrap().bytes.to_vec();
        let want = bytes_of(out_dtype, &c["expected"]);
        match out_dtype {
            DType::F32 => {
                let g: &[f32] = bytemuck::cast_slice(&got);
                let w: &[f32] = bytemuck::cast_slice(&want);
                for (k, (a, b)) in g.iter().zip(w).enumerate() {
                    if (a - b).abs() > 1e-5 * b.abs().max(1.0) {
                        failures.push(format!("{name}[{k}]: got {a}, want {b}"));
                        break;
                    }
                }
                if g.len() != w.len() {
                    failures.push(format!("{name}: length {} vs {}", g.len(), w.len()));
                }
            }
            _ => {
                if got != want {
                    let n = got.iter().zip(&want).filter(|(a, b)| a != b).count();
                    let k = got.iter().zip(&want).position(|(a, b)| a != b);
                    failures.push(format!(
                        "{name}: {n} of {} differ (first at {k:?}: got {:?}, want {:?})",
                        want.len(),
                        k.map(|k| got[k]),
                        k.map(|k| want[k])
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

// ------------------------------------------------------------------ hand-worked cases

fn i8b(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}
fn i32b(v: &[i32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}
fn f32b(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// int8 CONV_2D, SAME, stride 2 on a 3x3 input: pad 1 on top/left only, per-channel
/// scales, input zero point -128, bias, output zero point -100.
fn conv_i8_same_s2_graph(out_scale: f32, act: Activation) -> Graph {
    let filter: Vec<i8> = [1i8; 9].iter().chain([2i8; 9].iter()).copied().collect();
    one_op(
        Op::Conv2D(conv_opts(Padding::Same, (2, 2), (1, 1), act)),
        vec![
            info("x", DType::I8, &[1, 3, 3, 1], q(1.0, -128)),
            konst(
                info("w", DType::I8, &[2, 3, 3, 1], qc(&[1.0, 0.5], 0)),
                &i8b(&filter),
            ),
            konst(info("b", DType::I32, &[2], None), &i32b(&[2, 4])),
            info("y", DType::I8, &[1, 2, 2, 2], q(out_scale, -100)),
        ],
        vec![Some(0), Some(1), Some(2)],
    )
}

#[test]
fn conv_i8_same_stride2_by_hand() {
    // Real input 1..9; windows (pad 1 before): {1,2,4,5}=12, {2,3,5,6}=16, {4,5,7,8}=24, {5,6,8,9}=28.
    let x: Vec<i8> = (1..=9).map(|v| (v - 128) as i8).collect();
    // ch0: (sum + 2) * 1/2; ch1: (2 sum + 4) * 0.5/2 -> both 7, 9, 13, 15.
    let y: Vec<i8> = run(conv_i8_same_s2_graph(2.0, Activation::None), DType::I8, &x);
    assert_eq!(y, vec![-93, -93, -91, -91, -87, -87, -85, -85]);
    // Output scale 4: 3.5, 4.5, 6.5, 7.5 round half away from zero.
    let y: Vec<i8> = run(conv_i8_same_s2_graph(4.0, Activation::None), DType::I8, &x);
    assert_eq!(y, vec![-96, -96, -95, -95, -93, -93, -92, -92]);
    // Relu6 at scale 2: the clamp is zp + round(6 / 2) = -97.
    let y: Vec<i8> = run(conv_i8_same_s2_graph(2.0, Activation::Relu6), DType::I8, &x);
    assert_eq!(y, vec![-97; 8]);
}

#[test]
fn conv_u8_filter_zero_point_by_hand() {
    // 1x1 conv, uint8: input zp 128, filter zp 100, real = (130-128) * (103-100) = 6
    // + (120-128) * (99-100) = 8 -> 14; bias 6 -> 20; scale 0.5*0.5/0.25 = 1; out zp 10.
    let g = one_op(
        Op::Conv2D(conv_opts(Padding::Valid, (1, 1), (1, 1), Activation::None)),
        vec![
            info("x", DType::U8, &[1, 1, 1, 2], q(0.5, 128)),
            konst(info("w", DType::U8, &[1, 1, 1, 2], q(0.5, 100)), &[103, 99]),
            konst(info("b", DType::I32, &[1], None), &i32b(&[6])),
            info("y", DType::U8, &[1, 1, 1, 1], q(0.25, 10)),
        ],
        vec![Some(0), Some(1), Some(2)],
    );
    let y: Vec<u8> = run(g, DType::U8, &[130u8, 120]);
    assert_eq!(y, vec![30]);
}

#[test]
fn depthwise_multiplier_channel_order() {
    // 1x1 depthwise, 2 input channels, multiplier 2: out[c*2+m] = x[c] * w[c*2+m].
    let g = one_op(
        Op::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding: Padding::Valid,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            depth_multiplier: 2,
            activation: Activation::None,
        }),
        vec![
            info("x", DType::F32, &[1, 1, 2, 2], None),
            konst(
                info("w", DType::F32, &[1, 1, 1, 4], None),
                &f32b(&[1.0, 10.0, 100.0, 1000.0]),
            ),
            info("y", DType::F32, &[1, 1, 2, 4], None),
        ],
        vec![Some(0), Some(1)],
    );
    let y: Vec<f32> = run(g, DType::F32, &[2.0f32, 3.0, 5.0, 7.0]);
    assert_eq!(y, vec![2.0, 20.0, 300.0, 3000.0, 5.0, 50.0, 700.0, 7000.0]);
}

#[test]
fn fc_u8_filter_zero_point_by_hand() {
    let g = one_op(
        Op::FullyConnected {
            activation: Activation::None,
            keep_num_dims: false,
            asymmetric_quantize_inputs: false,
        },
        vec![
            info("x", DType::U8, &[1, 2], q(0.5, 128)),
            konst(info("w", DType::U8, &[1, 2], q(0.5, 100)), &[103, 99]),
            konst(info("b", DType::I32, &[1], None), &i32b(&[6])),
            info("y", DType::U8, &[1, 1], q(0.25, 10)),
        ],
        vec![Some(0), Some(1), Some(2)],
    );
    let y: Vec<u8> = run(g, DType::U8, &[130u8, 120]);
    assert_eq!(y, vec![30]);
}

fn pool_graph(
    avg: bool,
    dtype: DType,
    shape: [usize; 4],
    f: (usize, usize),
    pad: Padding,
    out: [usize; 4],
) -> Graph {
    let o = Pool2DOptions {
        padding: pad,
        stride_h: 1,
        stride_w: 1,
        filter_h: f.0,
        filter_w: f.1,
        activation: Activation::None,
    };
    let qq = if dtype == DType::F32 { None } else { q(0.1, 0) };
    one_op(
        if avg {
            Op::AveragePool2D(o)
        } else {
            Op::MaxPool2D(o)
        },
        vec![
            info("x", dtype, &shape, qq.clone()),
            info("y", dtype, &out, qq),
        ],
        vec![Some(0)],
    )
}

#[test]
fn avg_pool_i8_rounds_half_away_from_zero() {
    // 1x2 windows over [-3, -2, 3, 2, -1, 0] (VALID, stride 1, 6 wide -> 5 outputs).
    let g = pool_graph(
        true,
        DType::I8,
        [1, 1, 6, 1],
        (1, 2),
        Padding::Valid,
        [1, 1, 5, 1],
    );
    let y: Vec<i8> = run(g, DType::I8, &[-3i8, -2, 3, 2, -1, 0]);
    // sums -5, 1, 5, 1, -1 over 2 -> -3, 1, 3, 1, -1
    assert_eq!(y, vec![-3, 1, 3, 1, -1]);
}

#[test]
fn avg_pool_same_counts_only_valid_positions() {
    // 3x3 SAME on 2x2: every window covers the 4 inputs (count 4, not 9).
    let g = pool_graph(
        true,
        DType::F32,
        [1, 2, 2, 1],
        (3, 3),
        Padding::Same,
        [1, 2, 2, 1],
    );
    let y: Vec<f32> = run(g, DType::F32, &[1.0f32, 2.0, 3.0, 6.0]);
    assert_eq!(y, vec![3.0; 4]);
    let g = pool_graph(
        false,
        DType::I8,
        [1, 2, 2, 1],
        (3, 3),
        Padding::Same,
        [1, 2, 2, 1],
    );
    let y: Vec<i8> = run(g, DType::I8, &[-128i8, -100, -120, -128]);
    assert_eq!(y, vec![-100; 4]);
}

#[test]
fn mean_i8_rounds_like_tflite() {
    let g = one_op(
        Op::Mean { keep_dims: false },
        vec![
            info("x", DType::I8, &[2, 2], q(0.1, 0)),
            konst(info("axis", DType::I32, &[1], None), &i32b(&[1])),
            info("y", DType::I8, &[2], q(0.1, 0)),
        ],
        vec![Some(0), Some(1)],
    );
    // TFLite's fixed-point mean: -2.5 and 2.5 go through the high multiply,
    // which rounds a negative tie toward zero and a positive one up.
    let y: Vec<i8> = run(g, DType::I8, &[-3i8, -2, 3, 2]);
    assert_eq!(y, vec![-2, 3]);
}

#[test]
fn build_rejects_inconsistent_operands() {
    let base = || conv_i8_same_s2_graph(2.0, Activation::None);
    // Wrong output shape.
    let mut g = base();
    g.tensors[3].shape = vec![1, 3, 3, 2];
    match Interpreter::new(g) {
        Err(e) => assert!(e.to_string().contains("expected [1, 2, 2, 2]"), "{e}"),
        Ok(_) => panic!("wrong output shape accepted"),
    }
    // Per-channel scale count differs from the output channels.
    let mut g = base();
    g.tensors[1].quant = qc(&[1.0, 0.5, 0.25], 0);
    assert!(Interpreter::new(g).is_err());
    // Float bias on an int8 convolution.
    let mut g = base();
    g.tensors[2].dtype = DType::F32;
    assert!(Interpreter::new(g).is_err());
    // Missing quantization on the output.
    let mut g = base();
    g.tensors[3].quant = None;
    assert!(Interpreter::new(g).is_err());
    // Non-zero int8 filter zero point.
    let mut g = base();
    g.tensors[1].quant.as_mut().unwrap().zero_point = vec![0, 3];
    assert!(Interpreter::new(g).is_err());
}

// ------------------------------------------------------------------ naive float references

/// Naive NHWC convolution (or depthwise with multiplier `mult` when `depthwise`),
/// padding computed the TensorFlow way, written independently of the engine.
/// The window of [`naive`]: padding, stride and dilation (rows, columns).
struct Win {
    pad: Padding,
    s: (usize, usize),
    d: (usize, usize),
}

fn naive(
    x: &[f32],
    xs: [usize; 4],
    w: &[f32],
    ws: [usize; 4],
    b: &[f32],
    win: &Win,
    depthwise: bool,
) -> (Vec<f32>, [usize; 4]) {
    let Win { pad, s, d } = *win;
    let (n, h, wd, c) = (xs[0], xs[1], xs[2], xs[3]);
    let (kh, kw) = (ws[1], ws[2]);
    let oc = if depthwise { ws[3] } else { ws[0] };
    let eh = (kh - 1) * d.0 + 1;
    let ew = (kw - 1) * d.1 + 1;
    let (oh, ow) = match pad {
        Padding::Same => (h.div_ceil(s.0), wd.div_ceil(s.1)),
        Padding::Valid => ((h - eh) / s.0 + 1, (wd - ew) / s.1 + 1),
    };
    let pt = (((oh - 1) * s.0 + eh) as i64 - h as i64).max(0) / 2;
    let pl = (((ow - 1) * s.1 + ew) as i64 - wd as i64).max(0) / 2;
    let mut out = vec![0.0f32; n * oh * ow * oc];
    for bi in 0..n {
        for y in 0..oh {
            for xx in 0..ow {
                for o in 0..oc {
                    let mut acc = b[o] as f64;
                    for i in 0..kh {
                        for j in 0..kw {
                            let iy = (y * s.0 + i * d.0) as i64 - pt;
                            let ix = (xx * s.1 + j * d.1) as i64 - pl;
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                continue;
                            }
                            let base = ((bi * h + iy as usize) * wd + ix as usize) * c;
                            if depthwise {
                                let ci = o / (oc / c);
                                acc += x[base + ci] as f64 * w[(i * kw + j) * oc + o] as f64;
                            } else {
                                for ci in 0..c {
                                    acc += x[base + ci] as f64
                                        * w[((o * kh + i) * kw + j) * c + ci] as f64;
                                }
                            }
                        }
                    }
                    out[((bi * oh + y) * ow + xx) * oc + o] = acc as f32;
                }
            }
        }
    }
    (out, [n, oh, ow, oc])
}

/// Quantize x, per-channel weights and bias; run the int8 op; compare with the
/// naive float op on the dequantized operands: within one output step.
fn int8_vs_float(
    depthwise: bool,
    xs: [usize; 4],
    ws: [usize; 4],
    pad: Padding,
    s: (usize, usize),
    d: (usize, usize),
    seed: u64,
) {
    let mut r = Rng::lcg(seed);
    let nx: usize = xs.iter().product();
    let nw: usize = ws.iter().product();
    let oc = if depthwise { ws[3] } else { ws[0] };
    let (in_s, in_zp) = (0.02f32, -128i32);
    let xq: Vec<i8> = (0..nx)
        .map(|_| (((r.f32() + 1.0) * 2.5 / in_s).round() as i32 + in_zp).clamp(-128, 127) as i8)
        .collect();
    let wf: Vec<f32> = (0..nw).map(|_| r.f32()).collect();
    let axis = if depthwise { 3 } else { 0 };
    let per_c = nw / oc;
    let scales: Vec<f32> = (0..oc).map(|o| 0.004 + 0.002 * o as f32).collect();
    let wq: Vec<i8> = (0..nw)
        .map(|k| {
            let o = if depthwise { k % oc } else { k / per_c };
            (wf[k] / scales[o]).round().clamp(-127.0, 127.0) as i8
        })
        .collect();
    let bq: Vec<i32> = (0..oc)
        .map(|o| (r.f32() * 0.3 / (in_s * scales[o])).round() as i32)
        .collect();
    let xd: Vec<f32> = xq
        .iter()
        .map(|&v| (v as i32 - in_zp) as f32 * in_s)
        .collect();
    let wd: Vec<f32> = (0..nw)
        .map(|k| {
            let o = if depthwise { k % oc } else { k / per_c };
            wq[k] as f32 * scales[o]
        })
        .collect();
    let bd: Vec<f32> = (0..oc).map(|o| bq[o] as f32 * in_s * scales[o]).collect();
    let (want, os) = naive(&xd, xs, &wd, ws, &bd, &Win { pad, s, d }, depthwise);
    let (out_s, out_zp) = (0.15f32, 3i32);
    let op = if depthwise {
        Op::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding: pad,
            stride_h: s.0,
            stride_w: s.1,
            dilation_h: d.0,
            dilation_w: d.1,
            depth_multiplier: oc / xs[3],
            activation: Activation::None,
        })
    } else {
        Op::Conv2D(conv_opts(pad, s, d, Activation::None))
    };
    let g = one_op(
        op,
        vec![
            info("x", DType::I8, &xs, q(in_s, in_zp as i64)),
            konst(info("w", DType::I8, &ws, qc(&scales, axis)), &i8b(&wq)),
            konst(info("b", DType::I32, &[oc], None), &i32b(&bq)),
            info("y", DType::I8, &os, q(out_s, out_zp as i64)),
        ],
        vec![Some(0), Some(1), Some(2)],
    );
    let y: Vec<i8> = run(g, DType::I8, &xq);
    let mut checked = 0;
    for (k, (&got, &w)) in y.iter().zip(&want).enumerate() {
        let exact = w / out_s + out_zp as f32;
        if exact <= -127.0 || exact >= 126.0 {
            continue; // saturated
        }
        checked += 1;
        assert!(
            (got as f32 - exact).abs() <= 0.51,
            "output {k}: got {got}, float says {exact}"
        );
    }
    assert!(checked * 2 > y.len(), "too many saturated outputs");
    // The float kernel agrees with the naive reference too.
    let op = if depthwise {
        Op::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding: pad,
            stride_h: s.0,
            stride_w: s.1,
            dilation_h: d.0,
            dilation_w: d.1,
            depth_multiplier: oc / xs[3],
            activation: Activation::None,
        })
    } else {
        Op::Conv2D(conv_opts(pad, s, d, Activation::None))
    };
    let g = one_op(
        op,
        vec![
            info("x", DType::F32, &xs, None),
            konst(info("w", DType::F32, &ws, None), &f32b(&wd)),
            konst(info("b", DType::F32, &[oc], None), &f32b(&bd)),
            info("y", DType::F32, &os, None),
        ],
        vec![Some(0), Some(1), Some(2)],
    );
    let yf: Vec<f32> = run(g, DType::F32, &xd);
    for (a, b) in yf.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "float {a} vs {b}");
    }
}

#[test]
fn conv_i8_matches_float_same_stride2() {
    int8_vs_float(
        false,
        [1, 9, 8, 3],
        [4, 3, 3, 3],
        Padding::Same,
        (2, 2),
        (1, 1),
        1,
    );
}

#[test]
fn conv_i8_matches_float_dilation2() {
    int8_vs_float(
        false,
        [2, 8, 9, 2],
        [3, 3, 2, 2],
        Padding::Same,
        (1, 2),
        (2, 2),
        2,
    );
    int8_vs_float(
        false,
        [1, 9, 9, 2],
        [3, 3, 3, 2],
        Padding::Valid,
        (1, 1),
        (2, 2),
        3,
    );
}

#[test]
fn depthwise_i8_matches_float_multiplier2() {
    int8_vs_float(
        true,
        [1, 7, 8, 3],
        [1, 3, 3, 6],
        Padding::Same,
        (2, 2),
        (1, 1),
        4,
    );
    int8_vs_float(
        true,
        [1, 9, 9, 2],
        [1, 3, 3, 4],
        Padding::Valid,
        (1, 1),
        (2, 2),
        5,
    );
}
