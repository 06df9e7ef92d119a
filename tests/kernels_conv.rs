//! Convolution-level property tests of the fast kernels: random single-operator
//! CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED graphs (odd channel counts, tails,
//! strides, dilations, SAME/VALID padding, per-channel quantization, zero points at
//! the extremes, fused activations) run through the `Interpreter` on every kernel
//! path this CPU offers and with 1..3 threads. int8 must equal the scalar path and
//! the portable reference loops (`scalar::conv::conv_q` & co.) bit for bit; float
//! must agree within a tight tolerance. Written over `KernelPath::available()`, so the
//! same file checks the NEON / dotprod / i8mm paths under qemu-aarch64.

use std::sync::Arc;

use edgecam::engine::graph::{
    Activation, Conv2DOptions, DepthwiseConv2DOptions, Graph, ModelBytes, Node, Op, Padding,
};
use edgecam::engine::kernels::scalar::conv::{self as refconv, ConvGeom};
use edgecam::engine::kernels::scalar::fc as reffc;
use edgecam::engine::kernels::{KernelPath, Mat, MatMut};
use edgecam::engine::quant::{
    activation_range_quantized, conv_multiplier_legacy, conv_multiplier_per_channel,
    quantize_multiplier, RequantPerChannel, I8_RANGE, U8_RANGE,
};
use edgecam::engine::tensor::{ConstData, DType, Quant, TensorInfo};
use edgecam::engine::{Interpreter, InterpreterOptions};

mod common;
use common::Rng;

/// A zero point: an extreme, 0, -1 or a random int8.
fn zp(rng: &mut Rng) -> i64 {
    let r = rng.i8() as i64;
    rng.pick(&[-128, 127, 0, -1, r])
}

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

/// Every (path, threads) to run: each available path on 1 thread, the best on 2 and 3.
fn configs() -> Vec<(KernelPath, usize)> {
    let mut c: Vec<_> = KernelPath::available()
        .into_iter()
        .map(|p| (p, 1))
        .collect();
    let best = KernelPath::best();
    c.push((best, 2));
    c.push((best, 3));
    c
}

fn run(g: &Graph, path: KernelPath, threads: usize, input: &[u8]) -> Vec<u8> {
    let opts = InterpreterOptions {
        kernels: path,
        threads,
        ..Default::default()
    };
    let mut it = Interpreter::with_options(g.clone(), &opts).expect("build");
    it.input_bytes_mut(0).unwrap().copy_from_slice(input);
    it.invoke().expect("invoke");
    it.output(0).unwrap().bytes.to_vec()
}

/// A random window geometry with a non-empty output.
fn geom(rng: &mut Rng, in_c: usize, out_c: usize, depthwise: bool) -> (ConvGeom, Padding) {
    loop {
        let fh = rng.pick(&[1, 1, 2, 3, 3, 5]);
        let fw = if rng.below(3) == 0 {
            rng.pick(&[1, 2, 3])
        } else {
            fh
        };
        let (sh, sw) = (rng.pick(&[1, 1, 2, 3]), rng.pick(&[1, 1, 2, 3]));
        let (dh, dw) = if rng.below(4) == 0 {
            (rng.pick(&[1, 2, 3]), rng.pick(&[1, 2]))
        } else {
            (1, 1)
        };
        let in_h = 1 + rng.below(if depthwise { 14 } else { 11 });
        let in_w = 1 + rng.below(if depthwise { 14 } else { 11 });
        let padding = if rng.below(2) == 0 {
            Padding::Same
        } else {
            Padding::Valid
        };
        let dim = |size: usize, f: usize, s: usize, d: usize| {
            let eff = (f - 1) * d + 1;
            let out = match padding {
                Padding::Same => size.div_ceil(s),
                Padding::Valid if size + s >= eff => (size + s - eff) / s,
                Padding::Valid => 0,
            };
            let pad = ((out.max(1) - 1) * s + eff).saturating_sub(size) / 2;
            (out, pad)
        };
        let (oh, pt) = dim(in_h, fh, sh, dh);
        let (ow, pl) = dim(in_w, fw, sw, dw);
        if oh == 0 || ow == 0 {
            continue;
        }
        let g = ConvGeom {
            batch: 1 + rng.below(2),
            in_h,
            in_w,
            in_c,
            out_h: oh,
            out_w: ow,
            out_c,
            filter_h: fh,
            filter_w: fw,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            pad_top: pt,
            pad_left: pl,
        };
        return (g, padding);
    }
}

struct QCase {
    in_scale: f32,
    in_zp: i64,
    out_scale: f32,
    out_zp: i64,
    f_scales: Vec<f32>,
    act: Activation,
}

fn qcase(rng: &mut Rng, channels: usize, per_channel: bool) -> QCase {
    let in_scale = 0.002 + rng.unit() * 0.05;
    let f_scales = (0..if per_channel { channels } else { 1 })
        .map(|_| 0.0005 + rng.unit() * 0.02)
        .collect();
    QCase {
        in_scale,
        in_zp: zp(rng),
        out_scale: 0.005 + rng.unit() * 0.2,
        out_zp: zp(rng),
        f_scales,
        act: rng.pick(&[Activation::None, Activation::Relu, Activation::Relu6]),
    }
}

/// The RequantPerChannel TFLite derives for this case (per-channel double or legacy rule).
fn requant(c: &QCase, channels: usize, legacy: bool) -> (Vec<i32>, Vec<i32>, i32, i32) {
    let (mut m, mut s) = (Vec::new(), Vec::new());
    for ch in 0..channels {
        let fs = c.f_scales[if c.f_scales.len() == 1 { 0 } else { ch }];
        let real = if legacy {
            conv_multiplier_legacy(c.in_scale, fs, c.out_scale)
        } else {
            conv_multiplier_per_channel(c.in_scale, fs, c.out_scale)
        };
        let (qm, sh) = quantize_multiplier(real);
        m.push(qm);
        s.push(sh);
    }
    let act = activation_range_quantized(c.act, c.out_scale, c.out_zp as i32, I8_RANGE).unwrap();
    (m, s, act.min, act.max)
}

fn filter_quant(c: &QCase, axis: usize) -> Option<Quant> {
    Some(Quant {
        scale: c.f_scales.clone(),
        zero_point: vec![0; c.f_scales.len()],
        axis,
    })
}

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&x| x as u8).collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn check_i8(g: &Graph, input: &[i8], reference: &[i8], what: &str) {
    let input = i8_bytes(input);
    let want = run(g, KernelPath::Scalar, 1, &input);
    assert_eq!(
        want,
        i8_bytes(reference),
        "{what}: scalar path vs reference loop"
    );
    for (path, threads) in configs() {
        let got = run(g, path, threads, &input);
        assert_eq!(got, want, "{what}: {path} x{threads}");
    }
}

fn check_f32(g: &Graph, input: &[f32], reference: &[f32], depth: usize, what: &str) {
    let input = f32_bytes(input);
    let tol = 2e-6 * depth as f32 + 1e-6;
    for (path, threads) in configs() {
        let got = run(g, path, threads, &input);
        if threads > 1 {
            // However the work is cut, each output is the same sequence of operations.
            assert_eq!(
                got,
                run(g, path, 1, &input),
                "{what}: {path} x{threads} vs x1"
            );
        }
        let got: Vec<f32> = got
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got.len(), reference.len());
        for (i, (a, b)) in got.iter().zip(reference).enumerate() {
            assert!(
                (a - b).abs() <= tol * b.abs().max(1.0),
                "{what}: {path} x{threads} [{i}] {a} vs {b}"
            );
        }
    }
}

#[test]
fn conv2d_int8_every_path_is_bit_exact() {
    let mut rng = Rng::new(0xC0_4401);
    for case in 0..120 {
        let in_c = rng.pick(&[1, 3, 4, 7, 8, 16, 17, 24, 33]);
        let out_c = rng.pick(&[1, 2, 5, 8, 16, 17, 31, 32, 40]);
        let (g, padding) = geom(&mut rng, in_c, out_c, false);
        let per_channel = rng.below(4) != 0;
        let c = qcase(&mut rng, out_c, per_channel);
        let input: Vec<i8> = (0..g.input_len()).map(|_| rng.i8_extreme()).collect();
        let filter: Vec<i8> = (0..out_c * g.filter_h * g.filter_w * in_c)
            .map(|_| rng.i8_extreme())
            .collect();
        let bias: Option<Vec<i32>> = (rng.below(5) != 0).then(|| {
            (0..out_c)
                .map(|_| (rng.next_u64() % 200_001) as i32 - 100_000)
                .collect()
        });
        let (m, s, lo, hi) = requant(&c, out_c, false);
        let q = RequantPerChannel {
            input_offset: -c.in_zp as i32,
            filter_offset: 0,
            output_offset: c.out_zp as i32,
            multipliers: &m,
            shifts: &s,
            act_min: lo,
            act_max: hi,
        };
        let mut reference = vec![0i8; g.output_len()];
        refconv::conv_q(&g, &input, &filter, bias.as_deref(), &q, &mut reference);
        let mut tensors = vec![
            info(
                "x",
                DType::I8,
                &[g.batch, g.in_h, g.in_w, in_c],
                Some(Quant::per_tensor(c.in_scale, c.in_zp)),
            ),
            konst(
                info(
                    "w",
                    DType::I8,
                    &[out_c, g.filter_h, g.filter_w, in_c],
                    filter_quant(&c, 0),
                ),
                &i8_bytes(&filter),
            ),
        ];
        let mut inputs = vec![Some(0), Some(1)];
        if let Some(b) = &bias {
            tensors.push(konst(info("b", DType::I32, &[out_c], None), &i32_bytes(b)));
            inputs.push(Some(2));
        }
        tensors.push(info(
            "y",
            DType::I8,
            &[g.batch, g.out_h, g.out_w, out_c],
            Some(Quant::per_tensor(c.out_scale, c.out_zp)),
        ));
        let op = Op::Conv2D(Conv2DOptions {
            padding,
            stride_h: g.stride_h,
            stride_w: g.stride_w,
            dilation_h: g.dilation_h,
            dilation_w: g.dilation_w,
            activation: c.act,
        });
        check_i8(
            &one_op(op, tensors, inputs),
            &input,
            &reference,
            &format!("conv case {case} {g:?}"),
        );
    }
}

#[test]
fn depthwise_int8_every_path_is_bit_exact() {
    let mut rng = Rng::new(0xD3_4402);
    for case in 0..120 {
        let in_c = rng.pick(&[1, 3, 8, 15, 16, 17, 32, 33, 48]);
        let mult = rng.pick(&[1, 1, 1, 2, 3]);
        let g = geom(&mut rng, in_c, in_c * mult, true);
        depthwise_int8_case(&mut rng, case, in_c, mult, g, false);
    }
}

/// The 3x3 register kernels (NEON, AVX2): interior pixels of larger images, channel counts in
/// blocks of 16, TFLite-style weights in [-127, 127] (the NEON kernel pairs taps in int16 only
/// then), strides 1 and 2, dilations, both paddings; left shifts come from `qcase`.
#[test]
fn depthwise_int8_3x3_interior_every_path_is_bit_exact() {
    let mut rng = Rng::new(0xD3_3303);
    for case in 0..60 {
        let in_c = rng.pick(&[16, 32, 48, 64]);
        let stride = rng.pick(&[1, 2]);
        let dilation = rng.pick(&[1, 1, 2]);
        let padding = if rng.below(2) == 0 {
            Padding::Same
        } else {
            Padding::Valid
        };
        let (in_h, in_w) = (5 + rng.below(16), 5 + rng.below(16));
        let dim = |size: usize| {
            let eff = 2 * dilation + 1;
            let out = match padding {
                Padding::Same => size.div_ceil(stride),
                Padding::Valid => (size + stride - eff) / stride,
            };
            let pad = ((out - 1) * stride + eff).saturating_sub(size) / 2;
            (out, pad)
        };
        let ((out_h, pad_top), (out_w, pad_left)) = (dim(in_h), dim(in_w));
        let g = ConvGeom {
            batch: 1 + rng.below(2),
            in_h,
            in_w,
            in_c,
            out_h,
            out_w,
            out_c: in_c,
            filter_h: 3,
            filter_w: 3,
            stride_h: stride,
            stride_w: stride,
            dilation_h: dilation,
            dilation_w: dilation,
            pad_top,
            pad_left,
        };
        depthwise_int8_case(&mut rng, case, in_c, 1, (g, padding), true);
    }
}

/// One random int8 depthwise case on geometry `g`, every kernel path against the reference;
/// `no_min_weight`: weights in [-127, 127] like TFLite's int8 weights.
fn depthwise_int8_case(
    rng: &mut Rng,
    case: usize,
    in_c: usize,
    mult: usize,
    (g, padding): (ConvGeom, Padding),
    no_min_weight: bool,
) {
    let out_c = in_c * mult;
    {
        let per_channel = rng.below(4) != 0;
        let mut c = qcase(rng, out_c, per_channel);
        if no_min_weight && rng.below(3) == 0 {
            // Multipliers above 1 for some channels: left shifts in the requantization.
            c.out_scale = 0.0002;
        }
        let input: Vec<i8> = (0..g.input_len()).map(|_| rng.i8_extreme()).collect();
        let filter: Vec<i8> = (0..g.filter_h * g.filter_w * out_c)
            .map(|_| {
                let w = rng.i8_extreme();
                if no_min_weight {
                    w.max(-127)
                } else {
                    w
                }
            })
            .collect();
        let bias: Option<Vec<i32>> = (rng.below(5) != 0).then(|| {
            (0..out_c)
                .map(|_| (rng.next_u64() % 200_001) as i32 - 100_000)
                .collect()
        });
        let (m, s, lo, hi) = requant(&c, out_c, false);
        let q = RequantPerChannel {
            input_offset: -c.in_zp as i32,
            filter_offset: 0,
            output_offset: c.out_zp as i32,
            multipliers: &m,
            shifts: &s,
            act_min: lo,
            act_max: hi,
        };
        let mut reference = vec![0i8; g.output_len()];
        refconv::depthwise_q(
            &g,
            mult,
            &input,
            &filter,
            bias.as_deref(),
            &q,
            &mut reference,
        );
        let graph = depthwise_graph(
            (&g, padding, mult, c.act),
            DType::I8,
            &c,
            (filter_quant(&c, 3), &i8_bytes(&filter)),
            bias.as_deref(),
        );
        check_i8(
            &graph,
            &input,
            &reference,
            &format!("depthwise case {case} {g:?} x{mult}"),
        );
    }
}

/// A one-operator quantized DEPTHWISE_CONV_2D graph of `dtype` on geometry `g` (padding,
/// depth multiplier, activation), with the input and output quantization of `c`, the filter
/// `(quantization, bytes)` and an optional bias.
fn depthwise_graph(
    (g, padding, mult, act): (&ConvGeom, Padding, usize, Activation),
    dtype: DType,
    c: &QCase,
    (wq, filter): (Option<Quant>, &[u8]),
    bias: Option<&[i32]>,
) -> Graph {
    let out_c = g.out_c;
    let mut tensors = vec![
        info(
            "x",
            dtype,
            &[g.batch, g.in_h, g.in_w, g.in_c],
            Some(Quant::per_tensor(c.in_scale, c.in_zp)),
        ),
        konst(
            info("w", dtype, &[1, g.filter_h, g.filter_w, out_c], wq),
            filter,
        ),
    ];
    let mut inputs = vec![Some(0), Some(1)];
    if let Some(b) = bias {
        tensors.push(konst(info("b", DType::I32, &[out_c], None), &i32_bytes(b)));
        inputs.push(Some(2));
    }
    tensors.push(info(
        "y",
        dtype,
        &[g.batch, g.out_h, g.out_w, out_c],
        Some(Quant::per_tensor(c.out_scale, c.out_zp)),
    ));
    let op = Op::DepthwiseConv2D(DepthwiseConv2DOptions {
        padding,
        stride_h: g.stride_h,
        stride_w: g.stride_w,
        dilation_h: g.dilation_h,
        dilation_w: g.dilation_w,
        depth_multiplier: mult,
        activation: act,
    });
    one_op(op, tensors, inputs)
}

/// uint8 depthwise (Coral-style models: per-tensor scales, zero points anywhere in
/// [0, 255] on input, filter and output) runs on the int8 kernels shifted by 128: every path
/// must equal TFLite's uint8 reference loop bit for bit, on channel counts that take the
/// vector blocks (16, 32, …) and their tails, borders and interiors alike.
#[test]
fn depthwise_uint8_every_path_is_bit_exact() {
    let mut rng = Rng::new(0xD3_0808);
    let u8_zp = |rng: &mut Rng| -> i64 {
        let r = rng.below(256) as i64;
        rng.pick(&[0, 255, 128, 127, r, r])
    };
    for case in 0..80 {
        let in_c = rng.pick(&[3, 16, 17, 32, 48, 64, 96]);
        let (g, padding) = geom(&mut rng, in_c, in_c, true);
        let mut c = qcase(&mut rng, 1, false);
        c.in_zp = u8_zp(&mut rng);
        c.out_zp = u8_zp(&mut rng);
        if rng.below(3) == 0 {
            // Multipliers above 1: left shifts in the requantization.
            c.out_scale = 0.0002;
        }
        let f_zp = u8_zp(&mut rng);
        let byte = |rng: &mut Rng| {
            let r = rng.below(256) as u8;
            rng.pick(&[0, 255, r, r])
        };
        let input: Vec<u8> = (0..g.input_len()).map(|_| byte(&mut rng)).collect();
        let filter: Vec<u8> = (0..g.filter_h * g.filter_w * in_c)
            .map(|_| byte(&mut rng))
            .collect();
        let bias: Option<Vec<i32>> = (rng.below(5) != 0).then(|| {
            (0..in_c)
                .map(|_| (rng.next_u64() % 200_001) as i32 - 100_000)
                .collect()
        });
        let (m, s, _, _) = requant(&c, in_c, true);
        let act =
            activation_range_quantized(c.act, c.out_scale, c.out_zp as i32, U8_RANGE).unwrap();
        let q = RequantPerChannel {
            input_offset: -c.in_zp as i32,
            filter_offset: -f_zp as i32,
            output_offset: c.out_zp as i32,
            multipliers: &m,
            shifts: &s,
            act_min: act.min,
            act_max: act.max,
        };
        let mut reference = vec![0u8; g.output_len()];
        refconv::depthwise_q(&g, 1, &input, &filter, bias.as_deref(), &q, &mut reference);
        let graph = depthwise_graph(
            (&g, padding, 1, c.act),
            DType::U8,
            &c,
            (Some(Quant::per_tensor(c.f_scales[0], f_zp)), &filter),
            bias.as_deref(),
        );
        for (path, threads) in std::iter::once((KernelPath::Scalar, 1)).chain(configs()) {
            let got = run(&graph, path, threads, &input);
            assert_eq!(
                got, reference,
                "uint8 depthwise case {case} {g:?} zp in {} w {f_zp} out {}: {path} x{threads}",
                c.in_zp, c.out_zp
            );
        }
    }
}

#[test]
fn fully_connected_int8_every_path_is_bit_exact() {
    let mut rng = Rng::new(0xFC_4403);
    for case in 0..80 {
        let batch = rng.pick(&[1, 1, 2, 3, 5, 9]);
        let depth = rng.pick(&[1, 3, 16, 17, 64, 100, 257]);
        let units = rng.pick(&[1, 2, 7, 16, 33, 100]);
        let per_channel = rng.below(2) == 0;
        let c = qcase(&mut rng, units, per_channel);
        let input: Vec<i8> = (0..batch * depth).map(|_| rng.i8_extreme()).collect();
        let w: Vec<i8> = (0..units * depth).map(|_| rng.i8_extreme()).collect();
        let bias: Option<Vec<i32>> = (rng.below(4) != 0).then(|| {
            (0..units)
                .map(|_| (rng.next_u64() % 20_001) as i32 - 10_000)
                .collect()
        });
        // TFLite: per-channel int8 FC uses per-channel double multipliers, per-tensor the legacy rule.
        let (m, s, lo, hi) = requant(&c, units, !per_channel);
        let q = RequantPerChannel {
            input_offset: -c.in_zp as i32,
            filter_offset: 0,
            output_offset: c.out_zp as i32,
            multipliers: &m,
            shifts: &s,
            act_min: lo,
            act_max: hi,
        };
        let mut reference = vec![0i8; batch * units];
        reffc::fc_q(
            Mat::dense(&input, batch, depth),
            Mat::dense(&w, units, depth),
            bias.as_deref(),
            &q,
            MatMut::dense(&mut reference, batch, units),
        );
        let mut tensors = vec![
            info(
                "x",
                DType::I8,
                &[batch, depth],
                Some(Quant::per_tensor(c.in_scale, c.in_zp)),
            ),
            konst(
                info("w", DType::I8, &[units, depth], filter_quant(&c, 0)),
                &i8_bytes(&w),
            ),
        ];
        let mut inputs = vec![Some(0), Some(1)];
        if let Some(b) = &bias {
            tensors.push(konst(info("b", DType::I32, &[units], None), &i32_bytes(b)));
            inputs.push(Some(2));
        }
        tensors.push(info(
            "y",
            DType::I8,
            &[batch, units],
            Some(Quant::per_tensor(c.out_scale, c.out_zp)),
        ));
        let op = Op::FullyConnected {
            activation: c.act,
            keep_num_dims: false,
            asymmetric_quantize_inputs: false,
        };
        check_i8(
            &one_op(op, tensors, inputs),
            &input,
            &reference,
            &format!("fc case {case} {batch}x{depth}->{units}"),
        );
    }
}

#[test]
fn conv_and_depthwise_f32_every_path_within_tolerance() {
    let mut rng = Rng::new(0xF3_4404);
    for case in 0..80 {
        let depthwise = rng.below(2) == 0;
        let in_c = rng.pick(&[1, 3, 8, 9, 16, 17, 24]);
        let mult = if depthwise { rng.pick(&[1, 1, 2]) } else { 1 };
        // Some wide convolutions: on few pixels (at most 64) and several threads their GEMM
        // is cut by columns.
        let out_c = if depthwise {
            in_c * mult
        } else {
            rng.pick(&[1, 4, 16, 17, 33, 130, 257])
        };
        let (g, padding) = geom(&mut rng, in_c, out_c, depthwise);
        let act = rng.pick(&[Activation::None, Activation::Relu6]);
        let clamp = if act == Activation::Relu6 {
            (0.0, 6.0)
        } else {
            (f32::MIN, f32::MAX)
        };
        let input: Vec<f32> = (0..g.input_len()).map(|_| rng.f32()).collect();
        let flen = if depthwise {
            g.filter_h * g.filter_w * out_c
        } else {
            out_c * g.filter_h * g.filter_w * in_c
        };
        let filter: Vec<f32> = (0..flen).map(|_| rng.f32()).collect();
        let bias: Option<Vec<f32>> =
            (rng.below(3) != 0).then(|| (0..out_c).map(|_| rng.f32()).collect());
        let mut reference = vec![0f32; g.output_len()];
        let fshape = if depthwise {
            refconv::depthwise_f32(
                &g,
                mult,
                &input,
                &filter,
                bias.as_deref(),
                clamp,
                &mut reference,
            );
            vec![1, g.filter_h, g.filter_w, out_c]
        } else {
            refconv::conv_f32(&g, &input, &filter, bias.as_deref(), clamp, &mut reference);
            vec![out_c, g.filter_h, g.filter_w, in_c]
        };
        let mut tensors = vec![
            info("x", DType::F32, &[g.batch, g.in_h, g.in_w, in_c], None),
            konst(info("w", DType::F32, &fshape, None), &f32_bytes(&filter)),
        ];
        let mut inputs = vec![Some(0), Some(1)];
        if let Some(b) = &bias {
            tensors.push(konst(info("b", DType::F32, &[out_c], None), &f32_bytes(b)));
            inputs.push(Some(2));
        }
        tensors.push(info(
            "y",
            DType::F32,
            &[g.batch, g.out_h, g.out_w, out_c],
            None,
        ));
        let op = if depthwise {
            Op::DepthwiseConv2D(DepthwiseConv2DOptions {
                padding,
                stride_h: g.stride_h,
                stride_w: g.stride_w,
                dilation_h: g.dilation_h,
                dilation_w: g.dilation_w,
                depth_multiplier: mult,
                activation: act,
            })
        } else {
            Op::Conv2D(Conv2DOptions {
                padding,
                stride_h: g.stride_h,
                stride_w: g.stride_w,
                dilation_h: g.dilation_h,
                dilation_w: g.dilation_w,
                activation: act,
            })
        };
        let depth = g.filter_h * g.filter_w * if depthwise { 1 } else { in_c };
        check_f32(
            &one_op(op, tensors, inputs),
            &input,
            &reference,
            depth,
            &format!("f32 case {case} {g:?}"),
        );
    }
}

#[test]
fn unsupported_kernel_path_is_a_clear_error() {
    let all = [
        KernelPath::Neon,
        KernelPath::Dotprod,
        KernelPath::I8mm,
        KernelPath::Avx2,
        KernelPath::Avx512,
    ];
    for p in all.into_iter().filter(|p| !p.supported()) {
        let g = one_op(
            Op::Relu,
            vec![
                info("x", DType::F32, &[4], None),
                info("y", DType::F32, &[4], None),
            ],
            vec![Some(0)],
        );
        let opts = InterpreterOptions {
            kernels: p,
            ..Default::default()
        };
        let e = Interpreter::with_options(g, &opts)
            .err()
            .expect("must fail")
            .to_string();
        assert!(e.contains(p.name()) && e.contains("not supported"), "{e}");
        let e = KernelPath::resolve(p.name()).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }
    assert!(KernelPath::resolve("avx1024")
        .unwrap_err()
        .contains("unknown kernel path"));
}

/// The fixed-size copies of im2col's short filter rows: values, padding rows, and the bounds
/// check before the first copy.
#[test]
fn short_rows_copies_rows_and_checks_bounds() {
    use edgecam::engine::kernels::scalar::copy::{short_rows, ShortRows};
    let input: Vec<i8> = (0..100).map(|x| x as i8).collect();
    let mut dst = vec![0i8; 3 * 27 + 16];
    // 3 pixels of 3 filter rows of 9 values (the middle one padding), pixels 6 values apart.
    let rows = |input, pad| ShortRows {
        input,
        srcs: &[10, usize::MAX, 50],
        sstep: 6,
        d0: 0,
        dstep: 27,
        row_len: 9,
        n: 3,
        pad,
    };
    short_rows(&rows(&input, -5), &mut dst);
    for i in 0..3 {
        let at = i * 27;
        assert_eq!(dst[at..at + 9], input[10 + 6 * i..19 + 6 * i]);
        assert!(dst[at + 9..at + 18].iter().all(|&v| v == -5));
        assert_eq!(dst[at + 18..at + 27], input[50 + 6 * i..59 + 6 * i]);
    }
    // The last copy needs input[62..78]: one value short panics before anything is written.
    let short = std::panic::catch_unwind(|| {
        let mut d = vec![0i8; 3 * 27 + 16];
        short_rows(&rows(&input[..77], 0), &mut d);
    });
    assert!(short.is_err());
    // The last copy writes d[72..88].
    let room = std::panic::catch_unwind(|| {
        let mut d = vec![0i8; 87];
        short_rows(&rows(&input, 0), &mut d);
    });
    assert!(room.is_err());
}

/// The dynamic-range input quantization (range, then values) on every path equals the scalar
/// oracle value for value: exact halves and values an ulp either side of them (where a
/// rounding written as `trunc(p + ½)` in single precision goes wrong), NaN, ±infinity, −0,
/// values past the int8 range, both schemes, lengths with every tail of the 32-value steps;
/// and a range found in pieces (as the operators cut it across threads) is the whole range.
#[test]
fn hybrid_input_quantization_every_path_matches_the_oracle() {
    use edgecam::engine::kernels::hybrid;
    use edgecam::engine::kernels::scalar::hybrid::{self as oracle, InputQuant};
    // The oracle's rounding itself, on values TFLite's `round` decides: half away from zero.
    let q = InputQuant::symmetric(-127.0, 127.0);
    let mut o = [0i8; 6];
    q.apply(&[2.5, -2.5, 0.49999997, -0.49999997, 126.5, -200.0], &mut o);
    assert_eq!(o, [3, -3, 0, 0, 127, -127]);

    let mut rng = Rng::new(0x5eed_4b1d);
    let (mut cases, mut halves) = (0, 0);
    for len in (0..70).chain([255, 1000, 4099]) {
        for asymmetric in [false, true] {
            let scale = [0.02f32, 0.7, 3.0][rng.below(3)];
            let mut values: Vec<f32> = (0..len)
                .map(|_| match rng.below(12) {
                    0 => [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0][rng.below(5)],
                    1 => (rng.unit() - 0.5) * 1e4,
                    _ => (rng.unit() - 0.3) * 200.0 * scale,
                })
                .collect();
            // Values whose product with the scale's inverse is exactly k + ½ (and an ulp
            // either side), inside the range so that the parameters stay those of `base`.
            let (blo, bhi) = oracle::min_max(&values);
            let bq = InputQuant::new(asymmetric, blo, bhi);
            if !bq.zero && bq.inv.is_finite() && bq.inv > 0.0 {
                let (klo, khi) = ((blo * bq.inv).ceil(), (bhi * bq.inv).floor() - 1.0);
                for v in values.iter_mut() {
                    if rng.below(3) != 0 || klo > khi || !(klo.is_finite() && khi.is_finite()) {
                        continue;
                    }
                    let k = klo + (rng.unit() * (khi - klo)).floor();
                    let target = k + 0.5;
                    let guess = target / bq.inv;
                    let exact = (-4i32..=4)
                        .map(|d| f32::from_bits((guess.to_bits() as i32 + d) as u32))
                        .find(|x| x * bq.inv == target && *x >= blo && *x <= bhi);
                    if let Some(x) = exact {
                        halves += 1;
                        let near = [
                            x,
                            f32::from_bits(x.to_bits() + 1),
                            f32::from_bits(x.to_bits() - 1),
                        ];
                        let y = near[rng.below(3)];
                        if y >= blo && y <= bhi {
                            *v = y;
                        }
                    }
                }
            }
            let (lo, hi) = oracle::min_max(&values);
            let want_q = InputQuant::new(asymmetric, lo, hi);
            let mut want = vec![0i8; len];
            want_q.apply(&values, &mut want);
            for path in KernelPath::available() {
                let mut got = vec![0i8; len];
                let got_q = hybrid::quantize(path, asymmetric, &values, &mut got);
                let what = format!("{path} len {len} asymmetric {asymmetric}");
                assert_eq!(got_q, want_q, "{what}: parameters");
                assert_eq!(got, want, "{what}: values");
                // The range in three pieces, combined as the operators combine them.
                let cut = [0, len / 3, len * 2 / 3, len];
                let (plo, phi) =
                    cut.windows(2)
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), w| {
                            let (l, h) = hybrid::min_max(path, &values[w[0]..w[1]]);
                            (if l < a { l } else { a }, if h > b { h } else { b })
                        });
                assert_eq!((plo, phi), (lo, hi), "{what}: range in pieces");
                cases += 1;
            }
        }
    }
    assert!(cases >= 146, "{cases} cases");
    assert!(halves > 200, "only {halves} exact halves");
}

/// The dynamic-range depthwise convolution (multiplier 1, one image) of every kernel path —
/// on aarch64 the NEON zero-point kernel shared with the int8 operator, with its float
/// epilogue — against the oracle's int32 sums (`depthwise_acc`) and float epilogue, value for
/// value: random windows (every filter size, stride, dilation, padding), channel counts with
/// 16-, 8- and 1-channel tails, 3x3 filters with channels in blocks of 16 on wide inputs (the
/// register kernels for interior runs and, from 64 channels, border pixels), weights with and
/// without -128 (two taps share an int16 lane only without), zero points at the extremes, and
/// no clamp, ReLU6 or a narrow clamp.
#[test]
fn hybrid_depthwise_every_path_matches_the_oracle() {
    use edgecam::engine::kernels::hybrid::{self, DepthwiseRowOperands, EpilogueArgs};
    use edgecam::engine::kernels::scalar::hybrid::{depthwise_acc, Epilogue};
    let mut rng = Rng::new(0x4b1d_d3e9);
    let mut fast_shapes = 0;
    for case in 0..90 {
        let g = if case % 3 == 0 {
            // The 3x3 register kernels' shape, interior runs and borders.
            let c = rng.pick(&[16, 32, 64, 96]);
            loop {
                let (mut g, _) = geom(&mut rng, c, c, true);
                if g.filter_h == 3 && g.filter_w == 3 {
                    g.batch = 1;
                    fast_shapes += 1;
                    break g;
                }
            }
        } else {
            let c = rng.pick(&[1, 7, 8, 16, 24, 35, 40, 64, 72]);
            ConvGeom {
                batch: 1,
                ..geom(&mut rng, c, c, true).0
            }
        };
        let c = g.in_c;
        let taps = g.filter_h * g.filter_w;
        let with_min = rng.below(3) == 0;
        let w8: Vec<i8> = (0..taps * c)
            .map(|_| {
                let v = rng.i8();
                if with_min || v != i8::MIN {
                    v
                } else {
                    -127
                }
            })
            .collect();
        let w32: Vec<i32> = w8.iter().map(|&v| v as i32).collect();
        let xq: Vec<i8> = (0..g.input_len()).map(|_| rng.i8()).collect();
        let zp = zp(&mut rng) as i32;
        let weight_scales: Vec<f32> = (0..c).map(|_| 0.001 + rng.unit() * 0.05).collect();
        let bias: Vec<f32> = (0..c).map(|_| (rng.unit() - 0.5) * 4.0).collect();
        let clamp = [(f32::NEG_INFINITY, f32::INFINITY), (0.0, 6.0), (-0.25, 0.5)][rng.below(3)];
        let input_scale = 0.001 + rng.unit() * 0.1;
        let mut acc = vec![0i32; g.output_len()];
        depthwise_acc(&g, 1, &xq, &[zp], &w8, &mut acc);
        let mut want = vec![0f32; g.output_len()];
        for (a, o) in acc.chunks_exact(c).zip(want.chunks_exact_mut(c)) {
            Epilogue::Combined.row(a, &weight_scales, input_scale, &bias, clamp, o);
        }
        assert!(want.iter().all(|v| !v.is_nan()));
        for path in KernelPath::available() {
            let op = DepthwiseRowOperands {
                g: &g,
                xq: &xq,
                w8: &w8,
                w: &w32,
                in_off: -zp,
                ep: EpilogueArgs {
                    epilogue: Epilogue::Combined,
                    weight_scales: &weight_scales,
                    input_scale,
                    bias: &bias,
                    clamp,
                },
            };
            let mut row_acc = vec![0i32; g.out_w * c];
            let mut got = vec![f32::NAN; g.output_len()];
            hybrid::depthwise(path, &op, &mut row_acc, &mut got);
            if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
                panic!(
                    "case {case} {path}: {g:?} zp {zp} with -128 {with_min}: output {i} (channel {}) is {}, oracle {}",
                    i % c,
                    got[i],
                    want[i]
                );
            }
        }
    }
    assert!(fast_shapes >= 30, "{fast_shapes} 3x3 cases");
}
