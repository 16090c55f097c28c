//! Tuning an encoder setting by perceptual distance: "the smallest file whose distance to the
//! original is at most T" ([`Goal::MaxDistance`]) or "the setting that lands closest to T"
//! ([`Goal::Target`]). Owns the search and the per-probe decision; knows nothing about any
//! particular codec (the caller encodes) and nothing about C (see `capi::tune`).
//!
//! Settings are integers in `min..=max`, higher meaning better quality (larger files, smaller
//! distances) for the usual encoder. Neither property is relied on for correctness:
//!
//! * **The metric is an estimate.** Each probe is a sequential gate against the threshold
//!   ([`Metric::decide`], see `crate::decision`): it stops at the first look whose bounds put
//!   the distance on one side of T, so probes far from T cost a first look only and probes near
//!   T get more samples. A probe *meets* T only on a [`Verdict::Below`]; the chance that a probe
//!   whose true distance is above T gets one is at most [`ProbeRule::error_rate`], and every
//!   probe is reported with its estimate and 95% half-width.
//! * **Common random numbers.** Every probe draws sample `i` from the same stream `(seed, i)`,
//!   so all candidates see the same transforms and dropout masks and their differences (the
//!   slope the interpolation uses) are measured without the draw-to-draw noise.
//! * **Not monotone.** The search keeps a bracket `(L, H)`: H is the lowest setting judged to
//!   meet T, L the highest setting below H judged not to. A probe that contradicts monotonicity
//!   just moves the bracket; the answer is chosen over *all* probes (fewest bytes among those
//!   that meet T, or nearest to T), not read off the bracket.
//! * **Interpolation plus bisection.** The next setting interpolates log-distance linearly
//!   between the bracket's ends (or extrapolates along the last slope when one end is still
//!   open), as rate-control searches do; when two steps have not halved the bracket it bisects
//!   instead (Brent's safeguard), so the worst case stays logarithmic.
//! * **No re-evaluation.** A setting is probed at most once, and a setting whose encoded bytes
//!   equal an earlier probe's reuses that estimate.

use std::collections::HashMap;

use crate::decision::{Gate, Verdict};
use crate::error::{Error, Result};
use crate::estimate::Estimate;
use crate::image::Image;
use crate::metric::Metric;

/// What the search looks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// The output with the fewest bytes whose distance is at most T (shown at the probe rule's
    /// error rate).
    MaxDistance(f64),
    /// The output whose distance is closest to T.
    Target(f64),
}

impl Goal {
    pub fn threshold(&self) -> f64 {
        match *self {
            Goal::MaxDistance(t) | Goal::Target(t) => t,
        }
    }
}

/// How one probe is judged (E-LPIPS only; LPIPS probes are exact): the [`Gate`] of each probe,
/// less its threshold (the goal's), plus the target tolerance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeRule {
    /// Chance that one probe is put on the wrong side of T (per side, per probe).
    pub error_rate: f64,
    /// Samples at the gate's first look.
    pub min_samples: u32,
    /// Samples at most; a probe still straddling T then is undecided (which does not meet T).
    pub max_samples: u32,
    /// [`Goal::Target`] only: a probe whose 95% interval lies within `T +- tolerance` is on
    /// target and ends the search. 0 = the search ends only when the bracket closes.
    pub tolerance: f64,
}

impl Default for ProbeRule {
    fn default() -> Self {
        let gate = Gate::new(0.0);
        ProbeRule { error_rate: gate.error_rate, min_samples: gate.min_samples, max_samples: gate.max_samples, tolerance: 0.0 }
    }
}

impl ProbeRule {
    /// The gate of a probe against `threshold`.
    pub fn gate(&self, threshold: f64) -> Gate {
        Gate { threshold, error_rate: self.error_rate, max_samples: self.max_samples, min_samples: self.min_samples }
    }
}

/// Everything that configures a search.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TuneOptions {
    pub goal: Goal,
    /// Lowest setting (worst quality).
    pub min_setting: i32,
    /// Highest setting (best quality).
    pub max_setting: i32,
    /// First setting to probe; `None` = the middle of the range.
    pub start: Option<i32>,
    /// Probes at most (each one encode); the search returns its best so far when it runs out.
    pub max_probes: u32,
    pub rule: ProbeRule,
}

impl TuneOptions {
    pub fn new(goal: Goal, min_setting: i32, max_setting: i32) -> Self {
        TuneOptions { goal, min_setting, max_setting, start: None, max_probes: 16, rule: ProbeRule::default() }
    }

    pub fn validate(&self) -> Result<()> {
        let t = self.goal.threshold();
        if !(t.is_finite() && t > 0.0) {
            return Err(Error::invalid(format!("the distance threshold must be a positive number, not {t}")));
        }
        if self.min_setting > self.max_setting {
            return Err(Error::invalid(format!("setting range {}..{} is empty", self.min_setting, self.max_setting)));
        }
        if let Some(s) = self.start {
            if !(self.min_setting..=self.max_setting).contains(&s) {
                return Err(Error::invalid(format!("start setting {s} is outside {}..{}", self.min_setting, self.max_setting)));
            }
        }
        if self.max_probes == 0 {
            return Err(Error::invalid("max probes must be at least 1"));
        }
        let r = &self.rule;
        r.gate(t).validate()?;
        if !(r.tolerance.is_finite() && r.tolerance >= 0.0) {
            return Err(Error::invalid(format!("the tolerance must be a non-negative number, not {}", r.tolerance)));
        }
        Ok(())
    }
}

/// One probed setting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    pub setting: i32,
    /// Size of the encoded output.
    pub bytes: u64,
    pub estimate: Estimate,
    /// Where the gate put it relative to T.
    pub side: Verdict,
    /// The earlier setting whose output was byte-identical (its estimate was reused).
    pub same_as: Option<i32>,
}

/// What the search found.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Every probe, in the order made.
    pub probes: Vec<Probe>,
    /// Index into `probes` of the answer; `None` when no probe meets a maximum distance.
    pub chosen: Option<usize>,
    /// Network samples evaluated over all probes.
    pub samples: u64,
}

impl Outcome {
    pub fn chosen_probe(&self) -> Option<&Probe> {
        self.chosen.map(|i| &self.probes[i])
    }
}

/// The output of one encode: its size and the decoded pixels.
pub struct Encoded {
    pub bytes: u64,
    /// Identifies byte-identical outputs (e.g. a hash of the file); `None` = never identical.
    pub fingerprint: Option<u64>,
    pub decoded: Image,
}

/// Searches `options`' setting range, encoding with `encode` and comparing each decoded output to
/// `reference` with `metric` (its seed keys the common draws of every probe).
pub fn tune(
    metric: &mut Metric,
    reference: &Image,
    options: &TuneOptions,
    encode: &mut dyn FnMut(i32) -> Result<Encoded>,
) -> Result<Outcome> {
    options.validate()?;
    metric.check_pair(reference, reference)?;
    let goal = options.goal;
    let rule = options.rule;
    let mut seen: HashMap<u64, Probe> = HashMap::new();
    let mut samples = 0u64;
    let mut outcome = search(options, &mut |setting| {
        let encoded = encode(setting)?;
        if let Some(prev) = encoded.fingerprint.and_then(|f| seen.get(&f)) {
            return Ok(Probe { setting, bytes: encoded.bytes, same_as: Some(prev.setting), ..*prev });
        }
        let (estimate, side) = judge(metric, reference, &encoded.decoded, goal, &rule)?;
        samples += estimate.samples;
        let probe = Probe { setting, bytes: encoded.bytes, estimate, side, same_as: None };
        if let Some(f) = encoded.fingerprint {
            seen.insert(f, probe);
        }
        Ok(probe)
    })?;
    outcome.samples = samples;
    Ok(outcome)
}

/// Judges `candidate` against `goal`'s threshold with the probe's gate ([`Metric::decide`]).
/// Sample `i` is drawn from stream `(seed, i)` of the metric's seed, so every probe of one
/// metric shares its draws (common random numbers).
pub fn judge(metric: &mut Metric, reference: &Image, candidate: &Image, goal: Goal, rule: &ProbeRule) -> Result<(Estimate, Verdict)> {
    let decision = metric.decide(reference, candidate, &rule.gate(goal.threshold()))?;
    Ok((decision.estimate, decision.verdict))
}

/// The search over settings, given a way to probe one (encode + judge). Exposed so that callers
/// with their own probe (the C ABI, the benchmark, tests) share the exact same logic.
pub fn search(options: &TuneOptions, probe: &mut dyn FnMut(i32) -> Result<Probe>) -> Result<Outcome> {
    options.validate()?;
    let (lo, hi) = (options.min_setting, options.max_setting);
    let t = options.goal.threshold();
    let target = matches!(options.goal, Goal::Target(_));
    let mut probes: Vec<Probe> = vec![];
    // Bracket widths before each probe, for the bisection safeguard.
    let mut widths: Vec<i64> = vec![];
    // Illinois: how many probes in a row moved the same end of the bracket (+ for L, - for H).
    let mut run = 0i32;
    let mut last_bracket: Option<(i64, i64)> = None;
    let is_low = |p: &Probe| match p.side {
        Verdict::Below => true,
        Verdict::Above => false,
        // A maximum distance needs a probe shown to meet it; a target only needs the side.
        Verdict::Undecided => target && p.estimate.distance <= t,
    };
    let on_target = |p: &Probe| {
        target && options.rule.tolerance > 0.0 && (p.estimate.distance - t).abs() + p.estimate.ci95 <= options.rule.tolerance
    };
    while (probes.len() as u32) < options.max_probes {
        // H: lowest setting whose distance is low enough; L: highest setting below H that is not.
        let h_probe = probes.iter().filter(|p| is_low(p)).min_by_key(|p| p.setting).copied();
        let h = h_probe.map_or(hi as i64 + 1, |p| p.setting as i64);
        let l_probe = probes.iter().filter(|p| !is_low(p) && (p.setting as i64) < h).max_by_key(|p| p.setting).copied();
        let l = l_probe.map_or(lo as i64 - 1, |p| p.setting as i64);
        if h - l <= 1 || probes.iter().any(on_target) {
            break;
        }
        if let Some((pl, ph)) = last_bracket {
            run = match (l != pl, h != ph) {
                (true, false) => run.max(0) + 1,
                (false, true) => run.min(0) - 1,
                _ => 0,
            };
        }
        last_bracket = Some((l, h));
        let width = h - l;
        let bisect = (l + h).div_euclid(2);
        // Brent's safeguard: three probes that did not halve the bracket mean the line is lying.
        let stalled = widths.len() >= 3 && 2 * width > widths[widths.len() - 3];
        let next = if probes.is_empty() {
            options.start.map_or(bisect, i64::from)
        } else if stalled {
            bisect
        } else {
            // The end that keeps being kept has its residual halved per repeat (Illinois), which
            // stops regula falsi creeping up on the crossing from one side.
            let damp = |k: i32| 0.5f64.powi((k.abs() - 1).max(0));
            let (wl, wh) = if run > 0 { (1.0, damp(run)) } else { (damp(run), 1.0) };
            interpolate(&probes, l_probe, h_probe, t, wl, wh, bisect).map_or(bisect, |x| x.round() as i64)
        };
        let next = next.clamp(l + 1, h - 1) as i32;
        widths.push(width);
        debug_assert!(probes.iter().all(|p| p.setting != next), "setting {next} probed twice");
        probes.push(probe(next)?);
    }
    let chosen = match options.goal {
        Goal::MaxDistance(_) => (0..probes.len())
            .filter(|&i| probes[i].side == Verdict::Below)
            .min_by_key(|&i| (probes[i].bytes, probes[i].setting)),
        Goal::Target(_) => (0..probes.len()).min_by(|&a, &b| {
            let key = |p: &Probe| ((p.estimate.distance - t).abs(), p.bytes);
            key(&probes[a]).partial_cmp(&key(&probes[b])).unwrap_or(std::cmp::Ordering::Equal)
        }),
    };
    Ok(Outcome { probes, chosen, samples: 0 })
}

/// The setting where log-distance crosses `ln t`.
///
/// With both bracket ends probed: inverse quadratic interpolation through them and the nearest
/// other probe (Brent), which follows the curvature codecs show near their top qualities; when
/// that lands outside the bracket, the line between the ends, their residuals weighted by `wl`,
/// `wh` (Illinois). With one end open: the line through the end and its nearest probe, stepping
/// at most halfway to the open side (`limit`).
fn interpolate(probes: &[Probe], l: Option<Probe>, h: Option<Probe>, t: f64, wl: f64, wh: f64, limit: i64) -> Option<f64> {
    let residual = |p: &Probe| p.estimate.distance.max(1e-6).ln() - t.max(1e-6).ln();
    if let (Some(l), Some(h)) = (l, h) {
        let (fl, fh) = (residual(&l), residual(&h));
        // L lies above T and H below; anything else (an undecided end) gives no line.
        if !(fl > 0.0 && fh < 0.0) {
            return None;
        }
        let (x0, x1) = (l.setting as f64, h.setting as f64);
        let third = probes
            .iter()
            .filter(|p| p.setting != l.setting && p.setting != h.setting)
            .min_by_key(|p| (p.setting - l.setting).unsigned_abs().min((p.setting - h.setting).unsigned_abs()));
        if let Some(c) = third {
            let (x2, f2) = (c.setting as f64, residual(c));
            if f2 != fl && f2 != fh {
                let x = x0 * fh * f2 / ((fl - fh) * (fl - f2)) + x1 * fl * f2 / ((fh - fl) * (fh - f2)) + x2 * fl * fh / ((f2 - fl) * (f2 - fh));
                if x > x0 && x < x1 {
                    return Some(x);
                }
            }
        }
        let (fl, fh) = (wl * fl, wh * fh);
        return Some(x0 + fl / (fl - fh) * (x1 - x0));
    }
    let end = l.or(h)?;
    // The probe nearest to `end` gives the slope.
    let other = probes.iter().filter(|p| p.setting != end.setting).min_by_key(|p| (p.setting - end.setting).unsigned_abs())?;
    let slope = (residual(&end) - residual(other)) / (end.setting - other.setting) as f64;
    // Distance must fall as the setting rises for the line to say anything.
    if !(slope < 0.0 && slope.is_finite()) {
        return None;
    }
    let x = end.setting as f64 - residual(&end) / slope;
    Some(if l.is_some() { x.min(limit as f64) } else { x.max(limit as f64) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic codec: distance falls exponentially with the setting, bytes grow.
    fn exact(setting: i32) -> f64 {
        0.5 * (-(setting as f64) / 25.0).exp()
    }

    fn synthetic(goal: Goal, dist: &dyn Fn(i32) -> f64, calls: &mut Vec<i32>) -> Outcome {
        let options = TuneOptions::new(goal, 0, 100);
        search(&options, &mut |s| {
            calls.push(s);
            let d = dist(s);
            let side = if d <= goal.threshold() { Verdict::Below } else { Verdict::Above };
            let estimate = Estimate { distance: d, std_error: 0.0, ci95: 0.0, samples: 1, converged: true };
            Ok(Probe { setting: s, bytes: 100 + 10 * s as u64, estimate, side, same_as: None })
        })
        .unwrap()
    }

    #[test]
    fn max_distance_finds_the_smallest_setting_that_meets_it_in_fewer_probes_than_bisection() {
        let mut total = 0;
        for t in [0.3, 0.1, 0.05, 0.02, 0.011] {
            let mut calls = vec![];
            let out = synthetic(Goal::MaxDistance(t), &exact, &mut calls);
            let want = (0..=100).find(|&s| exact(s) <= t).unwrap();
            assert_eq!(out.chosen_probe().unwrap().setting, want, "T = {t}");
            // Bisection over 101 settings needs 7 probes.
            assert!(calls.len() < 7, "T = {t}: {calls:?}");
            total += calls.len();
            let mut unique = calls.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), calls.len(), "a setting was probed twice: {calls:?}");
        }
        assert!(total <= 5 * 5, "{total} probes for 5 thresholds");
    }

    #[test]
    fn unreachable_and_trivial_thresholds() {
        let mut calls = vec![];
        assert_eq!(synthetic(Goal::MaxDistance(0.001), &exact, &mut calls).chosen, None);
        assert!(calls.contains(&100));
        let mut calls = vec![];
        assert_eq!(synthetic(Goal::MaxDistance(0.9), &exact, &mut calls).chosen_probe().unwrap().setting, 0);
    }

    #[test]
    fn target_lands_on_the_nearest_setting() {
        for t in [0.2, 0.04] {
            let mut calls = vec![];
            let out = synthetic(Goal::Target(t), &exact, &mut calls);
            let best = (0..=100).min_by(|&a, &b| (exact(a) - t).abs().partial_cmp(&(exact(b) - t).abs()).unwrap()).unwrap();
            assert_eq!(out.chosen_probe().unwrap().setting, best, "T = {t}");
        }
    }

    #[test]
    fn a_non_monotone_curve_still_gives_a_probe_that_meets_the_threshold() {
        // A bump: settings 60..70 are worse than 59.
        let bumpy = |s: i32| if (60..70).contains(&s) { exact(s) * 3.0 } else { exact(s) };
        let mut calls = vec![];
        let out = synthetic(Goal::MaxDistance(0.06), &bumpy, &mut calls);
        let p = out.chosen_probe().unwrap();
        assert!(bumpy(p.setting) <= 0.06);
        // Every setting inside the final bracket was left unprobed.
        let mut unique = calls.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), calls.len());
    }

    #[test]
    fn the_probe_budget_is_kept() {
        let mut options = TuneOptions::new(Goal::MaxDistance(0.05), 0, 100);
        options.max_probes = 2;
        let mut n = 0;
        let out = search(&options, &mut |s| {
            n += 1;
            let estimate = Estimate { distance: 1.0, std_error: 0.0, ci95: 0.0, samples: 1, converged: true };
            Ok(Probe { setting: s, bytes: 1, estimate, side: Verdict::Above, same_as: None })
        })
        .unwrap();
        assert_eq!((n, out.probes.len(), out.chosen), (2, 2, None));
    }

    #[test]
    fn bad_options_are_refused() {
        let ok = TuneOptions::new(Goal::Target(0.1), 0, 100);
        assert!(ok.validate().is_ok());
        assert!(TuneOptions { goal: Goal::Target(0.0), ..ok }.validate().is_err());
        assert!(TuneOptions { goal: Goal::MaxDistance(f64::NAN), ..ok }.validate().is_err());
        assert!(TuneOptions { min_setting: 5, max_setting: 4, ..ok }.validate().is_err());
        assert!(TuneOptions { start: Some(101), ..ok }.validate().is_err());
        assert!(TuneOptions { max_probes: 0, ..ok }.validate().is_err());
        assert!(TuneOptions { rule: ProbeRule { error_rate: 0.5, ..ok.rule }, ..ok }.validate().is_err());
        assert!(TuneOptions { rule: ProbeRule { min_samples: 1, ..ok.rule }, ..ok }.validate().is_err());
    }
}
