//! `make bench` (second part): what the estimator costs. Prints figures and the machine they
//! came from; never a pass/fail test. Sections (all by default, or name them as arguments):
//!
//! * `decomposition`: which parts of the E-LPIPS draw carry the variance of a sample's distance
//!   (total-effect indices, Jansen's estimator) and how much of it known-mean functions of the
//!   draw explain (what control variates can remove).
//!
//! * `samples`: samples (and seconds) each sampler needs for a 95% half-width of 2.5% of the
//!   distance on three pairs, from the variance of an `ELPIPS_BENCH_SAMPLES`-sample run
//!   (default 96) rather than running to the target.
//! * `gate`: samples and seconds for the sequential gate to decide with a threshold 10% above
//!   and 10% below the distance, against a fixed-precision estimate (the 2.5% rule).
//! * `rank`: ranking 8 candidates (blends of a pair, 2% apart) until every neighbour pair is told apart
//!   at 95%, with common random numbers vs independent draws, from a 32-sample pilot.
//!
//! * `issue18`: the ratios of issue 18, in process: a 1920x1080 gate with T far above the
//!   distance (default gate and sampler) against one LPIPS-VGG pair of the same images; the
//!   default `compare` on the 512x512 noise pair against one LPIPS-VGG pair of it; and samples
//!   for 2.5% and 5% half-widths per sampler on the noise pair (from `ELPIPS_BENCH_SAMPLES`
//!   draws), and the default sampler run to 5% for `ELPIPS_BENCH_SEEDS` seeds (default 3;
//!   alone: the section `to5`, only when named).
//!   The pairs are made here, not committed: cat.png mirrored out to the size, and the same
//!   plus Gaussian noise (sigma 8/255, ChaCha8 seed 8, clamped). The 1080p gate takes minutes
//!   on 2 cores; `ELPIPS_BENCH_1080P=0` skips it.
//! * `issue34`: the gates of issue 34 on the 512x512 noise pair, replayed on pools of
//!   `ELPIPS_BENCH_POOL` iid draws (default 200) for `ELPIPS_BENCH_SEEDS` seeds (default 3):
//!   samples to decide at T = 2, 1.1 and 0.9x the distance under the gate before issue 34 and the
//!   shipped one (iid, control, two streams with the relu1_1 share as the cheap stream), and
//!   the default gate at T = 2x against one LPIPS-VGG pair, in process.
//! * `streams` (only when named): two streams through `Metric` (`cheap_draws`) on the 512x512
//!   noise pair, in process: the gate at T = `ELPIPS_BENCH_T` (default 0.0254, 2x the pair's
//!   distance) for `ELPIPS_BENCH_SEEDS` seeds per `cheap_draws` of 0 (one stream), 3 and 7,
//!   iid draws, with the measured cheap-stream cost; and `compare` with iid draws with and
//!   without 7 cheap draws for `ELPIPS_BENCH_SAMPLES` samples (default 48), projected to a 2.5%
//!   half-width. Times against one LPIPS-VGG pair of the same images.
//! * `draws` (only when named): one CSV line per iid draw (seed 1) of the 512x512 noise pair, its
//!   transform, its distance and the distance's share per tap (`tap0` the image, `tap1` relu1_1,
//!   ...), `ELPIPS_BENCH_DRAWS` draws (default 320), on stdout after the
//!   `machine:` line: the data to try control-variate features on offline (docs/log.md).
//!   `ELPIPS_BENCH_DRAWS_PAIR=k` dumps pair `k` of [`PAIRS`] instead (0 ex_ref / ex_p0, 1 cat /
//!   dog, 2 adv_teddy / adv_reference).
//! * `int8mf` (only when named): the int8 network as the cheap model of a multi-fidelity
//!   estimate of the fp32 expectation: `ELPIPS_BENCH_SAMPLES` draws (default 96) of the noise
//!   pair at fp32 and at int8 (the same draws), and per `k` (fp32 on one draw in `k`) the
//!   variance times cost against fp32 alone, iid and with the control sampler's features.
//!
//! `ELPIPS_BENCH_IMAGES=1` limits `samples` to the small pair. `ELPIPS_BENCH_PAIRS=N` sets the draws per decomposition (default 16); `ELPIPS_BENCH_FULL=1`
//! adds cat/dog and teddy to the decomposition (slow: ~8 network runs per draw at full size).

mod common;

use std::time::Instant;

use elpips::estimate::control_variates::{control_features, draw_features, least_squares};
use elpips::ensemble::sample_rng;
use elpips::ensemble::Draw;
use elpips::estimate::Z95;
use elpips::{Gate, Image, LoadOptions, Metric, MetricOptions, SamplerKind, Sampling, Transform};

const PAIRS: [(&str, &str); 3] = [
    ("lpips/imgs/ex_ref.png", "lpips/imgs/ex_p0.png"),
    ("elpips/inputs/cat.png", "elpips/inputs/dog.png"),
    ("elpips/inputs/adv_teddy.png", "elpips/inputs/adv_reference.png"),
];

fn load_pair(a: &str, b: &str) -> elpips::Result<(Image, Image)> {
    let upstream = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream");
    let load = LoadOptions::default();
    Ok((Image::open(upstream.join(a), &load)?, Image::open(upstream.join(b), &load)?))
}

fn file_stem(p: &str) -> &str {
    std::path::Path::new(p).file_stem().and_then(|s| s.to_str()).unwrap_or(p)
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

fn decomposition(pairs: usize, images: usize) -> elpips::Result<()> {
    println!("\n== variance decomposition of one sample's distance ({pairs} base draws per pair)");
    println!("total-effect index: the share of the variance that goes if the part is held fixed (interactions included, so");
    println!("they may sum past 100%); R2: variance explained by known-mean functions of the draw (all of draw_features, or the");
    println!("control sampler's control_features), cross-validated over 2 folds");
    print!("{:<26} {:>8} {:>7}", "pair", "mean", "cv");
    for f in FACTORS {
        print!(" {f:>9}");
    }
    println!(" {:>8} {:>8} {:>6}", "R2 all", "R2 ctl", "s");
    for (a, b) in PAIRS.into_iter().take(images) {
        let (ra, rb) = load_pair(a, b)?;
        let mut m = Metric::new(MetricOptions::default())?;
        let (h, w) = (ra.height(), ra.width());
        let levels = m.scale_levels(h, w);
        let t0 = Instant::now();
        let mut sq = [0.0; FACTORS.len()];
        let (mut all_y, mut all_x, mut all_c) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..pairs as u64 {
            let ta = Transform::sample(&mut sample_rng(101, i), levels);
            let tb = Transform::sample(&mut sample_rng(202, i), levels);
            let mut draws = vec![Draw { stratum: 0, transform: ta.clone(), rng: sample_rng(303, i) }];
            for f in 0..FACTORS.len() {
                let dropout = if FACTORS[f] == "dropout" { 404 } else { 303 };
                draws.push(Draw { stratum: 0, transform: swap(&ta, &tb, f), rng: sample_rng(dropout, i) });
            }
            let x: Vec<Vec<f64>> = draws.iter().map(|d| draw_features(&d.transform, levels)).collect();
            all_c.extend(draws.iter().map(|d| control_features(&d.transform, levels)));
            let y = m.evaluate_draws(&ra, &rb, &mut draws)?;
            for f in 0..FACTORS.len() {
                sq[f] += (y[0] - y[f + 1]).powi(2);
            }
            eprint!("\r{} / {pairs} draws", i + 1);
            all_y.extend(y);
            all_x.extend(x);
        }
        let n = all_y.len() as f64;
        let mean = all_y.iter().sum::<f64>() / n;
        let var = all_y.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1.0);
        // Cross-validated R2: fit on the even base draws, test on the odd, and back.
        let group = FACTORS.len() + 1;
        let r2 = |xs: &[Vec<f64>]| {
            let fold = |odd: bool| -> (Vec<Vec<f64>>, Vec<f64>) {
                let idx: Vec<usize> = (0..all_y.len()).filter(|i| (i / group % 2 == 1) == odd).collect();
                (idx.iter().map(|&i| xs[i].clone()).collect(), idx.iter().map(|&i| all_y[i]).collect())
            };
            let (x0, y0) = fold(false);
            let (x1, y1) = fold(true);
            1.0 - (held_out_rss(&x0, &y0, &x1, &y1) + held_out_rss(&x1, &y1, &x0, &y0)) / (var * (n - 1.0))
        };
        let (r2_all, r2_ctl) = (r2(&all_x), r2(&all_c));
        eprint!("\r");
        print!("{:<26} {:>8.4} {:>6.1}%", format!("{} / {} ({levels} lv)", file_stem(a), file_stem(b)), mean, 100.0 * var.sqrt() / mean);
        for s in sq {
            print!(" {:>8.0}%", 100.0 * s / 2.0 / pairs as f64 / var);
        }
        println!(" {:>7.0}% {:>7.0}% {:>6.0}", 100.0 * r2_all, 100.0 * r2_ctl, t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Residual sum of squares on `(xt, yt)` of the least-squares fit on `(xf, yf)`.
fn held_out_rss(xf: &[Vec<f64>], yf: &[f64], xt: &[Vec<f64>], yt: &[f64]) -> f64 {
    let beta = least_squares(xf, yf);
    xt.iter().zip(yt).map(|(x, y)| (y - beta[0] - x.iter().zip(&beta[1..]).map(|(a, b)| a * b).sum::<f64>()).powi(2)).sum()
}

const SAMPLERS: [SamplerKind; 3] = [SamplerKind::Iid, SamplerKind::Stratified, SamplerKind::Control];

fn samples(n: u32, images: usize) -> elpips::Result<()> {
    println!("\n== samples (seconds) for a 2.5% 95% half-width, and samples for 5%, from {n}-sample runs (seed 1); gain in time vs iid");
    print!("{:<30}", "pair");
    for k in SAMPLERS {
        print!(" {:>24}", k.name());
    }
    println!(" {:>9} {:>9}", "gain str", "gain ctl");
    for (a, b) in PAIRS.into_iter().take(images) {
        let (ra, rb) = load_pair(a, b)?;
        let mut needed = Vec::new();
        for sampler in SAMPLERS {
            let mut m = Metric::new(MetricOptions { sampling: Sampling::Fixed(n), sampler, seed: 1, ..Default::default() })?;
            let t = Instant::now();
            let e = m.compare(&ra, &rb)?;
            let per_sample = t.elapsed().as_secs_f64() / e.samples as f64;
            let k = e.samples as f64 * (e.ci95 / (0.025 * e.distance)).powi(2);
            needed.push((k, k * per_sample));
        }
        print!("{:<30}", format!("{} / {}", file_stem(a), file_stem(b)));
        for (k, secs) in &needed {
            print!(" {:>8.0} ({:>6.0}s) {:>5.0}", k, secs, k / 4.0);
        }
        println!(" {:>8.1}x {:>8.1}x", needed[0].1 / needed[1].1, needed[0].1 / needed[2].1);
    }
    Ok(())
}

fn gate() -> elpips::Result<()> {
    let (a, b) = PAIRS[0];
    let (ra, rb) = load_pair(a, b)?;
    println!("\n== time to a decision, {} / {}: sequential gate (5% error rate, 16..400 samples) vs a 2.5% estimate", file_stem(a), file_stem(b));
    let mut m = Metric::new(MetricOptions { seed: 2, sampling: Sampling::Adaptive { abs_error: 1.0, rel_error: 0.025, max_samples: 2000, min_samples: 16 }, ..Default::default() })?;
    let t = Instant::now();
    let e = m.compare(&ra, &rb)?;
    println!("{:<36} {:>8} samples {:>7.1} s   ({:.4} ± {:.4})", "2.5% estimate", e.samples, t.elapsed().as_secs_f64(), e.distance, e.ci95);
    for (label, factor) in [("gate T = 1.1 x distance", 1.1), ("gate T = 0.9 x distance", 0.9), ("gate T = 1.03 x distance", 1.03)] {
        for sampler in [SamplerKind::Iid, SamplerKind::Control] {
            let mut m = Metric::new(MetricOptions { seed: 3, sampler, ..Default::default() })?;
            let t = Instant::now();
            let d = m.decide(&ra, &rb, &Gate { max_samples: 400, ..Gate::new(factor * e.distance) })?;
            println!(
                "{:<36} {:>8} samples {:>7.1} s   {}",
                format!("{label}, {}", sampler.name()),
                d.estimate.samples,
                t.elapsed().as_secs_f64(),
                d.verdict.name()
            );
        }
    }
    Ok(())
}

fn blend(a: &Image, b: &Image, t: f32) -> Image {
    let data = a.data().iter().zip(b.data()).map(|(x, y)| x + t * (y - x)).collect();
    Image::from_planar(a.width(), a.height(), data).expect("same size")
}

fn rank() -> elpips::Result<()> {
    let (a, b) = PAIRS[0];
    let (ra, rb) = load_pair(a, b)?;
    const PILOT: u32 = 32;
    let candidates: Vec<Image> = (0..8).map(|k| blend(&ra, &rb, 0.86 + 0.02 * k as f32)).collect();
    let refs: Vec<&Image> = candidates.iter().collect();
    println!("\n== ranking 8 candidates ({} blended 86%..100% in 2% steps toward {}) until every neighbour pair is told apart at 95%", file_stem(a), file_stem(b));
    let mut m = Metric::new(MetricOptions { sampling: Sampling::Fixed(PILOT), seed: 4, ..Default::default() })?;
    let t = Instant::now();
    let multi = m.compare_many(&ra, &refs)?;
    let per_eval = t.elapsed().as_secs_f64() / (PILOT as f64 * 8.0);
    let order = multi.ranking();
    let sd = |se: f64| se * (PILOT as f64).sqrt();
    let (mut n_crn, mut n_ind) = (0.0f64, 0.0f64);
    for w in order.windows(2) {
        let d = multi.difference(w[1], w[0]).expect("pair");
        let (ea, eb) = (multi.distances[w[0]], multi.distances[w[1]]);
        n_crn = n_crn.max((Z95 * sd(d.std_error) / d.difference).powi(2));
        n_ind = n_ind.max((Z95 * sd(ea.std_error).hypot(sd(eb.std_error)) / d.difference).powi(2));
    }
    // No estimate with an error has fewer than 2 samples.
    let (n_crn, n_ind) = (n_crn.max(2.0).ceil(), n_ind.max(2.0).ceil());
    let correct = order == (0..8).collect::<Vec<_>>();
    println!("pilot: {PILOT} samples x 8 candidates, {:.3} s per network run; pilot order {}", per_eval, if correct { "correct" } else { "WRONG" });
    println!("{:<28} {:>10} {:>14} {:>10}", "", "samples", "network runs", "seconds");
    println!("{:<28} {:>10.0} {:>14.0} {:>10.0}", "common random numbers", n_crn, 8.0 * n_crn, 8.0 * n_crn * per_eval);
    println!("{:<28} {:>10.0} {:>14.0} {:>10.0}", "independent draws", n_ind, 8.0 * n_ind, 8.0 * n_ind * per_eval);
    println!("CRN gain: {:.1}x", n_ind / n_crn);
    Ok(())
}

/// `src` mirrored (reflected at the edges) out to `w x h`.
fn mirrored(src: &Image, w: u32, h: u32) -> Image {
    let (iw, ih) = (src.width() as usize, src.height() as usize);
    let fold = |p: usize, n: usize| {
        let p = p % (2 * n);
        if p < n { p } else { 2 * n - 1 - p }
    };
    let mut data = Vec::with_capacity(3 * (w * h) as usize);
    for ch in 0..3 {
        for y in 0..h as usize {
            let row = &src.channel(ch)[fold(y, ih) * iw..][..iw];
            data.extend((0..w as usize).map(|x| row[fold(x, iw)]));
        }
    }
    Image::from_planar(w, h, data).expect("sizes match")
}

/// cat.png mirrored to `w x h`, and the same with seeded Gaussian noise of sigma 8/255.
fn noise_pair(w: u32, h: u32) -> elpips::Result<(Image, Image)> {
    use rand::{Rng, SeedableRng};
    let (cat, _) = load_pair(PAIRS[1].0, PAIRS[1].1)?;
    let a = mirrored(&cat, w, h);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
    let mut gauss = || {
        let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    };
    let data = a.data().iter().map(|&x| (x + 8.0 / 255.0 * gauss()).clamp(0.0, 1.0)).collect();
    let b = Image::from_planar(w, h, data)?;
    Ok((a, b))
}

/// Seconds of one LPIPS-VGG pair (after a warm-up run that loads the network).
fn lpips_seconds(a: &Image, b: &Image) -> elpips::Result<f64> {
    let mut m = Metric::new(MetricOptions { metric: elpips::MetricKind::LpipsVgg, ..Default::default() })?;
    m.compare(a, b)?;
    let t = Instant::now();
    m.compare(a, b)?;
    Ok(t.elapsed().as_secs_f64())
}

fn issue18(n: u32, with_1080p: bool) -> elpips::Result<()> {
    println!("\n== issue 18 ratios (in process; network loading excluded)");
    let (a, b) = noise_pair(512, 512)?;
    let lpips = lpips_seconds(&a, &b)?;
    let mut m = Metric::new(MetricOptions::default())?;
    let t = Instant::now();
    let e = m.compare(&a, &b)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "default compare, 512x512 noise pair: {:.4} ± {:.4} ({:.1}% of it), {} samples, converged {}, {:.0} s = {:.0}x one LPIPS-VGG pair ({:.2} s; goal <= 60x at 2.5%)",
        e.distance, e.ci95, 100.0 * e.ci95 / e.distance, e.samples, e.converged, secs, secs / lpips, lpips
    );
    println!("samples for a 95% half-width of 2.5% / 5% of the distance, 512x512 noise pair, from {n}-sample runs (seed 1):");
    for sampler in SAMPLERS {
        let mut m = Metric::new(MetricOptions { sampling: Sampling::Fixed(n), sampler, seed: 1, ..Default::default() })?;
        let e = m.compare(&a, &b)?;
        let k = |r: f64| e.samples as f64 * (e.ci95 / (r * e.distance)).powi(2);
        println!("  {:<10} {:>6.0} / {:>6.0}", sampler.name(), k(0.025), k(0.05));
    }
    to_five_percent(&a, &b)?;
    if with_1080p {
        let (a, b) = noise_pair(1920, 1080)?;
        let lpips = lpips_seconds(&a, &b)?;
        // `elpips check`'s default sampler (iid), with the default gate.
        let mut m = Metric::new(MetricOptions { sampler: SamplerKind::Iid, ..Default::default() })?;
        let t = Instant::now();
        let d = m.decide(&a, &b, &Gate::new(1.0))?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "1920x1080 gate, T = 1.0 (far above): {} after {} samples, {:.0} s = {:.1}x one LPIPS-VGG pair ({:.1} s; goal <= 4x)",
            d.verdict.name(), d.estimate.samples, secs, secs / lpips, lpips
        );
    }
    Ok(())
}

/// Goal 4 of issue 18 run to the target, not extrapolated: the default sampler's features join
/// in stages (docs/estimator.md), so a 96-sample run's variance overstates what it needs later.
fn to_five_percent(a: &Image, b: &Image) -> elpips::Result<()> {
    let seeds: Vec<u64> = (1..=std::env::var("ELPIPS_BENCH_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3)).collect();
    let mut used = Vec::new();
    for &seed in &seeds {
        let sampling = Sampling::Adaptive { abs_error: 1.0, rel_error: 0.05, max_samples: 400, min_samples: 16 };
        let e = Metric::new(MetricOptions { sampling, seed, ..Default::default() })?.compare(a, b)?;
        used.push(format!("{}{}", e.samples, if e.converged { "" } else { " (not converged)" }));
    }
    println!("default sampler run to a 5% half-width, 512x512 noise pair, seeds {seeds:?}: {} samples (goal <= 130)", used.join(", "));
    Ok(())
}

/// Per-draw distances of the noise pair (or pair `pair` of [`PAIRS`]) as CSV, for trying
/// control-variate features offline.
fn draws(n: u64, pair: Option<usize>) -> elpips::Result<()> {
    let (a, b) = match pair {
        Some(k) => {
            let (ra, rb) = PAIRS.get(k).ok_or_else(|| elpips::Error::InvalidArgument(format!("ELPIPS_BENCH_DRAWS_PAIR={k}: pairs are 0-{}", PAIRS.len() - 1)))?;
            load_pair(ra, rb)?
        }
        None => noise_pair(512, 512)?,
    };
    let mut m = Metric::new(MetricOptions::default())?;
    let levels = m.scale_levels(a.height(), a.width());
    let taps = m.kind().tap_channels().len();
    let tap_columns: String = (0..taps).map(|t| format!(",tap{t}")).collect();
    println!("i,scale,scale_oy,scale_ox,oy,ox,flip,transpose,p0,p1,p2,g0,g1,g2,distance{tap_columns}");
    for start in (0..n).step_by(8) {
        let end = (start + 8).min(n);
        let mut batch: Vec<Draw> = (start..end).map(|i| Draw::iid(1, i, levels)).collect();
        // Evaluation advances each draw's dropout stream; its transform stays as drawn.
        let per_tap = m.evaluate_draws_taps(&a, &b, &mut batch)?;
        for (i, (d, tap)) in (start..).zip(batch.iter().zip(per_tap)) {
            let y: f64 = tap.iter().sum();
            let tap: String = tap.iter().map(|v| format!(",{v:.9}")).collect();
            let t = &d.transform;
            let [p0, p1, p2] = t.permutation;
            let [g0, g1, g2] = t.color;
            println!(
                "{i},{},{},{},{},{},{:?},{},{p0},{p1},{p2},{g0},{g1},{g2},{y:.9}{tap}",
                t.scale, t.scale_offset.0, t.scale_offset.1, t.offset.0, t.offset.1, t.flip, t.transpose as u8
            );
        }
        eprint!("\r{end} / {n} draws");
    }
    eprintln!();
    Ok(())
}

/// The int8 network as a multi-fidelity control variate, measured on the same draws: every draw
/// at int8, and at fp32 with probability 1/k (independent of the draw), each contributing
/// `z = y8 + k B (y32 - y8)`. `E[z] = E[y32]` exactly and the `z` are iid, so the usual
/// intervals hold; per draw it costs `t8 + t32 / k`. Prints, per k, the variance times cost of
/// that estimator against fp32 alone (below 1: faster to the same precision), from `n` draws
/// of the noise pair evaluated both ways (`ELPIPS_BENCH_SAMPLES`, default 96).
fn int8_multi_fidelity(n: u32) -> elpips::Result<()> {
    let (a, b) = noise_pair(512, 512)?;
    let mut m = Metric::new(MetricOptions::default())?;
    let levels = m.scale_levels(a.height(), a.width());
    let draws: Vec<Draw> = (0..n as u64).map(|i| Draw::iid(1, i, levels)).collect();
    let timed = |m: &mut Metric, precision: elpips::Precision| -> elpips::Result<(Vec<f64>, f64)> {
        m.set_precision(precision)?;
        let mut d = draws.clone();
        let t = Instant::now();
        let y = m.evaluate_draws(&a, &b, &mut d)?;
        Ok((y, t.elapsed().as_secs_f64()))
    };
    let (y32, t32) = timed(&mut m, elpips::Precision::Fp32)?;
    let (y8, t8) = timed(&mut m, elpips::Precision::Int8)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let var = |v: &[f64]| {
        let mu = mean(v);
        v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    };
    let d: Vec<f64> = y32.iter().zip(&y8).map(|(p, q)| p - q).collect();
    let (mean_d2, mean_d) = (mean(&d.iter().map(|x| x * x).collect::<Vec<_>>()), mean(&d));
    let cov = {
        let (m8, md) = (mean(&y8), mean_d);
        y8.iter().zip(&d).map(|(a, b)| (a - m8) * (b - md)).sum::<f64>() / (d.len() - 1) as f64
    };
    println!(
        "int8 multi-fidelity, 512x512 noise pair, {n} draws: fp32 {:.1} s ({:.3} s/draw), int8 {:.1} s ({:.3} s/draw, {:.2}x); mean fp32 {:.6}, int8 {:.6} ({:+.2}%); var int8 / fp32 {:.3}; sd(y32 - y8) / mean {:.4}",
        t32,
        t32 / n as f64,
        t8,
        t8 / n as f64,
        t32 / t8,
        mean(&y32),
        mean(&y8),
        100.0 * (mean(&y8) / mean(&y32) - 1.0),
        var(&y8) / var(&y32),
        var(&d).sqrt() / mean(&y32)
    );
    // The same with the control sampler's features (all stages, 4-fold cross-fit): the
    // residual of the int8 draws and the fp32 - int8 difference (its own fit), as the
    // two-sample estimator `mean_N(y8 - b x) + mean_{N/k}(d - c x)` would see them.
    let xs: Vec<Vec<f64>> = draws.iter().map(|d| control_features(&d.transform, levels)).collect();
    let residual = |y: &[f64]| {
        let mut r = Vec::with_capacity(y.len());
        for fold in 0..4 {
            let train: Vec<usize> = (0..y.len()).filter(|i| i % 4 != fold).collect();
            let beta = least_squares(&train.iter().map(|&i| xs[i].clone()).collect::<Vec<_>>(), &train.iter().map(|&i| y[i]).collect::<Vec<_>>());
            for i in (fold..y.len()).step_by(4) {
                r.push(y[i] - beta[0] - beta[1..].iter().zip(&xs[i]).map(|(b, x)| b * x).sum::<f64>());
            }
        }
        var(&r)
    };
    let (r32, r8, rd) = (residual(&y32), residual(&y8), residual(&d));
    println!("  control features: residual variance fp32 {:.3}, int8 {:.3}, fp32 - int8 {:.4} (x fp32's iid variance)", r32 / var(&y32), r8 / var(&y32), rd / var(&y32));
    for k in [2.0f64, 4.0, 8.0, 16.0] {
        let v = r8 + k * rd;
        let cost = t8 + t32 / k;
        println!("  two-sample with controls, k = {k:>2}: variance x cost {:.3} x the control sampler's at fp32", v / r32 * cost / t32);
    }
    for k in [1.0f64, 2.0, 4.0, 8.0, 16.0, 32.0] {
        // Var(y8 + k B d) with B ~ Bernoulli(1/k) independent of the draw.
        let v = var(&y8) + k * mean_d2 - mean_d * mean_d + 2.0 * cov;
        let cost = t8 + t32 / k;
        println!("  k = {k:>2}: variance {:.3} x fp32's, cost {:.3} x, variance x cost {:.3} (fp32 alone: 1)", v / var(&y32), cost / t32, v / var(&y32) * cost / t32);
    }
    Ok(())
}

/// One draw of a pool: its full distance and the relu1_1 stream's value (taps 0 and 1: the
/// image and relu1_1, the share of the distance a conv1_1-only pass computes).
struct PoolDraw {
    y: f64,
    x: f64,
}

/// `n` iid draws of seed `seed` (the gate's own draws for that seed), evaluated once.
fn pool(m: &mut Metric, a: &Image, b: &Image, seed: u64, n: u64) -> elpips::Result<(Vec<PoolDraw>, f64)> {
    let levels = m.scale_levels(a.height(), a.width());
    let mut out = Vec::new();
    let t = Instant::now();
    for start in (0..n).step_by(8) {
        let mut batch: Vec<Draw> = (start..(start + 8).min(n)).map(|i| Draw::iid(seed, i, levels)).collect();
        for tap in m.evaluate_draws_taps(a, b, &mut batch)? {
            out.push(PoolDraw { y: tap.iter().sum(), x: tap[0] + tap[1] });
        }
        eprint!("\r  pool of seed {seed}: {} / {n} draws", out.len());
    }
    eprintln!();
    Ok((out, t.elapsed().as_secs_f64() / n as f64))
}

/// The gate before issue 34, replayed on a pool: iid draws, first look at 16, looks x1.5 to
/// 200, each at `error_rate / K` (Bonferroni) with Johnson's Edgeworth term. Returns the verdict
/// (-1 below, 1 above, 0 undecided) and the samples used; `None` when the pool runs out first.
fn bonferroni_gate(ys: &[f64], threshold: f64) -> Option<(i32, u64)> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let looks = Gate { min_samples: 16, ..Gate::new(threshold) }.looks(16);
    let alpha = 0.05 / looks.len() as f64;
    for &n in &looks {
        let v = ys.get(..n as usize)?;
        let nf = n as f64;
        let mean = v.iter().sum::<f64>() / nf;
        let m2: f64 = v.iter().map(|y| (y - mean).powi(2)).sum();
        let m3: f64 = v.iter().map(|y| (y - mean).powi(3)).sum();
        let se = (m2 / (nf - 1.0) / nf).sqrt();
        let k3 = nf * m3 / ((nf - 1.0) * (nf - 2.0));
        let g = if se > 0.0 { k3 / nf.powi(2) / se.powi(3) } else { 0.0 };
        let q = StudentsT::new(0.0, 1.0, nf - 1.0).expect("dof").inverse_cdf(1.0 - alpha);
        let c = g * (2.0 * q * q + 1.0) / 6.0;
        if mean + (q + c) * se <= threshold {
            return Some((-1, n));
        }
        if mean - (q - c) * se > threshold {
            return Some((1, n));
        }
    }
    Some((0, 200))
}

/// Issue 34's goals on the 512x512 noise pair. Pools of `n` iid draws per seed (the draws the
/// gate itself takes for that seed) are evaluated once, with each draw's relu1_1 share; then
/// every rule is replayed on the same draws: the gate before issue 34 (iid, first look 16,
/// Bonferroni), the shipped gate with iid and with control draws (the default), and the shipped
/// gate on a two-stream estimate whose cheap stream is the relu1_1 share (its cost per draw an
/// assumption, `ELPIPS_BENCH_CHEAP_COST`, default 0.05 of a sample: conv1_1 is 0.6% of VGG16's
/// multiply-adds, plus the transform, a mask and the normalisation; not built yet), each at T
/// = 2, 1.1 and 0.9 times the pools' mean. A real `Metric::decide` at T = 2x times the goal's
/// ratio against one LPIPS-VGG pair.
fn issue34(n: u64, seeds: u64) -> elpips::Result<()> {
    use elpips::estimate::decision::decide_draws;
    use elpips::estimate::multi_fidelity::{decide_blocks, BlockValues, Blocks, Fidelity, TwoStream};
    use elpips::estimate::sampler::Plan;
    println!("\n== issue 34: gates on the 512x512 noise pair ({seeds} pools of {n} iid draws, replayed under each rule)");
    let (a, b) = noise_pair(512, 512)?;
    let mut m = Metric::new(MetricOptions::default())?;
    let levels = m.scale_levels(512, 512);
    let mut pools = Vec::new();
    let mut per_draw = 0.0;
    for seed in 1..=seeds {
        let (p, t) = pool(&mut m, &a, &b, seed, n)?;
        per_draw += t / seeds as f64;
        pools.push(p);
    }
    let all: Vec<&PoolDraw> = pools.iter().flatten().collect();
    let mean = all.iter().map(|p| p.y).sum::<f64>() / all.len() as f64;
    let (mx, my) = (all.iter().map(|p| p.x).sum::<f64>() / all.len() as f64, mean);
    let (sxx, syy, sxy) = all.iter().fold((0.0, 0.0, 0.0), |(a, b, c), p| (a + (p.x - mx).powi(2), b + (p.y - my).powi(2), c + (p.x - mx) * (p.y - my)));
    let rho2 = sxy * sxy / (sxx * syy);
    let r = std::env::var("ELPIPS_BENCH_CHEAP_COST").ok().and_then(|v| v.parse().ok()).unwrap_or(0.05);
    let k = Fidelity::optimal_block(rho2, r, true);
    let fidelity = Fidelity { block: k, cheap_cost: r, cheap_in_full: true, prior: 0.0 };
    println!(
        "pools: mean distance {mean:.5}, per-draw cv {:.2}, {per_draw:.2} s per draw; relu1_1 share: rho^2 {rho2:.3} with the distance, so blocks of {k} at a cost of {r} (work x{:.2} per block against a full draw)",
        (syy / all.len() as f64).sqrt() / mean,
        fidelity.relative_work(rho2)
    );
    println!("{:<34} {:>12} {:>12} {:>12}   (samples, or sample-equivalents, to decide; mean over pools [verdicts: b below, a above, u undecided])", "rule", "T = 2x", "T = 1.1x", "T = 0.9x");
    let verdict = |v: elpips::Side| match v {
        elpips::Side::Below => 'b',
        elpips::Side::Above => 'a',
        elpips::Side::Undecided => 'u',
    };
    let row = |label: &str, decide: &mut dyn FnMut(usize, f64) -> (char, f64)| {
        print!("{label:<34}");
        for factor in [2.0, 1.1, 0.9] {
            let (mut work, mut marks) = (0.0, String::new());
            for s in 0..pools.len() {
                let (v, w) = decide(s, factor * mean);
                work += w;
                marks.push(v);
            }
            print!(" {:>7.1} [{marks}]", work / pools.len() as f64);
        }
        println!();
    };
    row("before (iid, 16, Bonferroni)", &mut |s, t| {
        let ys: Vec<f64> = pools[s].iter().map(|p| p.y).collect();
        match bonferroni_gate(&ys, t) {
            Some((v, used)) => (['b', 'u', 'a'][(v + 1) as usize], used as f64),
            None => ('x', f64::NAN),
        }
    });
    for sampler in [SamplerKind::Iid, SamplerKind::Control] {
        row(&format!("now, {}", sampler.name()), &mut |s, t| {
            let mut plan = Plan::new(sampler, s as u64 + 1, levels, 512, 512);
            let mut next = 0usize;
            let d = decide_draws(&mut plan, &Gate::new(t), &mut |draws| {
                let v = pools[s].get(next..next + draws.len()).ok_or_else(|| elpips::Error::InvalidArgument("pool exhausted".into()))?;
                next += draws.len();
                Ok(v.iter().map(|p| p.y).collect())
            });
            match d {
                Ok(d) => (verdict(d.verdict), d.estimate.samples as f64),
                Err(_) => ('x', f64::NAN),
            }
        });
    }
    for sampler in [SamplerKind::Iid, SamplerKind::Control] {
        row(&format!("now, two streams ({}, k = {k})", sampler.name()), &mut |s, t| {
            let mut est = TwoStream::new(sampler, s as u64 + 1, levels, 512, 512, fidelity).expect("fidelity");
            // Full draws from the front of the pool (the plan's own draws), cheap-only draws'
            // values from its back: both iid draws, so any distinct rows serve.
            let (mut front, mut back) = (0usize, pools[s].len());
            let mut exhausted = false;
            let d = decide_blocks(&mut est, &Gate::new(t), &mut |blocks: &mut Blocks| {
                if back < front + blocks.full.len() + blocks.cheap.len() {
                    exhausted = true;
                    return Err(elpips::Error::InvalidArgument("pool exhausted".into()));
                }
                let mut v = BlockValues::default();
                for _ in &blocks.full {
                    v.full.push(pools[s][front].y);
                    v.full_cheap.push(pools[s][front].x);
                    front += 1;
                }
                for _ in &blocks.cheap {
                    back -= 1;
                    v.cheap.push(pools[s][back].x);
                }
                Ok(v)
            });
            match d {
                Ok(d) => (verdict(d.verdict), est.sample_equivalents()),
                Err(_) if exhausted => ('x', f64::NAN),
                Err(e) => panic!("{e}"),
            }
        });
    }
    println!("(x: the pool ran out; a larger ELPIPS_BENCH_POOL)");
    // The goal's ratio, in process: the default gate at T = 2x its distance.
    let lpips = lpips_seconds(&a, &b)?;
    let t = Instant::now();
    let d = Metric::new(MetricOptions { seed: 1, ..Default::default() })?.decide(&a, &b, &Gate::new(2.0 * mean))?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "default gate, T = 2x ({:.4}): {} after {} samples, {secs:.1} s = {:.1}x one LPIPS-VGG pair ({lpips:.2} s; goal: <= 4 sample-equivalents, ~3x)",
        2.0 * mean,
        d.verdict.name(),
        d.estimate.samples,
        secs / lpips
    );
    Ok(())
}

/// Two streams through `Metric` (the `streams` section, see the module docs).
fn streams(seeds: u64) -> elpips::Result<()> {
    println!("\n== two streams through Metric: the 512x512 noise pair");
    let (a, b) = noise_pair(512, 512)?;
    let lpips = lpips_seconds(&a, &b)?;
    let threshold = std::env::var("ELPIPS_BENCH_T").ok().and_then(|v| v.parse().ok()).unwrap_or(0.0254);
    // The cheap stream's cost on this pair's draws, in process: both streams on the same 8 draws.
    let mut m = Metric::new(MetricOptions { sampler: SamplerKind::Iid, ..Default::default() })?;
    let levels = m.scale_levels(512, 512);
    let draws: Vec<elpips::ensemble::Draw> = (0..8).map(|i| elpips::ensemble::Draw::iid(99, i, levels)).collect();
    m.cheap_values(&a, &b, &draws[..1])?;
    let t = Instant::now();
    m.cheap_values(&a, &b, &draws)?;
    let cheap = t.elapsed().as_secs_f64();
    let t = Instant::now();
    m.evaluate_draws(&a, &b, &mut draws.clone())?;
    let full = t.elapsed().as_secs_f64();
    let r = cheap / full;
    println!("cheap stream: {:.3} s per draw against {:.3} s for a full sample: r = {r:.3} (elpips::CHEAP_STREAM_COST = {}); one LPIPS-VGG pair {lpips:.2} s", cheap / 8.0, full / 8.0, elpips::CHEAP_STREAM_COST);
    println!("gate at T = {threshold} (iid draws): per seed verdict, full samples, sample-equivalents (samples x (1 + (k + 1) r)), seconds, x one LPIPS-VGG pair");
    for k in [0u32, 3, 7] {
        let mut m = Metric::new(MetricOptions { sampler: SamplerKind::Iid, cheap_draws: k, ..Default::default() })?;
        // Warm-up: both networks loaded, their first runs done.
        m.cheap_values(&a, &b, &draws[..1])?;
        m.evaluate_draws(&a, &b, &mut draws[..1].to_vec())?;
        let (mut work, mut secs_sum) = (0.0, 0.0);
        for seed in 1..=seeds {
            m.set_seed(seed);
            let t = Instant::now();
            let d = m.decide(&a, &b, &Gate::new(threshold))?;
            let secs = t.elapsed().as_secs_f64();
            let equivalents = d.estimate.samples as f64 * if k == 0 { 1.0 } else { 1.0 + (k + 1) as f64 * r };
            work += equivalents / seeds as f64;
            secs_sum += secs / seeds as f64;
            println!("  cheap_draws {k}, seed {seed}: {} after {} samples, {equivalents:.1} sample-equivalents, {secs:.1} s = {:.1}x", d.verdict.name(), d.estimate.samples, secs / lpips);
        }
        println!("  cheap_draws {k}: mean {work:.1} sample-equivalents, {secs_sum:.1} s = {:.1}x one LPIPS-VGG pair", secs_sum / lpips);
    }
    // Work for a 2.5% half-width, projected from a fixed run with iid draws, whose variance
    // falls as 1/n (the control sampler's does not: its fit starts at ~32 samples and grows in
    // stages, so a short run says nothing of its 2.5% cost). Blocks are iid too.
    let n = std::env::var("ELPIPS_BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(48u32);
    for k in [0u32, 7] {
        let mut m = Metric::new(MetricOptions { seed: 1, sampling: elpips::Sampling::Fixed(n), sampler: SamplerKind::Iid, cheap_draws: k, ..Default::default() })?;
        let t = Instant::now();
        let e = m.compare(&a, &b)?;
        let secs = t.elapsed().as_secs_f64();
        let scale = (e.ci95 / (0.025 * e.distance)).powi(2);
        println!(
            "iid, cheap_draws {k}, {n} samples: {:.5} +- {:.5} ({:.2}%) in {secs:.1} s; 2.5% projected at {:.0} samples, {:.0} s = {:.0}x one LPIPS-VGG pair",
            e.distance,
            e.ci95,
            100.0 * e.ci95 / e.distance,
            n as f64 * scale,
            secs * scale,
            secs * scale / lpips
        );
    }
    Ok(())
}

fn main() -> elpips::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    println!("machine: {}", common::machine());
    if wants("samples") {
        samples(env("ELPIPS_BENCH_SAMPLES", 96) as u32, env("ELPIPS_BENCH_IMAGES", 3))?;
    }
    if wants("gate") {
        gate()?;
    }
    if wants("rank") {
        rank()?;
    }
    if wants("issue18") {
        issue18(env("ELPIPS_BENCH_SAMPLES", 96) as u32, env("ELPIPS_BENCH_1080P", 1) == 1)?;
    }
    if wants("issue34") {
        issue34(env("ELPIPS_BENCH_POOL", 200) as u64, env("ELPIPS_BENCH_SEEDS", 3) as u64)?;
    }
    if args.iter().any(|a| a == "streams") {
        streams(env("ELPIPS_BENCH_SEEDS", 3) as u64)?;
    }
    if args.iter().any(|a| a == "to5") {
        let (a, b) = noise_pair(512, 512)?;
        to_five_percent(&a, &b)?;
    }
    if args.iter().any(|a| a == "int8mf") {
        int8_multi_fidelity(env("ELPIPS_BENCH_SAMPLES", 96) as u32)?;
    }
    // Not in the default set: a data dump, not a figure.
    if args.iter().any(|a| a == "draws") {
        draws(env("ELPIPS_BENCH_DRAWS", 320) as u64, std::env::var("ELPIPS_BENCH_DRAWS_PAIR").ok().and_then(|v| v.parse().ok()))?;
    }
    if wants("decomposition") {
        let full = std::env::var("ELPIPS_BENCH_FULL").is_ok_and(|v| v == "1");
        decomposition(env("ELPIPS_BENCH_PAIRS", 16), if full { 3 } else { 1 })?;
    }
    Ok(())
}
