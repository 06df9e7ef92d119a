//! The crate's one percentile definition: nearest rank.
//!
//! The `q`-quantile (`q` in `0..=1`) of `n` samples is the `k`-th smallest,
//! `k = ceil(q * n)` clamped to `1..=n` (1-based): always one of the samples,
//! never an interpolation. It serves the drift reports (score-delta p95), the
//! daemon's stats (inference and latency p50 / p95) and `edgecam bench`
//! (median and p95). Samples are ordered with `f64::total_cmp`.

/// Nearest-rank percentile of `v` (any order; a sorted copy is made), `None`
/// when `v` is empty.
pub fn percentile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile_of_sorted(&s, q)
}

/// Nearest-rank percentile of samples already sorted ascending (by
/// `f64::total_cmp`), `None` when empty: for several percentiles of one set
/// without sorting it again.
pub fn percentile_of_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let k = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted[k - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[3.0], 0.0), Some(3.0));
        assert_eq!(percentile(&[1.0, 2.0], 1.0), Some(2.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile_of_sorted(&[], 0.5), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile_of_sorted(&v, 0.5), Some(50.0));
        assert_eq!(percentile_of_sorted(&v, 0.95), Some(95.0));
        assert_eq!(percentile_of_sorted(&v, 0.951), Some(96.0));
    }
}
