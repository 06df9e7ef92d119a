//! TFLite flatbuffer loader: parses and validates a `.tflite` file into a [`Graph`].

use super::error::{EngineError, Result};
use super::graph::Graph;

/// Load and validate a model from a file.
pub fn load_file(path: impl AsRef<std::path::Path>) -> Result<Graph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_bytes(&bytes)
}

/// Load and validate a model from its bytes.
pub fn load_bytes(bytes: &[u8]) -> Result<Graph> {
    let _ = bytes;
    Err(EngineError::InvalidModel("loader not implemented".into()))
}
