//! Perceptual interpolation: the E-LPIPS barycenter of two similar images, found by gradient
//! descent, next to their pixel average. The paper's point: E-LPIPS is robust enough to be
//! optimised directly, and its geometry is meaningful: the midpoint of two shifted copies of an
//! image is a sharp image, where the pixel average is a double exposure.
//!
//! Minimises E[D(a, x)] + E[D(b, x)] over x (E-LPIPS-VGG, fresh draws every step: stochastic
//! gradient descent with Adam), starting from the pixel average, and writes PNGs:
//! `a.png`, `b.png`, `pixel-average.png`, `elpips-barycenter.png`.
//!
//! `cargo run --release --example interpolate -- [--image PNG] [--shift 6] [--size 64]
//!  [--steps 40] [--samples 2] [--lr 0.01] [--out-dir docs/images/interpolate]`

use std::path::{Path, PathBuf};

#[path = "common/adam.rs"]
mod adam;
use adam::Adam;
#[path = "common/png.rs"]
mod png;
use png::save_png;
use elpips::{Gradient, GradientOptions, Image, LoadOptions, Metric, MetricOptions, Sampling};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or_else(|| format!("{name} needs a valid value")),
    }
}

/// A `size x size` window of `img` at (x0, y0), box-downscaled by `factor`.
fn window(img: &Image, x0: usize, y0: usize, size: usize, factor: usize) -> Image {
    let (w, h) = (img.width() as usize, img.height() as usize);
    assert!(x0 + size * factor <= w && y0 + size * factor <= h, "window outside the image");
    let mut out = vec![0.0f32; 3 * size * size];
    for c in 0..3 {
        let p = img.channel(c);
        for y in 0..size {
            for x in 0..size {
                let mut acc = 0.0;
                for dy in 0..factor {
                    for dx in 0..factor {
                        acc += p[(y0 + y * factor + dy) * w + x0 + x * factor + dx];
                    }
                }
                out[c * size * size + y * size + x] = acc / (factor * factor) as f32;
            }
        }
    }
    Image::from_planar(size as u32, size as u32, out).expect("finite")
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("interpolate [--image PNG] [--shift PX] [--size N] [--steps N] [--samples K] [--lr F] [--out-dir DIR]");
        return Ok(());
    }
    let default_image = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream/elpips/inputs/cat.png");
    let image: PathBuf = arg(&args, "--image", default_image)?;
    let shift: usize = arg(&args, "--shift", 6)?;
    let size: usize = arg(&args, "--size", 64)?;
    let steps: u64 = arg(&args, "--steps", 40)?;
    let samples: u64 = arg(&args, "--samples", 2)?;
    let lr: f32 = arg(&args, "--lr", 0.01)?;
    let out_dir: PathBuf = arg(&args, "--out-dir", PathBuf::from("docs/images/interpolate"))?;
    if size < 16 || samples == 0 || steps == 0 || lr <= 0.0 {
        return Err("need --size >= 16, --samples >= 1, --steps >= 1, --lr > 0".into());
    }
    let img = Image::open(&image, &LoadOptions::default()).map_err(|e| e.to_string())?;
    // Two views of the same scene, `shift` pixels apart horizontally (at the output scale).
    let factor = ((img.height() as usize).min(img.width() as usize - shift * 4) / size).max(1);
    let (x0, y0) = ((img.width() as usize - (size + shift) * factor) / 2, (img.height() as usize - size * factor) / 2);
    let a = window(&img, x0, y0, size, factor);
    let b = window(&img, x0 + shift * factor, y0, size, factor);
    let average: Vec<f32> = a.data().iter().zip(b.data()).map(|(&p, &q)| 0.5 * (p + q)).collect();
    let average = Image::from_planar(size as u32, size as u32, average).map_err(|e| e.to_string())?;

    let mut grad = Gradient::new(GradientOptions { seed: 1, ..Default::default() }).map_err(|e| e.to_string())?;
    let mut x = average.data().to_vec();
    let mut adam = Adam::new(x.len(), 1e-8);
    for step in 0..steps {
        let xi = Image::from_planar(size as u32, size as u32, x.clone()).map_err(|e| e.to_string())?;
        let draws = step * samples..(step + 1) * samples;
        let ga = grad.samples(&a, &xi, draws.clone()).map_err(|e| e.to_string())?;
        let gb = grad.samples(&b, &xi, draws).map_err(|e| e.to_string())?;
        let g: Vec<f32> = ga.gradient.iter().zip(&gb.gradient).map(|(p, q)| p + q).collect();
        for (xi, s) in x.iter_mut().zip(adam.step(&g, lr)) {
            *xi = (*xi - s).clamp(0.0, 1.0);
        }
        if step % 10 == 0 || step + 1 == steps {
            eprintln!("step {:>3}: E-LPIPS to a {:.4}, to b {:.4} (this step's {samples} draws)", step + 1, ga.distance, gb.distance);
        }
    }
    let bary = Image::from_planar(size as u32, size as u32, x).map_err(|e| e.to_string())?;
    let mut metric = Metric::new(MetricOptions { seed: 777, sampling: Sampling::Fixed(100), ..Default::default() }).map_err(|e| e.to_string())?;
    for (name, img) in [("pixel average", &average), ("E-LPIPS barycenter", &bary)] {
        let da = metric.compare(&a, img).map_err(|e| e.to_string())?;
        let db = metric.compare(&b, img).map_err(|e| e.to_string())?;
        println!(
            "{name:<19} E-LPIPS to a {:.4} +- {:.4}, to b {:.4} +- {:.4}, sum {:.4}",
            da.distance,
            da.ci95,
            db.distance,
            db.ci95,
            da.distance + db.distance
        );
    }
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    for (name, img) in [("a", &a), ("b", &b), ("pixel-average", &average), ("elpips-barycenter", &bary)] {
        save_png(img, &out_dir.join(format!("{name}.png")))?;
    }
    println!("wrote {}/{{a,b,pixel-average,elpips-barycenter}}.png", out_dir.display());
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("interpolate: error: {e}");
        std::process::exit(2);
    }
}
