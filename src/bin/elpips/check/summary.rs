//! The summary format of `elpips check --summary` (read back by `--merge`): typed structs that
//! write it and read it (serde; unknown fields refused), the per-pair [`CaseResult`] every
//! report is made from, and [`parse_summary`], which refuses a summary that is out of range or
//! not internally consistent, or whose digest does not match its contents. Depends only on
//! serde, serde_json, the library and its sibling `manifest`, so the fuzz targets include both
//! files as they are.
//!
//! Fields are declared in alphabetical order: that is the order serde_json wrote them in when
//! summaries were built as `Value`s, so the files read the same.

use std::path::Path;

use elpips::{Error, Gate, MetricKind};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

// A sibling wherever this file is included (the CLI's check module, the fuzz harness).
use super::manifest::json_message as message;

/// Version of the summary format. 2: adds `digest` (required) and checks every field on read.
pub const SUMMARY_FORMAT: u64 = 2;
/// Largest summary read.
pub const MAX_SUMMARY_BYTES: u64 = 64 << 20;
/// Most manifest rows a summary may claim: more than a manifest of [`MAX_SUMMARY_BYTES`] can
/// hold (a row is at least 4 bytes), so a genuine summary never hits it.
pub const MAX_ROWS: u64 = 1 << 24;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The CPU kernels that ran (`mlas`, `openvino`; a merge lists its parts'). Not a setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub counts: Counts,
    /// Where the networks ran (`cpu`, `cuda`; a merge lists its parts' devices, `cpu,cuda`).
    /// Not a setting: shards may run on different machines and still merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// sha256 of [`Summary::canonical`]: a check that the file is whole and unedited, not a
    /// signature (anyone can recompute it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub elpips_check: u64,
    pub manifest: Option<String>,
    pub manifest_rows: u64,
    pub manifest_sha256: Option<String>,
    /// The summaries a `--merge` read (absent in a summary that checked images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Vec<String>>,
    pub results: Vec<CaseResult>,
    #[serde(deserialize_with = "seconds_nonneg")]
    pub seconds: f64,
    pub settings: Settings,
    pub shard: Option<Shard>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub error: u64,
    pub fail: u64,
    pub pass: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub count: u64,
    pub index: u64,
}

/// What the verdicts depend on; summaries merge only when theirs are equal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Each pair's chance of a wrong decided verdict: `--error-rate`, or with
    /// `--suite-error-rate` that rate divided over the manifest's rows.
    pub error_rate: f64,
    pub lin_weights: Option<String>,
    /// Samples of the map rules' heatmap (present when some row has a map rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_samples: Option<u32>,
    pub max_samples: u32,
    pub metric: String,
    pub min_samples: u32,
    /// The networks' precision (`fp32`, `fp16`, `int8`); absent in summaries written before it
    /// was recorded, which keep their digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    pub sampler: String,
    pub scale_levels: Option<u32>,
    pub seed: u64,
    /// `--suite-error-rate`: the chance that any decided verdict of the run is wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite_error_rate: Option<f64>,
    pub undecided: Undecided,
    /// `--tile-samples`: E-LPIPS draws above 0.3 Mpx were tile-sampled (each result's
    /// `sample_area` says whether its pair's were); absent: every sample ran its whole pair.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tile_samples: bool,
    /// `--cheap-draws K`: two-stream estimates, K cheap draws per full sample, on pairs up to
    /// ~540 x 540 (each result's `cheap_draws` counts its own); absent: one stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cheap_draws: Option<u32>,
}

/// Which part of its pair an E-LPIPS sample evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleAreaName {
    /// Draws above 0.3 Mpx evaluated one tile each (`--tile-samples`).
    Tiles,
    /// Every sample evaluated its whole pair.
    Whole,
}

/// How a pair still undecided after the last look is settled (`--undecided`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Undecided {
    /// By the point estimate's side, with a warning.
    Estimate,
    /// Pass it.
    Pass,
    /// Fail it.
    Fail,
}

impl Undecided {
    pub fn name(self) -> &'static str {
        match self {
            Undecided::Estimate => "estimate",
            Undecided::Pass => "pass",
            Undecided::Fail => "fail",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Error,
}

/// The gate's verdict as written (`elpips::Side::name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SideName {
    Below,
    Above,
    Undecided,
}

/// One pair's outcome: the unit of summaries, JUnit cases and text lines. The measurement
/// fields are there when the pair was decided (also for an error after the verdict, such as a
/// heatmap that could not be written), absent when the images could not be compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseResult {
    pub candidate: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_ci95")]
    pub ci95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_distance")]
    pub distance: Option<f64>,
    /// The row's `--hard-fail` rule: fail when any pixel's heatmap value is above it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_hard_fail")]
    pub hard_fail: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<HeatmapInfo>,
    /// The sequential bounds; `null` when not finite (serde_json writes NaN and infinities so).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_bound")]
    pub lower: Option<f64>,
    /// What the map rules measured (when the row has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapResult>,
    /// The distance rule; absent on a row gated by its map rules alone.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_max_distance")]
    pub max_distance: Option<f64>,
    /// The row's `--max-fail-percent` (with `pixel_threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_percent")]
    pub max_fail_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub name: String,
    /// The row's `--pixel-threshold` (with `max_fail_percent`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_pixel_threshold")]
    pub pixel_threshold: Option<f64>,
    /// The preset the row's tolerances came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    pub reference: String,
    pub row: u64,
    /// Whether the verdict's draws were tile-sampled (`tiles`) or whole (`whole`; E-LPIPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_area: Option<SampleAreaName>,
    /// Two streams: the cheap-only draws beside `samples` full samples (absent: one stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cheap_draws: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
    #[serde(deserialize_with = "seconds_nonneg")]
    pub seconds: f64,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_std_error")]
    pub std_error: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_bound")]
    pub upper: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<SideName>,
}

/// The map rules' evidence: per pixel, the mean of `samples` heatmap samples and simultaneous
/// bounds `mean -/+ t x std_error` over all pixels (docs/renderer.md, "Rules on the heatmap").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapResult {
    /// Percent of pixels whose mean is above `pixel_threshold` (the point estimate).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_percent")]
    pub fail_percent: Option<f64>,
    /// Percent of pixels whose lower bound is above `pixel_threshold` (surely above).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_percent")]
    pub fail_percent_lower: Option<f64>,
    /// Percent of pixels whose upper bound is above `pixel_threshold` (possibly above).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "some_percent")]
    pub fail_percent_upper: Option<f64>,
    /// Largest pixel mean.
    #[serde(deserialize_with = "max_nonneg")]
    pub max: f64,
    /// Largest pixel lower bound (`hard_fail` fails for sure when it is above).
    pub max_lower: f64,
    /// Largest pixel upper bound (`hard_fail` passes for sure when it is at most).
    #[serde(deserialize_with = "max_upper_nonneg")]
    pub max_upper: f64,
    pub samples: u64,
    /// `below`: within every map rule; `above`: outside one; `undecided`: the bounds straddle.
    pub verdict: SideName,
}

/// Each pair's error rate under a suite error rate `suite` over `rows` pairs (Bonferroni: by the
/// union bound, the chance that any decided verdict is wrong is at most `suite`).
pub fn row_error_rate(suite: f64, rows: u64) -> f64 {
    suite / rows.max(1) as f64
}

/// A map result's verdict and the side its point estimates are on (pass = `true`): the one
/// rule that writes `MapResult::verdict` and the one that checks it on read.
pub fn map_verdict(m: &MapResult, pixel_threshold: Option<f64>, max_fail_percent: Option<f64>, hard_fail: Option<f64>) -> Result<(SideName, bool), String> {
    // Each rule: (surely fails, surely passes, its point estimate passes).
    let mut rules = Vec::new();
    match (pixel_threshold, max_fail_percent, m.fail_percent, m.fail_percent_lower, m.fail_percent_upper) {
        (Some(_), Some(p), Some(f), Some(lo), Some(hi)) => {
            if !(lo <= f && f <= hi) {
                return Err(format!("map fail_percent {f} is not within [{lo}, {hi}]"));
            }
            rules.push((lo > p, hi <= p, f <= p));
        }
        (None, None, None, None, None) => {}
        _ => return Err("pixel_threshold, max_fail_percent and the map's fail_percent, fail_percent_lower and fail_percent_upper go together".into()),
    }
    if let Some(h) = hard_fail {
        rules.push((m.max_lower > h, m.max_upper <= h, m.max <= h));
    }
    if rules.is_empty() {
        return Err("a map result needs a map rule (pixel_threshold with max_fail_percent, or hard_fail)".into());
    }
    if !(m.max_lower <= m.max && m.max <= m.max_upper) {
        return Err(format!("map max {} is not within [{}, {}]", m.max, m.max_lower, m.max_upper));
    }
    let verdict = if rules.iter().any(|r| r.0) {
        SideName::Above
    } else if rules.iter().all(|r| r.1) {
        SideName::Below
    } else {
        SideName::Undecided
    };
    Ok((verdict, rules.iter().all(|r| r.2)))
}

/// Whether a pair passes, from each rule family's verdict and the side of its point estimate:
/// any rule surely failed fails it, every rule surely passed passes it, and otherwise
/// `undecided` settles it (by the point estimates, or pass, or fail).
pub fn pair_passes(verdicts: &[(SideName, bool)], undecided: Undecided) -> bool {
    if verdicts.iter().any(|v| v.0 == SideName::Above) {
        return false;
    }
    if verdicts.iter().all(|v| v.0 == SideName::Below) {
        return true;
    }
    match undecided {
        Undecided::Pass => true,
        Undecided::Fail => false,
        Undecided::Estimate => verdicts.iter().all(|v| v.0 == SideName::Below || (v.0 == SideName::Undecided && v.1)),
    }
}

/// Where a pair's heatmap was written and its scale (`HeatmapArgs::write`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatmapInfo {
    pub colormap: String,
    #[serde(deserialize_with = "max_nonneg")]
    pub max: f64,
    #[serde(deserialize_with = "mean_nonneg")]
    pub mean: f64,
    pub path: String,
    #[serde(deserialize_with = "scale_max_nonneg")]
    pub scale_max: f64,
}

/// Deserialisers of numbers that must be finite and >= 0, one per field so that the error
/// names it (serde_json adds the line).
macro_rules! nonneg {
    ($($f:ident $some:ident $name:literal),*) => {$(
        fn $f<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
            let v = f64::deserialize(d)?;
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(D::Error::custom(format!(concat!($name, " {} must be a finite number >= 0"), v)))
            }
        }
        #[allow(dead_code)]
        fn $some<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            $f(d).map(Some)
        }
    )*};
}
nonneg!(
    seconds_nonneg some_seconds "seconds",
    max_distance_nonneg some_max_distance "max_distance",
    distance_nonneg some_distance "distance",
    std_error_nonneg some_std_error "std_error",
    ci95_nonneg some_ci95 "ci95",
    max_nonneg some_max "max",
    mean_nonneg some_mean "mean",
    scale_max_nonneg some_scale_max "scale_max",
    max_upper_nonneg some_max_upper "max_upper",
    hard_fail_nonneg some_hard_fail "hard_fail",
    pixel_threshold_nonneg some_pixel_threshold "pixel_threshold"
);

/// A percentage: finite, 0 to 100.
fn some_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = f64::deserialize(d)?;
    if (0.0..=100.0).contains(&v) {
        Ok(Some(v))
    } else {
        Err(D::Error::custom(format!("percentage {v} must be between 0 and 100")))
    }
}

/// A bound: a number, or `null` for one that was not finite (read as NaN, which no threshold
/// is below or above).
fn some_bound<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Some(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN)))
}

impl Summary {
    /// Fills in the counts and the digest (call last, after every change).
    pub fn seal(&mut self) {
        self.counts = counts(&self.results);
        self.digest = Some(self.compute_digest());
    }

    /// The serialisation the digest covers: compact JSON of everything but the digest.
    pub fn canonical(&self) -> Vec<u8> {
        let unsealed = Summary { digest: None, ..self.clone() };
        serde_json::to_vec(&unsealed).expect("a summary serialises")
    }

    pub fn compute_digest(&self) -> String {
        elpips::integrity::sha256_hex(&self.canonical())
    }

    /// The shard this summary covers (a whole run is shard 0 of 1).
    pub fn shard_or_whole(&self) -> Shard {
        self.shard.unwrap_or(Shard { index: 0, count: 1 })
    }
}

pub fn counts(results: &[CaseResult]) -> Counts {
    let mut c = Counts::default();
    for r in results {
        match r.status {
            Status::Pass => c.pass += 1,
            Status::Fail => c.fail += 1,
            Status::Error => c.error += 1,
        }
    }
    c
}

/// Reads a summary's bytes (`path` names it in errors) and checks everything a merge relies
/// on: the format, every field's type and range, that its results are exactly the rows of its
/// shard in order, that each result agrees with itself and the settings, the counts, and the
/// digest. Errors are one line.
pub fn parse_summary(bytes: &[u8], path: &Path) -> Result<Summary, Error> {
    let p = path.display();
    let bad = |msg: String| Error::InvalidArgument(format!("{p}: {msg}"));
    #[derive(Deserialize)]
    struct Format {
        elpips_check: Option<serde_json::Value>,
    }
    let format: Format = serde_json::from_slice(bytes).map_err(|e| {
        Error::InvalidArgument(format!("{p}:{}: not a JSON summary of `elpips check --summary`: {}", e.line(), message(&e)))
    })?;
    if format.elpips_check.as_ref().and_then(|v| v.as_u64()) != Some(SUMMARY_FORMAT) {
        return Err(bad(format!(
            "not a summary written by `elpips check --summary` (format {SUMMARY_FORMAT}, found {}); write it again with this elpips",
            format.elpips_check.map_or("none".to_string(), |v| v.to_string())
        )));
    }
    let s: Summary = serde_json::from_slice(bytes).map_err(|e| Error::InvalidArgument(format!("{p}:{}: {}", e.line(), message(&e))))?;

    let Some(digest) = &s.digest else { return Err(bad("has no digest; write it again with this elpips".into())) };
    if *digest != s.compute_digest() {
        return Err(bad("its digest does not match its contents: the file was truncated or edited; write it again with `elpips check --summary`".into()));
    }
    check_settings(&s.settings).map_err(|m| bad(format!("settings: {m}")))?;
    if let Some(a) = s.settings.suite_error_rate {
        // Every shard derives its pairs' rate from the whole manifest alike (Bonferroni).
        if s.manifest_sha256.is_none() || s.settings.error_rate != row_error_rate(a, s.manifest_rows) {
            return Err(bad(format!(
                "settings: error_rate {} is not suite_error_rate {a} over {} manifest rows",
                s.settings.error_rate, s.manifest_rows
            )));
        }
    }
    if s.manifest_rows == 0 || s.manifest_rows > MAX_ROWS {
        return Err(bad(format!("manifest_rows {} must be between 1 and {MAX_ROWS}", s.manifest_rows)));
    }
    match (&s.manifest, &s.manifest_sha256) {
        (Some(m), Some(sha)) => {
            if m.is_empty() {
                return Err(bad("manifest must not be empty".into()));
            }
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(bad(format!("manifest_sha256 `{sha}` is not a sha256 (64 lower-case hex digits)")));
            }
        }
        (None, None) => {
            if s.shard.is_some() {
                return Err(bad("a summary without a manifest has no shard".into()));
            }
        }
        _ => return Err(bad("manifest and manifest_sha256 go together".into())),
    }
    let Shard { index, count } = s.shard_or_whole();
    if count == 0 || count > s.manifest_rows || index >= count {
        return Err(bad(format!(
            "shard {index}/{count} is out of range: the shard count must be 1..={} (manifest_rows) and the index below it",
            s.manifest_rows
        )));
    }
    // Exactly the rows index, index + count, ... below manifest_rows, in that order.
    let expected = (s.manifest_rows - index).div_ceil(count);
    if s.results.len() as u64 != expected {
        return Err(bad(format!(
            "holds {} results, but shard {index}/{count} of {} rows has {expected}: a row is missing or added",
            s.results.len(),
            s.manifest_rows
        )));
    }
    for (k, r) in s.results.iter().enumerate() {
        let want = index + k as u64 * count;
        if r.row != want {
            return Err(bad(format!("results[{k}] is row {}, expected row {want} (rows {index}, {index}+{count}, ... in order)", r.row)));
        }
        check_result(r, &s.settings).map_err(|m| bad(format!("results[{k}] (row {}): {m}", r.row)))?;
    }
    if s.counts != counts(&s.results) {
        return Err(bad(format!("counts {:?} do not match its results", s.counts)));
    }
    Ok(s)
}

fn check_settings(s: &Settings) -> Result<(), String> {
    // The library's message alone, without its "invalid argument: " prefix.
    let reason = |e: Error| match e {
        Error::InvalidArgument(m) => m,
        other => other.to_string(),
    };
    MetricKind::from_name(&s.metric).map_err(reason)?;
    if !["iid", "stratified", "control"].contains(&s.sampler.as_str()) {
        return Err(format!("sampler `{}` is not one check uses (iid, stratified, control)", s.sampler));
    }
    let gate = Gate { threshold: 0.0, error_rate: s.error_rate, max_samples: s.max_samples, min_samples: s.min_samples };
    gate.validate().map_err(reason)?;
    if let Some(a) = s.suite_error_rate {
        if !(a > 0.0 && a < 0.5) {
            return Err(format!("suite_error_rate must be between 0 and 0.5 (exclusive), not {a}"));
        }
    }
    if s.map_samples.is_some_and(|n| n < 4) {
        return Err("map_samples must be at least 4".into());
    }
    if s.lin_weights.as_deref() == Some("") {
        return Err("lin_weights must not be empty".into());
    }
    Ok(())
}

/// A result agrees with itself: its status is what its verdict and the `undecided` policy give,
/// its bounds give its verdict, its sample count is within the settings.
fn check_result(r: &CaseResult, settings: &Settings) -> Result<(), String> {
    if r.name.is_empty() || r.reference.is_empty() || r.candidate.is_empty() {
        return Err("name, reference and candidate must not be empty".into());
    }
    let message = r.message.as_deref().filter(|m| !m.is_empty());
    if r.pixel_threshold.is_some() != r.max_fail_percent.is_some() {
        return Err("pixel_threshold and max_fail_percent go together".into());
    }
    let has_map_rule = r.pixel_threshold.is_some() || r.hard_fail.is_some();
    if r.max_distance.is_none() && !has_map_rule {
        return Err("a result needs a rule: max_distance or a map rule (pixel_threshold with max_fail_percent, or hard_fail)".into());
    }
    let measured = (r.verdict, r.distance, r.std_error, r.ci95, r.lower, r.upper, r.samples);
    // The distance family: (verdict, its point estimate passes, max_distance), when measured.
    let mut families = Vec::new();
    let mut distance_rule = None;
    match (measured, r.max_distance) {
        ((None, None, None, None, None, None, None), Some(_)) => {
            if r.status != Status::Error || message.is_none() {
                return Err("a result without a verdict must be an error with a message".into());
            }
            if r.heatmap.is_some() || r.map.is_some() {
                return Err("a result without a verdict has no heatmap or map result".into());
            }
            return Ok(());
        }
        // A map-only row: its map result (below) carries the verdict.
        ((None, None, None, None, None, None, None), None) => {
            if r.map.is_none() {
                if r.status != Status::Error || message.is_none() {
                    return Err("a map-only result without its map result must be an error with a message".into());
                }
                if r.heatmap.is_some() {
                    return Err("a result without a verdict has no heatmap".into());
                }
                return Ok(());
            }
        }
        ((Some(verdict), Some(distance), Some(_), Some(_), Some(lower), Some(upper), Some(samples)), Some(t)) => {
            if samples == 0 || samples > u64::from(settings.max_samples) {
                return Err(format!("samples {samples} must be between 1 and max_samples {}", settings.max_samples));
            }
            // The gate's own rule (decision.rs); a NaN bound (written as null) decides neither side.
            let (below, above) = (upper <= t, lower > t);
            let bounds_agree = match verdict {
                SideName::Below => below,
                SideName::Above => above,
                SideName::Undecided => !below && !above,
            };
            if !bounds_agree {
                return Err(format!("verdict {verdict:?} does not follow from the bounds [{lower}, {upper}] around max_distance {t}").to_lowercase());
            }
            families.push((verdict, distance <= t));
            distance_rule = Some((verdict, distance, t));
        }
        (_, None) => return Err("a result without max_distance has no distance verdict (verdict, distance, std_error, ci95, lower, upper, samples)".into()),
        _ => return Err("verdict, distance, std_error, ci95, lower, upper and samples go together".into()),
    }
    match (&r.map, has_map_rule) {
        (Some(m), true) => {
            if Some(m.samples) != settings.map_samples.map(u64::from) {
                return Err(format!("map samples {} are not the settings' map_samples {:?}", m.samples, settings.map_samples));
            }
            let (v, estimate) = map_verdict(m, r.pixel_threshold, r.max_fail_percent, r.hard_fail)?;
            if v != m.verdict {
                return Err(format!("map verdict {:?} does not follow from its bounds (they give {v:?})", m.verdict).to_lowercase());
            }
            families.push((v, estimate));
        }
        (Some(_), false) => return Err("a map result needs a map rule (pixel_threshold with max_fail_percent, or hard_fail)".into()),
        // Measured but without its map: only an error (the map could not be made) says why.
        (None, true) if r.status != Status::Error => return Err("a row with a map rule carries its map result".into()),
        (None, _) => {}
    }
    let pass = pair_passes(&families, settings.undecided);
    let status_agrees = match r.status {
        Status::Pass => pass,
        Status::Fail => !pass,
        // An error after the verdict (the heatmap): it says what went wrong.
        Status::Error => message.is_some(),
    };
    if !status_agrees {
        let because = match distance_rule {
            Some((verdict, distance, t)) => format!("verdict {verdict:?} (distance {distance}, max_distance {t}"),
            None => format!("map verdict {:?} (no max_distance", r.map.as_ref().map(|m| m.verdict)),
        };
        return Err(format!("status {:?} does not follow from {because}, undecided {})", r.status, settings.undecided.name()).to_lowercase());
    }
    if families.iter().any(|f| f.0 == SideName::Undecided) && message.is_none() {
        return Err("an undecided result carries its message".into());
    }
    Ok(())
}
