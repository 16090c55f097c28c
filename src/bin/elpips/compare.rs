//! `elpips compare`: one reference, one candidate, one estimate.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use elpips::{Error, Estimate, Image, Metric, MetricKind, SampleArea};

use crate::heatmap::HeatmapArgs;
use crate::input::InputArgs;
use crate::metric_args::{NetworkArgs, SamplingArgs};
use crate::output::{check_outputs, out, Outputs};
use crate::CommonArgs;

#[derive(Args)]
pub struct CompareArgs {
    /// Reference image.
    reference: PathBuf,
    /// Candidate image (same size as the reference).
    candidate: PathBuf,
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    heatmap: HeatmapArgs,
    /// Print one JSON object instead of a line of text.
    #[arg(long, help_heading = "Output")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: CompareArgs, quiet: bool) -> Result<(), Error> {
    let kind = args.network.metric;
    let sampling = args.sampling.sampling(&args.network)?;
    args.heatmap.validate()?;
    let load = args.input.load_options()?;
    if let Some(path) = &args.heatmap.heatmap {
        check_outputs(&[("--heatmap", path)], &[&args.reference, &args.candidate])?;
    }
    let reference = Image::open(&args.reference, &load)?;
    let candidate = Image::open(&args.candidate, &load)?;
    let mut metric = Metric::new(args.network.metric_options(&args.common, sampling))?;
    metric.check_pair(&reference, &candidate)?;

    let started = Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let interactive = std::io::stderr().is_terminal() && !quiet;
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
    let mut outputs = Outputs::default();
    let (estimate, heatmap) = if args.heatmap.heatmap.is_some() {
        let (e, map) = metric.compare_with_heatmap(&reference, &candidate, &mut on_progress)?;
        (e, args.heatmap.stage(&map, &mut outputs)?)
    } else {
        (metric.compare_with_progress(&reference, &candidate, &mut on_progress)?, None)
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_result(&args, &metric, kind, &reference, &estimate, heatmap.as_ref(), quiet)?;
    outputs.commit()
}

fn print_result(args: &CompareArgs, metric: &Metric, kind: MetricKind, reference: &Image, e: &Estimate, heatmap: Option<&serde_json::Value>, quiet: bool) -> Result<(), Error> {
    let levels = metric.result_levels(reference.height(), reference.width());
    if args.json {
        let mut obj = serde_json::json!({
            "metric": kind.name(),
            "distance": e.distance,
            "std_error": e.std_error,
            "ci95": e.ci95,
            "samples": e.samples,
            "seed": args.network.seed,
            "converged": e.converged,
            "reference": args.reference,
            "candidate": args.candidate,
            "width": reference.width(),
            "height": reference.height(),
            "device": metric.device().name(),
            "backend": metric.backend().name(),
            "precision": args.network.precision.name(),
        });
        if let Some(l) = levels {
            obj["scale_levels"] = l.into();
            obj["sampler"] = args.network.sampler().name().into();
            // A heatmap takes whole samples (its per-pixel maps need every pixel).
            let tiles = heatmap.is_none() && metric.tile_sampled(reference.height(), reference.width());
            obj["sample_area"] = SampleArea::name(tiles).into();
            // Two streams: `samples` counts full samples; a heatmap takes one stream.
            let per = if heatmap.is_none() { metric.cheap_draws_per_sample(reference.height(), reference.width()) } else { 0 };
            obj["cheap_draws"] = (e.samples * per as u64).into();
        }
        if let Some(lw) = &args.network.lin_weights {
            obj["lin_weights"] = serde_json::json!(lw);
        }
        if let Some(h) = heatmap {
            obj["heatmap"] = h.clone();
        }
        return out!("{obj}");
    } else if let Some(l) = levels {
        out!(
            "{:.6} ± {:.6} (95%; {} {} samples{}, {} scale levels, seed {}{}{})",
            e.distance,
            e.ci95,
            e.samples,
            args.network.sampler().name(),
            if heatmap.is_none() && metric.tile_sampled(reference.height(), reference.width()) { " on tiles" } else { "" },
            l,
            args.network.seed,
            // The CPU is the default and says nothing; a GPU run says so.
            if metric.device() == elpips::Device::Cpu { String::new() } else { format!(", on {}", metric.device()) },
            if e.converged { "" } else { "; stopped at --max-samples before reaching the error target" }
        )?;
    } else {
        out!("{:.6}", e.distance)?;
    }
    // stdout keeps its one line; the heatmap's legend goes with the progress output.
    if let Some(h) = heatmap.filter(|_| !quiet) {
        eprintln!("{}", HeatmapArgs::describe(h));
    }
    Ok(())
}

