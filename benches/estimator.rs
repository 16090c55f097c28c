//! `make bench` (second part): what the estimator costs. Prints figures and the machine they
//! came from; never a pass/fail test. Sections (all by default, or name them as arguments):
//!
//! * `decomposition`: which parts of the E-LPIPS draw carry the variance of a sample's distance
//!   (total-effect indices, Jansen's estimator) and how much of it known-mean functions of the
//!   draw explain (what control variates can remove).
//!
//! `ELPIPS_BENCH_PAIRS=N` sets the draws per decomposition (default 24).

use std::time::Instant;

use elpips::control::{draw_features, least_squares};
use elpips::ensemble::sample_rng;
use elpips::sampler::Draw;
use elpips::{Image, LoadOptions, Metric, MetricOptions, Transform};

const PAIRS: [(&str, &str); 3] = [
    ("elpips/inputs/adv_teddy.png", "elpips/inputs/adv_reference.png"),
    ("elpips/inputs/cat.png", "elpips/inputs/dog.png"),
    ("lpips/imgs/ex_ref.png", "lpips/imgs/ex_p0.png"),
];

fn load_pair(a: &str, b: &str) -> elpips::Result<(Image, Image)> {
    let upstream = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream");
    let load = LoadOptions::default();
    Ok((Image::open(upstream.join(a), &load)?, Image::open(upstream.join(b), &load)?))
}

fn file_stem(p: &str) -> &str {
    std::path::Path::new(p).file_stem().and_then(|s| s.to_str()).unwrap_or(p)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown").trim();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("{model}; {cores} logical cores; load average {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// The parts of a draw that the decomposition swaps one at a time.
const FACTORS: [&str; 7] = ["level", "flip", "transpose", "channels", "colour", "offset", "dropout"];

/// `a` with factor `f` taken from `b` (dropout is the draw's stream, handled by the caller).
fn swap(a: &Transform, b: &Transform, f: usize) -> Transform {
    let mut t = a.clone();
    match f {
        0 => (t.scale, t.scale_offset) = (b.scale, b.scale_offset),
        1 => t.flip = b.flip,
        2 => t.transpose = b.transpose,
        3 => t.permutation = b.permutation,
        4 => t.color = b.color,
        5 => t.offset = b.offset,
        _ => {}
    }
    t
}

fn decomposition(pairs: usize) -> elpips::Result<()> {
    println!("\n== variance decomposition of one sample's distance ({pairs} base draws per pair)");
    println!("total-effect index: the share of the variance that goes if the part is held fixed (interactions included, so");
    println!("they may sum past 100%); R2 adj: variance explained by known-mean functions of the draw (cross-validated, 2 folds)");
    print!("{:<26} {:>8} {:>7}", "pair", "mean", "cv");
    for f in FACTORS {
        print!(" {f:>9}");
    }
    println!(" {:>8} {:>6}", "R2 cv", "s");
    for (a, b) in PAIRS {
        let (ra, rb) = load_pair(a, b)?;
        let mut m = Metric::new(MetricOptions::default())?;
        let (h, w) = (ra.height(), ra.width());
        let levels = m.scale_levels(h, w);
        let t0 = Instant::now();
        let mut sq = [0.0; FACTORS.len()];
        let (mut all_y, mut all_x) = (Vec::new(), Vec::new());
        for i in 0..pairs as u64 {
            let ta = Transform::sample(&mut sample_rng(101, i), levels);
            let tb = Transform::sample(&mut sample_rng(202, i), levels);
            let mut draws = vec![Draw { stratum: 0, transform: ta.clone(), rng: sample_rng(303, i) }];
            for f in 0..FACTORS.len() {
                let dropout = if FACTORS[f] == "dropout" { 404 } else { 303 };
                draws.push(Draw { stratum: 0, transform: swap(&ta, &tb, f), rng: sample_rng(dropout, i) });
            }
            let x: Vec<Vec<f64>> = draws.iter().map(|d| draw_features(&d.transform, levels)).collect();
            let y = m.evaluate_draws(&ra, &rb, &mut draws)?;
            for f in 0..FACTORS.len() {
                sq[f] += (y[0] - y[f + 1]).powi(2);
            }
            all_y.extend(y);
            all_x.extend(x);
        }
        let n = all_y.len() as f64;
        let mean = all_y.iter().sum::<f64>() / n;
        let var = all_y.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1.0);
        // Cross-validated R2: fit on the even base draws, test on the odd, and back.
        let group = FACTORS.len() + 1;
        let fold = |odd: bool| -> (Vec<Vec<f64>>, Vec<f64>) {
            let idx: Vec<usize> = (0..all_y.len()).filter(|i| (i / group % 2 == 1) == odd).collect();
            (idx.iter().map(|&i| all_x[i].clone()).collect(), idx.iter().map(|&i| all_y[i]).collect())
        };
        let cv_rss = {
            let (x0, y0) = fold(false);
            let (x1, y1) = fold(true);
            held_out_rss(&x0, &y0, &x1, &y1) + held_out_rss(&x1, &y1, &x0, &y0)
        };
        let r2 = 1.0 - cv_rss / (var * (n - 1.0));
        print!("{:<26} {:>8.4} {:>6.1}%", format!("{} / {} ({levels} lv)", file_stem(a), file_stem(b)), mean, 100.0 * var.sqrt() / mean);
        for s in sq {
            print!(" {:>8.0}%", 100.0 * s / 2.0 / pairs as f64 / var);
        }
        println!(" {:>7.0}% {:>6.0}", 100.0 * r2, t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Residual sum of squares on `(xt, yt)` of the least-squares fit on `(xf, yf)`.
fn held_out_rss(xf: &[Vec<f64>], yf: &[f64], xt: &[Vec<f64>], yt: &[f64]) -> f64 {
    let beta = least_squares(xf, yf);
    xt.iter().zip(yt).map(|(x, y)| (y - beta[0] - x.iter().zip(&beta[1..]).map(|(a, b)| a * b).sum::<f64>()).powi(2)).sum()
}

fn main() -> elpips::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    let pairs: usize = std::env::var("ELPIPS_BENCH_PAIRS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    println!("machine: {}", machine());
    if wants("decomposition") {
        decomposition(pairs)?;
    }
    Ok(())
}
