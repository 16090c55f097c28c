//! Options shared by the subcommands that run a metric (`compare`, `rank`, `check`): flatten
//! [`NetworkArgs`] (which network, its draws, its arithmetic) and, where the number of samples is
//! the user's to choose, [`SamplingArgs`]; [`NetworkArgs::metric_options`] builds the one
//! `MetricOptions` they all use.

use std::path::PathBuf;

use clap::Args;
use elpips::{Error, MetricKind, MetricOptions, Precision, SamplerKind, Sampling};

use crate::{runtime_options, CommonArgs};

#[derive(Args, Clone, Debug)]
pub struct NetworkArgs {
    /// Metric: elpips-vgg (robust ensemble, default), lpips-vgg or lpips-alex (official LPIPS v0.1).
    #[arg(long, default_value = "elpips-vgg", value_parser = ["elpips-vgg", "lpips-vgg", "lpips-alex"])]
    pub metric: String,
    /// Custom linear weights replacing the metric's: a safetensors file (convert .npy/.pth files with
    /// `python3 weights/convert.py safetensors IN OUT`).
    #[arg(long, value_name = "FILE")]
    pub lin_weights: Option<PathBuf>,
    /// How samples are drawn: iid (independent draws, the authors' estimator; default),
    /// stratified by scale level, or control (iid with control variates); see docs/estimator.md.
    #[arg(long, default_value = "iid", value_parser = ["iid", "stratified", "control"])]
    pub sampler: String,
    /// Seed of the random transforms and dropout.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// E-LPIPS scale levels (default: max(1, min(H, W) / 64); the authors' library default is 8).
    #[arg(long, value_name = "S")]
    pub scale_levels: Option<u32>,
    /// Arithmetic: fp32 (default) or int8 (opt-in, lpips-vgg only; faster, with a small
    /// measured error, see docs/performance.md). bf16 is refused: the CPU runtime has no bf16 convolutions.
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "int8", "bf16"])]
    pub precision: String,
    /// lpips-vgg: evaluate in tiles with cores of N pixels (0 = never; default: tile images
    /// above 2.4 Mpx with 768-pixel cores). Same result to float32 rounding, bounded memory.
    #[arg(long, value_name = "N")]
    pub tile: Option<u32>,
}

impl NetworkArgs {
    pub fn kind(&self) -> Result<MetricKind, Error> {
        MetricKind::from_name(&self.metric)
    }

    pub fn sampler_kind(&self) -> SamplerKind {
        match self.sampler.as_str() {
            "stratified" => SamplerKind::Stratified,
            "control" => SamplerKind::Control,
            _ => SamplerKind::Iid,
        }
    }

    pub fn metric_options(&self, common: &CommonArgs, sampling: Sampling) -> Result<MetricOptions, Error> {
        Ok(MetricOptions {
            metric: self.kind()?,
            model_dir: common.model_dir.clone(),
            linear_weights: self.lin_weights.clone(),
            runtime: runtime_options(common),
            seed: self.seed,
            sampling,
            sampler: self.sampler_kind(),
            scale_levels: self.scale_levels,
            precision: Precision::from_name(&self.precision)?,
            tile_size: self.tile,
        })
    }
}

#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Draw exactly N E-LPIPS samples (instead of adaptive sampling).
    #[arg(long, value_name = "N", conflicts_with_all = ["rel_error", "abs_error", "max_samples"])]
    pub samples: Option<u32>,
    /// Adaptive: stop when the 95% half-width is below R x distance [default: 0.025] ...
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rel_error: Option<f64>,
    /// ... and below E [default: 0.01] ...
    #[arg(long, value_name = "E", allow_negative_numbers = true)]
    pub abs_error: Option<f64>,
    /// ... or after M samples [default: 200].
    #[arg(long, value_name = "M")]
    pub max_samples: Option<u32>,
}

impl SamplingArgs {
    /// The sampling asked for; refuses sampling options for the deterministic metrics.
    pub fn sampling(&self, network: &NetworkArgs) -> Result<Sampling, Error> {
        let kind = network.kind()?;
        let adaptive_given = self.rel_error.is_some() || self.abs_error.is_some() || self.max_samples.is_some();
        if !kind.is_ensemble() && (self.samples.is_some() || adaptive_given || network.sampler != "iid") {
            return Err(Error::InvalidArgument(format!("{kind} is deterministic; --samples, --rel-error, --abs-error, --max-samples and --sampler apply to elpips-vgg only")));
        }
        let sampling = match self.samples {
            Some(n) => Sampling::Fixed(n),
            None => {
                let Sampling::Adaptive { abs_error, rel_error, max_samples, min_samples } = Sampling::DEFAULT else {
                    unreachable!("the default sampling is adaptive")
                };
                let max_samples = self.max_samples.unwrap_or(max_samples);
                Sampling::Adaptive {
                    abs_error: self.abs_error.unwrap_or(abs_error),
                    rel_error: self.rel_error.unwrap_or(rel_error),
                    max_samples,
                    min_samples: min_samples.min(max_samples),
                }
            }
        };
        sampling.validate()?;
        Ok(sampling)
    }
}
