//! Tuning an encoder setting by perceptual distance: "the smallest file whose distance to the
//! original is at most T" ([`Goal::MaxDistance`]) or "the setting that lands closest to T"
//! ([`Goal::Target`]). Owns the search and the per-probe decision; knows nothing about any
//! particular codec (the caller encodes) and nothing about C (see `capi::tune`).
//!
//! Settings are integers in `min..=max`, higher meaning better quality (larger files, smaller
//! distances) for the usual encoder. Neither property is relied on for correctness:
//!
//! * **The metric is an estimate.** Each probe is a sequential gate against the threshold
//!   ([`Metric::decide`], see `crate::estimate::decision`): it stops at the first look whose bounds put
//!   the distance on one side of T, so probes far from T cost a first look only and probes near
//!   T get more samples. A probe *meets* T only on a [`Side::Below`]; the chance that a probe
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
//! * **Aimed by an exact guide.** A first look (8 samples) is too coarse to interpolate from
//!   (with E-LPIPS the line alone took as many probes as bisection). Given a guide — a cheap,
//!   exact metric of the same family, LPIPS-VGG for E-LPIPS — the search models the probe
//!   metric as `guide(q) * ratio(q)`, the ratio measured at every probe and interpolated between
//!   them, and aims each probe where that model crosses T, solving on the exact guide curve
//!   (a few guide evaluations, each one encode and one network pass with the reference's taps
//!   reused). The probes still decide: the guide only chooses where to look, and the safeguard
//!   and bracket are unchanged.

use std::cell::{Cell, Ref, RefCell};
use std::collections::HashMap;

use crate::estimate::decision::{Gate, Side};
use crate::error::{Error, Result};
use crate::estimate::Estimate;
use crate::image::Image;
use crate::metric::{Metric, MetricOptions};
use crate::network::models::MetricKind;

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
    /// The distance threshold T.
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
    /// What the search looks for.
    pub goal: Goal,
    /// Lowest setting (worst quality).
    pub min_setting: i32,
    /// Highest setting (best quality).
    pub max_setting: i32,
    /// First setting to probe; `None` = the middle of the range.
    pub start: Option<i32>,
    /// Probes at most (each one encode); the search returns its best so far when it runs out.
    pub max_probes: u32,
    /// How each probe is judged against T.
    pub rule: ProbeRule,
}

impl TuneOptions {
    /// A search of `min_setting..=max_setting` for `goal`: start in the middle, at most 16
    /// probes, the default probe rule.
    pub fn new(goal: Goal, min_setting: i32, max_setting: i32) -> Self {
        TuneOptions { goal, min_setting, max_setting, start: None, max_probes: 16, rule: ProbeRule::default() }
    }

    /// Refuses a threshold, range, start, probe count or rule no search can use.
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
    /// The encoder setting.
    pub setting: i32,
    /// Size of the encoded output.
    pub bytes: u64,
    /// Its distance to the reference.
    pub estimate: Estimate,
    /// Where the gate put it relative to T.
    pub side: Side,
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
    /// Every guide evaluation, in the order made (empty without a guide).
    pub guide: Vec<GuidePoint>,
    /// Encodes made: one per probe or guide evaluation, except that a call for the same setting
    /// as the one before reuses its encode.
    pub encodes: u64,
}

/// An exact metric that aims the probes (see the module doc).
pub struct Guide<'a> {
    /// The guide's distance at a setting (encode + one network pass).
    pub distance: &'a mut dyn FnMut(i32) -> Result<f64>,
    /// The probe metric's distance over the guide's expected before any probe, which aims the
    /// first probe (unless `TuneOptions::start` is given); `None`: the first probe bisects.
    pub prior_ratio: Option<f64>,
}

/// E-LPIPS (elpips-vgg) over LPIPS-VGG, measured at the probes of JPEG, WebP, AVIF and JPEG XL
/// searches on three 64x64 test images: 0.045 to 0.11, most within 0.05 to 0.07
/// (docs/codec.md); it aims the first probe.
pub const ELPIPS_OVER_LPIPS_VGG: f64 = 0.063;

/// The guide `--guide auto` / `ELPIPS_TUNE_GUIDE_AUTO` picks for a probe metric: LPIPS-VGG for
/// E-LPIPS; none for the LPIPS metrics, which are exact themselves.
pub fn auto_guide(probe: MetricKind) -> Option<MetricKind> {
    probe.is_ensemble().then_some(MetricKind::LpipsVgg)
}

/// Loads the guide `kind` with `probe`'s model directory and runtime.
pub fn open_guide(probe: &Metric, kind: MetricKind) -> Result<Metric> {
    let o = probe.options();
    Metric::new(MetricOptions { metric: kind, model_dir: o.model_dir.clone(), runtime: o.runtime.clone(), ..Default::default() })
}

/// The prior ratio of `probe` over `guide` distances, where one is known.
pub fn prior_ratio(probe: MetricKind, guide: MetricKind) -> Option<f64> {
    match (probe, guide) {
        (p, g) if p == g => Some(1.0),
        (MetricKind::ElpipsVgg, MetricKind::LpipsVgg) => Some(ELPIPS_OVER_LPIPS_VGG),
        _ => None,
    }
}

/// One evaluation of the guide metric (exact).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuidePoint {
    /// The encoder setting.
    pub setting: i32,
    /// The guide metric's distance there.
    pub distance: f64,
}

impl Outcome {
    /// The probe the search chose, if any met the goal.
    pub fn chosen_probe(&self) -> Option<&Probe> {
        self.chosen.map(|i| &self.probes[i])
    }
}

/// The output of one encode: its size and the decoded pixels.
pub struct Encoded {
    /// Size of the encoded output.
    pub bytes: u64,
    /// Identifies byte-identical outputs (e.g. a hash of the file); `None` = never identical.
    pub fingerprint: Option<u64>,
    /// The output decoded again, to compare with the reference.
    pub decoded: Image,
}

/// Searches `options`' setting range, encoding with `encode` and comparing each decoded output to
/// `reference` with `metric` (its seed keys the common draws of every probe). `guide`, when
/// given, is an exact metric (LPIPS-VGG for E-LPIPS) that aims the probes (see the module doc).
pub fn tune(
    metric: &mut Metric,
    guide: Option<&mut Metric>,
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
    // The guide and the probe often ask for the same setting one after the other: the last
    // encode is kept so that it is not made twice.
    let last_cell: RefCell<Option<(i32, Encoded)>> = RefCell::new(None);
    let last = &last_cell;
    let encodes_cell = Cell::new(0u64);
    let encodes = &encodes_cell;
    let encode = RefCell::new(encode);
    let encoded = |setting: i32| -> Result<Ref<'_, Encoded>> {
        if !matches!(&*last.borrow(), Some((s, _)) if *s == setting) {
            let e = (encode.borrow_mut())(setting)?;
            encodes.set(encodes.get() + 1);
            *last.borrow_mut() = Some((setting, e));
        }
        Ok(Ref::map(last.borrow(), |l| &l.as_ref().expect("just encoded").1))
    };
    let prior = guide.as_ref().and_then(|g| prior_ratio(metric.kind(), g.kind()));
    let mut guide_fn = match guide {
        Some(g) => {
            let prepared = g.prepare_reference(reference)?;
            Some(move |setting: i32| -> Result<f64> { Ok(g.compare_reference(&prepared, &encoded(setting)?.decoded)?.distance) })
        }
        None => None,
    };
    let mut outcome = search(
        options,
        &mut |setting| {
            let e = encoded(setting)?;
            if let Some(prev) = e.fingerprint.and_then(|f| seen.get(&f)) {
                return Ok(Probe { setting, bytes: e.bytes, same_as: Some(prev.setting), ..*prev });
            }
            let (estimate, side) = judge(metric, reference, &e.decoded, goal, &rule)?;
            samples += estimate.samples;
            let probe = Probe { setting, bytes: e.bytes, estimate, side, same_as: None };
            if let Some(f) = e.fingerprint {
                seen.insert(f, probe);
            }
            Ok(probe)
        },
        guide_fn.as_mut().map(|g| Guide { distance: g as &mut dyn FnMut(i32) -> Result<f64>, prior_ratio: prior }),
    )?;
    outcome.samples = samples;
    outcome.encodes = encodes.get();
    Ok(outcome)
}

/// Judges `candidate` against `goal`'s threshold with the probe's gate ([`Metric::decide`]).
/// Sample `i` is drawn from stream `(seed, i)` of the metric's seed, so every probe of one
/// metric shares its draws (common random numbers).
pub fn judge(metric: &mut Metric, reference: &Image, candidate: &Image, goal: Goal, rule: &ProbeRule) -> Result<(Estimate, Side)> {
    let decision = metric.decide(reference, candidate, &rule.gate(goal.threshold()))?;
    Ok((decision.estimate, decision.verdict))
}

/// The search over settings, given a way to probe one (encode + judge) and optionally an exact
/// guide metric at a setting (encode + one network pass). Exposed so that callers with their own
/// probe (the benchmark, tests) share the exact same logic.
pub fn search(
    options: &TuneOptions,
    probe: &mut dyn FnMut(i32) -> Result<Probe>,
    guide: Option<Guide<'_>>,
) -> Result<Outcome> {
    options.validate()?;
    let prior = guide.as_ref().and_then(|g| g.prior_ratio);
    let mut guide = guide.map(|g| g.distance);
    let mut guided: Vec<GuidePoint> = vec![];
    let mut guide_at = |setting: i32| -> Result<Option<f64>> {
        let Some(g) = guide.as_mut() else { return Ok(None) };
        if let Some(p) = guided.iter().find(|p| p.setting == setting) {
            return Ok(Some(p.distance));
        }
        let distance = g(setting)?;
        guided.push(GuidePoint { setting, distance });
        Ok(Some(distance))
    };
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
        Side::Below => true,
        Side::Above => false,
        // A maximum distance needs a probe shown to meet it; a target only needs the side.
        Side::Undecided => target && p.estimate.distance <= t,
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
        let next = if let (true, Some(start)) = (probes.is_empty(), options.start) {
            start as i64
        } else if stalled {
            bisect
        } else if let Some(x) = aim(&probes, (l, h), (lo as i64, hi as i64), t * lean(&probes, (l, h), (lo as i64, hi as i64), run).exp(), target, prior, &mut guide_at)? {
            x
        } else if probes.is_empty() {
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
            .filter(|&i| probes[i].side == Side::Below)
            .min_by_key(|&i| (probes[i].bytes, probes[i].setting)),
        Goal::Target(_) => (0..probes.len()).min_by(|&a, &b| {
            let key = |p: &Probe| ((p.estimate.distance - t).abs(), p.bytes);
            key(&probes[a]).partial_cmp(&key(&probes[b])).unwrap_or(std::cmp::Ordering::Equal)
        }),
    };
    Ok(Outcome { probes, chosen, samples: 0, guide: guided, encodes: 0 })
}

/// How far (in log-distance) the guided aim leans past T, so that probes close the bracket
/// instead of creeping up on the crossing from one side: while one end of the bracket is open,
/// towards it; when the last two probes moved the same end, towards the other. By the relative
/// 95% half-width of the last probe, the size of the model's error there.
fn lean(probes: &[Probe], (l, h): (i64, i64), (lo, hi): (i64, i64), run: i32) -> f64 {
    let Some(last) = probes.last() else { return 0.0 };
    let u = (last.estimate.ci95 / last.estimate.distance.max(1e-9)).clamp(0.02, 0.5);
    if h > hi || run >= 2 {
        -u
    } else if l < lo || run <= -2 {
        u
    } else {
        0.0
    }
}

/// The next setting from the guide (`None` without one, or when the bracket's ends do not lie
/// on either side of T): where `guide(q) * ratio(q)` crosses T inside the bracket `(l, h)`
/// (exclusive), `ratio` being probe / guide measured at each probe and interpolated linearly in
/// the setting between them (constant beyond; `prior` before any probe). An open end of the
/// bracket is closed by the guide at the range's end. The crossing is solved on the integers by
/// regula falsi with the Illinois weighting, bisecting when one end is kept three times.
fn aim(
    probes: &[Probe],
    (l, h): (i64, i64),
    (lo, hi): (i64, i64),
    t: f64,
    target: bool,
    prior: Option<f64>,
    guide: &mut dyn FnMut(i32) -> Result<Option<f64>>,
) -> Result<Option<i64>> {
    if probes.is_empty() && prior.is_none() {
        return Ok(None);
    }
    let ln = |x: f64| x.max(1e-9).ln();
    // (setting, ln probe - ln guide) at every probe, by setting.
    let mut ratios: Vec<(i64, f64)> = vec![];
    for p in probes {
        let Some(g) = guide(p.setting)? else { return Ok(None) };
        ratios.push((p.setting as i64, ln(p.estimate.distance) - ln(g)));
    }
    ratios.sort_by_key(|r| r.0);
    let ratio = |q: i64| -> f64 {
        let after = ratios.partition_point(|r| r.0 < q);
        match (after.checked_sub(1).map(|i| ratios[i]), ratios.get(after)) {
            (Some(a), Some(b)) if b.0 > a.0 => a.1 + (b.1 - a.1) * (q - a.0) as f64 / (b.0 - a.0) as f64,
            (_, Some(b)) => b.1,
            (Some(a), None) => a.1,
            (None, None) => prior.map_or(0.0, f64::ln),
        }
    };
    // The modelled log-residual against T: positive above T, negative below.
    let mut f = |q: i64| -> Result<f64> {
        let g = guide(q as i32)?.expect("a guide is present");
        Ok(ln(g) + ratio(q) - ln(t))
    };
    // Close the bracket's open ends with the range's ends: the model may already put the whole
    // rest of the range on one side.
    let (mut a, mut fa) = if l < lo { (lo, f(lo)?) } else { (l, f(l)?) };
    if l < lo && fa <= 0.0 {
        return Ok(Some(lo));
    }
    let (mut b, mut fb) = if h > hi { (hi, f(hi)?) } else { (h, f(h)?) };
    if h > hi && fb > 0.0 {
        return Ok(Some(hi));
    }
    // `t` leaned past a probed end: go as far that way as the bracket allows.
    match (fa > 0.0, fb <= 0.0) {
        (true, true) => {}
        (false, true) => return Ok(Some(a + 1)),
        (true, false) => return Ok(Some(b - 1)),
        (false, false) => return Ok(None),
    }
    let mut side = 0i32;
    while b - a > 1 {
        let width = b - a;
        let x = a as f64 + fa / (fa - fb) * width as f64;
        let mut x = (x.round() as i64).clamp(a + 1, b - 1);
        if side.abs() >= 3 {
            x = a + width / 2;
        }
        let fx = f(x)?;
        // Illinois: an end kept twice in a row has its value halved, so the line cannot creep
        // up on the crossing from one side; kept three times, the next step bisects.
        if fx > 0.0 {
            (a, fa) = (x, fx);
            if side > 0 {
                fb *= 0.5;
            }
            side = side.max(0) + 1;
        } else {
            (b, fb) = (x, fx);
            if side < 0 {
                fa *= 0.5;
            }
            side = side.min(0) - 1;
        }
    }
    // The model puts the crossing between a and b = a + 1; the probe goes to the side not yet
    // probed (the nearer to T for a target).
    let pick_a = if b >= h {
        true
    } else if a <= l {
        false
    } else {
        target && f(a)?.abs() < f(b)?.abs()
    };
    Ok(Some(if pick_a { a } else { b }))
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
            let side = if d <= goal.threshold() { Side::Below } else { Side::Above };
            let estimate = Estimate { distance: d, std_error: 0.0, ci95: 0.0, samples: 1, converged: true };
            Ok(Probe { setting: s, bytes: 100 + 10 * s as u64, estimate, side, same_as: None })
        }, None)
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

    /// A noisy probe metric over an exact guide: the probe is `ratio(q) * guide(q)` with a ratio
    /// that drifts with the setting, each estimate off by up to 10% (a first look), or 2% when
    /// the first look straddles T (more samples).
    fn noisy(goal: Goal, guided: bool, calls: &mut Vec<i32>) -> Outcome {
        noisy_with_prior(goal, guided, 0.06, calls)
    }

    fn noisy_with_prior(goal: Goal, guided: bool, prior: f64, calls: &mut Vec<i32>) -> Outcome {
        let guide = |s: i32| 0.3 * (-(s as f64) / 30.0).exp() + 0.02 * (-(s as f64) / 8.0).exp();
        let truth = |s: i32| guide(s) * 0.06 * (1.0 + 0.5 * s as f64 / 100.0);
        let t = goal.threshold();
        let options = TuneOptions::new(goal, 0, 100);
        let mut g = |s: i32| Ok(guide(s));
        let g = Guide { distance: &mut g, prior_ratio: Some(prior) };
        search(
            &options,
            &mut |s| {
                calls.push(s);
                let u = ((s as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0;
                let d = truth(s);
                let (mut est, mut ci) = (d * (1.0 + 0.1 * u), 0.15 * d);
                if (est - t).abs() < ci {
                    (est, ci) = (d * (1.0 + 0.02 * u), 0.03 * d);
                }
                let side = if est + ci <= t {
                    Side::Below
                } else if est - ci > t {
                    Side::Above
                } else {
                    Side::Undecided
                };
                let estimate = Estimate { distance: est, std_error: ci / 1.96, ci95: ci, samples: 16, converged: false };
                Ok(Probe { setting: s, bytes: 100 + 10 * s as u64, estimate, side, same_as: None })
            },
            if guided { Some(g) } else { None },
        )
        .unwrap()
    }

    #[test]
    fn a_guide_aims_noisy_probes_in_fewer_probes_than_the_line() {
        let (mut with, mut without) = (0, 0);
        for t in [0.015, 0.01, 0.007, 0.005, 0.003, 0.002] {
            for guided in [true, false] {
                let mut calls = vec![];
                let out = noisy(Goal::MaxDistance(t), guided, &mut calls);
                let p = out.chosen_probe().unwrap_or_else(|| panic!("T = {t}: no answer"));
                // The answer's neighbour below was probed and not shown to meet T.
                let below = out.probes.iter().find(|q| q.setting == p.setting - 1);
                assert!(p.setting == 0 || below.is_some_and(|q| q.side != Side::Below), "T = {t}, guided {guided}: {:?}", out.probes);
                eprintln!("T = {t} guided {guided}: {calls:?} guide evaluations {}", out.guide.len());
                if guided {
                    with += calls.len();
                } else {
                    without += calls.len();
                }
            }
        }
        eprintln!("guided {with}, unguided {without} probes");
        // Bisection over 101 settings: 7 probes per threshold.
        assert!(with * 10 <= 6 * 45, "guided: {with} probes for 6 thresholds");
        assert!(with < without);
    }

    #[test]
    fn a_guided_target_lands_next_to_t() {
        for t in [0.012, 0.005, 0.002] {
            let mut calls = vec![];
            let out = noisy(Goal::Target(t), true, &mut calls);
            let p = out.chosen_probe().unwrap();
            // The probes either side of the crossing were both made.
            let other = if p.estimate.distance <= t { p.setting - 1 } else { p.setting + 1 };
            assert!(out.probes.iter().any(|q| q.setting == other), "T = {t}: {calls:?}");
            assert!(calls.len() <= 6, "T = {t}: {calls:?}");
        }
    }

    #[test]
    fn a_wrong_prior_costs_a_probe_or_two_not_the_answer() {
        for prior in [0.006, 0.6] {
            for t in [0.01, 0.003] {
                let mut calls = vec![];
                let out = noisy_with_prior(Goal::MaxDistance(t), true, prior, &mut calls);
                let p = out.chosen_probe().unwrap();
                let below = out.probes.iter().find(|q| q.setting == p.setting - 1);
                assert!(below.is_some_and(|q| q.side != Side::Below), "prior {prior}, T = {t}: {calls:?}");
                assert!(calls.len() <= 8, "prior {prior}, T = {t}: {calls:?}");
            }
        }
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
            Ok(Probe { setting: s, bytes: 1, estimate, side: Side::Above, same_as: None })
        }, None)
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
