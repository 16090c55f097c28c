//! `elpips rank`: several candidates against one reference, with the same draws for all of
//! them (common random numbers), so that their differences are measured far more precisely
//! than their distances.

use std::path::PathBuf;

use clap::Args;
use elpips::{Error, Image, LoadOptions, Metric, MetricKind, MetricOptions, MultiEstimate, SamplerKind, Sampling};

use crate::{runtime_options, CommonArgs};

#[derive(Args)]
pub struct RankArgs {
    /// Reference image.
    reference: PathBuf,
    /// Candidate images (each the reference's size), at least one.
    #[arg(required = true, num_args = 1..)]
    candidates: Vec<PathBuf>,
    /// Metric: elpips-vgg (default), lpips-vgg or lpips-alex.
    #[arg(long, default_value = "elpips-vgg", value_parser = ["elpips-vgg", "lpips-vgg", "lpips-alex"])]
    metric: String,
    /// Custom linear weights replacing the metric's (the authors' .npy dict or an lpips .pth).
    #[arg(long, value_name = "FILE")]
    lin_weights: Option<PathBuf>,
    /// Draw exactly N E-LPIPS samples (each applied to every candidate).
    #[arg(long, value_name = "N", conflicts_with_all = ["rel_error", "abs_error", "max_samples"])]
    samples: Option<u32>,
    /// Adaptive: stop when every distance's 95% half-width is below R x distance [default: 0.025] ...
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    rel_error: Option<f64>,
    /// ... and below E [default: 0.01] ...
    #[arg(long, value_name = "E", allow_negative_numbers = true)]
    abs_error: Option<f64>,
    /// ... or after M samples [default: 200].
    #[arg(long, value_name = "M")]
    max_samples: Option<u32>,
    /// How samples are drawn: iid (default), stratified or control (see docs/estimator.md).
    #[arg(long, default_value = "iid", value_parser = ["iid", "stratified", "control"])]
    sampler: String,
    /// Seed of the random transforms and dropout.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// E-LPIPS scale levels (default: max(1, min(H, W) / 64)).
    #[arg(long, value_name = "S")]
    scale_levels: Option<u32>,
    /// Refuse images with more pixels than this.
    #[arg(long, value_name = "P", default_value_t = elpips::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn sampling(args: &RankArgs, kind: MetricKind) -> Result<Sampling, Error> {
    let adaptive_given = args.rel_error.is_some() || args.abs_error.is_some() || args.max_samples.is_some();
    if !kind.is_ensemble() && (args.samples.is_some() || adaptive_given || args.sampler != "iid") {
        return Err(Error::InvalidArgument(format!("{kind} is deterministic; --samples, --rel-error, --abs-error, --max-samples and --sampler apply to elpips-vgg only")));
    }
    let sampling = match args.samples {
        Some(n) => Sampling::Fixed(n),
        None => {
            let Sampling::Adaptive { abs_error, rel_error, max_samples, min_samples } = Sampling::DEFAULT else { unreachable!() };
            let max_samples = args.max_samples.unwrap_or(max_samples);
            Sampling::Adaptive {
                abs_error: args.abs_error.unwrap_or(abs_error),
                rel_error: args.rel_error.unwrap_or(rel_error),
                max_samples,
                min_samples: min_samples.min(max_samples),
            }
        }
    };
    sampling.validate()?;
    Ok(sampling)
}

pub fn run(args: RankArgs) -> Result<(), Error> {
    let kind = MetricKind::from_name(&args.metric)?;
    let sampling = sampling(&args, kind)?;
    let load = LoadOptions { max_pixels: args.max_pixels, ..Default::default() };
    let reference = Image::open(&args.reference, &load)?;
    let candidates = args.candidates.iter().map(|p| Image::open(p, &load)).collect::<Result<Vec<_>, _>>()?;
    let mut metric = Metric::new(MetricOptions {
        metric: kind,
        model_dir: args.common.model_dir.clone(),
        linear_weights: args.lin_weights.clone(),
        runtime: runtime_options(&args.common),
        seed: args.seed,
        sampling,
        sampler: match args.sampler.as_str() {
            "stratified" => SamplerKind::Stratified,
            "control" => SamplerKind::Control,
            _ => SamplerKind::Iid,
        },
        scale_levels: args.scale_levels,
    })?;
    let refs: Vec<&Image> = candidates.iter().collect();
    let m = metric.compare_many(&reference, &refs)?;
    if args.json {
        print_json(&args, kind, &m);
    } else {
        print_table(&args, kind, &m);
    }
    Ok(())
}

fn print_json(args: &RankArgs, kind: MetricKind, m: &MultiEstimate) {
    let order = m.ranking();
    let candidates: Vec<serde_json::Value> = m
        .distances
        .iter()
        .enumerate()
        .map(|(i, e)| {
            serde_json::json!({
                "path": args.candidates[i],
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
        "reference": args.reference,
        "samples": m.samples,
        "seed": args.seed,
        "converged": m.converged,
        "candidates": candidates,
        "differences": differences,
        "ranking": order,
        "ranking_resolved": m.ranking_resolved(),
    });
    if kind.is_ensemble() {
        obj["sampler"] = args.sampler.clone().into();
    }
    println!("{obj}");
}

fn print_table(args: &RankArgs, kind: MetricKind, m: &MultiEstimate) {
    let order = m.ranking();
    let resolved = m.ranking_resolved();
    println!("{:>4}  {:>21}  {:>26}  candidate", "rank", "distance ± 95%", "minus the rank above ± 95%");
    for (r, &i) in order.iter().enumerate() {
        let e = &m.distances[i];
        let step = match r {
            0 => String::new(),
            _ => {
                let d = m.difference(i, order[r - 1]).expect("every pair has a difference");
                format!("{:+.6} ± {:.6}{}", d.difference, d.ci95, if resolved[r - 1] { "" } else { " ~" })
            }
        };
        println!("{:>4}  {:>10.6} ± {:<8.6}  {:>26}  {}", r + 1, e.distance, e.ci95, step, args.candidates[i].display());
    }
    if kind.is_ensemble() {
        println!(
            "{} {} samples per candidate, the same draws for all (seed {}); ~: not told apart at 95%{}",
            m.samples,
            args.sampler,
            args.seed,
            if m.converged { "" } else { "; stopped at --max-samples before reaching the error target" }
        );
    }
}
