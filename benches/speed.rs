//! `make bench` (second part): LPIPS-VGG at 512x512, ours (fp32, reference reuse, int8, on each
//! CPU backend this machine runs: MLAS, OpenVINO, and bf16 on OpenVINO where the CPU has it) against
//! pip `lpips==0.1.4` on PyTorch CPU in the same run with the same threads; achieved GFLOP/s
//! against the machine's measured fp32 peak; the peak memory of a 3840x2160 pair. Prints
//! figures, never passes or fails.
//!
//! Environment: `ELPIPS_BENCH_PYTHON` (default `.cache/bench/venv/bin/python`, made by
//! `make bench-venv`), `ELPIPS_BENCH_4K=0` skips the 4K run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use elpips::{Backend, Image, Metric, MetricKind, MetricOptions, Precision, RuntimeOptions};

mod common;
use common::mirrored;

const SIZE: u32 = 512;

/// Multiply-adds x 2 of VGG16's 13 convs (3x3) at an `h x w` input, for one image.
fn vgg_flops(h: usize, w: usize) -> f64 {
    const CONVS: [(usize, usize, u32); 13] = [
        (3, 64, 0), (64, 64, 0), (64, 128, 1), (128, 128, 1), (128, 256, 2), (256, 256, 2), (256, 256, 2),
        (256, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 4), (512, 512, 4), (512, 512, 4),
    ];
    CONVS.iter().map(|&(ci, co, b)| 2.0 * 9.0 * (ci * co) as f64 * ((h >> b) * (w >> b)) as f64).sum()
}


/// Measured fp32 peak: `threads` threads each running 16 independent chains of 8-wide FMAs
/// (12 chains measured 98 GFLOP/s on the development machine, 16 chains 112: more than the FMA
/// latency times the pipes needed covering there).
fn fma_peak_gflops(threads: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        // ~0.4 s per try on a quiet 3 GHz core; the best of three tries.
        const ITERS: u64 = 100_000_000;
        let mut best = 0.0f64;
        for _ in 0..3 {
            let t = Instant::now();
            // SAFETY: AVX2 and FMA were detected above.
            let handles: Vec<_> = (0..threads).map(|_| std::thread::spawn(|| unsafe { fma_chains(ITERS) })).collect();
            let sink: f32 = handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum();
            let secs = t.elapsed().as_secs_f64();
            std::hint::black_box(sink);
            best = best.max(threads as f64 * ITERS as f64 * CHAINS as f64 * 8.0 * 2.0 / secs / 1e9);
        }
        Some(best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 16;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut out = [0.0f32; 8];
    let mut s = acc[0];
    for a in &acc[1..] {
        s = _mm256_add_ps(s, *a);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

fn time_per<F: FnMut() -> elpips::Result<()>>(reps: usize, mut f: F) -> elpips::Result<f64> {
    f()?; // warm-up: first runs allocate and plan
    let t = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

fn pip_lpips(threads: usize) -> Result<f64, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("ELPIPS_BENCH_PYTHON").map(PathBuf::from).unwrap_or_else(|| root.join(".cache/bench/venv/bin/python"));
    if !python.is_file() {
        return Err(format!("{} not found: run `make bench-venv` (PyPI torch + lpips 0.1.4 under .cache/bench)", python.display()));
    }
    let out = Command::new(&python)
        .arg(root.join("benches/pip_lpips.py"))
        .args(["--size", &SIZE.to_string(), "--threads", &threads.to_string(), "--reps", "2"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("pip-lpips")).ok_or_else(|| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!("pip lpips did not run: {}", err.lines().last().unwrap_or("no output"))
    })?;
    println!("  ({line})");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("ms_per_pair="))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| ms / 1e3)
        .ok_or_else(|| format!("unreadable line `{line}`"))
}

/// Runs the CLI on a 3840x2160 pair and returns (seconds, peak RSS bytes, its output).
fn run_4k(dir: &Path) -> elpips::Result<(f64, u64, String)> {
    let (a, b) = (dir.join("ref-4k.png"), dir.join("cand-4k.png"));
    for (rel, path) in [("elpips/inputs/cat.png", &a), ("elpips/inputs/dog.png", &b)] {
        let img = mirrored(rel, 3840, 2160)?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut rgb = vec![0u8; w * h * 3];
        for ch in 0..3 {
            for (i, v) in img.channel(ch).iter().enumerate() {
                rgb[i * 3 + ch] = (v * 255.0).round() as u8;
            }
        }
        image::save_buffer(path, &rgb, w as u32, h as u32, image::ColorType::Rgb8)
            .map_err(|e| elpips::Error::Io { path: path.clone(), reason: e.to_string() })?;
    }
    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_elpips"))
        .args(["compare", "--metric", "lpips-vgg", "--json"])
        .arg(&a)
        .arg(&b)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| elpips::Error::Io { path: PathBuf::from(env!("CARGO_BIN_EXE_elpips")), reason: e.to_string() })?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    let mut out = String::new();
    if let Some(mut s) = child.stdout {
        use std::io::Read;
        let _ = s.read_to_string(&mut out);
    }
    Ok((secs, usage.ru_maxrss as u64 * 1024, out.trim().to_owned()))
}

fn main() -> elpips::Result<()> {
    let threads = elpips::network::runtime::physical_cores();
    println!("machine: {}", common::machine());
    println!("threads: {threads} (ours: ONNX Runtime intra-op; pip lpips: torch.set_num_threads)\n");

    let peak = fma_peak_gflops(threads);
    match peak {
        Some(p) => println!("measured fp32 peak (AVX2 FMA, {threads} threads): {p:.1} GFLOP/s\n"),
        None => println!("measured fp32 peak: not measured (needs x86-64 AVX2 + FMA)\n"),
    }

    let (a, b) = (mirrored("elpips/inputs/cat.png", SIZE, SIZE)?, mirrored("elpips/inputs/dog.png", SIZE, SIZE)?);
    let cands: Vec<Image> = (0..3).map(|i| mirrored(["elpips/inputs/dog.png", "elpips/inputs/adv_teddy.png", "elpips/inputs/adv_anchor.png"][i], SIZE, SIZE)).collect::<elpips::Result<_>>()?;
    let pass = vgg_flops(SIZE as usize, SIZE as usize);
    let mut rows: Vec<(String, f64, f64)> = Vec::new(); // (name, seconds per candidate, VGG passes)
    // Every CPU backend and precision this machine runs (benches/backends.rs has more sizes).
    let combos = [(Backend::Mlas, Precision::Fp32), (Backend::Openvino, Precision::Fp32), (Backend::Openvino, Precision::Bf16), (Backend::Mlas, Precision::Int8)];
    for (backend, precision) in combos {
        let runtime = RuntimeOptions { backend, ..Default::default() };
        let mut m = match Metric::new(MetricOptions { metric: MetricKind::LpipsVgg, precision, runtime, ..Default::default() }) {
            Ok(m) => m,
            Err(e) => {
                println!("ours {precision} on {backend}: not run here: {e}");
                continue;
            }
        };
        let pair = time_per(3, || m.compare(&a, &b).map(|_| ()))?;
        rows.push((format!("ours {precision} {backend}, pair"), pair, 2.0));
        let prepared = m.prepare_reference(&a)?;
        let mut i = 0;
        let reuse = time_per(3, || {
            i += 1;
            m.compare_reference(&prepared, &cands[i % cands.len()]).map(|_| ())
        })?;
        rows.push((format!("ours {precision} {backend}, reference reused"), reuse, 1.0));
    }
    let pip = match pip_lpips(threads) {
        Ok(s) => Some(s),
        Err(why) => {
            println!("pip lpips 0.1.4: not measured: {why}");
            None
        }
    };
    println!("\nLPIPS-VGG {SIZE}x{SIZE}, per candidate  {:>9} {:>11} {:>9} {:>12}", "ms", "GFLOP/s", "of peak", "vs pip lpips");
    if let Some(p) = pip {
        println!("{:<38} {:>9.1} {:>11.1} {:>9} {:>12}", "pip lpips 0.1.4 (PyTorch CPU), pair", p * 1e3, 2.0 * pass / p / 1e9, peak.map_or("-".into(), |pk| format!("{:.0}%", 100.0 * 2.0 * pass / p / 1e9 / pk)), "1.00x");
    }
    for (name, secs, passes) in &rows {
        let gflops = passes * pass / secs / 1e9;
        println!(
            "{:<38} {:>9.1} {:>11.1} {:>9} {:>12}",
            name,
            secs * 1e3,
            gflops,
            peak.map_or("-".into(), |pk| format!("{:.0}%", 100.0 * gflops / pk)),
            pip.map_or("-".into(), |p| format!("{:.2}x", p / secs))
        );
    }
    println!("(GFLOP/s counts the VGG16 convolutions a candidate needs: 2 passes for a pair, 1 with the reference's taps reused; int8 counts the same operations)");

    if std::env::var("ELPIPS_BENCH_4K").as_deref() != Ok("0") {
        let dir = std::env::temp_dir().join(format!("elpips-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| elpips::Error::Io { path: dir.clone(), reason: e.to_string() })?;
        let result = run_4k(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let (secs, rss, out) = result?;
        println!("\n3840x2160 LPIPS-VGG pair (CLI, automatic tiling: 512-pixel cores + 112-pixel margins): {secs:.1} s, peak RSS {:.0} MiB", rss as f64 / (1 << 20) as f64);
        println!("  {out}");
    }
    Ok(())
}
