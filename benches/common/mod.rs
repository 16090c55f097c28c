//! Helpers the benchmark programs share (a folder, so that cargo does not take it for a bench).
// Each bench compiles this module and uses a part of it.
#![allow(dead_code)]

use std::path::Path;

use elpips::{Image, LoadOptions};

/// A natural-looking test image: the set-up's upstream image `rel` mirrored out to `w x h`.
pub fn mirrored(rel: &str, w: u32, h: u32) -> elpips::Result<Image> {
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

/// The machine a figure was measured on, printed with every figure: CPU model, cores, the
/// instruction sets the backends choose between, and the load (figures taken under load are
/// indicative only).
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown").trim();
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let isa: Vec<&str> = ["avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{model}; {} logical / {} physical cores; {}; load average {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        elpips::network::runtime::physical_cores(),
        isa.join(" "),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}
