//! Range methods: from a tensor's calibration statistics to the real range
//! `[lo, hi]` its int8 parameters will cover.

use super::observe::TensorStats;

/// How a tensor's range is chosen from its statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// The exact minimum and maximum seen (what the common offline tools do).
    MinMax,
    /// Clip the given fraction of values off each tail (e.g. 1e-4).
    Percentile(f64),
    /// The clipping that minimises the expected squared quantization error.
    Mse,
    /// The clipping that minimises the KL divergence between the float and the
    /// quantized distribution (entropy calibration).
    Kl,
}

impl Method {
    /// Every method, in the order `auto` tries them.
    pub const ALL: [Method; 4] = [
        Method::MinMax,
        Method::Percentile(1e-4),
        Method::Mse,
        Method::Kl,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile(_) => "percentile",
            Method::Mse => "mse",
            Method::Kl => "kl",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }

    /// `auto` (every method) or one method's name.
    pub fn parse_list(s: &str) -> Result<Vec<Method>, String> {
        match s {
            "auto" => Ok(Method::ALL.to_vec()),
            m => Method::parse(m)
                .map(|m| vec![m])
                .ok_or_else(|| format!("{m:?}: expected auto, minmax, percentile, mse or kl")),
        }
    }

    /// The range of one tensor.
    pub fn range(&self, s: &TensorStats) -> (f32, f32) {
        if s.is_empty() {
            return (0.0, 0.0);
        }
        if s.radius() == 0.0 {
            return (s.min, s.max);
        }
        let (lo, hi) = match self {
            Method::MinMax => (s.min, s.max),
            Method::Percentile(p) => percentile(s, *p),
            Method::Mse => mse(s),
            Method::Kl => kl(s),
        };
        // Never wider than what was seen.
        (lo.max(s.min), hi.min(s.max))
    }
}

/// Cut `p` of the values off each tail.
fn percentile(s: &TensorStats, p: f64) -> (f32, f32) {
    let total: u64 = s.bins.iter().sum();
    let cut = (total as f64 * p).floor() as u64;
    let mut acc = 0u64;
    let mut lo_bin = 0;
    for (i, &n) in s.bins.iter().enumerate() {
        acc += n;
        if acc > cut {
            lo_bin = i;
            break;
        }
    }
    acc = 0;
    let mut hi_bin = s.bins.len() - 1;
    for (i, &n) in s.bins.iter().enumerate().rev() {
        acc += n;
        if acc > cut {
            hi_bin = i;
            break;
        }
    }
    (s.edge(lo_bin), s.edge(hi_bin + 1))
}

/// Expected squared error of quantizing the histogram to 256 levels over
/// `[lo, hi]`: rounding noise inside, clipping error outside.
fn quant_error(s: &TensorStats, lo: f32, hi: f32) -> f64 {
    let lo = lo.min(0.0) as f64;
    let hi = hi.max(0.0) as f64;
    let step = ((hi - lo) / 255.0).max(1e-12);
    let w = s.bin_width() as f64;
    let noise = step * step / 12.0;
    let mut e = 0.0;
    for (i, &n) in s.bins.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let c = s.edge(i) as f64 + 0.5 * w;
        e += n as f64
            * if c < lo {
                (lo - c).powi(2)
            } else if c > hi {
                (c - hi).powi(2)
            } else {
                noise
            };
    }
    e
}

/// Shrink both ends of the seen range by the same factor, keeping the factor
/// with the least expected error (a 1-D grid search).
fn mse(s: &TensorStats) -> (f32, f32) {
    let mut best = (f64::INFINITY, s.min, s.max);
    for k in 0..=200 {
        let a = 0.98f32.powi(k);
        let (lo, hi) = (s.min * a, s.max * a);
        let e = quant_error(s, lo, hi);
        if e < best.0 {
            best = (e, lo, hi);
        }
    }
    (best.1, best.2)
}

/// Entropy calibration, asymmetric: both ends of the seen range shrink by the
/// same factor (a one-sided tensor, `min ≥ 0`, keeps its lower end); for each
/// window the reference distribution is the histogram clipped to it (what lies
/// outside piled on its end bins), the candidate is the window quantized as
/// the int8 model will quantize it and spread back evenly over the non-empty
/// bins of each level; the window with the least KL divergence wins.
///
/// The levels are those of the window's own int8 grid (255 steps, zero exactly
/// on a level, as the zero point makes it), not equal runs of bins: the bin at
/// `[0, w)` holds ReLU's exact zeros, often half the tensor, which the int8
/// model represents exactly, so it is a level of its own in every window.
/// Grouping bins by index instead put that spike alone in its level only for
/// windows under 512 bins and spread it over two bins above, a cost so large
/// that every ReLU6 tensor was clipped near 4 (two thirds of its range) and
/// the detector lost every detection.
fn kl(s: &TensorStats) -> (f32, f32) {
    let top = s.bins.len() - 1;
    let w = s.bin_width();
    let bin_of = |v: f32| -> usize { (((v - s.edge(0)) / w).floor().max(0.0) as usize).min(top) };
    let (b0, b1) = (bin_of(s.min), bin_of(s.max));
    // Fewer bins than levels: the histogram cannot tell the windows apart.
    if b1 - b0 < 256 {
        return (s.min, s.max);
    }
    let zero_bin = bin_of(0.0);
    let mut best = (f64::INFINITY, s.min, s.max);
    let mut p = Vec::with_capacity(s.bins.len());
    let mut q = Vec::with_capacity(s.bins.len());
    for k in 0..=100 {
        let a = 0.97f32.powi(k);
        let (lo, hi) = (s.min * a, s.max * a);
        let (bl, bh) = (bin_of(lo), bin_of(hi));
        let width = bh + 1 - bl;
        if width < 256 {
            break;
        }
        p.clear();
        p.extend(s.bins[bl..=bh].iter().map(|&n| n as f64));
        p[0] += s.bins[..bl].iter().sum::<u64>() as f64;
        p[width - 1] += s.bins[bh + 1..].iter().sum::<u64>() as f64;
        // The window's int8 grid: the level of a bin is that of its centre.
        let (glo, ghi) = (lo.min(0.0), hi.max(0.0));
        let step = (ghi - glo) / 255.0;
        let zp = (-glo / step).round();
        let level = |j: usize| -> i64 {
            if j == zero_bin {
                -1
            } else {
                ((s.edge(j) + 0.5 * w) / step + zp)
                    .round()
                    .clamp(0.0, 255.0) as i64
            }
        };
        q.clear();
        q.resize(width, 0.0);
        let mut x = bl;
        while x <= bh {
            let l = level(x);
            let mut y = x + 1;
            while y <= bh && level(y) == l && l >= 0 {
                y += 1;
            }
            let run = &s.bins[x..y];
            let sum: u64 = run.iter().sum();
            let nz = run.iter().filter(|&&n| n > 0).count();
            for (j, &n) in run.iter().enumerate() {
                if n > 0 {
                    q[x - bl + j] = sum as f64 / nz as f64;
                }
            }
            x = y;
        }
        let ps: f64 = p.iter().sum();
        let qs: f64 = q.iter().sum();
        if ps <= 0.0 || qs <= 0.0 {
            continue;
        }
        let mut d = 0.0;
        for (&pj, &qj) in p.iter().zip(&q) {
            if pj > 0.0 {
                let pj = pj / ps;
                // Smoothing: a reference bin the candidate left empty costs, but finitely.
                let qj = (qj / qs).max(1e-9);
                d += pj * (pj / qj).ln();
            }
        }
        if d < best.0 {
            best = (d, lo, hi);
        }
    }
    (best.1, best.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Laplace-like tensor with a few large outliers.
    fn heavy_tailed() -> TensorStats {
        let mut s = TensorStats::default();
        let mut v = Vec::new();
        for i in 1..20000 {
            let u = i as f32 / 20000.0;
            let x = -(1.0 - u).ln() * 0.3;
            v.push(if i % 2 == 0 { x } else { -x });
        }
        v.extend([40.0, -35.0]);
        s.add(&v);
        s
    }

    #[test]
    fn clipping_methods_clip_outliers_and_minmax_does_not() {
        let s = heavy_tailed();
        assert_eq!(Method::MinMax.range(&s), (-35.0, 40.0));
        // (MSE keeps two far outliers: their squared error outweighs the rounding noise.)
        for m in [Method::Percentile(1e-4), Method::Kl] {
            let (lo, hi) = m.range(&s);
            assert!(hi < 20.0 && lo > -20.0, "{}: {lo} {hi}", m.name());
            assert!(hi > 1.0 && lo < -1.0, "{}: {lo} {hi}", m.name());
        }
    }

    #[test]
    fn mse_prefers_a_clipped_range_by_its_own_measure() {
        // A long tail of moderate values: clipping it pays.
        let mut s = TensorStats::default();
        let v: Vec<f32> = (1..50000)
            .map(|i| -(1.0 - i as f32 / 50000.0).ln() * 0.5)
            .collect();
        s.add(&v);
        let (lo, hi) = Method::Mse.range(&s);
        assert!(hi < s.max, "{lo} {hi} of {}", s.max);
        assert!(quant_error(&s, lo, hi) < quant_error(&s, s.min, s.max));
    }

    /// A ReLU6 output: half its values exactly 0 (the ReLU), a smooth body over
    /// `(0, 6)`, and a few percent saturated at exactly 6.
    fn relu6() -> TensorStats {
        let mut s = TensorStats::default();
        let n = 40000;
        let mut v = vec![0.0f32; n];
        for (i, x) in v.iter_mut().enumerate().skip(n / 2) {
            let u = (i - n / 2) as f32 / (n / 2) as f32;
            *x = (-(1.0 - u).ln() * 2.0).min(6.0);
        }
        s.add(&v);
        s
    }

    #[test]
    fn kl_keeps_the_saturated_top_of_a_relu6_tensor() {
        let s = relu6();
        assert_eq!((s.min, s.max), (0.0, 6.0));
        let sat = s.bins[s.bins.len() * 7 / 8];
        assert!(
            sat as f64 > 0.02 * s.count as f64,
            "{sat} at 6 of {}",
            s.count
        );
        let (lo, hi) = Method::Kl.range(&s);
        assert_eq!(lo, 0.0);
        // Clipping at 4 maps every value over 4 to 4: the saturated values lose a third.
        assert!(hi > 5.5, "kl clipped a ReLU6 tensor to [{lo}, {hi}]");
    }
}
