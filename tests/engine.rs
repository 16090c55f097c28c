//! Library-level behaviour of the estimator: reproducibility, batching independence, stopping.

mod common;

use common::*;
use elpips::{MetricKind, MetricOptions, SamplerKind, Sampling};

const EX_REF: &str = "lpips/imgs/ex_ref.png";
const EX_P0: &str = "lpips/imgs/ex_p0.png";
const EX_P1: &str = "lpips/imgs/ex_p1.png";

#[test]
fn samples_do_not_depend_on_batching() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    let mut m = metric_with(MetricOptions { seed: 5, ..Default::default() });
    let levels = m.scale_levels(a.height(), a.width());
    let together = m.evaluate_samples(&a, &b, levels, 0..6).unwrap();
    for i in 0..6u64 {
        let alone = m.evaluate_samples(&a, &b, levels, i..i + 1).unwrap();
        assert!((alone[0] - together[i as usize]).abs() <= 1e-6 * together[i as usize], "sample {i}: {} vs {}", alone[0], together[i as usize]);
    }
    // Different samples do differ.
    assert!(together.windows(2).any(|w| w[0] != w[1]));
}

#[test]
fn same_seed_same_result_and_symmetry() {
    let (a, b) = (load(EX_REF), load(EX_P1));
    let opts = MetricOptions { sampling: Sampling::Fixed(5), seed: 11, ..Default::default() };
    let first = metric_with(opts.clone()).compare(&a, &b).unwrap();
    let again = metric_with(opts.clone()).compare(&a, &b).unwrap();
    assert_eq!(first, again);
    // The distance is symmetric sample by sample, so swapping the images changes nothing material.
    let swapped = metric_with(opts).compare(&b, &a).unwrap();
    assert!((first.distance - swapped.distance).abs() < 1e-6 * first.distance);
}

#[test]
fn adaptive_sampling_stops_when_precise_enough() {
    let (a, b) = (load(EX_REF), load(EX_P1));
    let loose = Sampling::Adaptive { abs_error: 1.0, rel_error: 10.0, max_samples: 64, min_samples: 4 };
    let mut rounds = 0;
    let e = metric_with(MetricOptions { sampling: loose, ..Default::default() })
        .compare_with_progress(&a, &b, &mut |_| rounds += 1)
        .unwrap();
    assert!(e.converged && e.samples < 64, "{e:?}");
    assert!(rounds >= 1);
    let strict = Sampling::Adaptive { abs_error: 1e-9, rel_error: 1e-9, max_samples: 6, min_samples: 2 };
    let e = metric_with(MetricOptions { sampling: strict, ..Default::default() }).compare(&a, &b).unwrap();
    assert!(!e.converged && e.samples == 6, "{e:?}");
    assert!(e.ci95 > 0.0 && (e.ci95 - elpips::estimate::Z95 * e.std_error).abs() < 1e-12);
}

#[test]
fn lpips_is_symmetric_and_zero_on_identity() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    for kind in [MetricKind::LpipsVgg, MetricKind::LpipsAlex] {
        let mut m = metric(kind);
        let ab = m.compare(&a, &b).unwrap().distance;
        let ba = m.compare(&b, &a).unwrap().distance;
        assert!((ab - ba).abs() < 1e-6 * ab, "{kind}: {ab} vs {ba}");
        assert_eq!(m.compare(&a, &a).unwrap().distance, 0.0);
    }
}

#[test]
fn too_few_samples_for_an_error_estimate_are_refused() {
    let (a, b) = (load("elpips/inputs/cat.png"), load("elpips/inputs/dog.png"));
    let stratified = MetricOptions { sampling: Sampling::Fixed(11), sampler: SamplerKind::Stratified, ..Default::default() };
    let err = metric_with(stratified).compare(&a, &b).unwrap_err().to_string();
    assert!(err.contains("4 scale levels") && err.contains("at least 12 samples"), "{err}");
    let single = MetricOptions { sampling: Sampling::Fixed(1), ..Default::default() };
    assert!(metric_with(single).compare(&a, &b).unwrap_err().to_string().contains("at least 2 samples"));
}
