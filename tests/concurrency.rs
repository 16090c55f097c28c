//! Threads: many threads with their own metrics, and many threads sharing one C context, give
//! results bit-identical to a serial run. (The memory soak is in `soak.rs`: RSS is per process,
//! so it must not share one with these.)

mod common;

use std::sync::Arc;

use elpips::capi::*;
use common::c::{c_compare, c_context};
use elpips::{Image, MetricKind, MetricOptions, Sampling};

const THREADS: usize = 4;

/// A deterministic 40x40 pattern, different per `k`.
fn pattern(k: u32, n: u32) -> Vec<u8> {
    (0..n * n * 3).map(|i| ((i / 3 % n) * 7 + (i / 3 / n) * 5 + (i % 3) * 40 + k * 31) as u8 ^ (k as u8).wrapping_mul(13)).collect()
}

fn pairs(n: u32) -> Vec<(Image, Image)> {
    (0..6).map(|k| (Image::from_rgb8(n, n, &pattern(0, n)).unwrap(), Image::from_rgb8(n, n, &pattern(k + 1, n)).unwrap())).collect()
}

fn options(kind: MetricKind) -> MetricOptions {
    let mut o = MetricOptions { metric: kind, ..Default::default() };
    o.runtime.threads = 1;
    if kind.is_ensemble() {
        o.sampling = Sampling::Fixed(4);
        o.seed = 7;
    }
    o
}

/// Each thread loads its own metric and compares every pair, in its own order: the distances
/// equal the serial run's exactly (same bits), for LPIPS and for E-LPIPS (same seed, same draws).
#[test]
fn threads_with_their_own_metrics_equal_a_serial_run() {
    for (kind, n) in [(MetricKind::LpipsAlex, 40), (MetricKind::ElpipsVgg, 32)] {
        let pairs = Arc::new(pairs(n));
        let mut serial = common::metric_with(options(kind));
        let expected: Vec<u64> = pairs.iter().map(|(a, b)| serial.compare(a, b).unwrap().distance.to_bits()).collect();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let pairs = Arc::clone(&pairs);
                std::thread::spawn(move || {
                    let mut m = common::metric_with(options(kind));
                    let mut got = vec![0u64; pairs.len()];
                    for i in 0..pairs.len() {
                        let j = (i + t) % pairs.len();
                        got[j] = m.compare(&pairs[j].0, &pairs[j].1).unwrap().distance.to_bits();
                    }
                    got
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), expected, "{kind}: a thread's distances differ from the serial run");
        }
    }
}


/// One C context shared by many threads, plus one context per thread: every thread's figures
/// equal those of one thread alone.
#[test]
fn a_shared_c_context_and_per_thread_contexts_equal_a_serial_run() {
    for (metric, n) in [(ELPIPS_METRIC_LPIPS_ALEX, 40u32), (ELPIPS_METRIC_ELPIPS_VGG, 32)] {
        let images: Arc<Vec<Vec<u8>>> = Arc::new((0..5).map(|k| pattern(k, n)).collect());
        let shared = Arc::new(c_context(metric));
        let expected: Vec<u64> = (1..5).map(|k| c_compare(&shared, &images[0], &images[k], n).to_bits()).collect();
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (images, shared) = (Arc::clone(&images), Arc::clone(&shared));
                std::thread::spawn(move || {
                    let own = c_context(metric);
                    let mut got = Vec::new();
                    for round in 0..3 {
                        for k in 1..5 {
                            let k = (k + t + round) % 4 + 1;
                            got.push((k, c_compare(&shared, &images[0], &images[k], n).to_bits()));
                            got.push((k, c_compare(&own, &images[0], &images[k], n).to_bits()));
                        }
                    }
                    // SAFETY: ours, freed once, no other user.
                    unsafe { elpips_context_free(own.0) };
                    got
                })
            })
            .collect();
        for h in handles {
            for (k, bits) in h.join().unwrap() {
                assert_eq!(bits, expected[k - 1], "metric {metric}, pair {k}: differs from the serial run");
            }
        }
        // SAFETY: every thread has finished.
        unsafe { elpips_context_free(shared.0) };
    }
}
