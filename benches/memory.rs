//! Peak memory of big pairs: LPIPS-VGG and E-LPIPS on a 1920x1080 and a 3840x2160 pair, each
//! case in its own child process (this program run again with `--child`), which reports its
//! VmHWM from /proc/self/status and the time of the comparison. The pairs are the upstream cat
//! and dog mirrored out to size (made in memory, nothing written). E-LPIPS cases: one sample at
//! scale level 1 (full size: the most tile work), one at level 2 (the biggest sample that
//! was batched whole before it was tiled), and a default run (4 samples of the default levels,
//! seed 3: the mix of tiled and batched samples a user's run holds). The peak does not grow with
//! the sample count: samples above the fused-run size are tiled one at a time and batches are
//! bounded. `ELPIPS_BENCH_4K=0` skips the 4K pair; `ELPIPS_BENCH_TILE=N` sets `--tile N`
//! (0 = untiled); `ELPIPS_BENCH_METRIC=elpips-vgg` (or lpips-vgg) runs that metric only.

use std::process::Command;
use std::time::Instant;

use elpips::ensemble::{scale_levels_for, Draw};
use elpips::{Metric, MetricKind, MetricOptions, Sampling};

mod common;
use common::mirrored;

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

/// The child: one case (`lpips-vgg`, `elpips-vgg`: a default run, `level1`, `level2`: one
/// E-LPIPS sample at that scale level), then `secs=.. peak=.. distance=..` on stdout.
fn child(case: &str, w: u32, h: u32) -> elpips::Result<()> {
    let (a, b) = (mirrored("elpips/inputs/cat.png", w, h)?, mirrored("elpips/inputs/dog.png", w, h)?);
    let t = Instant::now();
    let d = if let Some(level) = case.strip_prefix("level") {
        // The first draw of seed 0 at that level of the default level count.
        let level: usize = level.parse().map_err(|_| elpips::Error::InvalidArgument(format!("bad case {case}")))?;
        let levels = scale_levels_for(h, w);
        let mut draw = (0..).map(|i| Draw::iid(0, i, levels)).find(|d| d.transform.scale == level).expect("every level is drawn eventually");
        let mut m = Metric::new(MetricOptions { tile_size: tile_size(), ..Default::default() })?;
        m.evaluate_draws(&a, &b, std::slice::from_mut(&mut draw))?[0]
    } else {
        let kind = MetricKind::from_name(case)?;
        let options = MetricOptions { metric: kind, sampling: Sampling::Fixed(4), seed: 3, tile_size: tile_size(), ..Default::default() };
        Metric::new(options)?.compare(&a, &b)?.distance
    };
    println!("secs={:.1} peak={} distance={:.6}", t.elapsed().as_secs_f64(), vm_hwm(), d);
    Ok(())
}


fn main() -> elpips::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (w, h) = (args[i + 2].parse().unwrap_or(0), args[i + 3].parse().unwrap_or(0));
        return child(&args[i + 1], w, h);
    }
    println!("peak memory of big pairs (VmHWM of one process per case); {}", common::machine());
    println!("tile: {}", tile_size().map_or("automatic".into(), |t| t.to_string()));
    println!("{:<12} {:>10} {:>12} {:>10}  {}", "metric", "pair", "peak MiB", "time s", "note");
    let mut sizes = vec![(1920u32, 1080u32)];
    if std::env::var("ELPIPS_BENCH_4K").as_deref() != Ok("0") {
        sizes.push((3840, 2160));
    }
    for (w, h) in sizes {
        let cases = [
            ("lpips-vgg", "lpips-vgg", "exact"),
            ("elpips-vgg", "level1", "1 sample at level 1 (full size)"),
            ("elpips-vgg", "level2", "1 sample at level 2"),
            ("elpips-vgg", "elpips-vgg", "default run: 4 samples, seed 3"),
        ];
        for (metric, case, note) in cases {
            if std::env::var("ELPIPS_BENCH_METRIC").is_ok_and(|m| m != metric) {
                continue;
            }
            let exe = std::env::current_exe().map_err(|e| elpips::Error::Io { path: args[0].clone().into(), reason: e.to_string() })?;
            let out = Command::new(&exe)
                .args(["--child", case, &w.to_string(), &h.to_string()])
                .output()
                .map_err(|e| elpips::Error::Io { path: exe.clone(), reason: e.to_string() })?;
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |k: &str| text.split_whitespace().find_map(|f| f.strip_prefix(k)).unwrap_or("-").to_owned();
            let peak = field("peak=").parse::<f64>().map_or("-".into(), |b| format!("{:.0}", b / (1 << 20) as f64));
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
