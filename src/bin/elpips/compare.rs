//! `elpips compare`: one reference, one candidate, one estimate.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use elpips::{Error, Estimate, Image, Metric, MetricKind, MetricOptions, SamplerKind, Sampling};

use crate::heatmap::HeatmapArgs;
use crate::input::InputArgs;
use crate::{runtime_options, CommonArgs};

#[derive(Args)]
pub struct CompareArgs {
    /// Reference image.
    reference: PathBuf,
    /// Candidate image (same size as the reference).
    candidate: PathBuf,
    /// Metric: elpips-vgg (robust ensemble, default), lpips-vgg or lpips-alex (official LPIPS v0.1).
    #[arg(long, default_value = "elpips-vgg", value_parser = ["elpips-vgg", "lpips-vgg", "lpips-alex"])]
    metric: String,
    /// Custom linear weights replacing the metric's (the authors' .npy dict or an lpips .pth).
    #[arg(long, value_name = "FILE")]
    lin_weights: Option<PathBuf>,
    /// Draw exactly N E-LPIPS samples (instead of adaptive sampling).
    #[arg(long, value_name = "N", conflicts_with_all = ["rel_error", "abs_error", "max_samples"])]
    samples: Option<u32>,
    /// Adaptive: stop when the 95% half-width is below R x distance [default: 0.025] ...
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    rel_error: Option<f64>,
    /// ... and below E [default: 0.01] ...
    #[arg(long, value_name = "E", allow_negative_numbers = true)]
    abs_error: Option<f64>,
    /// ... or after M samples [default: 200].
    #[arg(long, value_name = "M")]
    max_samples: Option<u32>,
    /// How samples are drawn: iid (independent draws, the authors' estimator; default),
    /// stratified by scale level, or control (iid with control variates); see docs/estimator.md.
    #[arg(long, default_value = "iid", value_parser = ["iid", "stratified", "control"])]
    sampler: String,
    /// Seed of the random transforms and dropout.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// E-LPIPS scale levels (default: max(1, min(H, W) / 64); the authors' library default is 8).
    #[arg(long, value_name = "S")]
    scale_levels: Option<u32>,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    heatmap: HeatmapArgs,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

fn sampling(args: &CompareArgs, kind: MetricKind) -> Result<Sampling, Error> {
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

pub fn run(args: CompareArgs) -> Result<(), Error> {
    let kind = MetricKind::from_name(&args.metric)?;
    let sampling = sampling(&args, kind)?;
    args.heatmap.validate()?;
    let load = args.input.load_options()?;
    let reference = Image::open(&args.reference, &load)?;
    let candidate = Image::open(&args.candidate, &load)?;
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
    metric.check_pair(&reference, &candidate)?;

    let started = Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let interactive = std::io::stderr().is_terminal();
    let mut on_progress = |p: elpips::Progress| {
        // Only long runs on a terminal get a bar; pipes and CI logs stay clean.
        if !interactive || (bar.is_none() && started.elapsed() < Duration::from_secs(2)) {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(p.max_samples);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} samples  {msg}  [{elapsed} < {eta}]")
                    .expect("static template"),
            );
            b
        });
        b.set_position(p.samples);
        b.set_message(format!("{:.4} ± {:.4}", p.estimate.distance, p.estimate.ci95));
    };
    let (estimate, heatmap) = if args.heatmap.heatmap.is_some() {
        let (e, map) = metric.compare_with_heatmap(&reference, &candidate, &mut on_progress)?;
        (e, args.heatmap.write(&map)?)
    } else {
        (metric.compare_with_progress(&reference, &candidate, &mut on_progress)?, None)
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_result(&args, &metric, kind, &reference, &estimate, heatmap.as_ref());
    Ok(())
}

fn print_result(args: &CompareArgs, metric: &Metric, kind: MetricKind, reference: &Image, e: &Estimate, heatmap: Option<&serde_json::Value>) {
    let levels = kind.is_ensemble().then(|| metric.scale_levels(reference.height(), reference.width()));
    if args.json {
        let mut obj = serde_json::json!({
            "metric": kind.name(),
            "distance": e.distance,
            "std_error": e.std_error,
            "ci95": e.ci95,
            "samples": e.samples,
            "seed": args.seed,
            "converged": e.converged,
            "reference": args.reference,
            "candidate": args.candidate,
            "width": reference.width(),
            "height": reference.height(),
        });
        if let Some(l) = levels {
            obj["scale_levels"] = l.into();
            obj["sampler"] = args.sampler.clone().into();
        }
        if let Some(lw) = &args.lin_weights {
            obj["lin_weights"] = serde_json::json!(lw);
        }
        if let Some(h) = heatmap {
            obj["heatmap"] = h.clone();
        }
        println!("{obj}");
        return;
    } else if let Some(l) = levels {
        println!(
            "{:.6} ± {:.6} (95%; {} {} samples, {} scale levels, seed {}{})",
            e.distance,
            e.ci95,
            e.samples,
            args.sampler,
            l,
            args.seed,
            if e.converged { "" } else { "; stopped at --max-samples before reaching the error target" }
        );
    } else {
        println!("{:.6}", e.distance);
    }
    // stdout keeps its one line; the heatmap's legend goes with the progress output.
    if let Some(h) = heatmap {
        eprintln!("{}", HeatmapArgs::describe(h));
    }
}

