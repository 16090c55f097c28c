//! Sequential decisions: "is the E-LPIPS distance of this pair at most T?", answered with as few
//! samples as the data allow, at a documented error rate.
//!
//! Why not "stop once the 95% interval excludes T": checking a fixed-level interval after every
//! batch gives the noise a fresh chance to cross T at each look, so the chance of a wrong answer
//! grows with the number of looks (the test `naive_repeated_looks_break_the_error_rate` shows it
//! more than doubling). Here the looks are fixed in advance, a geometric schedule from
//! `min_samples` growing by [`LOOK_GROWTH`] up to `max_samples` (K looks), and each look tests at
//! its own one-sided nominal level `alpha_k`, computed for that schedule by recursive numerical
//! integration ([`crate::estimate::boundaries`]) so that under the normal approximation the
//! chance that *any* look crosses on the wrong side is exactly the error rate:
//!
//! * if the true distance is at least T, the chance of answering [`Side::Below`] is at most
//!   `error_rate`;
//! * if it is at most T, the chance of answering [`Side::Above`] is at most `error_rate`.
//!
//! Each look's bounds are Student-t quantiles `q = t(1 - alpha_k, dof)` on the sampler's standard
//! error, corrected for the skewness of the estimate with Hall's (1992) monotone cubic
//! transformation of the studentized mean, whose first term is Johnson's (1978) Edgeworth
//! correction `c = g (2q^2 + 1) / 6` (`g` the estimator's skewness, `gamma / sqrt(n)` for iid
//! draws) and which, unlike that term alone, never turns a bound back past the mean when `q` is
//! large (a small early level) or the skewness estimate is wild. A skewed distance distribution
//! (a few coarse-level samples far from the rest) otherwise breaks the rate at small looks.
//!
//! Distances are at least 0, and the draw's scale level is known: a level that no sample has come
//! from yet can only add to the mean, so `Above` needs the lower bound times the probability of
//! the levels seen so far to exceed T. Without that, a first look at 8 samples that all came from
//! level 1 (5.8% of the time on the mock network) answered a wrong `Above` 7.8% of the time.
//! The mock-network tests below check the rates with symmetric, skewed and heavy-tailed
//! per-sample noise, first looks of 4 to 16 samples, and every sampler (heavy tails: iid only;
//! stratified and control draws break the rate there, before issue 34 as now).
//!
//! Knows nothing of images or networks: [`Metric::decide`](crate::Metric::decide) supplies the
//! evaluation of draws.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::error::{Error, Result};
use crate::estimate::boundaries::nominal_levels;
use crate::estimate::Estimate;
use crate::estimate::Progress;
use crate::estimate::sampler::Plan;
use crate::estimate::sequential::{run_rounds, Tally};

/// Each look comes after this many times the previous look's samples.
pub const LOOK_GROWTH: f64 = 1.5;

/// The question "is distance(reference, candidate) at most `threshold`?" and how sure to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gate {
    /// The distance T to compare with.
    pub threshold: f64,
    /// Largest allowed chance of a wrong verdict on either side (default 0.05).
    pub error_rate: f64,
    /// Stop undecided after this many samples (default 200).
    pub max_samples: u32,
    /// First look after this many samples (default [`Gate::DEFAULT_MIN_SAMPLES`]; raised to
    /// what the sampler needs).
    pub min_samples: u32,
}

impl Gate {
    /// The default first look: 8 samples. Looks below 16 samples spend a share of the error
    /// rate in proportion to their samples ([`crate::estimate::boundaries`]), so a clear case
    /// stops after a handful of samples while a hard one keeps nearly all of the rate for later.
    /// Not fewer: the first look must rarely miss the most likely scale level altogether (with
    /// 8 levels, level 1 is missing from 4 draws 1.4% of the time, from 8 draws 0.02%), since
    /// a bound cannot know what a level it has not seen adds to the mean.
    pub const DEFAULT_MIN_SAMPLES: u32 = 8;

    /// A gate at `threshold` with the defaults: 5% error rate, first look at 8 samples, at
    /// most 200.
    pub fn new(threshold: f64) -> Self {
        Gate { threshold, error_rate: 0.05, max_samples: 200, min_samples: Self::DEFAULT_MIN_SAMPLES }
    }

    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(Error::invalid(format!("the threshold must be a finite distance >= 0, not {}", self.threshold)));
        }
        if !(self.error_rate > 0.0 && self.error_rate < 0.5) {
            return Err(Error::invalid(format!("the error rate must be between 0 and 0.5 (exclusive), not {}", self.error_rate)));
        }
        if self.min_samples < 2 {
            return Err(Error::invalid("a gate needs at least 2 samples before its first look"));
        }
        if self.max_samples > crate::estimate::MAX_SAMPLES {
            return Err(Error::invalid(format!("the gate's max samples ({}) is above the limit of {} samples", self.max_samples, crate::estimate::MAX_SAMPLES)));
        }
        if self.max_samples < self.min_samples {
            return Err(Error::invalid(format!(
                "the gate's max samples ({}) is below its min samples ({})",
                self.max_samples, self.min_samples
            )));
        }
        Ok(())
    }

    /// Sample counts at which the gate looks: `first`, then x[`LOOK_GROWTH`], ending at `max_samples`.
    pub fn looks(&self, first: u64) -> Vec<u64> {
        let max = self.max_samples as u64;
        let mut looks = vec![first.min(max)];
        while *looks.last().unwrap() < max {
            let next = (*looks.last().unwrap() as f64 * LOOK_GROWTH).ceil() as u64;
            looks.push(next.min(max));
        }
        looks
    }
}

/// The answer of a gate: which side of its threshold the distance lies on, at its error rate
/// (the C ABI's `ElpipsSide`). A decision's verdict and a tuning probe's side are one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The distance is at most the threshold (at the gate's error rate): a pass.
    Below,
    /// The distance is above the threshold (at the gate's error rate): a fail.
    Above,
    /// `max_samples` were drawn without a verdict at the error rate; see
    /// [`Decision::estimate_below`] for the side the point estimate is on.
    Undecided,
}

impl Side {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Side::Below => "below",
            Side::Above => "above",
            Side::Undecided => "undecided",
        }
    }
}

/// A gate's verdict with the evidence behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// Below, above or undecided.
    pub verdict: Side,
    /// The estimate when the gate stopped (its `ci95` is the usual fixed-n 95% half-width).
    pub estimate: Estimate,
    /// Whether the point estimate is at most the threshold (the verdict's side when decided; the
    /// better guess when undecided).
    pub estimate_below: bool,
    /// The sequential bounds at the last look (each one-sided at that look's nominal level, see
    /// [`crate::estimate::boundaries`]; `lower` counts only the scale levels seen so far):
    /// `Below` means `upper <= threshold`, `Above` means `lower > threshold`.
    pub lower: f64,
    /// See `lower`.
    pub upper: f64,
    /// Looks taken.
    pub looks: u32,
    /// Looks planned.
    pub looks_planned: u32,
    /// The gate's threshold.
    pub threshold: f64,
    /// The gate's error rate.
    pub error_rate: f64,
}

impl Decision {
    /// The decision of a deterministic metric: exact, no sampling.
    pub(crate) fn exact(distance: f64, gate: &Gate) -> Self {
        let below = distance <= gate.threshold;
        Decision {
            verdict: if below { Side::Below } else { Side::Above },
            estimate: Estimate::exact(distance),
            estimate_below: below,
            lower: distance,
            upper: distance,
            looks: 1,
            looks_planned: 1,
            threshold: gate.threshold,
            error_rate: gate.error_rate,
        }
    }
}

/// One-sided quantile `t(1 - alpha, dof)` (normal when `dof` is huge).
fn t_quantile(alpha: f64, dof: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, dof.max(1.0)) {
        Ok(t) if dof < 1e6 => t.inverse_cdf(1.0 - alpha),
        _ => statrs::distribution::Normal::standard().inverse_cdf(1.0 - alpha),
    }
}

/// Inverse of Hall's (1992) transformation of the studentized mean,
/// `f(u) = u + a u^2 + a^2 u^3 / 3 + a / 2` with `a = g / 3` (`g` the estimator's skewness):
/// `f(U)` is standard normal to `o(n^-1/2)` and increasing in `u`, so `U <= f^-1(z)` with
/// probability `Phi(z)`. To first order `f^-1(z) = z - g (2 z^2 + 1) / 6`, the Edgeworth term.
fn hall_inverse(z: f64, g: f64) -> f64 {
    let a = g / 3.0;
    if a.abs() < 1e-9 {
        return z - a * (z * z + 0.5);
    }
    ((1.0 + 3.0 * a * (z - a / 2.0)).cbrt() - 1.0) / a
}

/// The one-sided bounds `(lower, upper)` on the mean at quantile `q`, corrected for the
/// estimator's skewness `g`: positive skew (a long right tail) moves both up.
fn skew_corrected_bounds(mean: f64, se: f64, g: f64, q: f64) -> (f64, f64) {
    if !se.is_finite() {
        return (f64::NEG_INFINITY, f64::INFINITY);
    }
    (mean - hall_inverse(q, g) * se, mean - hall_inverse(-q, g) * se)
}

/// What a gate decides on: a sequential tally whose statistics are a [`Plan`]'s (plain draws, or
/// a two-stream estimate's contributions).
pub(crate) trait Gated: Tally {
    /// The statistics so far.
    fn plan(&self) -> &Plan;
}

impl Gated for Plan {
    fn plan(&self) -> &Plan {
        self
    }
}

/// Runs `tally` look by look, evaluating its rounds with `evaluate` (at most `per_round`
/// samples each), until a look's bounds exclude the threshold or `max_samples` are spent.
pub(crate) fn decide_plan<T: Gated>(
    tally: &mut T,
    gate: &Gate,
    per_round: u64,
    evaluate: &mut dyn FnMut(&mut T::Round) -> Result<T::Values>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Decision> {
    gate.validate()?;
    let plan = tally.plan();
    let first = (gate.min_samples as u64).max(plan.min_estimable());
    if (gate.max_samples as u64) < first {
        return Err(Error::invalid(format!(
            "{} sampling needs at least {first} samples before it can estimate its error; raise the gate's max samples",
            plan.kind().name()
        )));
    }
    let looks = gate.looks(first);
    let levels = nominal_levels(&looks, gate.error_rate);
    let max = gate.max_samples as u64;
    let mut last = None;
    for (k, &target) in looks.iter().enumerate() {
        run_rounds(tally, target, per_round, max, None, evaluate, progress)?;
        let plan = tally.plan();
        let (mean, se) = plan.mean_and_std_error();
        let se = se.unwrap_or(f64::INFINITY);
        let q = t_quantile(levels[k], plan.degrees_of_freedom());
        let (lower, upper) = skew_corrected_bounds(mean, se, plan.estimator_skewness(), q);
        // Levels not drawn yet hold a share of the mean at least 0: leave it out of the lower
        // bound (only ever lowers a bound that could answer Above, since T >= 0).
        let lower = lower * (1.0 - plan.unseen_probability());
        let verdict = if upper <= gate.threshold {
            Side::Below
        } else if lower > gate.threshold {
            Side::Above
        } else {
            Side::Undecided
        };
        let decided = verdict != Side::Undecided;
        let estimate = plan.estimate(decided);
        last = Some(Decision {
            verdict,
            estimate,
            estimate_below: mean <= gate.threshold,
            lower,
            upper,
            looks: k as u32 + 1,
            looks_planned: looks.len() as u32,
            threshold: gate.threshold,
            error_rate: gate.error_rate,
        });
        if decided {
            break;
        }
    }
    Ok(last.expect("a gate has at least one look"))
}

/// [`decide_plan`] for callers outside the crate that evaluate draws themselves: the estimator
/// bench replays one pool of draws of the real network under several rules.
#[doc(hidden)]
pub fn decide_draws(plan: &mut Plan, gate: &Gate, evaluate: &mut dyn FnMut(&mut [crate::ensemble::Draw]) -> Result<Vec<f64>>) -> Result<Decision> {
    decide_plan(plan, gate, 8, evaluate, &mut |_| {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::Draw;
    use crate::estimate::sampler::mock::{mock_distance, mock_truth, Noise};
    use crate::estimate::sampler::SamplerKind;
    use crate::estimate::RunningStats;

    const LEVELS: u32 = 4;

    fn decide(kind: SamplerKind, seed: u64, gate: &Gate, noise: Noise) -> Decision {
        let mut plan = Plan::new(kind, seed, LEVELS, 256, 256);
        let mut eval = |draws: &mut [Draw]| Ok(draws.iter_mut().map(|d| mock_distance(&d.transform, &mut d.rng, noise)).collect());
        decide_plan(&mut plan, gate, 8, &mut eval, &mut |_| {}).unwrap()
    }

    /// Wrong-verdict counts (Below, Above) and the mean samples over `runs` seeds with the
    /// threshold at the truth, where both verdicts are wrong.
    fn wrong_at_truth(kind: SamplerKind, runs: u64, noise: Noise, min_samples: u32) -> (u32, u32, f64) {
        let gate = Gate { threshold: mock_truth(LEVELS), min_samples, ..Gate::new(0.0) };
        let (mut below, mut above, mut samples) = (0, 0, 0);
        for seed in 0..runs {
            let d = decide(kind, 1000 + seed, &gate, noise);
            below += (d.verdict == Side::Below) as u32;
            above += (d.verdict == Side::Above) as u32;
            samples += d.estimate.samples;
        }
        (below, above, samples as f64 / runs as f64)
    }

    const SAMPLERS: [SamplerKind; 3] = [SamplerKind::Iid, SamplerKind::Stratified, SamplerKind::Control];
    const NOISES: [Noise; 3] = [Noise::Uniform, Noise::Skewed, Noise::HeavyTailed];

    /// Asserts each side's wrong-verdict rate at the truth is within the gate's 5%.
    fn assert_rates_hold(runs: u64, first_looks: &[u32]) {
        for &min_samples in first_looks {
            for kind in SAMPLERS {
                for noise in NOISES {
                    if kind != SamplerKind::Iid && matches!(noise, Noise::HeavyTailed) {
                        // Known to break the rate under Bonferroni and exact boundaries alike
                        // (2000 seeds, wrong Below / Above before issue 34 -> now): stratified
                        // 13.9% / 13.5% -> 14.8% / 1.5% (Neyman allocation starves the strata
                        // whose pilot missed the lognormal tail), control 5.85% / 6.4% -> 7.25% /
                        // 1.7% (the cross-fit's residuals understate their spread while the
                        // tail is unsampled). So `check` and `tune` keep iid draws;
                        // docs/estimator.md says what would close it.
                        continue;
                    }
                    let (below, above, mean_n) = wrong_at_truth(kind, runs, noise, min_samples);
                    let (b, a) = (below as f64 / runs as f64, above as f64 / runs as f64);
                    eprintln!("first look {min_samples}, {kind:?} {noise:?}: wrong Below {b:.4}, wrong Above {a:.4}, mean {mean_n:.0} samples");
                    assert!(
                        b <= 0.05 && a <= 0.05,
                        "first look {min_samples}, {kind:?} {noise:?}: wrong Below {b}, wrong Above {a} (mean {mean_n} samples)"
                    );
                }
            }
        }
    }

    #[test]
    fn looks_grow_geometrically_to_the_cap() {
        assert_eq!(Gate::new(0.1).looks(16), vec![16, 24, 36, 54, 81, 122, 183, 200]);
        assert_eq!(Gate::new(0.1).looks(4), vec![4, 6, 9, 14, 21, 32, 48, 72, 108, 162, 200]);
        assert_eq!(Gate { max_samples: 16, ..Gate::new(0.1) }.looks(16), vec![16]);
        assert_eq!(Gate { min_samples: 2, max_samples: 5, ..Gate::new(0.1) }.looks(2), vec![2, 3, 5]);
    }

    #[test]
    fn wrong_verdicts_stay_within_the_error_rate_under_optional_stopping() {
        // The threshold at the exact expectation is the hardest case: any verdict is wrong, and
        // each side must stay below the stated 5%. Every sampler, the control sampler included
        // (plain iid until its fold rule fits, then regression residuals), with symmetric and
        // skewed noise, and iid draws with heavy-tailed noise too (see `assert_rates_hold`), at
        // the default first look (8 samples). The mock's
        // distances are left-skewed (70% of draws at level 1, far above the rest): without the
        // unseen-levels factor the small first looks answer a wrong Above far too often, and
        // with Johnson's Edgeworth term in place of Hall's transformation the small early
        // levels (large q) turn the upper bound back below the mean (docs/estimator.md).
        // `make test-long` runs 4000 seeds and first looks of 4, 8 and 16.
        assert_rates_hold(2000, &[Gate::DEFAULT_MIN_SAMPLES]);
    }

    #[test]
    #[ignore = "slow: 4000 seeds per sampler, noise and first look (make test-long)"]
    fn wrong_verdicts_stay_within_the_error_rate_over_4000_seeds() {
        assert_rates_hold(4000, &[4, 8, 16]);
    }

    /// The gate before issue 34, the reference its gains are measured against: iid draws, first
    /// look at 16, the rate spent equally over the looks (Bonferroni), Johnson's Edgeworth term.
    fn bonferroni_reference(seed: u64, threshold: f64, noise: Noise) -> (Side, u64) {
        let gate = Gate { threshold, min_samples: 16, ..Gate::new(0.0) };
        let mut plan = Plan::new(SamplerKind::Iid, seed, LEVELS, 256, 256);
        let looks = gate.looks(16);
        let alpha = gate.error_rate / looks.len() as f64;
        for &target in &looks {
            while plan.count() < target {
                let mut draws = plan.next_round(8.min(target - plan.count()) as usize);
                let v: Vec<f64> = draws.iter_mut().map(|d| mock_distance(&d.transform, &mut d.rng, noise)).collect();
                plan.record(&draws, &v);
            }
            let (mean, se) = plan.mean_and_std_error();
            let se = se.unwrap_or(f64::INFINITY);
            let q = t_quantile(alpha, plan.count() as f64 - 1.0);
            let c = plan.estimator_skewness() * (2.0 * q * q + 1.0) / 6.0;
            if mean + (q + c) * se <= threshold {
                return (Side::Below, target);
            }
            if mean - (q - c) * se > threshold {
                return (Side::Above, target);
            }
        }
        (Side::Undecided, gate.max_samples as u64)
    }

    /// Mean samples to a verdict over `runs` seeds at `factor` times the truth: the reference,
    /// and the shipped gate with `kind` draws; and the share of right verdicts of each.
    fn samples_to_decide(kind: SamplerKind, factor: f64, runs: u64, noise: Noise) -> ((f64, f64), (f64, f64)) {
        let threshold = factor * mock_truth(LEVELS);
        let right = if factor > 1.0 { Side::Below } else { Side::Above };
        let (mut old, mut new, mut old_right, mut new_right) = (0, 0, 0, 0);
        for seed in 0..runs {
            let (v, n) = bonferroni_reference(3000 + seed, threshold, noise);
            old += n;
            old_right += (v == right) as u32;
            let d = decide(kind, 3000 + seed, &Gate { threshold, ..Gate::new(0.0) }, noise);
            new += d.estimate.samples;
            new_right += (d.verdict == right) as u32;
        }
        let r = runs as f64;
        ((old as f64 / r, old_right as f64 / r), (new as f64 / r, new_right as f64 / r))
    }

    #[test]
    fn borderline_gates_need_fewer_samples_than_before() {
        // T = 1.1x the truth (goal: at least 15% fewer samples than the gate before issue 34,
        // which decided with iid draws, Bonferroni and a first look at 16), and clear cases stop
        // at the first look of 8. The control sampler (the library's default) and the
        // exact boundaries both contribute; iid with the new boundaries alone is shown too.
        for (kind, factor) in [(SamplerKind::Control, 1.1), (SamplerKind::Control, 0.9), (SamplerKind::Iid, 1.1)] {
            let ((old, old_right), (new, new_right)) = samples_to_decide(kind, factor, 400, Noise::Skewed);
            eprintln!("T = {factor}x, {kind:?}: {new:.1} samples ({:.0}% right) against {old:.1} before ({:.0}% right)", 100.0 * new_right, 100.0 * old_right);
            if kind == SamplerKind::Control {
                assert!(new <= 0.85 * old, "T = {factor}x: {new} samples against {old} before");
                assert!(new_right >= old_right, "T = {factor}x: right {new_right} against {old_right} before");
            }
        }
        let ((old, _), (new, right)) = samples_to_decide(SamplerKind::Control, 2.0, 200, Noise::Skewed);
        eprintln!("T = 2x: {new:.1} samples against {old:.1} before");
        // Nearly every seed stops at the first look (8 samples; 8.1 on average over these 200:
        // a few skewed draws need the second look at 12).
        assert!(new <= 0.6 * old && right == 1.0, "T = 2x: {new} samples against {old} before, {right} right");
    }

    #[test]
    #[ignore = "slow: a table for docs/estimator.md (make test-long)"]
    fn samples_to_decide_table() {
        for noise in [Noise::Uniform, Noise::Skewed, Noise::HeavyTailed] {
            for kind in SAMPLERS {
                for factor in [2.0, 1.1, 0.9, 0.5] {
                    let ((old, old_right), (new, new_right)) = samples_to_decide(kind, factor, 2000, noise);
                    eprintln!("{noise:?} {kind:?} T = {factor}x: before {old:.1} ({:.1}% right), now {new:.1} ({:.1}% right)", 100.0 * old_right, 100.0 * new_right);
                }
            }
        }
    }

    #[test]
    fn a_suite_error_rate_divided_over_its_rows_holds_for_the_whole_suite() {
        // `elpips check --suite-error-rate A` decides each of a manifest's R rows at A / R
        // (Bonferroni). The hardest suite: every row's threshold at its truth, so any decided
        // verdict is wrong; the chance that some row of the suite is wrong must stay within A.
        // Each row at A instead breaks it, which shows this test can fail. (At 10 rows, 0.005 a
        // row, the mock gave 0.055 to 0.06: the gate runs slightly above its rate that small.)
        let (rows, suites, a) = (4u64, 1000u64, 0.05);
        let gate = Gate { threshold: mock_truth(LEVELS), ..Gate::new(0.0) };
        let suite_wrong = |rate: f64| {
            let gate = Gate { error_rate: rate, ..gate };
            (0..suites)
                .filter(|s| (0..rows).any(|r| decide(SamplerKind::Iid, 50_000 + s * rows + r, &gate, Noise::Uniform).verdict != Side::Undecided))
                .count() as f64
                / suites as f64
        };
        let divided = suite_wrong(a / rows as f64);
        let undivided = suite_wrong(a);
        eprintln!("suite of {rows} rows at the truth: some verdict wrong in {divided} (rows at A / R), {undivided} (rows at A)");
        assert!(divided <= a, "suite error rate {divided} above {a} with rows at A / R");
        assert!(undivided > a, "rows at A each should break the suite's rate, got {undivided}");
    }

    #[test]
    fn naive_repeated_looks_break_the_error_rate() {
        // The rule the gate replaces: stop after any batch of 8 whose 95% interval excludes T.
        // It is a 5% test at one look but not over 25 looks: this shows the gate's test can fail.
        let truth = mock_truth(LEVELS);
        let runs = 2000;
        let mut wrong = 0;
        for seed in 0..runs {
            let mut plan = Plan::new(SamplerKind::Iid, 1000 + seed, LEVELS, 256, 256);
            let mut stats = RunningStats::default();
            while stats.count() < 200 {
                let mut draws = plan.next_round(8);
                for d in draws.iter_mut() {
                    stats.push(mock_distance(&d.transform, &mut d.rng, Noise::Uniform));
                }
                if stats.count() >= 16 && (stats.mean() - truth).abs() > stats.ci95() {
                    wrong += 1;
                    break;
                }
            }
        }
        let rate = wrong as f64 / runs as f64;
        eprintln!("naive rule: wrong verdicts {rate}");
        assert!(rate > 0.10, "naive rule's wrong-verdict rate {rate} (expected well above 5%)");
    }

    #[test]
    fn clear_cases_decide_early_and_right() {
        let truth = mock_truth(LEVELS);
        for (threshold, want) in [(truth * 0.8, Side::Above), (truth * 1.2, Side::Below)] {
            let gate = Gate { threshold, ..Gate::new(0.0) };
            for seed in 0..50 {
                let d = decide(SamplerKind::Iid, seed, &gate, Noise::Uniform);
                assert_eq!(d.verdict, want, "seed {seed}: {d:?}");
                assert!(d.estimate.samples < 200, "seed {seed}: needed {} samples", d.estimate.samples);
                assert_eq!(d.estimate_below, want == Side::Below);
            }
        }
    }

    #[test]
    fn undecided_at_the_cap_reports_the_leaning() {
        let truth = mock_truth(LEVELS);
        let gate = Gate { threshold: truth, max_samples: 24, min_samples: 16, ..Gate::new(0.0) };
        let d = decide(SamplerKind::Iid, 5, &gate, Noise::Uniform);
        assert_eq!(d.verdict, Side::Undecided);
        assert_eq!(d.estimate.samples, 24);
        assert_eq!(d.looks, 2);
        assert_eq!(d.estimate_below, d.estimate.distance <= truth);
        assert!(d.lower <= truth && truth < d.upper);
    }

    #[test]
    fn bad_gates_are_refused() {
        for gate in [
            Gate::new(f64::NAN),
            Gate::new(-0.1),
            Gate { error_rate: 0.0, ..Gate::new(0.1) },
            Gate { error_rate: 0.5, ..Gate::new(0.1) },
            Gate { min_samples: 1, ..Gate::new(0.1) },
            Gate { min_samples: 50, max_samples: 40, ..Gate::new(0.1) },
        ] {
            assert!(gate.validate().is_err(), "{gate:?}");
        }
        // The stratified pilot (3 per level) does not fit 8 samples over 4 levels.
        let mut plan = Plan::new(SamplerKind::Stratified, 1, LEVELS, 256, 256);
        let gate = Gate { min_samples: 2, max_samples: 8, ..Gate::new(0.1) };
        let err = decide_plan(&mut plan, &gate, 8, &mut |_| unreachable!(), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("at least 12 samples"), "{err}");
    }

    #[test]
    fn t_quantiles() {
        assert!((t_quantile(0.025, 1e9) - 1.959964).abs() < 1e-5);
        assert!((t_quantile(0.05, 15.0) - 1.753050).abs() < 1e-5);
    }
}
