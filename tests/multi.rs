//! Several candidates against one reference with common random numbers, on the real network.

mod common;

use common::*;
use elpips::{MetricKind, MetricOptions, Sampling};

const EX_REF: &str = "lpips/imgs/ex_ref.png";
const EX_P0: &str = "lpips/imgs/ex_p0.png";
const EX_P1: &str = "lpips/imgs/ex_p1.png";

#[test]
fn each_distance_equals_a_single_compare_with_the_same_draws() {
    let (r, p0, p1) = (load(EX_REF), load(EX_P0), load(EX_P1));
    let opts = MetricOptions { seed: 7, sampling: Sampling::Fixed(12), ..Default::default() };
    let mut m = metric_with(opts.clone());
    let many = m.compare_many(&r, &[&p0, &p1, &r]).unwrap();
    assert_eq!(many.samples, 12);
    for (k, cand) in [&p0, &p1].into_iter().enumerate() {
        let single = metric_with(opts.clone()).compare(&r, cand).unwrap();
        assert!((many.distances[k].distance - single.distance).abs() <= 1e-12, "{k}: {many:?} vs {single:?}");
        assert!((many.distances[k].std_error - single.std_error).abs() <= 1e-12);
    }
    assert_eq!(many.distances[2].distance, 0.0);
    // The paired difference's error is below what independent estimates would give.
    let d = many.difference(0, 1).unwrap();
    assert!((d.difference - (many.distances[0].distance - many.distances[1].distance)).abs() < 1e-12);
    assert!(d.std_error < many.distances[0].std_error.hypot(many.distances[1].std_error), "{d:?}");
    assert_eq!(many.ranking()[0], 2);
}

#[test]
fn lpips_compares_many_exactly() {
    let (r, p0, p1) = (load(EX_REF), load(EX_P0), load(EX_P1));
    let mut m = metric(MetricKind::LpipsAlex);
    let many = m.compare_many(&r, &[&p0, &p1]).unwrap();
    let single = m.compare(&r, &p1).unwrap();
    assert_eq!(many.distances[1], single);
    let d = many.difference(0, 1).unwrap();
    assert_eq!((d.std_error, d.ci95), (0.0, 0.0));
    assert!(m.compare_many(&r, &[]).unwrap_err().to_string().contains("no candidates"));
}
