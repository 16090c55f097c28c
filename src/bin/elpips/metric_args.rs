//! Options shared by the subcommands that run a metric (`compare`, `rank`, `check`, `tune`): flatten
//! [`NetworkArgs`] (which network, its draws, its arithmetic) and, where the number of samples is
//! the user's to choose, [`SamplingArgs`]; [`NetworkArgs::metric_options`] builds the one
//! `MetricOptions` they all use.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::builder::{EnumValueParser, PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, ValueEnum};
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
    /// Arithmetic of the feature network (int8: see docs/performance.md). bf16 is refused: the
    /// CPU runtime has no bf16 convolutions.
    #[arg(long, default_value = "fp32", value_parser = PrecisionParser, help_heading = "Network")]
    pub precision: Precision,
    /// How E-LPIPS samples are drawn (see docs/estimator.md) [default: control; iid for check
    /// and tune, whose gate is validated for iid and stratified draws].
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
        }
    }
}

/// `--precision`: clap's parser of [`Precision`] (its names, its "possible values" error), except
/// that `bf16`, a name people try, gets the library's reason why it is not offered.
#[derive(Clone)]
struct PrecisionParser;

impl TypedValueParser for PrecisionParser {
    type Value = Precision;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<Precision, clap::Error> {
        EnumValueParser::<Precision>::new().parse_ref(cmd, arg, value).map_err(|e| match value.to_str().map(Precision::from_name) {
            Some(Err(reason)) if value == "bf16" => clap::Error::raw(ErrorKind::InvalidValue, format!("{reason}\n")).with_cmd(cmd),
            _ => e,
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Precision::value_variants().iter().filter_map(ValueEnum::to_possible_value)))
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
