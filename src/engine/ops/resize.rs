//! RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR (NHWC; size from the constant
//! second operand, which must agree with the output shape).

use crate::engine::error::OpResult;
use crate::engine::graph::{Node, Op, ResizeOptions};
use crate::engine::kernels::scalar::resize::{
    bilinear_f32, bilinear_float, bilinear_int, nearest, Axis, ResizeOperands,
};
use crate::engine::tensor::DType;
use crate::{op_bail, op_ensure};

use super::common::{q8, symmetric16};
use super::{BuildCtx, Kernel, OpIo};

struct Geometry {
    batches: usize,
    in_h: usize,
    in_w: usize,
    depth: usize,
}

impl Geometry {
    /// The kernels' operands with the sample tables `ys`, `xs`.
    fn with<'a, S>(&self, ys: &'a [S], xs: &'a [S]) -> ResizeOperands<'a, S> {
        ResizeOperands {
            batches: self.batches,
            in_h: self.in_h,
            in_w: self.in_w,
            depth: self.depth,
            ys,
            xs,
        }
    }
}

enum Plan {
    BilinearF32 {
        ys: Vec<(f32, usize, usize)>,
        xs: Vec<(f32, usize, usize)>,
    },
    /// int8 and int16 (zero points 0): TFLite's `ResizeBilinearInteger`.
    BilinearInt {
        ys: Vec<(i32, usize, usize)>,
        xs: Vec<(i32, usize, usize)>,
    },
    /// uint8: TFLite's generic reference in float, rounded.
    BilinearU8 {
        ys: Vec<(f32, usize, usize)>,
        xs: Vec<(f32, usize, usize)>,
    },
    Nearest {
        ys: Vec<usize>,
        xs: Vec<usize>,
    },
}

struct Resize {
    g: Geometry,
    dtype: DType,
    plan: Plan,
    in_len: usize,
    out_len: usize,
}

impl Kernel for Resize {
    fn eval(&mut self, io: &mut OpIo<'_>) -> OpResult<()> {
        let x = io.input(0)?;
        let out = &mut io.outputs[0];
        let g = &self.g;
        let esz = self.dtype.size();
        op_ensure!(
            x.bytes.len() == self.in_len * esz && out.bytes.len() == self.out_len * esz,
            "operand sizes do not match the prepared shapes"
        );
        match &self.plan {
            Plan::BilinearF32 { ys, xs } => bilinear_f32(&g.with(ys, xs), x.f32()?, out.f32()?),
            Plan::BilinearInt { ys, xs } if self.dtype == DType::I16 => bilinear_int(
                &g.with(ys, xs),
                x.i16()?,
                out.i16()?,
                |v| v as i64,
                |v| v as i16,
            ),
            Plan::BilinearInt { ys, xs } => bilinear_int(
                &g.with(ys, xs),
                x.i8()?,
                out.i8()?,
                |v| v as i64,
                |v| v as i8,
            ),
            Plan::BilinearU8 { ys, xs } => bilinear_float(
                &g.with(ys, xs),
                x.u8()?,
                out.u8()?,
                |v| v as f32,
                |v| v.round() as u8,
            ),
            Plan::Nearest { ys, xs } => match self.dtype {
                DType::F32 | DType::I32 => nearest::<[u8; 4]>(
                    &g.with(ys, xs),
                    bytemuck::try_cast_slice(x.bytes).map_err(|e| format!("{e:?}"))?,
                    bytemuck::try_cast_slice_mut(out.bytes).map_err(|e| format!("{e:?}"))?,
                ),
                DType::I16 => nearest::<[u8; 2]>(
                    &g.with(ys, xs),
                    bytemuck::try_cast_slice(x.bytes).map_err(|e| format!("{e:?}"))?,
                    bytemuck::try_cast_slice_mut(out.bytes).map_err(|e| format!("{e:?}"))?,
                ),
                _ => nearest(&g.with(ys, xs), x.bytes, out.bytes),
            },
        }
        Ok(())
    }
}

pub(crate) fn build_resize(ctx: &BuildCtx<'_>, node: &Node) -> OpResult<Box<dyn Kernel>> {
    let (bilinear, o): (bool, ResizeOptions) = match &node.op {
        Op::ResizeBilinear(o) => (true, *o),
        Op::ResizeNearestNeighbor(o) => (false, *o),
        _ => op_bail!("not a resize operator"),
    };
    let x = ctx.input(node, 0)?;
    let y = ctx.output(node, 0)?;
    op_ensure!(
        x.shape.len() == 4 && y.shape.len() == 4,
        "resize needs 4-D NHWC tensors"
    );
    op_ensure!(x.dtype == y.dtype, "input and output types differ");
    op_ensure!(
        x.shape[0] == y.shape[0] && x.shape[3] == y.shape[3],
        "batch/depth differ between input {:?} and output {:?}",
        x.shape,
        y.shape
    );
    op_ensure!(
        !(o.align_corners && o.half_pixel_centers),
        "align_corners and half_pixel_centers cannot both be set"
    );
    if let Some(Some(si)) = node.inputs.get(1) {
        if let Some(size) = ctx.const_data(*si)? {
            let v = size.ints()?;
            op_ensure!(
                v.len() == 2 && v[0] == y.shape[1] as i64 && v[1] == y.shape[2] as i64,
                "size operand {v:?} disagrees with the output shape {:?}",
                y.shape
            );
        }
    }
    let (in_h, in_w, out_h, out_w) = (x.shape[1], x.shape[2], y.shape[1], y.shape[2]);
    op_ensure!(
        in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0,
        "empty spatial dimension"
    );
    let ay = Axis {
        in_size: in_h,
        out_size: out_h,
        align_corners: o.align_corners,
        half_pixel_centers: o.half_pixel_centers,
    };
    let ax = Axis {
        in_size: in_w,
        out_size: out_w,
        ..ay
    };
    let plan = if bilinear {
        match x.dtype {
            DType::F32 => Plan::BilinearF32 {
                ys: (0..out_h).map(|i| ay.bilinear_f32(i)).collect(),
                xs: (0..out_w).map(|i| ax.bilinear_f32(i)).collect(),
            },
            // Like TFLite, stored values are interpolated as they are; its int16
            // kernel is the int8 one's integer interpolation.
            DType::I8 | DType::I16 => {
                if x.dtype == DType::I8 {
                    q8(x)?;
                    q8(y)?;
                } else {
                    symmetric16("RESIZE_BILINEAR", x, y)?;
                }
                Plan::BilinearInt {
                    ys: (0..out_h).map(|i| ay.bilinear_i32(i)).collect(),
                    xs: (0..out_w).map(|i| ax.bilinear_i32(i)).collect(),
                }
            }
            DType::U8 => {
                q8(x)?;
                q8(y)?;
                Plan::BilinearU8 {
                    ys: (0..out_h).map(|i| ay.bilinear_f32(i)).collect(),
                    xs: (0..out_w).map(|i| ax.bilinear_f32(i)).collect(),
                }
            }
            d => op_bail!("RESIZE_BILINEAR on {} is not supported", d.name()),
        }
    } else {
        match x.dtype {
            DType::F32 | DType::I32 | DType::I8 | DType::U8 | DType::I16 => {}
            d => op_bail!("RESIZE_NEAREST_NEIGHBOR on {} is not supported", d.name()),
        }
        Plan::Nearest {
            ys: (0..out_h).map(|i| ay.nearest(i)).collect(),
            xs: (0..out_w).map(|i| ax.nearest(i)).collect(),
        }
    };
    Ok(Box::new(Resize {
        g: Geometry {
            batches: x.shape[0],
            in_h,
            in_w,
            depth: x.shape[3],
        },
        dtype: x.dtype,
        plan,
        in_len: x.num_elements(),
        out_len: y.num_elements(),
    }))
}
