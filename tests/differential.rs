//! Differential harness: random single-operator models, run in this engine and
//! in TFLite's reference kernels (`scripts/oracle.py`, BUILTIN_REF), compared
//! exactly (integer outputs) or within tolerance (float outputs).
//!
//! The models are built as `Graph`s here, serialised with the engine's own
//! `.tflite` writer and loaded back through the loader, so the loader, the
//! writer and every operator are exercised together. The reference interpreter
//! is found through `EDGECAM_PYTHON` or `.venv/bin/python` (made by
//! `scripts/test`); without it the test fails rather than pass vacuously.
//! `EDGECAM_DIFF_CASES` sets the number of cases per operator variant.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgecam::engine::graph::*;
use edgecam::engine::tensor::{DType, Quant};
use edgecam::engine::{tflite, Interpreter};
use edgecam::npy::NpyArray;

mod common;
use common::graph::B;
use common::Rng;

// ---------------------------------------------------------------- data helpers

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    F32,
    I8,
    U8,
    /// 16x8: int16 activations (zero point 0), int8 weights, int64 biases.
    I16,
}

impl Kind {
    fn dtype(self) -> DType {
        match self {
            Kind::F32 => DType::F32,
            Kind::I8 => DType::I8,
            Kind::U8 => DType::U8,
            Kind::I16 => DType::I16,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::F32 => "f32",
            Kind::I8 => "i8",
            Kind::U8 => "u8",
            Kind::I16 => "i16",
        }
    }
}

fn n_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn rand_data(r: &mut Rng, k: Kind, n: usize) -> Vec<u8> {
    match k {
        Kind::F32 => {
            let v: Vec<f32> = (0..n).map(|_| r.f32_in(-3.0, 3.0)).collect();
            bytemuck::cast_slice(&v).to_vec()
        }
        Kind::I8 | Kind::U8 => (0..n).map(|_| r.next_u64() as u8).collect(),
        Kind::I16 => (0..2 * n).map(|_| r.next_u64() as u8).collect(),
    }
}

/// Random activation quantization for kind `k` (None for float).
fn rand_quant(r: &mut Rng, k: Kind) -> Option<Quant> {
    let scale = r.scale(0.005, 0.2);
    match k {
        Kind::F32 => None,
        Kind::I8 => {
            let zp = if r.range(0, 4) == 0 {
                r.pick(&[-128, 127, 0])
            } else {
                r.range(-128, 127)
            };
            Some(Quant::per_tensor(scale, zp))
        }
        Kind::U8 => {
            let zp = if r.range(0, 4) == 0 {
                r.pick(&[0, 255, 128])
            } else {
                r.range(0, 255)
            };
            Some(Quant::per_tensor(scale, zp))
        }
        Kind::I16 => Some(Quant::per_tensor(scale / 256.0, 0)),
    }
}

fn quant_with_scale(r: &mut Rng, k: Kind, scale: f32) -> Option<Quant> {
    let mut q = rand_quant(r, k)?;
    q.scale = vec![scale];
    Some(q)
}

fn rand_act(r: &mut Rng) -> Activation {
    r.pick(&[
        Activation::None,
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::ReluN1To1,
    ])
}

fn rand_shape(r: &mut Rng, rank: usize, max: usize) -> Vec<usize> {
    (0..rank).map(|_| r.usize(1, max)).collect()
}

/// Output size of a conv/pool along one dimension, TFLite rules.
fn out_size(
    padding: Padding,
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let eff = (filter - 1) * dilation + 1;
    match padding {
        Padding::Same => Some(input.div_ceil(stride)),
        Padding::Valid => {
            if input < eff {
                None
            } else {
                Some((input - eff + stride) / stride)
            }
        }
    }
}

// ---------------------------------------------------------------- case generators

type Case = (String, Graph, Vec<NpyArray>);

/// Weights for a conv-like op: (dtype, quant, bytes, scales used for the bias).
fn weights(
    r: &mut Rng,
    k: Kind,
    shape: &[usize],
    channel_axis: usize,
) -> (DType, Option<Quant>, Vec<u8>, Vec<f32>) {
    let n = n_of(shape);
    match k {
        Kind::F32 => {
            let v: Vec<f32> = (0..n).map(|_| r.f32_in(-1.0, 1.0)).collect();
            (DType::F32, None, bytemuck::cast_slice(&v).to_vec(), vec![])
        }
        Kind::I8 | Kind::I16 => {
            let ch = shape[channel_axis];
            let scales: Vec<f32> = (0..ch).map(|_| r.scale(0.002, 0.05)).collect();
            let v: Vec<i8> = (0..n).map(|_| r.range(-127, 127) as i8).collect();
            let q = Quant {
                scale: scales.clone(),
                zero_point: vec![0; ch],
                axis: channel_axis,
            };
            (
                DType::I8,
                Some(q),
                bytemuck::cast_slice(&v).to_vec(),
                scales,
            )
        }
        Kind::U8 => {
            let s = r.scale(0.002, 0.05);
            let zp = r.range(0, 255);
            let v: Vec<u8> = (0..n).map(|_| r.next_u64() as u8).collect();
            (DType::U8, Some(Quant::per_tensor(s, zp)), v, vec![s])
        }
    }
}

fn bias(r: &mut Rng, b: &mut B, k: Kind, n: usize, in_scale: f32, w_scales: &[f32]) -> usize {
    match k {
        Kind::F32 => {
            let v: Vec<f32> = (0..n).map(|_| r.f32_in(-1.0, 1.0)).collect();
            b.constant(DType::F32, &[n], None, bytemuck::cast_slice(&v))
        }
        Kind::I16 => {
            let scales: Vec<f32> = (0..n)
                .map(|c| in_scale * w_scales[if w_scales.len() == 1 { 0 } else { c }])
                .collect();
            let v: Vec<i64> = (0..n).map(|_| r.range(-800_000, 800_000)).collect();
            let q = Quant {
                scale: scales,
                zero_point: vec![0; n],
                axis: 0,
            };
            b.constant(DType::I64, &[n], Some(q), bytemuck::cast_slice(&v))
        }
        _ => {
            let scales: Vec<f32> = (0..n)
                .map(|c| in_scale * w_scales[if w_scales.len() == 1 { 0 } else { c }])
                .collect();
            let v: Vec<i32> = (0..n).map(|_| r.range(-3000, 3000) as i32).collect();
            // Per-tensor weights need a per-tensor bias: TFLite checks the bias
            // scale against input × weight scale through the tensor's single
            // (legacy) scale, which is 0 for a bias with several scales.
            let q = if w_scales.len() == 1 {
                Quant::per_tensor(scales[0], 0)
            } else {
                Quant {
                    scale: scales,
                    zero_point: vec![0; n],
                    axis: 0,
                }
            };
            b.constant(DType::I32, &[n], Some(q), bytemuck::cast_slice(&v))
        }
    }
}

/// An output scale that keeps a sum of `terms` products mostly in range.
fn acc_scale(r: &mut Rng, in_scale: f32, w_scale: f32, terms: usize) -> f32 {
    in_scale * w_scale * 128.0 * 100.0 * (terms as f32).sqrt() / 128.0 * r.f32_in(0.3, 3.0)
}

fn conv(r: &mut Rng, k: Kind, depthwise: bool) -> Option<Case> {
    let n = r.usize(1, 2);
    let (h, w) = (r.usize(1, 11), r.usize(1, 11));
    let cin = r.usize(1, 8);
    let mult = if depthwise { r.usize(1, 3) } else { 1 };
    let cout = if depthwise { cin * mult } else { r.usize(1, 8) };
    let (kh, kw) = (r.usize(1, 4), r.usize(1, 4));
    let (sh, sw) = (r.usize(1, 3), r.usize(1, 3));
    let (dh, dw) = if r.range(0, 3) == 0 {
        (r.usize(1, 2), r.usize(1, 2))
    } else {
        (1, 1)
    };
    let padding = if r.bool() {
        Padding::Same
    } else {
        Padding::Valid
    };
    let oh = out_size(padding, h, kh, sh, dh)?;
    let ow = out_size(padding, w, kw, sw, dw)?;
    let act = rand_act(r);
    let mut b = B::default();
    let iq = rand_quant(r, k);
    let x = b.input(
        k.dtype(),
        &[n, h, w, cin],
        iq.clone(),
        rand_data(r, k, n * h * w * cin),
    );
    let wshape = if depthwise {
        vec![1, kh, kw, cout]
    } else {
        vec![cout, kh, kw, cin]
    };
    let (wd, wq, wbytes, wscales) = weights(r, k, &wshape, if depthwise { 3 } else { 0 });
    let wt = b.constant(wd, &wshape, wq, &wbytes);
    let in_scale = iq.as_ref().map(|q| q.scale0()).unwrap_or(1.0);
    let bt = bias(r, &mut b, k, cout, in_scale, &wscales);
    let terms = kh * kw * if depthwise { 1 } else { cin };
    let oq = match k {
        Kind::F32 => None,
        _ => {
            let ws = wscales.iter().sum::<f32>() / wscales.len() as f32;
            let sc = acc_scale(r, in_scale, ws, terms);
            quant_with_scale(r, k, sc)
        }
    };
    let y = b.tensor(k.dtype(), &[n, oh, ow, cout], oq);
    let op = if depthwise {
        Op::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            depth_multiplier: mult,
            activation: act,
        })
    } else {
        Op::Conv2D(Conv2DOptions {
            padding,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            activation: act,
        })
    };
    b.op(op, vec![Some(x), Some(wt), Some(bt)], vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((
        format!(
            "{}_{}",
            if depthwise { "depthwise" } else { "conv" },
            k.name()
        ),
        g,
        f,
    ))
}

fn fully_connected(r: &mut Rng, k: Kind) -> Option<Case> {
    let batch = r.usize(1, 4);
    let depth = r.usize(1, 40);
    let units = r.usize(1, 12);
    let mut b = B::default();
    let iq = rand_quant(r, k);
    let x = b.input(
        k.dtype(),
        &[batch, depth],
        iq.clone(),
        rand_data(r, k, batch * depth),
    );
    // TFLite's FULLY_CONNECTED takes per-tensor int8 weights in the reference kernel
    // unless per-channel is declared; use per-tensor for int8 here.
    let (wd, wq, wbytes, mut wscales) = weights(r, k, &[units, depth], 0);
    let wq = match (k, wq) {
        (Kind::I8 | Kind::I16, Some(_)) if k == Kind::I8 || r.bool() => {
            let s = wscales[0];
            wscales = vec![s];
            Some(Quant::per_tensor(s, 0))
        }
        (_, q) => q,
    };
    let wt = b.constant(wd, &[units, depth], wq, &wbytes);
    let in_scale = iq.as_ref().map(|q| q.scale0()).unwrap_or(1.0);
    let bt = if r.range(0, 3) == 0 {
        None
    } else {
        Some(bias(r, &mut b, k, units, in_scale, &wscales))
    };
    let oq = match k {
        Kind::F32 => None,
        _ => {
            let sc = acc_scale(r, in_scale, wscales[0], depth);
            quant_with_scale(r, k, sc)
        }
    };
    let y = b.tensor(k.dtype(), &[batch, units], oq);
    b.op(
        Op::FullyConnected {
            activation: rand_act(r),
            keep_num_dims: false,
            asymmetric_quantize_inputs: false,
        },
        vec![Some(x), Some(wt), bt],
        vec![y],
    );
    let (g, f) = b.finish(&[y]);
    Some((format!("fully_connected_{}", k.name()), g, f))
}

/// Dynamic-range ("hybrid") operators: float input and output, int8 weights with zero point 0
/// (per channel with differing scales, per channel with one repeated scale, or per tensor),
/// float bias. Inputs are sometimes all positive (ReLU outputs: the zero point at -128).
fn hybrid(r: &mut Rng, which: &str) -> Option<Case> {
    let mut b = B::default();
    let lo = if r.bool() { 0.0 } else { -r.f32_in(0.5, 4.0) };
    let hi = r.f32_in(0.5, 6.0);
    let floats = |r: &mut Rng, n: usize| -> Vec<u8> {
        let v: Vec<f32> = (0..n).map(|_| r.f32_in(lo, hi)).collect();
        bytemuck::cast_slice(&v).to_vec()
    };
    // 0: per channel, 1: per channel with one repeated scale, 2: per tensor. TFLite's hybrid
    // depthwise kernel indexes the scales by channel, so it needs per-channel weights.
    let mode = r.range(0, if which == "depthwise" { 1 } else { 2 });
    let wquant = |r: &mut Rng, ch: usize, axis: usize| -> Quant {
        match mode {
            0 => Quant {
                scale: (0..ch).map(|_| r.scale(0.002, 0.05)).collect(),
                zero_point: vec![0; ch],
                axis,
            },
            1 => Quant {
                scale: vec![r.scale(0.002, 0.05); ch],
                zero_point: vec![0; ch],
                axis,
            },
            _ => Quant::per_tensor(r.scale(0.002, 0.05), 0),
        }
    };
    let int8s = |r: &mut Rng, n: usize| -> Vec<u8> {
        (0..n).map(|_| r.range(-127, 127) as i8 as u8).collect()
    };
    let act = rand_act(r);
    let y;
    match which {
        "fc" => {
            let (batch, depth, units) = (r.usize(1, 4), r.usize(1, 40), r.usize(1, 12));
            let x = b.input(DType::F32, &[batch, depth], None, floats(r, batch * depth));
            let wq = wquant(r, units, 0);
            let wt = b.constant(
                DType::I8,
                &[units, depth],
                Some(wq),
                &int8s(r, units * depth),
            );
            let bias: Vec<f32> = (0..units).map(|_| r.f32_in(-1.0, 1.0)).collect();
            let bt = b.constant(DType::F32, &[units], None, bytemuck::cast_slice(&bias));
            y = b.tensor(DType::F32, &[batch, units], None);
            b.op(
                Op::FullyConnected {
                    activation: act,
                    keep_num_dims: false,
                    asymmetric_quantize_inputs: r.bool(),
                },
                vec![Some(x), Some(wt), if r.bool() { Some(bt) } else { None }],
                vec![y],
            );
        }
        _ => {
            let depthwise = which == "depthwise";
            let n = r.usize(1, 2);
            let (h, w) = (r.usize(1, 12), r.usize(1, 12));
            let cin = r.usize(1, 8);
            let mult = if depthwise { r.usize(1, 2) } else { 1 };
            let cout = if depthwise {
                cin * mult
            } else {
                r.usize(1, 12)
            };
            let (kh, kw) = (r.usize(1, 3), r.usize(1, 3));
            let (sh, sw) = (r.usize(1, 2), r.usize(1, 2));
            let padding = if r.bool() {
                Padding::Same
            } else {
                Padding::Valid
            };
            let oh = out_size(padding, h, kh, sh, 1)?;
            let ow = out_size(padding, w, kw, sw, 1)?;
            let x = b.input(
                DType::F32,
                &[n, h, w, cin],
                None,
                floats(r, n * h * w * cin),
            );
            let wshape = if depthwise {
                vec![1, kh, kw, cout]
            } else {
                vec![cout, kh, kw, cin]
            };
            let wq = wquant(r, cout, if depthwise { 3 } else { 0 });
            let wt = b.constant(DType::I8, &wshape, Some(wq), &int8s(r, n_of(&wshape)));
            let bias: Vec<f32> = (0..cout).map(|_| r.f32_in(-1.0, 1.0)).collect();
            let bt = b.constant(DType::F32, &[cout], None, bytemuck::cast_slice(&bias));
            y = b.tensor(DType::F32, &[n, oh, ow, cout], None);
            let op = if depthwise {
                Op::DepthwiseConv2D(DepthwiseConv2DOptions {
                    padding,
                    stride_h: sh,
                    stride_w: sw,
                    dilation_h: 1,
                    dilation_w: 1,
                    depth_multiplier: mult,
                    activation: act,
                })
            } else {
                Op::Conv2D(Conv2DOptions {
                    padding,
                    stride_h: sh,
                    stride_w: sw,
                    dilation_h: 1,
                    dilation_w: 1,
                    activation: act,
                })
            };
            b.op(op, vec![Some(x), Some(wt), Some(bt)], vec![y]);
        }
    }
    let (g, f) = b.finish(&[y]);
    Some((format!("{which}_hybrid_w{mode}"), g, f))
}

fn broadcast_shapes(r: &mut Rng) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let rank = r.usize(1, 4);
    let full = rand_shape(r, rank, 5);
    let mut a = full.clone();
    let mut c = full.clone();
    if r.range(0, 2) > 0 {
        for d in 0..rank {
            match r.range(0, 3) {
                0 => a[d] = 1,
                1 => c[d] = 1,
                _ => {}
            }
        }
    }
    // Lower rank for one side sometimes.
    if rank > 1 && r.range(0, 3) == 0 {
        c.remove(0);
    }
    let out: Vec<usize> = {
        let ra = a.len().max(c.len());
        (0..ra)
            .map(|i| {
                let da = if i + a.len() >= ra {
                    a[i + a.len() - ra]
                } else {
                    1
                };
                let dc = if i + c.len() >= ra {
                    c[i + c.len() - ra]
                } else {
                    1
                };
                da.max(dc)
            })
            .collect()
    };
    (a, c, out)
}

fn binary(r: &mut Rng, k: Kind, which: &str) -> Option<Case> {
    let (sa, sb, so) = broadcast_shapes(r);
    let mut b = B::default();
    let qa = rand_quant(r, k);
    let qb = rand_quant(r, k);
    let x = b.input(k.dtype(), &sa, qa, rand_data(r, k, n_of(&sa)));
    let y = b.input(k.dtype(), &sb, qb, rand_data(r, k, n_of(&sb)));
    let oq = rand_quant(r, k);
    let z = b.tensor(k.dtype(), &so, oq);
    let activation = rand_act(r);
    let op = match which {
        "add" => Op::Add { activation },
        "sub" => Op::Sub { activation },
        _ => Op::Mul { activation },
    };
    b.op(op, vec![Some(x), Some(y)], vec![z]);
    let (g, f) = b.finish(&[z]);
    Some((format!("{which}_{}", k.name()), g, f))
}

fn concat(r: &mut Rng, k: Kind) -> Option<Case> {
    let rank = r.usize(1, 4);
    let base = rand_shape(r, rank, 4);
    let axis = r.usize(0, rank - 1);
    let nin = r.usize(1, 4);
    let mut b = B::default();
    let mut ins = vec![];
    let mut total = 0;
    // TFLite's int8 CONCATENATION requires every input to share the output's
    // quantization (it refuses to prepare otherwise); uint8 requantizes.
    let same_q = k == Kind::I8 || r.bool();
    let q0 = rand_quant(r, k);
    for _ in 0..nin {
        let mut s = base.clone();
        s[axis] = r.usize(1, 4);
        total += s[axis];
        let q = if same_q { q0.clone() } else { rand_quant(r, k) };
        ins.push(Some(b.input(k.dtype(), &s, q, rand_data(r, k, n_of(&s)))));
    }
    let mut so = base.clone();
    so[axis] = total;
    let oq = if same_q { q0 } else { rand_quant(r, k) };
    let z = b.tensor(k.dtype(), &so, oq);
    let axis = if r.bool() {
        axis as i32 - rank as i32
    } else {
        axis as i32
    };
    b.op(
        Op::Concatenation {
            axis,
            activation: Activation::None,
        },
        ins,
        vec![z],
    );
    let (g, f) = b.finish(&[z]);
    Some((format!("concatenation_{}", k.name()), g, f))
}

fn unary_io(r: &mut Rng, k: Kind, shape: &[usize]) -> (B, usize, Option<Quant>) {
    let mut b = B::default();
    let q = rand_quant(r, k);
    let x = b.input(k.dtype(), shape, q.clone(), rand_data(r, k, n_of(shape)));
    (b, x, q)
}

fn reshape_like(r: &mut Rng, k: Kind, which: &str) -> Option<Case> {
    let rank = r.usize(1, 4);
    let mut shape = rand_shape(r, rank, 5);
    let (mut b, x, q) = match which {
        "squeeze" => {
            for d in shape.iter_mut() {
                if r.bool() {
                    *d = 1;
                }
            }
            unary_io(r, k, &shape)
        }
        _ => unary_io(r, k, &shape),
    };
    let (op, ins, out_shape) = match which {
        "reshape" => {
            let n = n_of(&shape);
            // Factor n into a random new shape.
            let mut rest = n;
            let mut ns = vec![];
            for _ in 0..r.usize(0, 3) {
                let divs: Vec<usize> = (1..=rest).filter(|d| rest.is_multiple_of(*d)).collect();
                let d = r.pick(&divs);
                ns.push(d);
                rest /= d;
            }
            ns.push(rest);
            let sv: Vec<i32> = ns.iter().map(|&d| d as i32).collect();
            let st = b.const_i32(&[ns.len()], &sv);
            (Op::Reshape, vec![Some(x), Some(st)], ns)
        }
        "squeeze" => {
            let ones: Vec<i32> = (0..rank)
                .filter(|&d| shape[d] == 1)
                .map(|d| d as i32)
                .collect();
            let dims: Vec<i32> = if r.bool() {
                vec![]
            } else {
                ones.iter().copied().filter(|_| r.bool()).collect()
            };
            let out: Vec<usize> = (0..rank)
                .filter(|&d| !(shape[d] == 1 && (dims.is_empty() || dims.contains(&(d as i32)))))
                .map(|d| shape[d])
                .collect();
            (Op::Squeeze { dims }, vec![Some(x)], out)
        }
        _ => {
            // transpose
            let mut perm: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                let j = r.usize(0, i);
                perm.swap(i, j);
            }
            let pv: Vec<i32> = perm.iter().map(|&p| p as i32).collect();
            let pt = b.const_i32(&[rank], &pv);
            let out = perm.iter().map(|&p| shape[p]).collect();
            (Op::Transpose, vec![Some(x), Some(pt)], out)
        }
    };
    let y = b.tensor(k.dtype(), &out_shape, q);
    b.op(op, ins, vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((format!("{which}_{}", k.name()), g, f))
}

fn strided_slice(r: &mut Rng, k: Kind) -> Option<Case> {
    let rank = r.usize(1, 4);
    let shape = rand_shape(r, rank, 6);
    let (mut b, x, q) = unary_io(r, k, &shape);
    let mut begin = vec![];
    let mut end = vec![];
    let mut strides = vec![];
    let (mut bm, mut em, mut sm) = (0i32, 0i32, 0i32);
    let mut out = vec![];
    for (d, &dim) in shape.iter().enumerate() {
        let dim_i = dim as i64;
        let stride = r.pick(&[1i64, 1, 2, 3, -1, -2]);
        let mut bv = r.range(-dim_i, dim_i);
        let mut ev = r.range(-dim_i - 1, dim_i + 1);
        if r.range(0, 3) == 0 {
            bm |= 1 << d;
        }
        if r.range(0, 3) == 0 {
            em |= 1 << d;
        }
        let shrink = r.range(0, 5) == 0;
        if shrink {
            sm |= 1 << d;
            bm &= !(1 << d);
            em &= !(1 << d);
            bv = r.range(-dim_i, dim_i - 1);
            ev = bv + 1;
            begin.push(bv as i32);
            end.push(ev as i32);
            strides.push(1);
            continue;
        }
        begin.push(bv as i32);
        end.push(ev as i32);
        strides.push(stride as i32);
        // Resolve as TFLite does.
        let clamp = |v: i64| -> i64 {
            let v = if v < 0 { v + dim_i } else { v };
            if stride > 0 {
                v.clamp(0, dim_i)
            } else {
                v.clamp(-1, dim_i - 1)
            }
        };
        let b0 = if bm & (1 << d) != 0 {
            if stride > 0 {
                0
            } else {
                dim_i - 1
            }
        } else {
            clamp(bv)
        };
        let e0 = if em & (1 << d) != 0 {
            if stride > 0 {
                dim_i
            } else {
                -1
            }
        } else {
            clamp(ev)
        };
        let len = if stride > 0 {
            ((e0 - b0) + stride - 1).div_euclid(stride).max(0)
        } else {
            ((b0 - e0) + (-stride) - 1).div_euclid(-stride).max(0)
        };
        if len == 0 {
            return None; // keep cases non-empty
        }
        out.push(len as usize);
    }
    let bt = b.const_i32(&[rank], &begin);
    let et = b.const_i32(&[rank], &end);
    let st = b.const_i32(&[rank], &strides);
    let y = b.tensor(k.dtype(), &out, q);
    b.op(
        Op::StridedSlice(StridedSliceOptions {
            begin_mask: bm,
            end_mask: em,
            ellipsis_mask: 0,
            new_axis_mask: 0,
            shrink_axis_mask: sm,
            offset: false,
        }),
        vec![Some(x), Some(bt), Some(et), Some(st)],
        vec![y],
    );
    let (g, f) = b.finish(&[y]);
    Some((format!("strided_slice_{}", k.name()), g, f))
}

fn split(r: &mut Rng, k: Kind) -> Option<Case> {
    let rank = r.usize(1, 4);
    let mut shape = rand_shape(r, rank, 4);
    let axis = r.usize(0, rank - 1);
    let parts = r.usize(1, 3);
    shape[axis] *= parts;
    let mut b = B::default();
    let ax = b.constant(
        DType::I32,
        &[],
        None,
        bytemuck::cast_slice(&[if r.bool() {
            axis as i32
        } else {
            axis as i32 - rank as i32
        }]),
    );
    let q = rand_quant(r, k);
    let x = b.input(k.dtype(), &shape, q.clone(), rand_data(r, k, n_of(&shape)));
    let mut os = shape.clone();
    os[axis] /= parts;
    let outs: Vec<usize> = (0..parts)
        .map(|_| b.tensor(k.dtype(), &os, q.clone()))
        .collect();
    b.op(
        Op::Split { num_splits: parts },
        vec![Some(ax), Some(x)],
        outs.clone(),
    );
    let (g, f) = b.finish(&outs);
    Some((format!("split_{}", k.name()), g, f))
}

fn pad(r: &mut Rng, k: Kind) -> Option<Case> {
    let rank = r.usize(1, 4);
    let shape = rand_shape(r, rank, 4);
    let (mut b, x, q) = unary_io(r, k, &shape);
    let p: Vec<i32> = (0..rank * 2).map(|_| r.range(0, 2) as i32).collect();
    let pt = b.const_i32(&[rank, 2], &p);
    let out: Vec<usize> = (0..rank)
        .map(|d| shape[d] + (p[2 * d] + p[2 * d + 1]) as usize)
        .collect();
    let y = b.tensor(k.dtype(), &out, q);
    b.op(Op::Pad, vec![Some(x), Some(pt)], vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((format!("pad_{}", k.name()), g, f))
}

fn pool(r: &mut Rng, k: Kind, max: bool) -> Option<Case> {
    let shape = vec![r.usize(1, 2), r.usize(1, 9), r.usize(1, 9), r.usize(1, 6)];
    let (fh, fw) = (r.usize(1, 3), r.usize(1, 3));
    let (sh, sw) = (r.usize(1, 2), r.usize(1, 2));
    let padding = if r.bool() {
        Padding::Same
    } else {
        Padding::Valid
    };
    let oh = out_size(padding, shape[1], fh, sh, 1)?;
    let ow = out_size(padding, shape[2], fw, sw, 1)?;
    let (mut b, x, q) = unary_io(r, k, &shape);
    let y = b.tensor(k.dtype(), &[shape[0], oh, ow, shape[3]], q);
    let o = Pool2DOptions {
        padding,
        stride_h: sh,
        stride_w: sw,
        filter_h: fh,
        filter_w: fw,
        activation: rand_act(r),
    };
    b.op(
        if max {
            Op::MaxPool2D(o)
        } else {
            Op::AveragePool2D(o)
        },
        vec![Some(x)],
        vec![y],
    );
    let (g, f) = b.finish(&[y]);
    Some((
        format!("{}_pool_{}", if max { "max" } else { "average" }, k.name()),
        g,
        f,
    ))
}

fn mean(r: &mut Rng, k: Kind) -> Option<Case> {
    let shape = vec![r.usize(1, 2), r.usize(1, 7), r.usize(1, 7), r.usize(1, 6)];
    let mut b = B::default();
    let q = rand_quant(r, k);
    let x = b.input(k.dtype(), &shape, q, rand_data(r, k, n_of(&shape)));
    let axes: Vec<i32> = r
        .pick(&[
            &[1, 2][..],
            &[1, 2][..],
            &[1][..],
            &[2][..],
            &[3][..],
            &[1, 2, 3][..],
        ])
        .to_vec();
    let keep = r.bool();
    let at = b.const_i32(&[axes.len()], &axes);
    let out: Vec<usize> = (0..4)
        .filter_map(|d| {
            if axes.contains(&(d as i32)) {
                if keep {
                    Some(1)
                } else {
                    None
                }
            } else {
                Some(shape[d])
            }
        })
        .collect();
    let oq = rand_quant(r, k);
    let y = b.tensor(k.dtype(), &out, oq);
    b.op(
        Op::Mean { keep_dims: keep },
        vec![Some(x), Some(at)],
        vec![y],
    );
    let (g, f) = b.finish(&[y]);
    Some((format!("mean_{}", k.name()), g, f))
}

fn resize(r: &mut Rng, k: Kind, bilinear: bool) -> Option<Case> {
    let shape = vec![r.usize(1, 2), r.usize(1, 6), r.usize(1, 6), r.usize(1, 4)];
    let (oh, ow) = (r.usize(1, 12), r.usize(1, 12));
    let (mut b, x, q) = unary_io(r, k, &shape);
    let st = b.const_i32(&[2], &[oh as i32, ow as i32]);
    let (align_corners, half_pixel_centers) = match r.range(0, 2) {
        0 => (false, false),
        1 => (true, false),
        _ => (false, true),
    };
    let y = b.tensor(k.dtype(), &[shape[0], oh, ow, shape[3]], q);
    let o = ResizeOptions {
        align_corners,
        half_pixel_centers,
    };
    b.op(
        if bilinear {
            Op::ResizeBilinear(o)
        } else {
            Op::ResizeNearestNeighbor(o)
        },
        vec![Some(x), Some(st)],
        vec![y],
    );
    let (g, f) = b.finish(&[y]);
    Some((
        format!(
            "resize_{}_{}",
            if bilinear { "bilinear" } else { "nearest" },
            k.name()
        ),
        g,
        f,
    ))
}

fn activation(r: &mut Rng, k: Kind, which: &str) -> Option<Case> {
    let rank = r.usize(1, 4);
    let shape = rand_shape(r, rank, 6);
    let lut16 = k == Kind::I16 && matches!(which, "logistic" | "tanh");
    let (mut b, x, _) = if lut16 {
        // int16 LOGISTIC / TANH: the power-of-two scales TFLite takes directly
        // (2^-12, and 2^-11 for tanh), other powers of two and general scales.
        let scale = match r.range(0, 3) {
            0 => 2f32.powi(r.range(-15, -8) as i32),
            1 => r.pick(&[1.0 / 4096.0, 1.0 / 2048.0]),
            _ => r.scale(0.00002, 0.002),
        };
        let mut b = B::default();
        let q = Some(Quant::per_tensor(scale, 0));
        let x = b.input(k.dtype(), &shape, q.clone(), rand_data(r, k, n_of(&shape)));
        (b, x, q)
    } else {
        unary_io(r, k, &shape)
    };
    // Output quantization: fixed by TFLite for logistic/tanh/softmax.
    let oq = match (which, k) {
        (_, Kind::F32) => None,
        ("logistic" | "tanh" | "softmax", Kind::I16) => Some(Quant::per_tensor(1.0 / 32768.0, 0)),
        ("logistic" | "softmax", Kind::I8) => Some(Quant::per_tensor(1.0 / 256.0, -128)),
        ("logistic" | "softmax", Kind::U8) => Some(Quant::per_tensor(1.0 / 256.0, 0)),
        ("tanh", Kind::I8) => Some(Quant::per_tensor(1.0 / 128.0, 0)),
        ("tanh", Kind::U8) => Some(Quant::per_tensor(1.0 / 128.0, 128)),
        _ => rand_quant(r, k),
    };
    let op = match which {
        "logistic" => Op::Logistic,
        "softmax" => Op::Softmax {
            beta: r.pick(&[1.0, 1.0, 0.5, 2.0]),
        },
        "tanh" => Op::Tanh,
        "relu" => Op::Relu,
        "relu6" => Op::Relu6,
        "relu_n1_to_1" => Op::ReluN1To1,
        "hard_swish" => Op::HardSwish,
        _ => Op::LeakyRelu {
            alpha: r.f32_in(0.01, 0.5),
        },
    };
    let y = b.tensor(k.dtype(), &shape, oq);
    b.op(op, vec![Some(x)], vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((format!("{which}_{}", k.name()), g, f))
}

/// PRELU: alpha of the shapes real models use against an NHWC input (`[C]`, `[1, 1, C]`,
/// `[1, 1, 1, C]`, the input's own) or any shape that broadcasts to a 1-4-D input; a
/// constant (as in models) or a second graph input; values of both signs.
fn prelu(r: &mut Rng, k: Kind) -> Option<Case> {
    let mode = r.range(0, 5);
    let (shape, ashape) = if mode < 4 {
        let (n, h, w, c) = (r.usize(1, 2), r.usize(1, 9), r.usize(1, 9), r.usize(1, 12));
        let a = match mode {
            0 => vec![c],
            1 => vec![1, 1, c],
            2 => vec![1, 1, 1, c],
            _ => vec![n, h, w, c],
        };
        (vec![n, h, w, c], a)
    } else {
        let rank = r.usize(1, 4);
        let shape = rand_shape(r, rank, 6);
        let keep = r.usize(0, rank);
        let a: Vec<usize> = shape[rank - keep..]
            .iter()
            .map(|&d| if r.bool() { d } else { 1 })
            .collect();
        (shape, a)
    };
    let mut b = B::default();
    let iq = rand_quant(r, k);
    let x = b.input(k.dtype(), &shape, iq.clone(), rand_data(r, k, n_of(&shape)));
    let na = n_of(&ashape);
    let (aq, adata) = match k {
        Kind::F32 => {
            let v: Vec<f32> = (0..na).map(|_| r.f32_in(-1.5, 1.5)).collect();
            (None, bytemuck::cast_slice(&v).to_vec())
        }
        _ => {
            let mut q = rand_quant(r, k)?;
            q.scale = vec![r.scale(0.002, 0.03)];
            (Some(q), rand_data(r, k, na))
        }
    };
    let a = if r.range(0, 4) == 0 {
        b.input(k.dtype(), &ashape, aq, adata)
    } else {
        b.constant(k.dtype(), &ashape, aq, &adata)
    };
    let oq = iq.and_then(|q| {
        let s = q.scale0() * r.f32_in(0.3, 3.0);
        quant_with_scale(r, k, s)
    });
    let y = b.tensor(k.dtype(), &shape, oq);
    b.op(Op::Prelu, vec![Some(x), Some(a)], vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((format!("prelu_{}", k.name()), g, f))
}

/// DEPTH_TO_SPACE with block sizes 2-4; quantized input and output share parameters.
fn depth_to_space(r: &mut Rng, k: Kind) -> Option<Case> {
    let bs = r.usize(2, 4);
    let (n, h, w, c) = (r.usize(1, 2), r.usize(1, 6), r.usize(1, 6), r.usize(1, 5));
    let shape = [n, h, w, c * bs * bs];
    let (mut b, x, q) = unary_io(r, k, &shape);
    let y = b.tensor(k.dtype(), &[n, h * bs, w * bs, c], q);
    b.op(Op::DepthToSpace { block_size: bs }, vec![Some(x)], vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((format!("depth_to_space_{}", k.name()), g, f))
}

fn quantize(r: &mut Rng, from: Kind, to: Kind) -> Option<Case> {
    let rank = r.usize(1, 4);
    let shape = rand_shape(r, rank, 6);
    let (mut b, x, _) = unary_io(r, from, &shape);
    let oq = rand_quant(r, to);
    let y = b.tensor(to.dtype(), &shape, oq);
    b.op(Op::Quantize, vec![Some(x)], vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((format!("quantize_{}_to_{}", from.name(), to.name()), g, f))
}

fn dequantize(r: &mut Rng, from: Kind) -> Option<Case> {
    let rank = r.usize(1, 4);
    let shape = rand_shape(r, rank, 6);
    let (mut b, x, _) = unary_io(r, from, &shape);
    let y = b.tensor(DType::F32, &shape, None);
    b.op(Op::Dequantize, vec![Some(x)], vec![y]);
    let (g, f) = b.finish(&[y]);
    Some((format!("dequantize_{}", from.name()), g, f))
}

/// float16 constant → DEQUANTIZE → ADD with a float input (how fp16-weight models look).
fn dequantize_f16(r: &mut Rng) -> Option<Case> {
    let rank = r.usize(1, 3);
    let shape = rand_shape(r, rank, 6);
    let mut b = B::default();
    let n = n_of(&shape);
    let halfs: Vec<u16> = (0..n)
        .map(|_| half::f16::from_f32(r.f32_in(-4.0, 4.0)).to_bits())
        .collect();
    let c = b.constant(DType::F16, &shape, None, bytemuck::cast_slice(&halfs));
    let d = b.tensor(DType::F32, &shape, None);
    b.op(Op::Dequantize, vec![Some(c)], vec![d]);
    let x = b.input(DType::F32, &shape, None, rand_data(r, Kind::F32, n));
    let y = b.tensor(DType::F32, &shape, None);
    b.op(
        Op::Add {
            activation: Activation::None,
        },
        vec![Some(x), Some(d)],
        vec![y],
    );
    let (g, f) = b.finish(&[y]);
    Some(("dequantize_f16_add".into(), g, f))
}

fn detection_postprocess(r: &mut Rng) -> Option<Case> {
    let n = r.usize(4, 60);
    let classes = r.usize(1, 5);
    let mut b = B::default();
    let boxes: Vec<f32> = (0..n * 4).map(|_| r.f32_in(-1.0, 1.0)).collect();
    let scores: Vec<f32> = (0..n * (classes + 1)).map(|_| r.f32_in(0.0, 1.0)).collect();
    let anchors: Vec<f32> = (0..n)
        .flat_map(|_| {
            [
                r.f32_in(0.1, 0.9),
                r.f32_in(0.1, 0.9),
                r.f32_in(0.05, 0.5),
                r.f32_in(0.05, 0.5),
            ]
        })
        .collect();
    let bx = b.input(
        DType::F32,
        &[1, n, 4],
        None,
        bytemuck::cast_slice(&boxes).to_vec(),
    );
    let sc = b.input(
        DType::F32,
        &[1, n, classes + 1],
        None,
        bytemuck::cast_slice(&scores).to_vec(),
    );
    let an = b.constant(DType::F32, &[n, 4], None, bytemuck::cast_slice(&anchors));
    let max_det = r.usize(1, 10);
    let regular = r.bool();
    let per_det = if regular {
        1
    } else {
        r.usize(1, classes.min(3))
    };
    let opts = DetectionPostProcessOptions {
        max_detections: max_det,
        max_classes_per_detection: per_det,
        detections_per_class: r.usize(1, 10),
        use_regular_nms: regular,
        nms_score_threshold: r.f32_in(0.0, 0.6),
        nms_iou_threshold: r.f32_in(0.3, 0.7),
        num_classes: classes,
        y_scale: 10.0,
        x_scale: 10.0,
        h_scale: 5.0,
        w_scale: 5.0,
    };
    let m = max_det * per_det;
    let ob = b.tensor(DType::F32, &[1, m, 4], None);
    let oc = b.tensor(DType::F32, &[1, m], None);
    let os = b.tensor(DType::F32, &[1, m], None);
    let on = b.tensor(DType::F32, &[1], None);
    b.op(
        Op::DetectionPostProcess(opts),
        vec![Some(bx), Some(sc), Some(an)],
        vec![ob, oc, os, on],
    );
    let (g, f) = b.finish(&[ob, oc, os, on]);
    Some((
        format!(
            "detection_postprocess_{}",
            if regular { "regular" } else { "fast" }
        ),
        g,
        f,
    ))
}

type Generator = Box<dyn Fn(&mut Rng) -> Option<Case>>;

fn generators() -> Vec<(String, Generator)> {
    let mut v: Vec<(String, Generator)> = vec![];
    for k in [Kind::F32, Kind::I8, Kind::U8] {
        v.push((
            format!("conv_{}", k.name()),
            Box::new(move |r| conv(r, k, false)),
        ));
        v.push((
            format!("depthwise_{}", k.name()),
            Box::new(move |r| conv(r, k, true)),
        ));
        v.push((
            format!("fc_{}", k.name()),
            Box::new(move |r| fully_connected(r, k)),
        ));
        for w in ["add", "sub", "mul"] {
            v.push((
                format!("{w}_{}", k.name()),
                Box::new(move |r| binary(r, k, w)),
            ));
        }
        v.push((
            format!("concat_{}", k.name()),
            Box::new(move |r| concat(r, k)),
        ));
        for w in ["reshape", "squeeze", "transpose"] {
            v.push((
                format!("{w}_{}", k.name()),
                Box::new(move |r| reshape_like(r, k, w)),
            ));
        }
        v.push((
            format!("strided_slice_{}", k.name()),
            Box::new(move |r| strided_slice(r, k)),
        ));
        v.push((
            format!("split_{}", k.name()),
            Box::new(move |r| split(r, k)),
        ));
        v.push((format!("pad_{}", k.name()), Box::new(move |r| pad(r, k))));
        v.push((
            format!("max_pool_{}", k.name()),
            Box::new(move |r| pool(r, k, true)),
        ));
        v.push((
            format!("avg_pool_{}", k.name()),
            Box::new(move |r| pool(r, k, false)),
        ));
        v.push((format!("mean_{}", k.name()), Box::new(move |r| mean(r, k))));
        v.push((
            format!("resize_nn_{}", k.name()),
            Box::new(move |r| resize(r, k, false)),
        ));
        v.push((
            format!("resize_bl_{}", k.name()),
            Box::new(move |r| resize(r, k, true)),
        ));
        for w in [
            "logistic",
            "softmax",
            "tanh",
            "relu",
            "relu6",
            "relu_n1_to_1",
            "hard_swish",
            "leaky_relu",
        ] {
            v.push((
                format!("{w}_{}", k.name()),
                Box::new(move |r| activation(r, k, w)),
            ));
        }
    }
    for (a, c) in [
        (Kind::F32, Kind::I8),
        (Kind::F32, Kind::U8),
        (Kind::I8, Kind::I8),
        (Kind::U8, Kind::I8),
        (Kind::I8, Kind::U8),
    ] {
        v.push((
            format!("quantize_{}_{}", a.name(), c.name()),
            Box::new(move |r| quantize(r, a, c)),
        ));
    }
    for a in [Kind::I8, Kind::U8] {
        v.push((
            format!("dequantize_{}", a.name()),
            Box::new(move |r| dequantize(r, a)),
        ));
    }
    int16_generators(&mut v);
    v.push(("dequantize_f16".into(), Box::new(dequantize_f16)));
    for w in ["conv", "depthwise", "fc"] {
        v.push((format!("{w}_hybrid"), Box::new(move |r| hybrid(r, w))));
    }
    v.push((
        "detection_postprocess".into(),
        Box::new(detection_postprocess),
    ));
    // Last, so that adding them left the other variants' random cases unchanged.
    for w in ["logistic", "tanh", "softmax"] {
        v.push((
            format!("{w}_i16"),
            Box::new(move |r| activation(r, Kind::I16, w)),
        ));
    }
    for k in [Kind::F32, Kind::I8, Kind::U8] {
        v.push((
            format!("prelu_{}", k.name()),
            Box::new(move |r| prelu(r, k)),
        ));
        v.push((
            format!("depth_to_space_{}", k.name()),
            Box::new(move |r| depth_to_space(r, k)),
        ));
    }
    // The 16x8 forms of the stock detectors' other operators (BlazeFace: PAD, MAX_POOL_2D,
    // RELU; its full-range model RESIZE_BILINEAR), and the int16 activations TFLite has
    // (it refuses int16 HARD_SWISH and RELU_N1_TO_1).
    let k = Kind::I16;
    v.push(("pad_i16".into(), Box::new(move |r| pad(r, k))));
    v.push(("max_pool_i16".into(), Box::new(move |r| pool(r, k, true))));
    v.push(("avg_pool_i16".into(), Box::new(move |r| pool(r, k, false))));
    v.push((
        "resize_bl_i16".into(),
        Box::new(move |r| resize(r, k, true)),
    ));
    v.push((
        "resize_nn_i16".into(),
        Box::new(move |r| resize(r, k, false)),
    ));
    for w in ["relu", "relu6", "leaky_relu"] {
        v.push((format!("{w}_i16"), Box::new(move |r| activation(r, k, w))));
    }
    v
}

/// The 16x8 variants (int16 activations): the operators a `static_wi8_ai16`
/// quantized model uses, and the QUANTIZE / DEQUANTIZE joins of mixed graphs.
fn int16_generators(v: &mut Vec<(String, Generator)>) {
    let k = Kind::I16;
    v.push(("conv_i16".into(), Box::new(move |r| conv(r, k, false))));
    v.push(("depthwise_i16".into(), Box::new(move |r| conv(r, k, true))));
    v.push(("fc_i16".into(), Box::new(move |r| fully_connected(r, k))));
    v.push(("add_i16".into(), Box::new(move |r| binary(r, k, "add"))));
    v.push(("concat_i16".into(), Box::new(move |r| concat(r, k))));
    for w in ["reshape", "squeeze", "transpose"] {
        v.push((format!("{w}_i16"), Box::new(move |r| reshape_like(r, k, w))));
    }
    for (a, c) in [
        (Kind::F32, Kind::I16),
        (Kind::I16, Kind::I16),
        (Kind::I16, Kind::I8),
        (Kind::I8, Kind::I16),
    ] {
        v.push((
            format!("quantize_{}_{}", a.name(), c.name()),
            Box::new(move |r| quantize(r, a, c)),
        ));
    }
    v.push(("dequantize_i16".into(), Box::new(move |r| dequantize(r, k))));
}

// ---------------------------------------------------------------- running

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("EDGECAM_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the TFLite reference interpreter is needed: run scripts/test (it makes .venv) or set EDGECAM_PYTHON"
    );
    venv
}

fn compare(name: &str, k: usize, got: &[u8], dtype: DType, want: &NpyArray) -> Result<(), String> {
    if want.dtype != dtype {
        return Err(format!(
            "{name} out{k}: TFLite dtype {:?}, ours {:?}",
            want.dtype, dtype
        ));
    }
    match dtype {
        DType::F32 => {
            let a: Vec<f32> = bytemuck::pod_collect_to_vec(got);
            let b: Vec<f32> = bytemuck::pod_collect_to_vec(&want.data);
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                if (x - y).abs() > 1e-4 * y.abs() + 1e-4 {
                    return Err(format!("{name} out{k}[{i}]: ours {x}, TFLite {y}"));
                }
            }
        }
        _ => {
            if got != &want.data[..] {
                let es = dtype.size();
                let i = got
                    .chunks(es)
                    .zip(want.data.chunks(es))
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                let n = got.len() / es;
                let bad = got
                    .chunks(es)
                    .zip(want.data.chunks(es))
                    .filter(|(a, b)| a != b)
                    .count();
                return Err(format!(
                    "{name} out{k}: {bad} of {n} values differ, first at {i}: ours {:?}, TFLite {:?}",
                    &got[i * es..(i + 1) * es],
                    &want.data[i * es..(i + 1) * es]
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn random_single_operator_models_match_tflite_reference() {
    let per_variant: usize = std::env::var("EDGECAM_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("EDGECAM_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let dir = std::env::temp_dir().join(format!("edgecam-diff-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut r = Rng::new(seed);
    let mut cases: Vec<(String, PathBuf)> = vec![];
    for (gname, gen) in generators() {
        let mut made = 0;
        let mut tries = 0;
        while made < per_variant && tries < per_variant * 20 {
            tries += 1;
            let Some((name, graph, feeds)) = gen(&mut r) else {
                continue;
            };
            let bytes = tflite::writer::write_model(&graph);
            let cdir = dir.join(format!("{:04}_{gname}", cases.len()));
            std::fs::create_dir_all(&cdir).unwrap();
            std::fs::write(cdir.join("model.tflite"), &bytes).unwrap();
            for (i, f) in feeds.iter().enumerate() {
                f.write(&cdir.join(format!("in_{i}.npy"))).unwrap();
            }
            cases.push((name, cdir));
            made += 1;
        }
        assert!(made > 0, "generator {gname} produced no valid case");
    }
    let status = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oracle.py"))
        .arg(&dir)
        .status()
        .expect("running the reference oracle");
    assert!(status.success(), "oracle failed");

    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut passed: BTreeMap<String, usize> = BTreeMap::new();
    for (name, cdir) in &cases {
        let model = std::fs::read(cdir.join("model.tflite")).unwrap();
        if let Ok(e) = std::fs::read_to_string(cdir.join("ref_error.txt")) {
            failures
                .entry(name.clone())
                .or_default()
                .push(format!("TFLite rejected the case: {}", e.trim()));
            continue;
        }
        let res = (|| -> Result<(), String> {
            let g = tflite::load_bytes(&model).map_err(|e| format!("load: {e}"))?;
            // TFLite's fast NMS never writes the output slots past num_detections (they
            // keep whatever the arena held); ours are zero, so only the written part counts.
            let fast_nms_per_det = g.nodes.iter().find_map(|n| match &n.op {
                Op::DetectionPostProcess(o) if !o.use_regular_nms => {
                    Some(o.max_classes_per_detection)
                }
                _ => None,
            });
            let mut it = Interpreter::new(g).map_err(|e| format!("prepare: {e}"))?;
            for i in 0..it.input_count() {
                let f =
                    NpyArray::read(&cdir.join(format!("in_{i}.npy"))).map_err(|e| e.to_string())?;
                it.input_bytes_mut(i)
                    .map_err(|e| e.to_string())?
                    .copy_from_slice(&f.data);
            }
            it.invoke().map_err(|e| format!("invoke: {e}"))?;
            for k in 0..it.output_count() {
                let mut want = NpyArray::read(&cdir.join(format!("ref_{k}.npy")))
                    .map_err(|e| e.to_string())?;
                if let (Some(per_det), true) = (fast_nms_per_det, k < 3) {
                    let num = NpyArray::read(&cdir.join("ref_3.npy")).map_err(|e| e.to_string())?;
                    let num = bytemuck::pod_read_unaligned::<f32>(&num.data[..4]) as usize;
                    let written = num * per_det * if k == 0 { 4 } else { 1 } * 4;
                    if let Some(tail) = want.data.get_mut(written..) {
                        tail.fill(0);
                    }
                }
                let out = it.output(k).map_err(|e| e.to_string())?;
                if out.shape() != &want.shape[..]
                    && !(want.shape.is_empty() && n_of(out.shape()) == 1)
                {
                    return Err(format!(
                        "out{k} shape ours {:?}, TFLite {:?}",
                        out.shape(),
                        want.shape
                    ));
                }
                compare(name, k, out.bytes, out.dtype(), &want)?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => *passed.entry(name.clone()).or_default() += 1,
            Err(e) => failures
                .entry(name.clone())
                .or_default()
                .push(format!("{}: {e}", cdir.display())),
        }
    }
    let total: usize = passed.values().sum();
    println!(
        "differential: {total} of {} cases bit-exact/within tolerance",
        cases.len()
    );
    for (n, c) in &passed {
        println!("  {n}: {c} passed");
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut report = String::new();
    for (n, fs) in &failures {
        report.push_str(&format!("{n}: {} failed\n", fs.len()));
        for f in fs.iter().take(2) {
            report.push_str(&format!("    {f}\n"));
        }
    }
    assert!(
        failures.is_empty(),
        "differential failures (cases kept in {}):\n{report}",
        dir.display()
    );
}
