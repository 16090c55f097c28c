//! Peak memory of big pairs: LPIPS-VGG and E-LPIPS on a 1920x1080 and a 3840x2160 pair, each
//! case in its own child process (this program run again with `--child`), which reports its
//! VmHWM from /proc/self/status and the time of the comparison. The pairs are the upstream cat
//! and dog mirrored out to size (made in memory, nothing written). E-LPIPS runs 2 samples at
//! scale level 1 (`scale_levels = 1`): full-size samples, the worst case for memory; the peak
//! does not grow with the sample count because samples are tiled and batches are bounded.
//! `ELPIPS_BENCH_4K=0` skips the 4K pair; `ELPIPS_BENCH_TILE=N` sets `--tile N` (0 = untiled);
//! `ELPIPS_BENCH_METRIC=elpips-vgg` (or lpips-vgg) runs that metric only.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use elpips::{Image, LoadOptions, Metric, MetricKind, MetricOptions, Sampling};

/// A natural-looking test image: `rel` mirrored out to `w x h`.
fn mirrored(rel: &str, w: u32, h: u32) -> elpips::Result<Image> {
    let src = Image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream").join(rel), &LoadOptions::default())?;
    let (iw, ih) = (src.width() as usize, src.height() as usize);
    let fold = |p: usize, n: usize| {
        let p = p % (2 * n);
        if p < n {
            p
        } else {
            2 * n - 1 - p
        }
    };
    let mut data = Vec::with_capacity(3 * (w * h) as usize);
    for ch in 0..3 {
        for y in 0..h as usize {
            let row = &src.channel(ch)[fold(y, ih) * iw..fold(y, ih) * iw + iw];
            data.extend((0..w as usize).map(|x| row[fold(x, iw)]));
        }
    }
    Image::from_planar(w, h, data)
}

/// Peak resident set of this process (VmHWM), in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn tile_size() -> Option<u32> {
    std::env::var("ELPIPS_BENCH_TILE").ok().and_then(|v| v.parse().ok())
}

/// The child: one comparison, then `secs=.. peak=.. distance=..` on stdout.
fn child(metric: &str, w: u32, h: u32) -> elpips::Result<()> {
    let kind = MetricKind::from_name(metric)?;
    let (a, b) = (mirrored("elpips/inputs/cat.png", w, h)?, mirrored("elpips/inputs/dog.png", w, h)?);
    let ensemble = kind.is_ensemble();
    let mut m = Metric::new(MetricOptions {
        metric: kind,
        sampling: Sampling::Fixed(2),
        scale_levels: ensemble.then_some(1),
        tile_size: tile_size(),
        ..Default::default()
    })?;
    let t = Instant::now();
    let e = m.compare(&a, &b)?;
    println!("secs={:.1} peak={} distance={:.6}", t.elapsed().as_secs_f64(), vm_hwm(), e.distance);
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn main() -> elpips::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (w, h) = (args[i + 2].parse().unwrap_or(0), args[i + 3].parse().unwrap_or(0));
        return child(&args[i + 1], w, h);
    }
    println!("peak memory of big pairs (VmHWM of one process per case); {}", machine());
    println!("tile: {}", tile_size().map_or("automatic".into(), |t| t.to_string()));
    println!("{:<12} {:>10} {:>12} {:>10}  {}", "metric", "pair", "peak MiB", "time s", "note");
    let mut sizes = vec![(1920u32, 1080u32)];
    if std::env::var("ELPIPS_BENCH_4K").as_deref() != Ok("0") {
        sizes.push((3840, 2160));
    }
    for (w, h) in sizes {
        for metric in ["lpips-vgg", "elpips-vgg"] {
            if std::env::var("ELPIPS_BENCH_METRIC").is_ok_and(|m| m != metric) {
                continue;
            }
            let exe = std::env::current_exe().map_err(|e| elpips::Error::Io { path: args[0].clone().into(), reason: e.to_string() })?;
            let out = Command::new(&exe)
                .args(["--child", metric, &w.to_string(), &h.to_string()])
                .output()
                .map_err(|e| elpips::Error::Io { path: exe.clone(), reason: e.to_string() })?;
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |k: &str| text.split_whitespace().find_map(|f| f.strip_prefix(k)).unwrap_or("-").to_owned();
            let peak = field("peak=").parse::<f64>().map_or("-".into(), |b| format!("{:.0}", b / (1 << 20) as f64));
            let note = if metric == "elpips-vgg" { "2 samples at level 1 (full size)" } else { "exact" };
            if out.status.success() {
                println!("{metric:<12} {:>10} {peak:>12} {:>10}  {note}", format!("{w}x{h}"), field("secs="));
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                println!("{metric:<12} {:>10} failed: {}", format!("{w}x{h}"), err.lines().last().unwrap_or("killed"));
            }
        }
    }
    Ok(())
}
