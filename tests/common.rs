//! Shared test helpers: fixtures come from the set-up's cache (`make setup`), never from the repo.
#![allow(dead_code)]

use std::path::PathBuf;

use elpips::{Image, LoadOptions, Metric, MetricKind, MetricOptions, Sampling};

/// A file obtained by `make setup` (upstream images and weights), laid out like the upstream mirror.
pub fn upstream(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream").join(rel);
    assert!(p.is_file(), "{} is missing: run `make setup` first", p.display());
    p
}

/// Upstream linear weights converted to safetensors by `make setup` (`.cache/linear/<name>`).
pub fn linear_weights(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cache/linear").join(name);
    assert!(p.is_file(), "{} is missing: run `make setup` first", p.display());
    p
}

pub fn load(rel: &str) -> Image {
    Image::open(upstream(rel), &LoadOptions::default()).expect("fixture decodes")
}

pub fn metric(kind: MetricKind) -> Metric {
    metric_with(MetricOptions { metric: kind, ..Default::default() })
}

pub fn metric_with(options: MetricOptions) -> Metric {
    Metric::new(options).unwrap_or_else(|e| panic!("cannot load the metric ({e}); run `make setup` first"))
}

pub fn elpips_fixed(samples: u32, seed: u64) -> Metric {
    metric_with(MetricOptions { sampling: Sampling::Fixed(samples), seed, ..Default::default() })
}

/// A PNG whose header claims `w x h` pixels, followed by one tiny IDAT chunk and IEND.
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], ihdr), (b"IDAT", vec![0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]), (b"IEND", vec![])] {
        out.extend((data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend(&data);
        out.extend(&chunk);
        out.extend(crc32(&chunk).to_be_bytes());
    }
    out
}

/// CRC-32 (ISO-HDLC, as PNG chunks and zip entries use it).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// The C ABI from Rust, for the tests that drive contexts from many threads (concurrency, soak).
pub mod c {
    use elpips::capi::*;

    pub struct Shared(pub *mut ElpipsContext);
    // SAFETY: the C ABI documents contexts as shareable (calls are serialised by its lock).
    unsafe impl Send for Shared {}
    unsafe impl Sync for Shared {}

    pub fn c_options(metric: ElpipsMetric) -> ElpipsOptions {
        let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
        // SAFETY: writable.
        assert_eq!(unsafe { elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()) }, ELPIPS_OK);
        // SAFETY: initialised above.
        let mut o = unsafe { o.assume_init() };
        o.metric = metric;
        o.threads = 1;
        o.sampling = ELPIPS_SAMPLING_FIXED;
        o.samples = 4;
        o.seed = 7;
        o
    }

    pub fn c_context(metric: ElpipsMetric) -> Shared {
        let mut ctx = std::ptr::null_mut();
        // SAFETY: valid options and out-pointer.
        assert_eq!(unsafe { elpips_context_new(&c_options(metric), &mut ctx) }, ELPIPS_OK, "run `make setup` first");
        Shared(ctx)
    }

    pub fn c_compare(ctx: &Shared, a: &[u8], b: &[u8], n: u32) -> f64 {
        let img = |p: &[u8]| ElpipsImage { data: p.as_ptr().cast(), width: n, height: n, stride_bytes: 0, format: ELPIPS_PIXEL_FORMAT_RGB8, transfer: ELPIPS_TRANSFER_SRGB };
        let mut r = ElpipsResult::default();
        // SAFETY: a live context, valid images and result.
        assert_eq!(unsafe { elpips_compare(ctx.0, &img(a), &img(b), &mut r) }, ELPIPS_OK);
        r.distance
    }
}

/// Re-seals an `elpips check --summary` JSON after a test edited it: its `digest` becomes the
/// sha256 of the compact serialisation (keys sorted, as serde_json writes them) without the
/// digest, the rule of `src/bin/elpips/check/summary.rs`. Edits that only the digest would
/// catch then reach the other checks.
pub fn seal_summary(v: &mut serde_json::Value) {
    v.as_object_mut().expect("a summary is an object").remove("digest");
    let digest = elpips::integrity::sha256_hex(serde_json::to_string(v).unwrap().as_bytes());
    v["digest"] = digest.into();
}
