//! A minimal, bounds-checked FlexBuffers reader and writer, for the
//! `custom_options` map of custom operators (`TFLite_Detection_PostProcess`).
//!
//! Format summary (see the FlexBuffers internals documentation):
//! - The buffer ends with `[root value][root packed type: u8][root byte width: u8]`.
//! - A packed type is `(type << 2) | bit_width`, bit width 0..=3 meaning 1/2/4/8 bytes.
//!   For inline scalars it is the scalar's own width; for offset types it is the
//!   element width of the referenced vector/map.
//! - Offsets are unsigned and point backwards: `target = position - offset`.
//! - A map at position `p` with element width `w` is laid out as
//!   `[keys offset][keys width][len] | values (len * w) | value packed types (len * 1)`,
//!   with `len` at `p - w`, the keys-width at `p - 2w` and the offset to the keys
//!   vector at `p - 3w` (relative to that field's own position).
//! - The keys vector is a typed vector of KEY: `[len]` then `len` offsets to
//!   NUL-terminated strings, sorted by byte order.
//!
//! Only what custom options need is supported: maps whose values are
//! scalars (int, uint, float, bool, null, and their indirect forms).

use std::collections::BTreeMap;

/// FlexBuffers type codes used here.
const T_NULL: u8 = 0;
const T_INT: u8 = 1;
const T_UINT: u8 = 2;
const T_FLOAT: u8 = 3;
const T_KEY: u8 = 4;
const T_STRING: u8 = 5;
const T_INDIRECT_INT: u8 = 6;
const T_INDIRECT_UINT: u8 = 7;
const T_INDIRECT_FLOAT: u8 = 8;
const T_MAP: u8 = 9;
const T_VECTOR_KEY: u8 = 14;
const T_BOOL: u8 = 26;

/// A scalar value of a flexbuffer map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlexValue {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    /// A value of a type this reader does not decode (string, vector, nested map...).
    Other(u8),
}

impl FlexValue {
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FlexValue::Int(v) => Some(v as f64),
            FlexValue::UInt(v) => Some(v as f64),
            FlexValue::Float(v) => Some(v),
            FlexValue::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FlexValue::Int(v) => Some(v),
            FlexValue::UInt(v) => i64::try_from(v).ok(),
            FlexValue::Bool(b) => Some(b as i64),
            FlexValue::Float(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(v as i64),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FlexValue::Bool(b) => Some(b),
            FlexValue::Int(v) => Some(v != 0),
            FlexValue::UInt(v) => Some(v != 0),
            _ => None,
        }
    }
}

fn width_of(bits: u8) -> usize {
    1 << (bits & 3)
}

fn read_uint(buf: &[u8], pos: usize, w: usize) -> Result<u64, String> {
    let end = pos.checked_add(w).ok_or("offset overflow")?;
    let b = buf
        .get(pos..end)
        .ok_or_else(|| format!("read of {w} bytes at {pos} out of bounds ({})", buf.len()))?;
    let mut v = [0u8; 8];
    v[..w].copy_from_slice(b);
    Ok(u64::from_le_bytes(v))
}

fn read_int(buf: &[u8], pos: usize, w: usize) -> Result<i64, String> {
    let u = read_uint(buf, pos, w)?;
    let shift = 64 - 8 * w as u32;
    Ok(((u << shift) as i64) >> shift)
}

fn read_float(buf: &[u8], pos: usize, w: usize) -> Result<f64, String> {
    let u = read_uint(buf, pos, w)?;
    match w {
        4 => Ok(f32::from_bits(u as u32) as f64),
        8 => Ok(f64::from_bits(u)),
        _ => Err(format!("float of width {w} not supported")),
    }
}

/// `pos - offset`, checked.
fn back(pos: usize, off: u64) -> Result<usize, String> {
    usize::try_from(off)
        .ok()
        .and_then(|o| pos.checked_sub(o))
        .ok_or_else(|| format!("offset {off} at {pos} points before the buffer"))
}

fn read_key(buf: &[u8], pos: usize) -> Result<String, String> {
    let rest = buf.get(pos..).ok_or("key out of bounds")?;
    let n = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or("unterminated key string")?;
    Ok(String::from_utf8_lossy(&rest[..n]).into_owned())
}

/// Decode the value at `pos`, stored with `parent_w` bytes and packed type `packed`.
fn read_value(buf: &[u8], pos: usize, parent_w: usize, packed: u8) -> Result<FlexValue, String> {
    let ty = packed >> 2;
    let child_w = width_of(packed);
    Ok(match ty {
        T_NULL => FlexValue::Null,
        T_INT => FlexValue::Int(read_int(buf, pos, parent_w)?),
        T_UINT => FlexValue::UInt(read_uint(buf, pos, parent_w)?),
        T_FLOAT => FlexValue::Float(read_float(buf, pos, parent_w)?),
        T_BOOL => FlexValue::Bool(read_uint(buf, pos, parent_w)? != 0),
        T_INDIRECT_INT | T_INDIRECT_UINT | T_INDIRECT_FLOAT => {
            let target = back(pos, read_uint(buf, pos, parent_w)?)?;
            match ty {
                T_INDIRECT_INT => FlexValue::Int(read_int(buf, target, child_w)?),
                T_INDIRECT_UINT => FlexValue::UInt(read_uint(buf, target, child_w)?),
                _ => FlexValue::Float(read_float(buf, target, child_w)?),
            }
        }
        other => FlexValue::Other(other),
    })
}

/// Parse a flexbuffer whose root is a map of scalars. Keys with non-scalar
/// values are kept as [`FlexValue::Other`]. Every read is bounds-checked.
pub fn read_map(buf: &[u8]) -> Result<BTreeMap<String, FlexValue>, String> {
    let n = buf.len();
    if n < 3 {
        return Err(format!("flexbuffer too short ({n} bytes)"));
    }
    let root_w = buf[n - 1] as usize;
    if !matches!(root_w, 1 | 2 | 4 | 8) {
        return Err(format!("bad root byte width {root_w}"));
    }
    let root_packed = buf[n - 2];
    let root_pos = (n - 2)
        .checked_sub(root_w)
        .ok_or("flexbuffer too short for its root")?;
    if root_packed >> 2 != T_MAP {
        return Err(format!("root is not a map (type {})", root_packed >> 2));
    }
    let map_pos = back(root_pos, read_uint(buf, root_pos, root_w)?)?;
    let w = width_of(root_packed);
    let len_pos = map_pos.checked_sub(w).ok_or("map header out of bounds")?;
    let len = read_uint(buf, len_pos, w)?;
    // Each entry needs at least w + 1 bytes: reject lengths the buffer cannot hold
    // before allocating anything.
    if len > (n as u64) / (w as u64 + 1) {
        return Err(format!("map length {len} exceeds the buffer"));
    }
    let len = len as usize;
    let kw_pos = map_pos
        .checked_sub(2 * w)
        .ok_or("map header out of bounds")?;
    let keys_w = read_uint(buf, kw_pos, w)? as usize;
    if !matches!(keys_w, 1 | 2 | 4 | 8) {
        return Err(format!("bad keys byte width {keys_w}"));
    }
    let ko_pos = map_pos
        .checked_sub(3 * w)
        .ok_or("map header out of bounds")?;
    let keys_pos = back(ko_pos, read_uint(buf, ko_pos, w)?)?;
    let keys_len_pos = keys_pos.checked_sub(keys_w).ok_or("keys out of bounds")?;
    let keys_len = read_uint(buf, keys_len_pos, keys_w)?;
    if keys_len != len as u64 {
        return Err(format!("map has {len} values but {keys_len} keys"));
    }
    let types_pos = map_pos.checked_add(len * w).ok_or("map out of bounds")?;
    let mut out = BTreeMap::new();
    for i in 0..len {
        let kp = keys_pos + i * keys_w;
        let key = read_key(buf, back(kp, read_uint(buf, kp, keys_w)?)?)?;
        let packed = *buf.get(types_pos + i).ok_or("map types out of bounds")?;
        let value = read_value(buf, map_pos + i * w, w, packed)?;
        out.insert(key, value);
    }
    Ok(out)
}

/// A value to write with [`write_map`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FlexScalar {
    Int(i64),
    Float(f32),
    Bool(bool),
}

fn pad_to(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

/// Write a flexbuffer whose root is a map of scalars. All widths are 8 bytes,
/// floats are stored as f64 (as the reference builder does for `Float`), keys are
/// sorted so that binary-searching readers (TFLite's C++ `Map::operator[]`) find them.
pub fn write_map(entries: &[(&str, FlexScalar)]) -> Vec<u8> {
    let mut entries: Vec<(&str, FlexScalar)> = entries.to_vec();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut buf = Vec::new();
    let mut key_pos = Vec::with_capacity(entries.len());
    for (k, _) in &entries {
        key_pos.push(buf.len());
        buf.extend_from_slice(k.as_bytes());
        buf.push(0);
    }
    const W: usize = 8;
    pad_to(&mut buf, W);
    // Keys vector: [len] then offsets.
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let keys_vec = buf.len();
    for &kp in &key_pos {
        let here = buf.len();
        buf.extend_from_slice(&((here - kp) as u64).to_le_bytes());
    }
    // Map header: [keys offset][keys width][len].
    let ko_field = buf.len();
    buf.extend_from_slice(&((ko_field - keys_vec) as u64).to_le_bytes());
    buf.extend_from_slice(&(W as u64).to_le_bytes());
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let map_pos = buf.len();
    let mut types = Vec::with_capacity(entries.len());
    for (_, v) in &entries {
        let (bits, ty) = match *v {
            FlexScalar::Int(i) => (i.to_le_bytes(), T_INT),
            FlexScalar::Float(f) => ((f as f64).to_le_bytes(), T_FLOAT),
            FlexScalar::Bool(b) => ((b as u64).to_le_bytes(), T_BOOL),
        };
        buf.extend_from_slice(&bits);
        // Inline scalars: bit width 3 = 8 bytes.
        types.push((ty << 2) | 3);
    }
    buf.extend_from_slice(&types);
    pad_to(&mut buf, W);
    let root = buf.len();
    buf.extend_from_slice(&((root - map_pos) as u64).to_le_bytes());
    buf.push((T_MAP << 2) | 3);
    buf.push(W as u8);
    let _ = (T_KEY, T_STRING, T_VECTOR_KEY);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from Python's `flatbuffers.flexbuffers.Dumps` of
    /// `{"max_detections": 10, "nms_iou_threshold": 0.6, "use_regular_nms": False,
    ///   "y_scale": 10.0, "num_classes": 90}` (the reference builder picks minimal widths).
    const PY_MAP: &str = include_str!("testdata/flex_py_map.hex");

    fn unhex(s: &str) -> Vec<u8> {
        let s = s.trim();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn reads_python_built_map() {
        let m = read_map(&unhex(PY_MAP)).unwrap();
        assert_eq!(m["max_detections"].as_i64(), Some(10));
        assert_eq!(m["num_classes"].as_i64(), Some(90));
        assert!((m["nms_iou_threshold"].as_f64().unwrap() - 0.6).abs() < 1e-6);
        assert_eq!(m["use_regular_nms"].as_bool(), Some(false));
        assert_eq!(m["y_scale"].as_f64(), Some(10.0));
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn roundtrip_own_writer() {
        let bytes = write_map(&[
            ("y_scale", FlexScalar::Float(10.0)),
            ("a", FlexScalar::Int(-3)),
            ("flag", FlexScalar::Bool(true)),
        ]);
        let m = read_map(&bytes).unwrap();
        assert_eq!(m["a"], FlexValue::Int(-3));
        assert_eq!(m["flag"], FlexValue::Bool(true));
        assert_eq!(m["y_scale"], FlexValue::Float(10.0));
    }

    #[test]
    fn hand_built_narrow_map() {
        // One-byte widths throughout: keys "a" and "b" with values 5 (int) and true (bool).
        let buf: Vec<u8> = vec![
            b'a',
            0,
            b'b',
            0,     // keys at 0 and 2
            2,     // keys vector len (at 4)
            5,     // key 0 offset: 5 - 0
            6 - 2, // key 1 offset: 6 - 2 = 4
            7 - 5, // map: keys vector offset (field at 7, keys vec at 5)
            1,     // keys byte width
            2,     // map len (at 9)
            5,     // value a (map at 10)
            1,     // value b
            T_INT << 2,
            T_BOOL << 2,
            14 - 10, // root: offset to map
            (T_MAP << 2),
            1,
        ];
        let m = read_map(&buf).unwrap();
        assert_eq!(m["a"], FlexValue::Int(5));
        assert_eq!(m["b"], FlexValue::Bool(true));
    }

    #[test]
    fn garbage_never_panics() {
        let good = write_map(&[("k", FlexScalar::Int(1)), ("l", FlexScalar::Float(2.0))]);
        let mut s = 0x1234_5678u32;
        for _ in 0..20000 {
            let mut b = good.clone();
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let i = s as usize % b.len();
            b[i] = (s >> 8) as u8;
            let _ = read_map(&b);
            let _ = read_map(&b[..(s as usize >> 3) % b.len()]);
        }
        assert!(read_map(&[]).is_err());
    }
}
