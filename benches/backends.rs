//! `make bench` (last part): each CPU backend and precision this machine runs, in one process,
//! on the same pairs and the same E-LPIPS draws: a LPIPS-VGG pair and an E-LPIPS sample at
//! 256x256, 512x512 and 1920x1080, the first run of each size (new input shapes: OpenVINO
//! compiles for them, MLAS plans) against the steady runs after it, the time to open the
//! metric (OpenVINO compiles the model, or reads it from its cache), and each figure's
//! difference from MLAS fp32. Combinations this machine cannot run are listed with the reason.
//! Prints figures, never passes or fails.
//!
//! Environment: `ELPIPS_BENCH_SIZES` (default `256,512,1080`), `ELPIPS_BENCH_SAMPLES` (E-LPIPS
//! samples per run, default 4), `ELPIPS_BENCH_REPS` (steady LPIPS runs, default 2).

use std::time::Instant;

use elpips::network::backend::CpuFeatures;
use elpips::{Backend, Metric, MetricKind, MetricOptions, Precision, RuntimeOptions, SamplerKind, Sampling};

mod common;
use common::mirrored;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn secs<T>(f: impl FnOnce() -> elpips::Result<T>) -> elpips::Result<(f64, T)> {
    let t = Instant::now();
    let v = f()?;
    Ok((t.elapsed().as_secs_f64(), v))
}

struct Row {
    what: String,
    first: f64,
    steady: f64,
    value: f64,
}

fn main() -> elpips::Result<()> {
    let cpu = CpuFeatures::detect();
    let threads = elpips::network::runtime::physical_cores();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} ({}); {threads} threads; load average {}",
        if cpu.model.is_empty() { &cpu.vendor } else { &cpu.model },
        cpu.names().join(", "),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let facts = RuntimeOptions::default().backend_facts();
    for line in facts.lines() {
        println!("  {line}");
    }
    let sizes: Vec<(u32, u32)> = std::env::var("ELPIPS_BENCH_SIZES")
        .unwrap_or_else(|_| "256,512,1080".into())
        .split(',')
        .filter_map(|s| match s.trim() {
            "1080" => Some((1920, 1080)),
            n => n.parse().ok().map(|n| (n, n)),
        })
        .collect();
    let samples: u32 = env_or("ELPIPS_BENCH_SAMPLES", 4);
    let reps: usize = env_or("ELPIPS_BENCH_REPS", 2).max(1);
    let combos = [
        (Backend::Mlas, Precision::Fp32),
        (Backend::Openvino, Precision::Fp32),
        (Backend::Openvino, Precision::Bf16),
        (Backend::Mlas, Precision::Int8),
        (Backend::Openvino, Precision::Int8),
    ];
    // (combo, rows) for the table; the MLAS fp32 rows are the baseline of the last columns.
    let mut results: Vec<(String, Vec<Row>)> = Vec::new();
    for (backend, precision) in combos {
        let name = format!("{backend} {precision}");
        let runtime = RuntimeOptions { backend, ..Default::default() };
        let mut rows = Vec::new();
        let open = |metric| {
            let sampler = SamplerKind::Iid;
            Metric::new(MetricOptions { metric, precision, runtime: runtime.clone(), seed: 1, sampler, ..Default::default() })
        };
        let (t_open, lpips) = match secs(|| open(MetricKind::LpipsVgg)) {
            Ok(v) => v,
            Err(e) => {
                println!("\n{name}: not run here: {e}");
                continue;
            }
        };
        let mut lpips = lpips;
        println!("\n{name}: LPIPS-VGG opened in {t_open:.2} s (backend {})", lpips.backend());
        let (t_open_e, mut elpips) = secs(|| open(MetricKind::ElpipsVgg))?;
        elpips.set_sampling(Sampling::Fixed(samples))?;
        println!("{name}: E-LPIPS opened in {t_open_e:.2} s (backend {})", elpips.backend());
        for &(w, h) in &sizes {
            let (a, b) = (mirrored("elpips/inputs/cat.png", w, h)?, mirrored("elpips/inputs/dog.png", w, h)?);
            let (first, d) = secs(|| lpips.compare(&a, &b))?;
            let mut steady = f64::INFINITY;
            for _ in 0..reps {
                steady = steady.min(secs(|| lpips.compare(&a, &b))?.0);
            }
            rows.push(Row { what: format!("LPIPS-VGG pair {w}x{h}"), first, steady, value: d.distance });
            println!("  {:<28} first {first:>8.3} s  steady {steady:>8.3} s  distance {:.6}", format!("LPIPS-VGG pair {w}x{h}"), d.distance);
            // The same iid draws (seed 1) on every backend: the second run repeats the first's
            // shapes, so first / steady is what new shapes cost.
            let (first, e) = secs(|| elpips.compare(&a, &b))?;
            let (steady, _) = secs(|| elpips.compare(&a, &b))?;
            let n = e.samples as f64;
            rows.push(Row { what: format!("E-LPIPS sample {w}x{h}"), first: first / n, steady: steady / n, value: e.distance });
            println!(
                "  {:<28} first {:>8.3} s  steady {:>8.3} s  per sample, {} samples, estimate {:.6}",
                format!("E-LPIPS sample {w}x{h}"),
                first / n,
                steady / n,
                e.samples,
                e.distance
            );
        }
        results.push((name, rows));
    }
    let Some((_, base)) = results.iter().find(|(n, _)| n == "mlas fp32") else { return Ok(()) };
    println!("\nsteady time per pair or sample (s), speed-up over MLAS fp32, first-run cost (first / steady), value vs MLAS fp32:");
    for (name, rows) in &results {
        for (row, b) in rows.iter().zip(base) {
            println!(
                "{:<16} {:<30} {:>8.3} s {:>6.2}x  first {:>5.2}x  {:+.4}%",
                name,
                row.what,
                row.steady,
                b.steady / row.steady,
                row.first / row.steady,
                100.0 * (row.value - b.value) / b.value
            );
        }
    }
    println!("(E-LPIPS: {samples} iid samples, seed 1, the same draws on every backend; at int8 and bf16 the samples run on the feature network, at fp32 on the fused model)");
    Ok(())
}
