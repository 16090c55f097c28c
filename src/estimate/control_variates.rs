//! Control variates from the draw itself: functions of a sample's transform whose expectation
//! under the E-LPIPS distribution is known exactly, so that subtracting a multiple of them
//! leaves the expectation of the distance unchanged while removing the part of its variance
//! they explain. No network evaluation is needed to know their means.

use crate::ensemble::{level_probabilities, Draw, Flip, Transform, PERMUTATIONS};
use crate::estimate::RunningStats;

/// The coefficients are fitted once the other folds hold this many samples per feature:
/// with fewer, their noise adds more variance than the controls remove (the excess is about
/// `p / (n - p)` of the residual variance).
const SAMPLES_PER_FEATURE: usize = 4;

/// The channel-order indicators join the fit only once the other folds hold this many samples
/// per feature of the extended set: their gain is pair-dependent (a third of the residual
/// variance on ex_ref / ex_p0, none on a 256x256 photo crop; docs/estimator.md), so they must
/// not cost precision where they do not help. At 4 per feature the 256x256 crop lost 10% at 96
/// samples; at 6 it lost nothing measurable.
const EXTENDED_SAMPLES_PER_FEATURE: usize = 6;

/// Variance of a colour gain drawn uniformly from [0.2, 1].
const GAIN_VARIANCE: f64 = 0.64 / 12.0;

/// Centred functions of the draw with exact mean 0: per source channel, the gain it received
/// and its square (the network sees each source channel scaled by one gain); the scale level;
/// transpose; flips; offsets.
pub fn draw_features(t: &Transform, levels: u32) -> Vec<f64> {
    let mut gain = [0.0; 3];
    for k in 0..3 {
        gain[t.permutation[k]] = t.color[k] as f64;
    }
    let mut f: Vec<f64> = gain.iter().map(|g| g - 0.6).collect();
    f.extend(gain.iter().map(|g| (g - 0.6).powi(2) - GAIN_VARIANCE));
    let prob = level_probabilities(levels);
    for s in 1..levels as usize {
        f.push((t.scale == s) as u8 as f64 - prob[s - 1]);
    }
    f.push(t.transpose as u8 as f64 - 0.5);
    for flip in [Flip::X, Flip::Y, Flip::Both] {
        f.push((t.flip == flip) as u8 as f64 - 0.25);
    }
    f.push(t.offset.0 as f64 - 3.5);
    f.push(t.offset.1 as f64 - 3.5);
    f
}

/// The features the control sampler uses, in two nested stages. The first
/// [`base_feature_count`]: the gains by output channel (two of them; the third is implied by
/// the source-channel gains' sum) and by source channel, the source gains' squares, and the
/// scale level. Then the channel order (5 indicators of the 6 permutations, each minus 1/6):
/// the decomposition (`benches/estimator.rs`, docs/estimator.md) found the colour gains and
/// their interaction with the channel order to carry most of the variance; on ex_ref/ex_p0
/// the order indicators take the residual variance from 0.54 to 0.36 of iid's (800 draws).
pub fn control_features(t: &Transform, levels: u32) -> Vec<f64> {
    let mut gain = [0.0; 3];
    for k in 0..3 {
        gain[t.permutation[k]] = t.color[k] as f64;
    }
    let mut f: Vec<f64> = t.color[..2].iter().map(|&c| c as f64 - 0.6).collect();
    f.extend(gain.iter().map(|g| g - 0.6));
    f.extend(gain.iter().map(|g| (g - 0.6).powi(2) - GAIN_VARIANCE));
    let prob = level_probabilities(levels);
    for s in 1..levels as usize {
        f.push((t.scale == s) as u8 as f64 - prob[s - 1]);
    }
    let order = PERMUTATIONS.iter().position(|p| *p == t.permutation);
    f.extend((0..PERMUTATIONS.len() - 1).map(|o| (order == Some(o)) as u8 as f64 - 1.0 / PERMUTATIONS.len() as f64));
    f
}

/// How many of [`control_features`] form the first stage (gains and level).
pub fn base_feature_count(levels: u32) -> usize {
    8 + levels.saturating_sub(1) as usize
}

/// Regression control variates, cross-fitted.
///
/// Samples fall into [`FOLDS`] folds by index. Sample `i` contributes `y_i - b_k . z_i`, with
/// `z_i` its [`control_features`] (exact mean 0 under the E-LPIPS distribution) and `b_k` the
/// least-squares coefficients of `y` on `z` fitted on the *other* folds, on the largest
/// stage of the features for which they hold enough samples per feature: gains and level from
/// `SAMPLES_PER_FEATURE` per feature, the channel order too from
/// `EXTENDED_SAMPLES_PER_FEATURE` per feature of the larger set (0 below the first stage). `b_k` is independent of sample `i`
/// and `z_i` has mean 0, so every contribution has expectation exactly `E[y]`: the estimate (their
/// mean) is unbiased for the same expectation as iid sampling, for any number of samples. Its
/// standard error is the usual one of the contributions' mean (the folds' coefficients are
/// nearly the same fit, so the terms are close to independent; the mock-network tests check
/// the coverage). The variance falls by the share of the distance's variance the features
/// explain, less about `p / n` for the fitted coefficients.
#[derive(Clone, Debug)]
pub struct Controls {
    levels: u32,
    xs: Vec<Vec<f64>>,
    ys: Vec<f64>,
}

/// Folds of the cross-fit: each fit sees three quarters of the samples.
pub const FOLDS: usize = 4;

impl Controls {
    pub fn new(levels: u32) -> Self {
        Controls { levels, xs: Vec::new(), ys: Vec::new() }
    }

    /// Records one round and returns the statistics of all contributions so far.
    pub fn record(&mut self, draws: &[Draw], distances: &[f64]) -> RunningStats {
        for (d, &y) in draws.iter().zip(distances) {
            self.xs.push(control_features(&d.transform, self.levels));
            self.ys.push(y);
        }
        // (features, samples per feature the other folds must hold to fit them)
        let stages = [
            (base_feature_count(self.levels), SAMPLES_PER_FEATURE),
            (self.xs.first().map_or(0, Vec::len), EXTENDED_SAMPLES_PER_FEATURE),
        ];
        let mut stats = RunningStats::default();
        for k in 0..FOLDS {
            let others: Vec<usize> = (0..self.ys.len()).filter(|i| i % FOLDS != k).collect();
            // The largest stage the other folds can fit: the choice depends on counts only,
            // never on distances, so the contributions stay unbiased.
            let p = stages.iter().rev().find(|&&(p, per)| others.len() >= per * p).map(|&(p, _)| p);
            let beta = p.map(|p| {
                let xs: Vec<Vec<f64>> = others.iter().map(|&i| self.xs[i][..p].to_vec()).collect();
                let ys: Vec<f64> = others.iter().map(|&i| self.ys[i]).collect();
                least_squares(&xs, &ys)[1..].to_vec()
            });
            for i in (k..self.ys.len()).step_by(FOLDS) {
                let fitted = beta.as_ref().map_or(0.0, |b| b.iter().zip(&self.xs[i]).map(|(b, z)| b * z).sum());
                stats.push(self.ys[i] - fitted);
            }
        }
        stats
    }
}

/// Least squares of `y` on `[1, x]`: returns `[intercept, coefficients...]`. A tiny ridge
/// keeps it defined when a feature never varies (e.g. a level not yet drawn).
pub fn least_squares(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let p = x.first().map_or(0, Vec::len) + 1;
    let mut a = vec![vec![0.0; p + 1]; p];
    for (xi, &yi) in x.iter().zip(y) {
        let r: Vec<f64> = std::iter::once(1.0).chain(xi.iter().copied()).collect();
        for j in 0..p {
            for k in 0..p {
                a[j][k] += r[j] * r[k];
            }
            a[j][p] += r[j] * yi;
        }
    }
    for (j, aj) in a.iter_mut().enumerate() {
        aj[j] += 1e-9 * (1.0 + aj[j]);
    }
    // Gauss-Jordan with partial pivoting (p is small).
    for c in 0..p {
        let piv = (c..p).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs())).unwrap_or(c);
        a.swap(c, piv);
        for r in 0..p {
            if r != c && a[c][c] != 0.0 {
                let m = a[r][c] / a[c][c];
                for k in c..=p {
                    a[r][k] -= m * a[c][k];
                }
            }
        }
    }
    (0..p).map(|j| if a[j][j] != 0.0 { a[j][p] / a[j][j] } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::sample_rng;

    #[test]
    fn features_have_mean_zero() {
        let mut rng = sample_rng(4, 0);
        let n = 200_000;
        let features = |t: &Transform| [draw_features(t, 3), control_features(t, 3)].concat();
        let mut sum = vec![0.0; features(&Transform::neutral()).len()];
        for _ in 0..n {
            let t = Transform::sample(&mut rng, 3);
            for (s, f) in sum.iter_mut().zip(features(&t)) {
                *s += f;
            }
        }
        for (j, s) in sum.iter().enumerate() {
            // Each feature's sd is at most 2.3 (offsets); 5 sd of the mean.
            assert!((s / n as f64).abs() < 5.0 * 2.3 / (n as f64).sqrt(), "feature {j}: mean {}", s / n as f64);
        }
    }

    #[test]
    fn least_squares_recovers_a_plane() {
        let x: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64, (i * i % 7) as f64]).collect();
        let y: Vec<f64> = x.iter().map(|r| 1.5 + 2.0 * r[0] - 0.5 * r[1]).collect();
        let b = least_squares(&x, &y);
        for (got, want) in b.iter().zip([1.5, 2.0, -0.5]) {
            assert!((got - want).abs() < 1e-6, "{b:?}");
        }
    }
}
