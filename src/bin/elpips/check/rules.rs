//! The tolerances of a pair beyond `max_distance`: the rules on the heatmap (`--pixel-threshold`
//! with `--max-fail-percent`, `--hard-fail`), the preset files that name tolerance sets, and the
//! measurement that decides the map rules ([`measure_map`]). What a map result must satisfy on
//! read, and how the rule families combine into a pass, live in [`super::summary`]
//! (`map_verdict`, `pair_passes`) so that merges check them alike.
//!
//! How a map rule decides (docs/renderer.md, "Rules on the heatmap"): the heatmap is a
//! Monte-Carlo mean too. The rule takes `--map-samples` iid samples in pairs under seeds
//! derived from `--seed`; per pixel, the mean of the pair means and its standard error give
//! bounds `mean -/+ t x se`, with `t` the Student-t quantile at `1 - alpha / (2 pixels)`
//! (K - 1 degrees of freedom for K pairs): Bonferroni over every pixel and both sides, so all
//! pixels' bounds hold at once with probability at least `1 - alpha`, and then every decided
//! map verdict is right. A pixel is surely above V when its lower bound is, possibly above when
//! its upper bound is; the share rule fails when the surely-above share exceeds P%, passes when
//! the possibly-above share is within P%, and is undecided in between.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use elpips::{Error, Heatmap, Image, Metric, SamplerKind};
use serde::Deserialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::manifest::{read_input, Case, FailPercent, HardFail, PixelThreshold, Threshold};
use super::summary::{map_verdict, MapResult};
use super::invalid;

/// Largest preset file read.
const MAX_PRESETS_BYTES: u64 = 1 << 20;

/// One named tolerance set (every value optional; a row's own columns win over it).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerances {
    pub max_distance: Option<Threshold>,
    pub pixel_threshold: Option<PixelThreshold>,
    pub max_fail_percent: Option<FailPercent>,
    pub hard_fail: Option<HardFail>,
}

/// A `--presets` file: TOML with one table per preset, `[presets.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    presets: BTreeMap<String, Tolerances>,
}

/// The presets of a file, by name.
pub struct Presets {
    pub path: PathBuf,
    by_name: BTreeMap<String, Tolerances>,
}

impl Presets {
    pub fn read(path: &Path) -> Result<Presets, Error> {
        let bytes = read_input(path, MAX_PRESETS_BYTES, "preset file", "a preset file holds tolerances, not data")?;
        let p = path.display();
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid(format!("preset file {p} is not UTF-8 text")))?;
        let file: PresetFile = toml::from_str(text).map_err(|e| {
            // toml's message is several lines (a source excerpt); the first and the line number
            // are the one line a person needs.
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let first = e.message().lines().next().unwrap_or("invalid TOML").to_owned();
            invalid(match line {
                Some(l) => format!("preset file {p}:{l}: {first} (a preset file is TOML: [presets.NAME] tables of max_distance, pixel_threshold, max_fail_percent, hard_fail)"),
                None => format!("preset file {p}: {first}"),
            })
        })?;
        if file.presets.is_empty() {
            return Err(invalid(format!("preset file {p} defines no presets (add a [presets.NAME] table)")));
        }
        for (name, t) in &file.presets {
            if t.pixel_threshold.is_some() != t.max_fail_percent.is_some() {
                return Err(invalid(format!("preset file {p}: preset `{name}`: pixel_threshold and max_fail_percent go together")));
            }
        }
        Ok(Presets { path: path.to_owned(), by_name: file.presets })
    }

    fn get(&self, name: &str) -> Result<&Tolerances, String> {
        self.by_name.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            format!("unknown preset `{name}` (presets in {}: {})", self.path.display(), names.join(", "))
        })
    }
}

/// The command line's tolerances (the fallback of every row).
#[derive(Clone, Copy, Debug, Default)]
pub struct Defaults {
    pub max_distance: Option<f64>,
    pub pixel_threshold: Option<f64>,
    pub max_fail_percent: Option<f64>,
    pub hard_fail: Option<f64>,
}

/// Fills in a case's tolerances, most specific first: its own columns, then its preset (the
/// row's, or `--preset`), then the command line. `Err` is the reason, without the row.
pub fn resolve(case: &mut Case, presets: Option<&Presets>, default_preset: Option<&str>, cli: &Defaults) -> Result<(), String> {
    let preset = match case.preset.clone().or(default_preset.map(str::to_owned)) {
        None => Tolerances::default(),
        Some(name) => {
            let presets = presets.ok_or_else(|| format!("it names preset `{name}`, but --presets FILE was not given"))?;
            let t = presets.get(&name)?.clone();
            case.preset = Some(name);
            t
        }
    };
    case.max_distance = case.max_distance.or(preset.max_distance.map(|t| t.0)).or(cli.max_distance);
    // The share rule's two numbers come as a pair from one source, never mixed.
    if case.pixel_threshold.is_none() && case.max_fail_percent.is_none() {
        (case.pixel_threshold, case.max_fail_percent) = match (preset.pixel_threshold, preset.max_fail_percent) {
            (Some(v), Some(p)) => (Some(v.0), Some(p.0)),
            _ => (cli.pixel_threshold, cli.max_fail_percent),
        };
    }
    case.hard_fail = case.hard_fail.or(preset.hard_fail.map(|t| t.0)).or(cli.hard_fail);
    if case.pixel_threshold.is_some() != case.max_fail_percent.is_some() {
        return Err("pixel_threshold and max_fail_percent go together (a share of pixels above a value)".into());
    }
    Ok(())
}

/// Whether a case has a rule on its heatmap.
pub fn has_map_rule(case: &Case) -> bool {
    case.pixel_threshold.is_some() || case.hard_fail.is_some()
}

/// The seed of the map rule's `k`-th pair of samples: apart from the gate's draws, which use
/// `seed` itself, and from each other (a fixed odd multiplier, so no two k share a seed).
fn map_seed(seed: u64, k: u64) -> u64 {
    seed ^ 0x6d61_7072_756c_6500u64.wrapping_add((k + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Decides a case's map rules at `error_rate`: `samples` iid heatmap samples in pairs (the
/// fewest iid draws with a standard error, so each pair is one map of the library's
/// [`Metric::heatmap_of_draws`]), the per-pixel bounds of the module docs, and the verdict.
/// Returns the result and the mean map.
pub fn measure_map(
    metric: &mut Metric,
    reference: &Image,
    candidate: &Image,
    case: &Case,
    samples: u32,
    error_rate: f64,
) -> Result<(MapResult, Heatmap), Error> {
    let seed = metric.options().seed;
    let pairs = (samples / 2) as usize;
    let (w, h) = (reference.width(), reference.height());
    let n = w as usize * h as usize;
    let (mut sum, mut sum_sq) = (vec![0.0f64; n], vec![0.0f64; n]);
    for k in 0..pairs {
        let (_, map) = metric.heatmap_of_draws(reference, candidate, SamplerKind::Iid, map_seed(seed, k as u64), 2)?;
        for ((s, q), &v) in sum.iter_mut().zip(sum_sq.iter_mut()).zip(map.data()) {
            *s += v as f64;
            *q += v as f64 * v as f64;
        }
    }
    let k = pairs as f64;
    let t = StudentsT::new(0.0, 1.0, k - 1.0).map_err(|e| invalid(format!("map rule: {e}")))?.inverse_cdf(1.0 - error_rate / (2.0 * n as f64));
    let (mut above, mut surely, mut possibly) = (0u64, 0u64, 0u64);
    let (mut max, mut max_lower, mut max_upper) = (0.0f64, f64::NEG_INFINITY, 0.0f64);
    let mut mean = Vec::with_capacity(n);
    let v = case.pixel_threshold.unwrap_or(f64::INFINITY);
    for (s, q) in sum.iter().zip(&sum_sq) {
        let mu = s / k;
        let var = ((q - k * mu * mu) / (k - 1.0)).max(0.0);
        let half = t * (var / k).sqrt();
        let (lo, hi) = (mu - half, mu + half);
        above += (mu > v) as u64;
        surely += (lo > v) as u64;
        possibly += (hi > v) as u64;
        max = max.max(mu);
        max_lower = max_lower.max(lo);
        max_upper = max_upper.max(hi);
        mean.push(mu as f32);
    }
    let percent = |c: u64| 100.0 * c as f64 / n as f64;
    let share = case.pixel_threshold.is_some();
    let mut result = MapResult {
        fail_percent: share.then(|| percent(above)),
        fail_percent_lower: share.then(|| percent(surely)),
        fail_percent_upper: share.then(|| percent(possibly)),
        max,
        max_lower,
        max_upper,
        samples: (pairs * 2) as u64,
        verdict: super::summary::SideName::Undecided,
    };
    result.verdict = map_verdict(&result, case.pixel_threshold, case.max_fail_percent, case.hard_fail).map_err(invalid)?.0;
    Ok((result, Heatmap::new(w, h, mean)?))
}
