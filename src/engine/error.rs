//! Engine errors: every failure names the operator or tensor it concerns.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    /// The flatbuffer itself is malformed (truncated, bad offsets, wrong identifier...).
    #[error("invalid model file: {0}")]
    InvalidModel(String),
    /// A tensor's declaration is inconsistent (shape, type, buffer size, quantization).
    #[error("tensor {index} '{name}': {msg}")]
    Tensor {
        index: usize,
        name: String,
        msg: String,
    },
    /// An operator is malformed or its inputs do not fit it.
    #[error("operator #{index} {op}: {msg}")]
    Operator {
        index: usize,
        op: String,
        msg: String,
    },
    /// An operator (or operator variant / data type) this engine does not implement.
    #[error("operator #{index} {op}: unsupported: {msg}")]
    Unsupported {
        index: usize,
        op: String,
        msg: String,
    },
    /// Misuse of the interpreter API (wrong input size, unknown name...).
    #[error("{0}")]
    Usage(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// Shorthand used by operator implementations: an error about the current
/// operator, filled in with its index and name by the executor.
#[derive(Debug)]
pub struct OpError(pub String);

impl<T: Into<String>> From<T> for OpError {
    fn from(s: T) -> Self {
        OpError(s.into())
    }
}

pub type OpResult<T> = std::result::Result<T, OpError>;

/// `bail!`-style helper for operator code.
#[macro_export]
macro_rules! op_bail {
    ($($arg:tt)*) => {
        return Err($crate::engine::error::OpError(format!($($arg)*)))
    };
}

/// `ensure!`-style helper for operator code.
#[macro_export]
macro_rules! op_ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::engine::error::OpError(format!($($arg)*)));
        }
    };
}
