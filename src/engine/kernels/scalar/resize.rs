//! Scalar reference arithmetic of RESIZE_BILINEAR and RESIZE_NEAREST_NEIGHBOR
//! (NHWC), following TFLite's reference kernels.

/// Sampling geometry of one resized axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    pub in_size: usize,
    pub out_size: usize,
    pub align_corners: bool,
    pub half_pixel_centers: bool,
}

impl Axis {
    fn scale_f32(&self) -> f32 {
        if self.align_corners && self.out_size > 1 {
            (self.in_size as f32 - 1.0) / (self.out_size as f32 - 1.0)
        } else {
            self.in_size as f32 / self.out_size as f32
        }
    }

    /// Float bilinear sample position: (position, lower index, upper index).
    pub fn bilinear_f32(&self, o: usize) -> (f32, usize, usize) {
        let scale = self.scale_f32();
        let v = if self.half_pixel_centers {
            (o as f32 + 0.5) * scale - 0.5
        } else {
            o as f32 * scale
        };
        let lo = (v.floor() as i32).max(0) as usize;
        let hi = (v.ceil() as i32).min(self.in_size as i32 - 1).max(0) as usize;
        (v, lo, hi)
    }

    /// Integer bilinear sample position in 1/1024 units: (position, lower, upper).
    pub fn bilinear_i32(&self, o: usize) -> (i32, usize, usize) {
        let (i, n) = (self.in_size as i32, self.out_size as i32);
        let scale = if self.align_corners && n > 1 {
            ((1 << 10) * (i - 1) + (n - 1) / 2) / (n - 1)
        } else {
            ((1 << 10) * i + n / 2) / n
        };
        let v = if self.half_pixel_centers {
            o as i32 * scale + scale / 2 - (1 << 9)
        } else {
            o as i32 * scale
        };
        let lo = (v / (1 << 10)).max(0);
        let hi = ((v + (1 << 10) - 1) / (1 << 10)).min(i - 1).max(0);
        (v, lo as usize, hi as usize)
    }

    /// Nearest-neighbour source index.
    pub fn nearest(&self, o: usize) -> usize {
        let scale = self.scale_f32();
        let off = if self.half_pixel_centers { 0.5 } else { 0.0 };
        let p = (o as f32 + off) * scale;
        let mut i = if self.align_corners {
            p.round() as i32
        } else {
            p.floor() as i32
        };
        i = i.min(self.in_size as i32 - 1);
        if self.half_pixel_centers {
            i = i.max(0);
        }
        i.max(0) as usize
    }
}

/// The operands of a resize of an NHWC tensor, but for the data: the input's batches,
/// height, width and depth, and the sample of each output row (`ys`) and column (`xs`), as
/// [`Axis`] computes them for the output size and the align-corners / half-pixel-centers
/// flags (the output is `batches × ys.len() × xs.len() × depth`).
#[derive(Clone, Copy, Debug)]
pub struct ResizeOperands<'a, S> {
    pub batches: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub depth: usize,
    pub ys: &'a [S],
    pub xs: &'a [S],
}

/// Float bilinear sample positions ([`Axis::bilinear_f32`]).
pub type BilinearF32<'a> = ResizeOperands<'a, (f32, usize, usize)>;

/// Integer bilinear sample positions ([`Axis::bilinear_i32`]).
pub type BilinearI32<'a> = ResizeOperands<'a, (i32, usize, usize)>;

/// Float bilinear resize of an NHWC tensor (TFLite's generic reference).
pub fn bilinear_f32(r: &BilinearF32<'_>, input: &[f32], output: &mut [f32]) {
    bilinear_float(r, input, output, |v| v, |v| v)
}

/// The generic float-arithmetic bilinear resize; `get` converts a stored
/// value to float and `put` converts the interpolated float back (TFLite's
/// uint8 reference rounds half away from zero).
pub fn bilinear_float<T: Copy>(
    r: &BilinearF32<'_>,
    input: &[T],
    output: &mut [T],
    get: impl Fn(T) -> f32,
    put: impl Fn(f32) -> T,
) {
    let ResizeOperands {
        batches,
        in_h,
        in_w,
        depth,
        ys,
        xs,
    } = *r;
    let mut o = 0;
    for b in 0..batches {
        for &(iy, y0, y1) in ys {
            let dy = iy - y0 as f32;
            for &(ix, x0, x1) in xs {
                let dx = ix - x0 as f32;
                let base = b * in_h;
                let p00 = ((base + y0) * in_w + x0) * depth;
                let p10 = ((base + y1) * in_w + x0) * depth;
                let p01 = ((base + y0) * in_w + x1) * depth;
                let p11 = ((base + y1) * in_w + x1) * depth;
                for c in 0..depth {
                    output[o] = put(get(input[p00 + c]) * (1.0 - dy) * (1.0 - dx)
                        + get(input[p10 + c]) * dy * (1.0 - dx)
                        + get(input[p01 + c]) * (1.0 - dy) * dx
                        + get(input[p11 + c]) * dy * dx);
                    o += 1;
                }
            }
        }
    }
}

/// Integer bilinear resize (TFLite's `ResizeBilinearInteger`) of 8-bit data;
/// `get` reads a stored value, the result is the rounded stored value.
pub fn bilinear_int<T: Copy>(
    r: &BilinearI32<'_>,
    input: &[T],
    output: &mut [T],
    get: impl Fn(T) -> i64,
    put: impl Fn(i64) -> T,
) {
    let ResizeOperands {
        batches,
        in_h,
        in_w,
        depth,
        ys,
        xs,
    } = *r;
    const ONE: i64 = 1 << 10;
    let mut o = 0;
    for b in 0..batches {
        for &(iy, y0, y1) in ys {
            let wy1 = iy as i64 - ONE * y0 as i64;
            let wy0 = ONE - wy1;
            for &(ix, x0, x1) in xs {
                let wx1 = ix as i64 - ONE * x0 as i64;
                let wx0 = ONE - wx1;
                let base = b * in_h;
                let p00 = ((base + y0) * in_w + x0) * depth;
                let p10 = ((base + y1) * in_w + x0) * depth;
                let p01 = ((base + y0) * in_w + x1) * depth;
                let p11 = ((base + y1) * in_w + x1) * depth;
                for c in 0..depth {
                    let acc = get(input[p00 + c]) * wy0 * wx0
                        + get(input[p10 + c]) * wy1 * wx0
                        + get(input[p01 + c]) * wy0 * wx1
                        + get(input[p11 + c]) * wy1 * wx1;
                    let round = if acc > 0 { 1 << 19 } else { -(1 << 19) };
                    output[o] = put((acc + round) / (1 << 20));
                    o += 1;
                }
            }
        }
    }
}

/// Nearest-neighbour resize of an NHWC tensor of any element type (samples:
/// [`Axis::nearest`]).
pub fn nearest<T: Copy>(r: &ResizeOperands<'_, usize>, input: &[T], output: &mut [T]) {
    let ResizeOperands {
        batches,
        in_h,
        in_w,
        depth,
        ys,
        xs,
    } = *r;
    let mut o = 0;
    for b in 0..batches {
        for &y in ys {
            for &x in xs {
                let p = ((b * in_h + y) * in_w + x) * depth;
                output[o..o + depth].copy_from_slice(&input[p..p + depth]);
                o += depth;
            }
        }
    }
}
