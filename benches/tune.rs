//! Encoder tuning: probes, E-LPIPS samples and time to a decision, for three strategies on the
//! same images, codecs and maximum distances (`make bench-tune`):
//!
//! * `tune`: the shipped search: probes aimed by the exact LPIPS-VGG guide, bisection
//!   safeguard, sequential probes against T, common random numbers (every probe draws samples
//!   0, 1, 2, ... of one seed);
//! * `tune-line`: the same search without the guide (interpolating the probes' own estimates);
//! * `tune-indep` (only when listed in `ELPIPS_BENCH_STRATEGIES`): `tune-line` with each probe
//!   drawing its own samples (no common numbers);
//! * `bisect`: plain bisection, each probe a full adaptive compare (the authors' rule: 95%
//!   half-width below 0.01 and 2.5% of the mean, at most 200 samples) with its own draws, judged
//!   by its mean.
//!
//! Each answer is checked by an independent compare (another seed, `CHECK` samples): "held" counts
//! answers whose independent estimate is not above T (mean - ci95 <= T).
//!
//! Environment: `ELPIPS_BENCH_FULL=1` adds 128x128 crops and a third threshold;
//! `ELPIPS_BENCH_CODECS=jpeg,webp` restricts the codecs; `ELPIPS_BENCH_STRATEGIES` lists the
//! strategies (default `tune,tune-line,bisect`).

#[allow(dead_code)] // the command line uses all of it, the benchmark a part
#[path = "../src/bin/elpips/codec.rs"]
mod codec;

use std::time::Instant;

use codec::Codec;
use elpips::estimate::RunningStats;
use elpips::tune::{self, Encoded, Goal, Outcome, Probe, TuneOptions};
use elpips::{Estimate, Image, Metric, MetricKind, MetricOptions, Sampling, Side};

const CHECK: u64 = 64;
/// Sample indices of bisection's probe k start at k << 32 (independent draws).
const STREAM: u64 = 1 << 32;

struct Input {
    name: String,
    image: Image,
    rgb: Vec<u8>,
}

fn load(path: &std::path::Path, crop: Option<(u32, u32, u32)>, name: &str) -> Input {
    let mut img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", path.display()));
    if let Some((x, y, s)) = crop {
        img = img.crop_imm(x, y, s, s);
    }
    let rgb = img.to_rgb8();
    let image = Image::from_rgb8(rgb.width(), rgb.height(), rgb.as_raw()).unwrap();
    Input { name: name.into(), image, rgb: rgb.into_raw() }
}

struct Run {
    outcome: Outcome,
    seconds: f64,
}

fn encode(codec: Codec, input: &Input, q: i32) -> Encoded {
    let (w, h) = (input.image.width(), input.image.height());
    let (file, decoded) = codec.encode(&input.rgb, w, h, 3, q, codec::Effort::default()).unwrap();
    Encoded { bytes: file.len() as u64, fingerprint: None, decoded: Image::from_rgb8(w, h, &decoded).unwrap() }
}

fn run_tune(metric: &mut Metric, guide: Option<&mut Metric>, codec: Codec, input: &Input, t: f64, independent: bool) -> Run {
    let options = TuneOptions::new(Goal::MaxDistance(t), codec.min_quality(), 100);
    let started = Instant::now();
    let outcome = if independent {
        let mut k = 0u64;
        let mut samples = 0;
        let mut outcome = tune::search(&options, &mut |q| {
            let e = encode(codec, input, q);
            k += 1;
            metric.set_seed(k);
            let (estimate, side) = tune::judge(metric, &input.image, &e.decoded, options.goal, &options.rule)?;
            samples += estimate.samples;
            Ok(Probe { setting: q, bytes: e.bytes, estimate, side, same_as: None })
        }, None)
        .unwrap();
        metric.set_seed(0);
        outcome.samples = samples;
        outcome.encodes = k;
        outcome
    } else {
        tune::tune(metric, guide, &input.image, &options, &mut |q| Ok(encode(codec, input, q))).unwrap()
    };
    Run { outcome, seconds: started.elapsed().as_secs_f64() }
}

/// The authors' adaptive compare from sample index `first`.
fn adaptive(metric: &mut Metric, reference: &Image, candidate: &Image, first: u64) -> Estimate {
    let levels = metric.scale_levels(reference.height(), reference.width());
    let mut stats = RunningStats::default();
    while !Sampling::DEFAULT.is_done(stats.count(), stats.mean(), (stats.count() >= 2).then(|| stats.ci95())) {
        let start = first + stats.count();
        for d in metric.evaluate_samples(reference, candidate, levels, start..start + 16).unwrap() {
            stats.push(d);
        }
    }
    Estimate { distance: stats.mean(), std_error: stats.std_error(), ci95: stats.ci95(), samples: stats.count(), converged: true }
}

fn run_bisect(metric: &mut Metric, codec: Codec, input: &Input, t: f64) -> Run {
    let started = Instant::now();
    let (mut lo, mut hi) = (codec.min_quality() - 1, 101);
    let mut probes = vec![];
    let mut samples = 0;
    while hi - lo > 1 {
        let q = (lo + hi) / 2;
        let e = encode(codec, input, q);
        let estimate = adaptive(metric, &input.image, &e.decoded, (probes.len() as u64 + 1) * STREAM);
        samples += estimate.samples;
        let side = if estimate.distance <= t { Side::Below } else { Side::Above };
        if side == Side::Below {
            hi = q;
        } else {
            lo = q;
        }
        probes.push(Probe { setting: q, bytes: e.bytes, estimate, side, same_as: None });
    }
    let chosen = probes.iter().position(|p| p.setting == hi);
    let encodes = probes.len() as u64;
    Run { outcome: Outcome { probes, chosen, samples, guide: vec![], encodes }, seconds: started.elapsed().as_secs_f64() }
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream");
    let full = std::env::var("ELPIPS_BENCH_FULL").is_ok_and(|v| v == "1");
    let mut inputs = vec![load(&root.join("lpips/imgs/ex_ref.png"), None, "ex_ref 64x64")];
    if full {
        inputs.push(load(&root.join("elpips/inputs/cat.png"), Some((176, 60, 128)), "cat 128x128"));
        inputs.push(load(&root.join("elpips/inputs/dog.png"), Some((200, 80, 128)), "dog 128x128"));
    }
    let thresholds: &[f64] = if full { &[0.005, 0.01, 0.02] } else { &[0.01, 0.02] };
    let wanted = std::env::var("ELPIPS_BENCH_CODECS").unwrap_or_default();
    let codecs: Vec<Codec> =
        <Codec as clap::ValueEnum>::value_variants().iter().copied().filter(|c| c.available() && (wanted.is_empty() || wanted.split(',').any(|w| w == c.name()))).collect();
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# elpips tune benchmark: E-LPIPS (elpips-vgg), {cores} cores, load average at start {}", load_avg.trim());
    println!("# codecs: {}", codecs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "));
    println!(
        "{:<14} {:<5} {:>5}  {:<10} {:>6} {:>5} {:>7} {:>8} {:>8} {:>8} {:>7} {:>17}",
        "image", "codec", "T", "strategy", "probes", "guide", "encodes", "samples", "seconds", "quality", "bytes", "check (held)"
    );
    let mut metric = Metric::new(MetricOptions { seed: 0, ..Default::default() }).expect("the metric loads; run `make setup`");
    let mut guide = tune::open_guide(&metric, MetricKind::LpipsVgg).expect("the guide loads; run `make setup`");
    let strategies = std::env::var("ELPIPS_BENCH_STRATEGIES").unwrap_or_else(|_| "tune,tune-line,bisect".into());
    let strategies: Vec<&str> = strategies.split(',').collect();
    let mut totals: Vec<Total> = strategies.iter().map(|s| Total { name: s, ..Default::default() }).collect();
    for input in &inputs {
        for &codec in &codecs {
            for &t in thresholds {
                for (i, &strategy) in strategies.iter().enumerate() {
                    let run = match strategy {
                        "tune" => run_tune(&mut metric, Some(&mut guide), codec, input, t, false),
                        "tune-line" => run_tune(&mut metric, None, codec, input, t, false),
                        "tune-indep" => run_tune(&mut metric, None, codec, input, t, true),
                        "bisect" => run_bisect(&mut metric, codec, input, t),
                        other => panic!("unknown strategy {other}: tune, tune-line, tune-indep or bisect"),
                    };
                    let (quality, bytes, check, held) = match run.outcome.chosen_probe() {
                        Some(p) => {
                            let e = encode(codec, input, p.setting);
                            let c = adaptive_fixed(&mut metric, &input.image, &e.decoded);
                            let held = c.distance - c.ci95 <= t;
                            (p.setting.to_string(), p.bytes.to_string(), format!("{:.4}±{:.4} ({})", c.distance, c.ci95, if held { "y" } else { "n" }), held)
                        }
                        None => ("-".into(), "-".into(), "none met".into(), false),
                    };
                    println!(
                        "{:<14} {:<5} {:>5}  {:<10} {:>6} {:>5} {:>7} {:>8} {:>8.1} {:>8} {:>7} {:>17}",
                        input.name,
                        codec.name(),
                        t,
                        strategy,
                        run.outcome.probes.len(),
                        run.outcome.guide.len(),
                        run.outcome.encodes,
                        run.outcome.samples,
                        run.seconds,
                        quality,
                        bytes,
                        check
                    );
                    let tot = &mut totals[i];
                    tot.probes += run.outcome.probes.len();
                    tot.guide += run.outcome.guide.len();
                    tot.encodes += run.outcome.encodes;
                    tot.samples += run.outcome.samples;
                    tot.seconds += run.seconds;
                    tot.runs += 1;
                    tot.held += held as u32;
                }
            }
        }
    }
    println!("# totals over {} runs each:", totals.first().map_or(0, |t| t.runs));
    for t in totals {
        let runs = t.runs.max(1) as f64;
        println!(
            "{:<10} probes/run {:.2}  guide/run {:.1}  encodes/run {:.1}  samples/run {:.0}  seconds/run {:.1}  held {}/{}",
            t.name,
            t.probes as f64 / runs,
            t.guide as f64 / runs,
            t.encodes as f64 / runs,
            t.samples as f64 / runs,
            t.seconds / runs,
            t.held,
            t.runs
        );
    }
}

#[derive(Default)]
struct Total<'a> {
    name: &'a str,
    probes: usize,
    guide: usize,
    encodes: u64,
    samples: u64,
    seconds: f64,
    runs: u32,
    held: u32,
}

/// The independent check: `CHECK` samples from another seed's streams.
fn adaptive_fixed(metric: &mut Metric, reference: &Image, candidate: &Image) -> Estimate {
    let levels = metric.scale_levels(reference.height(), reference.width());
    let mut stats = RunningStats::default();
    let first = 991 * STREAM * 1024;
    for chunk in (0..CHECK).step_by(16) {
        for d in metric.evaluate_samples(reference, candidate, levels, first + chunk..first + (chunk + 16).min(CHECK)).unwrap() {
            stats.push(d);
        }
    }
    Estimate { distance: stats.mean(), std_error: stats.std_error(), ci95: stats.ci95(), samples: stats.count(), converged: true }
}
