//! Figures of samples, for benchmarks and reports.

/// The `p` quantile (0 to 1) of samples sorted ascending, nearest rank;
/// 0 when there are none.
pub fn percentile<T: Copy + Into<f64>>(sorted: &[T], p: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let idx = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    sorted[idx.min(last)].into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_samples() {
        let s: Vec<f64> = (1..=101).map(f64::from).collect();
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert_eq!(percentile(&s, 0.5), 51.0);
        assert_eq!(percentile(&s, 0.99), 100.0);
        assert_eq!(percentile(&s, 1.0), 101.0);
        assert_eq!(percentile(&s, 7.0), 101.0);
        assert_eq!(percentile::<f64>(&[], 0.5), 0.0);
        assert_eq!(percentile(&[3u32], 0.99), 3.0);
        assert_eq!(percentile(&[10u32, 20, 30, 40], 0.5), 30.0);
    }
}
