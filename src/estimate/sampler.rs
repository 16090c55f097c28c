//! Which E-LPIPS samples to draw, and how to turn their distances into an estimate.
//!
//! Two samplers estimate the same expectation (the mean distance over the E-LPIPS transform and
//! dropout distribution):
//!
//! * [`SamplerKind::Iid`]: sample `i` is an independent draw from stream `(seed, i)`; the estimate
//!   is the plain mean, its standard error `sd / sqrt(n)`.
//! * [`SamplerKind::Stratified`]: the scale level is the stratum. Level `s` has known probability
//!   `p_s ~ 1/s^2`, so the estimator is `sum_s p_s * mean_s` with variance
//!   `sum_s p_s^2 var_s / n_s`: exact for any allocation, and unbiased because every sample of
//!   stratum `s` is distributed exactly like an E-LPIPS sample conditioned on level `s`. After a
//!   pilot of [`PILOT_PER_LEVEL`] samples per level, each new sample goes to the level where it
//!   removes the most variance per unit of cost (`p_s^2 var_s / (n_s (n_s + 1)) / cost_s`, cost =
//!   network pixels): sequential Neyman allocation weighted by cost, which spends little on coarse
//!   levels whose samples are cheap and similar. Within a level, the discrete parts of the
//!   transform (flip x transpose x channel order: 48 combinations; the 64 offsets; the `s^2`
//!   downscaling phases) are dealt from shuffled decks, and each colour gain from a shuffled deck
//!   of 8 equal-probability bins (a Latin hypercube per 8 samples), so the draws spread evenly.
//!   Every single draw still has the exact marginal distribution, so each stratum mean stays
//!   unbiased; the per-level variance is computed as if the draws were independent, which over-
//!   rather than under-states the error when the decks help (the interval is conservative).
//!
//! Draws are keyed: the `k`-th sample of level `s` is the same transform and dropout for every
//! candidate compared with the same seed (common random numbers).

use rand::seq::SliceRandom;
use rand::Rng;

use crate::ensemble::{level_probabilities, sample_rng, scaled_len, Draw, Transform, FLIPS, OFFSET_PAD, PERMUTATIONS};
use crate::estimate::control_variates::Controls;
use crate::estimate::{Estimate, RunningStats, Z95};

/// Samples per scale level before the allocation starts (the first variance estimates).
pub const PILOT_PER_LEVEL: u64 = 3;

/// How draws are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum SamplerKind {
    /// Independent draws (the authors' estimator, with an honest standard error).
    #[cfg_attr(feature = "cli", value(help = "independent draws (the authors' estimator, with an honest standard error)"))]
    Iid,
    /// Stratified by scale level with cost-aware allocation and decks within levels.
    Stratified,
    /// Independent draws with regression control variates on known-mean functions of the draw
    /// (colour gains, scale level, channel order): see [`crate::estimate::control_variates`].
    /// The default: the same draws and expectation as iid, with a 2-3x smaller variance on the
    /// measured pairs (docs/log.md), so fewer samples reach a precision.
    #[default]
    #[cfg_attr(feature = "cli", value(help = "independent draws with regression control variates (colour gains, scale level, channel order); the default"))]
    Control,
}

impl SamplerKind {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Iid => "iid",
            SamplerKind::Stratified => "stratified",
            SamplerKind::Control => "control",
        }
    }
}

// Stream ids: iid samples use `i` directly; the stratified sampler's draws and decks live in
// disjoint ranges above it.
const STRATIFIED_SAMPLE: u64 = 1 << 62;
const STRATIFIED_DECK: u64 = 1 << 61;

/// The state of one estimate: which draws come next, and the statistics so far.
#[derive(Clone, Debug)]
pub struct Plan {
    kind: SamplerKind,
    seed: u64,
    levels: u32,
    /// Per level: probability and relative cost of a sample.
    prob: Vec<f64>,
    cost: Vec<f64>,
    stats: Vec<RunningStats>,
    /// Samples handed out per stratum (>= recorded ones while a round is in flight).
    issued: Vec<u64>,
    /// The control-variate state (control sampler only).
    control: Option<Controls>,
    /// Per level: whether a recorded draw came from it.
    seen: Vec<bool>,
}

impl Plan {
    /// A plan for an `h x w` pair with `levels` scale levels.
    pub fn new(kind: SamplerKind, seed: u64, levels: u32, h: usize, w: usize) -> Self {
        let prob = level_probabilities(levels);
        let cost: Vec<f64> =
            (1..=levels as usize).map(|s| ((scaled_len(h, s) + OFFSET_PAD) * (scaled_len(w, s) + OFFSET_PAD)) as f64).collect();
        let strata = if kind == SamplerKind::Stratified { levels as usize } else { 1 };
        let control = (kind == SamplerKind::Control).then(|| Controls::new(levels));
        let seen = vec![false; levels as usize];
        Plan { kind, seed, levels, prob, cost, stats: vec![RunningStats::default(); strata], issued: vec![0; strata], control, seen }
    }

    pub fn kind(&self) -> SamplerKind {
        self.kind
    }

    /// Samples recorded so far.
    pub fn count(&self) -> u64 {
        self.stats.iter().map(|s| s.count()).sum()
    }

    /// The next `n` draws.
    pub fn next_round(&mut self, n: usize) -> Vec<Draw> {
        (0..n).map(|_| self.next_draw()).collect()
    }

    fn next_draw(&mut self) -> Draw {
        match self.kind {
            SamplerKind::Iid | SamplerKind::Control => {
                let i = self.issued[0];
                self.issued[0] += 1;
                Draw::iid(self.seed, i, self.levels)
            }
            SamplerKind::Stratified => {
                let s = self.choose_stratum();
                let k = self.issued[s];
                self.issued[s] += 1;
                self.stratified_draw(s, k)
            }
        }
    }

    /// The level to sample next: fill the pilot first, then the largest variance reduction
    /// per unit of cost.
    fn choose_stratum(&self) -> usize {
        if let Some(s) = (0..self.issued.len()).find(|&s| self.issued[s] < PILOT_PER_LEVEL) {
            return s;
        }
        // Levels with few samples borrow strength from the pooled variance, so that a pilot
        // that happened to agree closely cannot starve a level.
        let pooled = self.pooled_variance();
        let mut best = (f64::MIN, 0);
        for s in 0..self.issued.len() {
            let n = self.issued[s] as f64;
            let m = self.stats[s].count() as f64;
            let var = (m * self.stats[s].variance() + 2.0 * pooled) / (m + 2.0);
            let gain = self.prob[s] * self.prob[s] * var / (n * (n + 1.0)) / self.cost[s];
            if gain > best.0 {
                best = (gain, s);
            }
        }
        best.1
    }

    fn pooled_variance(&self) -> f64 {
        let (num, den) = self.stats.iter().fold((0.0, 0.0), |(a, b), s| {
            let dof = s.count().saturating_sub(1) as f64;
            (a + dof * s.variance(), b + dof)
        });
        if den > 0.0 {
            num / den
        } else {
            0.0
        }
    }

    /// The `k`-th draw of level `s + 1`.
    fn stratified_draw(&self, s: usize, k: u64) -> Draw {
        let scale = s + 1;
        let mut rng = sample_rng(self.seed, STRATIFIED_SAMPLE | (s as u64) << 40 | k);
        // Decks: a fresh shuffle per cycle; draw k takes card k mod len of cycle k / len.
        let deck = |salt: u64, len: u64| -> usize {
            let cycle = k / len;
            let mut deck_rng = sample_rng(self.seed, STRATIFIED_DECK | salt << 48 | (s as u64) << 40 | cycle);
            let mut cards: Vec<usize> = (0..len as usize).collect();
            cards.shuffle(&mut deck_rng);
            cards[(k % len) as usize]
        };
        let combo = deck(0, 48);
        let flip = FLIPS[combo % 4];
        let transpose = (combo / 4) % 2 == 1;
        let permutation = PERMUTATIONS[combo / 8];
        let offset_card = deck(1, 64);
        let offset = (offset_card / 8, offset_card % 8);
        let phase = deck(2, (scale * scale) as u64);
        let scale_offset = (phase / scale, phase % scale);
        let color = [3u64, 4, 5].map(|salt| {
            let bin = deck(salt, 8) as f32;
            0.2 + 0.8 * (bin + rng.random::<f32>()) / 8.0
        });
        let transform = Transform { scale, scale_offset, offset, flip, transpose, permutation, color };
        Draw { stratum: s, transform, rng }
    }

    /// Iid draws whose contributions go through `controls` (a two-stream estimate's
    /// estimated-mean control, with or without the control sampler's draw features).
    pub(crate) fn with_controls(kind: SamplerKind, seed: u64, levels: u32, h: usize, w: usize, controls: Controls) -> Self {
        debug_assert!(kind != SamplerKind::Stratified);
        Plan { control: Some(controls), ..Plan::new(kind, seed, levels, h, w) }
    }

    /// Records the distances of `draws` with the estimated-mean controls of each (see
    /// [`Controls::record_estimated`]); the plan must have been made [`Plan::with_controls`].
    pub(crate) fn record_estimated(&mut self, draws: &[Draw], distances: &[f64], estimated: &[f64]) {
        self.mark_seen(draws);
        let control = self.control.as_mut().expect("a plan with controls");
        self.stats[0] = control.record_estimated(draws, distances, estimated);
    }

    fn mark_seen(&mut self, draws: &[Draw]) {
        for d in draws {
            if let Some(seen) = self.seen.get_mut(d.transform.scale.wrapping_sub(1)) {
                *seen = true;
            }
        }
    }

    /// Records the distances of `draws` (in the same order).
    pub fn record(&mut self, draws: &[Draw], distances: &[f64]) {
        self.mark_seen(draws);
        if let Some(control) = &mut self.control {
            self.stats[0] = control.record(draws, distances);
            return;
        }
        for (d, &x) in draws.iter().zip(distances) {
            self.stats[d.stratum].push(x);
        }
    }

    /// Mean and standard error so far (`None` for the error while it cannot be estimated).
    pub fn mean_and_std_error(&self) -> (f64, Option<f64>) {
        match self.kind {
            SamplerKind::Iid | SamplerKind::Control => {
                let s = &self.stats[0];
                (s.mean(), (s.count() >= 2).then(|| s.std_error()))
            }
            SamplerKind::Stratified => {
                let mean = self.stats.iter().zip(&self.prob).map(|(s, p)| p * s.mean()).sum();
                let estimable = self.stats.iter().all(|s| s.count() >= 2);
                let var: f64 = self.stats.iter().zip(&self.prob).map(|(s, p)| p * p * s.variance() / s.count().max(1) as f64).sum();
                (mean, estimable.then(|| var.sqrt()))
            }
        }
    }

    /// Skewness of the estimator's sampling distribution (third cumulant over the cube of its
    /// standard error): `gamma / sqrt(n)` for iid draws; 0 while not estimable.
    pub fn estimator_skewness(&self) -> f64 {
        let (_, se) = self.mean_and_std_error();
        let k3: f64 = match self.kind {
            SamplerKind::Iid | SamplerKind::Control => self.stats[0].third_cumulant() / (self.stats[0].count().max(1) as f64).powi(2),
            SamplerKind::Stratified => {
                self.stats.iter().zip(&self.prob).map(|(s, p)| p.powi(3) * s.third_cumulant() / (s.count().max(1) as f64).powi(2)).sum()
            }
        };
        match se {
            Some(se) if se > 0.0 => k3 / se.powi(3),
            _ => 0.0,
        }
    }

    /// The probability of the scale levels no recorded draw came from: the share of the
    /// expectation the samples so far have not seen at all (distances are at least 0, so it
    /// can only add to the mean; the gate's lower bound leaves it out).
    pub fn unseen_probability(&self) -> f64 {
        self.seen.iter().zip(&self.prob).filter(|(seen, _)| !**seen).map(|(_, p)| p).sum()
    }

    /// Scale levels the draws come from.
    pub fn levels(&self) -> u32 {
        self.levels
    }

    /// Samples needed before the standard error is defined: 2, or the stratified pilot.
    pub fn min_estimable(&self) -> u64 {
        match self.kind {
            SamplerKind::Iid | SamplerKind::Control => 2,
            SamplerKind::Stratified => PILOT_PER_LEVEL * self.levels as u64,
        }
    }

    /// Degrees of freedom of the standard error, for the gate's t quantiles. Each variance
    /// estimate `s^2` counts as a scaled chi-square matched to its variance (Satterthwaite):
    /// `Var(s^2 / sigma^2) = 2 / nu = 2 / (n - 1) + kurtosis / n` (excess kurtosis, at least 0), so
    /// heavy tails, which make the variance itself noisy, lower the count. Iid and control
    /// draws: at most `n - 1` less the coefficients a control fit estimated (a regression's
    /// residuals). The stratified estimator: Welch and Satterthwaite's combination
    /// `(sum a_s)^2 / sum a_s^2 / nu_s`, `a_s = p_s^2 var_s / n_s` each stratum's share of the
    /// variance. The share of a level with few samples and a large weight dominates: after the
    /// pilot (3 per level) the variance rests on about 2 degrees of freedom, not `n - strata`
    /// (12 samples over 4 levels: 8), and a gate's first look there erred 3.5% on each side at
    /// a 0.85% level.
    pub fn degrees_of_freedom(&self) -> f64 {
        match self.kind {
            // Regression residuals: one degree of freedom per fitted coefficient, as the
            // variance's `n / (n - p - 1)` correction counts them.
            SamplerKind::Iid | SamplerKind::Control => {
                let fitted = self.control.as_ref().map_or(0, |c| c.fitted());
                let n = self.count() as f64;
                let residual = (n - 1.0 - fitted as f64).max(1.0);
                // Heavy tails make the variance itself noisy: match the variance of `s^2 /
                // sigma^2`, `2 / (n - 1) + kurtosis / n`, to a chi-square's (Satterthwaite).
                let kurtosis = self.stats[0].excess_kurtosis().max(0.0);
                (2.0 / (2.0 / residual + kurtosis / n)).clamp(1.0, residual)
            }
            SamplerKind::Stratified => {
                let (mut total, mut spread) = (0.0, 0.0);
                for (s, p) in self.stats.iter().zip(&self.prob) {
                    let n = s.count() as f64;
                    if n >= 2.0 {
                        let a = p * p * s.variance() / n;
                        total += a;
                        spread += a * a * (1.0 / (n - 1.0) + s.excess_kurtosis().max(0.0) / (2.0 * n));
                    }
                }
                if spread > 0.0 {
                    (total * total / spread).max(1.0)
                } else {
                    (self.count() as f64 - self.stats.len() as f64).max(1.0)
                }
            }
        }
    }

    /// The estimate so far.
    pub fn estimate(&self, converged: bool) -> Estimate {
        let (distance, se) = self.mean_and_std_error();
        let std_error = se.unwrap_or(0.0);
        Estimate { distance, std_error, ci95: Z95 * std_error, samples: self.count(), converged }
    }

    /// The weight of each stratum's mean in the estimate: 1 for iid draws, the level
    /// probabilities for the stratified sampler (heatmaps average the same way).
    pub fn stratum_weights(&self) -> Vec<f64> {
        match self.kind {
            // The control sampler's draws are iid: its heatmap is the plain mean of the maps.
            SamplerKind::Iid | SamplerKind::Control => vec![1.0],
            SamplerKind::Stratified => self.prob.clone(),
        }
    }

    /// Samples recorded per stratum (scale level for the stratified sampler).
    pub fn samples_per_stratum(&self) -> Vec<u64> {
        self.stats.iter().map(|s| s.count()).collect()
    }
}

/// A stand-in for the network with a known expectation, for the statistical tests.
#[cfg(test)]
pub(crate) mod mock {
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    use crate::ensemble::tiles::{choose_tile, tile_probabilities, tile_uniform, Pilot, Rect, Tile};
    use crate::ensemble::{Draw, Flip, Transform};

    /// The per-sample noise that stands in for dropout: symmetric, right-skewed like distances
    /// are, or heavy-tailed (all mean zero).
    #[derive(Clone, Copy, Debug)]
    pub enum Noise {
        Uniform,
        Skewed,
        /// Lognormal (sigma 1), centred: a long right tail with every moment finite.
        HeavyTailed,
    }

    /// Depends on every part of the draw.
    pub fn mock_distance(t: &Transform, rng: &mut ChaCha8Rng, noise: Noise) -> f64 {
        let level = 0.3 / (t.scale * t.scale) as f64;
        let discrete = 0.02 * t.transpose as u8 as f64 + 0.01 * matches!(t.flip, Flip::X) as u8 as f64 + 0.005 * t.permutation[0] as f64;
        let colour = 0.05 * (t.color[0] as f64 - 0.6) + 0.03 * (t.color[2] as f64 - 0.6);
        let offset = 0.001 * (t.offset.0 + t.offset.1) as f64;
        let u = rng.random::<f64>();
        let noise = match noise {
            Noise::Uniform => 0.02 * (u - 0.5),
            // Exponential with mean 0.02, centred.
            Noise::Skewed => 0.02 * (-(1.0 - u).ln() - 1.0),
            Noise::HeavyTailed => {
                let z = (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * rng.random::<f64>()).cos();
                0.02 * (z.exp() - 0.5f64.exp())
            }
        };
        level + discrete + colour + offset + noise
    }

    /// Exact expectation of `mock_distance` for `levels` levels.
    pub fn mock_truth(levels: u32) -> f64 {
        let z: f64 = (1..=levels).map(|s| 1.0 / (s * s) as f64).sum();
        let level: f64 = (1..=levels).map(|s| (1.0 / (s * s) as f64 / z) * 0.3 / (s * s) as f64).sum();
        level + 0.02 * 0.5 + 0.01 * 0.25 + 0.005 * 1.0 + 0.001 * 7.0
    }

    /// Where a mock pair differs: how its per-pixel distance is spread over the image.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Pattern {
        /// The same everywhere.
        Uniform,
        /// Growing linearly from 0.1 at the left edge to 1 at the right.
        Gradient,
        /// Only a 2 x 2 region (0.2% of the pixels): a small defect.
        SmallRegion,
        /// The pixels differ a little everywhere, but the distance lies in the small region
        /// alone: the pixel pilot sees nothing of where the distance is; the distance pilot
        /// (the coarse level's map) does.
        Hidden,
        /// As `Hidden`, and the region's distance comes from detail finer than the distance
        /// pilot's coarse level (a defect of single-pixel texture): at that level it averages
        /// away, and the coarse map shows only the faint response to the small differences
        /// everywhere. Both pilots miss it: the case tile-sampled draws cannot make safe.
        Fine,
    }

    /// The mock image's size, scale levels, and its tiles: cores of `MOCK_CORE` pixels with
    /// `MOCK_MARGIN`-pixel margins; the mock network's receptive field spills `MOCK_SPILL`
    /// pixels of the input beyond a pixel (less than the margin, as VGG's is less than 112).
    pub const MOCK_H: usize = 40;
    pub const MOCK_W: usize = 48;
    pub const MOCK_LEVELS: u32 = 3;
    const MOCK_CORE: usize = 8;
    const MOCK_MARGIN: usize = 4;
    const MOCK_SPILL: usize = 2;
    /// The distance pilot's coarse level: the stand-in network's map of the pair downscaled
    /// this many times per side (at 1080p the real pilot's level is 4 or 5).
    const MOCK_PILOT_SCALE: usize = 4;
    /// What the coarse map shows where the pixels differ a little and the distance is 0 (a
    /// real network's coarse map is never exactly 0 there), relative to the weight's mean.
    const MOCK_PILOT_FLOOR: f32 = 0.1;

    /// A stand-in pair for tile-sampled draws: reference and candidate images (what the pilot
    /// sees) and where the distance lies. A draw's distance is [`mock_distance`] (so the
    /// expectation is [`mock_truth`]), spread over its network input by the pattern carried
    /// through the draw's geometry and spilled over the mock's receptive field; a tile's part
    /// is the distance's share in its core.
    pub struct MockPair {
        weight: Vec<f32>,
        pilot: Pilot,
    }

    impl MockPair {
        /// The pair with the pilot the evaluator builds: pixel differences and the distance
        /// map of a coarse level.
        pub fn new(pattern: Pattern) -> Self {
            let pair = MockPair::pixel_pilot(pattern);
            let (mh, mw, map) = pair.coarse_map(pattern);
            MockPair { pilot: pair.pilot.with_distance(&map, mh, mw, MOCK_PILOT_SCALE), ..pair }
        }

        /// The pair with a pilot of pixel differences alone (the first tile-sampled draws).
        pub fn pixel_pilot(pattern: Pattern) -> Self {
            let (h, w) = (MOCK_H, MOCK_W);
            let region = |i: usize| (27..29).contains(&(i / w)) && (33..35).contains(&(i % w));
            let weight: Vec<f32> = (0..h * w)
                .map(|i| match pattern {
                    Pattern::Uniform => 1.0,
                    Pattern::Gradient => 0.1 + 0.9 * (i % w) as f32 / (w - 1) as f32,
                    Pattern::SmallRegion | Pattern::Hidden | Pattern::Fine => region(i) as u8 as f32,
                })
                .collect();
            let reference = vec![0.5f32; 3 * h * w];
            let shown: Vec<f32> = match pattern {
                Pattern::Hidden | Pattern::Fine => vec![0.02; h * w],
                _ => weight.iter().map(|v| 0.3 * v).collect(),
            };
            let candidate: Vec<f32> = (0..3).flat_map(|_| shown.iter().map(|d| 0.5 + d)).collect();
            MockPair { pilot: Pilot::new(&reference, &[&candidate], h, w), weight }
        }

        /// What the stand-in network's map of the pair at the coarse level would show, not the
        /// exact answer: the weight averaged over `MOCK_PILOT_SCALE`-pixel blocks, spread over
        /// the neighbouring blocks (a receptive field at that level), over a faint floor where
        /// the pixels differ; for `Fine`, the floor alone (its detail averages away).
        fn coarse_map(&self, pattern: Pattern) -> (usize, usize, Vec<f32>) {
            let (h, w, s) = (MOCK_H, MOCK_W, MOCK_PILOT_SCALE);
            let (mh, mw) = (h.div_ceil(s), w.div_ceil(s));
            let mut blocks = vec![0.0f32; mh * mw];
            if pattern != Pattern::Fine {
                for (i, v) in self.weight.iter().enumerate() {
                    blocks[(i / w / s) * mw + i % w / s] += v / (s * s) as f32;
                }
            }
            let floor = match pattern {
                Pattern::Hidden | Pattern::Fine => MOCK_PILOT_FLOOR * self.weight.iter().sum::<f32>() / (h * w) as f32,
                _ => 0.0,
            };
            // Half of a block's distance stays in it (the shallow taps' sharp maps), half spreads
            // over its 8 neighbours (the deep taps' coarse cells).
            let mut map = vec![floor; mh * mw];
            for y in 0..mh {
                for x in 0..mw {
                    let near: f32 = (y.saturating_sub(1)..(y + 2).min(mh)).flat_map(|yy| (x.saturating_sub(1)..(x + 2).min(mw)).map(move |xx| (yy, xx))).map(|(yy, xx)| blocks[yy * mw + xx]).sum();
                    map[y * mw + x] += 0.5 * blocks[y * mw + x] + 0.5 * (near - blocks[y * mw + x]) / 8.0;
                }
            }
            (mh, mw, map)
        }

        /// The draw's distance density over its network input (not normalised): the weight
        /// under the draw's geometry, box-spread over `MOCK_SPILL` pixels.
        fn input_density(&self, t: &Transform) -> (usize, usize, Vec<f64>) {
            let (h, w) = (MOCK_H, MOCK_W);
            let geometry = Transform { color: [1.0; 3], permutation: [0, 1, 2], ..t.clone() };
            let img: Vec<f32> = (0..3).flat_map(|_| self.weight.iter().copied()).collect();
            let out = geometry.apply(&img, h, w);
            let (oh, ow) = (out.height, out.width);
            let mut density = vec![0.0f64; oh * ow];
            for y in 0..oh {
                for x in 0..ow {
                    let v = out.data[y * ow + x] as f64;
                    if v == 0.0 {
                        continue;
                    }
                    for sy in y.saturating_sub(MOCK_SPILL)..(y + MOCK_SPILL + 1).min(oh) {
                        for sx in x.saturating_sub(MOCK_SPILL)..(x + MOCK_SPILL + 1).min(ow) {
                            density[sy * ow + sx] += v;
                        }
                    }
                }
            }
            (oh, ow, density)
        }

        /// The tiles of an `oh x ow` mock network input.
        fn tiles(oh: usize, ow: usize) -> Vec<Tile> {
            let spans = |n: usize| -> Vec<(usize, usize, usize, usize)> {
                (0..n.div_ceil(MOCK_CORE))
                    .map(|i| (i * MOCK_CORE, ((i + 1) * MOCK_CORE).min(n)))
                    .map(|(c0, c1)| (c0.saturating_sub(MOCK_MARGIN), (c1 + MOCK_MARGIN).min(n), c0, c1))
                    .collect()
            };
            let mut out = Vec::new();
            for &(y0, y1, cy0, cy1) in &spans(oh) {
                for &(x0, x1, cx0, cx1) in &spans(ow) {
                    out.push(Tile { span: Rect { y0, y1, x0, x1 }, core: Rect { y0: cy0, y1: cy1, x0: cx0, x1: cx1 } });
                }
            }
            out
        }

        /// One tile-sampled sample of `draw`: the tile the law picks (with the draw's tile
        /// uniform, as the evaluator does), its part of the draw's distance over its
        /// probability. Returns also the draw's whole distance.
        pub fn tile_sample(&self, draw: &mut Draw, noise: Noise) -> (f64, f64) {
            let u = tile_uniform(draw);
            let y = mock_distance(&draw.transform, &mut draw.rng, noise);
            let (oh, ow, density) = self.input_density(&draw.transform);
            let total: f64 = density.iter().sum();
            let tiles = Self::tiles(oh, ow);
            let q = tile_probabilities(&self.pilot, &draw.transform, &tiles);
            // Every mock pair differs where every draw's tiles see it.
            let k = choose_tile(&q, u).expect("a mock pair differs");
            let c = tiles[k].core;
            let share: f64 = (c.y0..c.y1).map(|yy| density[yy * ow + c.x0..yy * ow + c.x1].iter().sum::<f64>()).sum::<f64>() / total;
            (y * share / q[k], y)
        }

        /// The support the law relies on: every tile with some of the distance in its core has
        /// a positive probability (the mock's spill stays within the margins).
        pub fn check_support(&self, t: &Transform) {
            let (oh, ow, density) = self.input_density(t);
            let tiles = Self::tiles(oh, ow);
            let q = tile_probabilities(&self.pilot, t, &tiles);
            for (k, tile) in tiles.iter().enumerate() {
                let c = tile.core;
                let mass: f64 = (c.y0..c.y1).map(|yy| density[yy * ow + c.x0..yy * ow + c.x1].iter().sum::<f64>()).sum();
                assert!(mass == 0.0 || q[k] > 0.0, "{t:?}: tile {k} holds {mass} of the distance but has q = 0");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mock::{mock_distance, mock_truth, MockPair, Noise, Pattern, MOCK_H, MOCK_LEVELS, MOCK_W};
    use super::*;
    use crate::ensemble::Flip;

    fn run(kind: SamplerKind, seed: u64, levels: u32, n: usize) -> Estimate {
        let mut plan = Plan::new(kind, seed, levels, 256, 256);
        while (plan.count() as usize) < n {
            let mut draws = plan.next_round(8.min(n - plan.count() as usize));
            let d: Vec<f64> = draws.iter_mut().map(|d| mock_distance(&d.transform, &mut d.rng, Noise::Uniform)).collect();
            plan.record(&draws, &d);
        }
        plan.estimate(true)
    }

    #[test]
    fn stratified_draws_have_the_exact_marginals() {
        let plan = Plan::new(SamplerKind::Stratified, 3, 3, 256, 256);
        let n = 4800u64;
        let (mut transposed, mut flip_x, mut perm0, mut off) = (0, 0, [0u32; 3], [0u32; 8]);
        let mut colour = 0.0;
        for k in 0..n {
            let t = plan.stratified_draw(1, k).transform;
            assert_eq!(t.scale, 2);
            assert!(t.scale_offset.0 < 2 && t.scale_offset.1 < 2);
            transposed += t.transpose as u32;
            flip_x += (t.flip == Flip::X) as u32;
            perm0[t.permutation[0]] += 1;
            off[t.offset.0] += 1;
            colour += t.color[1] as f64;
        }
        // Full cycles of the decks give exact proportions.
        assert_eq!(transposed, 2400);
        assert_eq!(flip_x, 1200);
        assert_eq!(perm0, [1600; 3]);
        assert_eq!(off, [600; 8]);
        assert!((colour / n as f64 - 0.6).abs() < 0.002);
    }

    #[test]
    fn both_samplers_are_unbiased_and_intervals_cover() {
        let levels = 4;
        let truth = mock_truth(levels);
        for kind in [SamplerKind::Iid, SamplerKind::Stratified, SamplerKind::Control] {
            let runs = 300;
            let (mut sum, mut covered, mut se_sum) = (0.0, 0, 0.0);
            for seed in 0..runs {
                let e = run(kind, seed, levels, 48);
                sum += e.distance;
                se_sum += e.std_error;
                covered += ((e.distance - truth).abs() <= e.ci95) as u32;
            }
            let mean = sum / runs as f64;
            let se_of_mean = se_sum / runs as f64 / (runs as f64).sqrt();
            assert!((mean - truth).abs() < 4.0 * se_of_mean, "{kind:?}: mean {mean} vs truth {truth}");
            let coverage = covered as f64 / runs as f64;
            assert!(coverage >= 0.91, "{kind:?}: coverage {coverage}");
        }
    }

    #[test]
    fn stratification_needs_fewer_samples_for_the_same_error() {
        let (iid, strat): (f64, f64) = (0..40)
            .map(|seed| (run(SamplerKind::Iid, seed, 4, 96).std_error, run(SamplerKind::Stratified, seed, 4, 96).std_error))
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        assert!(strat < 0.7 * iid, "stratified {strat} vs iid {iid}");
    }

    #[test]
    fn control_variates_remove_the_variance_the_draw_explains() {
        // The mock's colour and level terms are what the controls model; after the fit, only
        // the rest (flips, offsets, noise) is left.
        let (iid, control): (f64, f64) = (0..40)
            .map(|seed| (run(SamplerKind::Iid, seed, 4, 160).std_error, run(SamplerKind::Control, seed, 4, 160).std_error))
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        eprintln!("mock: control/iid standard error {:.3}", control / iid);
        assert!(control < 0.5 * iid, "control {control} vs iid {iid}");
        // Once the coefficients are fitted, the estimate stays unbiased and the intervals cover.
        // At 48 (the test above) only the level-1 indicator is fitted; at 72 and 120 the levels,
        // gains and level-1 x gain products; at 200 the channel order too.
        let truth = mock_truth(4);
        let runs = 300;
        for n in [72, 120, 200] {
            let (mut sum, mut covered, mut se_sum) = (0.0, 0, 0.0);
            for seed in 0..runs {
                let e = run(SamplerKind::Control, 500 + seed, 4, n);
                sum += e.distance;
                se_sum += e.std_error;
                covered += ((e.distance - truth).abs() <= e.ci95) as u32;
            }
            let mean = sum / runs as f64;
            assert!((mean - truth).abs() < 4.0 * se_sum / runs as f64 / (runs as f64).sqrt(), "{n} samples: mean {mean} vs truth {truth}");
            let coverage = covered as f64 / runs as f64;
            eprintln!("mock: control coverage {coverage} at {n} samples, bias {:.2e}", mean - truth);
            assert!(coverage >= 0.91, "{n} samples: coverage {coverage}");
        }
    }

    /// `n` tile-sampled mock samples of `pair` under `kind`.
    fn run_tiles(kind: SamplerKind, seed: u64, pair: &MockPair, noise: Noise, n: usize) -> Estimate {
        let mut plan = Plan::new(kind, seed, MOCK_LEVELS, MOCK_H, MOCK_W);
        while (plan.count() as usize) < n {
            let mut draws = plan.next_round(8.min(n - plan.count() as usize));
            let d: Vec<f64> = draws.iter_mut().map(|d| pair.tile_sample(d, noise).0).collect();
            plan.record(&draws, &d);
        }
        plan.estimate(true)
    }

    #[test]
    fn every_tile_holding_distance_can_be_drawn() {
        let mut rng = sample_rng(2, 2);
        for pattern in [Pattern::Uniform, Pattern::Gradient, Pattern::SmallRegion, Pattern::Hidden, Pattern::Fine] {
            let pair = MockPair::new(pattern);
            for _ in 0..200 {
                pair.check_support(&Transform::sample(&mut rng, MOCK_LEVELS));
            }
        }
    }

    /// The patterns on which tile-sampled draws must hold the stated rates; `Fine` (which
    /// defeats both pilots) is run and printed by the thorough tests, not asserted.
    const HELD: [Pattern; 4] = [Pattern::Uniform, Pattern::Gradient, Pattern::SmallRegion, Pattern::Hidden];

    /// Tile-sampled mock estimates of `patterns`, every sampler, `runs` seeds of `n` samples:
    /// the mean of the estimates within 4 of its standard errors of the exact expectation, and
    /// the 95% intervals covering it in 95% +- `band` of the seeds; asserted where `held`.
    fn tile_sampled_unbiased_and_covering(patterns: &[Pattern], runs: u64, n: usize, band: f64) {
        let truth = mock_truth(MOCK_LEVELS);
        for &pattern in patterns {
            let pair = MockPair::new(pattern);
            for kind in [SamplerKind::Iid, SamplerKind::Stratified, SamplerKind::Control] {
                let (mut sum, mut covered, mut se_sum) = (0.0, 0, 0.0);
                for seed in 0..runs {
                    let e = run_tiles(kind, 7000 + seed, &pair, Noise::Uniform, n);
                    sum += e.distance;
                    se_sum += e.std_error;
                    covered += ((e.distance - truth).abs() <= e.ci95) as u32;
                }
                let mean = sum / runs as f64;
                let se_of_mean = se_sum / runs as f64 / (runs as f64).sqrt();
                let coverage = covered as f64 / runs as f64;
                eprintln!("tiles {pattern:?} {kind:?}: bias {:.2e} ({:.1} se), coverage {coverage}, mean se {:.2e}", mean - truth, (mean - truth) / se_of_mean, se_sum / runs as f64);
                if HELD.contains(&pattern) {
                    assert!((mean - truth).abs() < 4.0 * se_of_mean, "{pattern:?} {kind:?}: mean {mean} vs truth {truth}");
                    assert!((0.95 - band..=0.95 + band).contains(&coverage), "{pattern:?} {kind:?}: coverage {coverage}");
                }
            }
        }
    }

    #[test]
    fn tile_sampled_draws_are_unbiased_and_their_intervals_cover() {
        // 150 seeds: coverage within +-3.3 binomial sd (1.8%) of 95%. `Hidden` is held at 96
        // samples (the thorough test); at 48, stratified draws cover it in 88% of these seeds.
        tile_sampled_unbiased_and_covering(&[Pattern::Uniform, Pattern::Gradient, Pattern::SmallRegion], 150, 48, 0.059);
    }

    #[test]
    #[ignore = "slow: make test-long"]
    fn tile_sampled_draws_are_unbiased_and_their_intervals_cover_thorough() {
        // 1000 seeds: the 95% +- 2% (+-2.9 binomial sd); and `Fine` printed.
        tile_sampled_unbiased_and_covering(&[Pattern::Uniform, Pattern::Gradient, Pattern::SmallRegion, Pattern::Hidden, Pattern::Fine], 1000, 96, 0.02);
    }

    /// A gate on tile-sampled mock draws with the threshold at the exact expectation (every
    /// verdict wrong), each of `pairs` (pattern, distance pilot or pixels only, asserted), iid
    /// and stratified draws, `runs` seeds: each wrong side's rate at most the stated 5% plus
    /// `slack` for iid draws (the gate's sampler in `check` and `tune`) where asserted.
    /// Printed, not asserted: stratified draws (over 5% on every pattern, `Uniform` included,
    /// with pixel pilots as well), `Fine`, pixel-only pilots, and `Hidden` over 2000 seeds
    /// (5.3% wrong Below); docs/estimator.md, "Tile-sampled draws".
    fn tile_sampled_gate(pairs: &[(Pattern, bool, bool)], runs: u64, slack: f64) {
        use crate::estimate::decision::{decide_plan, Gate, Side};
        let truth = mock_truth(MOCK_LEVELS);
        let mut failed = Vec::new();
        for &(pattern, distance_pilot, asserted) in pairs {
            let pair = if distance_pilot { MockPair::new(pattern) } else { MockPair::pixel_pilot(pattern) };
            for kind in [SamplerKind::Iid, SamplerKind::Stratified] {
                let gate = Gate::new(truth);
                let (mut below, mut above, mut samples) = (0, 0, 0);
                for seed in 0..runs {
                    let mut plan = Plan::new(kind, 9000 + seed, MOCK_LEVELS, MOCK_H, MOCK_W);
                    let mut eval = |draws: &mut [Draw]| Ok(draws.iter_mut().map(|d| pair.tile_sample(d, Noise::Skewed).0).collect());
                    let d = decide_plan(&mut plan, &gate, 8, &mut eval, &mut |_| {}).unwrap();
                    below += (d.verdict == Side::Below) as u32;
                    above += (d.verdict == Side::Above) as u32;
                    samples += d.estimate.samples;
                }
                let (b, a) = (below as f64 / runs as f64, above as f64 / runs as f64);
                let pilot = if distance_pilot { "pixels+distance" } else { "pixels only" };
                eprintln!("gate on tiles {pattern:?} ({pilot}) {kind:?}: wrong Below {b}, wrong Above {a}, mean {} samples", samples as f64 / runs as f64);
                if asserted && kind == SamplerKind::Iid && !(b <= 0.05 + slack && a <= 0.05 + slack) {
                    failed.push(format!("{pattern:?} {kind:?}: wrong Below {b}, wrong Above {a}"));
                }
            }
        }
        assert!(failed.is_empty(), "{failed:?}");
    }

    #[test]
    fn a_gate_on_tile_sampled_draws_keeps_its_error_rate() {
        // 200 seeds: 3.3 binomial sd (at 5%, 1.5 points each) of slack over the stated rate.
        // `Hidden` fails it with a pixel-only pilot (45% wrong Below).
        tile_sampled_gate(&HELD.map(|p| (p, true, true)), 200, 0.051);
    }

    #[test]
    #[ignore = "slow: make test-long"]
    fn a_gate_on_tile_sampled_draws_keeps_its_error_rate_thorough() {
        // 2000 seeds, no slack; printed: `Hidden` (5.3% wrong Below, just over), `Fine`, and
        // `Hidden` and `Fine` with pixel-only pilots.
        let asserted = [Pattern::Uniform, Pattern::Gradient, Pattern::SmallRegion].map(|p| (p, true, true));
        let printed = [(Pattern::Hidden, true, false), (Pattern::Fine, true, false), (Pattern::Hidden, false, false), (Pattern::Fine, false, false)];
        tile_sampled_gate(&[asserted.as_slice(), &printed].concat(), 2000, 0.0);
    }

    #[test]
    fn keyed_draws_are_common_to_every_candidate() {
        let a = Plan::new(SamplerKind::Stratified, 9, 3, 200, 300).stratified_draw(2, 17);
        let b = Plan::new(SamplerKind::Stratified, 9, 3, 200, 300).stratified_draw(2, 17);
        assert_eq!(a.transform, b.transform);
        let c = Plan::new(SamplerKind::Stratified, 10, 3, 200, 300).stratified_draw(2, 17);
        assert_ne!(a.transform, c.transform);
    }
}
