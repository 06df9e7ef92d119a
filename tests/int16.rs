//! The 16x8 quantized SSD (`models/ssd_mobilenetv2_oidv4_int16.tflite`: int16
//! activations, int8 per-channel weights, int64 biases; ai-edge-quantizer's
//! `static_wi8_ai16` recipe) and the two BlazeFace face detectors made the same way
//! on real photos: bit-exact with TFLite's reference kernels on every kernel path,
//! and the detector built on the SSD finds what the float model finds.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgecam::detect::{Detector, DetectorConfig};
use edgecam::engine::kernels::KernelPath;
use edgecam::engine::{tflite, DType, Interpreter, InterpreterOptions};
use edgecam::npy::NpyArray;
use edgecam::postprocess::Detection;

mod common;
use common::graph::B;
use common::oracle::*;
use common::*;

fn models() -> PathBuf {
    root().join("models")
}

/// The shared photos (`../shared/media/images`), or the test copies when that
/// checkout is absent.
fn photos() -> Vec<PathBuf> {
    let shared = root().join("../shared/media/images");
    let dir = if shared.is_dir() {
        shared
    } else {
        root().join("tests/data")
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no photos in {}", dir.display());
    v
}

/// [`photos`], only two of them under qemu (the 192×192 models take seconds per photo
/// and path there).
fn qemu_photos() -> Vec<PathBuf> {
    let mut v = photos();
    if cfg!(target_arch = "aarch64") {
        v.truncate(2);
    }
    v
}

/// The model input of a photo: resized to `size`×`size`, mapped to [-1, 1], quantized
/// to int16 with the model's input scale (zero point 0), round half away from zero.
fn int16_input(photo: &Path, size: u32, scale: f32) -> NpyArray {
    let img = image::open(photo).unwrap().to_rgb8();
    let small = image::imageops::resize(&img, size, size, image::imageops::FilterType::Triangle);
    let q: Vec<i16> = small
        .into_raw()
        .iter()
        .map(|&p| {
            let v = (p as f32 - 127.5) / 127.5;
            (v / scale).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    NpyArray {
        dtype: DType::I16,
        shape: vec![1, size as usize, size as usize, 3],
        data: bytemuck::cast_slice(&q).to_vec(),
    }
}

/// Runs the 16x8 model `name` (int16 input `size`×`size`×3 and int16 outputs) on
/// `photos` with every kernel path (and the last with two threads) and compares every
/// output value with TFLite's reference kernels: bit-exact or the test fails.
fn bit_exact_on_every_path(name: &str, size: u32, photos: &[PathBuf]) {
    let model = models().join(name);
    let g = tflite::load_file(&model).unwrap();
    let input = &g.tensors[g.inputs[0]];
    assert_eq!(input.dtype, DType::I16);
    assert_eq!(input.shape, [1, size as usize, size as usize, 3]);
    let q = input.quant.as_ref().unwrap();
    assert_eq!(q.zp0(), 0);
    let outputs = g.outputs.len();
    let inputs: Vec<NpyArray> = photos
        .iter()
        .map(|p| int16_input(p, size, q.scale0()))
        .collect();
    let dir = tmpdir(&format!("int16-{}", name.trim_end_matches(".tflite")));
    let refs = tflite_cases(&dir, &model, &inputs, outputs, "BUILTIN_REF");

    let mut paths: Vec<(KernelPath, usize)> =
        KernelPath::available().iter().map(|&p| (p, 1)).collect();
    paths.push((*KernelPath::available().last().unwrap(), 2));
    let (mut compared, mut max_dev, mut differing) = (0usize, 0i32, 0usize);
    for &(path, threads) in &paths {
        let opts = InterpreterOptions {
            kernels: path,
            threads,
            ..Default::default()
        };
        let mut it = Interpreter::with_options(tflite::load_file(&model).unwrap(), &opts).unwrap();
        for ((photo, x), want) in photos.iter().zip(&inputs).zip(&refs) {
            it.input_bytes_mut(0).unwrap().copy_from_slice(&x.data);
            it.invoke().unwrap();
            for (k, want) in want.iter().enumerate() {
                let ours = it.output(k).unwrap();
                assert_eq!(want.dtype, DType::I16);
                assert_eq!(ours.shape(), &want.shape[..], "{photo:?} output {k}");
                let a = ours.i16().unwrap();
                let b: Vec<i16> = bytemuck::pod_collect_to_vec(&want.data);
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(&b) {
                    let d = (*x as i32 - *y as i32).abs();
                    max_dev = max_dev.max(d);
                    differing += usize::from(d != 0);
                }
                compared += a.len();
            }
        }
        println!("{path} x{threads}: {} photos", photos.len());
    }
    println!(
        "{name} vs TFLite reference: {compared} values compared over {} photos and {} paths, \
         {differing} differ, max deviation {max_dev}",
        photos.len(),
        paths.len()
    );
    assert_eq!(
        (differing, max_dev),
        (0, 0),
        "{name}: the engine differs from TFLite's reference kernels"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "a whole 16x8 SSD per photo and path takes minutes under qemu"
)]
fn int16_ssd_is_bit_exact_with_tflite_reference_on_every_path() {
    bit_exact_on_every_path("ssd_mobilenetv2_oidv4_int16.tflite", 300, &photos());
}

/// MediaPipe's BlazeFace, short range (128×128), made 16x8 by ai-edge-quantizer
/// (`scripts/make-quant-models`): CONV_2D, DEPTHWISE_CONV_2D, ADD, RELU, PAD,
/// MAX_POOL_2D, RESHAPE, CONCATENATION and QUANTIZE (int16 → int16) in int16. Small
/// enough to run on every aarch64 path under qemu too.
#[test]
fn int16_blazeface_short_range_is_bit_exact_with_tflite_reference_on_every_path() {
    bit_exact_on_every_path("face_detection_short_range_int16.tflite", 128, &photos());
}

/// MediaPipe's palm detector (lite, 192×192) made 16x8 the same way: a mixed graph as
/// ai-edge-quantizer writes it. TFLite has no int16 PRELU, so the quantizer keeps its 26
/// PRELUs in float between DEQUANTIZE (int16 → float) and QUANTIZE (float → int16); the
/// rest (and RESIZE_BILINEAR) runs in int16.
#[test]
fn int16_palm_detector_with_float_prelu_is_bit_exact_with_tflite_reference_on_every_path() {
    bit_exact_on_every_path("palm_detection_lite_int16.tflite", 192, &qemu_photos());
}

/// BlazeFace full range (192×192): adds RESIZE_BILINEAR in int16 (its feature pyramid).
#[test]
fn int16_blazeface_full_range_is_bit_exact_with_tflite_reference_on_every_path() {
    bit_exact_on_every_path(
        "face_detection_full_range_int16.tflite",
        192,
        &qemu_photos(),
    );
}

fn detect(model: &str, photo: &Path, threshold: f32) -> Vec<Detection> {
    let mut c = DetectorConfig::new(models().join(model));
    c.score_threshold = Some(threshold);
    let mut det = Detector::from_config(&c).unwrap();
    assert!(det.desc().is_some(), "{model}: the bundled description");
    let img = image::open(photo).unwrap().to_rgb8();
    det.detect(&img).unwrap()
}

fn iou(a: &Detection, b: &Detection) -> f32 {
    a.bbox.iou(&b.bbox)
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "two whole SSDs per photo take minutes under qemu"
)]
fn int16_detector_finds_what_the_float_model_finds() {
    let same = |a: &Detection, b: &Detection| a.class_id == b.class_id && iou(a, b) >= 0.5;
    let (mut float_total, mut float_found) = (0, 0);
    for photo in photos() {
        let float = detect("ssd_mobilenetv2_oidv4_fp32.tflite", &photo, 0.5);
        let float_low = detect("ssd_mobilenetv2_oidv4_fp32.tflite", &photo, 0.3);
        let int16 = detect("ssd_mobilenetv2_oidv4_int16.tflite", &photo, 0.5);
        let int16_low = detect("ssd_mobilenetv2_oidv4_int16.tflite", &photo, 0.3);
        println!("{photo:?}\n  fp32  {float:?}\n  int16 {int16_low:?}");
        // Nothing the float model does not see: every int16 detection is a float one
        // (same label, same place) at a slightly lower threshold.
        for d in &int16 {
            assert!(d.score >= 0.5 && d.score <= 1.0, "{d:?}");
            assert!(
                float_low.iter().any(|f| same(d, f)),
                "{photo:?}: the int16 model finds {d:?}, the float model does not: {float_low:?}"
            );
        }
        // And much of what the float model sees. Not all: the 16x8 model (bit-exact with
        // TFLite, see above) scores both dogs of the shared photos below 0.3.
        float_total += float.len();
        float_found += float
            .iter()
            .filter(|f| int16_low.iter().any(|d| same(d, f)))
            .count();
    }
    println!("int16 finds {float_found} of the {float_total} float detections");
    assert!(float_total >= 3, "too few float detections to compare");
    assert!(
        float_found * 2 >= float_total,
        "the int16 model finds only {float_found} of the {float_total} float detections"
    );
    // person.jpg: a person, as the float model says.
    let person = photos()
        .into_iter()
        .find(|p| p.ends_with("person.jpg"))
        .unwrap();
    let float = detect("ssd_mobilenetv2_oidv4_fp32.tflite", &person, 0.5);
    let found = detect("ssd_mobilenetv2_oidv4_int16.tflite", &person, 0.5);
    assert!(float.iter().any(|d| &*d.label == "Person"), "{float:?}");
    assert!(
        found.iter().any(|d| &*d.label == "Person"),
        "person.jpg: {found:?}"
    );
}

#[test]
#[cfg_attr(
    target_arch = "aarch64",
    ignore = "a whole 16x8 SSD takes a minute under qemu"
)]
fn edgecam_detect_runs_the_int16_model_with_its_bundled_description() {
    let person = photos()
        .into_iter()
        .find(|p| p.ends_with("person.jpg"))
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .arg("detect")
        .arg("--model")
        .arg(models().join("ssd_mobilenetv2_oidv4_int16.tflite"))
        .arg(&person)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"], "ssd_mobilenetv2_oidv4_int16");
    let labels: Vec<&str> = v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["label"].as_str().unwrap())
        .collect();
    assert!(labels.contains(&"Person"), "{v}");
}

/// Output size along one dimension (TFLite's rules).
fn out_size(
    same: bool,
    input: usize,
    filter: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let eff = (filter - 1) * dilation + 1;
    if same {
        Some(input.div_ceil(stride))
    } else if input < eff {
        None
    } else {
        Some((input - eff + stride) / stride)
    }
}

/// One random 16x8 CONV_2D or DEPTHWISE_CONV_2D as a `.tflite` model and its input.
fn random_conv16(r: &mut Rng, depthwise: bool) -> Option<(Vec<u8>, Vec<u8>)> {
    use edgecam::engine::graph::{Activation, Conv2DOptions, DepthwiseConv2DOptions, Op, Padding};
    use edgecam::engine::tensor::Quant;
    let n = r.usize(1, 2);
    let (h, w) = (r.usize(1, 12), r.usize(1, 12));
    // Now and then more than 256 input channels: several int32 blocks per dot product.
    let cin = if r.range(0, 6) == 0 {
        r.usize(250, 300)
    } else {
        r.usize(1, 24)
    };
    let mult = if depthwise && r.range(0, 4) == 0 {
        2
    } else {
        1
    };
    let cout = if depthwise {
        cin * mult
    } else {
        r.usize(1, 20)
    };
    let (kh, kw) = (r.usize(1, 5), r.usize(1, 5));
    let (sh, sw) = (r.usize(1, 3), r.usize(1, 3));
    let (dh, dw) = (r.usize(1, 2), r.usize(1, 2));
    let same = r.bool();
    let (oh, ow) = (
        out_size(same, h, kh, sh, dh)?,
        out_size(same, w, kw, sw, dw)?,
    );
    let in_scale = r.f32_in(1e-4, 1e-3);
    let mut b = B::default();
    let xs: Vec<i16> = (0..n * h * w * cin).map(|_| r.next_u64() as i16).collect();
    let x = b.input(
        DType::I16,
        &[n, h, w, cin],
        Some(Quant::per_tensor(in_scale, 0)),
        bytemuck::cast_slice(&xs).to_vec(),
    );
    let wshape = if depthwise {
        vec![1, kh, kw, cout]
    } else {
        vec![cout, kh, kw, cin]
    };
    let wn: usize = wshape.iter().product();
    let ws: Vec<i8> = (0..wn).map(|_| r.next_u64() as i8).collect();
    let scales: Vec<f32> = (0..cout).map(|_| r.f32_in(0.002, 0.05)).collect();
    let axis = if depthwise { 3 } else { 0 };
    let wt = b.constant(
        DType::I8,
        &wshape,
        Some(Quant {
            scale: scales.clone(),
            zero_point: vec![0; cout],
            axis,
        }),
        bytemuck::cast_slice(&ws),
    );
    let bias: Vec<i64> = (0..cout).map(|_| r.range(-1 << 24, 1 << 24)).collect();
    let bt = b.constant(
        DType::I64,
        &[cout],
        Some(Quant {
            scale: scales.iter().map(|s| s * in_scale).collect(),
            zero_point: vec![0; cout],
            axis: 0,
        }),
        bytemuck::cast_slice(&bias),
    );
    let terms = (kh * kw * if depthwise { 1 } else { cin }) as f32;
    let out_scale = in_scale * 0.02 * 128.0 * terms.sqrt() * r.f32_in(0.2, 3.0);
    let y = b.tensor(
        DType::I16,
        &[n, oh, ow, cout],
        Some(Quant::per_tensor(out_scale, 0)),
    );
    let padding = if same { Padding::Same } else { Padding::Valid };
    let activation = [Activation::None, Activation::Relu, Activation::Relu6][r.usize(0, 2)];
    let op = if depthwise {
        Op::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            depth_multiplier: mult,
            activation,
        })
    } else {
        Op::Conv2D(Conv2DOptions {
            padding,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            activation,
        })
    };
    b.op(op, vec![Some(x), Some(wt), Some(bt)], vec![y]);
    let (g, feeds) = b.finish(&[y]);
    Some((tflite::writer::write_model(&g), feeds[0].data.clone()))
}

fn run_model(model: &[u8], input: &[u8], kernels: KernelPath, threads: usize) -> Vec<u8> {
    let opts = InterpreterOptions {
        kernels,
        threads,
        ..Default::default()
    };
    let mut it = Interpreter::with_options(tflite::load_bytes(model).unwrap(), &opts).unwrap();
    it.input_bytes_mut(0).unwrap().copy_from_slice(input);
    it.invoke().unwrap();
    it.output(0).unwrap().bytes.to_vec()
}

#[test]
fn fast_16x8_kernels_match_the_scalar_oracle_on_every_path() {
    let mut r = Rng::new(0x1608);
    let mut configs: Vec<(KernelPath, usize)> = vec![];
    for &p in &KernelPath::available() {
        configs.push((p, 1));
        configs.push((p, 3));
    }
    let (mut cases, mut compared) = (0, 0usize);
    while cases < 80 {
        let depthwise = cases % 2 == 1;
        let Some((model, input)) = random_conv16(&mut r, depthwise) else {
            continue;
        };
        cases += 1;
        let want = run_model(&model, &input, KernelPath::Scalar, 1);
        for &(path, threads) in &configs {
            let got = run_model(&model, &input, path, threads);
            assert!(
                got == want,
                "case {cases} ({}) on {path} x{threads} differs from the scalar oracle",
                if depthwise { "depthwise" } else { "conv" }
            );
            compared += got.len() / 2;
        }
    }
    println!("fast 16x8 kernels: {cases} cases, {compared} values equal to the scalar oracle");
}

/// The error that loading or preparing the one-operator graph of `b` (output `y`) gives,
/// through the writer and the loader as a user's file would go; `what` names the case.
fn refused(b: B, y: usize, what: &str) -> String {
    let (g, _) = b.finish(&[y]);
    let bytes = tflite::writer::write_model(&g);
    match tflite::load_bytes(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|g| Interpreter::new(g).map(|_| ()).map_err(|e| e.to_string()))
    {
        Ok(()) => panic!("{what}: accepted"),
        Err(e) => e,
    }
}

#[test]
fn malformed_16x8_operators_are_refused_with_a_clear_error() {
    use edgecam::engine::graph::{Activation, Conv2DOptions, Op, Padding};
    use edgecam::engine::tensor::Quant;
    // (what is wrong, input zero point, bias type, filter type, expected words)
    let cases = [
        ("int32 bias", 0, DType::I32, DType::I8, "int64"),
        ("asymmetric input", 5, DType::I64, DType::I8, "zero point"),
        ("int16 filter", 0, DType::I64, DType::I16, "filter"),
    ];
    for (what, zp, bias_t, filter_t, words) in cases {
        let mut b = B::default();
        let x = b.input(
            DType::I16,
            &[1, 4, 4, 2],
            Some(Quant::per_tensor(1e-3, zp)),
            vec![0; 64],
        );
        let wt = b.constant(
            filter_t,
            &[3, 1, 1, 2],
            Some(Quant::per_tensor(0.01, 0)),
            &vec![1u8; 6 * filter_t.size()],
        );
        let bt = b.constant(
            bias_t,
            &[3],
            Some(Quant::per_tensor(1e-5, 0)),
            &vec![0u8; 3 * bias_t.size()],
        );
        let y = b.tensor(DType::I16, &[1, 4, 4, 3], Some(Quant::per_tensor(1e-3, 0)));
        b.op(
            Op::Conv2D(Conv2DOptions {
                padding: Padding::Same,
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                activation: Activation::None,
            }),
            vec![Some(x), Some(wt), Some(bt)],
            vec![y],
        );
        let err = refused(b, y, what);
        assert!(err.contains(words), "{what}: {err}");
    }
}

/// The int16 element-wise and pooling operators that TFLite has (RELU, RELU6, LEAKY_RELU,
/// MAX_POOL_2D, AVERAGE_POOL_2D, RESIZE_*; bit-exact in `tests/differential.rs`) take symmetric
/// tensors, and the ones it has no int16 kernel for are refused by name.
#[test]
fn int16_activations_and_pools_refuse_what_tflite_refuses() {
    use edgecam::engine::graph::{Activation, Op, Padding, Pool2DOptions};
    use edgecam::engine::tensor::Quant;
    let pool = Op::MaxPool2D(Pool2DOptions {
        padding: Padding::Valid,
        stride_h: 1,
        stride_w: 1,
        filter_h: 2,
        filter_w: 2,
        activation: Activation::None,
    });
    // (operator, input zero point, output zero point, output shape, expected words)
    let cases = [
        (
            Op::HardSwish,
            0,
            0,
            [1, 4, 4, 2],
            "HARD_SWISH on int16 is not supported",
        ),
        (
            Op::ReluN1To1,
            0,
            0,
            [1, 4, 4, 2],
            "RELU_N1_TO_1 on int16 is not supported",
        ),
        (Op::Relu, 0, 3, [1, 4, 4, 2], "zero points 0"),
        (pool.clone(), 2, 0, [1, 3, 3, 2], "zero points 0"),
    ];
    for (op, zi, zo, oshape, words) in cases {
        let mut b = B::default();
        let x = b.input(
            DType::I16,
            &[1, 4, 4, 2],
            Some(Quant::per_tensor(1e-3, zi)),
            vec![0; 64],
        );
        let y = b.tensor(DType::I16, &oshape, Some(Quant::per_tensor(1e-3, zo)));
        let what = op.name();
        b.op(op, vec![Some(x)], vec![y]);
        let err = refused(b, y, &format!("{what} ({zi}, {zo})"));
        assert!(err.contains(words), "{what}: {err}");
    }
}

/// A mixed graph, as a quantizer keeping only its most sensitive tensors in int16 writes it:
/// float input → QUANTIZE int8 → int8 CONV_2D → QUANTIZE int16 → 16x8 CONV_2D → QUANTIZE int8
/// → DEQUANTIZE, on a crop of a real photo, is bit-exact with TFLite's reference kernels on
/// every kernel path.
#[test]
fn a_graph_mixing_int8_and_int16_joined_by_quantize_matches_tflite() {
    use edgecam::engine::graph::{Activation, Conv2DOptions, Op, Padding};
    use edgecam::engine::tensor::Quant;
    let mut r = Rng::new(0x16_08);
    let (h, w, c1, c2) = (24usize, 24usize, 8usize, 12usize);
    let img = image::open(photos()[0].clone()).unwrap().to_rgb8();
    let crop = image::imageops::crop_imm(&img, 40, 40, w as u32, h as u32).to_image();
    let x: Vec<f32> = crop
        .into_raw()
        .iter()
        .map(|&p| p as f32 / 127.5 - 1.0)
        .collect();
    let mut b = B::default();
    let xin = b.input(
        DType::F32,
        &[1, h, w, 3],
        None,
        bytemuck::cast_slice(&x).to_vec(),
    );
    let s8 = 1.0 / 128.0;
    let x8 = b.tensor(DType::I8, &[1, h, w, 3], Some(Quant::per_tensor(s8, 0)));
    b.op(Op::Quantize, vec![Some(xin)], vec![x8]);
    let conv =
        |b: &mut B, r: &mut Rng, cin: usize, cout: usize, k: usize, in_scale: f32, bias64: bool| {
            let ws: Vec<f32> = (0..cout).map(|_| r.scale(0.004, 0.03)).collect();
            let wv: Vec<u8> = (0..cout * k * k * cin)
                .map(|_| r.range(-127, 127) as i8 as u8)
                .collect();
            let wt = b.constant(
                DType::I8,
                &[cout, k, k, cin],
                Some(Quant {
                    scale: ws.clone(),
                    zero_point: vec![0; cout],
                    axis: 0,
                }),
                &wv,
            );
            let bq = Quant {
                scale: ws.iter().map(|s| s * in_scale).collect(),
                zero_point: vec![0; cout],
                axis: 0,
            };
            let bt = if bias64 {
                let v: Vec<i64> = (0..cout).map(|_| r.range(-200_000, 200_000)).collect();
                b.constant(DType::I64, &[cout], Some(bq), bytemuck::cast_slice(&v))
            } else {
                let v: Vec<i32> = (0..cout).map(|_| r.range(-2000, 2000) as i32).collect();
                b.constant(DType::I32, &[cout], Some(bq), bytemuck::cast_slice(&v))
            };
            (wt, bt)
        };
    let opts = |act| {
        Op::Conv2D(Conv2DOptions {
            padding: Padding::Same,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            activation: act,
        })
    };
    // int8 convolution, ReLU.
    let (wt, bt) = conv(&mut b, &mut r, 3, c1, 3, s8, false);
    let y8_scale = 0.02;
    let y8 = b.tensor(
        DType::I8,
        &[1, h, w, c1],
        Some(Quant::per_tensor(y8_scale, -128)),
    );
    b.op(
        opts(Activation::Relu),
        vec![Some(x8), Some(wt), Some(bt)],
        vec![y8],
    );
    // To int16 (symmetric), then a 16x8 convolution without activation.
    let s16 = y8_scale * 256.0 / 32768.0;
    let y16 = b.tensor(DType::I16, &[1, h, w, c1], Some(Quant::per_tensor(s16, 0)));
    b.op(Op::Quantize, vec![Some(y8)], vec![y16]);
    let (wt, bt) = conv(&mut b, &mut r, c1, c2, 3, s16, true);
    let z16 = b.tensor(
        DType::I16,
        &[1, h, w, c2],
        Some(Quant::per_tensor(1.0 / 2048.0, 0)),
    );
    b.op(
        opts(Activation::None),
        vec![Some(y16), Some(wt), Some(bt)],
        vec![z16],
    );
    // Back to int8 and out as float.
    let z8 = b.tensor(DType::I8, &[1, h, w, c2], Some(Quant::per_tensor(0.06, 3)));
    b.op(Op::Quantize, vec![Some(z16)], vec![z8]);
    let out = b.tensor(DType::F32, &[1, h, w, c2], None);
    b.op(Op::Dequantize, vec![Some(z8)], vec![out]);
    let (g, feeds) = b.finish(&[out]);
    let bytes = tflite::writer::write_model(&g);
    let dir = tmpdir("int16-mixed");
    let model = dir.join("mixed.tflite");
    std::fs::write(&model, &bytes).unwrap();
    let want = tflite_reference(&dir.join("ref"), &model, &feeds[0], 1)
        .pop()
        .unwrap();
    let want: Vec<f32> = bytemuck::pod_collect_to_vec(&want.data);
    // Not a constant output: the int8 values span a range.
    let distinct: std::collections::BTreeSet<u32> = want.iter().map(|v| v.to_bits()).collect();
    assert!(distinct.len() > 20, "{} distinct outputs", distinct.len());
    for path in KernelPath::available() {
        for threads in [1, 2] {
            let opts = InterpreterOptions {
                kernels: path,
                threads,
                ..Default::default()
            };
            let mut it =
                Interpreter::with_options(tflite::load_bytes(&bytes).unwrap(), &opts).unwrap();
            it.input_bytes_mut(0)
                .unwrap()
                .copy_from_slice(&feeds[0].data);
            it.invoke().unwrap();
            let got = it.output(0).unwrap().f32().unwrap().to_vec();
            assert_eq!(got, want, "{path} x{threads}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
