//! `elpips check`: the CI gate. Is the perceptual distance of a candidate from its reference at
//! most T? One pair, or a manifest of pairs (shardable), with text / JSON / JUnit output and
//! summaries that merge. Exit 0: every pair passed; 1: some pair failed; 2: an error (a bad
//! argument, an unreadable image, a missing runtime). An error outranks a failure.
//!
//! The verdict is [`Metric::decide`]'s sequential test: sampling stops as soon as the distance is
//! known to be below or above T at `--error-rate`; a pair still undecided after `--max-samples`
//! is settled by `--undecided` (by default the point estimate's side, with a warning).
//!
//! Beside the distance, a pair may have rules on its heatmap ([`rules`]: a share of pixels
//! above a value, a hard limit per pixel), decided at their own share of the pair's error rate;
//! a suite error rate divides one rate over the manifest's rows.
//!
//! This file owns the arguments and the gate's run (pairs in, [`CaseResult`]s out, printed as
//! they come); [`manifest`] reads the pairs, [`rules`] the tolerances beyond max_distance and
//! their presets, [`summary`] is the summary format, [`merge`] merges summaries, [`junit`]
//! writes the JUnit report, [`report`] the HTML report, [`ci`] the GitHub outputs, [`update`]
//! accepts new references.

mod ci;
mod junit;
pub mod manifest;
mod merge;
mod report;
mod rules;
pub mod summary;
mod update;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use elpips::{Decision, Error, Gate, Heatmap, Image, LoadOptions, Metric, MetricKind, Sampling, Side};

use crate::escape::line;
use crate::heatmap::HeatmapArgs;
use crate::output::{out, Outputs};
use crate::input::InputArgs;
use crate::metric_args::NetworkArgs;
use crate::CommonArgs;
use manifest::Case;
use summary::{CaseResult, HeatmapInfo, SampleAreaName, Settings, Shard, SideName, Status, Summary, Undecided, SUMMARY_FORMAT};

#[derive(Args)]
pub struct CheckArgs {
    /// Reference image (with CANDIDATE; or use --manifest, or --merge).
    #[arg(required_unless_present_any = ["manifest", "merge"], conflicts_with_all = ["manifest", "merge"])]
    reference: Option<PathBuf>,
    /// Candidate image (same size as the reference).
    #[arg(requires = "reference")]
    candidate: Option<PathBuf>,
    /// Pass when the distance is at most T (a manifest row's max_distance overrides it).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    max_distance: Option<f64>,
    /// Map rule: fail when more than --max-fail-percent of the pixels have a heatmap value
    /// above V (a row's pixel_threshold overrides it).
    #[arg(long, value_name = "V", requires = "max_fail_percent", allow_negative_numbers = true, help_heading = "Rules")]
    pixel_threshold: Option<f64>,
    /// Map rule: the share of pixels (percent, 0 to 100) allowed above --pixel-threshold.
    #[arg(long, value_name = "P", requires = "pixel_threshold", allow_negative_numbers = true, help_heading = "Rules")]
    max_fail_percent: Option<f64>,
    /// Map rule: fail when any pixel has a heatmap value above V (a row's hard_fail overrides it).
    #[arg(long, value_name = "V", allow_negative_numbers = true, help_heading = "Rules")]
    hard_fail: Option<f64>,
    /// E-LPIPS samples of the heatmap a map rule decides on (even, at least 4).
    #[arg(long, value_name = "N", default_value_t = 32, help_heading = "Rules")]
    map_samples: u32,
    /// Named tolerance sets (TOML: [presets.NAME] tables of max_distance, pixel_threshold,
    /// max_fail_percent, hard_fail) that manifest rows name in their `preset` column.
    #[arg(long, value_name = "FILE", help_heading = "Rules")]
    presets: Option<PathBuf>,
    /// The preset of the pair, or of the manifest rows that name none.
    #[arg(long, value_name = "NAME", requires = "presets", help_heading = "Rules")]
    preset: Option<String>,
    /// The network and its draws (the seed is fixed, so a gate gives the same verdict every run).
    #[command(flatten)]
    network: NetworkArgs,
    /// Largest chance of a wrong verdict on either side for a decided pair.
    #[arg(long, value_name = "A", default_value_t = 0.05, help_heading = "Sampling")]
    error_rate: f64,
    /// With --manifest: the chance that ANY decided verdict of the manifest is wrong is at most
    /// A (each of its R rows is decided at A / R; replaces --error-rate).
    #[arg(long, value_name = "A", requires = "manifest", conflicts_with = "error_rate", help_heading = "Sampling")]
    suite_error_rate: Option<f64>,
    /// Stop sampling a pair after M E-LPIPS samples, decided or not.
    #[arg(long, value_name = "M", default_value_t = 200, help_heading = "Sampling")]
    max_samples: u32,
    /// First look at the verdict after this many samples.
    #[arg(long, value_name = "N", default_value_t = Gate::DEFAULT_MIN_SAMPLES, help_heading = "Sampling")]
    min_samples: u32,
    /// A pair still undecided after --max-samples.
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = Undecided::Estimate, help_heading = "Sampling")]
    undecided: Undecided,
    /// Pairs to check: CSV with a header (columns reference, candidate, and optionally
    /// max_distance and name) or JSON lines ({"reference": ..., "candidate": ..., ...}).
    /// Relative paths are relative to the manifest's folder.
    #[arg(long, value_name = "FILE", conflicts_with = "merge", help_heading = "Input")]
    manifest: Option<PathBuf>,
    /// Merge the summaries written by --summary (e.g. one per shard) instead of checking images;
    /// the shards of one manifest must all be there, each once.
    #[arg(long, value_name = "SUMMARY", num_args = 1.., help_heading = "Input")]
    merge: Vec<PathBuf>,
    /// Check only shard I of N (0 <= I < N) of the manifest: rows I, I+N, I+2N, ...; `auto`:
    /// the shard the CI engine assigns (Bazel, GitLab, Buildkite, Slurm array; docs/renderer.md).
    #[arg(long, value_name = "I/N", requires = "manifest", help_heading = "Input")]
    shard: Option<String>,
    /// Tone mapping of EXR/HDR inputs, alpha policy, pixel budget (see docs/renderer.md).
    #[command(flatten)]
    input: InputArgs,
    /// Print JSON (one object for a pair, the summary for a manifest) instead of text.
    #[arg(long, help_heading = "Output")]
    json: bool,
    /// Write a JUnit XML report here (one test case per pair).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    junit: Option<PathBuf>,
    /// Write the JSON summary here (what --merge reads).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    summary: Option<PathBuf>,
    /// (One pair.) The heatmap averages the samples the verdict used (same seed and count).
    #[command(flatten)]
    heatmap: HeatmapArgs,
    /// With --manifest: write a heatmap (PNG, as --heatmap) of every pair that did not pass into
    /// DIR, named ROW-NAME.png (--heatmap-max sets their common colour scale).
    #[arg(long, value_name = "DIR", requires = "manifest", help_heading = "Output")]
    heatmap_dir: Option<PathBuf>,
    /// Write an HTML report into DIR: index.html (self-contained, sortable, failures first) and
    /// each pair's reference, candidate and heatmap as PNGs on one colour scale.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["heatmap", "heatmap_dir"], help_heading = "Output")]
    report: Option<PathBuf>,
    /// Print CI annotations for failures (errors) and undecided pairs (warnings).
    #[arg(long, value_name = "FORMAT", value_enum, help_heading = "Output")]
    annotations: Option<ci::Annotations>,
    /// Replace the reference of every failing pair with its candidate (atomically; each file
    /// changed is printed). Passing pairs are never touched.
    #[arg(long, conflicts_with = "merge", help_heading = "Output")]
    update_references: bool,
    /// The global -q/--quiet: print only failures, errors and the closing count.
    #[arg(skip)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(mut args: CheckArgs) -> Result<ExitCode, Error> {
    // The gate's default draws are iid, whose wrong-verdict rates are the lowest; control
    // variates (the library's default) also keep the error rate (docs/estimator.md) and are
    // allowed, as in `Metric::decide` and serve's `decide`.
    args.network.sampler.get_or_insert(elpips::SamplerKind::Iid);
    if !args.merge.is_empty() {
        return merge::merge(&args);
    }
    let kind = args.network.metric;
    let cli = validated_rules(&args)?;
    let gate = Gate { threshold: 0.0, error_rate: args.error_rate, max_samples: args.max_samples, min_samples: args.min_samples };
    gate.validate().map_err(|e| invalid(format!("{e} (see --error-rate, --max-samples, --min-samples)")))?;
    let shard = args.shard.as_deref().map(crate::shard::resolve).transpose()?.flatten();
    args.heatmap.validate()?;
    if args.manifest.is_some() && args.heatmap.heatmap.is_some() {
        return Err(invalid("--heatmap FILE is for one pair; with --manifest use --heatmap-dir DIR"));
    }
    if args.heatmap_max_without_target() {
        return Err(invalid("--heatmap-max needs --heatmap, --heatmap-dir or --report"));
    }
    let presets = args.presets.as_deref().map(rules::Presets::read).transpose()?;

    let (mut cases, manifest) = match &args.manifest {
        Some(path) => {
            let m = manifest::read_manifest(path)?;
            (m.cases, Some((m.path, m.sha256)))
        }
        None => {
            let (r, c) = (args.reference.clone().unwrap(), args.candidate.clone().ok_or_else(|| invalid("give a CANDIDATE image after the REFERENCE"))?);
            let case = Case {
                row: 0,
                name: c.display().to_string(),
                reference: r.display().to_string(),
                candidate: c.display().to_string(),
                reference_path: r,
                candidate_path: c,
                max_distance: None,
                pixel_threshold: None,
                max_fail_percent: None,
                hard_fail: None,
                preset: None,
            };
            (vec![case], None)
        }
    };
    // Every row's tolerances, before sharding: each shard then derives the same rates, colour
    // scale and settings from the whole manifest.
    let row_error = |c: &Case, why: String| match &manifest {
        Some((p, _)) => invalid(format!("{}: row {} ({}): {why}", p.display(), c.row + 1, c.name)),
        None => invalid(why),
    };
    for case in &mut cases {
        rules::resolve(case, presets.as_ref(), args.preset.as_deref(), &cli).map_err(|why| row_error(case, why))?;
    }
    // A row gates on its distance, its map, or both; one with neither rule would pass anything.
    if let Some(c) = cases.iter().find(|c| c.max_distance.is_none() && !rules::has_map_rule(c)) {
        return Err(match &manifest {
            Some((p, _)) => invalid(format!(
                "{}: row {} ({}) has no rule: give it a max_distance or a map rule (pixel_threshold with max_fail_percent, hard_fail), or give --max-distance",
                p.display(),
                c.row + 1,
                c.name
            )),
            None => invalid("--max-distance T is required (pass when the distance is at most T), unless a map rule is given (--pixel-threshold V --max-fail-percent P, --hard-fail V)"),
        });
    }
    if args.update_references {
        update::check_shared_references(&cases)?;
    }
    let total = cases.len();
    let any_map_rule = cases.iter().any(rules::has_map_rule);
    let scale = report_scale(&args, &cases);
    // Each pair's rate: --error-rate, or the suite's rate over the manifest's rows.
    let pair_rate = args.suite_error_rate.map_or(args.error_rate, |a| summary::row_error_rate(a, total as u64));
    let gate = Gate { error_rate: pair_rate, ..gate };
    gate.validate().map_err(|e| invalid(format!("{e} (--suite-error-rate over {total} rows)")))?;
    if let Some((i, n)) = shard {
        // Every shard holds a row, so a summary's shard count is bounded by its rows.
        if n > total {
            let p = manifest.as_ref().map(|(p, _)| p.display().to_string()).unwrap_or_default();
            return Err(invalid(format!("--shard {i}/{n}: {p} has only {total} rows; use at most {total} shards")));
        }
        cases.retain(|c| c.row % n == i);
    }
    check_destinations(&args, &cases)?;

    let mut metric = Metric::new(args.network.metric_options(&args.common, Sampling::DEFAULT))?;
    let load = args.input.load_options()?;
    let undecided = args.undecided;

    let started = Instant::now();
    let single = manifest.is_none();
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let map_rule = rules::has_map_rule(case);
        // Two rule families (the distance, the map) share the pair's rate: by the union bound a
        // wrong pair verdict needs a wrong family verdict. A row with one family gives it all.
        let family_rate = if map_rule && case.max_distance.is_some() { pair_rate / 2.0 } else { pair_rate };
        let gate = case.max_distance.map(|t| Gate { threshold: t, error_rate: family_rate, ..gate });
        let t0 = Instant::now();
        let outcome = check_pair(&mut metric, &load, case, gate.as_ref());
        let mut result = case_result(undecided, case, gate.as_ref(), outcome.as_ref().map(|(d, _, _)| *d).map_err(crate::cli_message));
        if let Ok((Some(_), reference, _)) = &outcome {
            if kind.is_ensemble() {
                let tiles = metric.tile_sampled(reference.height(), reference.width());
                result.sample_area = Some(if tiles { SampleAreaName::Tiles } else { SampleAreaName::Whole });
                let per = metric.cheap_draws_per_sample(reference.height(), reference.width());
                if per > 0 {
                    result.cheap_draws = result.samples.map(|n| n * per as u64);
                }
            }
        }
        if let Ok((decision, reference, candidate)) = &outcome {
            let mut map = None;
            if map_rule {
                match rules::measure_map(&mut metric, reference, candidate, case, args.map_samples, family_rate) {
                    Ok((m, mean)) => {
                        result.map = Some(m);
                        map = Some(mean);
                    }
                    Err(e) => {
                        result.status = Status::Error;
                        result.message = Some(format!("map rule: {e}"));
                    }
                }
                // Without a map (it could not be made: an error) there is nothing to settle.
                settle(&mut result, decision.as_ref(), undecided, family_rate);
            }
            let written = match (heatmap_path(&args, case, &result), &args.report) {
                (Some(path), _) => Some(heatmap(&mut metric, reference, candidate, decision.as_ref(), map.as_ref(), &path, &args.heatmap)),
                (None, Some(dir)) => Some(report::write_images(dir, case, reference, candidate).and_then(|path| {
                    let style = HeatmapArgs { heatmap: None, heatmap_max: Some(scale) };
                    heatmap(&mut metric, reference, candidate, decision.as_ref(), map.as_ref(), &path, &style)
                })),
                (None, None) => None,
            };
            match written {
                Some(Ok(info)) => result.heatmap = info,
                Some(Err(e)) => {
                    result.status = Status::Error;
                    result.message = Some(format!("heatmap: {e}"));
                }
                None => {}
            }
        }
        result.seconds = round3(t0.elapsed().as_secs_f64());
        print_case(&args, &result, single)?;
        results.push(result);
    }

    let mut summary = Summary {
        backend: Some(metric.backend().name().to_owned()),
        counts: Default::default(),
        device: Some(metric.device().name().to_owned()),
        digest: None,
        elpips_check: SUMMARY_FORMAT,
        manifest: manifest.as_ref().map(|(p, _)| p.display().to_string()),
        manifest_sha256: manifest.as_ref().map(|(_, d)| d.clone()),
        manifest_rows: total as u64,
        merged: None,
        shard: shard.map(|(i, n)| Shard { index: i as u64, count: n as u64 }),
        settings: settings(&args, kind, undecided, pair_rate, any_map_rule),
        results,
        seconds: round3(started.elapsed().as_secs_f64()),
    };
    summary.seal();
    if args.update_references {
        update::update_references(&summary, &cases, args.json)?;
    }
    finish(&args, &summary, single)
}

/// Tries every destination of the run before it starts: --summary, --junit and
/// GITHUB_STEP_SUMMARY must take a file (and be none of the inputs), --report and
/// --heatmap-dir folders are created and must take files.
fn check_destinations(args: &CheckArgs, cases: &[Case]) -> Result<(), Error> {
    let mut outputs: Vec<(&str, &Path)> = Vec::new();
    outputs.extend(args.summary.as_deref().map(|p| ("--summary", p)));
    outputs.extend(args.junit.as_deref().map(|p| ("--junit", p)));
    outputs.extend(args.heatmap.heatmap.as_deref().map(|p| ("--heatmap", p)));
    let step = ci::step_summary_path();
    outputs.extend(step.as_deref().map(|p| ("GITHUB_STEP_SUMMARY", p)));
    let mut inputs: Vec<&Path> = args.manifest.iter().chain(&args.merge).map(PathBuf::as_path).collect();
    for case in cases {
        inputs.push(&case.reference_path);
        inputs.push(&case.candidate_path);
    }
    crate::output::check_outputs(&outputs, &inputs)?;
    if let Some(dir) = &args.heatmap_dir {
        crate::output::output_dir("--heatmap-dir", dir)?;
    }
    if let Some(dir) = &args.report {
        crate::output::output_dir("--report", dir)?;
    }
    Ok(())
}

/// Writes the outputs asked for and picks the exit status: the files are staged, the results
/// printed, and the files put in place only once stdout took them.
fn finish(args: &CheckArgs, summary: &Summary, single: bool) -> Result<ExitCode, Error> {
    let c = summary.counts;
    let mut outputs = Outputs::default();
    if let Some(path) = &args.summary {
        outputs.add(path, serde_json::to_string_pretty(summary).expect("json").as_bytes())?;
    }
    if let Some(path) = &args.junit {
        outputs.add(path, junit::junit(summary).as_bytes())?;
    }
    if let Some(dir) = &args.report {
        report::stage_page(dir, summary, &mut outputs)?;
    }
    if let Some(format) = args.annotations {
        ci::annotate(format, summary)?;
    }
    if args.json {
        let out = match (single, summary.results.as_slice()) {
            // One pair: its result with the settings beside it.
            // Like every subcommand's record, it names what produced it, and an error carries
            // the shared `error` object beside the result's fields.
            (true, [r]) => {
                let mut v = serde_json::to_value(r).expect("json");
                let s = &summary.settings;
                v["metric"] = s.metric.clone().into();
                v["sampler"] = s.sampler.clone().into();
                v["precision"] = s.precision.clone().into();
                v["device"] = summary.device.clone().into();
                v["backend"] = summary.backend.clone().into();
                v["seed"] = s.seed.into();
                if r.status == Status::Error {
                    let message = r.message.as_deref().unwrap_or("error");
                    v["error"] = crate::error_record(message, 2)["error"].take();
                }
                v["settings"] = serde_json::to_value(s).expect("json");
                v
            }
            _ => serde_json::to_value(summary).expect("json"),
        };
        out!("{out}")?;
    } else if !single {
        // Not "N passed, N failed": CI log readers take that for a test runner's closing line.
        out!("elpips check: {} pairs: {} pass, {} fail, {} error", c.pass + c.fail + c.error, c.pass, c.fail, c.error)?;
    }
    outputs.commit()?;
    ci::step_summary(summary)?;
    Ok(ExitCode::from(if c.error > 0 {
        2
    } else if c.fail > 0 {
        1
    } else {
        0
    }))
}

/// The command line's rules, each checked.
fn validated_rules(args: &CheckArgs) -> Result<rules::Defaults, Error> {
    let value = |flag: &str, v: Option<f64>| match v {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(invalid(format!("{flag} must be a finite value >= 0, not {v}"))),
        _ => Ok(v),
    };
    value("--max-distance", args.max_distance)?;
    value("--pixel-threshold", args.pixel_threshold)?;
    value("--hard-fail", args.hard_fail)?;
    if let Some(p) = args.max_fail_percent {
        if !(0.0..=100.0).contains(&p) {
            return Err(invalid(format!("--max-fail-percent must be a percentage from 0 to 100, not {p}")));
        }
    }
    if args.map_samples < 4 || !args.map_samples.is_multiple_of(2) {
        return Err(invalid(format!("--map-samples must be an even number >= 4 (samples are taken in pairs), not {}", args.map_samples)));
    }
    if let Some(a) = args.suite_error_rate {
        if !(a > 0.0 && a < 0.5) {
            return Err(invalid(format!("--suite-error-rate must be between 0 and 0.5 (exclusive), not {a}")));
        }
    }
    Ok(rules::Defaults { max_distance: args.max_distance, pixel_threshold: args.pixel_threshold, max_fail_percent: args.max_fail_percent, hard_fail: args.hard_fail })
}

/// The report's one colour scale: --heatmap-max, else from the whole manifest's rules (so every
/// shard picks the same): the largest hard_fail, else twice the largest pixel_threshold, else
/// ten times the largest max_distance (a heatmap's mean is the distance; edges peak above it).
fn report_scale(args: &CheckArgs, cases: &[Case]) -> f32 {
    if let Some(m) = args.heatmap.heatmap_max {
        return m;
    }
    let largest = |f: fn(&Case) -> Option<f64>| cases.iter().filter_map(f).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let s = largest(|c| c.hard_fail)
        .or_else(|| largest(|c| c.pixel_threshold).map(|v| 2.0 * v))
        .or_else(|| largest(|c| c.max_distance).map(|t| 10.0 * t))
        .unwrap_or(1.0);
    if s > 0.0 { s as f32 } else { 1.0 }
}

/// The pair's status and message once its map rule is decided too (`pair_passes`).
fn settle(r: &mut CaseResult, decision: Option<&Decision>, undecided: Undecided, family_rate: f64) {
    let Some(m) = &r.map else { return };
    let (map, map_estimate) = summary::map_verdict(m, r.pixel_threshold, r.max_fail_percent, r.hard_fail).unwrap_or((m.verdict, false));
    let mut families = vec![(map, map_estimate)];
    if let Some(d) = decision {
        families.push((r.verdict.unwrap_or(SideName::Undecided), d.estimate_below));
    }
    let pass = summary::pair_passes(&families, undecided);
    r.status = if pass { Status::Pass } else { Status::Fail };
    if map == SideName::Undecided {
        let share = match (m.fail_percent_lower, m.fail_percent_upper, r.max_fail_percent) {
            (Some(lo), Some(hi), Some(p)) => format!("; {lo:.3}%..{hi:.3}% of pixels above {} around {p}%", r.pixel_threshold.unwrap_or(0.0)),
            _ => String::new(),
        };
        let hard = r.hard_fail.map_or(String::new(), |h| format!("; largest pixel {:.6} in [{:.6}, {:.6}] around hard_fail {h}", m.max, m.max_lower, m.max_upper));
        let note = format!(
            "map rule undecided after {} samples at error rate {family_rate}{share}{hard}; {} by --undecided {}",
            m.samples,
            if pass { "passed" } else { "failed" },
            undecided.name()
        );
        r.message = Some(match r.message.take() {
            Some(prev) => format!("{prev}; {note}"),
            None => note,
        });
    }
}

/// The pair's images and, when it has a distance rule (`gate`), the sequential decision on it.
fn check_pair(metric: &mut Metric, load: &LoadOptions, case: &Case, gate: Option<&Gate>) -> Result<(Option<Decision>, Image, Image), Error> {
    let reference = Image::open(&case.reference_path, load)?;
    let candidate = Image::open(&case.candidate_path, load)?;
    if gate.is_none() {
        // Same failures as decide() would report (sizes, channels) before the map is measured.
        metric.check_pair(&reference, &candidate)?;
    }
    let decision = gate.map(|g| metric.decide(&reference, &candidate, g)).transpose()?;
    Ok((decision, reference, candidate))
}

impl CheckArgs {
    fn heatmap_max_without_target(&self) -> bool {
        self.heatmap.heatmap_max.is_some() && self.heatmap.heatmap.is_none() && self.heatmap_dir.is_none()
    }
}

/// Where this pair's heatmap goes: --heatmap for one pair; for a manifest, --heatmap-dir for
/// the pairs that did not pass (the ones someone will look at).
fn heatmap_path(args: &CheckArgs, case: &Case, result: &CaseResult) -> Option<PathBuf> {
    if let Some(p) = &args.heatmap.heatmap {
        return Some(p.clone());
    }
    let dir = args.heatmap_dir.as_ref()?;
    if result.status == Status::Pass {
        return None;
    }
    Some(dir.join(format!("{}-{}.png", case.row, elpips::io::safe_name(&case.name, report::NAME_BYTES))))
}

/// The heatmap of the samples the verdict rests on: the same seed and sample count, so each
/// sample's draw is the one `decide` used (iid draws are keyed by seed and index) and the map's
/// mean is the verdict's distance. It costs that many samples again.
/// A pair with a map rule shows the map that rule decided on instead (`map`), at no extra cost.
fn heatmap(metric: &mut Metric, reference: &Image, candidate: &Image, decision: Option<&Decision>, map: Option<&Heatmap>, path: &Path, style: &HeatmapArgs) -> Result<Option<HeatmapInfo>, Error> {
    let map = match (map, decision) {
        (Some(m), _) => m.clone(),
        // A map-only row whose map could not be made: nothing to draw.
        (None, None) => return Ok(None),
        (None, Some(decision)) => {
            let o = metric.options();
            let (sampler, seed) = (o.sampler, o.seed);
            metric.heatmap_of_draws(reference, candidate, sampler, seed, decision.estimate.samples.max(1) as u32)?.1
        }
    };
    let writer = HeatmapArgs { heatmap: Some(path.to_owned()), ..style.clone() };
    match writer.write(&map)? {
        None => Ok(None),
        Some(info) => serde_json::from_value(info).map(Some).map_err(|e| invalid(format!("heatmap {}: {e}", path.display()))),
    }
}

/// The record of one pair (the unit of summaries, JUnit cases and text lines).
/// A pair without a distance rule (`gate` None) leaves its status to the map rule ([`settle`]).
fn case_result(undecided: Undecided, case: &Case, gate: Option<&Gate>, outcome: Result<Option<Decision>, String>) -> CaseResult {
    let mut r = CaseResult {
        candidate: case.candidate.clone(),
        ci95: None,
        distance: None,
        hard_fail: case.hard_fail,
        heatmap: None,
        lower: None,
        map: None,
        max_distance: gate.map(|g| g.threshold),
        max_fail_percent: case.max_fail_percent,
        message: None,
        name: case.name.clone(),
        pixel_threshold: case.pixel_threshold,
        preset: case.preset.clone(),
        reference: case.reference.clone(),
        row: case.row as u64,
        sample_area: None,
        cheap_draws: None,
        samples: None,
        seconds: 0.0,
        status: Status::Error,
        std_error: None,
        upper: None,
        verdict: None,
    };
    match (outcome, gate) {
        (Err(e), _) => r.message = Some(e),
        (Ok(None), _) | (Ok(Some(_)), None) => {}
        (Ok(Some(d)), Some(gate)) => {
            let pass = match d.verdict {
                Side::Below => true,
                Side::Above => false,
                Side::Undecided => match undecided {
                    Undecided::Pass => true,
                    Undecided::Fail => false,
                    Undecided::Estimate => d.estimate_below,
                },
            };
            r.status = if pass { Status::Pass } else { Status::Fail };
            r.verdict = Some(match d.verdict {
                Side::Below => SideName::Below,
                Side::Above => SideName::Above,
                Side::Undecided => SideName::Undecided,
            });
            r.distance = Some(d.estimate.distance);
            r.std_error = Some(d.estimate.std_error);
            r.ci95 = Some(d.estimate.ci95);
            r.lower = Some(d.lower);
            r.upper = Some(d.upper);
            r.samples = Some(d.estimate.samples);
            if d.verdict == Side::Undecided {
                r.message = Some(format!(
                    "undecided after {} samples at error rate {}: the distance {:.6} is within the bounds [{:.6}, {:.6}] around {}; {} by --undecided {}",
                    d.estimate.samples,
                    gate.error_rate,
                    d.estimate.distance,
                    d.lower,
                    d.upper,
                    gate.threshold,
                    if pass { "passed" } else { "failed" },
                    undecided.name()
                ));
            }
        }
    }
    r
}

/// The pair's lines: its verdict on stdout, errors and warnings on stderr. Its name and message
/// are user text, escaped so that each stays on its line ([`crate::escape::line`]).
fn print_case(args: &CheckArgs, r: &CaseResult, single: bool) -> Result<(), Error> {
    let message = line(r.message.as_deref().unwrap_or(""));
    let name = line(&r.name);
    if r.status == Status::Error {
        match single {
            true => eprintln!("elpips: {message}"),
            false => eprintln!("elpips: {name}: {message}"),
        }
        return Ok(());
    }
    if r.verdict == Some(SideName::Undecided) {
        eprintln!("elpips: warning: {name}: {message}");
    }
    if args.json || (args.quiet && r.status == Status::Pass) {
        return Ok(());
    }
    let (verdict, relation) = match r.verdict {
        Some(SideName::Below) => ("below", "<="),
        Some(SideName::Above) => ("above", ">"),
        Some(SideName::Undecided) => ("undecided", "~"),
        None => ("", "~"),
    };
    let status = if r.status == Status::Pass { "PASS" } else { "FAIL" };
    let verdict_line = match r.max_distance {
        Some(t) => format!(
            "{status} {:.6} ± {:.6} {relation} {t} ({verdict}; {} samples, {:.1} s)",
            r.distance.unwrap_or(f64::NAN),
            r.ci95.unwrap_or(0.0),
            r.samples.map_or("null".to_string(), |n| n.to_string()),
            r.seconds
        ),
        // Gated by the map rules alone: their line follows.
        None => format!("{status} by the map rules ({:.1} s)", r.seconds),
    };
    if single {
        out!("{verdict_line}")?;
    } else {
        out!("{verdict_line}  {name}")?;
    }
    if let Some(m) = &r.map {
        let mut parts = Vec::new();
        if let (Some(f), Some(lo), Some(hi), Some(v), Some(p)) = (m.fail_percent, m.fail_percent_lower, m.fail_percent_upper, r.pixel_threshold, r.max_fail_percent) {
            parts.push(format!("{f:.3}% of pixels above {v} (bounds {lo:.3}%..{hi:.3}%; max {p}%)"));
        }
        if let Some(h) = r.hard_fail {
            parts.push(format!("largest pixel {:.6} (bounds {:.6}..{:.6}; hard_fail {h})", m.max, m.max_lower, m.max_upper));
        }
        let verdict = match m.verdict {
            SideName::Below => "within",
            SideName::Above => "outside",
            SideName::Undecided => "undecided",
        };
        out!("  map: {} ({verdict}; {} samples)", parts.join(", "), m.samples)?;
    }
    // The legend is informational (the file itself is the result): -q silences it, as in compare.
    if let Some(info) = r.heatmap.as_ref().filter(|_| !args.quiet) {
        eprintln!("{}", line(&HeatmapArgs::describe(&serde_json::to_value(info).expect("json"))));
    }
    Ok(())
}

fn settings(args: &CheckArgs, kind: MetricKind, undecided: Undecided, pair_rate: f64, map_rule: bool) -> Settings {
    Settings {
        metric: kind.name().to_owned(),
        map_samples: map_rule.then_some(args.map_samples),
        suite_error_rate: args.suite_error_rate,
        seed: args.network.seed,
        sampler: args.network.sampler().name().to_owned(),
        precision: Some(args.network.precision.name().to_owned()),
        scale_levels: args.network.scale_levels,
        error_rate: pair_rate,
        max_samples: args.max_samples,
        min_samples: args.min_samples,
        undecided,
        lin_weights: args.network.lin_weights.as_ref().map(|p| p.display().to_string()),
        tile_samples: args.network.tile_samples,
        cheap_draws: (args.network.cheap_draws > 0).then_some(args.network.cheap_draws),
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::manifest::{parse_csv, parse_json_lines, Threshold};
    use super::*;

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(crate::escape::markup("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;?");
    }

    #[test]
    fn manifests_parse_in_both_forms() {
        let p = Path::new("m.csv");
        let rows = parse_csv("# frames\nreference,candidate,max_distance,name\nr.png, c.png ,0.1,first\nr.png,d.png,,\n", p).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].reference.as_str(), rows[0].candidate.as_str(), rows[0].max_distance, rows[0].name.as_deref()), ("r.png", "c.png", Some(Threshold(0.1)), Some("first")));
        assert_eq!((rows[1].reference.as_str(), rows[1].candidate.as_str(), rows[1].max_distance, rows[1].name.as_deref()), ("r.png", "d.png", None, None));
        assert!(parse_csv("ref,candidate\na,b\n", p).unwrap_err().to_string().contains("unknown column `ref`"));
        let e = parse_csv("reference,candidate,max_distance\na,b,-1\n", p).unwrap_err().to_string();
        assert!(e.contains("m.csv:2: max_distance must be a finite distance >= 0, not -1"), "{e}");
        let e = parse_csv("reference,candidate,max_distance\na,b,x\n", p).unwrap_err().to_string();
        assert!(e.contains("m.csv:2: max_distance `x` is not a number"), "{e}");
        assert!(parse_csv("reference,candidate,max_distance\na,b,NaN\n", p).is_err());
        assert!(parse_csv("reference,candidate\na,\n", p).unwrap_err().to_string().contains("m.csv:2: reference and candidate must not be empty"));
        assert!(parse_csv("reference,candidate,reference\na,b,c\n", p).unwrap_err().to_string().contains("appears twice"));
        let j = Path::new("m.jsonl");
        let rows = parse_json_lines("{\"reference\":\"r\",\"candidate\":\"c\",\"max_distance\":0.2}\n\n{\"reference\":\"r\",\"candidate\":\"d\"}\n", j).unwrap();
        assert_eq!(rows[0].max_distance, Some(Threshold(0.2)));
        assert_eq!(rows[1].max_distance, None);
        assert!(parse_json_lines("{\"reference\":\"r\"}\n", j).unwrap_err().to_string().contains("m.jsonl:1: missing field `candidate`"));
        assert!(parse_json_lines("[1]\n", j).is_err());
        let e = parse_json_lines("{\"reference\":\"r\",\"candidate\":\"c\",\"max_distance\":\"0.1\"}\n", j).unwrap_err().to_string();
        assert!(e.contains("m.jsonl:1: max_distance `0.1` is not a number"), "{e}");
        let e = parse_json_lines("{\"reference\":\"r\",\"candidate\":7}\n", j).unwrap_err().to_string();
        assert!(e.contains("m.jsonl:1: invalid type: integer `7`"), "{e}");
        let e = parse_json_lines("{\"reference\":\"r\",\"candidate\":\"c\",\"extra\":1}\n", j).unwrap_err().to_string();
        assert!(e.contains("unknown field `extra`"), "{e}");
    }

    fn sealed(results: Vec<CaseResult>, shard: Option<Shard>, rows: u64) -> Summary {
        let mut s = Summary {
            backend: Some("mlas".into()),
            counts: Default::default(),
            device: Some("cpu".into()),
            digest: None,
            elpips_check: SUMMARY_FORMAT,
            manifest: Some("m.csv".into()),
            manifest_rows: rows,
            manifest_sha256: Some("ab".repeat(32)),
            merged: None,
            results,
            seconds: 1.5,
            settings: Settings {
                error_rate: 0.05,
                lin_weights: None,
                map_samples: None,
                max_samples: 200,
                metric: "elpips-vgg".into(),
                min_samples: 16,
                sampler: "iid".into(),
                precision: None,
                scale_levels: None,
                seed: 0,
                suite_error_rate: None,
                undecided: Undecided::Estimate,
                tile_samples: false,
                cheap_draws: None,
            },
            shard,
        };
        s.seal();
        s
    }

    fn decided(row: u64, distance: f64, t: f64) -> CaseResult {
        let below = distance <= t;
        CaseResult {
            candidate: "b.png".into(),
            ci95: Some(0.01),
            distance: Some(distance),
            hard_fail: None,
            heatmap: None,
            lower: Some(distance - 0.01),
            map: None,
            max_distance: Some(t),
            max_fail_percent: None,
            message: None,
            name: format!("r{row}"),
            pixel_threshold: None,
            preset: None,
            reference: "a.png".into(),
            row,
            sample_area: None,
            cheap_draws: None,
            samples: Some(16),
            seconds: 0.25,
            status: if below { Status::Pass } else { Status::Fail },
            std_error: Some(0.005),
            upper: Some(distance + 0.01),
            verdict: Some(if below { SideName::Below } else { SideName::Above }),
        }
    }

    fn parse(s: &Summary) -> Result<Summary, String> {
        summary::parse_summary(serde_json::to_string_pretty(s).unwrap().as_bytes(), Path::new("s.json")).map_err(|e| e.to_string())
    }

    type Edit = fn(&mut Summary);

    /// Each edit of `good`, resealed so that only the check it targets can refuse it, is
    /// refused with its message.
    fn refused_after_each(good: &Summary, cases: &[(Edit, &str)]) {
        for (edit, needle) in cases {
            let mut s = good.clone();
            edit(&mut s);
            s.seal();
            let e = parse(&s).unwrap_err();
            assert!(e.contains(needle), "`{needle}` not in {e}");
        }
    }

    #[test]
    fn summaries_read_back_what_they_wrote_and_refuse_any_inconsistency() {
        let good = sealed(vec![decided(1, 0.1, 0.5), decided(4, 0.9, 0.5)], Some(Shard { index: 1, count: 3 }), 5);
        let back = parse(&good).unwrap();
        assert_eq!(back.results, good.results);
        assert_eq!(back.canonical(), good.canonical());

        let cases: [(Edit, &str); 12] = [
            (|s| s.shard = Some(Shard { index: 3, count: 3 }), "shard 3/3 is out of range"),
            (|s| s.shard = Some(Shard { index: 0, count: 1_000_000_000_000_000_000 }), "is out of range"),
            (|s| s.manifest_rows = 0, "manifest_rows 0 must be between 1"),
            (|s| s.manifest_rows = u64::MAX, "must be between 1 and"),
            (|s| drop(s.results.pop()), "holds 1 results, but shard 1/3 of 5 rows has 2"),
            (|s| s.results[1].row = 7, "results[1] is row 7, expected row 4"),
            (|s| s.results[0].status = Status::Fail, "status fail does not follow from verdict below"),
            (|s| s.results[0].upper = Some(0.6), "does not follow from the bounds"),
            (|s| s.results[0].samples = Some(201), "samples 201 must be between 1 and max_samples 200"),
            (|s| s.results[0].samples = None, "go together"),
            (|s| s.settings.error_rate = 0.7, "settings: the error rate must be between 0 and 0.5"),
            (|s| s.manifest_sha256 = Some("x".into()), "is not a sha256"),
        ];
        refused_after_each(&good, &cases);
        // Edited without resealing: the digest catches it.
        let mut s = good.clone();
        s.results[1].status = Status::Pass;
        assert!(parse(&s).unwrap_err().contains("its digest does not match"));
        let mut s = good.clone();
        s.counts.pass += 1;
        s.digest = Some(s.compute_digest());
        assert!(parse(&s).unwrap_err().contains("counts"));
        // Undecided results follow the recorded policy.
        let mut s = good.clone();
        s.results[0].verdict = Some(SideName::Undecided);
        s.results[0].upper = Some(0.6);
        s.results[0].message = Some("undecided after 16 samples".into());
        s.seal();
        assert!(parse(&s).is_ok());
        s.settings.undecided = Undecided::Fail;
        s.seal();
        assert!(parse(&s).unwrap_err().contains("status pass does not follow"));
    }

    #[test]
    fn map_only_results_carry_no_distance_verdict_and_follow_their_map() {
        let map = summary::MapResult { fail_percent: None, fail_percent_lower: None, fail_percent_upper: None, max: 0.2, max_lower: 0.1, max_upper: 0.3, samples: 32, verdict: SideName::Above };
        let r = CaseResult {
            ci95: None, distance: None, lower: None, upper: None, samples: None, std_error: None, verdict: None,
            max_distance: None, hard_fail: Some(0.05), map: Some(map), status: Status::Fail,
            ..decided(0, 0.1, 0.5)
        };
        let mut good = sealed(vec![r], None, 1);
        good.settings.map_samples = Some(32);
        good.seal();
        assert_eq!(parse(&good).unwrap().results, good.results);
        let cases: [(Edit, &str); 4] = [
            (|s| s.results[0].status = Status::Pass, "status pass does not follow from map verdict"),
            (|s| s.results[0].distance = Some(0.1), "a result without max_distance has no distance verdict"),
            (|s| s.results[0].hard_fail = None, "a result needs a rule"),
            (|s| s.results[0].map = None, "must be an error with a message"),
        ];
        refused_after_each(&good, &cases);
    }
}
