//! Monte-Carlo bookkeeping: running mean and variance, the reported estimate, and the rules
//! that decide how many samples to draw. Knows nothing about images or networks.
//!
//! Below it: which draws to evaluate ([`sampler`]), control variates that reduce their variance
//! ([`control_variates`]), the sequential accept/reject gate ([`decision`]) with its
//! group-sequential boundaries ([`boundaries`]), paired estimates of many candidates ([`multi`])
//! and two-stream estimates that spend most draws on a cheap stream ([`multi_fidelity`]).

use crate::error::{Error, Result};

pub mod boundaries;
pub mod control_variates;
pub mod decision;
pub mod multi;
pub mod multi_fidelity;
pub mod sampler;
pub(crate) mod sequential;

/// z for a two-sided 95% normal interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The most samples any sampling policy or gate may ask for. Far beyond what a run can afford
/// (at ~1 ms per sample of the smallest image, 17 minutes), so it refuses only a count that
/// came from a wrapped or unset integer, before anything is sized by it.
pub const MAX_SAMPLES: u32 = 1_000_000;

/// How many E-LPIPS samples to draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// Exactly this many samples.
    Fixed(u32),
    /// Draw until the 95% half-width is at most `abs_error` AND at most `rel_error x mean`,
    /// or until `max_samples`. The rule is checked after each batch, and never before
    /// `min_samples` (the standard error of a handful of samples is itself too noisy to trust).
    Adaptive {
        /// The largest 95% half-width accepted.
        abs_error: f64,
        /// The largest 95% half-width accepted, relative to the mean.
        rel_error: f64,
        /// The most samples drawn.
        max_samples: u32,
        /// The fewest samples before the rule is checked.
        min_samples: u32,
    },
}

impl Sampling {
    /// The authors' adaptive tool: half-width below 0.01 and below 2.5% of the mean, capped at
    /// their default sample count of 200.
    pub const DEFAULT: Sampling = Sampling::Adaptive { abs_error: 0.01, rel_error: 0.025, max_samples: 200, min_samples: 16 };

    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Sampling::Fixed(0) => Err(Error::invalid("`samples` must be at least 1")),
            Sampling::Fixed(n) if n > MAX_SAMPLES => Err(Error::invalid(format!("`samples` {n} is above the limit of {MAX_SAMPLES} samples"))),
            Sampling::Fixed(_) => Ok(()),
            Sampling::Adaptive { abs_error, rel_error, max_samples, min_samples } => {
                let positive = |x: f64| x.is_finite() && x > 0.0;
                if !positive(abs_error) || !positive(rel_error) {
                    return Err(Error::invalid("`abs_error` and `rel_error` must be positive numbers"));
                }
                if max_samples < 2 {
                    return Err(Error::invalid("`max_samples` must be at least 2 to estimate an error"));
                }
                if max_samples > MAX_SAMPLES {
                    return Err(Error::invalid(format!("`max_samples` {max_samples} is above the limit of {MAX_SAMPLES} samples")));
                }
                if min_samples > max_samples {
                    return Err(Error::invalid(format!("`min_samples` {min_samples} exceeds `max_samples` {max_samples}")));
                }
                Ok(())
            }
        }
    }

    /// Upper bound on the number of samples.
    pub fn max_samples(&self) -> u32 {
        match *self {
            Sampling::Fixed(n) => n,
            Sampling::Adaptive { max_samples, .. } => max_samples,
        }
    }

    /// `true` once `n` samples with this mean and 95% half-width (`None`: not yet estimable)
    /// satisfy the policy.
    pub fn is_done(&self, n: u64, mean: f64, ci95: Option<f64>) -> bool {
        match *self {
            Sampling::Fixed(target) => n >= target as u64,
            Sampling::Adaptive { abs_error, rel_error, max_samples, min_samples } => {
                if n >= max_samples as u64 {
                    return true;
                }
                if n < min_samples.max(2) as u64 {
                    return false;
                }
                ci95.is_some_and(|half| half <= abs_error && half <= rel_error * mean)
            }
        }
    }
}

/// Welford's running mean and variance (numerically stable for many samples).
#[derive(Clone, Debug, Default)]
pub struct RunningStats {
    n: u64,
    mean: f64,
    m2: f64,
    /// Sum of cubed deviations (for the skewness the sequential bounds correct for).
    m3: f64,
    /// Sum of fourth powers of the deviations (for the kurtosis that sets how far the
    /// sequential bounds trust the variance).
    m4: f64,
}

impl RunningStats {
    pub fn push(&mut self, x: f64) {
        // Welford, extended to the third moment (Pebay 2008).
        let n1 = self.n as f64;
        self.n += 1;
        let n = self.n as f64;
        let d = x - self.mean;
        let dn = d / n;
        let term = d * dn * n1;
        self.mean += dn;
        self.m4 += term * dn * dn * (n * n - 3.0 * n + 3.0) + 6.0 * dn * dn * self.m2 - 4.0 * dn * self.m3;
        self.m3 += term * dn * (n - 2.0) - 3.0 * dn * self.m2;
        self.m2 += term;
    }
    /// Scales the variance by `k` (and the third cumulant by `k^1.5`), keeping the mean: a
    /// degrees-of-freedom correction for statistics of regression residuals.
    pub fn inflate(&mut self, k: f64) {
        self.m2 *= k;
        self.m3 *= k.powf(1.5);
        self.m4 *= k * k;
    }
    pub fn count(&self) -> u64 {
        self.n
    }
    pub fn mean(&self) -> f64 {
        self.mean
    }
    /// Unbiased sample variance (0 with fewer than two samples).
    pub fn variance(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            self.m2 / (self.n - 1) as f64
        }
    }
    /// Unbiased third cumulant (0 with fewer than three samples).
    pub fn third_cumulant(&self) -> f64 {
        if self.n < 3 {
            0.0
        } else {
            let n = self.n as f64;
            n * self.m3 / ((n - 1.0) * (n - 2.0))
        }
    }
    /// Excess kurtosis `n m4 / m2^2 - 3` (0 with fewer than four samples or no spread).
    pub fn excess_kurtosis(&self) -> f64 {
        if self.n < 4 || self.m2 <= 0.0 {
            0.0
        } else {
            self.n as f64 * self.m4 / (self.m2 * self.m2) - 3.0
        }
    }

    /// Standard error of the mean.
    pub fn std_error(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.variance() / self.n as f64).sqrt()
        }
    }
    /// 95% half-width of the mean (normal approximation).
    pub fn ci95(&self) -> f64 {
        Z95 * self.std_error()
    }
}

/// Where a comparison stands; passed to progress callbacks after every batch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Samples evaluated so far.
    pub samples: u64,
    /// The most samples the sampling policy allows.
    pub max_samples: u64,
    /// The estimate from the samples so far.
    pub estimate: Estimate,
}

/// A distance with its uncertainty. Deterministic metrics report `std_error = 0`, `samples = 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The distance (Monte-Carlo mean for E-LPIPS).
    pub distance: f64,
    /// Standard error of `distance`.
    pub std_error: f64,
    /// 95% confidence half-width: the true value lies in `distance +- ci95` with ~95% probability.
    pub ci95: f64,
    /// Samples averaged.
    pub samples: u64,
    /// For adaptive sampling: whether the error targets were met (vs stopping at the cap).
    pub converged: bool,
}

impl Estimate {
    pub(crate) fn exact(distance: f64) -> Self {
        Estimate { distance, std_error: 0.0, ci95: 0.0, samples: 1, converged: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass() {
        let xs = [0.1, 0.4, 0.35, 0.9, 0.05, 0.6];
        let mut s = RunningStats::default();
        xs.iter().for_each(|&x| s.push(x));
        let mean = xs.iter().sum::<f64>() / 6.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
        assert!((s.mean() - mean).abs() < 1e-15);
        assert!((s.variance() - var).abs() < 1e-15);
        assert!((s.ci95() - Z95 * (var / 6.0).sqrt()).abs() < 1e-15);
        let m3 = xs.iter().map(|x| (x - mean).powi(3)).sum::<f64>();
        assert!((s.third_cumulant() - 6.0 * m3 / 20.0).abs() < 1e-15);
        let (m2, m4) = (var * 5.0, xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>());
        assert!((s.excess_kurtosis() - (6.0 * m4 / (m2 * m2) - 3.0)).abs() < 1e-12);
    }

    #[test]
    fn adaptive_stops_on_both_targets_or_cap() {
        let policy = Sampling::Adaptive { abs_error: 0.01, rel_error: 0.1, max_samples: 50, min_samples: 4 };
        let mut s = RunningStats::default();
        for _ in 0..3 {
            s.push(0.5);
        }
        let done = |s: &RunningStats| policy.is_done(s.count(), s.mean(), Some(s.ci95()));
        assert!(!done(&s), "below the minimum");
        s.push(0.5);
        assert!(done(&s), "zero spread meets both targets");
        assert!(!policy.is_done(4, 0.5, None), "no error estimate yet");
        let mut noisy = RunningStats::default();
        for i in 0..49 {
            noisy.push(if i % 2 == 0 { 0.0 } else { 1.0 });
        }
        assert!(!done(&noisy));
        noisy.push(0.0);
        assert!(done(&noisy), "cap reached");
        assert!(Sampling::Fixed(0).validate().is_err());
        assert!(Sampling::Adaptive { abs_error: -1.0, rel_error: 0.1, max_samples: 5, min_samples: 2 }.validate().is_err());
    }
}
