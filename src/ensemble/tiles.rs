//! The tile-sampling law: which tile of a draw's network input a tile-sampled E-LPIPS sample
//! evaluates, and with what probability.
//!
//! A draw's distance is a sum over the tiles of its network input: tile `k`'s part `Y_k` is
//! the sum over taps of the tap's map over the tile's core, divided by the tap's whole size.
//! A tile-sampled sample evaluates one tile `k`, chosen with probability `q_k`, and reports
//! `Y_k / q_k`; over the choice its expectation is `sum_k Y_k`, the draw's distance
//! (Horvitz-Thompson), so the E-LPIPS expectation is unchanged for any `q` that gives every
//! tile with `Y_k != 0` a positive probability.
//!
//! `q` comes from a [`Pilot`] of the pair: where, and how much, the images differ, and, where
//! the evaluator gives one, a coarse map of where the distance lies ([`Pilot::with_distance`]). A tile's
//! features depend only on the input pixels of its span (core and receptive-field margins);
//! where reference and candidate agree on all of them, both run the same network on the same
//! input with the same masks, so `Y_k = 0` exactly, and such a tile gets `q_k = 0` without
//! bias. That is what makes tile sampling safe for a small defect: every sample lands on a
//! tile that sees it. Among the other tiles a share [`DEFENSIVE_SHARE`] of the probability
//! goes by core area (so no weight `1 / q_k` grows beyond `1 / DEFENSIVE_SHARE` times the
//! uniform one, whatever the pilot), the rest by the pilot's mass over the tile.
//!
//! The choice is drawn from a stream of its own ([`tile_uniform`]), so a tile-sampled draw
//! keeps the transform and dropout masks of the whole draw, and every candidate compared with
//! the same draws (common random numbers) gets the same uniform, hence the same tile where
//! their pilots agree.

use rand::Rng;

use super::{reflect, Draw, Transform};

/// Share of the selection probability spread by core area over the tiles where the pair
/// differs, whatever the pilot says: it bounds every weight `1 / q_k` by `1 / DEFENSIVE_SHARE`
/// times the uniform one.
pub const DEFENSIVE_SHARE: f64 = 0.3;

/// Share of the pilot's (non-defensive) probability that goes by its distance map, where it
/// has one ([`Pilot::with_distance`]); the rest goes by pixel differences. Pixel differences
/// alone spread the probability over every tile where the pair differs a little everywhere
/// while the distance lies in a small region (the stand-in's `Hidden` pattern); a distance
/// map alone misses detail too fine for its coarse level that pixel differences still see.
pub const DISTANCE_SHARE: f64 = 0.85;

/// Weight of the margins' pilot mass against the core's: a tile's core taps see the margins
/// too (less than the core), and a defect in the margin of one tile is in the core of another.
pub const MARGIN_WEIGHT: f64 = 0.25;

/// The pilot keeps at most this many cells: blocks of image pixels as small as that allows
/// (1 pixel up to 1 Mpx, 2 x 2 at 1080p, 3 x 3 at 4K), 24 MiB for its three tables. Its sums are
/// exact per block, and rectangles are widened to whole blocks (never narrowed), so a tile
/// never misses a difference it can see.
const PILOT_CELLS: usize = 1 << 20;

/// A rectangle of pixels: rows `y0..y1`, columns `x0..x1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Rect {
    /// Pixels inside.
    pub fn area(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
}

/// One tile of a network input: the input it runs on (`span`: its core and the margins the
/// core's taps need) and the core whose taps it contributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub span: Rect,
    pub core: Rect,
}

/// Where a pair differs, per block of image pixels: the number of pixels that
/// differ in any channel (exact), and a mass that grows with the difference, each as a summed-
/// area table so that any block rectangle sums in O(1).
#[derive(Clone, Debug)]
pub struct Pilot {
    height: usize,
    width: usize,
    /// Image pixels per cell side.
    block: usize,
    /// Blocks per column and row.
    bh: usize,
    bw: usize,
    /// `(bh + 1) x (bw + 1)` summed-area tables.
    counts: Vec<u64>,
    mass: Vec<f64>,
    /// The distance map's summed-area table over the same blocks, where one was given.
    distance: Option<Vec<f64>>,
}

impl Pilot {
    /// The pilot of `reference` against `candidates` (planar `3 x h x w` images in [0, 1]):
    /// a pixel differs where any candidate differs from the reference in any channel; its mass
    /// is `mass_of(sum over candidates and channels of |difference|)` for a differing pixel.
    pub fn new(reference: &[f32], candidates: &[&[f32]], h: usize, w: usize) -> Self {
        Pilot::with(reference, candidates, h, w, pixel_mass)
    }

    /// [`Pilot::new`] with another mass function (benchmarks try alternatives).
    pub fn with(reference: &[f32], candidates: &[&[f32]], h: usize, w: usize, mass_of: impl Fn(f64) -> f64) -> Self {
        let block = (1..).find(|b| h.div_ceil(*b) * w.div_ceil(*b) <= PILOT_CELLS).expect("some block fits");
        let (bh, bw) = (h.div_ceil(block), w.div_ceil(block));
        let (mut counts, mut mass) = (vec![0u64; (bh + 1) * (bw + 1)], vec![0.0f64; (bh + 1) * (bw + 1)]);
        let plane = h * w;
        // Block sums first, in the tables' interior cells.
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let mut l1 = 0.0f64;
                let mut differs = false;
                for c in candidates {
                    for ch in 0..3 {
                        let (a, b) = (reference[ch * plane + i], c[ch * plane + i]);
                        differs |= a != b;
                        l1 += (a as f64 - b as f64).abs();
                    }
                }
                if differs {
                    let cell = (y / block + 1) * (bw + 1) + x / block + 1;
                    counts[cell] += 1;
                    mass[cell] += mass_of(l1);
                }
            }
        }
        summed_area(&mut counts, bh, bw);
        summed_area(&mut mass, bh, bw);
        Pilot { height: h, width: w, block, bh, bw, counts, mass, distance: None }
    }

    /// This pilot with a distance map of the pair: `map` is `mh x mw` non-negative values, cell
    /// `(my, mx)` the distance at image pixels `my scale .. (my + 1) scale` by `mx scale ..`
    /// (a per-pixel map of the pair downscaled `scale` times; cells past the image are
    /// ignored), each pilot block taking the value of the cell under its centre times its area.
    /// It moves probability only among tiles where the pair differs (the `q_k = 0` rule is the
    /// pixel counts'), so it cannot bias the estimate.
    pub fn with_distance(mut self, map: &[f32], mh: usize, mw: usize, scale: usize) -> Self {
        assert_eq!(map.len(), mh * mw, "distance map size");
        let (b, bw) = (self.block, self.bw);
        let mut table = vec![0.0f64; (self.bh + 1) * (bw + 1)];
        for by in 0..self.bh {
            let (y0, y1) = (by * b, ((by + 1) * b).min(self.height));
            let my = ((y0 + y1) / 2 / scale).min(mh - 1);
            for bx in 0..bw {
                let (x0, x1) = (bx * b, ((bx + 1) * b).min(self.width));
                let mx = ((x0 + x1) / 2 / scale).min(mw - 1);
                let v = map[my * mw + mx] as f64;
                table[(by + 1) * (bw + 1) + bx + 1] = if v.is_finite() { v.max(0.0) * ((y1 - y0) * (x1 - x0)) as f64 } else { 0.0 };
            }
        }
        summed_area(&mut table, self.bh, bw);
        self.distance = Some(table);
        self
    }

    /// Whether the pair differs anywhere.
    pub fn differs(&self) -> bool {
        self.counts[self.counts.len() - 1] > 0
    }

    /// Differing pixels, mass and distance (0 without a distance map) over the blocks that
    /// hold image rectangle `r` (widened to whole blocks).
    fn sum(&self, r: Rect) -> (u64, f64, f64) {
        let b = self.block;
        let (y0, y1) = (r.y0 / b, r.y1.div_ceil(b).min(self.bh));
        let (x0, x1) = (r.x0 / b, r.x1.div_ceil(b).min(self.bw));
        let at = |y: usize, x: usize| y * (self.bw + 1) + x;
        let count = self.counts[at(y1, x1)] + self.counts[at(y0, x0)] - self.counts[at(y0, x1)] - self.counts[at(y1, x0)];
        // Clamped: differences of sums may round below zero.
        let sum = |t: &[f64]| (t[at(y1, x1)] + t[at(y0, x0)] - t[at(y0, x1)] - t[at(y1, x0)]).max(0.0);
        (count, sum(&self.mass), self.distance.as_deref().map_or(0.0, sum))
    }
}

/// Turns per-block values in the interior cells of a `(bh + 1) x (bw + 1)` table into its
/// summed-area table, in place.
fn summed_area<T: Copy + std::ops::Add<Output = T> + std::ops::Sub<Output = T> + std::ops::AddAssign>(t: &mut [T], bh: usize, bw: usize) {
    for by in 1..=bh {
        for bx in 1..=bw {
            let (i, up, left, diag) = (by * (bw + 1) + bx, (by - 1) * (bw + 1) + bx, by * (bw + 1) + bx - 1, (by - 1) * (bw + 1) + bx - 1);
            t[i] += t[up] + t[left] - t[diag];
        }
    }
}

/// The pilot's mass of a differing pixel from the sum of its absolute channel differences:
/// the square root, since a network distance saturates (unit-normalised features) where a
/// pixel difference does not, and a few very different pixels should not draw every sample.
fn pixel_mass(l1: f64) -> f64 {
    l1.sqrt()
}

/// The image pixels that network input rectangle `r` of `transform` (on an `h x w` image) is
/// made from, widened to a rectangle: every pixel any input pixel of `r` reads (through the
/// offset's reflection and the downscale's block) is inside.
pub fn image_rect(transform: &Transform, h: usize, w: usize, r: Rect) -> Rect {
    let g = transform.geometry(h, w);
    // Undo the transpose: the network input's rows are the padded grid's columns.
    let (rows, cols) = if g.transpose { ((r.x0, r.x1), (r.y0, r.y1)) } else { ((r.y0, r.y1), (r.x0, r.x1)) };
    #[allow(clippy::too_many_arguments)]
    let axis = |(a, b): (usize, usize), padded: usize, flip: bool, before: usize, scaled: usize, s: usize, phase: usize, n: usize| {
        // Padded-grid positions, flipped; each reads scaled pixel reflect(p - before), which
        // reads image pixels reflect(q s + d - phase) for d in 0..s.
        let (mut lo, mut hi) = (usize::MAX, 0);
        for p in a..b {
            let p = if flip { padded - 1 - p } else { p };
            let q = reflect(p as isize - before as isize, scaled);
            let (first, last) = ((q * s) as isize - phase as isize, (q * s + s - 1) as isize - phase as isize);
            if first >= 0 && last < n as isize {
                lo = lo.min(first as usize);
                hi = hi.max(last as usize);
            } else {
                // The block crosses an edge: the reflection folds it back.
                for i in first..=last {
                    let i = reflect(i, n);
                    lo = lo.min(i);
                    hi = hi.max(i);
                }
            }
        }
        (lo, hi + 1)
    };
    let (y0, y1) = axis(rows, g.ph, g.flip_y, g.before_y, g.sh, transform.scale, transform.scale_offset.0, h);
    let (x0, x1) = axis(cols, g.pw, g.flip_x, g.before_x, g.sw, transform.scale, transform.scale_offset.1, w);
    Rect { y0, y1, x0, x1 }
}

/// The probability of evaluating each of `tiles` (a partition of the cores of `transform`'s
/// network input of the `h x w` pair that `pilot` describes): 0 where the pair agrees on
/// every pixel a tile's span reads; else [`DEFENSIVE_SHARE`] by core area plus the rest by the
/// pilot's mass over the core and, weighted by [`MARGIN_WEIGHT`], over the span (mass of pixel
/// differences, mixed with the distance map's by [`DISTANCE_SHARE`] where the pilot has one). Sums to 1,
/// or all 0 where the pair agrees everywhere a tile reads (then the draw's distance is 0).
pub fn tile_probabilities(pilot: &Pilot, transform: &Transform, tiles: &[Tile]) -> Vec<f64> {
    tile_probabilities_with(pilot, transform, tiles, DEFENSIVE_SHARE, MARGIN_WEIGHT, DISTANCE_SHARE)
}

/// [`tile_probabilities`] with another defensive share, margin weight and distance share
/// (benchmarks and the stand-in tests try alternatives).
pub fn tile_probabilities_with(pilot: &Pilot, transform: &Transform, tiles: &[Tile], defensive: f64, margin_weight: f64, distance_share: f64) -> Vec<f64> {
    let (h, w) = (pilot.height, pilot.width);
    let mut q = vec![0.0; tiles.len()];
    let mut seen: Vec<(usize, f64, f64, f64)> = Vec::with_capacity(tiles.len());
    for (k, t) in tiles.iter().enumerate() {
        // The distance map already places the distance where the features differ (the receptive
        // field is in it): a tile's share of it is its core's, not its span's.
        let (count, span_mass, _) = pilot.sum(image_rect(transform, h, w, t.span));
        if count == 0 {
            continue;
        }
        let (_, core_mass, core_distance) = pilot.sum(image_rect(transform, h, w, t.core));
        seen.push((k, t.core.area() as f64, core_mass + margin_weight * (span_mass - core_mass).max(0.0), core_distance));
    }
    let area: f64 = seen.iter().map(|s| s.1).sum();
    let mass: f64 = seen.iter().map(|s| s.2).sum();
    let distance: f64 = seen.iter().map(|s| s.3).sum();
    // Where one pilot sees nothing, the other (or the area) takes its share.
    let (pixel, by_distance) = match (mass > 0.0, distance > 0.0) {
        (true, true) => (1.0 - distance_share, distance_share),
        (true, false) => (1.0, 0.0),
        (false, true) => (0.0, 1.0),
        (false, false) => (0.0, 0.0),
    };
    // Written so that a pilot without a distance map gives the same bits as before it had one.
    let uniform = defensive + (1.0 - defensive) * (1.0 - pixel - by_distance);
    for &(k, a, m, d) in &seen {
        let m = if mass > 0.0 { m / mass } else { 0.0 };
        let d = if distance > 0.0 { d / distance } else { 0.0 };
        q[k] = uniform * a / area + (1.0 - defensive) * (pixel * m + by_distance * d);
    }
    q
}

/// The tile that uniform `u` in [0, 1) picks under probabilities `q` (inverse CDF; never a
/// tile of probability 0). `None` when every probability is 0.
pub fn choose_tile(q: &[f64], u: f64) -> Option<usize> {
    let total: f64 = q.iter().sum();
    let mut acc = 0.0;
    let target = u * total;
    let mut last = None;
    for (k, &p) in q.iter().enumerate() {
        if p <= 0.0 {
            continue;
        }
        acc += p;
        last = Some(k);
        if target < acc {
            return last;
        }
    }
    last
}

/// Stream bit of the tile choice: above every stream a sample or deck uses.
const TILE_STREAM: u64 = 1 << 63;

/// The uniform that picks `draw`'s tile: from a stream of its own beside the draw's (the same
/// seed, the draw's stream with [`TILE_STREAM`] set, from the draw's position), so the draw's
/// dropout masks are the whole draw's, and equal draws pick with equal uniforms.
pub fn tile_uniform(draw: &Draw) -> f64 {
    let mut rng = draw.rng.clone();
    rng.set_stream(rng.get_stream() ^ TILE_STREAM);
    rng.random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::{sample_rng, Transform};

    /// Every pixel a network input rectangle reads, found by applying the transform to images
    /// that mark one pixel each: the brute-force truth `image_rect` must contain.
    #[test]
    fn image_rects_hold_every_pixel_the_input_reads() {
        let (h, w) = (23, 19);
        let mut rng = sample_rng(3, 3);
        for trial in 0..60 {
            let mut t = Transform::sample(&mut rng, 3);
            t.color = [1.0; 3];
            t.permutation = [0, 1, 2];
            let (oh, ow) = t.output_size(h, w);
            let r = Rect { y0: rng.random_range(0..oh - 1), y1: 0, x0: rng.random_range(0..ow - 1), x1: 0 };
            let r = Rect { y1: rng.random_range(r.y0 + 1..=oh), x1: rng.random_range(r.x0 + 1..=ow), ..r };
            let got = image_rect(&t, h, w, r);
            for y in 0..h {
                for x in 0..w {
                    let mut img = vec![0.0f32; 3 * h * w];
                    img[y * w + x] = 1.0;
                    let out = t.apply(&img, h, w);
                    let read = (r.y0..r.y1).any(|oy| (r.x0..r.x1).any(|ox| out.data[oy * ow + ox] != 0.0));
                    if read {
                        assert!((got.y0..got.y1).contains(&y) && (got.x0..got.x1).contains(&x), "trial {trial} {t:?} {r:?}: ({y},{x}) outside {got:?}");
                    }
                }
            }
        }
    }

    fn grid(oh: usize, ow: usize, core: usize, margin: usize) -> Vec<Tile> {
        let spans = |n: usize| -> Vec<(usize, usize, usize, usize)> {
            (0..n.div_ceil(core)).map(|i| (i * core, ((i + 1) * core).min(n))).map(|(c0, c1)| (c0.saturating_sub(margin), (c1 + margin).min(n), c0, c1)).collect()
        };
        let mut out = Vec::new();
        for &(s0, s1, c0, c1) in &spans(oh) {
            for &(t0, t1, d0, d1) in &spans(ow) {
                out.push(Tile { span: Rect { y0: s0, y1: s1, x0: t0, x1: t1 }, core: Rect { y0: c0, y1: c1, x0: d0, x1: d1 } });
            }
        }
        out
    }

    #[test]
    fn probabilities_skip_tiles_that_see_no_difference_and_sum_to_one() {
        let (h, w) = (64, 80);
        let reference = vec![0.5f32; 3 * h * w];
        let mut candidate = reference.clone();
        // A 3x3 defect near (40, 50).
        for y in 39..42 {
            for x in 49..52 {
                candidate[y * w + x] = 0.9;
            }
        }
        let pilot = Pilot::new(&reference, &[&candidate], h, w);
        assert!(pilot.differs());
        let mut rng = sample_rng(5, 0);
        for _ in 0..40 {
            let t = Transform::sample(&mut rng, 2);
            let (oh, ow) = t.output_size(h, w);
            let tiles = grid(oh, ow, 16, 8);
            let q = tile_probabilities(&pilot, &t, &tiles);
            assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let apply = |img: &[f32]| t.apply(img, h, w).data;
            let (a, b) = (apply(&reference), apply(&candidate));
            for (k, tile) in tiles.iter().enumerate() {
                let differs = (tile.span.y0..tile.span.y1).any(|y| (tile.span.x0..tile.span.x1).any(|x| (0..3).any(|c| a[(c * oh + y) * ow + x] != b[(c * oh + y) * ow + x])));
                if differs {
                    assert!(q[k] > 0.0, "tile {k} sees the defect but has q = 0");
                }
            }
            if t.scale == 1 {
                assert!(q.iter().filter(|&&p| p > 0.0).count() < tiles.len() / 2, "most tiles see nothing: {q:?}");
            }
        }
        // An identical pair: every tile has probability 0.
        let same = Pilot::new(&reference, &[&reference], h, w);
        assert!(!same.differs());
        let t = Transform::neutral();
        let (oh, ow) = t.output_size(h, w);
        assert!(tile_probabilities(&same, &t, &grid(oh, ow, 16, 8)).iter().all(|&p| p == 0.0));
    }

    #[test]
    fn the_inverse_cdf_never_picks_an_impossible_tile() {
        let q = [0.0, 0.25, 0.0, 0.75, 0.0];
        assert_eq!(choose_tile(&q, 0.0), Some(1));
        assert_eq!(choose_tile(&q, 0.2499), Some(1));
        assert_eq!(choose_tile(&q, 0.25), Some(3));
        assert_eq!(choose_tile(&q, 0.999_999_999), Some(3));
        assert_eq!(choose_tile(&[0.0, 0.0], 0.5), None);
    }

    #[test]
    fn the_tile_uniform_is_its_own_stream() {
        let d = Draw::iid(4, 9, 3);
        assert_eq!(tile_uniform(&d), tile_uniform(&d.clone()));
        let mut rng = d.rng.clone();
        let next: f64 = rng.random();
        assert_ne!(tile_uniform(&d), next, "not the draw's own next number");
        assert_ne!(tile_uniform(&d), tile_uniform(&Draw::iid(4, 10, 3)));
    }
}
