//! Two-stream estimates on the real network (`MetricOptions::cheap_draws`): the cheap stream is
//! the full network's taps 0 and 1 of the same draw, the estimate agrees with one-stream ones
//! within the combined error, it is seeded and reproducible, and options it cannot take are
//! refused. The estimator's statistics (no bias, coverage, the gate's error rate) are tested on
//! the stand-in network in `src/estimate/multi_fidelity.rs`.

mod common;

use common::*;
use elpips::ensemble::Draw;
use elpips::{Gate, MetricKind, MetricOptions, SamplerKind, Sampling, Side};

const EX_REF: &str = "lpips/imgs/ex_ref.png";
const EX_P0: &str = "lpips/imgs/ex_p0.png";
const EX_P1: &str = "lpips/imgs/ex_p1.png";

fn two_stream(seed: u64, samples: u32, cheap_draws: u32, sampler: SamplerKind) -> MetricOptions {
    MetricOptions { seed, sampling: Sampling::Fixed(samples), sampler, cheap_draws, ..Default::default() }
}

#[test]
fn the_cheap_stream_is_the_full_networks_first_two_taps_of_the_same_draw() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    let mut m = metric_with(MetricOptions::default());
    let mut draws: Vec<Draw> = (0..6).map(|i| Draw::iid(5, i, 1)).collect();
    let cheap = m.cheap_values(&a, &b, &draws).unwrap();
    // Read from copies: the draws' streams are where they were, so the full pass sees the same masks.
    let taps = m.evaluate_draws_taps(&a, &b, &mut draws).unwrap();
    for (x, t) in cheap.iter().zip(&taps) {
        let want = t[0] + t[1];
        assert!((x - want).abs() <= 1e-6 * want.abs(), "cheap {x} against taps 0 + 1 {want}");
        assert!(*x < 0.9 * t.iter().sum::<f64>(), "taps 0 and 1 are a share of the distance");
    }
    // Different draws give different values (the stream sees the transform and mask 0).
    assert!(cheap.windows(2).any(|w| w[0] != w[1]));
}

#[test]
fn two_stream_estimates_agree_with_one_stream_within_the_combined_error() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    for sampler in [SamplerKind::Iid, SamplerKind::Control] {
        let one = metric_with(two_stream(11, 96, 0, SamplerKind::Iid)).compare(&a, &b).unwrap();
        let two = metric_with(two_stream(12, 48, 3, sampler)).compare(&a, &b).unwrap();
        let z = (two.distance - one.distance) / one.std_error.hypot(two.std_error);
        assert!(z.abs() < 3.0, "{sampler:?}: two streams {two:?} against one {one:?} (z = {z:.2})");
        assert_eq!(two.samples, 48, "samples count full samples");
        // Same seed, same answer, bit for bit.
        let again = metric_with(two_stream(12, 48, 3, sampler)).compare(&a, &b).unwrap();
        assert_eq!((again.distance, again.std_error), (two.distance, two.std_error));
    }
}

#[test]
fn the_gate_and_several_candidates_take_two_streams() {
    let (a, b, c) = (load(EX_REF), load(EX_P0), load(EX_P1));
    let mut m = metric_with(MetricOptions { seed: 3, cheap_draws: 3, sampler: SamplerKind::Iid, ..Default::default() });
    assert!(m.two_streams(64, 64));
    let loose = m.decide(&a, &b, &Gate::new(1.0)).unwrap();
    assert_eq!((loose.verdict, loose.looks), (Side::Below, 1), "{loose:?}");
    let strict = m.decide(&a, &b, &Gate::new(0.001)).unwrap();
    assert_eq!(strict.verdict, Side::Above, "{strict:?}");
    // Common random numbers: every candidate sees the same blocks; each distance is the one
    // its own two-stream comparison with the same seed gives.
    m.set_sampling(Sampling::Fixed(24)).unwrap();
    let many = m.compare_many(&a, &[&b, &c]).unwrap();
    let alone = m.compare(&a, &c).unwrap();
    assert!((many.distances[1].distance - alone.distance).abs() <= 1e-9 * alone.distance, "{many:?} against {alone:?}");
    let d = many.difference(0, 1).unwrap();
    assert!(d.std_error < many.distances[0].std_error.hypot(many.distances[1].std_error), "paired differences share the draws");
}

#[test]
fn pairs_whose_samples_tile_take_one_stream() {
    let (a, b) = (load(EX_REF), load(EX_P0));
    // A tile size makes this pair's samples tile: the cheap stream would run whole inputs there.
    let tiled = |cheap_draws| MetricOptions { seed: 2, sampling: Sampling::Fixed(6), tile_size: Some(32), cheap_draws, ..Default::default() };
    let mut m = metric_with(tiled(3));
    assert!(!m.two_streams(64, 64));
    let two = m.compare(&a, &b).unwrap();
    let one = metric_with(tiled(0)).compare(&a, &b).unwrap();
    assert_eq!((two.distance, two.std_error, two.samples), (one.distance, one.std_error, one.samples));
}

#[test]
fn options_two_streams_cannot_take_are_refused() {
    let refused = |o: MetricOptions, want: &str| {
        let e = elpips::Metric::new(o).err().expect("refused").to_string();
        assert!(e.contains(want), "{e}");
    };
    refused(MetricOptions { cheap_draws: 3, metric: MetricKind::LpipsVgg, ..Default::default() }, "elpips-vgg only");
    refused(MetricOptions { cheap_draws: 3, sampler: SamplerKind::Stratified, ..Default::default() }, "not stratified");
    refused(MetricOptions { cheap_draws: 256, ..Default::default() }, "0 to 255");
}
