//! ADD, SUB, MUL with NumPy-style broadcasting (up to 6-D) and fused activations.

use std::sync::Arc;

use crate::engine::error::OpResult;
use crate::engine::graph::{Activation, Node, Op};
use crate::engine::kernels::scalar::elementwise::{
    add_f32, add_q, mul_f32, mul_q, sub_f32, sub_q, AddSubParams, BinaryQuant, MulParams,
};
use crate::engine::kernels::{self, KernelPath};
use crate::engine::pool::{split_range, ThreadPool};
use crate::engine::quant::{activation_range_f32, activation_range_quantized};
use crate::engine::tensor::{DType, TensorInfo};
use crate::{op_bail, op_ensure};

use super::common::q8;
use super::{BuildCtx, Kernel, OpIo};

pub(crate) const MAX_RANK: usize = 6;

/// Broadcast iteration plan: output dims and element strides of both inputs
/// (0 along broadcast dimensions), all padded on the left to `MAX_RANK`.
#[derive(Clone, Debug)]
pub(crate) struct Broadcast {
    dims: [usize; MAX_RANK],
    sa: [usize; MAX_RANK],
    sb: [usize; MAX_RANK],
    /// Both inputs have the output's shape: a plain zip.
    same: bool,
    len_a: usize,
    len_b: usize,
    len_out: usize,
}

fn strides_for(shape: &[usize], out: &[usize; MAX_RANK]) -> [usize; MAX_RANK] {
    let mut s = [0usize; MAX_RANK];
    let off = MAX_RANK - shape.len();
    let mut acc = 1usize;
    for i in (0..shape.len()).rev() {
        s[off + i] = if shape[i] == 1 && out[off + i] != 1 {
            0
        } else {
            acc
        };
        acc *= shape[i];
    }
    s
}

impl Broadcast {
    pub(crate) fn new(a: &[usize], b: &[usize], out: &[usize]) -> OpResult<Self> {
        let rank = a.len().max(b.len());
        op_ensure!(
            rank <= MAX_RANK,
            "broadcasting is supported up to {MAX_RANK} dimensions"
        );
        let mut dims = [1usize; MAX_RANK];
        for (i, d) in dims.iter_mut().enumerate().skip(MAX_RANK - rank) {
            let k = MAX_RANK - i; // position from the right, 1-based
            let da = if k <= a.len() { a[a.len() - k] } else { 1 };
            let db = if k <= b.len() { b[b.len() - k] } else { 1 };
            *d = if da == db || db == 1 {
                da
            } else if da == 1 {
                db
            } else {
                op_bail!("shapes {a:?} and {b:?} do not broadcast")
            };
        }
        op_ensure!(
            out == &dims[MAX_RANK - rank..],
            "output shape {out:?} is not the broadcast shape {:?}",
            &dims[MAX_RANK - rank..]
        );
        Ok(Broadcast {
            dims,
            sa: strides_for(a, &dims),
            sb: strides_for(b, &dims),
            same: a == out && b == out,
            len_a: a.iter().product(),
            len_b: b.iter().product(),
            len_out: out.iter().product(),
        })
    }

    /// Apply `f` element-wise; slice lengths are checked so that this cannot panic.
    pub(crate) fn run<T: Copy, U>(
        &self,
        a: &[T],
        b: &[T],
        out: &mut [U],
        f: impl Fn(T, T) -> U,
    ) -> OpResult<()> {
        op_ensure!(
            a.len() == self.len_a && b.len() == self.len_b && out.len() == self.len_out,
            "operand sizes do not match the prepared shapes"
        );
        if self.same {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = f(x, y);
            }
            return Ok(());
        }
        if self.len_out == 0 {
            return Ok(());
        }
        let d = &self.dims;
        let (sa, sb) = (&self.sa, &self.sb);
        let inner = d[MAX_RANK - 1];
        let mut idx = [0usize; MAX_RANK - 1];
        let mut o = 0usize;
        loop {
            let mut ia = 0;
            let mut ib = 0;
            for k in 0..MAX_RANK - 1 {
                ia += idx[k] * sa[k];
                ib += idx[k] * sb[k];
            }
            let (ta, tb) = (sa[MAX_RANK - 1], sb[MAX_RANK - 1]);
            for j in 0..inner {
                out[o] = f(a[ia + j * ta], b[ib + j * tb]);
                o += 1;
            }
            // odometer over the outer dims
            let mut k = MAX_RANK - 1;
            loop {
                if k == 0 {
                    return Ok(());
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < d[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Add,
    Sub,
    Mul,
}

enum Params {
    F32 { lo: f32, hi: f32 },
    I32 { lo: i32, hi: i32 },
    AddSub(AddSubParams),
    Mul(MulParams),
}

struct Binary {
    kind: Kind,
    dtype: DType,
    bc: Broadcast,
    params: Params,
    /// Quantized (int8 / uint8) operators: the whole function of the two stored
    /// bytes as a 256 x 256 table, built once from the reference arithmetic, so
    /// the results are identical and each element costs one lookup (a fixed-size
    /// table: any 16-bit index is inside it, no bounds check per element).
    lut: Option<Box<Lut>>,
    /// The interpreter's pool: large same-shape float operators and table lookups are cut
    /// over it.
    pool: Option<Arc<ThreadPool>>,
    /// Kernel path of the same-shape table lookups.
    path: KernelPath,
}

/// A quantized binary operator as a table of its 256 x 256 results.
type Lut = [u8; 1 << 16];

/// Elements a same-shape float or quantized operator needs before it is cut over the pool.
const PAR_MIN: usize = 16 * 1024;

impl Binary {
    fn quantized_lut(&self) -> Option<Box<Lut>> {
        let signed = match self.dtype {
            DType::I8 => true,
            DType::U8 => false,
            _ => return None,
        };
        let rd = |v: u8| if signed { v as i8 as i32 } else { v as i32 };
        let wr = |v: i32| if signed { v as i8 as u8 } else { v as u8 };
        let f = |x: u8, y: u8| -> Option<u8> {
            Some(match (&self.params, self.kind) {
                (Params::AddSub(p), Kind::Add) => wr(add_q(p, rd(x), rd(y))),
                (Params::AddSub(p), _) => wr(sub_q(p, rd(x), rd(y))),
                (Params::Mul(p), _) => wr(mul_q(p, rd(x), rd(y))),
                _ => return None,
            })
        };
        let mut t = vec![0u8; 1 << 16];
        for x in 0..=255u8 {
            for y in 0..=255u8 {
                t[(x as usize) << 8 | y as usize] = f(x, y)?;
            }
        }
        t.into_boxed_slice().try_into().ok()
    }
}

/// `f(a part, b part, o part)` over same-length operands, cut into contiguous parts over the
/// pool (two a thread; each thread's share is the part of the tensor it wrote in the
/// operators before).
fn par_same<T: Sync, U: Send>(
    pool: &ThreadPool,
    a: &[T],
    b: &[T],
    o: &mut [U],
    f: impl Fn(&[T], &[T], &mut [U]) + Sync,
) {
    let n = o.len();
    let tasks = 2 * pool.threads();
    let bounds = |t: usize| split_range(n, tasks, t);
    pool.run_chunks(o, tasks, &bounds, &|t, o, _| {
        let r = bounds(t);
        f(&a[r.clone()], &b[r], o);
    });
}

/// `o[i] = f(a[i], b[i])` over same-length slices, cut over the pool.
fn par_f32(
    pool: &ThreadPool,
    a: &[f32],
    b: &[f32],
    o: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    par_same(pool, a, b, o, |a, b, o| {
        for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
            *o = f(x, y);
        }
    });
}

impl Kernel for Binary {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let a = io.input(0)?;
        let b = io.input(1)?;
        let out = &mut io.outputs[0];
        if let Some(lut) = &self.lut {
            let n = self.bc.len_out;
            if let (true, Some(pool)) = (self.bc.same && n >= PAR_MIN, &self.pool) {
                op_ensure!(
                    a.bytes.len() == n && b.bytes.len() == n && out.bytes.len() == n,
                    "operand sizes do not match the prepared shapes"
                );
                par_same(pool, a.bytes, b.bytes, out.bytes, |a, b, o| {
                    kernels::lut2_u8(self.path, lut, a, b, o)
                });
                return Ok(());
            }
            if self.bc.same {
                op_ensure!(
                    a.bytes.len() == n && b.bytes.len() == n && out.bytes.len() == n,
                    "operand sizes do not match the prepared shapes"
                );
                kernels::lut2_u8(self.path, lut, a.bytes, b.bytes, out.bytes);
                return Ok(());
            }
            return self.bc.run(a.bytes, b.bytes, out.bytes, |x, y| {
                lut[(x as usize) << 8 | y as usize]
            });
        }
        match (&self.params, self.kind) {
            (Params::F32 { lo, hi }, k) => {
                let (lo, hi) = (*lo, *hi);
                let (a, b) = (a.f32()?, b.f32()?);
                let o = out.f32()?;
                let n = self.bc.len_out;
                if let (true, Some(pool)) = (self.bc.same && n >= PAR_MIN, &self.pool) {
                    op_ensure!(
                        a.len() == n && b.len() == n && o.len() == n,
                        "operand sizes do not match the prepared shapes"
                    );
                    match k {
                        Kind::Add => par_f32(pool, a, b, o, |x, y| add_f32(x, y, lo, hi)),
                        Kind::Sub => par_f32(pool, a, b, o, |x, y| sub_f32(x, y, lo, hi)),
                        Kind::Mul => par_f32(pool, a, b, o, |x, y| mul_f32(x, y, lo, hi)),
                    }
                    return Ok(());
                }
                match k {
                    Kind::Add => self.bc.run(a, b, o, |x, y| add_f32(x, y, lo, hi)),
                    Kind::Sub => self.bc.run(a, b, o, |x, y| sub_f32(x, y, lo, hi)),
                    Kind::Mul => self.bc.run(a, b, o, |x, y| mul_f32(x, y, lo, hi)),
                }
            }
            (Params::I32 { lo, hi }, k) => {
                let (lo, hi) = (*lo, *hi);
                let (a, b) = (a.i32()?, b.i32()?);
                let o = out.i32()?;
                match k {
                    Kind::Add => self.bc.run(a, b, o, |x, y| x.wrapping_add(y).clamp(lo, hi)),
                    Kind::Sub => self.bc.run(a, b, o, |x, y| x.wrapping_sub(y).clamp(lo, hi)),
                    Kind::Mul => self.bc.run(a, b, o, |x, y| x.wrapping_mul(y).clamp(lo, hi)),
                }
            }
            (params, k) => {
                let signed = self.dtype == DType::I8;
                let rd = |v: u8| if signed { v as i8 as i32 } else { v as i32 };
                let wr = |v: i32| if signed { v as i8 as u8 } else { v as u8 };
                match (params, k) {
                    (Params::AddSub(p), Kind::Add) => {
                        self.bc.run(a.bytes, b.bytes, out.bytes, |x, y| {
                            wr(add_q(p, rd(x), rd(y)))
                        })
                    }
                    (Params::AddSub(p), _) => self.bc.run(a.bytes, b.bytes, out.bytes, |x, y| {
                        wr(sub_q(p, rd(x), rd(y)))
                    }),
                    (Params::Mul(p), _) => self.bc.run(a.bytes, b.bytes, out.bytes, |x, y| {
                        wr(mul_q(p, rd(x), rd(y)))
                    }),
                    _ => op_bail!("inconsistent parameters"),
                }
            }
        }
    }
}

fn check_types(a: &TensorInfo, b: &TensorInfo, y: &TensorInfo) -> OpResult<DType> {
    op_ensure!(
        a.dtype == b.dtype && a.dtype == y.dtype,
        "operand types differ: {}, {} -> {}",
        a.dtype.name(),
        b.dtype.name(),
        y.dtype.name()
    );
    Ok(a.dtype)
}

pub(crate) fn build_binary(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let (kind, act) = match node.op {
        Op::Add { activation } => (Kind::Add, activation),
        Op::Sub { activation } => (Kind::Sub, activation),
        Op::Mul { activation } => (Kind::Mul, activation),
        _ => op_bail!("not a binary arithmetic operator"),
    };
    let a = ctx.input(node, 0)?;
    let b = ctx.input(node, 1)?;
    let y = ctx.output(node, 0)?;
    let dtype = check_types(a, b, y)?;
    let bc = Broadcast::new(&a.shape, &b.shape, &y.shape)?;
    let params = match dtype {
        DType::F32 => {
            let (lo, hi) = activation_range_f32(act)?;
            Params::F32 { lo, hi }
        }
        DType::I32 => {
            let (lo, hi) = activation_range_f32(act)?;
            let cv = |v: f32| v.clamp(i32::MIN as f32, i32::MAX as f32) as i32;
            Params::I32 {
                lo: cv(lo),
                hi: cv(hi),
            }
        }
        DType::I8 | DType::U8 => {
            let (s1, z1, _) = q8(a)?;
            let (s2, z2, _) = q8(b)?;
            let (so, zo, r) = q8(y)?;
            let q = BinaryQuant {
                in1: (s1, z1),
                in2: (s2, z2),
                out: (so, zo),
                act: activation_range_quantized(act, so, zo, r)?,
            };
            match kind {
                Kind::Mul => Params::Mul(MulParams::new(&q)),
                _ => Params::AddSub(AddSubParams::new(&q)?),
            }
        }
        d => op_bail!("{} on {} is not supported", node.op.name(), d.name()),
    };
    if matches!(act, Activation::Tanh | Activation::SignBit) {
        op_bail!("fused activation {act:?} is not supported");
    }
    let mut k = Binary {
        kind,
        dtype,
        bc,
        params,
        lut: None,
        pool: ctx.pool.clone(),
        path: ctx.kernels,
    };
    k.lut = k.quantized_lut();
    Ok(Box::new(k))
}
