//! `make bench` (last part): tile-sampled E-LPIPS draws (issue 33). Prints figures and the
//! machine they came from; never a pass/fail test. Sections (all by default, or name them):
//!
//! * `variance`: what a tile-sampled draw costs in precision, per tile size and pilot: for
//!   `ELPIPS_BENCH_DRAWS` iid draws (default 16, seed 1) of the 1080p JPEG pair, each draw run
//!   whole once with its per-tap maps, summed into 16-pixel cells of its network input, so
//!   that every tile's part `Y_k` of the draw's distance is known for any grid; then per tile
//!   budget and pilot, the between-draw variance, the mean within-draw variance of
//!   `Y_k / q_k`, the mean cost of a sample in network pixels, and their product against whole
//!   samples' (below 1: less work for the same precision). What chose `SAMPLE_TILE_PIXELS` and
//!   the pilot (docs/performance.md, "Tile-sampled draws").
//! * `ratios`: issue 33's goals with `--tile-samples` in one run, whole process (the `elpips` CLI as a child,
//!   its wall time and peak RSS from `wait4`): LPIPS-VGG on a 1920x1080 and a 3840x2160 JPEG
//!   pair, `elpips check` with T far above the distance on both, the default `compare` at
//!   1080p; printed as ratios to the LPIPS-VGG pair of the same size. `ELPIPS_BENCH_4K=0`
//!   skips 4K.
//! * `defect`: the localized-defect goal: a 1080p pair that differs only in a 40x40 blotch
//!   (0.08% of the pixels); its distance from whole-image samples, then `elpips check` with T
//!   at half of it for `ELPIPS_BENCH_SEEDS` seeds (default 20), counting the fails (exit 1).
//! * `whole`: the same `ratios` and `defect` runs without `--tile-samples`, for comparison (only
//!   when named).
//!
//! The pairs are made here: cat.png mirrored out to the size (reference) and its JPEG at
//! quality 40 (the image crate's encoder), written to a temporary folder.
//!
//! Run one section alone: `cargo bench --bench tiles -- ratios`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod common;

use elpips::ensemble::tiles::{tile_probabilities_with, Pilot, DEFENSIVE_SHARE, DISTANCE_SHARE, MARGIN_WEIGHT};
use elpips::ensemble::Draw;
use elpips::network::taps::{TileGrid, ELPIPS_FUSED_PIXELS, ELPIPS_TILE_PIXELS};
use elpips::{Image, LoadOptions, Metric, MetricKind, MetricOptions, SampleArea};


fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// cat.png mirrored (reflected at the edges) out to `w x h`.
fn mirrored_cat(w: u32, h: u32) -> elpips::Result<Image> {
    common::mirrored("elpips/inputs/cat.png", w, h)
}

/// Interleaved RGB8 of a planar image.
fn rgb8(img: &Image) -> Vec<u8> {
    let n = (img.width() * img.height()) as usize;
    (0..n).flat_map(|i| (0..3).map(move |c| (img.channel(c)[i] * 255.0).round().clamp(0.0, 255.0) as u8)).collect()
}

/// The pairs of this bench, written to `dir`: `ref_WxH.png`, its JPEG `jpeg_WxH.jpg`, and
/// `defect_WxH.png` (the reference with a 40x40 magenta blotch). Returns (reference, JPEG,
/// defect) paths.
fn write_pairs(dir: &Path, w: u32, h: u32) -> elpips::Result<(PathBuf, PathBuf, PathBuf)> {
    let err = |e: image::ImageError| elpips::Error::InvalidArgument(e.to_string());
    let reference = rgb8(&mirrored_cat(w, h)?);
    let paths = (dir.join(format!("ref_{w}x{h}.png")), dir.join(format!("jpeg_{w}x{h}.jpg")), dir.join(format!("defect_{w}x{h}.png")));
    image::save_buffer(&paths.0, &reference, w, h, image::ColorType::Rgb8).map_err(err)?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 40).encode(&reference, w, h, image::ExtendedColorType::Rgb8).map_err(err)?;
    std::fs::write(&paths.1, jpeg).map_err(|e| elpips::Error::InvalidArgument(e.to_string()))?;
    let mut defect = reference.clone();
    let (y0, x0) = (h as usize * 2 / 3, w as usize * 2 / 3);
    for y in y0..y0 + 40 {
        for x in x0..x0 + 40 {
            defect[3 * (y * w as usize + x)..][..3].copy_from_slice(&[230, 40, 200]);
        }
    }
    image::save_buffer(&paths.2, &defect, w, h, image::ColorType::Rgb8).map_err(err)?;
    Ok(paths)
}

/// A child process's wall time (s), peak RSS (MiB), exit code and stdout.
struct Run {
    secs: f64,
    peak_mib: f64,
    code: i32,
    stdout: String,
}

/// Runs the CLI with `args`, measuring it alone (`wait4` gives this child's own peak RSS).
#[allow(unsafe_code)]
fn run_cli(args: &[&str]) -> Run {
    let exe = env!("CARGO_BIN_EXE_elpips");
    let t = Instant::now();
    let child = Command::new(exe).args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("the elpips CLI starts");
    let pid = child.id() as libc::pid_t;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout {
        use std::io::Read;
        let _ = out.read_to_string(&mut stdout);
    }
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for our own child, writing into the two locals.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    Run { secs: t.elapsed().as_secs_f64(), peak_mib: usage.ru_maxrss as f64 / 1024.0, code, stdout }
}

/// `key` of a JSON line.
fn json_f64(line: &str, key: &str) -> f64 {
    serde_json::from_str::<serde_json::Value>(line.lines().last().unwrap_or("")).ok().and_then(|v| v[key].as_f64()).unwrap_or(f64::NAN)
}

fn ratios(dir: &Path, whole: bool) -> elpips::Result<()> {
    println!("\n== issue 33 ratios{}: the elpips CLI, whole process (wall time, peak RSS of the child)", if whole { " with whole samples" } else { " with --tile-samples" });
    let mut sizes = vec![(1920u32, 1080u32)];
    if std::env::var("ELPIPS_BENCH_4K").as_deref() != Ok("0") {
        sizes.push((3840, 2160));
    }
    let extra: &[&str] = if whole { &[] } else { &["--tile-samples"] };
    for (w, h) in sizes {
        let (reference, jpeg, _) = write_pairs(dir, w, h)?;
        let (r, c) = (reference.to_str().unwrap_or_default(), jpeg.to_str().unwrap_or_default());
        let lpips = run_cli(&["compare", r, c, "--metric", "lpips-vgg", "--json"]);
        println!("{w}x{h} LPIPS-VGG pair: {:.6}, {:.1} s, peak {:.0} MiB", json_f64(&lpips.stdout, "distance"), lpips.secs, lpips.peak_mib);
        // T far above: 0.1, a different picture's distance (README); the JPEG pair is far below.
        let mut args = vec!["check", r, c, "--max-distance", "0.1", "--json"];
        args.extend(extra);
        let gate = run_cli(&args);
        let line = gate.stdout.lines().find(|l| l.contains("\"distance\"")).unwrap_or("");
        println!(
            "{w}x{h} gate, T = 0.1: exit {}, {:.5} after {} samples, {:.1} s = {:.2}x the LPIPS-VGG pair, peak {:.0} MiB",
            gate.code,
            json_f64(line, "distance"),
            json_f64(line, "samples"),
            gate.secs,
            gate.secs / lpips.secs,
            gate.peak_mib
        );
        if w == 1920 {
            let mut args = vec!["compare", r, c, "--json"];
            args.extend(extra);
            let cmp = run_cli(&args);
            let (d, ci) = (json_f64(&cmp.stdout, "distance"), json_f64(&cmp.stdout, "ci95"));
            println!(
                "{w}x{h} default compare: {d:.6} ± {ci:.6} ({:.2}%), {} samples, converged {}, {:.1} s = {:.1}x the LPIPS-VGG pair, peak {:.0} MiB",
                100.0 * ci / d,
                json_f64(&cmp.stdout, "samples"),
                cmp.stdout.contains("\"converged\":true"),
                cmp.secs,
                cmp.secs / lpips.secs,
                cmp.peak_mib
            );
        }
    }
    Ok(())
}

fn defect(dir: &Path, whole: bool) -> elpips::Result<()> {
    println!("\n== issue 33 localized defect{}: 1920x1080, a 40x40 blotch (0.08% of the pixels)", if whole { " with whole samples" } else { " with --tile-samples" });
    let (reference, _, defect) = write_pairs(dir, 1920, 1080)?;
    let (r, c) = (reference.to_str().unwrap_or_default(), defect.to_str().unwrap_or_default());
    // The full-image distance from whole-image samples (the authors' estimator), to 5%.
    let truth = run_cli(&["compare", r, c, "--rel-error", "0.05", "--max-samples", "400", "--seed", "99", "--json"]);
    let (d, ci) = (json_f64(&truth.stdout, "distance"), json_f64(&truth.stdout, "ci95"));
    println!("distance (whole samples): {d:.6} ± {ci:.6}, {} samples, {:.0} s", json_f64(&truth.stdout, "samples"), truth.secs);
    let t = format!("{:.8}", d / 2.0);
    let seeds = env_or("ELPIPS_BENCH_SEEDS", 20u64);
    let (mut fails, mut secs, mut samples) = (0, 0.0, 0.0);
    for seed in 0..seeds {
        let s = seed.to_string();
        let mut args = vec!["check", r, c, "--max-distance", &t, "--seed", &s, "--json"];
        if !whole {
            args.push("--tile-samples");
        }
        let run = run_cli(&args);
        fails += (run.code == 1) as u32;
        secs += run.secs;
        let line = run.stdout.lines().find(|l| l.contains("\"distance\"")).unwrap_or("");
        samples += json_f64(line, "samples");
        eprint!("\rseed {seed}: exit {}   ", run.code);
    }
    eprint!("\r");
    println!(
        "gate at T = {t} (half the distance): failed the frame (exit 1) in {fails} of {seeds} seeds ({:.0}%; goal >= 95%), mean {:.1} samples, {:.1} s",
        100.0 * fails as f64 / seeds as f64,
        samples / seeds as f64,
        secs / seeds as f64
    );
    Ok(())
}

/// The 16-pixel cell of the network input each tap value falls in, summed: per cell, its part
/// of the draw's distance (each tap's value over its map's size).
fn cells(taps: &[(usize, usize, &[f32])], th: usize, tw: usize) -> (usize, Vec<f64>) {
    let pools = MetricKind::ElpipsVgg.tap_pools().expect("VGG");
    let cw = tw.div_ceil(16);
    let mut out = vec![0.0f64; th.div_ceil(16) * cw];
    for (&(mh, mw, values), &p) in taps.iter().zip(pools) {
        let n = (mh * mw) as f64;
        for y in 0..mh {
            for x in 0..mw {
                out[((y << p) / 16) * cw + (x << p) / 16] += values[y * mw + x] as f64 / n;
            }
        }
    }
    (cw, out)
}

/// Each tile's part of a draw from its cells: the cells of the tile's core.
fn tile_parts(grid: &TileGrid, cw: usize, cell: &[f64]) -> Vec<f64> {
    grid.rects()
        .iter()
        .map(|t| {
            let c = t.core;
            (c.y0 / 16..c.y1.div_ceil(16)).map(|y| (c.x0 / 16..c.x1.div_ceil(16)).map(|x| cell[y * cw + x]).sum::<f64>()).sum()
        })
        .collect()
}

fn variance(dir: &Path) -> elpips::Result<()> {
    let n = env_or("ELPIPS_BENCH_DRAWS", 16u64);
    println!("\n== tile-sampled draws: precision per cost, 1920x1080 JPEG pair (q 40), {n} iid draws (seed 1)");
    let (reference, jpeg, _) = write_pairs(dir, 1920, 1080)?;
    let load = LoadOptions::default();
    let (a, b) = (Image::open(&reference, &load)?, Image::open(&jpeg, &load)?);
    let (h, w) = (a.height() as usize, a.width() as usize);
    let mut m = Metric::new(MetricOptions { sample_area: SampleArea::Whole, ..Default::default() })?;
    let levels = m.scale_levels(a.height(), a.width());
    // Per draw: its transform, its distance, and its cell map.
    let mut seen: Vec<(Draw, f64, usize, usize, usize, Vec<f64>)> = Vec::new();
    let t0 = Instant::now();
    for i in 0..n {
        let mut draw = vec![Draw::iid(1, i, levels)];
        let kept = draw[0].clone();
        let mut cell = None;
        let y = m.evaluate_draws_maps(&a, &b, &mut draw, &mut |_, taps, th, tw| cell = Some((th, tw, cells(taps, th, tw))))?[0];
        let (th, tw, (cw, c)) = cell.expect("a map per draw");
        seen.push((kept, y, th, tw, cw, c));
        eprint!("\r{} / {n} draws, {:.0} s", i + 1, t0.elapsed().as_secs_f64());
    }
    eprint!("\r");
    let ys: Vec<f64> = seen.iter().map(|s| s.1).collect();
    let mean = ys.iter().sum::<f64>() / n as f64;
    let var_y = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    println!("{}; mean distance {mean:.6}, between-draw sd {:.6} (cv {:.2}); whole draws: {:.0} s", common::machine(), var_y.sqrt(), var_y.sqrt() / mean, t0.elapsed().as_secs_f64());
    // Whole samples' cost: fused up to the fused size, else the tiles of the shipped grid.
    let whole_cost = |th: usize, tw: usize| if th * tw <= ELPIPS_FUSED_PIXELS { (th * tw) as f64 } else { TileGrid::within(th, tw, ELPIPS_TILE_PIXELS).tile_pixels() as f64 };
    let cost_whole = seen.iter().map(|s| whole_cost(s.2, s.3)).sum::<f64>() / n as f64;
    let views: Vec<&[f32]> = vec![b.data()];
    type Mass = fn(f64) -> f64;
    let pilots: [(&str, Mass); 4] = [("sqrt", |d| d.sqrt()), ("linear", |d| d), ("square", |d| d * d), ("count", |_| 1.0)];
    println!(
        "{:>8} {:<8} {:>6} {:>6} {:>12} {:>10} {:>12}  (within: mean within-draw variance / between-draw variance; work: variance x cost against whole samples)",
        "budget", "pilot", "share", "margin", "within", "cost Mpx", "work"
    );
    let mut shares = vec![(DEFENSIVE_SHARE, MARGIN_WEIGHT)];
    for extra in [(1.0, 0.0), (0.1, MARGIN_WEIGHT), (0.5, MARGIN_WEIGHT), (DEFENSIVE_SHARE, 0.0), (DEFENSIVE_SHARE, 1.0)] {
        shares.push(extra);
    }
    for budget in [1usize << 16, 3 << 15, 1 << 17, 3 << 16, 1 << 18] {
        for (name, mass) in pilots {
            let pilot = Pilot::with(a.data(), &views, h, w, mass);
            for &(share, margin) in &shares {
                if name != "sqrt" && (share, margin) != (DEFENSIVE_SHARE, MARGIN_WEIGHT) {
                    continue;
                }
                let (mut within, mut cost) = (0.0, 0.0);
                for (draw, y, th, tw, cw, cell) in &seen {
                    if th * tw <= ELPIPS_FUSED_PIXELS {
                        cost += (th * tw) as f64;
                        continue;
                    }
                    let grid = TileGrid::within(*th, *tw, budget);
                    let parts = tile_parts(&grid, *cw, cell);
                    let q = tile_probabilities_with(&pilot, &draw.transform, &grid.rects(), share, margin, DISTANCE_SHARE);
                    within += parts.iter().zip(&q).filter(|(_, &q)| q > 0.0).map(|(y, q)| y * y / q).sum::<f64>() - y * y;
                    cost += grid.rects().iter().zip(&q).map(|(t, q)| q * t.span.area() as f64).sum::<f64>();
                }
                let (within, cost) = (within / n as f64, cost / n as f64);
                println!(
                    "{:>8} {:<8} {:>6.2} {:>6.2} {:>12.2} {:>10.3} {:>12.3}",
                    budget,
                    name,
                    share,
                    margin,
                    within / var_y,
                    cost / 1e6,
                    (var_y + within) * cost / (var_y * cost_whole)
                );
            }
        }
    }
    println!("whole samples: mean cost {:.3} Mpx per sample", cost_whole / 1e6);
    Ok(())
}

fn main() -> elpips::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |s: &str| args.is_empty() || args.iter().any(|a| a == s);
    println!("tile-sampled draws (issue 33); {}", common::machine());
    let dir = tempfile::tempdir().map_err(|e| elpips::Error::InvalidArgument(e.to_string()))?;
    if want("variance") {
        variance(dir.path())?;
    }
    if want("ratios") {
        ratios(dir.path(), false)?;
    }
    if want("defect") {
        defect(dir.path(), false)?;
    }
    if args.iter().any(|a| a == "whole") {
        ratios(dir.path(), true)?;
        defect(dir.path(), true)?;
    }
    Ok(())
}
