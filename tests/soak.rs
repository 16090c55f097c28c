//! A soak of many comparisons through the C ABI keeps memory flat: RSS sampled over the run
//! must not grow past a bound after a warm-up. The long soak (thousands of comparisons) runs in
//! `make test-long`; a short one in CI. Its own test binary: RSS is per process, and the two soaks
//! take a lock so they never overlap.

use std::sync::Mutex;

use elpips::capi::*;

mod common;
use common::c::{c_compare, c_context};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A deterministic 40x40 pattern, different per `k`.
fn pattern(k: u32, n: u32) -> Vec<u8> {
    (0..n * n * 3).map(|i| ((i / 3 % n) * 7 + (i / 3 / n) * 5 + (i % 3) * 40 + k * 31) as u8 ^ (k as u8).wrapping_mul(13)).collect()
}


/// Resident memory in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// `compares` LPIPS-AlexNet comparisons of tiny images through the C ABI (the path a host
/// program takes), with a context created and freed every 100 and a failing call every 10;
/// RSS sampled every 100 after a warm-up. Growth past the warm-up must stay under `bound`.
fn soak(compares: usize, bound: u64) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let n = 32u32;
    let images: Vec<Vec<u8>> = (0..8).map(|k| pattern(k, n)).collect();
    let mut ctx = c_context(ELPIPS_METRIC_LPIPS_ALEX);
    // ONNX Runtime grows its arenas over the first few hundred runs; measure after that.
    let warmup = (compares / 10).max(200);
    let mut samples = Vec::new();
    let mut baseline = 0;
    for i in 0..compares {
        if i % 100 == 99 {
            // SAFETY: ours, no other user.
            unsafe { elpips_context_free(ctx.0) };
            ctx = c_context(ELPIPS_METRIC_LPIPS_ALEX);
        }
        let d = c_compare(&ctx, &images[i % 8], &images[(i + 1 + i / 8) % 8], n);
        assert!(d.is_finite());
        if i % 10 == 0 {
            let bad = ElpipsImage { data: images[0].as_ptr().cast(), width: n, height: n, stride_bytes: 1, format: 0, transfer: 0 };
            let mut r = ElpipsResult::default();
            // SAFETY: valid pointers; the stride is what fails.
            assert_eq!(unsafe { elpips_compare(ctx.0, &bad, &bad, &mut r) }, ELPIPS_STATUS_INVALID_IMAGE);
        }
        if i == warmup {
            baseline = rss();
        }
        if i > warmup && i % 100 == 0 {
            samples.push(rss());
        }
    }
    // SAFETY: ours.
    unsafe { elpips_context_free(ctx.0) };
    let last = rss();
    let peak = samples.iter().copied().max().unwrap_or(last).max(last);
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "soak: {compares} compares, RSS after warm-up {:.1} MiB, peak {:.1} MiB, end {:.1} MiB (growth {:.1} MiB, bound {:.1} MiB)",
        mb(baseline),
        mb(peak),
        mb(last),
        mb(last.saturating_sub(baseline)),
        mb(bound)
    );
    assert!(last.saturating_sub(baseline) < bound, "memory grew {:.1} MiB over {compares} compares", mb(last - baseline));
}

#[test]
fn short_soak_keeps_memory_flat() {
    soak(600, 24 << 20);
}

/// `make test-long`: thousands of comparisons.
#[test]
#[ignore = "long soak: run by `make test-long`"]
fn long_soak_keeps_memory_flat() {
    soak(5000, 24 << 20);
}
