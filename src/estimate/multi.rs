//! Several candidates against one reference with common random numbers: every sample's
//! transform and dropout are applied to the reference and to every candidate, so the noise the
//! draws add is shared and cancels from differences between candidates.
//!
//! Each distance and each pairwise difference is estimated from its own per-sample values
//! (`d_i` and `d_i - d_j` of the same draw) with the sampler's estimator, so its standard error
//! is the honest one for that combination: the difference's error reflects how much the
//! candidates' distances move together, which is what makes ranking cheap.

use crate::estimate::sampler::{Plan, SamplerKind};
use crate::estimate::sequential::Tally;
use crate::estimate::{Estimate, Sampling};

/// The difference `distance(first) - distance(second)` between two candidates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Difference {
    /// Index of the first candidate.
    pub first: usize,
    /// Index of the second candidate.
    pub second: usize,
    /// The estimated difference of their distances.
    pub difference: f64,
    /// Its standard error (paired: common random numbers cancel).
    pub std_error: f64,
    /// 95% half-width of `difference`.
    pub ci95: f64,
}

impl Difference {
    /// Whether the 95% interval excludes zero (the two are told apart).
    pub fn resolved(&self) -> bool {
        self.difference.abs() > self.ci95
    }
}

/// Every candidate's distance and every pairwise difference, from the same draws.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiEstimate {
    /// One estimate per candidate, in the order given.
    pub distances: Vec<Estimate>,
    /// `first < second`, in lexicographic order: (0,1), (0,2), ..., (1,2), ...
    pub differences: Vec<Difference>,
    /// Samples drawn (each applied to every candidate).
    pub samples: u64,
    /// Whether the sampling policy's targets were met for every distance.
    pub converged: bool,
}

impl MultiEstimate {
    /// The difference between candidates `i` and `j` (`distance(i) - distance(j)`).
    pub fn difference(&self, i: usize, j: usize) -> Option<Difference> {
        let (a, b) = (i.min(j), i.max(j));
        let d = self.differences.iter().find(|d| d.first == a && d.second == b).copied()?;
        Some(if i <= j { d } else { Difference { first: i, second: j, difference: -d.difference, ..d } })
    }

    /// Candidate indices from the closest to the reference to the farthest.
    pub fn ranking(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.distances.len()).collect();
        order.sort_by(|&a, &b| self.distances[a].distance.total_cmp(&self.distances[b].distance));
        order
    }

    /// Whether each neighbour pair of [`MultiEstimate::ranking`] is told apart at 95%
    /// (`len - 1` entries: entry `k` is about ranks `k` and `k + 1`).
    pub fn ranking_resolved(&self) -> Vec<bool> {
        let order = self.ranking();
        order.windows(2).map(|w| self.difference(w[0], w[1]).is_some_and(|d| d.resolved())).collect()
    }
}

/// What a multi-candidate run needs of one candidate's (or one difference's) statistics: a
/// [`Tally`] whose values can be averaged over candidates (to drive the draws) and subtracted
/// (for a difference of two candidates).
pub(crate) trait PairedValues: Tally + Sized {
    /// The values of the candidates' mean.
    fn mean(values: &[Self::Values]) -> Self::Values;
    /// The values of `a - b`.
    fn difference(a: &Self::Values, b: &Self::Values) -> Self::Values;
    /// The estimate so far.
    fn estimate(&self, converged: bool) -> Estimate;
}

impl PairedValues for Plan {
    fn mean(values: &[Vec<f64>]) -> Vec<f64> {
        (0..values[0].len()).map(|k| values.iter().map(|v| v[k]).sum::<f64>() / values.len() as f64).collect()
    }

    fn difference(a: &Vec<f64>, b: &Vec<f64>) -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a - b).collect()
    }

    fn estimate(&self, converged: bool) -> Estimate {
        Plan::estimate(self, converged)
    }
}

/// The bookkeeping of a multi-candidate run: one tally chooses the draws, and one shadow tally
/// per distance and per difference records that combination's values for the same draws.
pub(crate) struct Paired<T> {
    pub driver: T,
    distances: Vec<T>,
    differences: Vec<(usize, usize, T)>,
}

/// The multi-candidate run of plain draws (one value per draw and candidate).
pub(crate) type PairedPlans = Paired<Plan>;

impl PairedPlans {
    pub fn new(kind: SamplerKind, seed: u64, levels: u32, h: usize, w: usize, candidates: usize) -> Self {
        Paired::from_fn(candidates, || Plan::new(kind, seed, levels, h, w))
    }
}

impl<T: PairedValues> Paired<T> {
    /// A run of `candidates` whose tallies are each made by `tally`.
    pub fn from_fn(candidates: usize, tally: impl Fn() -> T) -> Self {
        let differences = (0..candidates).flat_map(|i| (i + 1..candidates).map(move |j| (i, j))).map(|(i, j)| (i, j, tally())).collect();
        Paired { driver: tally(), distances: (0..candidates).map(|_| tally()).collect(), differences }
    }

    /// Records `values[c]`, candidate `c`'s values for `round`.
    pub fn record(&mut self, round: &T::Round, values: &[T::Values]) {
        // The driver allocates (stratified sampler) by the candidates' mean distance.
        self.driver.record(round, &T::mean(values));
        for (tally, v) in self.distances.iter_mut().zip(values) {
            tally.record(round, v);
        }
        for (i, j, tally) in &mut self.differences {
            tally.record(round, &T::difference(&values[*i], &values[*j]));
        }
    }

    /// `true` once `sampling` is met for every candidate's distance.
    pub fn is_done(&self, sampling: Sampling) -> bool {
        self.distances.iter().all(|t| t.is_done(sampling))
    }

    pub fn estimate(&self, converged: bool) -> MultiEstimate {
        let differences = self
            .differences
            .iter()
            .map(|(i, j, t)| {
                let e = t.estimate(converged);
                Difference { first: *i, second: *j, difference: e.distance, std_error: e.std_error, ci95: e.ci95 }
            })
            .collect();
        MultiEstimate {
            distances: self.distances.iter().map(|t| t.estimate(converged)).collect(),
            differences,
            samples: self.driver.count(),
            converged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::Draw;
    use crate::ensemble::sample_rng;
    use crate::estimate::sampler::mock::{mock_distance, mock_truth, Noise};
    use rand::Rng;

    /// Candidate `c`'s mock distance: the shared draw's distance scaled, plus noise of its own.
    fn run(kind: SamplerKind, seed: u64, n: u64, scales: &[f64]) -> MultiEstimate {
        let mut plans = PairedPlans::new(kind, seed, 3, 256, 256, scales.len());
        let mut own: Vec<_> = (0..scales.len() as u64).map(|c| sample_rng(seed + 1000, c)).collect();
        while plans.driver.count() < n {
            let draws = plans.driver.next_round(8);
            let values: Vec<Vec<f64>> = scales
                .iter()
                .zip(&mut own)
                .map(|(s, rng)| {
                    let mut value = |d: &Draw| s * mock_distance(&d.transform, &mut d.rng.clone(), Noise::Uniform) + 0.002 * (rng.random::<f64>() - 0.5);
                    draws.iter().map(|d| value(d)).collect()
                })
                .collect();
            plans.record(&draws, &values);
        }
        plans.estimate(true)
    }

    #[test]
    fn differences_are_unbiased_cover_and_beat_independent_errors() {
        let scales = [1.0, 1.02, 1.1];
        let truth = mock_truth(3);
        for kind in [SamplerKind::Iid, SamplerKind::Stratified] {
            let runs = 300;
            let (mut covered, mut sum, mut se_pair, mut se_indep) = (0, 0.0, 0.0, 0.0);
            for seed in 0..runs {
                let m = run(kind, seed, 48, &scales);
                let d = m.difference(1, 0).unwrap();
                let want = (scales[1] - scales[0]) * truth;
                assert!((d.difference - (m.distances[1].distance - m.distances[0].distance)).abs() < 1e-12);
                covered += ((d.difference - want).abs() <= d.ci95) as u32;
                sum += d.difference - want;
                se_pair += d.std_error;
                se_indep += m.distances[0].std_error.hypot(m.distances[1].std_error);
            }
            let coverage = covered as f64 / runs as f64;
            assert!(coverage >= 0.91, "{kind:?}: coverage {coverage}");
            assert!((sum / runs as f64).abs() < 4.0 * se_pair / runs as f64 / (runs as f64).sqrt(), "{kind:?}: bias");
            // Candidates 0 and 1 move together, so the paired error is far below the independent one.
            assert!(se_pair < 0.2 * se_indep, "{kind:?}: paired {se_pair} vs independent {se_indep}");
        }
    }

    #[test]
    fn ranking_orders_by_distance_and_reports_resolution() {
        let m = run(SamplerKind::Iid, 1, 64, &[1.1, 1.0, 1.3]);
        assert_eq!(m.ranking(), vec![1, 0, 2]);
        assert_eq!(m.ranking_resolved(), vec![true, true]);
        let tie = run(SamplerKind::Iid, 1, 64, &[1.0, 1.0]);
        assert_eq!(tie.ranking_resolved(), vec![false]);
        assert_eq!(m.differences.len(), 3);
        let d = m.difference(2, 0).unwrap();
        assert_eq!((d.first, d.second), (2, 0));
        assert!(d.difference > 0.0);
    }
}
