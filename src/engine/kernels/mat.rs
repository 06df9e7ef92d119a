//! Operands shared by the kernels of every instruction set: strided row-major matrix views
//! (the left-hand side, accumulator and output of the GEMMs and the requantization epilogue)
//! and the float activation bounds.
//!
//! A view only describes memory; it checks nothing when made. Each dispatch entry point checks
//! its views with [`Mat::holds`] / [`MatMut::holds`] and its own message before a kernel reads
//! or writes through raw pointers.

/// `rows` rows of `cols` values, row `i` starting at `data[i * stride]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a, T> Mat<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            stride,
        }
    }

    /// A dense `rows x cols` matrix (stride = `cols`).
    pub fn dense(data: &'a [T], rows: usize, cols: usize) -> Self {
        Mat::new(data, rows, cols, cols)
    }

    /// Whether `stride >= cols` and `data` holds every row (always true with no rows).
    pub fn holds(&self) -> bool {
        self.rows == 0
            || (self.stride >= self.cols
                && self.data.len() >= (self.rows - 1) * self.stride + self.cols)
    }

    /// Row `i` (its `cols` values).
    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// The view without its first `n` rows.
    pub fn skip_rows(self, n: usize) -> Self {
        let n = n.min(self.rows);
        Mat {
            data: &self.data[(n * self.stride).min(self.data.len())..],
            rows: self.rows - n,
            ..self
        }
    }
}

/// The mutable counterpart of [`Mat`].
#[derive(Debug)]
pub struct MatMut<'a, T> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a, T> MatMut<'a, T> {
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            stride,
        }
    }

    /// A dense `rows x cols` matrix (stride = `cols`).
    pub fn dense(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        MatMut::new(data, rows, cols, cols)
    }

    /// See [`Mat::holds`].
    pub fn holds(&self) -> bool {
        self.as_ref().holds()
    }

    /// A read-only view of the same memory.
    pub fn as_ref(&self) -> Mat<'_, T> {
        Mat::new(self.data, self.rows, self.cols, self.stride)
    }

    /// A shorter-lived view of the same memory (to pass on without giving this one up).
    pub fn reborrow(&mut self) -> MatMut<'_, T> {
        MatMut::new(self.data, self.rows, self.cols, self.stride)
    }

    /// Row `i` (its `cols` values).
    pub fn row_mut(&mut self, i: usize) -> &mut [T] {
        &mut self.data[i * self.stride..i * self.stride + self.cols]
    }

    /// The view without its first `n` rows.
    pub fn skip_rows(self, n: usize) -> Self {
        let n = n.min(self.rows);
        let start = (n * self.stride).min(self.data.len());
        MatMut {
            data: &mut self.data[start..],
            rows: self.rows - n,
            cols: self.cols,
            stride: self.stride,
        }
    }
}

/// Float activation bounds: results are clamped to `[min, max]` (TFLite's fused activation;
/// `(-inf, inf)` for none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clamp {
    pub min: f32,
    pub max: f32,
}

impl Clamp {
    pub const NONE: Clamp = Clamp {
        min: f32::NEG_INFINITY,
        max: f32::INFINITY,
    };

    pub fn new(min: f32, max: f32) -> Self {
        Clamp { min, max }
    }

    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        v.max(self.min).min(self.max)
    }
}

impl From<(f32, f32)> for Clamp {
    fn from((min, max): (f32, f32)) -> Self {
        Clamp { min, max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_check_their_extent() {
        let v = [0u8; 10];
        assert!(Mat::new(&v, 3, 2, 4).holds()); // last row ends at 8 + 2 = 10
        assert!(!Mat::new(&v, 3, 3, 4).holds()); // 8 + 3 > 10
        assert!(!Mat::new(&v, 2, 5, 4).holds()); // stride < cols
        assert!(Mat::new(&v[..0], 0, 5, 4).holds());
        let m = Mat::new(&v, 3, 2, 4).skip_rows(2);
        assert_eq!((m.rows, m.data.len()), (1, 2));
        assert!(m.holds());
    }

    #[test]
    fn rows_are_where_the_stride_puts_them() {
        let v: Vec<i32> = (0..12).collect();
        let m = Mat::new(&v, 3, 2, 4);
        assert_eq!(m.row(1), &[4, 5]);
        assert_eq!(m.skip_rows(1).row(1), &[8, 9]);
        let mut w = v.clone();
        let mut mm = MatMut::new(&mut w, 3, 2, 4);
        mm.row_mut(2)[1] = -1;
        assert_eq!(mm.reborrow().skip_rows(2).row_mut(0), &[8, -1]);
        assert_eq!(w[9], -1);
    }

    #[test]
    fn clamp_matches_max_then_min() {
        let c = Clamp::new(0.0, 6.0);
        assert_eq!(c.apply(-1.0), 0.0);
        assert_eq!(c.apply(7.5), 6.0);
        assert_eq!(c.apply(2.5), 2.5);
        assert_eq!(Clamp::NONE.apply(f32::MAX), f32::MAX);
        assert_eq!(Clamp::from((1.0, 2.0)), Clamp::new(1.0, 2.0));
    }
}
