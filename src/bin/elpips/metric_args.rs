//! Options shared by the subcommands that run a metric (`compare`, `rank`, `check`, `tune`): flatten
//! [`NetworkArgs`] (which network, its draws, its arithmetic) and, where the number of samples is
//! the user's to choose, [`SamplingArgs`]; [`NetworkArgs::metric_options`] builds the one
//! `MetricOptions` they all use.

use std::path::PathBuf;

use clap::Args;
use elpips::{Error, MetricKind, MetricOptions, Precision, SampleArea, SamplerKind, Sampling};

use crate::{runtime_options, CommonArgs};

#[derive(Args, Clone, Debug)]
pub struct NetworkArgs {
    /// Metric: the robust E-LPIPS ensemble or an official LPIPS v0.1 network.
    #[arg(long, value_enum, default_value_t = MetricKind::ElpipsVgg, help_heading = "Network")]
    pub metric: MetricKind,
    /// Custom linear weights replacing the metric's: a safetensors file (convert .npy/.pth files with
    /// `python3 weights/convert.py safetensors IN OUT`).
    #[arg(long, value_name = "FILE", help_heading = "Network")]
    pub lin_weights: Option<PathBuf>,
    /// E-LPIPS scale levels [default: max(1, min(H, W) / 64); the authors' library uses 8].
    #[arg(long, value_name = "S", help_heading = "Network")]
    pub scale_levels: Option<u32>,
    /// Arithmetic of the networks (int8, bf16: see docs/performance.md). bf16 runs on the
    /// openvino backend on CPUs with AVX512-BF16 or AMX, and is refused on others.
    #[arg(long, value_enum, default_value_t = Precision::Fp32, help_heading = "Network")]
    pub precision: Precision,
    /// How E-LPIPS samples are drawn (see docs/estimator.md) [default: control; iid for check
    /// and tune, whose gate has its lowest wrong-verdict rates with iid draws].
    #[arg(long, value_enum, help_heading = "Sampling")]
    pub sampler: Option<SamplerKind>,
    /// Seed of the random transforms and dropout.
    #[arg(long, value_name = "S", default_value_t = 0, help_heading = "Sampling")]
    pub seed: u64,
    /// lpips-vgg, elpips-vgg (per sample): evaluate in tiles with cores of N pixels (0 = never)
    /// [default: lpips-vgg tiles inputs above 1 Mpx with 512-pixel cores; E-LPIPS tiles samples above
    /// 0.3 Mpx in the least-overlap grid of tiles up to 2^18 pixels]. Same result to float32
    /// rounding, bounded memory.
    #[arg(long, value_name = "N", help_heading = "Network")]
    pub tile: Option<u32>,
    /// E-LPIPS: samples whose network input is above 0.3 Mpx evaluate one tile, chosen where the
    /// images differ and weighted so that the expectation is the same (docs/estimator.md,
    /// "Tile-sampled draws") [default: every sample evaluates its whole transformed pair, the
    /// authors' estimator].
    #[arg(long, help_heading = "Sampling")]
    pub tile_samples: bool,
    /// E-LPIPS: each full sample comes with K draws through the cheap stream only (taps 0-1 of
    /// the network, ~5.5% of a sample), a control variate with mean exactly 0, so the expectation
    /// is the same with less variance per unit of work (docs/estimator.md, "Two streams").
    /// Pairs up to ~540 x 540 (larger pairs, heatmaps: one stream); iid or control draws; 0 = one
    /// stream.
    #[arg(long, value_name = "K", default_value_t = 0, help_heading = "Sampling")]
    pub cheap_draws: u32,
}

impl NetworkArgs {
    /// The sampler asked for, or the library's default.
    pub fn sampler(&self) -> SamplerKind {
        self.sampler.unwrap_or_default()
    }

    pub fn metric_options(&self, common: &CommonArgs, sampling: Sampling) -> MetricOptions {
        MetricOptions {
            metric: self.metric,
            model_dir: common.model_dir.clone(),
            linear_weights: self.lin_weights.clone(),
            runtime: runtime_options(common),
            seed: self.seed,
            sampling,
            sampler: self.sampler(),
            scale_levels: self.scale_levels,
            precision: self.precision,
            tile_size: self.tile,
            sample_area: if self.tile_samples { SampleArea::Auto } else { SampleArea::Whole },
            cheap_draws: self.cheap_draws,
        }
    }
}

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Sampling")]
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
        let kind = network.metric;
        let adaptive_given = self.rel_error.is_some() || self.abs_error.is_some() || self.max_samples.is_some();
        if !kind.is_ensemble() && (self.samples.is_some() || adaptive_given || network.sampler.is_some_and(|s| s != SamplerKind::Iid)) {
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
