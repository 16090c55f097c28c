//! Gradients of the distances with respect to the candidate, checked against central finite
//! differences of the same networks.
//!
//! The networks are piecewise smooth (ReLU kinks, max-pool switches, the unit normalisation near
//! zero features) and run in f32, so the check is built to see the derivative, not the kinks:
//! - directional derivatives along random directions (every pixel moves), central differences
//!   with a small step `H` = 3e-5 (1/100 of an 8-bit step), so few kinks lie within +-H;
//! - candidates close to the reference (10% of the way to a distorted image): the distance is
//!   ~2e-3, so its f32 rounding (~2e-10) is ~1e-5 of the difference quotient;
//! - tolerance |fd - <g, v>| <= 3% |fd| + 5% of the typical directional derivative
//!   (`|g| sd(v)`, the standard deviation of `<g, v>` over random `v`). Measured errors are
//!   mostly 0.5-3% of |fd|; a wrong factor, channel, padding or transposed kernel anywhere gives
//!   errors of the order of the typical derivative itself.
//! With larger steps (1e-3) the quotient wanders by 10-50% on LPIPS-VGG: max-pool switches.

mod common;

use elpips::ensemble::{sample_rng, Flip, Transform};
use elpips::{Gradient, GradientOptions, Image, MetricKind, MetricOptions, Sampling};
use rand::Rng;

const H: f32 = 3e-5;
const REL_TOL: f64 = 3e-2;
const TYPICAL_TOL: f64 = 0.05;

/// `reference` moved a fraction `t` of the way to `other`.
fn blend(reference: &Image, other: &Image, t: f32) -> Image {
    let data = reference.data().iter().zip(other.data()).map(|(&a, &b)| a + t * (b - a)).collect();
    Image::from_planar(reference.width(), reference.height(), data).unwrap()
}

/// A `w x h` crop of an upstream image (odd sizes exercise the floor pools' dropped rows).
fn crop(rel: &str, x0: usize, y0: usize, w: usize, h: usize) -> Image {
    let img = common::load(rel);
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    assert!(x0 + w <= iw && y0 + h <= ih);
    let data: Vec<f32> =
        (0..3).flat_map(|c| (0..h).flat_map(move |y| (0..w).map(move |x| (c, y, x)))).map(|(c, y, x)| img.data()[c * iw * ih + (y0 + y) * iw + x0 + x]).collect();
    Image::from_planar(w as u32, h as u32, data).unwrap()
}

fn gradient(kind: MetricKind, seed: u64) -> Gradient {
    Gradient::new(GradientOptions { metric: kind, seed, ..Default::default() })
        .unwrap_or_else(|e| panic!("cannot load the gradient model ({e}); run `make setup` first"))
}

fn shifted(img: &Image, v: &[f32], t: f32) -> Image {
    let data = img.data().iter().zip(v).map(|(&a, &b)| a + t * b).collect();
    Image::from_planar(img.width(), img.height(), data).unwrap()
}

/// Checks `<grad, v>` against the central difference of `f` along random directions `v`.
fn check_directional(what: &str, candidate: &Image, grad: &[f32], seed: u64, mut f: impl FnMut(&Image) -> f64) {
    let mut rng = sample_rng(seed, 99);
    // sd of <g, v> for v uniform in [-1, 1]^n: |g| / sqrt(3).
    let typical = grad.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt() / 3f64.sqrt();
    assert!(typical > 0.0, "{what}: zero gradient");
    for k in 0..3 {
        let v: Vec<f32> = (0..grad.len()).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
        let analytic: f64 = grad.iter().zip(&v).map(|(&g, &d)| g as f64 * d as f64).sum();
        let fd = (f(&shifted(candidate, &v, H)) - f(&shifted(candidate, &v, -H))) / (2.0 * H as f64);
        let err = (fd - analytic).abs();
        eprintln!("{what} direction {k}: finite difference {fd:.6e}, gradient {analytic:.6e}, error {err:.2e} (typical {typical:.2e})");
        assert!(err <= REL_TOL * fd.abs() + TYPICAL_TOL * typical, "{what} direction {k}: finite difference {fd:e} vs gradient {analytic:e}");
    }
}

#[test]
fn lpips_vgg_gradient_matches_finite_differences() {
    let r = crop("lpips/imgs/ex_ref.png", 5, 7, 51, 49);
    let c = blend(&r, &crop("lpips/imgs/ex_p0.png", 5, 7, 51, 49), 0.1);
    let mut grad = gradient(MetricKind::LpipsVgg, 0);
    let dg = grad.network(&r, &c).unwrap();
    // The gradient model's forward pass is the metric.
    let mut lpips = common::metric(MetricKind::LpipsVgg);
    let d = lpips.compare(&r, &c).unwrap().distance;
    assert!((dg.distance - d).abs() <= 1e-5 * d, "{} vs {d}", dg.distance);
    check_directional("lpips-vgg", &c, &dg.gradient, 1, |x| grad.network(&r, x).unwrap().distance);
}

#[test]
fn elpips_sample_gradient_matches_finite_differences() {
    // A transform exercising every step: scale 2 with a pad offset, offsets, flip, transpose,
    // channel permutation, colour; dropout from stream (5, 3).
    let t = Transform {
        scale: 2,
        scale_offset: (1, 0),
        offset: (3, 6),
        flip: Flip::Y,
        transpose: true,
        permutation: [2, 0, 1],
        color: [0.9, 0.4, 0.7],
    };
    let r = crop("lpips/imgs/ex_ref.png", 2, 3, 61, 57);
    let c = blend(&r, &crop("lpips/imgs/ex_p1.png", 2, 3, 61, 57), 0.1);
    let mut grad = gradient(MetricKind::ElpipsVgg, 0);
    let dg = grad.sample(&r, &c, &t, Some((5, 3))).unwrap();
    let mut metric = common::metric(MetricKind::ElpipsVgg);
    let d = metric.evaluate(&r, &c, Some(&t), Some((5, 3))).unwrap();
    assert!((dg.distance - d).abs() <= 1e-5 * d, "{} vs {d}", dg.distance);
    check_directional("elpips-vgg sample", &c, &dg.gradient, 2, |x| grad.sample(&r, x, &t, Some((5, 3))).unwrap().distance);
}

#[test]
fn elpips_network_gradient_matches_finite_differences() {
    let r = crop("lpips/imgs/ex_ref.png", 3, 0, 49, 50);
    let c = blend(&r, &crop("lpips/imgs/ex_p0.png", 3, 0, 49, 50), 0.1);
    let mut grad = gradient(MetricKind::ElpipsVgg, 0);
    let dg = grad.network(&r, &c).unwrap();
    check_directional("elpips-vgg network", &c, &dg.gradient, 3, |x| grad.network(&r, x).unwrap().distance);
}

#[test]
fn elpips_mean_over_samples_is_the_metrics_estimate_and_its_gradient() {
    // 40x40 with 2 scale levels: samples of both sizes, batched per size.
    let r = crop("lpips/imgs/ex_ref.png", 10, 10, 40, 40);
    let c = blend(&r, &crop("lpips/imgs/ex_p1.png", 10, 10, 40, 40), 0.1);
    let seed = 17;
    let mut grad = Gradient::new(GradientOptions { seed, scale_levels: Some(2), ..Default::default() }).unwrap();
    let dg = grad.samples(&r, &c, 0..6).unwrap();
    let mut metric =
        common::metric_with(MetricOptions { seed, scale_levels: Some(2), sampling: Sampling::Fixed(6), ..Default::default() });
    let each = metric.evaluate_samples(&r, &c, 2, 0..6).unwrap();
    let mean = each.iter().sum::<f64>() / 6.0;
    assert!((dg.distance - mean).abs() <= 1e-5 * mean, "{} vs {mean}", dg.distance);
    assert!((metric.compare(&r, &c).unwrap().distance - mean).abs() <= 1e-9 * mean);
    check_directional("elpips-vgg 6-sample mean", &c, &dg.gradient, 4, |x| grad.samples(&r, x, 0..6).unwrap().distance);
}

#[test]
fn gradient_refuses_what_it_cannot_do() {
    let e = Gradient::new(GradientOptions { metric: MetricKind::LpipsAlex, ..Default::default() }).err().unwrap();
    assert!(e.to_string().contains("lpips-alex"), "{e}");
    let r = crop("lpips/imgs/ex_ref.png", 0, 0, 20, 20);
    let c = blend(&r, &crop("lpips/imgs/ex_p0.png", 0, 0, 20, 20), 0.1);
    let mut lpips = gradient(MetricKind::LpipsVgg, 0);
    assert!(lpips.samples(&r, &c, 0..2).is_err());
    assert!(lpips.sample(&r, &c, &Transform::neutral(), None).is_err());
    let small = crop("lpips/imgs/ex_ref.png", 0, 0, 15, 20);
    assert!(matches!(lpips.network(&small, &small), Err(elpips::Error::ImageTooSmall { .. })));
    let mut el = gradient(MetricKind::ElpipsVgg, 0);
    assert!(el.samples(&r, &c, 3..3).is_err());
    assert!(matches!(el.network(&r, &small), Err(elpips::Error::SizeMismatch { .. })));
}
