//! A small builder of engine [`Graph`]s for tests that make their own models
//! (the differential harness, the quantizer's pitfall tests).

use edgecam::engine::graph::*;
use edgecam::engine::tensor::{ConstData, DType, Quant, TensorInfo};
use edgecam::npy::NpyArray;

#[derive(Default)]
pub struct B {
    pub tensors: Vec<TensorInfo>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
    pub feeds: Vec<NpyArray>,
}

pub fn owned(bytes: &[u8]) -> ConstData {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    ConstData::Owned(std::sync::Arc::new(words), bytes.len())
}

impl B {
    pub fn tensor(&mut self, dtype: DType, shape: &[usize], quant: Option<Quant>) -> usize {
        let i = self.tensors.len();
        self.tensors.push(TensorInfo {
            name: format!("t{i}"),
            dtype,
            shape: shape.to_vec(),
            quant,
            data: None,
        });
        i
    }
    pub fn input(
        &mut self,
        dtype: DType,
        shape: &[usize],
        quant: Option<Quant>,
        data: Vec<u8>,
    ) -> usize {
        let t = self.tensor(dtype, shape, quant);
        self.inputs.push(t);
        self.feeds.push(NpyArray {
            dtype,
            shape: shape.to_vec(),
            data,
        });
        t
    }
    pub fn constant(
        &mut self,
        dtype: DType,
        shape: &[usize],
        quant: Option<Quant>,
        data: &[u8],
    ) -> usize {
        let t = self.tensor(dtype, shape, quant);
        assert_eq!(data.len(), self.tensors[t].byte_len());
        self.tensors[t].data = Some(owned(data));
        t
    }
    pub fn const_i32(&mut self, shape: &[usize], v: &[i32]) -> usize {
        self.constant(DType::I32, shape, None, bytemuck::cast_slice(v))
    }
    pub fn op(&mut self, op: Op, inputs: Vec<Option<usize>>, outputs: Vec<usize>) {
        self.nodes.push(Node {
            op,
            inputs,
            outputs,
        });
    }
    pub fn finish(mut self, outputs: &[usize]) -> (Graph, Vec<NpyArray>) {
        self.outputs = outputs.to_vec();
        let g = Graph {
            bytes: ModelBytes::new(&[]),
            input_names: self
                .inputs
                .iter()
                .map(|&t| self.tensors[t].name.clone())
                .collect(),
            output_names: self
                .outputs
                .iter()
                .map(|&t| self.tensors[t].name.clone())
                .collect(),
            tensors: self.tensors,
            nodes: self.nodes,
            inputs: self.inputs,
            outputs: self.outputs,
            description: "edgecam differential case".into(),
        };
        (g, self.feeds)
    }
}
