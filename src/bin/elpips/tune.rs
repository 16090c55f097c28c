//! `elpips tune`: the encoder quality whose output meets a perceptual-distance goal (see
//! `elpips::tune` for the search and docs/codec.md for its guarantees).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{ArgGroup, Args, ValueEnum};
use image::ImageEncoder;
use elpips::tune::{self, Encoded, Goal, Outcome, ProbeRule, TuneOptions};
use elpips::{Error, Image, LoadOptions, Metric, MetricKind, SampleArea, SamplerKind, Sampling};

use crate::codec::{Codec, Effort};
use crate::metric_args::NetworkArgs;
use crate::output::{check_outputs, out, Outputs};
use crate::CommonArgs;

#[derive(Args)]
#[command(group(ArgGroup::new("goal").required(true).args(["max_distance", "target"])))]
pub struct TuneArgs {
    /// The original image (PNG 8/16-bit or JPEG; alpha is encoded but not compared).
    input: PathBuf,
    /// Encoder.
    #[arg(long, value_enum)]
    codec: Codec,
    /// Smallest output whose distance is at most T (shown at --error-rate).
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    max_distance: Option<f64>,
    /// Output whose distance is closest to T.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    target: Option<f64>,
    /// With --target: stop once a probe's 95% interval lies within T +- E (0: search until the
    /// neighbouring qualities are known).
    #[arg(long, value_name = "E", default_value_t = 0.0, allow_negative_numbers = true)]
    tolerance: f64,
    /// Exact metric that aims the probes.
    #[arg(long, value_enum, default_value_t = GuideArg::Auto)]
    guide: GuideArg,
    /// First quality to try [default: the middle of the range].
    #[arg(long, value_name = "Q")]
    start: Option<i32>,
    /// Encodes at most.
    #[arg(long, value_name = "N", default_value_t = 16)]
    max_probes: u32,
    /// The encoder's speed setting (its default unless asked).
    #[command(flatten)]
    effort: Effort,
    /// The network and its draws (every probe shares them).
    #[command(flatten)]
    network: NetworkArgs,
    /// Chance that one probe is put on the wrong side of T (E-LPIPS).
    #[arg(long, value_name = "A", default_value_t = 0.05, help_heading = "Sampling")]
    error_rate: f64,
    /// E-LPIPS samples at a probe's first look (later looks at 1.5x).
    #[arg(long, value_name = "N", default_value_t = elpips::Gate::DEFAULT_MIN_SAMPLES, help_heading = "Sampling")]
    min_samples: u32,
    /// E-LPIPS samples per probe at most.
    #[arg(long, value_name = "N", default_value_t = 200, help_heading = "Sampling")]
    max_samples: u32,
    /// Refuse images with more pixels than this.
    #[arg(long, value_name = "P", default_value_t = elpips::DEFAULT_MAX_PIXELS, help_heading = "Input")]
    max_pixels: u64,
    /// Where to write the chosen encoding.
    #[arg(short, long, value_name = "FILE", help_heading = "Output")]
    output: PathBuf,
    /// Also write the chosen output decoded back, as PNG (so `elpips compare` can check it).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    decoded: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, help_heading = "Output")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// `--guide`: which exact metric aims the probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GuideArg {
    /// lpips-vgg for elpips-vgg; none for the exact LPIPS metrics.
    Auto,
    /// LPIPS-VGG.
    LpipsVgg,
    /// Interpolate the probes' own estimates.
    None,
}

pub fn run(mut args: TuneArgs) -> Result<ExitCode, Error> {
    // The probes are `check`'s gate: iid unless asked otherwise.
    args.network.sampler.get_or_insert(SamplerKind::Iid);
    let kind = args.network.metric;
    let codec = args.codec;
    codec.require()?;
    let goal = match (args.max_distance, args.target) {
        (Some(t), None) => Goal::MaxDistance(t),
        (None, Some(t)) => Goal::Target(t),
        _ => return Err(Error::InvalidArgument("give exactly one of --max-distance and --target".into())),
    };
    if args.tolerance != 0.0 && args.target.is_none() {
        return Err(Error::InvalidArgument("--tolerance applies to --target only".into()));
    }
    let options = TuneOptions {
        goal,
        min_setting: codec.min_quality(),
        max_setting: 100,
        start: args.start,
        max_probes: args.max_probes,
        rule: ProbeRule {
            error_rate: args.error_rate,
            min_samples: args.min_samples,
            max_samples: args.max_samples,
            tolerance: args.tolerance,
        },
    };
    options.validate()?;
    let mut outputs: Vec<(&str, &Path)> = vec![("-o", &args.output)];
    if let Some(d) = &args.decoded {
        outputs.push(("--decoded", d));
    }
    check_outputs(&outputs, &[&args.input])?;

    let load = LoadOptions { max_pixels: args.max_pixels, ..Default::default() };
    let reference = Image::open(&args.input, &load)?;
    let (pixels, channels) = encoder_pixels(&args.input)?;
    let (w, h) = (reference.width(), reference.height());
    let mut metric = Metric::new(args.network.metric_options(&args.common, Sampling::DEFAULT))?;
    metric.check_pair(&reference, &reference)?;
    let guide_kind = match args.guide {
        GuideArg::Auto => tune::auto_guide(kind),
        GuideArg::LpipsVgg => Some(MetricKind::LpipsVgg),
        GuideArg::None => None,
    };
    let mut guide = guide_kind.map(|g| tune::open_guide(&metric, g)).transpose()?;

    let started = Instant::now();
    // Every output is kept until the choice is made (the probes' and the guide's: a dozen or two
    // files of this image's size).
    let mut files: HashMap<i32, (Vec<u8>, Vec<u8>)> = HashMap::new();
    let outcome = tune::tune(&mut metric, guide.as_mut(), &reference, &options, &mut |quality| {
        let (file, decoded) = codec.encode(&pixels, w, h, channels, quality, args.effort)?;
        let mut hasher = DefaultHasher::new();
        file.hash(&mut hasher);
        let encoded = Encoded { bytes: file.len() as u64, fingerprint: Some(hasher.finish()), decoded: Image::from_rgb8(w, h, &decoded)? };
        files.insert(quality, (file, decoded));
        Ok(encoded)
    })?;
    let seconds = started.elapsed().as_secs_f64();

    let Some(chosen) = outcome.chosen_probe() else {
        let best = outcome.probes.iter().min_by(|a, b| a.estimate.distance.total_cmp(&b.estimate.distance));
        let best = best.map_or(String::new(), |p| {
            format!("; the lowest was quality {} at {:.4} ± {:.4}", p.setting, p.estimate.distance, p.estimate.ci95)
        });
        // Not an error but an answer: the goal is out of reach (exit 1, like a failed gate).
        let message = format!(
            "tune: goal not reachable: no {} quality in {}..100 was shown to reach distance <= {} within {} probes{best}; raise --max-distance (nothing written)",
            codec.name(),
            codec.min_quality(),
            goal.threshold(),
            outcome.probes.len()
        );
        return Ok(crate::fail(&message, 1));
    };
    let (file, decoded) = &files[&chosen.setting];
    // Staged, printed, then put in place: a failed print leaves -o and --decoded untouched.
    let mut staged = Outputs::default();
    staged.add(&args.output, file)?;
    if let Some(path) = &args.decoded {
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(decoded, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| Error::Io { path: path.clone(), reason: e.to_string() })?;
        staged.add(path, &png)?;
    }
    // E-LPIPS: which part of a pair its samples evaluated, and the cheap draws per full sample
    // where two streams ran.
    let sample_area = kind.is_ensemble().then(|| (SampleArea::name(metric.tile_sampled(h, w)), metric.cheap_draws_per_sample(h, w)));
    print_outcome(&args, codec, kind, (metric.device(), metric.backend(), sample_area), guide_kind, goal, &outcome, seconds)?;
    staged.commit()?;
    Ok(ExitCode::SUCCESS)
}

/// The input as packed 8-bit RGB or RGBA, the encoders' input.
pub fn encoder_pixels(path: &Path) -> Result<(Vec<u8>, u32), Error> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::Io { path: path.to_owned(), reason: e.to_string() })?
        .decode()
        .map_err(|e| Error::ImageDecode { path: path.to_owned(), reason: e.to_string() })?;
    Ok(if img.color().has_alpha() { (img.to_rgba8().into_raw(), 4) } else { (img.to_rgb8().into_raw(), 3) })
}

#[allow(clippy::too_many_arguments)] // the outcome and what produced it, printed as one record
fn print_outcome(args: &TuneArgs, codec: Codec, kind: MetricKind, (device, backend, sample_area): (elpips::Device, elpips::Backend, Option<(&str, u32)>), guide: Option<MetricKind>, goal: Goal, outcome: &Outcome, seconds: f64) -> Result<(), Error> {
    let chosen = outcome.chosen_probe().expect("checked by the caller");
    let goal_name = match goal {
        Goal::MaxDistance(_) => "max-distance",
        Goal::Target(_) => "target",
    };
    if args.json {
        let probes: Vec<serde_json::Value> = outcome
            .probes
            .iter()
            .map(|p| {
                serde_json::json!({
                    "setting": p.setting,
                    "bytes": p.bytes,
                    "distance": p.estimate.distance,
                    "ci95": p.estimate.ci95,
                    "std_error": p.estimate.std_error,
                    "samples": p.estimate.samples,
                    "side": p.side.name(),
                    "same_as": p.same_as,
                })
            })
            .collect();
        let mut obj = serde_json::json!({
            "codec": codec.name(),
            "encoder": args.effort,
            "setting": chosen.setting,
            "bytes": chosen.bytes,
            "distance": chosen.estimate.distance,
            "ci95": chosen.estimate.ci95,
            "std_error": chosen.estimate.std_error,
            "samples": chosen.estimate.samples,
            "side": chosen.side.name(),
            "goal": goal_name,
            "threshold": goal.threshold(),
            "metric": kind.name(),
            "device": device.name(),
            "backend": backend.name(),
            "seed": args.network.seed,
            "sampler": args.network.sampler().name(),
            "precision": args.network.precision.name(),
            "error_rate": args.error_rate,
            "probes": probes,
            "probes_used": outcome.probes.len(),
            "guide": guide.map(|g| g.name()),
            "guide_evaluations": outcome.guide.iter().map(|g| serde_json::json!({"setting": g.setting, "distance": g.distance})).collect::<Vec<_>>(),
            "encodes": outcome.encodes,
            "total_samples": outcome.samples,
            "seconds": seconds,
            "output": args.output,
        });
        if let Some((area, cheap_draws)) = sample_area {
            obj["sample_area"] = area.into();
            // Per full sample (`total_samples` counts full samples).
            obj["cheap_draws_per_sample"] = cheap_draws.into();
        }
        return out!("{obj}");
    }
    for (i, p) in outcome.probes.iter().enumerate() {
        let same = p.same_as.map_or(String::new(), |s| format!(", same file as quality {s}"));
        out!(
            "probe {:>2}: quality {:>3}  {:>9} bytes  distance {:.4} ± {:.4} ({} samples, {}{same})",
            i + 1,
            p.setting,
            p.bytes,
            p.estimate.distance,
            p.estimate.ci95,
            p.estimate.samples,
            p.side.name()
        )?;
    }
    if let Some(g) = guide {
        let points: Vec<String> = outcome.guide.iter().map(|p| format!("{} {:.4}", p.setting, p.distance)).collect();
        out!("guide {} (exact, aims the probes): {}", g.name(), points.join(", "))?;
    }
    out!(
        "{} quality {}: {} bytes, distance {:.4} ± {:.4} (95%, {} {goal_name} {}); {} probes, {} samples, {:.1} s -> {}",
        codec.name(),
        chosen.setting,
        chosen.bytes,
        chosen.estimate.distance,
        chosen.estimate.ci95,
        kind.name(),
        goal.threshold(),
        outcome.probes.len(),
        outcome.samples,
        seconds,
        args.output.display()
    )
}
