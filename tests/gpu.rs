//! `make gpu-check`: the golden figures on CUDA and the GPU benchmark, each against the CPU.
//! Gated by `ELPIPS_GPU_CHECK=1` (what `make gpu-check` sets): without it every test here says
//! it was skipped and passes, so CI without a GPU runs it as a no-op; with it, a machine where
//! CUDA cannot run fails at once, naming why (no GPU runtime: `make setup DEVICE=cuda`; no GPU).
//!
//! Correct: fp32 LPIPS and the E-LPIPS network figures within 1e-4 relative of the golden values
//! (tests/golden.rs has them with the CPU's 1e-5), E-LPIPS Monte-Carlo means within their
//! intervals. Fast: LPIPS-VGG on a 1080p pair, E-LPIPS with 200 samples at 1080p, and the time
//! of each further candidate sharing the reference's draws; printed as `gpu-bench` lines.

mod common;

use std::time::Instant;

use common::*;
use elpips::{Device, Flip, Image, Metric, MetricKind, MetricOptions, RuntimeOptions, Sampling, Transform};

/// GPU float32 (cuDNN algorithms, TF32 off by default in ONNX Runtime) against the golden values.
const GPU_RTOL: f64 = 1e-4;

const TEDDY: &str = "elpips/inputs/adv_teddy.png";
const ADV_REF: &str = "elpips/inputs/adv_reference.png";
const CAT: &str = "elpips/inputs/cat.png";
const DOG: &str = "elpips/inputs/dog.png";
const EX_REF: &str = "lpips/imgs/ex_ref.png";
const EX_P0: &str = "lpips/imgs/ex_p0.png";
const EX_P1: &str = "lpips/imgs/ex_p1.png";

// The golden figures of tests/golden.rs (weights/reference_values.json), same pairs.
const LPIPS_OFFICIAL: [(&str, &str, f64, Option<f64>); 4] = [
    (EX_REF, EX_P0, 0.568612813949585, Some(0.7218806743621826)),
    (EX_REF, EX_P1, 0.4216642677783966, Some(0.13756561279296875)),
    (CAT, DOG, 0.6621732711791992, Some(0.6389177441596985)),
    (TEDDY, ADV_REF, 0.9205912947654724, None),
];
const ELPIPS_NETWORK: [(&str, &str, f64, f64); 2] =
    [(TEDDY, ADV_REF, 0.15568213164806366, 0.09708957374095917), (CAT, DOG, 0.11583676189184189, 0.09925566613674164)];
const ELPIPS_MONTE_CARLO: [(&str, &str, f64, f64); 2] = [(TEDDY, ADV_REF, 0.11071849720818656, 0.004222836405938781), (CAT, DOG, 0.08347741048783064, 0.004346940404741748)];
/// tests/golden.rs's false-alarm z (0.1% per pair).
const Z_ALARM: f64 = 3.29;

/// `false` (with a line saying so) unless `make gpu-check` asked for the GPU; then CUDA must run.
fn gpu_asked() -> bool {
    if std::env::var_os("ELPIPS_GPU_CHECK").is_none_or(|v| v != "1") {
        println!("skipped: set ELPIPS_GPU_CHECK=1 (make gpu-check) on a machine with an NVIDIA GPU");
        return false;
    }
    let lib = elpips::network::runtime::locate_library(None).0;
    match elpips::network::runtime::cuda_available(None) {
        Ok(true) => true,
        Ok(false) => panic!(
            "make gpu-check: CUDA cannot run here (runtime {}; GPU: {}); run `make setup DEVICE=cuda` on a machine with an NVIDIA GPU",
            lib.display(),
            elpips::network::runtime::gpu().unwrap_or_else(|e| e)
        ),
        Err(e) => panic!("make gpu-check: the runtime does not load: {e}"),
    }
}

fn on(device: Device, options: MetricOptions) -> Metric {
    let m = metric_with(MetricOptions { runtime: RuntimeOptions { device, ..options.runtime.clone() }, ..options });
    assert_eq!(m.device(), device, "the metric opened on {} instead of {}", m.device(), device);
    m
}

fn assert_close(got: f64, want: f64, rtol: f64, what: &str) {
    let rel = (got - want).abs() / want.abs();
    println!("{what}: {got} vs {want}, relative error {rel:.1e}");
    assert!(rel <= rtol, "{what}: got {got}, want {want} (relative error {rel:.2e} > {rtol:.0e})");
}

#[test]
fn golden_lpips_on_cuda() {
    if !gpu_asked() {
        return;
    }
    let mut vgg = on(Device::Cuda, MetricOptions { metric: MetricKind::LpipsVgg, ..Default::default() });
    let mut alex = on(Device::Cuda, MetricOptions { metric: MetricKind::LpipsAlex, ..Default::default() });
    for (a, b, want_vgg, want_alex) in LPIPS_OFFICIAL {
        let (ia, ib) = (load(a), load(b));
        assert_close(vgg.compare(&ia, &ib).unwrap().distance, want_vgg, GPU_RTOL, &format!("cuda lpips-vgg {a} {b}"));
        if let Some(want) = want_alex {
            assert_close(alex.compare(&ia, &ib).unwrap().distance, want, GPU_RTOL, &format!("cuda lpips-alex {a} {b}"));
        }
    }
}

#[test]
fn golden_elpips_network_on_cuda() {
    if !gpu_asked() {
        return;
    }
    let fixed = Transform { scale: 2, scale_offset: (1, 0), offset: (3, 5), flip: Flip::Both, transpose: true, permutation: [2, 0, 1], color: [0.3, 0.7, 0.9] };
    let mut m = on(Device::Cuda, MetricOptions::default());
    for (a, b, identity, fixed_want) in ELPIPS_NETWORK {
        let (ia, ib) = (load(a), load(b));
        assert_close(m.evaluate(&ia, &ib, None, None).unwrap(), identity, GPU_RTOL, &format!("cuda identity {a} {b}"));
        assert_close(m.evaluate(&ia, &ib, Some(&fixed), None).unwrap(), fixed_want, GPU_RTOL, &format!("cuda fixed {a} {b}"));
    }
}

#[test]
fn elpips_means_on_cuda_within_their_intervals() {
    if !gpu_asked() {
        return;
    }
    let mut m = on(Device::Cuda, MetricOptions { sampling: Sampling::Fixed(400), seed: 2019, ..Default::default() });
    for (a, b, mean, ci_ref) in ELPIPS_MONTE_CARLO {
        let e = m.compare(&load(a), &load(b)).unwrap();
        let se_ref = ci_ref / elpips::estimate::Z95;
        let z = (e.distance - mean).abs() / (se_ref * se_ref + e.std_error * e.std_error).sqrt();
        println!("cuda e-lpips {a} {b}: {:.5} ± {:.5} (400 samples) vs {mean:.5} ± {ci_ref:.5}: z = {z:.2}", e.distance, e.ci95);
        assert!(z <= Z_ALARM, "{a} {b}: z = {z:.2} > {Z_ALARM}");
    }
}

/// A 1920x1080 image tiled from an upstream one (the benchmark needs size, not content).
fn hd(rel: &str, shift: u32) -> Image {
    let src = load(rel);
    let (w, h) = (1920u32, 1080u32);
    let (sw, sh) = (src.width(), src.height());
    let mut data = Vec::with_capacity((3 * w * h) as usize);
    for c in 0..3 {
        let plane = src.channel(c);
        for y in 0..h {
            for x in 0..w {
                data.push(plane[(((y + shift) % sh) * sw + (x + shift) % sw) as usize]);
            }
        }
    }
    Image::from_planar(w, h, data).unwrap()
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

#[test]
fn gpu_benchmark() {
    if !gpu_asked() {
        return;
    }
    let (reference, a, b) = (hd(CAT, 0), hd(DOG, 0), hd(DOG, 7));
    // CPU samples are timed on fewer draws and scaled: 200 at 1080p take minutes there.
    let cpu_samples: u32 = std::env::var("ELPIPS_GPU_BENCH_CPU_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    for device in [Device::Cuda, Device::Cpu] {
        let mut vgg = on(device, MetricOptions { metric: MetricKind::LpipsVgg, ..Default::default() });
        vgg.compare(&reference, &a).unwrap(); // warm-up: cuDNN's search, allocations
        let t = Instant::now();
        vgg.compare(&reference, &a).unwrap();
        println!("gpu-bench {device}: lpips-vgg 1920x1080 pair {:.3} s", secs(t));

        let n = if device == Device::Cuda { 200 } else { cpu_samples };
        let mut m = on(device, MetricOptions { sampling: Sampling::Fixed(n), seed: 1, ..Default::default() });
        if device == Device::Cuda {
            m.compare(&reference, &a).unwrap(); // warm-up: one search per scale level's shape
        }
        let t = Instant::now();
        let e = m.compare(&reference, &a).unwrap();
        let one = secs(t);
        let t = Instant::now();
        let many = m.compare_many(&reference, &[&a, &b]).unwrap();
        let extra = secs(t) - one;
        let scale = 200.0 / n as f64;
        println!(
            "gpu-bench {device}: e-lpips 200 samples 1920x1080 fp32 {:.3} s{} (distance {:.4} ± {:.4}); each further candidate sharing the draws {:.3} s",
            one * scale,
            if n == 200 { String::new() } else { format!(" (scaled from {n} samples)") },
            e.distance,
            e.ci95,
            extra * scale
        );
        assert_eq!(many.distances.len(), 2);
    }
    println!("gpu-bench: fp16 not measured (no fp16 models yet; see docs/performance.md, CUDA)");
}
