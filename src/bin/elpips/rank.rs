//! `elpips rank`: several candidates against one reference, with the same draws for all of
//! them (common random numbers), so that their differences are measured far more precisely
//! than their distances.

use crate::escape::line;
use crate::output::out;
use std::path::PathBuf;

use clap::Args;
use elpips::{Error, Image, Metric, MetricKind, MultiEstimate, SampleArea};

use crate::input::InputArgs;
use crate::metric_args::{NetworkArgs, SamplingArgs};
use crate::CommonArgs;

#[derive(Args)]
pub struct RankArgs {
    /// Reference image.
    reference: PathBuf,
    /// Candidate images (each the reference's size), at least one.
    #[arg(required = true, num_args = 1..)]
    candidates: Vec<PathBuf>,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    input: InputArgs,
    /// Print one JSON object instead of a table.
    #[arg(long, help_heading = "Output")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: RankArgs) -> Result<(), Error> {
    let kind = args.network.metric;
    let sampling = args.sampling.sampling(&args.network)?;
    let load = args.input.load_options()?;
    let reference = Image::open(&args.reference, &load)?;
    let candidates = args.candidates.iter().map(|p| Image::open(p, &load)).collect::<Result<Vec<_>, _>>()?;
    let mut metric = Metric::new(args.network.metric_options(&args.common, sampling))?;
    let refs: Vec<&Image> = candidates.iter().collect();
    let m = metric.compare_many(&reference, &refs)?;
    if args.json {
        let sample_area = SampleArea::name(metric.tile_sampled(reference.height(), reference.width()));
        // Two streams: `samples` counts full samples.
        let cheap_draws = m.samples * metric.cheap_draws_per_sample(reference.height(), reference.width()) as u64;
        print_json(&args, kind, (metric.device().name(), metric.backend().name()), (sample_area, cheap_draws), &m)
    } else {
        print_table(&args, kind, &m)
    }
}

fn print_json(args: &RankArgs, kind: MetricKind, (device, backend): (&str, &str), (sample_area, cheap_draws): (&str, u64), m: &MultiEstimate) -> Result<(), Error> {
    let order = m.ranking();
    let candidates: Vec<serde_json::Value> = m
        .distances
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({
                "candidate": args.candidates[i],
                "distance": e.distance,
                "std_error": e.std_error,
                "ci95": e.ci95,
                "rank": order.iter().position(|&k| k == i).map(|r| r + 1),
            })
        })
        .collect();
    let differences: Vec<serde_json::Value> = m
        .differences
        .iter()
        .map(|d| serde_json::json!({"first": d.first, "second": d.second, "difference": d.difference, "std_error": d.std_error, "ci95": d.ci95}))
        .collect();
    let mut obj = serde_json::json!({
        "metric": kind.name(),
        "device": device,
        "backend": backend,
        "reference": args.reference,
        "samples": m.samples,
        "seed": args.network.seed,
        "precision": args.network.precision.name(),
        "converged": m.converged,
        "candidates": candidates,
        "differences": differences,
        "ranking": order,
        "ranking_resolved": m.ranking_resolved(),
    });
    if kind.is_ensemble() {
        obj["sampler"] = args.network.sampler().name().into();
        obj["sample_area"] = sample_area.into();
        obj["cheap_draws"] = cheap_draws.into();
    }
    out!("{obj}")
}

fn print_table(args: &RankArgs, kind: MetricKind, m: &MultiEstimate) -> Result<(), Error> {
    let order = m.ranking();
    let resolved = m.ranking_resolved();
    out!("{:>4}  {:>21}  {:>26}  candidate", "rank", "distance ± 95%", "minus the rank above ± 95%")?;
    for (r, &i) in order.iter().enumerate() {
        let e = &m.distances[i];
        let step = match r {
            0 => String::new(),
            _ => {
                let d = m.difference(i, order[r - 1]).expect("every pair has a difference");
                format!("{:+.6} ± {:.6}{}", d.difference, d.ci95, if resolved[r - 1] { "" } else { " ~" })
            }
        };
        out!("{:>4}  {:>10.6} ± {:<8.6}  {:>26}  {}", r + 1, e.distance, e.ci95, step, line(&args.candidates[i].display().to_string()))?;
    }
    if kind.is_ensemble() {
        out!(
            "{} {} samples per candidate, the same draws for all (seed {}); ~: not told apart at 95%{}",
            m.samples,
            args.network.sampler().name(),
            args.network.seed,
            if m.converged { "" } else { "; stopped at --max-samples before reaching the error target" }
        )?;
    }
    Ok(())
}
