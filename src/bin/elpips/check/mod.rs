//! `elpips check`: the CI gate. Is the perceptual distance of a candidate from its reference at
//! most T? One pair, or a manifest of pairs (shardable), with text / JSON / JUnit output and
//! summaries that merge. Exit 0: every pair passed; 1: some pair failed; 2: an error (a bad
//! argument, an unreadable image, a missing runtime). An error outranks a failure.
//!
//! The verdict is [`Metric::decide`]'s sequential test: sampling stops as soon as the distance is
//! known to be below or above T at `--error-rate`; a pair still undecided after `--max-samples`
//! is settled by `--undecided` (by default the point estimate's side, with a warning).
//!
//! This file owns the arguments and the gate's run (pairs in, [`CaseResult`]s out, printed as
//! they come); [`manifest`] reads the pairs, [`summary`] is the summary format, [`merge`]
//! merges summaries, [`junit`] writes the JUnit report.

mod junit;
pub mod manifest;
mod merge;
pub mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use elpips::{Decision, Error, Gate, Image, LoadOptions, Metric, MetricKind, Sampling, Side};

use crate::heatmap::HeatmapArgs;
use crate::input::InputArgs;
use crate::metric_args::NetworkArgs;
use crate::CommonArgs;
use manifest::Case;
use summary::{CaseResult, HeatmapInfo, Settings, Shard, SideName, Status, Summary, Undecided, SUMMARY_FORMAT};

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
    /// The network and its draws (the seed is fixed, so a gate gives the same verdict every run).
    #[command(flatten)]
    network: NetworkArgs,
    /// Largest chance of a wrong verdict on either side for a decided pair.
    #[arg(long, value_name = "A", default_value_t = 0.05, help_heading = "Sampling")]
    error_rate: f64,
    /// Stop sampling a pair after M E-LPIPS samples, decided or not.
    #[arg(long, value_name = "M", default_value_t = 200, help_heading = "Sampling")]
    max_samples: u32,
    /// First look at the verdict after this many samples.
    #[arg(long, value_name = "N", default_value_t = 16, help_heading = "Sampling")]
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
    /// Check only shard I of N (0 <= I < N) of the manifest: rows I, I+N, I+2N, ...
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
    /// The global -q/--quiet: print only failures, errors and the closing count.
    #[arg(skip)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(mut args: CheckArgs) -> Result<ExitCode, Error> {
    // The gate's default draws are iid: the library's default (control) is for compare and rank.
    args.network.sampler.get_or_insert(elpips::SamplerKind::Iid);
    if !args.merge.is_empty() {
        return merge::merge(&args);
    }
    let kind = args.network.metric;
    if args.network.sampler() == elpips::SamplerKind::Control {
        // The gate's error rate is validated for iid and stratified draws only.
        return Err(invalid("check decides with --sampler iid or stratified; control is for compare and rank".to_owned()));
    }
    if let Some(t) = args.max_distance {
        if !(t.is_finite() && t >= 0.0) {
            return Err(invalid(format!("--max-distance must be a finite distance >= 0, not {t}")));
        }
    }
    let gate = Gate { threshold: 0.0, error_rate: args.error_rate, max_samples: args.max_samples, min_samples: args.min_samples };
    gate.validate().map_err(|e| invalid(format!("{e} (see --error-rate, --max-samples, --min-samples)")))?;
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    args.heatmap.validate()?;
    if args.manifest.is_some() && args.heatmap.heatmap.is_some() {
        return Err(invalid("--heatmap FILE is for one pair; with --manifest use --heatmap-dir DIR"));
    }
    if args.heatmap_max_without_target() {
        return Err(invalid("--heatmap-max needs --heatmap or --heatmap-dir"));
    }

    let (cases, manifest) = match &args.manifest {
        Some(path) => {
            let m = manifest::read_manifest(path)?;
            let total = m.cases.len();
            if let Some((i, n)) = shard {
                // Every shard holds a row, so a summary's shard count is bounded by its rows.
                if n > total {
                    return Err(invalid(format!("--shard {i}/{n}: {} has only {total} rows; use at most {total} shards", path.display())));
                }
            }
            let picked: Vec<Case> = match shard {
                Some((i, n)) => m.cases.into_iter().filter(|c| c.row % n == i).collect(),
                None => m.cases,
            };
            (picked, Some((m.path, m.sha256, total)))
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
            };
            (vec![case], None)
        }
    };
    if args.max_distance.is_none() {
        if let Some(c) = cases.iter().find(|c| c.max_distance.is_none()) {
            return Err(match &manifest {
                Some((p, _, _)) => invalid(format!(
                    "{}: row {} ({}) has no max_distance and --max-distance was not given",
                    p.display(),
                    c.row + 1,
                    c.name
                )),
                None => invalid("--max-distance T is required (pass when the distance is at most T)"),
            });
        }
    }
    if let Some(dir) = &args.heatmap_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::Write { path: dir.clone(), reason: e.to_string() })?;
    }

    let mut metric = Metric::new(args.network.metric_options(&args.common, Sampling::DEFAULT))?;
    let load = args.input.load_options()?;
    let undecided = args.undecided;

    let started = Instant::now();
    let single = manifest.is_none();
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let gate = Gate { threshold: case.max_distance.or(args.max_distance).unwrap(), ..gate };
        let t0 = Instant::now();
        let outcome = check_pair(&mut metric, &load, case, &gate);
        let mut result = case_result(undecided, case, &gate, outcome.as_ref().map(|(d, _, _)| *d).map_err(|e| e.to_string()));
        if let (Ok((decision, reference, candidate)), Some(path)) = (&outcome, heatmap_path(&args, case, &result)) {
            match heatmap(&metric, reference, candidate, decision, &path, &args.heatmap) {
                Ok(info) => result.heatmap = info,
                Err(e) => {
                    result.status = Status::Error;
                    result.message = Some(format!("heatmap: {e}"));
                }
            }
        }
        result.seconds = round3(t0.elapsed().as_secs_f64());
        print_case(&args, &result, single);
        results.push(result);
    }

    let mut summary = Summary {
        counts: Default::default(),
        digest: None,
        elpips_check: SUMMARY_FORMAT,
        manifest: manifest.as_ref().map(|(p, _, _)| p.display().to_string()),
        manifest_sha256: manifest.as_ref().map(|(_, d, _)| d.clone()),
        manifest_rows: manifest.as_ref().map_or(1, |(_, _, n)| *n as u64),
        merged: None,
        shard: shard.map(|(i, n)| Shard { index: i as u64, count: n as u64 }),
        settings: settings(&args, kind, undecided),
        results,
        seconds: round3(started.elapsed().as_secs_f64()),
    };
    summary.seal();
    finish(&args, &summary, single)
}

/// Writes the outputs asked for and picks the exit status.
fn finish(args: &CheckArgs, summary: &Summary, single: bool) -> Result<ExitCode, Error> {
    let c = summary.counts;
    if let Some(path) = &args.summary {
        elpips::io::write_atomic(path, serde_json::to_string_pretty(summary).expect("json").as_bytes())?;
    }
    if let Some(path) = &args.junit {
        elpips::io::write_atomic(path, junit::junit(summary).as_bytes())?;
    }
    if args.json {
        let out = match (single, summary.results.as_slice()) {
            // One pair: its result with the settings beside it.
            (true, [r]) => {
                let mut v = serde_json::to_value(r).expect("json");
                v["settings"] = serde_json::to_value(&summary.settings).expect("json");
                v
            }
            _ => serde_json::to_value(summary).expect("json"),
        };
        println!("{out}");
    } else if !single {
        // Not "N passed, N failed": CI log readers take that for a test runner's closing line.
        println!("elpips check: {} pairs: {} pass, {} fail, {} error", c.pass + c.fail + c.error, c.pass, c.fail, c.error);
    }
    Ok(ExitCode::from(if c.error > 0 {
        2
    } else if c.fail > 0 {
        1
    } else {
        0
    }))
}

fn check_pair(metric: &mut Metric, load: &LoadOptions, case: &Case, gate: &Gate) -> Result<(Decision, Image, Image), Error> {
    let reference = Image::open(&case.reference_path, load)?;
    let candidate = Image::open(&case.candidate_path, load)?;
    let decision = metric.decide(&reference, &candidate, gate)?;
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
    let safe: String = case.name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    Some(dir.join(format!("{}-{}.png", case.row, safe.trim_start_matches('.'))))
}

/// The heatmap of the samples the verdict rests on: the same seed and sample count, so each
/// sample's draw is the one `decide` used (iid draws are keyed by seed and index) and the map's
/// mean is the verdict's distance. It costs that many samples again.
fn heatmap(metric: &Metric, reference: &Image, candidate: &Image, decision: &Decision, path: &Path, style: &HeatmapArgs) -> Result<Option<HeatmapInfo>, Error> {
    let mut options = metric.options().clone();
    options.sampling = Sampling::Fixed(decision.estimate.samples.max(1) as u32);
    let mut again = Metric::new(options)?;
    let (_, map) = again.compare_with_heatmap(reference, candidate, &mut |_| {})?;
    let writer = HeatmapArgs { heatmap: Some(path.to_owned()), ..style.clone() };
    match writer.write(&map)? {
        None => Ok(None),
        Some(info) => serde_json::from_value(info).map(Some).map_err(|e| invalid(format!("heatmap {}: {e}", path.display()))),
    }
}

/// The record of one pair (the unit of summaries, JUnit cases and text lines).
fn case_result(undecided: Undecided, case: &Case, gate: &Gate, outcome: Result<Decision, String>) -> CaseResult {
    let mut r = CaseResult {
        candidate: case.candidate.clone(),
        ci95: None,
        distance: None,
        heatmap: None,
        lower: None,
        max_distance: gate.threshold,
        message: None,
        name: case.name.clone(),
        reference: case.reference.clone(),
        row: case.row as u64,
        samples: None,
        seconds: 0.0,
        status: Status::Error,
        std_error: None,
        upper: None,
        verdict: None,
    };
    match outcome {
        Err(e) => r.message = Some(e),
        Ok(d) => {
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

fn print_case(args: &CheckArgs, r: &CaseResult, single: bool) {
    let message = r.message.as_deref().unwrap_or("");
    if r.status == Status::Error {
        match single {
            true => eprintln!("elpips: {message}"),
            false => eprintln!("elpips: {}: {message}", r.name),
        }
        return;
    }
    if r.verdict == Some(SideName::Undecided) {
        eprintln!("elpips: warning: {}: {message}", r.name);
    }
    if args.json || (args.quiet && r.status == Status::Pass) {
        return;
    }
    let (verdict, relation) = match r.verdict {
        Some(SideName::Below) => ("below", "<="),
        Some(SideName::Above) => ("above", ">"),
        Some(SideName::Undecided) => ("undecided", "~"),
        None => ("", "~"),
    };
    let line = format!(
        "{} {:.6} ± {:.6} {relation} {} ({verdict}; {} samples, {:.1} s)",
        if r.status == Status::Pass { "PASS" } else { "FAIL" },
        r.distance.unwrap_or(f64::NAN),
        r.ci95.unwrap_or(0.0),
        r.max_distance,
        r.samples.map_or("null".to_string(), |n| n.to_string()),
        r.seconds
    );
    if single {
        println!("{line}");
    } else {
        println!("{line}  {}", r.name);
    }
    // The legend is informational (the file itself is the result): -q silences it, as in compare.
    if let Some(info) = r.heatmap.as_ref().filter(|_| !args.quiet) {
        eprintln!("{}", HeatmapArgs::describe(&serde_json::to_value(info).expect("json")));
    }
}

fn settings(args: &CheckArgs, kind: MetricKind, undecided: Undecided) -> Settings {
    Settings {
        metric: kind.name().to_owned(),
        seed: args.network.seed,
        sampler: args.network.sampler().name().to_owned(),
        scale_levels: args.network.scale_levels,
        error_rate: args.error_rate,
        max_samples: args.max_samples,
        min_samples: args.min_samples,
        undecided,
        lin_weights: args.network.lin_weights.as_ref().map(|p| p.display().to_string()),
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn parse_shard(s: &str) -> Result<(usize, usize), Error> {
    let bad = || invalid(format!("--shard takes I/N with 0 <= I < N (e.g. 0/4), not `{s}`"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

#[cfg(test)]
mod tests {
    use super::manifest::{parse_csv, parse_json_lines, Threshold};
    use super::*;

    #[test]
    fn shards_parse_and_refuse_nonsense() {
        assert_eq!(parse_shard("0/4").unwrap(), (0, 4));
        assert_eq!(parse_shard("3/4").unwrap(), (3, 4));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2", ""] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn xml_escapes_markup_and_control_characters() {
        assert_eq!(junit::xml("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;?");
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
            counts: Default::default(),
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
                max_samples: 200,
                metric: "elpips-vgg".into(),
                min_samples: 16,
                sampler: "iid".into(),
                scale_levels: None,
                seed: 0,
                undecided: Undecided::Estimate,
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
            heatmap: None,
            lower: Some(distance - 0.01),
            max_distance: t,
            message: None,
            name: format!("r{row}"),
            reference: "a.png".into(),
            row,
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

    #[test]
    fn summaries_read_back_what_they_wrote_and_refuse_any_inconsistency() {
        let good = sealed(vec![decided(1, 0.1, 0.5), decided(4, 0.9, 0.5)], Some(Shard { index: 1, count: 3 }), 5);
        let back = parse(&good).unwrap();
        assert_eq!(back.results, good.results);
        assert_eq!(back.canonical(), good.canonical());

        // Each edit, resealed so that only the check it targets can refuse it.
        type Edit = fn(&mut Summary);
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
        for (edit, needle) in cases {
            let mut s = good.clone();
            edit(&mut s);
            s.seal();
            let e = parse(&s).unwrap_err();
            assert!(e.contains(needle), "`{needle}` not in {e}");
        }
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
}
