//! TFLite's sparsity format → dense bytes, at load time.
//!
//! A sparse constant tensor stores only some of its values, described by
//! `SparsityParameters`:
//! - `traversal_order`: the order in which the dimensions are walked, first a permutation
//!   of the tensor's own (original) dimensions, then the block dimensions;
//! - `block_map`: which original dimensions are split into blocks (one block dimension
//!   each, in increasing order of original dimension);
//! - one `DimensionMetadata` per traversed dimension (level): DENSE with its `dense_size`
//!   (every index is stored), or SPARSE_CSR with `array_segments` and `array_indices`
//!   (the stored indices of each position of the levels above).
//!
//! The values buffer holds one value per leaf of that walk, in walk order. A block
//! dimension's size is the `dense_size` of its (dense) level; the original dimension it
//! belongs to then counts blocks, and an element's coordinate along it is
//! `block index × block size + index in the block`.
//!
//! Everything read from the file is checked before anything is allocated from it: the
//! traversal order is a permutation, block sizes divide their dimension, dense sizes match
//! the (blocked) dimensions, segments start at 0, never decrease and end at the number of
//! indices, indices are in range and strictly increase within a segment, the number of
//! stored values equals the number of leaves, and the dense size is within a limit.

/// One traversed dimension (level) of a sparse tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// Every index `0..size` is stored.
    Dense(usize),
    /// Compressed: for position `p` of the levels above, the stored indices are
    /// `indices[segments[p]..segments[p + 1]]`.
    SparseCsr {
        segments: Vec<u32>,
        indices: Vec<u32>,
    },
}

/// The sparsity parameters of one tensor, as read from the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sparsity {
    pub traversal_order: Vec<usize>,
    pub block_map: Vec<usize>,
    pub levels: Vec<Level>,
}

/// How one level maps to dense memory: the element stride of one step of its index and
/// the number of indices it has.
struct Step {
    stride: usize,
    extent: usize,
}

/// Check `sp` against the dense `shape` and return, per level, its stride and extent.
fn plan(shape: &[usize], sp: &Sparsity) -> Result<Vec<Step>, String> {
    let n = shape.len();
    let nb = sp.block_map.len();
    let k = n + nb;
    if sp.traversal_order.len() != k {
        return Err(format!(
            "traversal order has {} dimensions, rank {n} with {nb} block dimensions needs {k}",
            sp.traversal_order.len()
        ));
    }
    if sp.levels.len() != k {
        return Err(format!(
            "{} dimension metadata for {k} traversed dimensions",
            sp.levels.len()
        ));
    }
    let mut seen = vec![false; k];
    for (l, &d) in sp.traversal_order.iter().enumerate() {
        let ok = if l < n { d < n } else { d >= n && d < k };
        if !ok || std::mem::replace(&mut seen[d], true) {
            return Err(format!(
                "traversal order {:?} is not the original dimensions 0..{n} then the block \
                 dimensions {n}..{k}, each once",
                sp.traversal_order
            ));
        }
    }
    if sp.block_map.windows(2).any(|w| w[0] >= w[1]) || sp.block_map.iter().any(|&d| d >= n) {
        return Err(format!(
            "block map {:?} is not increasing original dimensions below {n}",
            sp.block_map
        ));
    }
    // Block sizes: the dense size of the level that walks each block dimension.
    let mut block = vec![1usize; n];
    for (b, &d) in sp.block_map.iter().enumerate() {
        let l = sp
            .traversal_order
            .iter()
            .position(|&t| t == n + b)
            .ok_or("block dimension not traversed")?;
        let size = match &sp.levels[l] {
            Level::Dense(s) => *s,
            Level::SparseCsr { .. } => {
                return Err(format!(
                    "block dimension {} is SPARSE_CSR; only dense blocks are supported",
                    n + b
                ))
            }
        };
        if size == 0 || !shape[d].is_multiple_of(size) {
            return Err(format!(
                "block size {size} does not divide dimension {d} of size {}",
                shape[d]
            ));
        }
        block[d] = size;
    }
    // Row-major element strides of the dense tensor.
    let mut stride = vec![1usize; n];
    for d in (0..n.saturating_sub(1)).rev() {
        stride[d] = stride[d + 1] * shape[d + 1];
    }
    let mut steps = Vec::with_capacity(k);
    for &t in &sp.traversal_order {
        steps.push(if t < n {
            Step {
                stride: stride[t] * block[t],
                extent: shape[t] / block[t],
            }
        } else {
            let d = sp.block_map[t - n];
            Step {
                stride: stride[d],
                extent: block[d],
            }
        });
    }
    // Dense sizes match, segments and indices are consistent, level by level; `positions`
    // counts the positions (index paths) above each level.
    let mut positions: usize = 1;
    for (l, (level, step)) in sp.levels.iter().zip(&steps).enumerate() {
        match level {
            Level::Dense(size) => {
                if *size != step.extent {
                    return Err(format!(
                        "level {l} (dimension {}) has dense size {size}, expected {}",
                        sp.traversal_order[l], step.extent
                    ));
                }
                // Bounded by the element count: every dense size equals its extent.
                positions *= size;
            }
            Level::SparseCsr { segments, indices } => {
                if segments.len() != positions + 1 {
                    return Err(format!(
                        "level {l}: {} segment bounds for {positions} positions (needs {})",
                        segments.len(),
                        positions + 1
                    ));
                }
                if segments[0] != 0 || segments[positions] as usize != indices.len() {
                    return Err(format!(
                        "level {l}: segments run from {} to {}, expected 0 to {} (the number of \
                         indices)",
                        segments[0],
                        segments[positions],
                        indices.len()
                    ));
                }
                for (p, w) in segments.windows(2).enumerate() {
                    if w[0] > w[1] {
                        return Err(format!("level {l}: segments decrease at position {p}"));
                    }
                    if w[1] as usize > indices.len() {
                        return Err(format!(
                            "level {l}: segment bound {} beyond the {} indices",
                            w[1],
                            indices.len()
                        ));
                    }
                    let seg = &indices[w[0] as usize..w[1] as usize];
                    if let Some(&bad) = seg.iter().find(|&&i| i as usize >= step.extent) {
                        return Err(format!(
                            "level {l}: index {bad} out of range (0..{})",
                            step.extent
                        ));
                    }
                    if seg.windows(2).any(|v| v[0] >= v[1]) {
                        return Err(format!(
                            "level {l}: indices of segment {p} are not strictly increasing"
                        ));
                    }
                }
                positions = indices.len();
            }
        }
    }
    Ok(steps)
}

/// Number of values a tensor of `shape` with sparsity `sp` must store (one per leaf), after
/// checking `sp`.
#[cfg(test)]
pub(crate) fn stored_values(shape: &[usize], sp: &Sparsity) -> Result<usize, String> {
    plan(shape, sp)?;
    Ok(leaves(sp))
}

fn leaves(sp: &Sparsity) -> usize {
    sp.levels.iter().fold(1, |p, level| match level {
        Level::Dense(s) => p * s,
        Level::SparseCsr { indices, .. } => indices.len(),
    })
}

/// Densify: `values` holds the stored elements (`elem` bytes each) in walk order; returns
/// the dense tensor of `shape`, row-major, unstored elements zero (all-zero bytes, which is
/// zero for every element type), in 8-byte words and its length in bytes. Refuses dense
/// sizes above `max_bytes`.
pub(crate) fn densify(
    shape: &[usize],
    sp: &Sparsity,
    elem: usize,
    values: &[u8],
    max_bytes: usize,
) -> Result<(Vec<u64>, usize), String> {
    let elements = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("element count overflows")?;
    let len = elements
        .checked_mul(elem)
        .filter(|&b| b <= max_bytes)
        .ok_or_else(|| {
            format!("dense size of shape {shape:?} exceeds the limit of {max_bytes} bytes")
        })?;
    let steps = plan(shape, sp)?;
    let stored = leaves(sp);
    if elem == 0 || values.len() != stored * elem {
        return Err(format!(
            "buffer holds {} bytes, the sparsity structure stores {stored} values of {elem} \
             bytes",
            values.len()
        ));
    }
    let mut words = vec![0u64; len.div_ceil(8)];
    let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len];
    let mut walk = Walk {
        levels: &sp.levels,
        steps: &steps,
        elem,
        values,
        next: 0,
        out,
    };
    walk.level(0, 0, 0);
    debug_assert_eq!(walk.next, stored);
    Ok((words, len))
}

struct Walk<'a> {
    levels: &'a [Level],
    steps: &'a [Step],
    elem: usize,
    values: &'a [u8],
    /// Index of the next stored value.
    next: usize,
    out: &'a mut [u8],
}

impl Walk<'_> {
    /// Walk level `l` at position `pos` (of the levels above), `base` the element offset
    /// of the indices chosen so far. Depth is at most 32 (rank ≤ 16, one block dimension
    /// per original dimension); `plan` checked every index and segment.
    fn level(&mut self, l: usize, pos: usize, base: usize) {
        let Some(level) = self.levels.get(l) else {
            let (e, v) = (self.elem, self.next);
            self.out[base * e..(base + 1) * e].copy_from_slice(&self.values[v * e..(v + 1) * e]);
            self.next += 1;
            return;
        };
        let stride = self.steps[l].stride;
        match level {
            Level::Dense(size) => {
                for i in 0..*size {
                    self.level(l + 1, pos * size + i, base + i * stride);
                }
            }
            Level::SparseCsr { segments, indices } => {
                let (from, to) = (segments[pos] as usize, segments[pos + 1] as usize);
                for (j, &i) in indices[from..to].iter().enumerate() {
                    self.level(l + 1, from + j, base + i as usize * stride);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn csr(segments: &[u32], indices: &[u32]) -> Level {
        Level::SparseCsr {
            segments: segments.to_vec(),
            indices: indices.to_vec(),
        }
    }

    fn sp(order: &[usize], block_map: &[usize], levels: Vec<Level>) -> Sparsity {
        Sparsity {
            traversal_order: order.to_vec(),
            block_map: block_map.to_vec(),
            levels,
        }
    }

    fn run_i32(shape: &[usize], s: &Sparsity, values: &[i32]) -> Result<Vec<i32>, String> {
        let (words, len) = densify(shape, s, 4, bytemuck::cast_slice(values), MAX)?;
        Ok(
            bytemuck::cast_slice::<u8, i32>(&bytemuck::cast_slice::<u64, u8>(&words)[..len])
                .to_vec(),
        )
    }

    /// The 3 × 4 matrix of TFLite's converter tests.
    const M34: [i32; 12] = [6, 0, 9, 8, 0, 0, 0, 0, 5, 0, 0, 7];
    /// The 4 × 4 matrix of TFLite's block tests.
    const M44: [i32; 16] = [1, 0, 2, 3, 0, 4, 0, 0, 0, 0, 5, 0, 0, 0, 0, 6];

    #[test]
    fn dense_dense_is_a_copy() {
        let s = sp(&[0, 1], &[], vec![Level::Dense(3), Level::Dense(4)]);
        assert_eq!(run_i32(&[3, 4], &s, &M34).unwrap(), M34);
    }

    #[test]
    fn csr_rows() {
        // D0 S1: dense rows, compressed columns.
        let s = sp(
            &[0, 1],
            &[],
            vec![Level::Dense(3), csr(&[0, 3, 3, 5], &[0, 2, 3, 0, 3])],
        );
        assert_eq!(run_i32(&[3, 4], &s, &[6, 9, 8, 5, 7]).unwrap(), M34);
    }

    #[test]
    fn sparse_rows_dense_columns() {
        // S0 D1: only the non-empty rows are stored, whole.
        let s = sp(&[0, 1], &[], vec![csr(&[0, 2], &[0, 2]), Level::Dense(4)]);
        assert_eq!(
            run_i32(&[3, 4], &s, &[6, 0, 9, 8, 5, 0, 0, 7]).unwrap(),
            M34
        );
    }

    #[test]
    fn both_sparse() {
        let s = sp(
            &[0, 1],
            &[],
            vec![csr(&[0, 2], &[0, 2]), csr(&[0, 3, 5], &[0, 2, 3, 0, 3])],
        );
        assert_eq!(run_i32(&[3, 4], &s, &[6, 9, 8, 5, 7]).unwrap(), M34);
    }

    #[test]
    fn column_major_traversal() {
        // D1 S0 (CSC): columns outside, compressed rows inside.
        let s = sp(
            &[1, 0],
            &[],
            vec![Level::Dense(4), csr(&[0, 2, 2, 3, 5], &[0, 2, 0, 0, 2])],
        );
        assert_eq!(run_i32(&[3, 4], &s, &[6, 5, 9, 8, 7]).unwrap(), M34);
        // S1 S0.
        let s = sp(
            &[1, 0],
            &[],
            vec![
                csr(&[0, 3], &[0, 2, 3]),
                csr(&[0, 2, 3, 5], &[0, 2, 0, 0, 2]),
            ],
        );
        assert_eq!(run_i32(&[3, 4], &s, &[6, 5, 9, 8, 7]).unwrap(), M34);
    }

    #[test]
    fn three_dims_with_permutation() {
        // S0 S2 S1 over a 3 × 2 × 4 tensor.
        let dense = [
            1, 0, 0, 0, 7, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 3, 2, 0, 8, 9,
        ];
        let s = sp(
            &[0, 2, 1],
            &[],
            vec![
                csr(&[0, 2], &[0, 2]),
                csr(&[0, 2, 5], &[0, 2, 0, 2, 3]),
                csr(&[0, 2, 3, 4, 6, 8], &[0, 1, 1, 1, 0, 1, 0, 1]),
            ],
        );
        assert_eq!(
            run_i32(&[3, 2, 4], &s, &[1, 7, 5, 2, 4, 8, 3, 9]).unwrap(),
            dense
        );
    }

    #[test]
    fn two_by_two_blocks() {
        // BCSR: 2 × 2 blocks, dense block rows, compressed block columns.
        let s = sp(
            &[0, 1, 2, 3],
            &[0, 1],
            vec![
                Level::Dense(2),
                csr(&[0, 2, 3], &[0, 1, 1]),
                Level::Dense(2),
                Level::Dense(2),
            ],
        );
        let values = [1, 0, 0, 4, 2, 3, 0, 0, 5, 0, 0, 6];
        assert_eq!(run_i32(&[4, 4], &s, &values).unwrap(), M44);
        // BCSC: block columns outside.
        let s = sp(
            &[1, 0, 3, 2],
            &[0, 1],
            vec![
                Level::Dense(2),
                csr(&[0, 1, 3], &[0, 0, 1]),
                Level::Dense(2),
                Level::Dense(2),
            ],
        );
        let values = [1, 0, 0, 4, 2, 0, 3, 0, 5, 0, 0, 6];
        assert_eq!(run_i32(&[4, 4], &s, &values).unwrap(), M44);
    }

    #[test]
    fn column_major_blocks_on_4x8() {
        let dense = [
            1, 0, 2, 3, 0, 4, 0, 0, 1, 0, 2, 3, 0, 4, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ];
        let s = sp(
            &[0, 1, 3, 2],
            &[0, 1],
            vec![
                Level::Dense(2),
                csr(&[0, 3, 4], &[0, 1, 2, 1]),
                Level::Dense(2),
                Level::Dense(2),
            ],
        );
        let values = [1, 1, 0, 0, 2, 2, 3, 3, 0, 0, 4, 4, 5, 0, 0, 0];
        assert_eq!(run_i32(&[4, 8], &s, &values).unwrap(), dense);
    }

    #[test]
    fn one_by_four_blocks_on_4x8_float() {
        // The layout of TFLite's sparse fully-connected weights: rows dense, blocks of 4
        // columns compressed, each stored block dense.
        let mut dense = [0f32; 32];
        let blocks = [(0usize, 1usize), (2, 0), (2, 1), (3, 0)];
        let mut values = Vec::new();
        for (n, &(r, b)) in blocks.iter().enumerate() {
            for i in 0..4 {
                let v = (n * 4 + i) as f32 + 0.5;
                dense[r * 8 + b * 4 + i] = v;
                values.push(v);
            }
        }
        let s = sp(
            &[0, 1, 2],
            &[1],
            vec![
                Level::Dense(4),
                csr(&[0, 1, 1, 3, 4], &[1, 0, 1, 0]),
                Level::Dense(4),
            ],
        );
        let (words, len) = densify(&[4, 8], &s, 4, bytemuck::cast_slice(&values), MAX).unwrap();
        let got: &[f32] = bytemuck::cast_slice(&bytemuck::cast_slice::<u64, u8>(&words)[..len]);
        assert_eq!(got, dense);
    }

    #[test]
    fn one_byte_and_two_byte_elements() {
        // int8 and float16 values: only the element size matters.
        let s = sp(
            &[0, 1],
            &[],
            vec![Level::Dense(3), csr(&[0, 3, 3, 5], &[0, 2, 3, 0, 3])],
        );
        let (w, len) = densify(&[3, 4], &s, 1, &[6, 9, 8, 5, 7], MAX).unwrap();
        let bytes: Vec<u8> = M34.iter().map(|&v| v as u8).collect();
        assert_eq!(&bytemuck::cast_slice::<u64, u8>(&w)[..len], bytes);
        let halves: [u16; 5] = [0x4600, 0x4880, 0x4800, 0x4500, 0x4700];
        let (w, len) = densify(&[3, 4], &s, 2, bytemuck::cast_slice(&halves), MAX).unwrap();
        let got: &[u16] = bytemuck::cast_slice(&bytemuck::cast_slice::<u64, u8>(&w)[..len]);
        assert_eq!(
            got,
            [0x4600, 0, 0x4880, 0x4800, 0, 0, 0, 0, 0x4500, 0, 0, 0x4700]
        );
    }

    #[test]
    fn empty_rows_and_empty_tensor() {
        let s = sp(&[0, 1], &[], vec![Level::Dense(2), csr(&[0, 0, 0], &[])]);
        assert_eq!(run_i32(&[2, 3], &s, &[]).unwrap(), [0; 6]);
        let s = sp(&[0, 1], &[], vec![Level::Dense(0), csr(&[0], &[])]);
        assert_eq!(run_i32(&[0, 3], &s, &[]).unwrap(), Vec::<i32>::new());
    }

    fn err(shape: &[usize], s: &Sparsity, values: &[i32]) -> String {
        run_i32(shape, s, values).unwrap_err()
    }

    #[test]
    fn corrupt_structures_are_rejected() {
        let good = || {
            sp(
                &[0, 1],
                &[],
                vec![Level::Dense(3), csr(&[0, 3, 3, 5], &[0, 2, 3, 0, 3])],
            )
        };
        let v = [6, 9, 8, 5, 7];
        assert!(run_i32(&[3, 4], &good(), &v).is_ok());

        let mut s = good();
        s.traversal_order = vec![0, 0];
        assert!(err(&[3, 4], &s, &v).contains("traversal order"));
        s.traversal_order = vec![0];
        assert!(err(&[3, 4], &s, &v).contains("traversal order"));
        s.traversal_order = vec![0, 2];
        assert!(err(&[3, 4], &s, &v).contains("traversal order"));

        let mut s = good();
        s.levels.pop();
        assert!(err(&[3, 4], &s, &v).contains("dimension metadata"));

        let mut s = good();
        s.levels[0] = Level::Dense(4);
        assert!(err(&[3, 4], &s, &v).contains("dense size 4, expected 3"));

        // Index out of range.
        let mut s = good();
        s.levels[1] = csr(&[0, 3, 3, 5], &[0, 2, 4, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("index 4 out of range"));
        // Unsorted and duplicate indices.
        s.levels[1] = csr(&[0, 3, 3, 5], &[0, 3, 2, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("strictly increasing"));
        s.levels[1] = csr(&[0, 3, 3, 5], &[0, 2, 2, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("strictly increasing"));
        // Decreasing, too few, too many, badly ended segments.
        s.levels[1] = csr(&[0, 3, 2, 5], &[0, 2, 3, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("decrease"));
        s.levels[1] = csr(&[0, 3, 5], &[0, 2, 3, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("segment bounds"));
        s.levels[1] = csr(&[0, 3, 3, 5, 5], &[0, 2, 3, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("segment bounds"));
        s.levels[1] = csr(&[0, 3, 3, 9], &[0, 2, 3, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("segments run from"));
        s.levels[1] = csr(&[1, 3, 3, 5], &[0, 2, 3, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("segments run from"));
        s.levels[1] = csr(&[0, 9, 3, 5], &[0, 2, 3, 0, 3]);
        assert!(err(&[3, 4], &s, &v).contains("beyond the 5 indices"));

        // Value count differs from the structure.
        assert!(err(&[3, 4], &good(), &v[..4]).contains("stores 5 values"));
        assert!(err(&[3, 4], &good(), &[1, 2, 3, 4, 5, 6]).contains("stores 5 values"));

        // Blocks: not dividing, sparse block level, bad block map.
        let s = sp(
            &[0, 1, 2],
            &[1],
            vec![Level::Dense(4), csr(&[0, 0, 0, 0, 0], &[]), Level::Dense(3)],
        );
        assert!(err(&[4, 8], &s, &[]).contains("does not divide"));
        let s = sp(
            &[0, 1, 2],
            &[1],
            vec![Level::Dense(4), Level::Dense(2), csr(&[0; 9], &[])],
        );
        assert!(err(&[4, 8], &s, &[]).contains("only dense blocks"));
        let s = sp(
            &[0, 1, 2],
            &[2],
            vec![Level::Dense(4), Level::Dense(2), Level::Dense(4)],
        );
        assert!(err(&[4, 8], &s, &[0; 32]).contains("block map"));

        // Dense size limit: nothing allocated beyond it.
        let s = sp(&[0], &[], vec![csr(&[0, 0], &[])]);
        let e = densify(&[1 << 30], &s, 4, &[], MAX).unwrap_err();
        assert!(e.contains("exceeds the limit"), "{e}");
    }

    #[test]
    fn stored_value_count() {
        let s = sp(
            &[0, 1, 2],
            &[1],
            vec![
                Level::Dense(4),
                csr(&[0, 1, 1, 3, 4], &[1, 0, 1, 0]),
                Level::Dense(4),
            ],
        );
        assert_eq!(stored_values(&[4, 8], &s).unwrap(), 16);
    }
}
