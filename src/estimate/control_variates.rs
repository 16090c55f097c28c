//! Control variates from the draw itself: functions of a sample's transform whose expectation
//! under the E-LPIPS distribution is known exactly, so that subtracting a multiple of them
//! leaves the expectation of the distance unchanged while removing the part of its variance
//! they explain. No network evaluation is needed to know their means.

use crate::ensemble::{level_probabilities, Draw, Flip, Transform, PERMUTATIONS};
use crate::estimate::RunningStats;

/// Samples per feature the other folds must hold before each stage of [`control_features`]
/// joins the fit: with fewer, the coefficients' noise adds more variance than the controls
/// remove (the excess is about `p / (n - p)` of the residual variance). Chosen on per-draw
/// dumps of four pairs (`cargo bench --bench estimator -- draws`; docs/estimator.md):
/// * the level-1 indicator: 24 (from ~32 samples). Where level 1's distance stands apart
///   (the 512x512 noise pair: 0.019 against ~0.0015 at levels 2-3) it alone takes the variance
///   to a third of iid's; where the levels' distances are close it costs ~5% until the next
///   stage. At 16 (from ~22 samples, the gate's second look) the gate at the truth erred 5.1%
///   on one side, above its 5%;
/// * the levels and gains: 4; the level-1 x gain products: 4 (at 3 the products cost cat / dog
///   half its precision at the sample count where they joined);
/// * the channel order: 6. Its gain is pair-dependent (a third of the residual variance on
///   ex_ref / ex_p0, none on a 256x256 photo crop), so it must not cost precision where it does
///   not help: at 4 per feature the crop lost 10% at 96 samples, at 6 nothing measurable.
const SAMPLES_PER_FEATURE: [usize; 4] = [24, 4, 4, 6];

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

/// The features the control sampler uses, in nested stages (each a prefix of the next; see
/// [`stages`]):
/// 1. the level-1 indicator (more than one level);
/// 2. the indicators of levels 2 to `levels - 1`, and the colour gains, by output channel (two
///    of them; the third is implied by the source-channel gains' sum) and by source channel,
///    and the source gains' squares;
/// 3. the same five gains times the level-1 indicator (only with more than one level): the
///    gains act on a sample's distance in proportion to its level's distance, and level 1 is
///    both the most likely and the furthest level (on the 512x512 noise pair, 0.019 against
///    ~0.0015 at levels 2-3), which the additive stages cannot fit;
/// 4. the channel order (5 indicators of the 6 permutations, each minus 1/6): the colour-gain x
///    channel-order interaction; on ex_ref / ex_p0 it takes the residual variance from 0.54 to
///    0.36 of iid's (800 draws).
///
/// Each has mean exactly 0 under the E-LPIPS distribution: levels, gains and order are drawn
/// independently, so a product of a centred gain and any function of the level has mean 0.
pub fn control_features(t: &Transform, levels: u32) -> Vec<f64> {
    let mut gain = [0.0; 3];
    for k in 0..3 {
        gain[t.permutation[k]] = t.color[k] as f64;
    }
    let prob = level_probabilities(levels);
    // Level 1 first: its indicator is the first stage alone.
    let mut f: Vec<f64> = (1..levels as usize).map(|s| (t.scale == s) as u8 as f64 - prob[s - 1]).collect();
    let gains: Vec<f64> = t.color[..2].iter().map(|&c| c as f64 - 0.6).chain(gain.iter().map(|g| g - 0.6)).collect();
    f.extend(&gains);
    f.extend(gain.iter().map(|g| (g - 0.6).powi(2) - GAIN_VARIANCE));
    if levels > 1 {
        let level1 = (t.scale == 1) as u8 as f64;
        f.extend(gains.iter().map(|g| level1 * g));
    }
    let order = PERMUTATIONS.iter().position(|p| *p == t.permutation);
    f.extend((0..PERMUTATIONS.len() - 1).map(|o| (order == Some(o)) as u8 as f64 - 1.0 / PERMUTATIONS.len() as f64));
    f
}

/// The stages of [`control_features`] for `levels` levels: per stage, how many of the features
/// (a prefix) and how many samples per feature the other folds must hold to fit them. Stages
/// that add nothing (one level: no level indicators, no level-1 products) are left out.
pub fn stages(levels: u32) -> Vec<(usize, usize)> {
    let l = levels.saturating_sub(1) as usize;
    let products = if levels > 1 { 5 } else { 0 };
    let ends = [l.min(1), l + 8, l + 8 + products, l + 8 + products + PERMUTATIONS.len() - 1];
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (&end, &per) in ends.iter().zip(&SAMPLES_PER_FEATURE) {
        if end > out.last().map_or(0, |s| s.0) {
            out.push((end, per));
        }
    }
    out
}

/// Samples per feature before the estimated-mean control of a two-stream estimate
/// ([`crate::estimate::multi_fidelity`]) joins the fit: one coefficient, so the other folds need
/// few; until then each contribution uses the stream's prior coefficient. 2, so that the gate's
/// first look (8 blocks: 6 in the other folds) is fitted: at 8 it used the prior there and the
/// real-network gate gained nothing; coverage and the gate's rate hold at 2 over 4000 seeds
/// (docs/estimator.md, "Two streams").
pub const ESTIMATED_SAMPLES_PER_FEATURE: usize = 2;

/// Regression control variates, cross-fitted.
///
/// Samples fall into [`FOLDS`] folds by index. Sample `i` contributes `y_i - b_k . z_i`, with
/// `z_i` its features (exact mean 0 under the E-LPIPS distribution) and `b_k` the
/// least-squares coefficients of `y` on `z` fitted on the *other* folds, on the largest
/// of the stages for which they hold enough samples per feature; below the first stage, the
/// prior coefficients (0: plain iid). `b_k` is independent of sample `i`
/// and `z_i` has mean 0, so every contribution has expectation exactly `E[y]`: the estimate (their
/// mean) is unbiased for the same expectation as iid sampling, for any number of samples. Its
/// standard error is the usual one of the contributions' mean (the folds' coefficients are
/// nearly the same fit, so the terms are close to independent; the mock-network tests check
/// the coverage). The variance falls by the share of the distance's variance the features
/// explain, less about `p / n` for the fitted coefficients.
///
/// The features are, in this order: the *estimated-mean* controls a caller supplies per sample
/// (a two-stream estimate's cheap-stream deviation, mean 0 by construction; none for the
/// control sampler), then the draw's [`control_features`] when `draw_features` is set, in the
/// [`stages`] order. The estimated-mean controls form the first stage.
#[derive(Clone, Debug)]
pub struct Controls {
    levels: u32,
    /// Leading features supplied by the caller, and their coefficients before any fit.
    prior: Vec<f64>,
    draw_features: bool,
    xs: Vec<Vec<f64>>,
    ys: Vec<f64>,
    /// The most coefficients a fold fitted at the last record.
    fitted: usize,
}

/// Folds of the cross-fit: each fit sees three quarters of the samples.
pub const FOLDS: usize = 4;

impl Controls {
    /// The control sampler's: the draw's features only.
    pub fn new(levels: u32) -> Self {
        Controls { levels, prior: Vec::new(), draw_features: true, xs: Vec::new(), ys: Vec::new(), fitted: 0 }
    }

    /// Caller-supplied estimated-mean controls (one coefficient each, `prior` before their fit),
    /// followed by the draw's features when `draw_features`.
    pub fn with_estimated(levels: u32, prior: Vec<f64>, draw_features: bool) -> Self {
        Controls { levels, prior, draw_features, xs: Vec::new(), ys: Vec::new(), fitted: 0 }
    }

    /// The most coefficients a fold fitted for the contributions so far (0: none, plain iid or
    /// the prior): a regression's residuals have `n - fitted - 1` degrees of freedom.
    pub fn fitted(&self) -> usize {
        self.fitted
    }

    /// The stages: per stage, how many leading features and samples per feature it needs.
    fn stages(&self) -> Vec<(usize, usize)> {
        let e = self.prior.len();
        let mut out = Vec::new();
        if e > 0 {
            out.push((e, ESTIMATED_SAMPLES_PER_FEATURE));
        }
        if self.draw_features {
            out.extend(stages(self.levels).into_iter().map(|(p, per)| (e + p, per)));
        }
        out
    }

    /// Records one round and returns the statistics of all contributions so far.
    pub fn record(&mut self, draws: &[Draw], distances: &[f64]) -> RunningStats {
        self.record_estimated(draws, distances, &[])
    }

    /// [`Controls::record`] with the caller's estimated-mean controls, `estimated[i * e + j]`
    /// the `j`-th of sample `i` (`e` controls per sample; each of mean exactly 0).
    pub fn record_estimated(&mut self, draws: &[Draw], distances: &[f64], estimated: &[f64]) -> RunningStats {
        let e = self.prior.len();
        debug_assert_eq!(estimated.len(), e * draws.len());
        for (i, (d, &y)) in draws.iter().zip(distances).enumerate() {
            let mut x = estimated[i * e..(i + 1) * e].to_vec();
            if self.draw_features {
                x.extend(control_features(&d.transform, self.levels));
            }
            self.xs.push(x);
            self.ys.push(y);
        }
        let stages = self.stages();
        let mut stats = RunningStats::default();
        let mut features_fitted = 0;
        for k in 0..FOLDS {
            let others: Vec<usize> = (0..self.ys.len()).filter(|i| i % FOLDS != k).collect();
            // The largest stage the other folds can fit: the choice depends on counts only,
            // never on distances, so the contributions stay unbiased.
            let p = stages.iter().rev().find(|&&(p, per)| others.len() >= per * p).map(|&(p, _)| p);
            features_fitted = features_fitted.max(p.unwrap_or(0));
            let beta = match p {
                Some(p) => {
                    let xs: Vec<Vec<f64>> = others.iter().map(|&i| self.xs[i][..p].to_vec()).collect();
                    let ys: Vec<f64> = others.iter().map(|&i| self.ys[i]).collect();
                    least_squares(&xs, &ys)[1..].to_vec()
                }
                None => self.prior.clone(),
            };
            for i in (k..self.ys.len()).step_by(FOLDS) {
                let fitted: f64 = beta.iter().zip(&self.xs[i]).map(|(b, z)| b * z).sum();
                stats.push(self.ys[i] - fitted);
            }
        }
        self.fitted = features_fitted;
        if features_fitted > 0 {
            // Residuals of a fit of `features_fitted` coefficients (and an intercept): the usual
            // `n / (n - p - 1)` correction. Without it the intervals covered 90% at a stage's
            // first sample count on the mock, and the gate at the truth erred 5.2-5.9% on one
            // side (iid: 2.2%); docs/log.md, 2026-12-03.
            let n = self.ys.len() as f64;
            stats.inflate(n / (n - features_fitted as f64 - 1.0));
        }
        stats
    }
}

/// Least squares of `y` on `[1, x]`: returns `[intercept, coefficients...]`. Solved on data
/// centred on its means (the same fit), so that a feature that never varies in `x` (a level not
/// yet drawn in the other folds) is a zero column and the tiny ridge sends its coefficient to
/// 0. Uncentred, such a column is a copy of the intercept, and the ridge split the mean between
/// them: a coefficient of about -2 x the mean distance, which made each later sample of that
/// level contribute ~3x the distance (unbiased, but it multiplied the variance up to 14-fold
/// on adv_teddy / adv_reference at 48 samples).
pub fn least_squares(x: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let p = x.first().map_or(0, Vec::len);
    let n = y.len().max(1) as f64;
    let x_mean: Vec<f64> = (0..p).map(|j| x.iter().map(|r| r[j]).sum::<f64>() / n).collect();
    let y_mean = y.iter().sum::<f64>() / n;
    let mut a = vec![vec![0.0; p + 1]; p];
    for (xi, &yi) in x.iter().zip(y) {
        let r: Vec<f64> = xi.iter().zip(&x_mean).map(|(v, m)| v - m).collect();
        for j in 0..p {
            for k in 0..p {
                a[j][k] += r[j] * r[k];
            }
            a[j][p] += r[j] * (yi - y_mean);
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
    let b: Vec<f64> = (0..p).map(|j| if a[j][j] != 0.0 { a[j][p] / a[j][j] } else { 0.0 }).collect();
    let intercept = y_mean - b.iter().zip(&x_mean).map(|(b, m)| b * m).sum::<f64>();
    std::iter::once(intercept).chain(b).collect()
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
    fn a_feature_that_never_varies_gets_no_weight() {
        // Column 1 is constant (a level absent from the fit): the plane must come from column 0.
        let x: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64, -0.085]).collect();
        let y: Vec<f64> = x.iter().map(|r| 0.11 + 0.01 * r[0]).collect();
        let b = least_squares(&x, &y);
        assert!(b[2].abs() < 1e-9 && (b[0] - 0.11).abs() < 1e-9 && (b[1] - 0.01).abs() < 1e-9, "{b:?}");
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
