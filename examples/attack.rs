//! Adversarial attack harness: can an image be made to look like a *target* while the attacked
//! metric still calls it close to the *source*? Reproduces the paper's robustness claim with the
//! project's own gradients: LPIPS-VGG is fooled, E-LPIPS-VGG resists.
//!
//! For each attacked metric D (the paper's set-up: make an image that looks like the target but
//! that D calls close to the source):
//! 1. from x = target, `steps` Adam steps (size `--step`, in [0,1] pixel units) descending
//!    D(source, x), each pixel kept within `--linf` (8/255) of the target, so x still looks
//!    like the target (projected gradient descent in an L-infinity ball); E-LPIPS gradients are
//!    means over `--samples` fresh draws per step (expectation over transformation);
//! 2. projection onto D(source, x) <= epsilon: if x is outside, the largest blend
//!    source + l (x - source) inside, found by bisection (`--bisections`); E-LPIPS values are
//!    means over `--check-samples` fixed draws.
//! Epsilon is by default a fraction (0.5) of the attacked metric's own distance from the source
//! to the target: the two metrics have different scales (E-LPIPS values are ~7x smaller than
//! LPIPS-VGG's on the same pair), so one absolute value would be a tight ball for one and a
//! loose one for the other. `--epsilon E` sets an absolute value for both.
//! A fooled metric lets x stay near the target (l = 1, small RMSE to the target); a robust one
//! forces the blend back toward the source. Both attacks get the same budget. The result is
//! then measured independently: LPIPS-VGG exactly, E-LPIPS-VGG with `--eval-samples` draws of
//! another seed.
//!
//! `cargo run --release --example attack -- [--json] [--size 64] [--steps 60] ...` (see --help).

use std::path::{Path, PathBuf};

#[path = "common/adam.rs"]
mod adam;
use adam::Adam;
#[path = "common/png.rs"]
mod png;
use png::save_png;
use elpips::{Gradient, GradientOptions, Image, LoadOptions, Metric, MetricKind, MetricOptions, Sampling};

struct Args {
    source: PathBuf,
    target: PathBuf,
    size: u32,
    /// Absolute epsilon for every metric; `None` = `epsilon_fraction` of each metric's own
    /// distance from the source to the target.
    epsilon: Option<f64>,
    epsilon_fraction: f64,
    steps: u32,
    step: f32,
    /// Largest change of any pixel from the target during the descent.
    linf: f32,
    samples: u64,
    check_samples: u64,
    eval_samples: u32,
    bisections: u32,
    metrics: Vec<MetricKind>,
    json: bool,
    out_dir: Option<PathBuf>,
    threads: usize,
}

const HELP: &str = "attack [--source PNG] [--target PNG] [--size N] [--epsilon E] [--epsilon-fraction F]
       [--steps N] [--step F] [--linf F]
       [--samples K] [--check-samples M] [--eval-samples N] [--bisections N]
       [--metrics lpips-vgg,elpips-vgg] [--threads N] [--out-dir DIR] [--json]
Defaults: the authors' cat (source) and dog (target), centre-cropped and box-resized to 64x64,
epsilon = 0.5 x the attacked metric's own distance from source to target (--epsilon E sets one
absolute value for both), 60 Adam steps of 0.002, 4 E-LPIPS samples per gradient, 32 per
constraint check, 200 for the final E-LPIPS figures, 10 bisections, pixels within 8/255 of the target.";

fn parse() -> Result<Args, String> {
    let up = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream/elpips/inputs");
    let mut a = Args {
        source: up.join("cat.png"),
        target: up.join("dog.png"),
        size: 64,
        epsilon: None,
        epsilon_fraction: 0.5,
        steps: 60,
        step: 0.002,
        linf: 8.0 / 255.0,
        samples: 4,
        check_samples: 32,
        eval_samples: 200,
        bisections: 10,
        metrics: vec![MetricKind::LpipsVgg, MetricKind::ElpipsVgg],
        json: false,
        out_dir: None,
        threads: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: `{v}` is not a valid number"))
        }
        match flag.as_str() {
            "--source" => a.source = val("--source")?.into(),
            "--target" => a.target = val("--target")?.into(),
            "--size" => a.size = num("--size", val("--size")?)?,
            "--epsilon" => a.epsilon = Some(num("--epsilon", val("--epsilon")?)?),
            "--epsilon-fraction" => a.epsilon_fraction = num("--epsilon-fraction", val("--epsilon-fraction")?)?,
            "--steps" => a.steps = num("--steps", val("--steps")?)?,
            "--step" => a.step = num("--step", val("--step")?)?,
            "--linf" => a.linf = num("--linf", val("--linf")?)?,
            "--samples" => a.samples = num("--samples", val("--samples")?)?,
            "--check-samples" => a.check_samples = num("--check-samples", val("--check-samples")?)?,
            "--eval-samples" => a.eval_samples = num("--eval-samples", val("--eval-samples")?)?,
            "--bisections" => a.bisections = num("--bisections", val("--bisections")?)?,
            "--threads" => a.threads = num("--threads", val("--threads")?)?,
            "--out-dir" => a.out_dir = Some(val("--out-dir")?.into()),
            "--metrics" => {
                a.metrics = val("--metrics")?
                    .split(',')
                    .map(|m| match MetricKind::from_name(m.trim()) {
                        Ok(MetricKind::LpipsAlex) => Err("lpips-alex has no gradient model".to_string()),
                        r => r.map_err(|e| e.to_string()),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--json" => a.json = true,
            "-h" | "--help" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`\n{HELP}")),
        }
    }
    if a.size < 16 || a.epsilon.is_some_and(|e| e <= 0.0) || !(a.epsilon_fraction > 0.0 && a.epsilon_fraction < 1.0) || a.step <= 0.0 || a.linf <= 0.0 || a.step > 1.0 || a.samples == 0 || a.check_samples < 2 || a.eval_samples < 2 {
        return Err("need --size >= 16, --epsilon > 0, 0 < --epsilon-fraction < 1, 0 < --step <= 1, --samples >= 1, --check-samples >= 2, --eval-samples >= 2".into());
    }
    Ok(a)
}

/// Centre square crop, then box resampling to `size x size` (each output pixel the mean of
/// the source area it covers, fractional edges weighted).
fn load_square(path: &Path, size: u32) -> Result<Image, String> {
    let img = Image::open(path, &LoadOptions::default()).map_err(|e| e.to_string())?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = w.min(h);
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let n = size as usize;
    let scale = side as f64 / n as f64;
    // 1-D weights: output i covers [i*scale, (i+1)*scale) of the crop.
    let weights: Vec<Vec<(usize, f64)>> = (0..n)
        .map(|i| {
            let (a, b) = (i as f64 * scale, (i + 1) as f64 * scale);
            (a.floor() as usize..(b.ceil() as usize).min(side))
                .map(|j| (j, ((j + 1) as f64).min(b) - (j as f64).max(a)))
                .filter(|&(_, wt)| wt > 0.0)
                .collect()
        })
        .collect();
    let mut out = vec![0.0f32; 3 * n * n];
    for c in 0..3 {
        let plane = img.channel(c);
        for (oy, wy) in weights.iter().enumerate() {
            for (ox, wx) in weights.iter().enumerate() {
                let mut acc = 0.0;
                for &(sy, ay) in wy {
                    for &(sx, ax) in wx {
                        acc += ay * ax * plane[(y0 + sy) * w + x0 + sx] as f64;
                    }
                }
                out[c * n * n + oy * n + ox] = (acc / (scale * scale)) as f32;
            }
        }
    }
    Image::from_planar(size, size, out).map_err(|e| e.to_string())
}

fn rmse(a: &Image, b: &Image) -> f64 {
    let s: f64 = a.data().iter().zip(b.data()).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum();
    (s / a.data().len() as f64).sqrt()
}

fn image_of(like: &Image, data: Vec<f32>) -> Image {
    Image::from_planar(like.width(), like.height(), data).expect("same size, finite")
}

/// The attacked metric: its gradient and its constraint value (E-LPIPS: a mean over a fixed
/// set of draws per step, so the bisection compares like with like).
struct Attacked {
    kind: MetricKind,
    gradient: Gradient,
    metric: Metric,
    levels: u32,
}

impl Attacked {
    fn value(&mut self, source: &Image, x: &Image, draws: std::ops::Range<u64>) -> elpips::Result<f64> {
        if self.kind.is_ensemble() {
            let n = (draws.end - draws.start) as f64;
            Ok(self.metric.evaluate_samples(source, x, self.levels, draws)?.iter().sum::<f64>() / n)
        } else {
            self.metric.evaluate(source, x, None, None)
        }
    }

    fn gradient(&mut self, source: &Image, x: &Image, draws: std::ops::Range<u64>) -> elpips::Result<(f64, Vec<f32>)> {
        let dg = if self.kind.is_ensemble() { self.gradient.samples(source, x, draws)? } else { self.gradient.network(source, x)? };
        Ok((dg.distance, dg.gradient))
    }
}

fn attack(a: &Args, kind: MetricKind, source: &Image, target: &Image, log: bool) -> Result<(Image, f64), String> {
    let err = |e: elpips::Error| e.to_string();
    let runtime = elpips::RuntimeOptions { threads: a.threads, ..Default::default() };
    // Gradient draws and constraint draws come from different seeds, and both differ from the
    // seed of the final evaluation.
    let gradient = Gradient::new(GradientOptions { metric: kind, seed: 1, runtime: runtime.clone(), ..Default::default() }).map_err(err)?;
    let metric = Metric::new(MetricOptions { metric: kind, seed: 2, runtime, ..Default::default() }).map_err(err)?;
    let levels = metric.scale_levels(source.height(), source.width());
    let mut m = Attacked { kind, gradient, metric, levels };
    let checks = 0..a.check_samples;
    let epsilon = match a.epsilon {
        Some(e) => e,
        None => a.epsilon_fraction * m.value(source, target, checks.clone()).map_err(err)?,
    };
    // Descent from the target: Adam on D(source, x) (per-pixel normalised steps of about
    // `--step`, robust to the noise of E-LPIPS gradients), clamped to [0, 1].
    let mut x = target.data().to_vec();
    let mut adam = Adam::new(x.len(), 1e-12);
    for step in 0..a.steps as u64 {
        let draws = step * a.samples..(step + 1) * a.samples;
        let (d, g) = m.gradient(source, &image_of(source, x.clone()), draws).map_err(err)?;
        for (i, s) in adam.step(&g, a.step).into_iter().enumerate() {
            let t0 = target.data()[i];
            x[i] = (x[i] - s).clamp(t0 - a.linf, t0 + a.linf).clamp(0.0, 1.0);
        }
        if log && (step % 10 == 0 || step + 1 == a.steps as u64) {
            eprintln!("{kind} step {:>3}: distance to source {d:.4} (before the step)", step + 1);
        }
    }
    let x = image_of(source, x);
    // Projection onto D <= epsilon along the segment to the source: the largest blend
    // source + l (x - source) inside, by bisection (D(source, source) = 0).
    let d = m.value(source, &x, checks.clone()).map_err(err)?;
    if d <= epsilon {
        return Ok((x, epsilon));
    }
    let blend = |l: f32| image_of(source, source.data().iter().zip(x.data()).map(|(&s, &v)| s + l * (v - s)).collect());
    let (mut lo, mut hi) = (0.0f32, 1.0f32);
    for _ in 0..a.bisections {
        let mid = 0.5 * (lo + hi);
        if m.value(source, &blend(mid), checks.clone()).map_err(err)? <= epsilon {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if log {
        eprintln!("{kind}: distance after descent {d:.4} > epsilon {epsilon:.4}: projected to {lo:.4} of the way from the source");
    }
    Ok((blend(lo), epsilon))
}

fn run() -> Result<(), String> {
    let a = parse()?;
    let source = load_square(&a.source, a.size)?;
    let target = load_square(&a.target, a.size)?;
    let runtime = elpips::RuntimeOptions { threads: a.threads, ..Default::default() };
    let mut lpips = Metric::new(MetricOptions { metric: MetricKind::LpipsVgg, runtime: runtime.clone(), ..Default::default() }).map_err(|e| e.to_string())?;
    let mut elpips = Metric::new(MetricOptions { seed: 12345, sampling: Sampling::Fixed(a.eval_samples), runtime, ..Default::default() }).map_err(|e| e.to_string())?;
    if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        save_png(&source, &dir.join("source.png"))?;
        save_png(&target, &dir.join("target.png"))?;
    }
    let r0 = rmse(&source, &target);
    let mut attacks = Vec::new();
    for &kind in &a.metrics {
        let (x, epsilon) = attack(&a, kind, &source, &target, !a.json)?;
        let dl = lpips.compare(&source, &x).map_err(|e| e.to_string())?.distance;
        let de = elpips.compare(&source, &x).map_err(|e| e.to_string())?;
        let r1 = rmse(&x, &target);
        if let Some(dir) = &a.out_dir {
            save_png(&x, &dir.join(format!("attacked-{kind}.png")))?;
        }
        eprintln!(
            "attacked {kind}: LPIPS-VGG to source {dl:.4}, E-LPIPS-VGG to source {:.4} +- {:.4}, RMSE to target {r0:.4} -> {r1:.4}",
            de.distance, de.ci95
        );
        attacks.push(serde_json::json!({
            "attacked_metric": kind.name(),
            "epsilon": epsilon,
            "steps": a.steps,
            "to_source": {"lpips-vgg": dl, "elpips-vgg": de.distance},
            "rmse_to_target_start": r0,
            "rmse_to_target_end": r1,
        }));
    }
    if a.json {
        println!("{}", serde_json::json!({ "attacks": attacks }));
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("attack: error: {e}");
        std::process::exit(2);
    }
}
