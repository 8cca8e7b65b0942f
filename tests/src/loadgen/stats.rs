//! Percentiles and medians for benchmark results.

use serde::Serialize;

/// The nearest-rank percentile `p` (0–100) of `values` (need not be sorted). 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// Per-item latencies of one run, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The last item: when the whole run was done.
    pub max_ms: f64,
}

impl Spread {
    pub fn of(ms: &[f64]) -> Spread {
        Spread {
            n: ms.len(),
            p50_ms: percentile(ms, 50.0),
            p99_ms: percentile(ms, 99.0),
            max_ms: percentile(ms, 100.0),
        }
    }
}

/// Repeated runs: the median of each run's figures, and the worst run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Runs {
    pub runs: Vec<Spread>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub worst_max_ms: f64,
}

impl Runs {
    pub fn of(runs: Vec<Spread>) -> Runs {
        let col = |f: fn(&Spread) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        Runs {
            p50_ms: median(&col(|s| s.p50_ms)),
            p99_ms: median(&col(|s| s.p99_ms)),
            max_ms: median(&col(|s| s.max_ms)),
            worst_max_ms: percentile(&col(|s| s.max_ms), 100.0),
            runs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
        assert_eq!(median(&[5.0]), 5.0);
    }

    #[test]
    fn runs_take_the_median_of_each_figure() {
        let r = Runs::of(vec![
            Spread::of(&[1.0, 2.0, 10.0]),
            Spread::of(&[2.0, 3.0, 30.0]),
            Spread::of(&[3.0, 4.0, 20.0]),
        ]);
        assert_eq!(r.max_ms, 20.0);
        assert_eq!(r.worst_max_ms, 30.0);
        assert_eq!(r.p50_ms, 3.0);
    }
}
