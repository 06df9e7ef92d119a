//! Per-layer quantization error, like TFLite's QuantizationDebugger: both
//! models run on the same input with `keep_intermediates`; every int8 tensor
//! (graph inputs and every tensor an operator produces, in execution order)
//! with a float counterpart of the same name and size is dequantized and
//! compared with it (SQNR, scale-normalised RMSE, cosine).
//!
//! Names: the int8 model was made from the float one by ai-edge-quantizer,
//! which keeps the float model's tensor names; the requantized copies it
//! inserts are named `<float name>_quantized` and compare with `<float name>`.

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::compare::{round, Energy};
use crate::engine::{DType, Interpreter};

/// One int8 tensor and its float counterpart.
#[derive(Clone, Debug)]
struct Pair {
    int8: usize,
    float: usize,
    name: String,
    op: String,
    scale: f32,
    zero_point: i32,
}

/// The tensor correspondence between an int8 and a float model.
#[derive(Clone, Debug)]
pub struct LayerMap {
    pairs: Vec<Pair>,
}

/// Accumulated error of one layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerStat {
    pub name: String,
    pub op: String,
    /// Quantization scale of the int8 tensor.
    pub scale: f32,
    pub energy: Energy,
}

impl LayerStat {
    pub fn sqnr_db(&self) -> f64 {
        self.energy.sqnr_db()
    }
    /// RMSE in units of the int8 tensor's quantization step (ideal rounding: ~0.29).
    /// RMSE in quantization steps of the tensor (NaN, `null` in JSON, for a float tensor of
    /// a dynamic-range model).
    pub fn rmse_scaled(&self) -> f64 {
        if self.scale == 0.0 {
            return f64::NAN;
        }
        self.energy.rmse() / self.scale as f64
    }
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "op": self.op,
            "sqnr_db": round(self.sqnr_db()),
            "rmse_scaled": round(self.rmse_scaled()),
            "cosine": round(self.energy.cosine()),
            "scale": self.scale,
        })
    }
}

impl LayerMap {
    /// Match the tensors of `int8` with those of `float` by name.
    pub fn new(int8: &Interpreter, float: &Interpreter) -> Self {
        let ft = float.tensors();
        let fg = float.graph();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        for t in fg.inputs.iter().copied().chain(float.executed_outputs()) {
            if ft[t].dtype == DType::F32 {
                by_name.insert(ft[t].name.as_str(), t);
            }
        }
        let ig = int8.graph();
        let mut producer: HashMap<usize, &'static str> = HashMap::new();
        for n in &ig.nodes {
            for &o in &n.outputs {
                producer.insert(o, n.op.name());
            }
        }
        let it = int8.tensors();
        let mut pairs = Vec::new();
        for t in ig.inputs.iter().copied().chain(int8.executed_outputs()) {
            let info = &it[t];
            // Quantized tensors, and the float activations of dynamic-range models (their
            // error is what the on-the-fly quantization inside the operators left).
            let (scale, zero_point) = match info.dtype {
                DType::I8 | DType::U8 | DType::I16 => {
                    match info.quant.as_ref().filter(|q| q.is_per_tensor()) {
                        Some(q) => (q.scale0(), q.zp0()),
                        None => continue,
                    }
                }
                DType::F32 => (0.0, 0),
                _ => continue,
            };
            let name = info.name.as_str();
            let f = by_name
                .get(name)
                .or_else(|| name.strip_suffix("_quantized").and_then(|b| by_name.get(b)));
            let Some(&f) = f else { continue };
            if ft[f].num_elements() != info.num_elements() {
                continue;
            }
            pairs.push(Pair {
                int8: t,
                float: f,
                name: info.name.clone(),
                op: producer.get(&t).copied().unwrap_or("INPUT").to_string(),
                scale,
                zero_point,
            });
        }
        LayerMap { pairs }
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Empty statistics, one per matched tensor in execution order.
    pub fn stats(&self) -> Vec<LayerStat> {
        self.pairs
            .iter()
            .map(|p| LayerStat {
                name: p.name.clone(),
                op: p.op.clone(),
                scale: p.scale,
                energy: Energy::default(),
            })
            .collect()
    }

    /// Add the errors of the last `invoke` of both interpreters to `stats`.
    pub fn accumulate(
        &self,
        int8: &Interpreter,
        float: &Interpreter,
        stats: &mut [LayerStat],
        scratch: &mut Vec<f32>,
    ) -> Result<()> {
        for (p, s) in self.pairs.iter().zip(stats.iter_mut()) {
            let q = int8.tensor(p.int8)?;
            let f = float.tensor(p.float)?;
            let fv = f.f32().map_err(|e| anyhow!(e.0))?;
            scratch.clear();
            let (sc, zp) = (p.scale, p.zero_point);
            match q.dtype() {
                DType::F32 => scratch.extend_from_slice(q.f32().map_err(|e| anyhow!(e.0))?),
                DType::I16 => scratch.extend(
                    q.i16()
                        .map_err(|e| anyhow!(e.0))?
                        .iter()
                        .map(|&v| (v as i32 - zp) as f32 * sc),
                ),
                DType::I8 => scratch.extend(
                    q.i8()
                        .map_err(|e| anyhow!(e.0))?
                        .iter()
                        .map(|&v| (v as i32 - zp) as f32 * sc),
                ),
                _ => scratch.extend(
                    q.u8()
                        .map_err(|e| anyhow!(e.0))?
                        .iter()
                        .map(|&v| (v as i32 - zp) as f32 * sc),
                ),
            }
            s.energy.add_slices(fv, scratch);
        }
        Ok(())
    }
}
