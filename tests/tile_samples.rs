//! Tile-sampled E-LPIPS draws on the real network (docs/estimator.md, "Tile-sampled draws"):
//! a draw's tiles, each run as a sample that chose it would run it, add up to the whole draw's
//! distance (so each sample's part over its probability is unbiased for it); tile-sampled and
//! whole-image estimates of the same pairs agree within their combined error, a pair with a
//! small local defect among them; candidates compared together see the same draws and tiles;
//! seeded results do not depend on batching. Small crops with small tiles
//! (`SampleArea::Tiles`), so every draw tiles and the tests stay short; the opt-in rule
//! (`SampleArea::Auto`, `--tile-samples`) tiles draws above 0.3 Mpx only, which
//! `tile_sampled_reports_the_pairs_that_tile` checks.

mod common;

use common::*;
use elpips::ensemble::Draw;
use elpips::{Image, MetricOptions, SampleArea, SamplerKind, Sampling};

/// A `w x h` crop of an upstream image at `(x0, y0)`.
fn crop(rel: &str, x0: usize, y0: usize, w: usize, h: usize) -> Image {
    let img = load(rel);
    let iw = img.width() as usize;
    let mut data = Vec::with_capacity(3 * w * h);
    for ch in 0..3 {
        for y in 0..h {
            data.extend_from_slice(&img.channel(ch)[(y0 + y) * iw + x0..(y0 + y) * iw + x0 + w]);
        }
    }
    Image::from_planar(w as u32, h as u32, data).unwrap()
}

/// `img` with a `size x size` magenta blotch at `(x0, y0)`: a small local defect.
fn blotched(img: &Image, x0: usize, y0: usize, size: usize) -> Image {
    let w = img.width() as usize;
    let mut data = img.data().to_vec();
    let plane = w * img.height() as usize;
    for (ch, v) in [0.9f32, 0.15, 0.8].into_iter().enumerate() {
        for y in y0..y0 + size {
            for x in x0..x0 + size {
                data[ch * plane + y * w + x] = v;
            }
        }
    }
    Image::from_planar(img.width(), img.height(), data).unwrap()
}

/// `img` with small pseudo-random noise (+-0.02 per channel) everywhere and a `size x size`
/// blotch at `(x0, y0)`: the pixels differ everywhere, the distance lies mostly in the blotch
/// (the stand-in's `Hidden` pattern on the real network).
fn noisy_blotched(img: &Image, x0: usize, y0: usize, size: usize) -> Image {
    let b = blotched(img, x0, y0, size);
    let data = b.data().iter().enumerate().map(|(i, v)| (v + 0.02 * (((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)).clamp(0.0, 1.0)).collect();
    Image::from_planar(img.width(), img.height(), data).unwrap()
}

/// Cores of 48 pixels: a 160x128 crop's level-1 input (167x135) is 4 x 3 tiles (each with
/// margins nearly the whole input: a correctness check, not a saving).
const CORE: u32 = 48;

fn tiles(options: MetricOptions) -> elpips::Metric {
    tiles_of(CORE, options)
}

fn tiles_of(core: u32, options: MetricOptions) -> elpips::Metric {
    metric_with(MetricOptions { sample_area: SampleArea::Tiles(core), ..options })
}

fn whole(options: MetricOptions) -> elpips::Metric {
    metric_with(MetricOptions { sample_area: SampleArea::Whole, ..options })
}

#[test]
fn a_draws_tiles_add_up_to_its_distance_and_a_sample_reports_one_over_its_probability() {
    // Wide enough (455 x 103 at level 1) that tiles far from the defect never see it; cores of
    // 96 pixels, so a level-1 draw has 5 x 2 tiles to run.
    let (a, b) = (crop("elpips/inputs/cat.png", 16, 100, 448, 96), crop("elpips/inputs/dog.png", 16, 100, 448, 96));
    let defect = blotched(&a, 60, 40, 6);
    let options = MetricOptions { scale_levels: Some(2), ..Default::default() };
    let (mut t, mut w) = (tiles_of(96, options.clone()), whole(options));
    for (cand, name) in [(&b, "dog"), (&defect, "defect")] {
        for i in 0..2 {
            // The second draw at level 1, where the tiles far from the defect never see it.
            let mut draw = Draw::iid(21, i, 2);
            if i == 1 {
                (draw.transform.scale, draw.transform.scale_offset) = (1, (0, 0));
            }
            let parts = t.tile_parts(&a, cand, &draw).unwrap();
            assert!(parts.len() > 1, "{name} draw {i}: {:?} tiles", parts.len());
            let q: f64 = parts.iter().map(|p| p.0).sum();
            assert!((q - 1.0).abs() < 1e-12, "{name} draw {i}: probabilities sum to {q}");
            let sum: f64 = parts.iter().map(|p| p.1).sum();
            let want = w.evaluate_draws(&a, cand, &mut [draw.clone()]).unwrap()[0];
            assert!((sum - want).abs() <= 1e-5 * want.abs(), "{name} draw {i}: tiles add to {sum}, the whole draw is {want}");
            // Tiles that see no difference have probability 0, and add nothing.
            for (k, (q, part)) in parts.iter().enumerate() {
                assert!(*q > 0.0 || *part == 0.0, "{name} draw {i} tile {k}: part {part} with probability 0");
            }
            if name == "defect" && draw.transform.scale == 1 {
                assert!(parts.iter().any(|p| p.0 == 0.0), "the defect is small: some tiles never see it");
            }
            // The sample itself: one tile's part over its probability, bit for bit.
            let got = t.evaluate_draws(&a, cand, &mut [draw.clone()]).unwrap()[0];
            assert!(parts.iter().any(|(q, part)| *q > 0.0 && (part / q).to_bits() == got.to_bits()), "{name} draw {i}: {got} is no tile's part / probability");
        }
    }
}

#[test]
fn tile_sampled_and_whole_estimates_agree_within_their_error() {
    // Three pairs, one of them a small local defect (36 of 20480 pixels). Different seeds for the
    // two estimates, so their errors are independent.
    let (a, b) = (crop("elpips/inputs/cat.png", 100, 40, 160, 128), crop("elpips/inputs/dog.png", 100, 40, 160, 128));
    let (c, d) = (crop("elpips/inputs/adv_teddy.png", 120, 120, 160, 128), crop("elpips/inputs/adv_reference.png", 120, 120, 160, 128));
    let defect = blotched(&a, 120, 90, 6);
    let hidden = noisy_blotched(&a, 120, 90, 6);
    let options = |seed| MetricOptions { sampling: Sampling::Fixed(32), sampler: SamplerKind::Iid, seed, ..Default::default() };
    for (reference, candidate, name) in [(&a, &b, "cat / dog"), (&c, &d, "teddy / reference"), (&a, &defect, "6x6 defect"), (&a, &hidden, "noise + 6x6 defect")] {
        let et = tiles(options(3)).compare(reference, candidate).unwrap();
        let ew = whole(options(4)).compare(reference, candidate).unwrap();
        let z = (et.distance - ew.distance) / et.std_error.hypot(ew.std_error);
        eprintln!("{name}: tiles {:.6} ± {:.6}, whole {:.6} ± {:.6}, z = {z:.2}", et.distance, et.ci95, ew.distance, ew.ci95);
        assert!(z.abs() < 3.0, "{name}: tiles {et:?} vs whole {ew:?} (z = {z:.2})");
        assert!(et.distance > 0.0 && et.std_error > 0.0);
    }
}

#[test]
fn the_pilot_sees_where_the_distance_lies_not_only_where_pixels_differ() {
    // Noise everywhere and a blotch: every tile sees differing pixels, but the distance map of
    // the pilot gives the tiles that hold most of the distance most of the probability.
    let a = crop("elpips/inputs/cat.png", 16, 100, 448, 96);
    let hidden = noisy_blotched(&a, 300, 40, 6);
    let mut t = tiles_of(96, MetricOptions { scale_levels: Some(2), ..Default::default() });
    let mut draw = Draw::iid(21, 1, 2);
    (draw.transform.scale, draw.transform.scale_offset) = (1, (0, 0));
    let parts = t.tile_parts(&a, &hidden, &draw).unwrap();
    assert!(parts.iter().all(|p| p.0 > 0.0), "every tile sees the noise");
    let total: f64 = parts.iter().map(|p| p.1).sum();
    // The probability that the sample lands where the distance is, against its share of tiles.
    let heavy: Vec<&(f64, f64)> = parts.iter().filter(|p| p.1 > 2.0 * total / parts.len() as f64).collect();
    let (q, share): (f64, f64) = (heavy.iter().map(|p| p.0).sum(), heavy.iter().map(|p| p.1).sum::<f64>() / total);
    eprintln!("{} of {} tiles hold {share:.2} of the distance, with probability {q:.2}", heavy.len(), parts.len());
    assert!(!heavy.is_empty() && heavy.len() < parts.len() / 2);
    // Pixel differences alone would give them about their share of the tiles (the noise is
    // the same everywhere).
    let tiles_share = heavy.len() as f64 / parts.len() as f64;
    assert!(q > 1.5 * tiles_share, "the tiles holding {share:.2} of the distance are chosen with probability {q:.2}, {tiles_share:.2} of the tiles");
}

#[test]
fn candidates_compared_together_see_the_same_draws_and_tiles() {
    let (a, b) = (crop("elpips/inputs/cat.png", 100, 40, 160, 128), crop("elpips/inputs/dog.png", 100, 40, 160, 128));
    let defect = blotched(&a, 120, 90, 6);
    let options = MetricOptions { sampling: Sampling::Fixed(6), sampler: SamplerKind::Iid, seed: 5, ..Default::default() };
    let m = tiles(options.clone()).compare_many(&a, &[&b, &defect, &b]).unwrap();
    // The same candidate twice: the same tiles, so the same values, and a difference of exactly 0.
    assert_eq!(m.distances[0], m.distances[2]);
    let same = m.difference(0, 2).unwrap();
    assert_eq!((same.difference, same.std_error), (0.0, 0.0));
    assert!(m.difference(0, 1).unwrap().difference > 0.0, "the dog is farther than a blotch");
    // Seeded: again, and in other batches (one draw at a time), the same bits.
    assert_eq!(tiles(options.clone()).compare_many(&a, &[&b, &defect, &b]).unwrap(), m);
    let mut t = tiles(options);
    let draws: Vec<Draw> = (0..6).map(|i| Draw::iid(5, i, t.scale_levels(a.height(), a.width()))).collect();
    let together = t.evaluate_draws(&a, &b, &mut draws.clone()).unwrap();
    for (i, d) in draws.iter().enumerate() {
        assert_eq!(t.evaluate_draws(&a, &b, &mut [d.clone()]).unwrap()[0].to_bits(), together[i].to_bits(), "draw {i}");
    }
}

#[test]
fn an_identical_pair_is_zero_without_a_network_run() {
    let a = crop("elpips/inputs/cat.png", 100, 40, 160, 128);
    let e = tiles(MetricOptions { sampling: Sampling::Fixed(4), ..Default::default() }).compare(&a, &a).unwrap();
    assert_eq!((e.distance, e.std_error), (0.0, 0.0));
}

#[test]
fn tile_sampled_reports_the_pairs_that_tile() {
    // Whole samples unless asked. The opt-in rule: draws above 0.3 Mpx (a 1080p pair's level 1)
    // are tile-sampled, a 512x512 pair's never; a given tile size turns it off.
    assert!(!metric_with(MetricOptions::default()).tile_sampled(1080, 1920));
    let auto = MetricOptions { sample_area: SampleArea::Auto, ..Default::default() };
    let m = metric_with(auto.clone());
    assert!(m.tile_sampled(1080, 1920));
    assert!(!m.tile_sampled(512, 512));
    assert!(!whole(MetricOptions::default()).tile_sampled(1080, 1920));
    assert!(!metric_with(MetricOptions { tile_size: Some(256), ..auto }).tile_sampled(1080, 1920));
    assert!(tiles(MetricOptions::default()).tile_sampled(128, 160));
}
