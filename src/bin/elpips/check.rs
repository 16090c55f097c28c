//! `elpips check`: the CI gate. Is the perceptual distance of a candidate from its reference at
//! most T? One pair, or a manifest of pairs (shardable), with text / JSON / JUnit output and
//! summaries that merge. Exit 0: every pair passed; 1: some pair failed; 2: an error (a bad
//! argument, an unreadable image, a missing runtime). An error outranks a failure.
//!
//! The verdict is [`Metric::decide`]'s sequential test: sampling stops as soon as the distance is
//! known to be below or above T at `--error-rate`; a pair still undecided after `--max-samples`
//! is settled by `--undecided` (by default the point estimate's side, with a warning).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use elpips::{Decision, Error, Gate, Image, LoadOptions, Metric, MetricKind, Sampling, Verdict};
use serde_json::{json, Value};

use crate::heatmap::HeatmapArgs;
use crate::input::InputArgs;
use crate::metric_args::NetworkArgs;
use crate::CommonArgs;

/// Version of the summary format written by `--summary` (and read by `--merge`).
const SUMMARY_FORMAT: u64 = 1;

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

/// `--undecided`: how a pair still undecided after --max-samples is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Undecided {
    /// By the point estimate's side, with a warning.
    Estimate,
    /// Pass it.
    Pass,
    /// Fail it.
    Fail,
}

impl std::fmt::Display for Undecided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::value_name(self))
    }
}

/// One pair to check.
struct Case {
    /// Row in the manifest (0-based, data rows only); 0 for a single pair.
    row: usize,
    name: String,
    /// As written (relative paths stay relative, for the report).
    reference: String,
    candidate: String,
    /// Resolved against the manifest's folder.
    reference_path: PathBuf,
    candidate_path: PathBuf,
    max_distance: Option<f64>,
}

pub fn run(args: CheckArgs) -> Result<ExitCode, Error> {
    if !args.merge.is_empty() {
        return merge(&args);
    }
    let kind = args.network.metric;
    if args.network.sampler == elpips::SamplerKind::Control {
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
    if let Some(dir) = &args.heatmap_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::Write { path: dir.clone(), reason: e.to_string() })?;
    }

    let (cases, manifest) = match &args.manifest {
        Some(path) => {
            let (rows, digest) = read_manifest(path)?;
            let total = rows.len();
            let picked: Vec<Case> = match shard {
                Some((i, n)) => rows.into_iter().filter(|c| c.row % n == i).collect(),
                None => rows,
            };
            (picked, Some((path.clone(), digest, total)))
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

    let mut metric = Metric::new(args.network.metric_options(&args.common, Sampling::DEFAULT))?;
    let load = args.input.load_options()?;

    let started = Instant::now();
    let single = manifest.is_none();
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let gate = Gate { threshold: case.max_distance.or(args.max_distance).unwrap(), ..gate };
        let t0 = Instant::now();
        let outcome = check_pair(&mut metric, &load, case, &gate);
        let mut result = case_result(&args, case, &gate, outcome.as_ref().map(|(d, _, _)| *d).map_err(|e| e.to_string()), 0.0);
        if let (Ok((decision, reference, candidate)), Some(path)) = (&outcome, heatmap_path(&args, case, &result)) {
            match heatmap(&metric, reference, candidate, decision, &path, &args.heatmap) {
                Ok(info) => result["heatmap"] = info,
                Err(e) => {
                    result["status"] = "error".into();
                    result["message"] = format!("heatmap: {e}").into();
                }
            }
        }
        result["seconds"] = round3(t0.elapsed().as_secs_f64()).into();
        print_case(&args, &result, single);
        results.push(result);
    }

    let settings = settings(&args, kind);
    let mut summary = json!({
        "elpips_check": SUMMARY_FORMAT,
        "manifest": manifest.as_ref().map(|(p, _, _)| p.display().to_string()),
        "manifest_sha256": manifest.as_ref().map(|(_, d, _)| d.clone()),
        "manifest_rows": manifest.as_ref().map_or(1, |(_, _, n)| *n),
        "shard": shard.map(|(i, n)| json!({"index": i, "count": n})),
        "settings": settings,
        "results": results,
        "seconds": round3(started.elapsed().as_secs_f64()),
    });
    let counts = add_counts(&mut summary);
    finish(&args, &summary, counts, single)
}

/// Pass/fail/error counts of a summary's results, stored in it as "counts".
fn add_counts(summary: &mut Value) -> [usize; 3] {
    let mut counts = [0usize; 3];
    for r in summary["results"].as_array().map(Vec::as_slice).unwrap_or_default() {
        match r["status"].as_str() {
            Some("pass") => counts[0] += 1,
            Some("fail") => counts[1] += 1,
            _ => counts[2] += 1,
        }
    }
    summary["counts"] = json!({"pass": counts[0], "fail": counts[1], "error": counts[2]});
    counts
}

/// Writes the outputs asked for and picks the exit status.
fn finish(args: &CheckArgs, summary: &Value, [pass, fail, error]: [usize; 3], single: bool) -> Result<ExitCode, Error> {
    if let Some(path) = &args.summary {
        elpips::io::write_atomic(path, serde_json::to_string_pretty(summary).expect("json").as_bytes())?;
    }
    if let Some(path) = &args.junit {
        elpips::io::write_atomic(path, junit(summary).as_bytes())?;
    }
    if args.json {
        let out = if single && summary["results"].as_array().is_some_and(|r| r.len() == 1) {
            let mut r = summary["results"][0].clone();
            r["settings"] = summary["settings"].clone();
            r
        } else {
            summary.clone()
        };
        println!("{out}");
    } else if !single {
        // Not "N passed, N failed": CI log readers take that for a test runner's closing line.
        println!("elpips check: {} pairs: {pass} pass, {fail} fail, {error} error", pass + fail + error);
    }
    Ok(ExitCode::from(if error > 0 {
        2
    } else if fail > 0 {
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
fn heatmap_path(args: &CheckArgs, case: &Case, result: &Value) -> Option<PathBuf> {
    if let Some(p) = &args.heatmap.heatmap {
        return Some(p.clone());
    }
    let dir = args.heatmap_dir.as_ref()?;
    if result["status"] == "pass" {
        return None;
    }
    let safe: String = case.name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    Some(dir.join(format!("{}-{}.png", case.row, safe.trim_start_matches('.'))))
}

/// The heatmap of the samples the verdict rests on: the same seed and sample count, so each
/// sample's draw is the one `decide` used (iid draws are keyed by seed and index) and the map's
/// mean is the verdict's distance. It costs that many samples again.
fn heatmap(metric: &Metric, reference: &Image, candidate: &Image, decision: &Decision, path: &Path, style: &HeatmapArgs) -> Result<Value, Error> {
    let mut options = metric.options().clone();
    options.sampling = Sampling::Fixed(decision.estimate.samples.max(1) as u32);
    let mut again = Metric::new(options)?;
    let (_, map) = again.compare_with_heatmap(reference, candidate, &mut |_| {})?;
    let writer = HeatmapArgs { heatmap: Some(path.to_owned()), ..style.clone() };
    Ok(writer.write(&map)?.unwrap_or(Value::Null))
}

/// The JSON record of one pair (the unit of summaries, JUnit cases and text lines).
fn case_result(args: &CheckArgs, case: &Case, gate: &Gate, outcome: Result<Decision, String>, seconds: f64) -> Value {
    let mut r = json!({
        "row": case.row,
        "name": case.name,
        "reference": case.reference,
        "candidate": case.candidate,
        "max_distance": gate.threshold,
        "seconds": round3(seconds),
    });
    match outcome {
        Err(e) => {
            r["status"] = "error".into();
            r["message"] = e.into();
        }
        Ok(d) => {
            let pass = match d.verdict {
                Verdict::Below => true,
                Verdict::Above => false,
                Verdict::Undecided => match args.undecided {
                    Undecided::Pass => true,
                    Undecided::Fail => false,
                    Undecided::Estimate => d.estimate_below,
                },
            };
            r["status"] = if pass { "pass" } else { "fail" }.into();
            r["verdict"] = d.verdict.name().into();
            r["distance"] = d.estimate.distance.into();
            r["std_error"] = d.estimate.std_error.into();
            r["ci95"] = d.estimate.ci95.into();
            r["lower"] = d.lower.into();
            r["upper"] = d.upper.into();
            r["samples"] = d.estimate.samples.into();
            if d.verdict == Verdict::Undecided {
                r["message"] = format!(
                    "undecided after {} samples at error rate {}: the distance {:.6} is within the bounds [{:.6}, {:.6}] around {}; {} by --undecided {}",
                    d.estimate.samples,
                    gate.error_rate,
                    d.estimate.distance,
                    d.lower,
                    d.upper,
                    gate.threshold,
                    if pass { "passed" } else { "failed" },
                    args.undecided
                )
                .into();
            }
        }
    }
    r
}

fn print_case(args: &CheckArgs, r: &Value, single: bool) {
    let status = r["status"].as_str().unwrap_or("error");
    if status == "error" {
        match single {
            true => eprintln!("elpips: {}", r["message"].as_str().unwrap_or("")),
            false => eprintln!("elpips: {}: {}", r["name"].as_str().unwrap_or(""), r["message"].as_str().unwrap_or("")),
        }
        return;
    }
    let verdict = r["verdict"].as_str().unwrap_or("");
    if verdict == "undecided" {
        eprintln!("elpips: warning: {}: {}", r["name"].as_str().unwrap_or(""), r["message"].as_str().unwrap_or(""));
    }
    if args.json || (args.quiet && status == "pass") {
        return;
    }
    let t = r["max_distance"].as_f64().unwrap_or(f64::NAN);
    let d = r["distance"].as_f64().unwrap_or(f64::NAN);
    let relation = match verdict {
        "below" => "<=",
        "above" => ">",
        _ => "~",
    };
    let line = format!(
        "{} {:.6} ± {:.6} {relation} {t} ({verdict}; {} samples, {:.1} s)",
        if status == "pass" { "PASS" } else { "FAIL" },
        d,
        r["ci95"].as_f64().unwrap_or(0.0),
        r["samples"],
        r["seconds"].as_f64().unwrap_or(0.0)
    );
    if single {
        println!("{line}");
    } else {
        println!("{line}  {}", r["name"].as_str().unwrap_or(""));
    }
    if !r["heatmap"].is_null() {
        eprintln!("{}", HeatmapArgs::describe(&r["heatmap"]));
    }
}

fn settings(args: &CheckArgs, kind: MetricKind) -> Value {
    json!({
        "metric": kind.name(),
        "seed": args.network.seed,
        "sampler": args.network.sampler.name(),
        "scale_levels": args.network.scale_levels,
        "error_rate": args.error_rate,
        "max_samples": args.max_samples,
        "min_samples": args.min_samples,
        "undecided": args.undecided.to_string(),
        "lin_weights": args.network.lin_weights.as_ref().map(|p| p.display().to_string()),
    })
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

// ------------------------------------------------------------------------------------------------
// Manifests

/// Reads a manifest: its pairs (in file order, numbered from 0) and the sha256 of its bytes
/// (summaries carry it, so --merge can tell shards of different manifests apart).
fn read_manifest(path: &Path) -> Result<(Vec<Case>, String), Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_owned(), reason: e.to_string() })?;
    let digest = sha256_hex(&bytes);
    let text = String::from_utf8(bytes).map_err(|_| invalid(format!("manifest {} is not UTF-8 text", path.display())))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let json_lines = match ext.as_str() {
        "jsonl" | "ndjson" | "json" => true,
        "csv" => false,
        _ => text.trim_start().starts_with('{'),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let rows = if json_lines { parse_json_lines(&text, path)? } else { parse_csv(&text, path)? };
    if rows.is_empty() {
        return Err(invalid(format!("manifest {} lists no pairs", path.display())));
    }
    let cases = rows
        .into_iter()
        .enumerate()
        .map(|(row, (reference, candidate, max_distance, name))| Case {
            row,
            name: name.unwrap_or_else(|| candidate.clone()),
            reference_path: base.join(&reference),
            candidate_path: base.join(&candidate),
            reference,
            candidate,
            max_distance,
        })
        .collect();
    Ok((cases, digest))
}

type Row = (String, String, Option<f64>, Option<String>);

fn threshold(v: f64, path: &Path, line: usize) -> Result<f64, Error> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(invalid(format!("{}:{line}: max_distance must be a finite distance >= 0, not {v}", path.display())))
    }
}

fn parse_csv(text: &str, path: &Path) -> Result<Vec<Row>, Error> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text.as_bytes());
    let csv_err = |e: csv::Error| invalid(format!("manifest {}: {e}", path.display()));
    let headers = reader.headers().map_err(csv_err)?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (r, c, t, n) = (col("reference"), col("candidate"), col("max_distance"), col("name"));
    for h in headers.iter() {
        if !["reference", "candidate", "max_distance", "name"].contains(&h) {
            return Err(invalid(format!(
                "manifest {}: unknown column `{h}` (columns: reference, candidate, max_distance, name)",
                path.display()
            )));
        }
    }
    let (Some(r), Some(c)) = (r, c) else {
        return Err(invalid(format!(
            "manifest {}: the first line must name the columns, with at least `reference,candidate`",
            path.display()
        )));
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let field = |i: usize| record.get(i).unwrap_or("").to_string();
        let (reference, candidate) = (field(r), field(c));
        if reference.is_empty() || candidate.is_empty() {
            return Err(invalid(format!("{}:{line}: reference and candidate must not be empty", path.display())));
        }
        let max_distance = match t.map(field).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(threshold(
                s.parse().map_err(|_| invalid(format!("{}:{line}: max_distance `{s}` is not a number", path.display())))?,
                path,
                line,
            )?),
        };
        rows.push((reference, candidate, max_distance, n.map(field).filter(|s| !s.is_empty())));
    }
    Ok(rows)
}

fn parse_json_lines(text: &str, path: &Path) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| invalid(format!("{}:{line_no}: {msg}", path.display()));
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("not a JSON object: {e}")))?;
        let obj = v.as_object().ok_or_else(|| at("expected one JSON object per line".into()))?;
        for k in obj.keys() {
            if !["reference", "candidate", "max_distance", "name"].contains(&k.as_str()) {
                return Err(at(format!("unknown key `{k}` (keys: reference, candidate, max_distance, name)")));
            }
        }
        let string = |k: &str| obj.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let (Some(reference), Some(candidate)) = (string("reference"), string("candidate")) else {
            return Err(at("`reference` and `candidate` must be non-empty strings".into()));
        };
        let max_distance = match obj.get("max_distance") {
            None | Some(Value::Null) => None,
            Some(v) => Some(threshold(v.as_f64().ok_or_else(|| at(format!("max_distance {v} is not a number")))?, path, line_no)?),
        };
        rows.push((reference, candidate, max_distance, string("name")));
    }
    Ok(rows)
}

// ------------------------------------------------------------------------------------------------
// Merging summaries

fn merge(args: &CheckArgs) -> Result<ExitCode, Error> {
    if args.reference.is_some() || args.shard.is_some() {
        return Err(invalid("--merge takes summaries only (no images, --manifest or --shard)"));
    }
    let mut parts = Vec::new();
    for path in &args.merge {
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_owned(), reason: e.to_string() })?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{} is not a JSON summary of `elpips check --summary`: {e}", path.display())))?;
        if v["elpips_check"].as_u64() != Some(SUMMARY_FORMAT) || !v["results"].is_array() {
            return Err(invalid(format!(
                "{} is not a summary written by `elpips check --summary` (format {SUMMARY_FORMAT})",
                path.display()
            )));
        }
        parts.push((path, v));
    }
    let first = &parts[0].1;
    let from_manifest = !first["manifest_sha256"].is_null();
    for (path, v) in &parts[1..] {
        if v["manifest_sha256"] != first["manifest_sha256"] || v["settings"] != first["settings"] {
            return Err(invalid(format!(
                "{} and {} come from different manifests or settings; merge the summaries of one run",
                parts[0].0.display(),
                path.display()
            )));
        }
    }
    let mut results: Vec<Value> = Vec::new();
    if from_manifest {
        // The shards of one manifest must all be there, each once, so a lost job cannot pass.
        let count = first["shard"]["count"].as_u64().unwrap_or(1);
        let mut seen = vec![None; count as usize];
        for (path, v) in &parts {
            let (i, n) = (v["shard"]["index"].as_u64().unwrap_or(0), v["shard"]["count"].as_u64().unwrap_or(1));
            if n != count {
                return Err(invalid(format!("{} is shard {i}/{n}, others are of {count} shards", path.display())));
            }
            if let Some(prev) = seen[i as usize].replace(*path) {
                return Err(invalid(format!("shard {i}/{n} is given twice: {} and {}", prev.display(), path.display())));
            }
            results.extend(v["results"].as_array().unwrap().iter().cloned());
        }
        let missing: Vec<String> = seen.iter().enumerate().filter(|(_, s)| s.is_none()).map(|(i, _)| format!("{i}/{count}")).collect();
        if !missing.is_empty() {
            return Err(invalid(format!("missing the summaries of shard(s) {}", missing.join(", "))));
        }
        results.sort_by_key(|r| r["row"].as_u64().unwrap_or(u64::MAX));
    } else {
        // Single-pair summaries (e.g. one per CTest test): concatenated in the order given.
        for (row, r) in parts.iter().flat_map(|(_, v)| v["results"].as_array().unwrap().iter()).enumerate() {
            let mut r = r.clone();
            r["row"] = row.into();
            results.push(r);
        }
    }
    let seconds: f64 = parts.iter().map(|(_, v)| v["seconds"].as_f64().unwrap_or(0.0)).sum();
    let mut summary = json!({
        "elpips_check": SUMMARY_FORMAT,
        "manifest": first["manifest"],
        "manifest_sha256": first["manifest_sha256"],
        "manifest_rows": if from_manifest { first["manifest_rows"].clone() } else { results.len().into() },
        "shard": Value::Null,
        "merged": args.merge.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "settings": first["settings"],
        "results": results,
        "seconds": round3(seconds),
    });
    let counts = add_counts(&mut summary);
    if !args.json && !args.quiet {
        for r in summary["results"].as_array().unwrap() {
            if r["status"] != "pass" {
                println!("{} {}  {}", r["status"].as_str().unwrap_or("").to_uppercase(), r["name"].as_str().unwrap_or(""), r["message"].as_str().unwrap_or(""));
            }
        }
    }
    finish(args, &summary, counts, false)
}

// ------------------------------------------------------------------------------------------------
// Reports

/// JUnit XML (the schema Jenkins, GitLab and GitHub reporters read): one testsuite, one
/// testcase per pair; a fail is a <failure>, an error an <error>.
fn junit(summary: &Value) -> String {
    let results = summary["results"].as_array().map(Vec::as_slice).unwrap_or_default();
    let c = &summary["counts"];
    let suite = summary["manifest"].as_str().map_or("elpips check".to_string(), |m| format!("elpips check {m}"));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{}\">",
        results.len(),
        c["fail"],
        c["error"],
        summary["seconds"]
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{}\">",
        xml(&suite),
        results.len(),
        c["fail"],
        c["error"],
        summary["seconds"]
    );
    x.push_str("    <properties>\n");
    if let Some(settings) = summary["settings"].as_object() {
        for (k, v) in settings {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let _ = writeln!(x, "      <property name=\"{}\" value=\"{}\"/>", xml(k), xml(&v));
        }
    }
    x.push_str("    </properties>\n");
    for r in results {
        let name = r["name"].as_str().unwrap_or("");
        let _ = write!(x, "    <testcase classname=\"elpips.check\" name=\"{}\" time=\"{}\"", xml(name), r["seconds"]);
        let detail = format!(
            "reference {}\ncandidate {}\ndistance {} ± {} (95%), {} samples, verdict {}, max_distance {}",
            r["reference"].as_str().unwrap_or(""),
            r["candidate"].as_str().unwrap_or(""),
            r["distance"],
            r["ci95"],
            r["samples"],
            r["verdict"].as_str().unwrap_or("none"),
            r["max_distance"]
        );
        match r["status"].as_str() {
            Some("pass") => {
                let _ = writeln!(x, ">\n      <system-out>{}</system-out>\n    </testcase>", xml(&detail));
            }
            Some("fail") => {
                let msg = format!("E-LPIPS distance {} > max_distance {}", r["distance"], r["max_distance"]);
                let _ = writeln!(
                    x,
                    ">\n      <failure message=\"{}\" type=\"elpips.distance\">{}</failure>\n    </testcase>",
                    xml(&msg),
                    xml(&detail)
                );
            }
            _ => {
                let msg = r["message"].as_str().unwrap_or("error");
                let _ = writeln!(x, ">\n      <error message=\"{}\" type=\"elpips.error\">{}</error>\n    </testcase>", xml(msg), xml(msg));
            }
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even as references.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
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
        assert_eq!(xml("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;?");
    }

    #[test]
    fn manifests_parse_in_both_forms() {
        let p = Path::new("m.csv");
        let rows = parse_csv("# frames\nreference,candidate,max_distance,name\nr.png, c.png ,0.1,first\nr.png,d.png,,\n", p).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], ("r.png".into(), "c.png".into(), Some(0.1), Some("first".into())));
        assert_eq!(rows[1], ("r.png".into(), "d.png".into(), None, None));
        assert!(parse_csv("ref,candidate\na,b\n", p).unwrap_err().to_string().contains("unknown column `ref`"));
        assert!(parse_csv("reference,candidate,max_distance\na,b,-1\n", p).is_err());
        assert!(parse_csv("reference,candidate,max_distance\na,b,x\n", p).unwrap_err().to_string().contains("not a number"));
        let j = Path::new("m.jsonl");
        let rows = parse_json_lines("{\"reference\":\"r\",\"candidate\":\"c\",\"max_distance\":0.2}\n\n{\"reference\":\"r\",\"candidate\":\"d\"}\n", j).unwrap();
        assert_eq!(rows[0].2, Some(0.2));
        assert_eq!(rows[1].2, None);
        assert!(parse_json_lines("{\"reference\":\"r\"}\n", j).unwrap_err().to_string().contains("m.jsonl:1"));
        assert!(parse_json_lines("[1]\n", j).is_err());
    }
}
