//! What calibration learns of each float tensor: its exact minimum and
//! maximum, and a histogram whose bins depend only on the largest magnitude
//! seen, never on the order of the frames.
//!
//! The histogram covers `[-R, R)` in `2 × HALF_BINS` equal bins with `R` a
//! power of two. When a value beyond `R` arrives, `R` doubles and neighbouring
//! bins merge in pairs, which gives exactly the bins a histogram built at the
//! final `R` from the start would have. So the same frames in any order give
//! the same histogram, and early frames weigh as much as late ones (no moving
//! average).

/// Bins on each side of zero.
pub const HALF_BINS: usize = 1024;

/// Range and histogram of one tensor over the calibration frames.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorStats {
    pub min: f32,
    pub max: f32,
    /// `R = 2^exp`; `None` until a nonzero value is seen.
    pub exp: Option<i32>,
    /// `2 × HALF_BINS` counts over `[-R, R)`.
    pub bins: Vec<u64>,
    pub count: u64,
}

impl Default for TensorStats {
    fn default() -> Self {
        TensorStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            exp: None,
            bins: vec![0; 2 * HALF_BINS],
            count: 0,
        }
    }
}

impl TensorStats {
    /// `R`, the half-width of the histogram (0 before any nonzero value).
    pub fn radius(&self) -> f32 {
        self.exp.map_or(0.0, |e| (e as f32).exp2())
    }

    /// Width of one bin.
    pub fn bin_width(&self) -> f32 {
        self.radius() / HALF_BINS as f32
    }

    /// Real value at the lower edge of bin `i`.
    pub fn edge(&self, i: usize) -> f32 {
        -self.radius() + i as f32 * self.bin_width()
    }

    fn grow_to(&mut self, mag: f32) {
        // Smallest power of two strictly above `mag`, so that `mag` lands in a bin.
        let need = mag.log2().floor() as i32 + 1;
        match self.exp {
            None => self.exp = Some(need),
            Some(e) if e >= need => {}
            Some(mut e) => {
                while e < need {
                    let mut merged = vec![0u64; 2 * HALF_BINS];
                    for (i, &n) in self.bins.iter().enumerate() {
                        merged[(HALF_BINS + i) / 2] += n;
                    }
                    self.bins = merged;
                    e += 1;
                }
                self.exp = Some(e);
            }
        }
    }

    /// Add the values of one frame. Non-finite values are ignored.
    pub fn add(&mut self, v: &[f32]) {
        // Branch-free extremes (NaN compares false and is skipped).
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for &x in v {
            lo = if x < lo { x } else { lo };
            hi = if x > hi { x } else { hi };
        }
        if !(lo.is_finite() && hi.is_finite()) {
            // Rare: infinities or NaN in the frame; count the finite values only.
            let finite: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
            if finite.len() < v.len() {
                if !finite.is_empty() {
                    self.add(&finite);
                }
                return;
            }
        }
        if lo > hi {
            return;
        }
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        let mag = lo.abs().max(hi.abs());
        if mag > 0.0 {
            self.grow_to(mag);
        }
        let r = self.radius();
        if r == 0.0 {
            // Only zeros so far: they are counted in the bin at zero once R exists.
            self.bins[HALF_BINS] += v.len() as u64;
        } else {
            // |x| < R, so x·k + HALF_BINS is in [0, 2·HALF_BINS): truncation is floor.
            // Four interleaved partial histograms: runs of equal values (ReLU's zeros)
            // do not wait on one counter.
            let k = HALF_BINS as f32 / r;
            let h = HALF_BINS as f32;
            let top = 2 * HALF_BINS - 1;
            let mut part = vec![0u32; 4 * 2 * HALF_BINS];
            let (p0, rest) = part.split_at_mut(2 * HALF_BINS);
            let (p1, rest) = rest.split_at_mut(2 * HALF_BINS);
            let (p2, p3) = rest.split_at_mut(2 * HALF_BINS);
            let bin = |x: f32| ((x * k + h) as usize).min(top);
            let mut chunks = v.chunks_exact(4);
            for c in &mut chunks {
                p0[bin(c[0])] += 1;
                p1[bin(c[1])] += 1;
                p2[bin(c[2])] += 1;
                p3[bin(c[3])] += 1;
            }
            for &x in chunks.remainder() {
                p0[bin(x)] += 1;
            }
            for (i, b) in self.bins.iter_mut().enumerate() {
                *b += (p0[i] + p1[i] + p2[i] + p3[i]) as u64;
            }
        }
        self.count += v.len() as u64;
    }

    /// Whether no value was ever added.
    pub fn is_empty(&self) -> bool {
        self.min > self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_change_the_histogram() {
        let frames: Vec<Vec<f32>> = (0..20)
            .map(|k| {
                (0..500)
                    .map(|i| ((i * 37 + k * 11) % 101) as f32 * 0.01 * (1 + k) as f32 - 0.3)
                    .collect()
            })
            .collect();
        let mut a = TensorStats::default();
        for f in &frames {
            a.add(f);
        }
        let mut b = TensorStats::default();
        for f in frames.iter().rev() {
            b.add(f);
        }
        assert_eq!(a, b);
        assert_eq!(a.bins.iter().sum::<u64>(), 20 * 500);
        // The last frame holds the maximum: R is the power of two above it.
        assert!(a.radius() > a.max && a.radius() / 2.0 <= a.max);
    }

    #[test]
    fn values_land_in_their_bins() {
        let mut s = TensorStats::default();
        s.add(&[0.0, 0.5, -0.5, 0.999]);
        assert_eq!(s.radius(), 1.0);
        assert_eq!(s.bins[HALF_BINS], 1);
        assert_eq!(s.bins[HALF_BINS + HALF_BINS / 2], 1);
        assert_eq!(s.bins[HALF_BINS / 2], 1);
        s.add(&[3.0]);
        assert_eq!(s.radius(), 4.0);
        assert_eq!(s.bins.iter().sum::<u64>(), 5);
        assert_eq!(s.bins[HALF_BINS + 3 * HALF_BINS / 4], 1);
    }
}
