//! Data-movement operators: RESHAPE, SQUEEZE, TRANSPOSE, STRIDED_SLICE,
//! SPLIT, PAD/PADV2, DEPTH_TO_SPACE and CONCATENATION.
//!
//! TRANSPOSE, STRIDED_SLICE and PAD are planned at build time as a gather map
//! (source element of each output element, or padding), so `eval` is one pass.

use crate::engine::error::OpResult;
use crate::engine::graph::{Activation, Node, Op, StridedSliceOptions};
use crate::engine::kernels::scalar::activation::build_lut;
use crate::engine::kernels::scalar::copy::{depth_to_space, DepthToSpace as DepthToSpaceOp};
use crate::engine::tensor::{DType, TensorInfo};
use crate::{op_bail, op_ensure};

use super::common::{check_rank, q8, qparams};
use super::{BuildCtx, Kernel, OpIo};

/// Plain byte copy (RESHAPE, SQUEEZE).
struct CopyKernel;

impl Kernel for CopyKernel {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = &mut io.outputs[0];
        op_ensure!(x.bytes.len() == out.bytes.len(), "size mismatch");
        out.bytes.copy_from_slice(x.bytes);
        Ok(())
    }
}

fn same_type_and_quant(x: &TensorInfo, y: &TensorInfo) -> OpResult<()> {
    op_ensure!(
        x.dtype == y.dtype,
        "input is {} but output is {}",
        x.dtype.name(),
        y.dtype.name()
    );
    if matches!(x.dtype, DType::I8 | DType::U8) {
        let (a, b) = (qparams(x)?, qparams(y)?);
        op_ensure!(
            a == b,
            "input and output quantization differ ({a:?} vs {b:?})"
        );
    }
    Ok(())
}

pub(crate) fn build_reshape(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    op_ensure!(x.dtype == y.dtype, "input and output types differ");
    op_ensure!(
        x.num_elements() == y.num_elements(),
        "cannot reshape {:?} into {:?}",
        x.shape,
        y.shape
    );
    if let (Op::Reshape, Some(Some(si))) = (&node.op, node.inputs.get(1)) {
        if let Some(s) = ctx.const_data(*si)? {
            let v = s.ints()?;
            op_ensure!(
                v.len() == y.shape.len()
                    && v.iter()
                        .zip(&y.shape)
                        .all(|(&a, &b)| a == -1 || a == b as i64),
                "shape operand {v:?} disagrees with the output shape {:?}",
                y.shape
            );
        }
    }
    if let Op::Squeeze { dims } = &node.op {
        let r = x.shape.len() as i32;
        for &d in dims {
            op_ensure!(d >= -r && d < r, "squeeze dimension {d} out of range");
            let a = d.rem_euclid(r.max(1)) as usize;
            op_ensure!(
                x.shape[a] == 1,
                "squeeze dimension {d} has size {}",
                x.shape[a]
            );
        }
    }
    Ok(Box::new(CopyKernel))
}

/// Gather kernel: `out[i] = in[map[i]]`, or the pad value where `map[i] == PAD`.
struct Gather {
    map: Vec<u32>,
    pad: [u8; 8],
    esz: usize,
    in_len: usize,
}

const PAD: u32 = u32::MAX;

fn gather_typed<T: bytemuck::Pod>(map: &[u32], pad: T, x: &[T], out: &mut [T]) {
    for (o, &m) in out.iter_mut().zip(map) {
        *o = if m == PAD {
            pad
        } else {
            x.get(m as usize).copied().unwrap_or(pad)
        };
    }
}

impl Kernel for Gather {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = &mut io.outputs[0];
        op_ensure!(
            x.bytes.len() == self.in_len * self.esz && out.bytes.len() == self.map.len() * self.esz,
            "operand sizes do not match the prepared shapes"
        );
        let e = |e: bytemuck::PodCastError| format!("{e:?}");
        match self.esz {
            1 => gather_typed(&self.map, self.pad[0], x.bytes, out.bytes),
            2 => gather_typed::<u16>(
                &self.map,
                bytemuck::pod_read_unaligned(&self.pad[..2]),
                bytemuck::try_cast_slice(x.bytes).map_err(e)?,
                bytemuck::try_cast_slice_mut(out.bytes).map_err(e)?,
            ),
            4 => gather_typed::<u32>(
                &self.map,
                bytemuck::pod_read_unaligned(&self.pad[..4]),
                bytemuck::try_cast_slice(x.bytes).map_err(e)?,
                bytemuck::try_cast_slice_mut(out.bytes).map_err(e)?,
            ),
            8 => gather_typed::<u64>(
                &self.map,
                bytemuck::pod_read_unaligned(&self.pad[..8]),
                bytemuck::try_cast_slice(x.bytes).map_err(e)?,
                bytemuck::try_cast_slice_mut(out.bytes).map_err(e)?,
            ),
            n => op_bail!("element size {n} not supported"),
        }
        Ok(())
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Build a gather map by walking an output of `dims` (row-major); `src`
/// gives the source index of a position, or `None` for padding.
fn walk(dims: &[usize], mut src: impl FnMut(&[usize]) -> Option<usize>) -> OpResult<Vec<u32>> {
    let n: usize = dims.iter().product();
    let mut map = Vec::with_capacity(n);
    if n == 0 {
        return Ok(map);
    }
    let mut idx = vec![0usize; dims.len()];
    for _ in 0..n {
        let m = match src(&idx) {
            Some(s) => {
                op_ensure!(s < PAD as usize, "tensor too large");
                s as u32
            }
            None => PAD,
        };
        map.push(m);
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(map)
}

fn gather_kernel(x: &TensorInfo, map: Vec<u32>, pad: [u8; 8]) -> OpResult<Box<dyn Kernel>> {
    Ok(Box::new(Gather {
        map,
        pad,
        esz: x.dtype.size(),
        in_len: x.num_elements(),
    }))
}

fn const_ints(ctx: &BuildCtx<'_>, node: &Node, i: usize, what: &str) -> OpResult<Vec<i64>> {
    let t = match node.inputs.get(i) {
        Some(Some(t)) => *t,
        _ => op_bail!("missing {what} operand"),
    };
    match ctx.const_data(t)? {
        Some(d) => d.ints(),
        None => op_bail!("{what} operand must be constant"),
    }
}

pub(crate) fn build_transpose(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_type_and_quant(x, y)?;
    let perm = const_ints(ctx, node, 1, "permutation")?;
    let r = x.shape.len();
    op_ensure!(r <= 6, "TRANSPOSE supports up to 6 dimensions");
    op_ensure!(perm.len() == r, "permutation {perm:?} for a {r}-D input");
    let mut seen = [false; 6];
    let mut p = Vec::with_capacity(r);
    for &v in &perm {
        let a = if v < 0 { v + r as i64 } else { v };
        op_ensure!(
            (0..r as i64).contains(&a) && !seen[a as usize],
            "invalid permutation {perm:?}"
        );
        seen[a as usize] = true;
        p.push(a as usize);
    }
    let want: Vec<usize> = p.iter().map(|&a| x.shape[a]).collect();
    op_ensure!(
        y.shape == want,
        "output shape {:?}, expected {want:?}",
        y.shape
    );
    let st = strides(&x.shape);
    let map = walk(&y.shape, |idx| {
        Some(idx.iter().zip(&p).map(|(&i, &a)| i * st[a]).sum())
    })?;
    gather_kernel(x, map, [0; 8])
}

pub(crate) fn build_pad(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_type_and_quant(x, y)?;
    let pads = const_ints(ctx, node, 1, "paddings")?;
    let r = x.shape.len();
    op_ensure!(
        pads.len() == 2 * r,
        "paddings have {} values for a {r}-D input",
        pads.len()
    );
    op_ensure!(pads.iter().all(|&v| v >= 0), "negative padding {pads:?}");
    let want: Vec<usize> = (0..r)
        .map(|i| x.shape[i] + pads[2 * i] as usize + pads[2 * i + 1] as usize)
        .collect();
    op_ensure!(
        y.shape == want,
        "output shape {:?}, expected {want:?}",
        y.shape
    );
    // Pad value: PADV2's constant, else 0 (float) or the output zero point.
    let mut pad = [0u8; 8];
    let esz = x.dtype.size();
    match node.inputs.get(2) {
        Some(Some(t)) => {
            let c = match ctx.const_data(*t)? {
                Some(c) => c,
                None => op_bail!("PADV2 constant value must be constant"),
            };
            op_ensure!(
                c.info.dtype == x.dtype && c.bytes.len() == esz,
                "PADV2 constant must be one {} value",
                x.dtype.name()
            );
            pad[..esz].copy_from_slice(c.bytes);
        }
        _ => match x.dtype {
            DType::I8 => pad[0] = q8(y)?.1 as i8 as u8,
            DType::U8 => pad[0] = q8(y)?.1 as u8,
            DType::F32 | DType::I32 | DType::I64 | DType::F16 | DType::I16 => {}
            d => op_bail!("PAD on {} is not supported", d.name()),
        },
    }
    let st = strides(&x.shape);
    let map = walk(&y.shape, |idx| {
        let mut s = 0;
        for i in 0..r {
            let before = pads[2 * i] as usize;
            if idx[i] < before || idx[i] >= before + x.shape[i] {
                return None;
            }
            s += (idx[i] - before) * st[i];
        }
        Some(s)
    })?;
    gather_kernel(x, map, pad)
}

/// DEPTH_TO_SPACE: runs of one output pixel's channels copied in output order.
struct DepthToSpace {
    batch: usize,
    height: usize,
    width: usize,
    block: usize,
    /// Bytes of one output pixel.
    run: usize,
}

impl Kernel for DepthToSpace {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = &mut io.outputs[0];
        let n = self.batch * self.height * self.width * self.block * self.block * self.run;
        op_ensure!(
            x.bytes.len() == n && out.bytes.len() == n,
            "operand sizes do not match the prepared shapes"
        );
        let op = DepthToSpaceOp {
            input: x.bytes,
            batch: self.batch,
            height: self.height,
            width: self.width,
            block: self.block,
            run: self.run,
        };
        depth_to_space(&op, out.bytes);
        Ok(())
    }
}

/// DEPTH_TO_SPACE (NHWC, any element type TFLite takes: float32, int8, uint8, int32,
/// int64): output `[n, h·bs, w·bs, c / bs²]`; quantized input and output must share
/// their parameters (the values are only moved).
pub(crate) fn build_depth_to_space(
    ctx: &BuildCtx<'_>,
    node: &Node,
    block_size: usize,
) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    op_ensure!(
        matches!(
            x.dtype,
            DType::F32 | DType::I8 | DType::U8 | DType::I32 | DType::I64
        ),
        "DEPTH_TO_SPACE on {} is not supported",
        x.dtype.name()
    );
    same_type_and_quant(x, y)?;
    check_rank(x, 4, "input")?;
    op_ensure!(block_size >= 1, "block_size must be >= 1, got {block_size}");
    let [n, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let bb = block_size
        .checked_mul(block_size)
        .ok_or("block_size too large")?;
    op_ensure!(
        c.is_multiple_of(bb),
        "input depth {c} is not divisible by block_size² = {bb}"
    );
    let want = [
        n,
        h.checked_mul(block_size).ok_or("output too large")?,
        w.checked_mul(block_size).ok_or("output too large")?,
        c / bb,
    ];
    op_ensure!(
        y.shape == want,
        "output shape {:?}, expected {want:?}",
        y.shape
    );
    Ok(Box::new(DepthToSpace {
        batch: n,
        height: h,
        width: w,
        block: block_size,
        run: c / bb * x.dtype.size(),
    }))
}

/// Per effective axis: (start, stop, stride, shrink, unused).
type SliceAxes = Vec<(i64, i64, i64, bool, bool)>;

/// TFLite's StridedSlice start/stop/stride of each effective axis.
fn strided_slice_plan(
    in_shape: &[usize],
    begin: &[i64],
    end: &[i64],
    stride: &[i64],
    o: &StridedSliceOptions,
) -> OpResult<(Vec<usize>, SliceAxes)> {
    let n = begin.len();
    op_ensure!(
        end.len() == n && stride.len() == n,
        "begin/end/strides lengths differ"
    );
    op_ensure!(n <= 16, "too many slice dimensions");
    let in_dims = in_shape.len();
    let bit = |m: i32, i: usize| i < 32 && (m >> i) & 1 == 1;
    let num_add = (0..n)
        .filter(|&i| !bit(o.ellipsis_mask, i) && bit(o.new_axis_mask, i))
        .count();
    let eff = in_dims + num_add;
    op_ensure!(eff <= 16, "too many effective dimensions");
    // Expand the ellipsis.
    let mut ell = vec![false; eff];
    let mut newax = vec![false; eff];
    let mut ell_start = eff;
    let mut expanded = 0usize;
    let mut i = 0;
    while i < eff {
        if bit(o.ellipsis_mask, i) {
            ell_start = i;
            let end_idx = (i + 1).max((i + 1 + num_add + in_dims).saturating_sub(n).min(eff));
            expanded = end_idx - ell_start - 1;
            while i < end_idx {
                ell[i] = true;
                i += 1;
            }
            continue;
        }
        if i >= expanded && bit(o.new_axis_mask, i - expanded) {
            newax[i] = true;
        }
        i += 1;
    }
    // (start, stop, stride, begin_mask, end_mask) per effective axis, plus shrink flag.
    let mut eff_shape = Vec::with_capacity(eff);
    let mut axes = Vec::with_capacity(eff);
    let mut added_axes = 0usize;
    let mut added_ell = 0usize;
    let mut shrink = vec![false; eff];
    for i in 0..eff {
        let dim = |k: usize| -> OpResult<usize> {
            in_shape
                .get(k)
                .copied()
                .ok_or_else(|| "slice spec does not fit the input rank".into())
        };
        if ell[i] {
            added_ell = i.saturating_sub(ell_start);
            eff_shape.push(dim(i - added_axes)?);
            axes.push((0, 0, 1, true, true));
        } else if newax[i] {
            eff_shape.push(1);
            axes.push((0, 1, 1, false, false));
            added_axes += 1;
        } else if i >= n + expanded {
            eff_shape.push(dim(i - added_axes)?);
            axes.push((0, 0, 1, true, true));
        } else {
            let k = i - added_ell;
            op_ensure!(k < n, "slice spec does not fit the input rank");
            eff_shape.push(dim(i - added_axes)?);
            axes.push((
                begin[k],
                end[k],
                stride[k],
                bit(o.begin_mask, k),
                bit(o.end_mask, k),
            ));
            shrink[i] = bit(o.shrink_axis_mask, k);
        }
    }
    let mut out = Vec::with_capacity(eff);
    for (i, &(b, e, s, bm, em)) in axes.iter().enumerate() {
        op_ensure!(s != 0, "stride 0");
        let size = eff_shape[i] as i64;
        let clamp = |v: i64| {
            if s > 0 {
                v.clamp(0, size)
            } else {
                v.clamp(-1, size - 1)
            }
        };
        let (start, stop) = if size == 0 {
            (0, 0)
        } else {
            let mut st = if bm {
                if s > 0 {
                    i32::MIN as i64
                } else {
                    i32::MAX as i64
                }
            } else {
                b
            };
            if st < 0 {
                st += size;
            }
            let st = clamp(st);
            let sp = if shrink[i] {
                st + 1
            } else {
                let mut sp = if em {
                    if s > 0 {
                        i32::MAX as i64
                    } else {
                        i32::MIN as i64
                    }
                } else if o.offset {
                    e + st
                } else {
                    e
                };
                if sp < 0 && (!o.offset || em) {
                    sp += size;
                }
                clamp(sp)
            };
            (st, sp)
        };
        out.push((start, stop, s, shrink[i], false));
    }
    Ok((eff_shape, out))
}

pub(crate) fn build_strided_slice(
    ctx: &BuildCtx<'_>,
    node: &Node,
    o: &StridedSliceOptions,
) -> OpResult<Box<dyn Kernel>> {
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    same_type_and_quant(x, y)?;
    let begin = const_ints(ctx, node, 1, "begin")?;
    let end = const_ints(ctx, node, 2, "end")?;
    let stride = const_ints(ctx, node, 3, "strides")?;
    let (eff_shape, axes) = strided_slice_plan(&x.shape, &begin, &end, &stride, o)?;
    let mut dims = Vec::with_capacity(axes.len());
    let mut out_shape = Vec::new();
    for &(st, sp, s, shrink, _) in &axes {
        let len = if s > 0 {
            ((sp - st + s - 1) / s).max(0)
        } else {
            ((sp - st + s + 1) / s).max(0)
        } as usize;
        dims.push(len);
        if !shrink {
            out_shape.push(len);
        }
    }
    op_ensure!(
        y.shape == out_shape,
        "output shape {:?}, expected {out_shape:?}",
        y.shape
    );
    let st = strides(&eff_shape);
    let map = walk(&dims, |idx| {
        let mut s = 0i64;
        for (k, &i) in idx.iter().enumerate() {
            let (start, _, step, _, _) = axes[k];
            s += (start + i as i64 * step) * st[k] as i64;
        }
        Some(s as usize)
    })?;
    gather_kernel(x, map, [0; 8])
}

/// SPLIT into equal parts along an axis.
struct Split {
    outer: usize,
    /// Bytes of one part's chunk per outer index.
    chunk: usize,
    parts: usize,
}

impl Kernel for Split {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(1)?;
        op_ensure!(
            x.bytes.len() == self.outer * self.chunk * self.parts && io.outputs.len() == self.parts,
            "operand sizes do not match the prepared shapes"
        );
        for (k, out) in io.outputs.iter_mut().enumerate() {
            op_ensure!(out.bytes.len() == self.outer * self.chunk, "size mismatch");
            for (o, dst) in out.bytes.chunks_exact_mut(self.chunk.max(1)).enumerate() {
                let s = (o * self.parts + k) * self.chunk;
                dst.copy_from_slice(&x.bytes[s..s + self.chunk]);
            }
        }
        Ok(())
    }
}

pub(crate) fn build_split(
    ctx: &BuildCtx<'_>,
    node: &Node,
    num_splits: usize,
) -> OpResult<Box<dyn Kernel>> {
    let axis = const_ints(ctx, node, 0, "axis")?;
    op_ensure!(axis.len() == 1, "axis must be a scalar");
    let x = ctx.input(node, 1)?;
    let r = x.shape.len() as i64;
    let a = axis[0];
    op_ensure!(a >= -r && a < r, "axis {a} out of range");
    let a = a.rem_euclid(r) as usize;
    op_ensure!(
        num_splits > 0 && node.outputs.len() == num_splits,
        "num_splits {num_splits} but {} outputs",
        node.outputs.len()
    );
    op_ensure!(
        x.shape[a] % num_splits == 0,
        "axis size {} is not divisible by {num_splits}",
        x.shape[a]
    );
    let mut want = x.shape.clone();
    want[a] /= num_splits;
    for k in 0..num_splits {
        let y = ctx.output(node, k)?;
        same_type_and_quant(x, y)?;
        op_ensure!(
            y.shape == want,
            "output {k} shape {:?}, expected {want:?}",
            y.shape
        );
    }
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    Ok(Box::new(Split {
        outer,
        chunk: want[a] * inner * x.dtype.size(),
        parts: num_splits,
    }))
}

/// CONCATENATION: per input, chunks of `chunk[i]` bytes per outer index,
/// optionally requantized through a table.
struct Concat {
    outer: usize,
    chunks: Vec<usize>,
    luts: Vec<Option<[u8; 256]>>,
}

impl Kernel for Concat {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let total: usize = self.chunks.iter().sum();
        let out = &mut io.outputs[0];
        op_ensure!(
            out.bytes.len() == self.outer * total && io.inputs.len() == self.chunks.len(),
            "operand sizes do not match the prepared shapes"
        );
        let mut off = 0;
        for (i, &c) in self.chunks.iter().enumerate() {
            let x = match io.inputs.get(i) {
                Some(Some(t)) => t.bytes,
                _ => op_bail!("missing input {i}"),
            };
            op_ensure!(x.len() == self.outer * c, "size mismatch of input {i}");
            for o in 0..self.outer {
                let src = &x[o * c..(o + 1) * c];
                let dst = &mut out.bytes[o * total + off..o * total + off + c];
                match &self.luts[i] {
                    None => dst.copy_from_slice(src),
                    Some(t) => {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = t[s as usize];
                        }
                    }
                }
            }
            off += c;
        }
        Ok(())
    }
}

pub(crate) fn build_concat(
    ctx: &BuildCtx<'_>,
    node: &Node,
    axis: i32,
    act: Activation,
) -> OpResult<Box<dyn Kernel>> {
    op_ensure!(
        act == Activation::None,
        "fused activation {act:?} on CONCATENATION is not supported"
    );
    let y = ctx.output(node, 0)?;
    let r = y.shape.len() as i32;
    op_ensure!(r >= 1, "CONCATENATION needs at least 1-D tensors");
    op_ensure!(axis >= -r && axis < r, "axis {axis} out of range");
    let a = axis.rem_euclid(r.max(1)) as usize;
    op_ensure!(!node.inputs.is_empty(), "no inputs");
    let mut sum = 0;
    let mut chunks = Vec::new();
    let mut luts = Vec::new();
    let inner: usize = y.shape[a + 1..].iter().product();
    let esz = y.dtype.size();
    for i in 0..node.inputs.len() {
        let x = ctx.input(node, i)?;
        op_ensure!(x.dtype == y.dtype, "input {i} type differs from the output");
        op_ensure!(
            x.shape.len() == y.shape.len()
                && x.shape
                    .iter()
                    .zip(&y.shape)
                    .enumerate()
                    .all(|(k, (p, q))| k == a || p == q),
            "input {i} shape {:?} does not fit output {:?}",
            x.shape,
            y.shape
        );
        sum += x.shape[a];
        chunks.push(x.shape[a] * inner * esz);
        luts.push(match y.dtype {
            DType::I8 => {
                // TFLite requires int8 inputs to share the output's quantization.
                op_ensure!(
                    qparams(x)? == qparams(y)?,
                    "int8 input {i} quantization differs from the output's"
                );
                None
            }
            DType::U8 => {
                let (si, zi, _) = q8(x)?;
                let (so, zo, r) = q8(y)?;
                if si == so && zi == zo {
                    None
                } else {
                    let inv = 1.0f32 / so;
                    let scale = si * inv;
                    let bias = -(zi as f32) * scale;
                    Some(build_lut(r, |v| {
                        ((v as f32 * scale + bias).round() as i32 + zo).clamp(0, 255)
                    }))
                }
            }
            DType::I16 => {
                // TFLite copies int16 inputs unscaled; it requires zero points 0.
                op_ensure!(
                    qparams(x)?.1 == 0 && qparams(y)?.1 == 0,
                    "int16 CONCATENATION needs zero points 0 (input {i})"
                );
                None
            }
            _ => None,
        });
    }
    op_ensure!(
        sum == y.shape[a],
        "inputs sum to {sum} along axis {a}, output has {}",
        y.shape[a]
    );
    Ok(Box::new(Concat {
        outer: y.shape[..a].iter().product(),
        chunks,
        luts,
    }))
}
