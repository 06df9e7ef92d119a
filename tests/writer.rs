//! Single-operator models built with the writer: they load back, and (when
//! `EDGECAM_PYTHON` points to a python with `ai_edge_litert`) TFLite's reference
//! interpreter runs them.

use std::path::Path;
use std::sync::Arc;

use edgecam::engine::graph::{
    Activation, Conv2DOptions, DetectionPostProcessOptions, Graph, ModelBytes, Node, Op, Padding,
};
use edgecam::engine::tensor::{ConstData, DType, Quant, TensorInfo};
use edgecam::engine::tflite::{load_bytes, write_model};

fn t(name: &str, dtype: DType, shape: &[usize], quant: Option<Quant>) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        quant,
        data: None,
    }
}

fn owned(bytes: &[u8]) -> ConstData {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    ConstData::Owned(Arc::new(words), bytes.len())
}

fn graph(
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
) -> Graph {
    Graph {
        bytes: ModelBytes::new(&[]),
        tensors,
        nodes,
        inputs,
        outputs,
        input_names: vec![],
        output_names: vec![],
        description: "edgecam writer test".into(),
    }
}

fn add_f32() -> Graph {
    graph(
        vec![
            t("x", DType::F32, &[1, 2, 2, 3], None),
            t("y", DType::F32, &[1, 2, 2, 3], None),
            t("sum", DType::F32, &[1, 2, 2, 3], None),
        ],
        vec![Node {
            op: Op::Add {
                activation: Activation::Relu,
            },
            inputs: vec![Some(0), Some(1)],
            outputs: vec![2],
        }],
        vec![0, 1],
        vec![2],
    )
}

fn conv_i8() -> Graph {
    let (cin, cout) = (3usize, 4usize);
    let weights: Vec<u8> = (0..cout * 3 * 3 * cin)
        .map(|i| ((i * 37 % 255) as i32 - 127) as i8 as u8)
        .collect();
    let bias: Vec<u8> = (0..cout as i32)
        .flat_map(|i| (i * 100 - 150).to_le_bytes())
        .collect();
    let wscale: Vec<f32> = (0..cout).map(|i| 0.01 + 0.002 * i as f32).collect();
    let in_scale = 0.05f32;
    let mut w = t(
        "w",
        DType::I8,
        &[cout, 3, 3, cin],
        Some(Quant {
            scale: wscale.clone(),
            zero_point: vec![0; cout],
            axis: 0,
        }),
    );
    w.data = Some(owned(&weights));
    let mut b = t(
        "b",
        DType::I32,
        &[cout],
        Some(Quant {
            scale: wscale.iter().map(|s| s * in_scale).collect(),
            zero_point: vec![0; cout],
            axis: 0,
        }),
    );
    b.data = Some(owned(&bias));
    graph(
        vec![
            t(
                "in",
                DType::I8,
                &[1, 5, 5, cin],
                Some(Quant::per_tensor(in_scale, -3)),
            ),
            w,
            b,
            t(
                "out",
                DType::I8,
                &[1, 3, 3, cout],
                Some(Quant::per_tensor(0.1, 2)),
            ),
        ],
        vec![Node {
            op: Op::Conv2D(Conv2DOptions {
                padding: Padding::Valid,
                stride_h: 1,
                stride_w: 1,
                dilation_h: 1,
                dilation_w: 1,
                activation: Activation::None,
            }),
            inputs: vec![Some(0), Some(1), Some(2)],
            outputs: vec![3],
        }],
        vec![0],
        vec![3],
    )
}

fn detection() -> Graph {
    let opts = DetectionPostProcessOptions {
        max_detections: 10,
        max_classes_per_detection: 1,
        detections_per_class: 100,
        use_regular_nms: false,
        nms_score_threshold: 0.3,
        nms_iou_threshold: 0.6,
        num_classes: 90,
        y_scale: 10.0,
        x_scale: 10.0,
        h_scale: 5.0,
        w_scale: 5.0,
    };
    let n = 16usize;
    let mut anchors = t("anchors", DType::F32, &[n, 4], None);
    let a: Vec<u8> = (0..n * 4)
        .flat_map(|i| (0.1 + (i % 7) as f32 * 0.1).to_le_bytes())
        .collect();
    anchors.data = Some(owned(&a));
    graph(
        vec![
            t("boxes", DType::F32, &[1, n, 4], None),
            t("scores", DType::F32, &[1, n, 91], None),
            anchors,
            t("det_boxes", DType::F32, &[1, 10, 4], None),
            t("det_classes", DType::F32, &[1, 10], None),
            t("det_scores", DType::F32, &[1, 10], None),
            t("num_det", DType::F32, &[1], None),
        ],
        vec![Node {
            op: Op::DetectionPostProcess(opts),
            inputs: vec![Some(0), Some(1), Some(2)],
            outputs: vec![3, 4, 5, 6],
        }],
        vec![0, 1],
        vec![3, 4, 5, 6],
    )
}

fn assert_reloads(g: &Graph) -> Vec<u8> {
    let bytes = write_model(g);
    let g2 = load_bytes(&bytes).unwrap();
    assert_eq!(g2.tensors.len(), g.tensors.len());
    for (i, (a, b)) in g.tensors.iter().zip(&g2.tensors).enumerate() {
        assert_eq!(
            (&a.name, a.dtype, &a.shape, &a.quant),
            (&b.name, b.dtype, &b.shape, &b.quant)
        );
        assert_eq!(g.const_bytes(i), g2.const_bytes(i));
    }
    assert_eq!(g.nodes[0].op, g2.nodes[0].op);
    assert_eq!(g.nodes[0].inputs, g2.nodes[0].inputs);
    assert_eq!(g.nodes[0].outputs, g2.nodes[0].outputs);
    bytes
}

#[test]
fn single_op_models_reload() {
    assert_reloads(&add_f32());
    assert_reloads(&conv_i8());
    assert_reloads(&detection());
}

/// Run each model once in TFLite's reference kernels with random inputs.
const RUN_PY: &str = r#"
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
for path in sys.argv[1:]:
    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        if d['dtype'] == np.float32:
            x = rng.random(d['shape'], dtype=np.float32)
        else:
            x = rng.integers(-128, 127, d['shape']).astype(d['dtype'])
        it.set_tensor(d['index'], x)
    it.invoke()
    outs = [it.get_tensor(d['index']) for d in it.get_output_details()]
    print(path, [o.shape for o in outs])
"#;

#[test]
fn reference_interpreter_runs_written_models() {
    let Some(py) = std::env::var_os("EDGECAM_PYTHON") else {
        eprintln!("note: EDGECAM_PYTHON not set; reference-interpreter check skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!("edgecam-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    for (name, g) in [
        ("add_f32", add_f32()),
        ("conv_i8", conv_i8()),
        ("detection", detection()),
    ] {
        let p = dir.join(format!("{name}.tflite"));
        std::fs::write(&p, assert_reloads(&g)).unwrap();
        paths.push(p);
    }
    let out = std::process::Command::new(&py)
        .arg("-c")
        .arg(RUN_PY)
        .args(paths.iter().map(|p: &std::path::PathBuf| p.as_os_str()))
        .output()
        .expect("run EDGECAM_PYTHON");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "reference interpreter failed");
    assert_eq!(stdout.lines().count(), 3);
    let _ = Path::new("");
}
