//! Unit tests that build malformed models directly with the generated schema types.

use super::fb;
use super::{load_bytes, write_model};
use crate::engine::error::EngineError;
use crate::engine::graph::{Activation, Graph, ModelBytes, Node, Op};
use crate::engine::tensor::{DType, TensorInfo};

fn tensor(name: &str, shape: &[usize]) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
        quant: None,
        data: None,
    }
}

fn add_graph(in1: usize) -> Graph {
    Graph {
        bytes: ModelBytes::new(&[]),
        tensors: vec![tensor("a", &[2]), tensor("b", &[2]), tensor("out", &[2])],
        nodes: vec![Node {
            op: Op::Add {
                activation: Activation::None,
            },
            inputs: vec![Some(0), Some(in1)],
            outputs: vec![2],
        }],
        inputs: vec![0, 1],
        outputs: vec![2],
        input_names: vec![],
        output_names: vec![],
        description: "test".into(),
    }
}

#[test]
fn add_model_loads() {
    let g = load_bytes(&write_model(&add_graph(1))).unwrap();
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.input_names, ["a", "b"]);
    assert_eq!(g.output_names, ["out"]);
}

#[test]
fn out_of_range_tensor_index_names_operator() {
    let e = load_bytes(&write_model(&add_graph(7))).unwrap_err();
    match &e {
        EngineError::Operator { index, op, msg } => {
            assert_eq!((*index, op.as_str()), (0, "ADD"), "{e}");
            assert!(msg.contains("out of range"), "{e}");
        }
        other => panic!("unexpected error {other}"),
    }
}

/// A model with one FLOAT32 [4] constant tensor whose buffer is described by `buffer`.
fn model_with_buffer(buffer: fb::Buffer, type_: i8, shape: Vec<i32>) -> Vec<u8> {
    let model = fb::Model {
        version: 3,
        operator_codes: Some(vec![]),
        subgraphs: Some(vec![fb::SubGraph {
            tensors: Some(vec![fb::Tensor {
                shape: Some(shape),
                type_,
                buffer: 1,
                name: Some("w".into()),
                ..Default::default()
            }]),
            inputs: Some(vec![]),
            outputs: Some(vec![0]),
            operators: Some(vec![]),
            name: None,
        }]),
        buffers: Some(vec![fb::Buffer::default(), buffer]),
        ..Default::default()
    };
    super::writer::finish_with_identifier(&model)
}

fn tensor_error(bytes: &[u8]) -> String {
    match load_bytes(bytes) {
        Err(e @ EngineError::Tensor { .. }) => {
            assert!(e.to_string().contains("'w'"), "{e}");
            e.to_string()
        }
        Err(e) => panic!("expected a tensor error, got {e}"),
        Ok(_) => panic!("expected a tensor error, model loaded"),
    }
}

#[test]
fn buffer_offset_beyond_file_is_an_error() {
    let b = model_with_buffer(
        fb::Buffer {
            data: None,
            offset: 1_000_000,
            size: 16,
        },
        0,
        vec![4],
    );
    let e = tensor_error(&b);
    assert!(e.contains("beyond the file"), "{e}");
    // Overflowing offset + size.
    let b = model_with_buffer(
        fb::Buffer {
            data: None,
            offset: u64::MAX - 4,
            size: 16,
        },
        0,
        vec![4],
    );
    tensor_error(&b);
}

#[test]
fn buffer_size_must_match_shape() {
    let b = model_with_buffer(
        fb::Buffer {
            data: Some(vec![0; 12]),
            ..Default::default()
        },
        0,
        vec![4],
    );
    let e = tensor_error(&b);
    assert!(e.contains("12 bytes"), "{e}");
}

#[test]
fn bad_tensor_declarations_are_errors() {
    let empty = fb::Buffer::default();
    assert!(tensor_error(&model_with_buffer(empty.clone(), 5, vec![4])).contains("STRING"));
    assert!(tensor_error(&model_with_buffer(empty.clone(), 0, vec![2, -1])).contains("negative"));
    let huge = model_with_buffer(empty, 0, vec![65536, 65536, 4]);
    assert!(tensor_error(&huge).contains("2^31"));
}

#[test]
fn unaligned_external_buffer_is_copied() {
    // Place 16 bytes of data after the flatbuffer at an odd offset.
    let mut probe = model_with_buffer(
        fb::Buffer {
            data: None,
            offset: 1 << 40,
            size: 16,
        },
        0,
        vec![4],
    );
    let off = probe.len() as u64 + 1;
    probe = model_with_buffer(
        fb::Buffer {
            data: None,
            offset: off,
            size: 16,
        },
        0,
        vec![4],
    );
    assert_eq!(probe.len() as u64 + 1, off, "layout changed between builds");
    probe.push(0);
    for v in [1.0f32, 2.0, 3.0, 4.0] {
        probe.extend_from_slice(&v.to_le_bytes());
    }
    let g = load_bytes(&probe).unwrap();
    assert!(matches!(
        g.tensors[0].data,
        Some(crate::engine::tensor::ConstData::Owned(..))
    ));
    assert_eq!(
        bytemuck::cast_slice::<u8, f32>(g.const_bytes(0).unwrap()),
        [1.0, 2.0, 3.0, 4.0]
    );
}

#[test]
fn unsupported_operator_is_named() {
    let model = fb::Model {
        version: 3,
        operator_codes: Some(vec![fb::OperatorCode {
            deprecated_builtin_code: 36,
            builtin_code: 36,
            version: 1,
            custom_code: None,
        }]),
        subgraphs: Some(vec![fb::SubGraph {
            tensors: Some(vec![fb::Tensor {
                shape: Some(vec![1]),
                name: Some("x".into()),
                ..Default::default()
            }]),
            inputs: Some(vec![0]),
            outputs: Some(vec![0]),
            operators: Some(vec![fb::Operator::default(), fb::Operator::default()]),
            name: None,
        }]),
        buffers: Some(vec![fb::Buffer::default()]),
        ..Default::default()
    };
    let bytes = super::writer::finish_with_identifier(&model);
    let e = load_bytes(&bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "operator #0 GATHER: unsupported: operator not implemented by edgecam"
    );
}
