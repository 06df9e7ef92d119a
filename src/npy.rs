//! Minimal `.npy` (NumPy format 1.0/2.0) reader and writer for little-endian arrays.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::engine::DType;

/// An n-d array as raw little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

fn dtype_from_descr(d: &str) -> Result<DType> {
    Ok(match d {
        "<f4" => DType::F32,
        "<f2" => DType::F16,
        "<i4" => DType::I32,
        "|u1" | "<u1" => DType::U8,
        "|i1" | "<i1" => DType::I8,
        "<i8" => DType::I64,
        "<i2" => DType::I16,
        "|b1" => DType::Bool,
        other => bail!("unsupported npy dtype '{other}' (only little-endian numeric types)"),
    })
}

/// Pull the value of `'key': value` out of the header dict.
fn header_field<'a>(h: &'a str, key: &str) -> Result<&'a str> {
    let pat = format!("'{key}':");
    let start = h
        .find(&pat)
        .with_context(|| format!("npy header has no '{key}'"))?
        + pat.len();
    let rest = h[start..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').context("unterminated shape tuple")? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Ok(rest[..end].trim())
}

impl NpyArray {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            bail!("not a .npy file (bad magic)");
        }
        let major = bytes[6];
        let (hlen, hstart) = match major {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => {
                if bytes.len() < 12 {
                    bail!("truncated .npy header");
                }
                (
                    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                    12,
                )
            }
            v => bail!("unsupported .npy version {v}"),
        };
        let header = bytes
            .get(hstart..hstart + hlen)
            .context("truncated .npy header")?;
        let header = std::str::from_utf8(header).context("npy header is not text")?;
        let descr = header_field(header, "descr")?.trim_matches(|c| c == '\'' || c == '"');
        let dtype = dtype_from_descr(descr)?;
        if header_field(header, "fortran_order")? != "False" {
            bail!("fortran-ordered .npy arrays are not supported");
        }
        let shape_s = header_field(header, "shape")?;
        let shape: Vec<usize> = shape_s
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<usize>()
                    .with_context(|| format!("bad shape entry '{s}'"))
            })
            .collect::<Result<_>>()?;
        let n: usize = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .context("shape too large")?;
        let want = n.checked_mul(dtype.size()).context("shape too large")?;
        let data = &bytes[hstart + hlen..];
        if data.len() != want {
            bail!(
                "npy data is {} bytes, shape {:?} of {} needs {}",
                data.len(),
                shape,
                dtype.name(),
                want
            );
        }
        Ok(NpyArray {
            dtype,
            shape,
            data: data.to_vec(),
        })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&b).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let shape = match self.shape.len() {
            0 => "()".to_string(),
            1 => format!("({},)", self.shape[0]),
            _ => format!(
                "({})",
                self.shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let mut h = format!(
            "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
            self.dtype.npy_descr(),
            shape
        );
        // Pad so that the data starts on a 64-byte boundary, header ends in '\n'.
        let total = 10 + h.len() + 1;
        h.push_str(&" ".repeat((64 - total % 64) % 64));
        h.push('\n');
        let mut out = Vec::with_capacity(10 + h.len() + self.data.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(&self.to_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_keeps_dtype_shape_and_bytes() {
        let a = NpyArray {
            dtype: DType::I8,
            shape: vec![1, 3, 2],
            data: vec![1, 255, 3, 4, 128, 6],
        };
        let b = NpyArray::parse(&a.to_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.to_bytes().len() % 64,
            6,
            "data starts on a 64-byte boundary"
        );
    }

    #[test]
    fn rejects_truncated_data() {
        let a = NpyArray {
            dtype: DType::F32,
            shape: vec![4],
            data: vec![0; 16],
        };
        let mut b = a.to_bytes();
        b.truncate(b.len() - 1);
        let e = NpyArray::parse(&b).unwrap_err().to_string();
        assert!(e.contains("needs 16"), "{e}");
    }
}
