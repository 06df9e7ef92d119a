//! TFLite model metadata: the label file a model carries inside itself.
//!
//! A model written by TFLite's metadata tools (Model Maker, `tflite_support`'s
//! `MetadataPopulator`) has a `TFLITE_METADATA` entry in `Model.metadata` whose
//! buffer is a `ModelMetadata` flatbuffer (file identifier `M001`), and its
//! associated files (label maps among them) appended to the `.tflite` file as a
//! zip archive. [`embedded_labels`] finds the label file of the model's outputs
//! and returns its text.
//!
//! Only the few metadata fields needed are read, by a small bounds-checked
//! flatbuffer table reader: every offset is checked against the buffer, so a
//! corrupt file gives an error, never a panic or a large allocation.

use super::fb;
use super::loader::buffer_range;
use crate::engine::error::{EngineError, Result};
use planus::ReadAsRoot;

/// The name of the `Model.metadata` entry that holds TFLite's metadata.
const METADATA_NAME: &str = "TFLITE_METADATA";
/// `AssociatedFileType` values of label files.
const TENSOR_AXIS_LABELS: u8 = 2;
const TENSOR_VALUE_LABELS: u8 = 3;
/// Largest label file read (bytes).
const MAX_LABEL_FILE: usize = 4 << 20;

/// A label file packed into a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedFile {
    /// The file's name in the metadata and in the model's zip archive.
    pub name: String,
    pub text: String,
}

fn bad(msg: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidModel(format!("metadata: {msg}"))
}

/// The label file the model's metadata associates with its outputs, if any.
///
/// Output tensors' files of type `TENSOR_VALUE_LABELS` (detectors: the class
/// output) come first, then `TENSOR_AXIS_LABELS` (classifiers), then such files
/// attached to the subgraph or the model. `Ok(None)`: the model has no metadata
/// or no label file. A label file named in the metadata but missing from the
/// archive, compressed in a way not read here, or not UTF-8, is an error.
pub fn embedded_labels(model: &[u8]) -> Result<Option<EmbeddedFile>> {
    let Some(meta) = metadata_buffer(model)? else {
        return Ok(None);
    };
    let Some(name) = label_file_name(meta)? else {
        return Ok(None);
    };
    let data = zip_entry(model, &name)?.ok_or_else(|| {
        bad(format!(
            "label file '{name}' is named but not packed in the model"
        ))
    })?;
    if data.len() > MAX_LABEL_FILE {
        return Err(bad(format!(
            "label file '{name}' has {} bytes, more than {MAX_LABEL_FILE}",
            data.len()
        )));
    }
    let text = String::from_utf8(data.to_vec())
        .map_err(|_| bad(format!("label file '{name}' is not UTF-8 text")))?;
    Ok(Some(EmbeddedFile { name, text }))
}

/// The bytes of the `TFLITE_METADATA` buffer.
fn metadata_buffer(file: &[u8]) -> Result<Option<&[u8]>> {
    let fbe = |what: &str, e: planus::Error| bad(format!("{what}: {e}"));
    let model = fb::ModelRef::read_as_root(file).map_err(|e| fbe("model root", e))?;
    let Some(entries) = model.metadata().map_err(|e| fbe("model metadata", e))? else {
        return Ok(None);
    };
    for entry in entries.iter() {
        let entry = entry.map_err(|e| fbe("metadata entry", e))?;
        if entry.name().map_err(|e| fbe("metadata name", e))? != Some(METADATA_NAME) {
            continue;
        }
        let index = entry.buffer().map_err(|e| fbe("metadata buffer", e))? as usize;
        let buffers = model
            .buffers()
            .map_err(|e| fbe("model buffers", e))?
            .ok_or_else(|| bad("the model has no buffers"))?;
        let buffer = buffers
            .get(index)
            .ok_or_else(|| bad(format!("buffer {index} does not exist")))?
            .map_err(|e| fbe("metadata buffer", e))?;
        let (off, len) = buffer_range(&buffer, file).map_err(bad)?;
        return file
            .get(off..off + len)
            .map(Some)
            .ok_or_else(|| bad("buffer outside the file"));
    }
    Ok(None)
}

/// The name of the label file in a `ModelMetadata` flatbuffer.
fn label_file_name(meta: &[u8]) -> Result<Option<String>> {
    // ModelMetadata: subgraph_metadata = field 3, associated_files = 6.
    // SubGraphMetadata: output_tensor_metadata = 3, associated_files = 4.
    // TensorMetadata: associated_files = 6. AssociatedFile: name = 0, type = 2.
    let root = Table::root(meta)?;
    let subgraph = root.tables(3)?.into_iter().next();
    let mut groups: Vec<Vec<Table<'_>>> = Vec::new();
    if let Some(sg) = &subgraph {
        for tensor in sg.tables(3)? {
            groups.push(tensor.tables(6)?);
        }
        groups.push(sg.tables(4)?);
    }
    groups.push(root.tables(6)?);
    for wanted in [TENSOR_VALUE_LABELS, TENSOR_AXIS_LABELS] {
        for files in &groups {
            for f in files {
                if f.byte(2)?.unwrap_or(0) == wanted {
                    let name = f
                        .string(0)?
                        .ok_or_else(|| bad("a label file without a name"))?;
                    return Ok(Some(name.to_string()));
                }
            }
        }
    }
    Ok(None)
}

/// A flatbuffer table inside `buf`, read with every offset checked.
#[derive(Clone, Copy)]
struct Table<'a> {
    buf: &'a [u8],
    pos: usize,
    vtable: usize,
    vtable_len: usize,
}

fn read_u32(buf: &[u8], pos: usize) -> Result<u32> {
    buf.get(pos..pos + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| {
            bad(format!(
                "offset {pos} outside the {}-byte buffer",
                buf.len()
            ))
        })
}

fn read_u16(buf: &[u8], pos: usize) -> Result<u16> {
    buf.get(pos..pos + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| {
            bad(format!(
                "offset {pos} outside the {}-byte buffer",
                buf.len()
            ))
        })
}

/// `pos + the u32 offset stored at pos`.
fn follow(buf: &[u8], pos: usize) -> Result<usize> {
    let target = pos + read_u32(buf, pos)? as usize;
    if target >= buf.len() {
        return Err(bad(format!("offset to {target} outside the buffer")));
    }
    Ok(target)
}

impl<'a> Table<'a> {
    fn root(buf: &'a [u8]) -> Result<Self> {
        Self::at(buf, follow(buf, 0)?)
    }

    fn at(buf: &'a [u8], pos: usize) -> Result<Self> {
        let soffset = read_u32(buf, pos)? as i32 as i64;
        let vtable =
            usize::try_from(pos as i64 - soffset).map_err(|_| bad("vtable before the buffer"))?;
        let vtable_len = read_u16(buf, vtable)? as usize;
        if vtable_len < 4 || vtable + vtable_len > buf.len() {
            return Err(bad("malformed vtable"));
        }
        Ok(Table {
            buf,
            pos,
            vtable,
            vtable_len,
        })
    }

    /// Position of field `i`, `None` when absent.
    fn field(&self, i: usize) -> Result<Option<usize>> {
        let slot = 4 + 2 * i;
        if slot + 2 > self.vtable_len {
            return Ok(None);
        }
        match read_u16(self.buf, self.vtable + slot)? {
            0 => Ok(None),
            off => Ok(Some(self.pos + off as usize)),
        }
    }

    fn byte(&self, i: usize) -> Result<Option<u8>> {
        match self.field(i)? {
            None => Ok(None),
            Some(p) => self
                .buf
                .get(p)
                .copied()
                .map(Some)
                .ok_or_else(|| bad("byte field outside the buffer")),
        }
    }

    fn string(&self, i: usize) -> Result<Option<&'a str>> {
        let Some(p) = self.field(i)? else {
            return Ok(None);
        };
        let s = follow(self.buf, p)?;
        let len = read_u32(self.buf, s)? as usize;
        let bytes = self
            .buf
            .get(s + 4..)
            .and_then(|b| b.get(..len))
            .ok_or_else(|| bad("string outside the buffer"))?;
        std::str::from_utf8(bytes)
            .map(Some)
            .map_err(|_| bad("a string is not UTF-8"))
    }

    /// The tables of vector field `i` (empty when absent).
    fn tables(&self, i: usize) -> Result<Vec<Table<'a>>> {
        let Some(p) = self.field(i)? else {
            return Ok(Vec::new());
        };
        let v = follow(self.buf, p)?;
        let n = read_u32(self.buf, v)? as usize;
        if n > (self.buf.len() - v) / 4 {
            return Err(bad(format!("vector of {n} entries outside the buffer")));
        }
        (0..n)
            .map(|k| Table::at(self.buf, follow(self.buf, v + 4 + 4 * k)?))
            .collect()
    }
}

/// The stored bytes of entry `name` of the zip archive at the end of `file`.
///
/// The archive may follow other data (here, the model), as Python's `zipfile`
/// appends it: its offsets are taken relative to where its central directory
/// really is. Only stored (uncompressed) entries are read; that is how TFLite's
/// metadata tools pack files.
fn zip_entry<'a>(file: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    const EOCD: u32 = 0x0605_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const LOCAL: u32 = 0x0403_4b50;
    // The end-of-central-directory record: 22 bytes plus a comment of up to 64 KiB.
    let lowest = file.len().saturating_sub(22 + 0xFFFF);
    let Some(eocd) = (lowest..file.len().saturating_sub(21))
        .rev()
        .find(|&p| read_u32(file, p).ok() == Some(EOCD))
    else {
        return Ok(None);
    };
    let entries = read_u16(file, eocd + 10)? as usize;
    let cd_size = read_u32(file, eocd + 12)? as usize;
    let cd_offset = read_u32(file, eocd + 16)? as usize;
    let base = eocd
        .checked_sub(cd_size)
        .and_then(|p| p.checked_sub(cd_offset))
        .ok_or_else(|| bad("zip central directory outside the file"))?;
    let mut p = base + cd_offset;
    for _ in 0..entries {
        if read_u32(file, p)? != CENTRAL {
            return Err(bad("malformed zip central directory"));
        }
        let method = read_u16(file, p + 10)?;
        let size = read_u32(file, p + 20)? as usize;
        let name_len = read_u16(file, p + 28)? as usize;
        let extra_len = read_u16(file, p + 30)? as usize;
        let comment_len = read_u16(file, p + 32)? as usize;
        let local = base + read_u32(file, p + 42)? as usize;
        let entry_name = file
            .get(p + 46..p + 46 + name_len)
            .ok_or_else(|| bad("zip entry name outside the file"))?;
        p += 46 + name_len + extra_len + comment_len;
        if entry_name != name.as_bytes() {
            continue;
        }
        if method != 0 {
            return Err(bad(format!(
                "label file '{name}' is compressed (zip method {method}); only stored files are read"
            )));
        }
        if read_u32(file, local)? != LOCAL {
            return Err(bad(format!("zip entry '{name}': malformed local header")));
        }
        let start = local
            + 30
            + read_u16(file, local + 26)? as usize
            + read_u16(file, local + 28)? as usize;
        return file
            .get(start..)
            .and_then(|b| b.get(..size))
            .map(Some)
            .ok_or_else(|| bad(format!("zip entry '{name}' outside the file")));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored zip archive of `files`, appended to `prefix` as Python's
    /// `zipfile` does in append mode (offsets relative to the archive).
    fn append_zip(prefix: &[u8], files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = Vec::new();
        let mut central = Vec::new();
        for (name, data) in files {
            let local = zip.len() as u32;
            zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            zip.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            zip.extend_from_slice(&(data.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(data.len() as u32).to_le_bytes());
            zip.extend_from_slice(&(name.len() as u16).to_le_bytes());
            zip.extend_from_slice(&0u16.to_le_bytes());
            zip.extend_from_slice(name.as_bytes());
            zip.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&local.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = zip.len() as u32;
        zip.extend_from_slice(&central);
        zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        zip.extend_from_slice(&[0, 0, 0, 0]);
        zip.extend_from_slice(&(files.len() as u16).to_le_bytes());
        zip.extend_from_slice(&(files.len() as u16).to_le_bytes());
        zip.extend_from_slice(&(central.len() as u32).to_le_bytes());
        zip.extend_from_slice(&cd_offset.to_le_bytes());
        zip.extend_from_slice(&0u16.to_le_bytes());
        let mut out = prefix.to_vec();
        out.extend_from_slice(&zip);
        out
    }

    #[test]
    fn zip_entries_are_found_after_other_data() {
        let file = append_zip(
            &[7u8; 1000],
            &[("a.txt", b"first"), ("labels.txt", b"person\ncar\n")],
        );
        assert_eq!(
            zip_entry(&file, "labels.txt").unwrap(),
            Some(&b"person\ncar\n"[..])
        );
        assert_eq!(zip_entry(&file, "a.txt").unwrap(), Some(&b"first"[..]));
        assert_eq!(zip_entry(&file, "other.txt").unwrap(), None);
        assert_eq!(zip_entry(&[7u8; 100], "labels.txt").unwrap(), None);
    }

    #[test]
    fn truncated_or_corrupt_archives_are_errors_not_panics() {
        let file = append_zip(&[7u8; 64], &[("labels.txt", b"person\ncar\n")]);
        let eocd = file.len() - 22;
        // Every truncation that keeps the end record, and every byte of the end
        // record and central directory overwritten: never a panic.
        for cut in 0..file.len() {
            let mut f = file.clone();
            f.drain(cut..eocd.min(file.len()).max(cut));
            let _ = zip_entry(&f, "labels.txt");
        }
        for i in 64..file.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut f = file.clone();
                f[i] = v;
                let _ = zip_entry(&f, "labels.txt");
            }
        }
        // A central directory claiming to start before the file.
        let mut f = file.clone();
        f[eocd + 16..eocd + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(zip_entry(&f, "labels.txt").is_err());
    }

    #[test]
    fn tables_reject_offsets_outside_the_buffer() {
        assert!(Table::root(&[]).is_err());
        assert!(Table::root(&[200, 0, 0, 0]).is_err());
        assert!(label_file_name(&[4, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}
