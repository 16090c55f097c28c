//! The one sequential loop: draw a round of samples, evaluate them, record them, report progress,
//! and stop once the policy is met. `compare`, the heatmap, `compare_many` and the gate all run
//! it; they differ only in what they record (one plan, or one per candidate and difference) and
//! in when they stop. The network work is the caller's `evaluate`.

use std::borrow::BorrowMut;

use crate::ensemble::Draw;
use crate::error::{Error, Result};
use crate::estimate::multi::{Paired, PairedValues};
use crate::estimate::sampler::Plan;
use crate::estimate::{Estimate, Progress, Sampling, Z95};

/// What a sequential run keeps: what hands out the draws and the statistics of their values.
pub(crate) trait Tally {
    /// What one round asks the caller to evaluate (draws; or full and cheap draws).
    type Round: ?Sized;
    /// The owned round.
    type Batch: BorrowMut<Self::Round>;
    /// What one round's evaluation returns.
    type Values;
    /// Samples recorded (for a two-stream estimate: full samples).
    fn count(&self) -> u64;
    /// The next `n` samples' round.
    fn next_round(&mut self, n: usize) -> Self::Batch;
    fn record(&mut self, round: &Self::Round, values: &Self::Values);
    /// Whether `sampling` is met.
    fn is_done(&self, sampling: Sampling) -> bool;
    /// The estimate progress callbacks see.
    fn headline(&self, converged: bool) -> Estimate;
}

impl Tally for Plan {
    type Round = [Draw];
    type Batch = Vec<Draw>;
    type Values = Vec<f64>;

    fn count(&self) -> u64 {
        Plan::count(self)
    }

    fn next_round(&mut self, n: usize) -> Vec<Draw> {
        Plan::next_round(self, n)
    }

    fn record(&mut self, draws: &[Draw], values: &Vec<f64>) {
        Plan::record(self, draws, values)
    }

    fn is_done(&self, sampling: Sampling) -> bool {
        let (mean, se) = self.mean_and_std_error();
        sampling.is_done(self.count(), mean, se.map(|s| Z95 * s))
    }

    fn headline(&self, converged: bool) -> Estimate {
        self.estimate(converged)
    }
}

impl<T: PairedValues> Tally for Paired<T> {
    type Round = T::Round;
    type Batch = T::Batch;
    type Values = Vec<T::Values>;

    fn count(&self) -> u64 {
        self.driver.count()
    }

    fn next_round(&mut self, n: usize) -> T::Batch {
        self.driver.next_round(n)
    }

    fn record(&mut self, round: &T::Round, values: &Vec<T::Values>) {
        Paired::record(self, round, values)
    }

    fn is_done(&self, sampling: Sampling) -> bool {
        Paired::is_done(self, sampling)
    }

    /// The first candidate's distance.
    fn headline(&self, converged: bool) -> Estimate {
        self.estimate(converged).distances[0]
    }
}

/// Runs rounds of at most `per_round` samples until `tally` holds `target` samples or, with `stop`,
/// until that policy is met after a round; `max_samples` is what progress reports as the most.
/// Returns whether `stop` was met.
pub(crate) fn run_rounds<T: Tally>(
    tally: &mut T,
    target: u64,
    per_round: u64,
    max_samples: u64,
    stop: Option<Sampling>,
    evaluate: &mut dyn FnMut(&mut T::Round) -> Result<T::Values>,
    progress: &mut dyn FnMut(Progress),
) -> Result<bool> {
    while tally.count() < target {
        let count = tally.count();
        let mut round = tally.next_round(per_round.min(target - count) as usize);
        let values = evaluate(round.borrow_mut())?;
        tally.record(round.borrow_mut(), &values);
        let done = stop.is_some_and(|s| tally.is_done(s));
        progress(Progress { samples: tally.count(), max_samples, estimate: tally.headline(done) });
        if done {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Samples until `sampling` is met (or its maximum spent). Returns whether the estimate
/// converged: always for a fixed count; for an adaptive policy, whether its error targets hold.
pub(crate) fn sample<T: Tally>(
    tally: &mut T,
    sampling: Sampling,
    per_round: u64,
    evaluate: &mut dyn FnMut(&mut T::Round) -> Result<T::Values>,
    progress: &mut dyn FnMut(Progress),
) -> Result<bool> {
    let max = sampling.max_samples() as u64;
    run_rounds(tally, max, per_round, max, Some(sampling), evaluate, progress)?;
    Ok(match sampling {
        Sampling::Fixed(_) => true,
        Sampling::Adaptive { abs_error, rel_error, min_samples, .. } => {
            tally.is_done(Sampling::Adaptive { abs_error, rel_error, min_samples, max_samples: u32::MAX })
        }
    })
}

/// Refuses a sampling policy too short for `plan` (of an `h x w` pair) to estimate its own
/// error: an estimate without an error is not an E-LPIPS answer.
pub(crate) fn check_budget(plan: &Plan, sampling: Sampling, h: usize, w: usize) -> Result<()> {
    let needed = plan.min_estimable();
    if (sampling.max_samples() as u64) < needed {
        return Err(Error::invalid(format!(
            "{} sampling of this {w}x{h} pair ({} scale levels) needs at least {needed} samples to estimate its error; raise `samples` / `max_samples`",
            plan.kind().name(),
            plan.levels()
        )));
    }
    Ok(())
}
