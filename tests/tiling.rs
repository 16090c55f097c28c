//! E-LPIPS tiled per sample: a sample's transformed pair run in tiles (feature model, its
//! dropout masks cut from the sample's one draw) gives the untiled fused model's distance and
//! heatmap to float32 rounding, at scale levels 1 and 2, under flips and transposes, for one
//! candidate and for several sharing the reference's pass. Small tiles on a small pair, so
//! every tile kind (cut on the left/top, on the right/bottom, both) occurs.

mod common;

use common::*;
use elpips::ensemble::{sample_rng, Draw, Flip, Transform};
use elpips::{Image, MetricKind, MetricOptions, Sampling};

/// 64-pixel cores: 5 x 5 tiles at level 1 (295 x 263 network input), 3 x 3 at level 2.
const TILE: u32 = 64;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

/// A 288x256 crop of the cat and dog pair (natural content, not a flat field).
fn pair() -> (Image, Image) {
    let (w, h) = (288usize, 256usize);
    let crop = |img: Image| {
        let iw = img.width() as usize;
        let mut data = Vec::with_capacity(3 * w * h);
        for ch in 0..3 {
            for y in 0..h {
                data.extend_from_slice(&img.channel(ch)[y * iw + 100..y * iw + 100 + w]);
            }
        }
        Image::from_planar(w as u32, h as u32, data).unwrap()
    };
    (crop(load("elpips/inputs/cat.png")), crop(load("elpips/inputs/dog.png")))
}

fn elpips(tile: u32, options: MetricOptions) -> elpips::Metric {
    metric_with(MetricOptions { tile_size: Some(tile), ..options })
}

/// Seeded draws with chosen geometry: levels 1 and 2, every flip, both transposes.
fn draws() -> Vec<Draw> {
    let geometry = [(1, Flip::None, false), (1, Flip::Both, true), (1, Flip::X, false), (2, Flip::Y, true), (2, Flip::None, false)];
    geometry
        .iter()
        .enumerate()
        .map(|(i, &(scale, flip, transpose))| {
            let mut rng = sample_rng(11, i as u64);
            let mut transform = Transform::sample(&mut rng, 2);
            transform.scale = scale;
            transform.scale_offset = (scale - 1, 0);
            transform.flip = flip;
            transform.transpose = transpose;
            Draw { stratum: scale - 1, transform, rng }
        })
        .collect()
}

#[test]
fn tiled_samples_give_the_untiled_distances() {
    let (a, b) = pair();
    let (mut whole, mut tiled) = (elpips(0, MetricOptions::default()), elpips(TILE, MetricOptions::default()));
    let (mut dw, mut dt) = (draws(), draws());
    let want = whole.evaluate_draws(&a, &b, &mut dw).unwrap();
    let got = tiled.evaluate_draws(&a, &b, &mut dt).unwrap();
    for (i, (x, y)) in got.iter().zip(&want).enumerate() {
        assert!(rel(*x, *y) < 1e-5, "draw {i} ({:?}): tiled {x} vs untiled {y}", dt[i].transform);
    }
    // The samples differ: geometry and dropout are really applied.
    assert!(want.windows(2).any(|w| rel(w[0], w[1]) > 1e-3), "{want:?}");
    // Each stream is left where the untiled path leaves it.
    for (x, y) in dt.iter_mut().zip(dw.iter_mut()) {
        use rand::RngCore;
        assert_eq!(x.rng.next_u64(), y.rng.next_u64());
    }
}

#[test]
fn tiled_samples_with_several_candidates_match_separate_untiled_runs() {
    let (a, b) = pair();
    let c = Image::from_planar(a.width(), a.height(), a.data().iter().map(|v| (v * 0.9 + 0.05).min(1.0)).collect()).unwrap();
    let mut tiled = elpips(TILE, MetricOptions::default());
    let mut whole = elpips(0, MetricOptions::default());
    // One level-1 and one level-2 draw keep this test short.
    let d: Vec<Draw> = draws().into_iter().step_by(3).collect();
    let many = tiled.evaluate_draws_many(&a, &[&b, &c], &mut d.clone()).unwrap();
    for (k, cand) in [&b, &c].into_iter().enumerate() {
        let alone = whole.evaluate_draws(&a, cand, &mut d.clone()).unwrap();
        for (x, y) in many[k].iter().zip(&alone) {
            assert!(rel(*x, *y) < 1e-5, "candidate {k}: tiled {x} vs untiled {y}");
        }
    }
}

#[test]
fn a_tiled_elpips_heatmap_is_the_untiled_one() {
    let (a, b) = pair();
    let options = MetricOptions { metric: MetricKind::ElpipsVgg, sampling: Sampling::Fixed(3), seed: 5, scale_levels: Some(2), ..Default::default() };
    let (e_whole, m_whole) = elpips(0, options.clone()).compare_with_heatmap(&a, &b, &mut |_| {}).unwrap();
    let mut tiled = elpips(TILE, options);
    let (e_tiled, m_tiled) = tiled.compare_with_heatmap(&a, &b, &mut |_| {}).unwrap();
    assert!(rel(e_tiled.distance, e_whole.distance) < 1e-5, "tiled {} vs untiled {}", e_tiled.distance, e_whole.distance);
    let peak = m_whole.data().iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    assert!(peak > 0.0);
    for (i, (t, u)) in m_tiled.data().iter().zip(m_whole.data()).enumerate() {
        assert!((t - u).abs() <= 1e-5 * peak, "pixel {i}: tiled {t} vs untiled {u}");
    }
}

/// The fused model keeps ONNX Runtime's CPU arena for pairs whose samples never tile and frees
/// its buffers per run for pairs that do (reopened when a pair wants the other kind): one metric
/// going from one kind to the other and back gives the same distances bit for bit.
#[test]
fn the_fused_sessions_buffers_follow_the_pair_and_never_change_a_distance() {
    let (a, b) = pair();
    let mut metric = metric_with(MetricOptions::default());
    let transforms: Vec<Transform> = draws().into_iter().map(|d| d.transform).collect();
    let run = |m: &mut elpips::Metric| -> Vec<f64> {
        transforms.iter().enumerate().map(|(i, t)| m.evaluate(&a, &b, Some(t), Some((11, i as u64))).unwrap()).collect()
    };
    let arena = run(&mut metric); // 288x256: no sample tiles
    metric.set_tile_size(Some(TILE)); // every sample tiles: buffers freed per run
    let lean = run(&mut metric);
    metric.set_tile_size(None);
    let again = run(&mut metric);
    assert_eq!(arena, lean);
    assert_eq!(arena, again);
    assert!(arena.windows(2).any(|w| rel(w[0], w[1]) > 1e-3), "{arena:?}");
}
