//! The inference engine: loads TFLite flatbuffer models and runs them.
//!
//! - [`tflite`]: the flatbuffer loader (model file → [`graph::Graph`]).
//! - [`exec`]: the executor (constant folding, the inference loop).
//! - `arena`: the activation arena (tensor lifetimes, placement, per-operator slices).
//! - [`ops`]: operator semantics (shape checks, quantization parameters).
//! - [`kernels`]: the arithmetic, grouped by instruction set behind one dispatch point.
//! - [`pool`]: the engine's own thread pool, which runs the operators' row ranges.
//! - [`quant`]: the quantization vocabulary (ranges → parameters, weights, biases).
//! - [`quantizer`]: float model + calibration frames → full-integer int8 model.

mod arena;
pub mod error;
pub mod exec;
pub mod graph;
#[allow(unsafe_code)]
pub mod kernels;
pub mod ops;
#[allow(unsafe_code)]
pub mod pool;
pub mod quant;
pub mod quantizer;
pub mod tensor;
pub mod tflite;

pub use error::{EngineError, Result};
pub use exec::{Interpreter, InterpreterOptions, KernelRequest, OpProfile};
pub use graph::Graph;
pub use tensor::{DType, Quant, TensorInfo};
