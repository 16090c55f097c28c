//! `make bench-integrity`: what checking the pinned sha256 of the models and of the runtime
//! library adds to creating a metric. Prints figures and the machine; never a pass/fail test.

use std::time::Instant;

use elpips::integrity::{sha256_file, sha256_hex};
use elpips::{Metric, MetricKind, MetricOptions};

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("?").trim().to_owned();
    let sha_ni = cpu.lines().find(|l| l.starts_with("flags")).is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
    println!("machine: {model}; sha_ni: {sha_ni}; best of 3 runs, files in the page cache");
    let (lib, _) = elpips::network::runtime::locate_library(None);
    let lib = lib.canonicalize().expect("run `make setup`");
    let len = std::fs::metadata(&lib).map(|m| m.len()).unwrap_or(0);
    let ms = best_of(3, || sha256_file(&lib).unwrap());
    println!("runtime {:<28} {:>6.1} MB  sha256 {ms:>6.1} ms (once per process)", lib.file_name().unwrap().to_string_lossy(), len as f64 / 1e6);
    let dir = elpips::network::models::model_dir(None);
    for kind in MetricKind::ALL {
        let path = dir.join(kind.file_name());
        let bytes = std::fs::read(&path).expect("run `make setup`");
        let hash = best_of(3, || sha256_hex(&bytes));
        let new = best_of(3, || Metric::new(MetricOptions { metric: kind, ..Default::default() }).unwrap());
        println!(
            "model   {:<28} {:>6.1} MB  sha256 {hash:>6.1} ms of Metric::new {new:>7.1} ms ({:.1}%)",
            kind.file_name(),
            bytes.len() as f64 / 1e6,
            100.0 * hash / new
        );
    }
}
