//! `make bench`: how fast the networks run here. Prints figures and the machine they came from;
//! never a pass/fail test.

mod common;

use std::time::Instant;

use elpips::{Image, Metric, MetricKind, MetricOptions, Sampling};

/// Multiply-adds x 2 of VGG16's 13 convs (3x3) at an `h x w` input, for one image.
fn vgg_flops(h: usize, w: usize) -> f64 {
    const CONVS: [(usize, usize, u32); 13] = [
        (3, 64, 0), (64, 64, 0), (64, 128, 1), (128, 128, 1), (128, 256, 2), (256, 256, 2), (256, 256, 2),
        (256, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 4), (512, 512, 4), (512, 512, 4),
    ];
    CONVS.iter().map(|&(ci, co, b)| 2.0 * 9.0 * (ci * co) as f64 * ((h >> b) * (w >> b)) as f64).sum()
}

fn noise_image(size: u32, seed: u32) -> Image {
    // A smooth pattern plus hashed noise: deterministic, not trivially compressible.
    let rgb: Vec<u8> = (0..size * size * 3)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(2_654_435_761) >> 24;
            ((i / 3 % size + i / 3 / size) as u8 / 2).wrapping_add(h as u8 / 4)
        })
        .collect();
    Image::from_rgb8(size, size, &rgb).expect("valid image")
}


fn main() -> elpips::Result<()> {
    println!("machine: {}", common::machine());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("onnx runtime threads: {threads}\n");

    let mut lpips = Metric::new(MetricOptions { metric: MetricKind::LpipsVgg, ..Default::default() })?;
    println!("{:<28} {:>10} {:>12} {:>10}", "LPIPS-VGG, one pair", "ms/pair", "GFLOP/pair", "GFLOP/s");
    for size in [256u32, 512, 1024] {
        let (a, b) = (noise_image(size, 1), noise_image(size, 2));
        lpips.compare(&a, &b)?; // warm-up: first runs allocate and plan
        let reps = (4096 / size).max(2);
        let t = Instant::now();
        for _ in 0..reps {
            lpips.compare(&a, &b)?;
        }
        let secs = t.elapsed().as_secs_f64() / reps as f64;
        let gflop = 2.0 * vgg_flops(size as usize, size as usize) / 1e9;
        println!("{:<28} {:>10.1} {:>12.1} {:>10.1}", format!("{size}x{size}"), secs * 1e3, gflop, gflop / secs);
    }

    println!("\n{:<28} {:>10} {:>12} {:>10}", "E-LPIPS-VGG, per sample", "ms/sample", "levels", "samples");
    for size in [256u32, 512] {
        let (a, b) = (noise_image(size, 3), noise_image(size, 4));
        let samples = if size <= 256 { 24 } else { 8 };
        let mut m = Metric::new(MetricOptions { sampling: Sampling::Fixed(samples), seed: 1, ..Default::default() })?;
        let levels = m.scale_levels(size, size);
        m.compare(&a, &b)?;
        let t = Instant::now();
        let e = m.compare(&a, &b)?;
        let secs = t.elapsed().as_secs_f64() / e.samples as f64;
        println!("{:<28} {:>10.1} {:>12} {:>10}", format!("{size}x{size}"), secs * 1e3, levels, e.samples);
    }

    // Samples needed for a 2.5% half-width, per sampler: `benches/estimator.rs` (`samples`).
    Ok(())
}
