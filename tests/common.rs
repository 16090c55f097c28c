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
