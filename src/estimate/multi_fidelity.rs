//! Two-stream (multi-fidelity) estimates: many draws through a cheap stream (a truncated or
//! lower-precision network), the full network on a subset of the same kind of draws, combined
//! so that the expectation stays exactly the full network's E-LPIPS expectation.
//!
//! The draws come in blocks of `k` ([`Fidelity::block`]): draw 1 of block `j` is evaluated by
//! both streams (full value `y_j`, cheap value `x_j`), draws 2..k by the cheap stream only. Block
//! `j` contributes
//!
//! ```text
//! c_j = y_j - b (x_j - xbar_j),      xbar_j = the mean of the block's k cheap values
//! ```
//!
//! The `k` draws of a block are independent draws of the E-LPIPS distribution, so `x_j` and
//! `xbar_j` have the same expectation and `d_j = x_j - xbar_j` has mean exactly 0, whatever the
//! cheap stream computes: `d_j` is a control variate whose mean is known although the cheap
//! stream's mean is not (it is estimated, within the block, by the cheap-only draws). With `b`
//! fitted on the other folds of the blocks (the cross-fit of
//! [`crate::estimate::control_variates::Controls`], which also adds the control sampler's draw
//! features when asked), `E[c_j] = E[y]` exactly and the blocks are independent: the estimate is
//! their mean, its standard error theirs, and every rule built on a plan's statistics (the
//! adaptive stop, the gate's looks, common random numbers) applies to blocks unchanged.
//!
//! Variance and cost: with `rho` the correlation of the two streams on a draw, the best `b` is the
//! regression coefficient of `y` on `x` (the same as for a control with a known mean), and
//! `Var(c) = Var(y) (1 - (1 - 1/k) rho^2)`. A block costs `1 + (k - 1) r` full samples (`r` the
//! cheap stream's cost on a draw; `1 + k r` when the cheap value of the full draw needs a run of
//! its own), so the variance times cost against full draws alone is
//! `(1 - (1 - 1/k) rho^2) (1 + (k - 1) r)`, least at `k = sqrt(rho^2 (1 - r) / ((1 - rho^2) r))`
//! ([`Fidelity::optimal_block`]; docs/estimator.md).
//!
//! The estimate layer's side of the contract with an evaluator: [`TwoStream`] hands out
//! [`Blocks`] (full draws and cheap-only draws); the evaluator returns [`BlockValues`], for each
//! full draw its full distance and its cheap value *under the same transform and dropout*, and
//! for each cheap-only draw its cheap value. Knows nothing of networks.

use crate::ensemble::Draw;
use crate::error::{Error, Result};
use crate::estimate::control_variates::Controls;
use crate::estimate::decision::{decide_plan, Decision, Gate, Gated};
use crate::estimate::multi::PairedValues;
use crate::estimate::sampler::{Plan, SamplerKind};
use crate::estimate::sequential::Tally;
use crate::estimate::{Estimate, Sampling, Z95};

/// Stream ids of the cheap-only draws, disjoint from iid draws (below) and from the stratified
/// sampler's (`1 << 61` and up).
const CHEAP_STREAM: u64 = 1 << 60;

/// The most draws per block.
pub const MAX_BLOCK: u32 = 256;

/// How a two-stream estimate spends its draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fidelity {
    /// Draws per block: one through both streams, `block - 1` through the cheap stream only
    /// (1: no cheap-only draws). At most [`MAX_BLOCK`].
    pub block: u32,
    /// The cheap stream's cost on one draw, as a share of one full sample (for the
    /// sample-equivalents a run reports and for [`Fidelity::optimal_block`]).
    pub cheap_cost: f64,
    /// Whether a full evaluation yields the draw's cheap value at no extra cost (an early tap of
    /// the same pass) rather than needing a cheap run of its own (another precision).
    pub cheap_in_full: bool,
    /// The cheap stream's coefficient until it is fitted (from
    /// [`ESTIMATED_SAMPLES_PER_FEATURE`](crate::estimate::control_variates::ESTIMATED_SAMPLES_PER_FEATURE)
    /// blocks in the other folds): 1 when the cheap value estimates the same distance (a lower
    /// precision), 0 when it only moves with it (a tap's share). Any value keeps the estimate
    /// unbiased; a good one helps the first looks.
    pub prior: f64,
}

impl Fidelity {
    /// Checks the numbers make sense.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_BLOCK).contains(&self.block) {
            return Err(Error::invalid(format!("a two-stream block holds 1 to {MAX_BLOCK} draws, not {}", self.block)));
        }
        if !(self.cheap_cost.is_finite() && self.cheap_cost >= 0.0) {
            return Err(Error::invalid(format!("the cheap stream's cost must be a finite share >= 0, not {}", self.cheap_cost)));
        }
        if !self.prior.is_finite() {
            return Err(Error::invalid("the cheap stream's prior coefficient must be finite"));
        }
        Ok(())
    }

    /// Cost of one block, in full samples.
    pub fn block_cost(&self) -> f64 {
        let cheap_runs = self.block as f64 - if self.cheap_in_full { 1.0 } else { 0.0 };
        1.0 + cheap_runs * self.cheap_cost
    }

    /// Variance times cost of a block's contribution against one full draw's, for streams
    /// correlated `rho2 = rho^2` on a draw and the best coefficient.
    pub fn relative_work(&self, rho2: f64) -> f64 {
        (1.0 - (1.0 - 1.0 / self.block as f64) * rho2.clamp(0.0, 1.0)) * self.block_cost()
    }

    /// The block size with the least variance times cost for streams correlated `rho2` on a
    /// draw, the cheap stream costing `cheap_cost` of a full sample per draw:
    /// `sqrt(rho2 (1 - r) / ((1 - rho2) r))` (`1 - r` becomes 1 when the full draw's cheap value
    /// needs a run of its own), rounded to the better neighbour and kept within `1..=MAX_BLOCK`.
    pub fn optimal_block(rho2: f64, cheap_cost: f64, cheap_in_full: bool) -> u32 {
        let rho2 = rho2.clamp(0.0, 1.0 - 1e-9);
        let base = if cheap_in_full { 1.0 - cheap_cost } else { 1.0 };
        if cheap_cost <= 0.0 {
            return MAX_BLOCK;
        }
        let k = (rho2 * base.max(0.0) / ((1.0 - rho2) * cheap_cost)).sqrt();
        let work = |k: u32| Fidelity { block: k, cheap_cost, cheap_in_full, prior: 0.0 }.relative_work(rho2);
        let (lo, hi) = ((k.floor() as u32).clamp(1, MAX_BLOCK), (k.ceil() as u32).clamp(1, MAX_BLOCK));
        if work(lo) <= work(hi) {
            lo
        } else {
            hi
        }
    }
}

/// One round of a two-stream estimate: block `j`'s full draw is `full[j]`, its cheap-only draws
/// `cheap[j * (k - 1)..(j + 1) * (k - 1)]`.
#[derive(Clone, Debug)]
pub struct Blocks {
    /// One per block: evaluated by both streams (the same transform and dropout for each).
    pub full: Vec<Draw>,
    /// `k - 1` per block, in block order: evaluated by the cheap stream only.
    pub cheap: Vec<Draw>,
}

/// An evaluator's answer for [`Blocks`], in the same orders.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockValues {
    /// Per full draw: the full network's distance.
    pub full: Vec<f64>,
    /// Per full draw: the cheap stream's value of the same draw.
    pub full_cheap: Vec<f64>,
    /// Per cheap-only draw: the cheap stream's value.
    pub cheap: Vec<f64>,
}

/// The state of a two-stream estimate: the plan of its full draws (iid, or with the control
/// sampler's draw features as well), whose statistics are those of the block contributions.
#[derive(Clone, Debug)]
pub struct TwoStream {
    plan: Plan,
    fidelity: Fidelity,
    seed: u64,
    levels: u32,
    cheap_issued: u64,
    /// Sums for the streams' correlation on the full draws: n, x, y, xx, yy, xy.
    sums: [f64; 6],
}

impl TwoStream {
    /// A two-stream estimate of an `h x w` pair with `levels` scale levels. Its full draws are
    /// those of the iid sampler with the same seed (so results mix with iid and control runs
    /// under common random numbers); `kind` control adds the control sampler's draw features
    /// to the fit. Stratified draws are refused (a block's draws must be alike in law).
    pub fn new(kind: SamplerKind, seed: u64, levels: u32, h: usize, w: usize, fidelity: Fidelity) -> Result<Self> {
        fidelity.validate()?;
        if kind == SamplerKind::Stratified {
            return Err(Error::invalid("two-stream estimates take iid or control draws, not stratified ones"));
        }
        let controls = Controls::with_estimated(levels, vec![fidelity.prior], kind == SamplerKind::Control);
        let plan = Plan::with_controls(kind, seed, levels, h, w, controls);
        Ok(TwoStream { plan, fidelity, seed, levels, cheap_issued: 0, sums: [0.0; 6] })
    }

    /// How the draws are spent.
    pub fn fidelity(&self) -> Fidelity {
        self.fidelity
    }

    /// Blocks recorded (= full samples).
    pub fn blocks(&self) -> u64 {
        self.plan.count()
    }

    /// Cheap-only draws recorded.
    pub fn cheap_draws(&self) -> u64 {
        self.blocks() * (self.fidelity.block as u64 - 1)
    }

    /// The work so far in full samples: blocks times [`Fidelity::block_cost`].
    pub fn sample_equivalents(&self) -> f64 {
        self.blocks() as f64 * self.fidelity.block_cost()
    }

    /// The squared correlation of the two streams on the full draws so far (`None` below 3),
    /// for choosing the block size of later runs with [`Fidelity::optimal_block`].
    pub fn correlation_squared(&self) -> Option<f64> {
        let [n, x, y, xx, yy, xy] = self.sums;
        if n < 3.0 {
            return None;
        }
        let (vx, vy, c) = (xx - x * x / n, yy - y * y / n, xy - x * y / n);
        (vx > 0.0 && vy > 0.0).then(|| (c * c / (vx * vy)).min(1.0))
    }

    /// The estimate so far (`samples` counts full samples).
    pub fn estimate(&self, converged: bool) -> Estimate {
        self.plan.estimate(converged)
    }

    /// The statistics of the block contributions.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The next `n` blocks.
    pub fn next_blocks(&mut self, n: usize) -> Blocks {
        let full = self.plan.next_round(n);
        let per = (self.fidelity.block - 1) as usize;
        let cheap = (0..n * per)
            .map(|_| {
                let i = self.cheap_issued;
                self.cheap_issued += 1;
                Draw::iid(self.seed, CHEAP_STREAM | i, self.levels)
            })
            .collect();
        Blocks { full, cheap }
    }

    /// Records the values of `blocks`.
    ///
    /// # Panics
    /// When `values` does not hold one value per draw of `blocks` (an evaluator's bug).
    pub fn record(&mut self, blocks: &Blocks, values: &BlockValues) {
        let per = (self.fidelity.block - 1) as usize;
        let n = blocks.full.len();
        assert!(
            values.full.len() == n && values.full_cheap.len() == n && values.cheap.len() == blocks.cheap.len() && blocks.cheap.len() == n * per,
            "a two-stream evaluator must return one value per draw"
        );
        let k = self.fidelity.block as f64;
        let deviation: Vec<f64> = (0..n)
            .map(|j| {
                let x = values.full_cheap[j];
                let block_mean = (x + values.cheap[j * per..(j + 1) * per].iter().sum::<f64>()) / k;
                x - block_mean
            })
            .collect();
        for (&x, &y) in values.full_cheap.iter().zip(&values.full) {
            for (s, v) in self.sums.iter_mut().zip([1.0, x, y, x * x, y * y, x * y]) {
                *s += v;
            }
        }
        self.plan.record_estimated(&blocks.full, &values.full, &deviation);
    }
}

impl Tally for TwoStream {
    type Round = Blocks;
    type Batch = Blocks;
    type Values = BlockValues;

    fn count(&self) -> u64 {
        self.blocks()
    }

    fn next_round(&mut self, n: usize) -> Blocks {
        self.next_blocks(n)
    }

    fn record(&mut self, blocks: &Blocks, values: &BlockValues) {
        TwoStream::record(self, blocks, values)
    }

    fn is_done(&self, sampling: Sampling) -> bool {
        let (mean, se) = self.plan.mean_and_std_error();
        sampling.is_done(self.blocks(), mean, se.map(|s| Z95 * s))
    }

    fn headline(&self, converged: bool) -> Estimate {
        self.estimate(converged)
    }
}

impl Gated for TwoStream {
    fn plan(&self) -> &Plan {
        &self.plan
    }
}

impl PairedValues for TwoStream {
    fn mean(values: &[BlockValues]) -> BlockValues {
        let mean = |f: fn(&BlockValues) -> &Vec<f64>| -> Vec<f64> {
            (0..f(&values[0]).len()).map(|i| values.iter().map(|v| f(v)[i]).sum::<f64>() / values.len() as f64).collect()
        };
        BlockValues { full: mean(|v| &v.full), full_cheap: mean(|v| &v.full_cheap), cheap: mean(|v| &v.cheap) }
    }

    fn difference(a: &BlockValues, b: &BlockValues) -> BlockValues {
        let diff = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(x, y)| x - y).collect();
        BlockValues { full: diff(&a.full, &b.full), full_cheap: diff(&a.full_cheap, &b.full_cheap), cheap: diff(&a.cheap, &b.cheap) }
    }

    fn estimate(&self, converged: bool) -> Estimate {
        TwoStream::estimate(self, converged)
    }
}

/// The gate on a two-stream estimate, for callers outside the crate that evaluate blocks
/// themselves: the estimator bench replays one pool of the real network's draws under it.
#[doc(hidden)]
pub fn decide_blocks(estimate: &mut TwoStream, gate: &Gate, evaluate: &mut dyn FnMut(&mut Blocks) -> Result<BlockValues>) -> Result<Decision> {
    decide_plan(estimate, gate, 8, evaluate, &mut |_| {})
}

/// The stand-in network's second stream: a cheap value correlated with the mock distance of the
/// same draw, with a full expectation known exactly (`mock_truth`), for the statistical tests.
#[cfg(test)]
pub(crate) mod mock_streams {
    use rand::Rng;

    use super::{BlockValues, Blocks};
    use crate::ensemble::Draw;
    use crate::estimate::sampler::mock::{mock_distance, Noise};

    /// How the cheap value follows the full one.
    #[derive(Clone, Copy, Debug)]
    pub enum Cheap {
        /// `x = y (1 + 0.03 e) + 0.01`: another precision of the same distance (rho^2 ~ 0.99).
        Precision,
        /// `x = 0.3 y + 0.6 (level and gain part of y)'s noise`: an early tap's share, which
        /// follows the level and gains but not the rest (rho^2 ~ 0.5-0.8).
        Tap,
    }

    /// The full distance and the cheap value of one draw (its dropout stream advanced once).
    pub fn both(d: &mut Draw, noise: Noise, cheap: Cheap) -> (f64, f64) {
        let y = mock_distance(&d.transform, &mut d.rng, noise);
        let e = 2.0 * d.rng.random::<f64>() - 1.0;
        let x = match cheap {
            Cheap::Precision => y * (1.0 + 0.03 * e) + 0.01,
            Cheap::Tap => 0.3 * y + 0.02 * e + 0.1 * (d.transform.color[1] as f64 - 0.6),
        };
        (y, x)
    }

    /// Evaluates `blocks` as a two-stream evaluator would.
    pub fn evaluate(blocks: &mut Blocks, noise: Noise, cheap: Cheap) -> BlockValues {
        let (full, full_cheap) = blocks.full.iter_mut().map(|d| both(d, noise, cheap)).unzip();
        let cheap = blocks.cheap.iter_mut().map(|d| both(d, noise, cheap).1).collect();
        BlockValues { full, full_cheap, cheap }
    }
}

#[cfg(test)]
mod tests {
    use super::mock_streams::{evaluate, Cheap};
    use super::*;
    use crate::estimate::decision::Side;
    use crate::estimate::multi::Paired;
    use crate::estimate::sampler::mock::{mock_truth, Noise};
    use crate::estimate::sequential::sample;

    const LEVELS: u32 = 4;

    fn fidelity(block: u32, cheap: Cheap) -> Fidelity {
        let prior = match cheap {
            Cheap::Precision => 1.0,
            Cheap::Tap => 0.0,
        };
        Fidelity { block, cheap_cost: 0.05, cheap_in_full: true, prior }
    }

    fn run(kind: SamplerKind, seed: u64, blocks: u32, f: Fidelity, cheap: Cheap, noise: Noise) -> TwoStream {
        let mut t = TwoStream::new(kind, seed, LEVELS, 256, 256, f).unwrap();
        sample(&mut t, Sampling::Fixed(blocks), 8, &mut |b: &mut Blocks| Ok(evaluate(b, noise, cheap)), &mut |_| {}).unwrap();
        t
    }

    /// Over `runs` seeds: (coverage of the 95% intervals, mean error in standard errors of the
    /// mean, mean standard error).
    fn coverage(kind: SamplerKind, runs: u64, blocks: u32, f: Fidelity, cheap: Cheap, noise: Noise) -> (f64, f64, f64) {
        let truth = mock_truth(LEVELS);
        let (mut covered, mut sum, mut se_sum) = (0, 0.0, 0.0);
        for seed in 0..runs {
            let e = run(kind, 7000 + seed, blocks, f, cheap, noise).estimate(true);
            covered += ((e.distance - truth).abs() <= e.ci95) as u32;
            sum += e.distance - truth;
            se_sum += e.std_error;
        }
        let n = runs as f64;
        (covered as f64 / n, sum / n / (se_sum / n / n.sqrt()), se_sum / n)
    }

    #[test]
    fn the_best_block_balances_variance_and_cost() {
        // rho^2 = 0.9, r = 0.05, cheap value in the full pass: sqrt(0.9 * 0.95 / (0.1 * 0.05)) = 13.1.
        assert_eq!(Fidelity::optimal_block(0.9, 0.05, true), 13);
        let f = |k| Fidelity { block: k, cheap_cost: 0.05, cheap_in_full: true, prior: 0.0 };
        assert!(f(13).relative_work(0.9) < f(12).relative_work(0.9) && f(13).relative_work(0.9) < f(14).relative_work(0.9));
        // Uncorrelated streams: cheap draws only cost.
        assert_eq!(Fidelity::optimal_block(0.0, 0.05, true), 1);
        // int8-like: the cheap pass costs 0.63 of a full one and runs on the full draw too.
        assert!(Fidelity::optimal_block(0.99, 0.63, false) >= 2);
        assert!((f(1).block_cost() - 1.0).abs() < 1e-15 && (f(5).block_cost() - 1.2).abs() < 1e-12);
        assert!(Fidelity { block: 0, ..f(1) }.validate().is_err());
        assert!(Fidelity { cheap_cost: f64::NAN, ..f(4) }.validate().is_err());
        assert!(TwoStream::new(SamplerKind::Stratified, 1, LEVELS, 256, 256, f(4)).is_err());
    }

    #[test]
    fn two_streams_are_unbiased_cover_and_cut_the_variance() {
        // Every pairing of draws (iid, control features) and cheap stream, with the cheap
        // stream's coefficient fitted (2 per feature in the other folds: from 3 blocks) and
        // with the control features' stages (the intervals are normal ones: at 16 blocks they
        // cover about 93% for any estimator).
        for (kind, cheap, block) in
            [(SamplerKind::Iid, Cheap::Precision, 4), (SamplerKind::Iid, Cheap::Tap, 8), (SamplerKind::Control, Cheap::Tap, 8), (SamplerKind::Control, Cheap::Precision, 4)]
        {
            for blocks in [16, 32, 64] {
                let (cov, bias, se) = coverage(kind, 600, blocks, fidelity(block, cheap), cheap, Noise::Skewed);
                let (_, _, se_full) = coverage(kind, 200, blocks, fidelity(1, cheap), cheap, Noise::Skewed);
                eprintln!("{kind:?} {cheap:?} k = {block}, {blocks} blocks: coverage {cov:.3}, bias {bias:.2} se of the mean, se {se:.5} (full only {se_full:.5})");
                assert!(bias.abs() < 4.0, "{kind:?} {cheap:?} {blocks}: bias {bias} standard errors");
                assert!(cov >= 0.92, "{kind:?} {cheap:?} {blocks}: coverage {cov}");
                if blocks >= 32 {
                    // Once the control sampler's features are fitted (64 blocks here) they
                    // leave only the per-sample noise, while a block's cheap-only draws still
                    // carry their level and gains in `xbar_j`: the cheap deviation then
                    // explains little of what is left (0.96x), so only "never worse" holds.
                    // What would help: the cheap-only draws' own features (mean 0) as controls.
                    let cut = if kind == SamplerKind::Control && blocks >= 64 { 1.0 } else { 0.9 };
                    assert!(se < cut * se_full, "{kind:?} {cheap:?} {blocks}: se {se} vs full draws alone {se_full}");
                }
            }
        }
    }

    #[test]
    #[ignore = "slow: 4000 seeds per estimator (make test-long)"]
    fn two_stream_intervals_cover_95_percent_over_4000_seeds() {
        for (kind, cheap, block) in [(SamplerKind::Iid, Cheap::Precision, 4), (SamplerKind::Iid, Cheap::Tap, 8), (SamplerKind::Control, Cheap::Tap, 8)] {
            for blocks in [16, 48, 120] {
                for noise in [Noise::Uniform, Noise::Skewed, Noise::HeavyTailed] {
                    let (cov, bias, _) = coverage(kind, 4000, blocks, fidelity(block, cheap), cheap, noise);
                    eprintln!("{kind:?} {cheap:?} {noise:?} k = {block}, {blocks} blocks: coverage {cov:.4}, bias {bias:.2} se of the mean");
                    assert!((0.93..=0.97).contains(&cov), "{kind:?} {cheap:?} {noise:?} {blocks}: coverage {cov}");
                    assert!(bias.abs() < 4.0);
                }
            }
        }
    }

    fn wrong_at_truth(kind: SamplerKind, cheap: Cheap, block: u32, noise: Noise, runs: u64) -> (f64, f64, f64) {
        wrong_at_truth_from(kind, cheap, block, noise, runs, Gate::DEFAULT_MIN_SAMPLES)
    }

    /// Wrong-verdict rates (Below, Above) and mean sample-equivalents over `runs` seeds with the
    /// threshold at the truth, the gate's first look at `min_samples` blocks.
    fn wrong_at_truth_from(kind: SamplerKind, cheap: Cheap, block: u32, noise: Noise, runs: u64, min_samples: u32) -> (f64, f64, f64) {
        let gate = Gate { threshold: mock_truth(LEVELS), min_samples, ..Gate::new(0.0) };
        let (mut below, mut above, mut work) = (0, 0, 0.0);
        for seed in 0..runs {
            let mut t = TwoStream::new(kind, 9000 + seed, LEVELS, 256, 256, fidelity(block, cheap)).unwrap();
            let d = decide_plan(&mut t, &gate, 8, &mut |b: &mut Blocks| Ok(evaluate(b, noise, cheap)), &mut |_| {}).unwrap();
            below += (d.verdict == Side::Below) as u32;
            above += (d.verdict == Side::Above) as u32;
            work += t.sample_equivalents();
        }
        let n = runs as f64;
        (below as f64 / n, above as f64 / n, work / n)
    }

    #[test]
    fn gates_on_two_streams_keep_their_error_rate() {
        for (kind, cheap, block) in [(SamplerKind::Iid, Cheap::Precision, 4), (SamplerKind::Control, Cheap::Tap, 8)] {
            for noise in [Noise::Uniform, Noise::Skewed] {
                let (b, a, work) = wrong_at_truth(kind, cheap, block, noise, 1000);
                eprintln!("two streams, {kind:?} {cheap:?} k = {block}, {noise:?}: wrong Below {b:.4}, wrong Above {a:.4}, {work:.0} sample-equivalents");
                assert!(b <= 0.05 && a <= 0.05, "{kind:?} {cheap:?} {noise:?}: wrong Below {b}, wrong Above {a}");
            }
        }
    }

    #[test]
    #[ignore = "slow: 4000 seeds per case (make test-long)"]
    fn gates_on_two_streams_keep_their_error_rate_over_4000_seeds() {
        // What `Metric` runs (iid draws, a tap's share as the cheap stream, blocks of 4), and the
        // precision-like stream, with first looks of 4 and 8 blocks and every noise.
        for (cheap, block) in [(Cheap::Tap, 4), (Cheap::Precision, 4)] {
            for min_samples in [4, 8] {
                for noise in [Noise::Uniform, Noise::Skewed, Noise::HeavyTailed] {
                    let (b, a, work) = wrong_at_truth_from(SamplerKind::Iid, cheap, block, noise, 4000, min_samples);
                    eprintln!("two streams, iid {cheap:?} k = {block}, first look {min_samples}, {noise:?}: wrong Below {b:.4}, wrong Above {a:.4}, {work:.0} sample-equivalents");
                    assert!(b <= 0.05 && a <= 0.05, "{cheap:?} {noise:?} first look {min_samples}: wrong Below {b}, wrong Above {a}");
                }
            }
        }
    }

    #[test]
    fn a_far_threshold_is_decided_in_fewer_sample_equivalents() {
        // T = 2x the expectation: the gate's first look (8 blocks) decides with either; the
        // blocks' smaller variance lets it decide there more often than full draws alone.
        let truth = mock_truth(LEVELS);
        let gate = Gate { threshold: 1.3 * truth, ..Gate::new(0.0) };
        let mean_work = |block: u32| {
            (0..200)
                .map(|seed| {
                    let mut t = TwoStream::new(SamplerKind::Iid, seed, LEVELS, 256, 256, fidelity(block, Cheap::Precision)).unwrap();
                    let d = decide_plan(&mut t, &gate, 8, &mut |b: &mut Blocks| Ok(evaluate(b, Noise::Uniform, Cheap::Precision)), &mut |_| {})
                        .unwrap();
                    assert_eq!(d.verdict, Side::Below);
                    t.sample_equivalents()
                })
                .sum::<f64>()
                / 200.0
        };
        let (full, two) = (mean_work(1), mean_work(6));
        eprintln!("T = 1.3x: {full:.1} sample-equivalents with full draws, {two:.1} with blocks of 6");
        assert!(two < 0.8 * full, "{two} vs {full}");
    }

    #[test]
    fn borderline_gates_on_two_streams_take_fewer_sample_equivalents() {
        // T = 1.1x the expectation, iid draws, a tap's share as the cheap stream at the cost
        // `Metric` measured (0.054 of a sample, its own run on the full draw too): issue 34's
        // borderline goal is at least 15% fewer samples than full draws alone.
        let truth = mock_truth(LEVELS);
        let gate = Gate { threshold: 1.1 * truth, ..Gate::new(0.0) };
        let mean_work = |block: u32| {
            let f = Fidelity { block, cheap_cost: 0.054, cheap_in_full: false, prior: 0.0 };
            let (mut work, mut right) = (0.0, 0);
            for seed in 0..200 {
                let mut t = TwoStream::new(SamplerKind::Iid, 500 + seed, LEVELS, 256, 256, f).unwrap();
                let d = decide_plan(&mut t, &gate, 8, &mut |b: &mut Blocks| Ok(evaluate(b, Noise::Skewed, Cheap::Tap)), &mut |_| {}).unwrap();
                right += (d.verdict == Side::Below) as u32;
                work += t.sample_equivalents() / 200.0;
            }
            (work, right)
        };
        let ((full, right_full), (two, right_two)) = (mean_work(1), mean_work(4));
        eprintln!("T = 1.1x: {full:.1} sample-equivalents with full draws ({right_full}/200 right), {two:.1} with blocks of 4 ({right_two}/200 right)");
        assert!(two < 0.85 * full, "{two} vs {full}");
        assert!(right_two >= right_full, "two streams decide rightly at least as often");
    }

    #[test]
    fn paired_two_stream_differences_cover() {
        // Common random numbers: two candidates whose distances move together; each
        // candidate's cheap stream follows its own distance.
        let truth = mock_truth(LEVELS);
        let runs = 300;
        let (mut covered, mut se_pair, mut se_indep) = (0, 0.0, 0.0);
        for seed in 0..runs {
            let f = fidelity(6, Cheap::Tap);
            let mut p = Paired::from_fn(2, || TwoStream::new(SamplerKind::Iid, seed, LEVELS, 256, 256, f).unwrap());
            let mut eval = |b: &mut Blocks| {
                let one = evaluate(&mut b.clone(), Noise::Uniform, Cheap::Tap);
                let scaled = |s: f64| BlockValues {
                    full: one.full.iter().map(|v| s * v).collect(),
                    full_cheap: one.full_cheap.iter().map(|v| s * v).collect(),
                    cheap: one.cheap.iter().map(|v| s * v).collect(),
                };
                Ok(vec![scaled(1.0), scaled(1.05)])
            };
            sample(&mut p, Sampling::Fixed(48), 8, &mut eval, &mut |_| {}).unwrap();
            let m = p.estimate(true);
            let d = m.difference(1, 0).unwrap();
            covered += ((d.difference - 0.05 * truth).abs() <= d.ci95) as u32;
            se_pair += d.std_error;
            se_indep += m.distances[0].std_error.hypot(m.distances[1].std_error);
            assert_eq!(m.samples, 48);
        }
        let coverage = covered as f64 / runs as f64;
        eprintln!("paired two-stream differences: coverage {coverage}, se {:.2e} vs independent {:.2e}", se_pair / runs as f64, se_indep / runs as f64);
        assert!(coverage >= 0.92, "coverage {coverage}");
        assert!(se_pair < 0.2 * se_indep);
    }

    #[test]
    fn the_correlation_is_measured_on_the_full_draws() {
        let t = run(SamplerKind::Iid, 3, 64, fidelity(4, Cheap::Precision), Cheap::Precision, Noise::Uniform);
        let rho2 = t.correlation_squared().unwrap();
        assert!(rho2 > 0.95, "{rho2}");
        assert_eq!((t.blocks(), t.cheap_draws()), (64, 192));
        assert!((t.sample_equivalents() - 64.0 * 1.15).abs() < 1e-9);
    }
}
