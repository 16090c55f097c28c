//! Sequential gates on the real network: clear cases stop at the first look with the right
//! verdict, and the estimate is the one `compare` gives for the same samples.

mod common;

use common::*;
use elpips::{Gate, MetricKind, MetricOptions, Sampling, Side};

const EX_REF: &str = "lpips/imgs/ex_ref.png";
const EX_P0: &str = "lpips/imgs/ex_p0.png";

#[test]
fn clear_gates_stop_at_the_first_look() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    let mut m = metric_with(MetricOptions { seed: 3, ..Default::default() });
    let loose = m.decide(&a, &b, &Gate::new(1.0)).unwrap();
    assert_eq!((loose.verdict, loose.looks, loose.estimate.samples), (Side::Below, 1, Gate::DEFAULT_MIN_SAMPLES as u64), "{loose:?}");
    assert!(loose.upper <= 1.0 && loose.estimate_below);
    let strict = m.decide(&a, &b, &Gate::new(0.001)).unwrap();
    assert_eq!((strict.verdict, strict.looks), (Side::Above, 1), "{strict:?}");
    assert!(strict.lower > 0.001 && !strict.estimate_below);
    // Same seed, same draws: the gate's estimate is compare's.
    let fixed = metric_with(MetricOptions { seed: 3, sampling: Sampling::Fixed(Gate::DEFAULT_MIN_SAMPLES), ..Default::default() }).compare(&a, &b).unwrap();
    assert_eq!(fixed.distance, loose.estimate.distance);
    assert_eq!(fixed.std_error, loose.estimate.std_error);
}

#[test]
fn a_gate_at_the_distance_stays_undecided() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    // The threshold at the 24-sample estimate: the gate's last look sees exactly that mean.
    let mut m = metric_with(MetricOptions { seed: 4, sampling: Sampling::Fixed(24), ..Default::default() });
    let d = m.compare(&a, &b).unwrap().distance;
    let gate = Gate { threshold: d, max_samples: 24, min_samples: 16, ..Gate::new(0.0) };
    let mut batches = 0;
    let out = m.decide_with_progress(&a, &b, &gate, &mut |_| batches += 1).unwrap();
    assert_eq!((out.verdict, out.estimate.samples, out.looks_planned), (Side::Undecided, 24, 2), "{out:?}");
    assert!(out.lower <= d && d < out.upper && batches >= 2);
}

#[test]
fn lpips_decides_exactly() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    let mut m = metric(MetricKind::LpipsVgg);
    let d = m.compare(&a, &b).unwrap().distance;
    assert_eq!(m.decide(&a, &b, &Gate::new(d)).unwrap().verdict, Side::Below);
    let above = m.decide(&a, &b, &Gate::new(d * 0.999)).unwrap();
    assert_eq!((above.verdict, above.estimate.samples, above.lower, above.upper), (Side::Above, 1, d, d));
    let err = m.decide(&a, &b, &Gate { error_rate: 0.7, ..Gate::new(d) }).unwrap_err().to_string();
    assert!(err.contains("error rate"), "{err}");
}
