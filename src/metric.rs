//! Comparing images: ties the named model, the ensemble draws and the estimator together.
//! This is the library's main entry point ([`Metric`]).

use std::path::PathBuf;

use crate::ensemble::{scale_levels_for, Draw, Transform};
use crate::error::{Error, Result};
use crate::estimate::decision::{decide_plan, Decision, Gate};
use crate::estimate::multi::{MultiEstimate, Paired, PairedPlans};
use crate::estimate::multi_fidelity::{BlockValues, Blocks, Fidelity, TwoStream, MAX_BLOCK};
use crate::estimate::sampler::{Plan, SamplerKind};
use crate::estimate::sequential::{check_budget, sample};
use crate::estimate::{Estimate, Progress, Sampling};
use crate::heatmap::{input_map, Accumulator, Heatmap};
use crate::image::{check_same_size, Image};
use crate::network::evaluator::{MapSink, SampleArea, SampleEvaluator, SamplePair};
use crate::network::models::MetricKind;
use crate::network::runtime::{Device, RuntimeOptions};
use crate::network::taps::{Precision, Taps};
use crate::network::backend::Backend;

/// Pixels of full-size samples that one adaptive round holds (see [`round_samples`]). It sized
/// the fused batches too before they were bounded by `ELPIPS_FUSED_PIXELS`; kept so that
/// seeded adaptive runs draw the same rounds as before.
const ROUND_PIXELS: usize = 1 << 19;
/// Samples per round at most: the adaptive rule is checked after each round, so rounds must
/// stay short enough not to overshoot the target by much on small images.
const ROUND_SAMPLES: usize = 16;
/// The cheap stream's cost on one draw as a share of one full E-LPIPS sample: 0.096 s against
/// 1.785 s on the same 8 draws of the 512 x 512 noise pair, in process, 2 cores (AMD EPYC,
/// AVX2, 2026-12-07; `cargo bench --bench estimator -- streams`). For reports
/// (sample-equivalents) and block sizes; the estimate does not depend on it.
pub const CHEAP_STREAM_COST: f64 = 0.055;

/// Everything that configures a [`Metric`].
#[derive(Clone, Debug)]
pub struct MetricOptions {
    /// Which metric (E-LPIPS by default).
    pub metric: MetricKind,
    /// Directory holding the models (`<metric>.features.onnx` for LPIPS, also `<metric>.onnx`
    /// for E-LPIPS); `None` = `ELPIPS_MODEL_DIR`, then the checkout's `weights/models`.
    pub model_dir: Option<PathBuf>,
    /// Custom linear weights (a safetensors file; `weights/convert.py safetensors` converts the
    /// authors' `.npy` dicts and lpips `.pth` files) replacing the model's.
    pub linear_weights: Option<PathBuf>,
    /// Where ONNX Runtime comes from, its threads and device.
    pub runtime: RuntimeOptions,
    /// Seed of the ensemble's random draws.
    pub seed: u64,
    /// How many E-LPIPS samples to draw (fixed or adaptive).
    pub sampling: Sampling,
    /// How E-LPIPS draws are chosen (independent draws by default).
    pub sampler: SamplerKind,
    /// E-LPIPS scale levels; `None` = the size rule `max(1, min(H, W) / 64)`.
    pub scale_levels: Option<u32>,
    /// Arithmetic of the networks (fp32 by default; int8 is opt-in, lpips-vgg and elpips-vgg).
    pub precision: Precision,
    /// The VGG metrics: tile core side in pixels (rounded up to 16); `Some(0)` = never tile;
    /// `None` = LPIPS-VGG tiles inputs above 1 Mpx in 512-pixel cores; E-LPIPS tiles samples
    /// whose input is above 0.3 Mpx in the grid with the least overlap whose tiles hold at most
    /// 2^18 pixels with their margins (it holds more beside a tile). LPIPS-VGG tiles the image;
    /// E-LPIPS tiles each sample's transformed input (its network input), with that sample's
    /// dropout masks cut to each tile. The tiled distance equals the untiled one to float32
    /// rounding (see `network::taps`).
    pub tile_size: Option<u32>,
    /// Which part of its transformed pair an E-LPIPS sample evaluates: by default the whole
    /// pair ([`SampleArea::Whole`], the authors' estimator), or, opted in, one tile of the
    /// draws whose network input is above 0.3 Mpx, chosen and weighted so that the expectation
    /// is the same ([`SampleArea::Auto`]; heatmaps and a given `tile_size` take whole samples).
    pub sample_area: SampleArea,
    /// Two-stream (multi-fidelity) E-LPIPS estimates: each full sample comes with this many
    /// draws evaluated by the cheap stream only (taps 0 and 1 of the network: the image and
    /// relu1_1, ~5.5% of a sample), whose spread around the full draw's own cheap value is a
    /// control variate with mean exactly 0, so the expectation stays the full network's
    /// (`crate::estimate::multi_fidelity`, docs/estimator.md). 0 (the default) = one stream.
    /// Applies to compare, decide and compare_many of pairs whose samples run whole (up to
    /// ~540 x 540); heatmaps and larger pairs take one stream. Iid or control draws only.
    pub cheap_draws: u32,
}

impl Default for MetricOptions {
    fn default() -> Self {
        MetricOptions {
            metric: MetricKind::ElpipsVgg,
            model_dir: None,
            linear_weights: None,
            runtime: RuntimeOptions::default(),
            seed: 0,
            sampling: Sampling::DEFAULT,
            sampler: SamplerKind::default(),
            scale_levels: None,
            precision: Precision::Fp32,
            tile_size: None,
            sample_area: SampleArea::Whole,
            cheap_draws: 0,
        }
    }
}

impl MetricOptions {
    /// Refuses cheap draws the two-stream estimate cannot take.
    fn validate_cheap_draws(&self) -> Result<()> {
        if self.cheap_draws == 0 {
            return Ok(());
        }
        if !self.metric.is_ensemble() {
            return Err(Error::invalid(format!("`cheap_draws` applies to elpips-vgg only, not {} (deterministic)", self.metric)));
        }
        if self.cheap_draws >= MAX_BLOCK {
            return Err(Error::invalid(format!("`cheap_draws` is {}; use 0 to {} cheap draws per full sample", self.cheap_draws, MAX_BLOCK - 1)));
        }
        if self.sampler == SamplerKind::Stratified {
            return Err(Error::invalid("`cheap_draws` takes iid or control draws, not stratified ones; use `sampler` iid or control"));
        }
        Ok(())
    }
}

/// A reference prepared for many candidates ([`Metric::prepare_reference`]). For the LPIPS
/// metrics it holds the reference's taps, so each candidate costs one network pass instead of
/// two; for E-LPIPS (whose features depend on each sample's transform and dropout) it holds the
/// image.
pub struct Reference {
    image: Image,
    taps: Option<(FeaturesKey, Taps)>,
}

impl Reference {
    /// The reference image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Bytes of precomputed taps held (0 when none).
    pub fn taps_bytes(&self) -> usize {
        self.taps.as_ref().map_or(0, |(_, t)| t.bytes())
    }
}

/// What reference taps depend on: taps from one metric are reused only by an equal one.
#[derive(Clone, Debug, PartialEq)]
struct FeaturesKey {
    metric: MetricKind,
    precision: Precision,
    model_dir: Option<PathBuf>,
    linear_weights: Option<PathBuf>,
}

/// A loaded metric. Not `Sync`: use one per thread (ONNX Runtime sessions run with `&mut`).
pub struct Metric {
    options: MetricOptions,
    /// The networks, their buffers and tiling: every sample and pair is evaluated there.
    evaluator: SampleEvaluator,
}

impl Metric {
    /// Loads the runtime and the model named in `options`.
    pub fn new(options: MetricOptions) -> Result<Self> {
        options.sampling.validate()?;
        options.runtime.validate()?;
        if options.scale_levels == Some(0) {
            return Err(Error::invalid("`scale_levels` must be at least 1"));
        }
        if options.scale_levels.is_some() && !options.metric.is_ensemble() {
            return Err(Error::invalid(format!("`scale_levels` applies to elpips-vgg only, not {}", options.metric)));
        }
        options.validate_cheap_draws()?;
        let o = &options;
        let evaluator =
            SampleEvaluator::open(o.metric, o.model_dir.as_deref(), o.linear_weights.as_deref(), &o.runtime, o.precision, o.tile_size, o.sample_area)?;
        Ok(Metric { options, evaluator })
    }

    /// Switches the arithmetic (see [`MetricOptions::precision`]); fails, leaving the metric as
    /// it was, where the precision is not built for this metric.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        self.evaluator.set_precision(precision)?;
        self.options.precision = precision;
        Ok(())
    }

    /// Sets [`MetricOptions::tile_size`].
    pub fn set_tile_size(&mut self, tile_size: Option<u32>) {
        self.options.tile_size = tile_size;
        self.evaluator.set_tile_size(tile_size);
    }

    /// Sets [`MetricOptions::sample_area`].
    pub fn set_sample_area(&mut self, sample_area: SampleArea) {
        self.options.sample_area = sample_area;
        self.evaluator.set_sample_area(sample_area);
    }

    /// Whether E-LPIPS comparisons of a pair of this size tile-sample some of their draws
    /// (heatmaps never do); what a result's `sample_area` reports (`tiles` / `whole`). `false`
    /// for LPIPS.
    pub fn tile_sampled(&self, height: u32, width: u32) -> bool {
        self.evaluator.tile_sampled(height as usize, width as usize)
    }

    /// Whether E-LPIPS comparisons and gates of a pair of this size run two streams (the
    /// options ask for [`MetricOptions::cheap_draws`] and the pair's samples run whole). `false`
    /// for LPIPS and for heatmaps.
    pub fn two_streams(&self, height: u32, width: u32) -> bool {
        self.cheap_draws_per_sample(height, width) > 0
    }

    /// The cheap-only draws each full sample of a comparison or gate of a pair of this size
    /// comes with: [`MetricOptions::cheap_draws`] where two streams run, else 0. A result's
    /// `cheap_draws` is its `samples` times this.
    pub fn cheap_draws_per_sample(&self, height: u32, width: u32) -> u32 {
        if self.evaluator.two_streams(height as usize, width as usize) {
            self.options.cheap_draws
        } else {
            0
        }
    }

    /// The device the networks run on (CPU, or CUDA when asked for and available).
    pub fn device(&self) -> Device {
        self.evaluator.device()
    }

    /// The CPU kernels the networks run on (MLAS or OpenVINO; what `auto` chose): the feature
    /// network's where it is open (LPIPS, int8, bf16), else the fused model's.
    pub fn backend(&self) -> Backend {
        self.evaluator.backend()
    }

    fn features_key(&self) -> FeaturesKey {
        let o = &self.options;
        FeaturesKey { metric: o.metric, precision: o.precision, model_dir: o.model_dir.clone(), linear_weights: o.linear_weights.clone() }
    }

    /// Prepares `image` as the reference of many comparisons (see [`Reference`]).
    pub fn prepare_reference(&mut self, image: &Image) -> Result<Reference> {
        self.check_pair(image, image)?;
        let key = self.features_key();
        let taps = self.evaluator.reference_taps(image)?.map(|t| (key, t));
        Ok(Reference { image: image.clone(), taps })
    }

    /// Compares `candidate` to a prepared reference: the same answer as [`Metric::compare`] with
    /// the reference's image (bit for bit), with the reference's pass saved for LPIPS.
    pub fn compare_reference(&mut self, reference: &Reference, candidate: &Image) -> Result<Estimate> {
        self.check_pair(&reference.image, candidate)?;
        match &reference.taps {
            Some((key, taps)) if *key == self.features_key() => Ok(Estimate::exact(self.evaluator.distance_against(taps, candidate)?)),
            _ => self.compare(&reference.image, candidate),
        }
    }

    /// Which metric this is.
    pub fn kind(&self) -> MetricKind {
        self.options.metric
    }

    /// Changes the seed of the E-LPIPS draws: estimates under different seeds are independent,
    /// under one seed they share their draws (common random numbers).
    pub fn set_seed(&mut self, seed: u64) {
        self.options.seed = seed;
    }

    /// Changes how many E-LPIPS samples later comparisons draw (a long-lived caller such as
    /// `elpips serve` varies it per request without reloading the model).
    pub fn set_sampling(&mut self, sampling: Sampling) -> Result<()> {
        sampling.validate()?;
        self.options.sampling = sampling;
        Ok(())
    }

    /// The options it was made with (and changed by the setters since).
    pub fn options(&self) -> &MetricOptions {
        &self.options
    }

    /// Scale levels E-LPIPS uses for an image of this size.
    pub fn scale_levels(&self, height: u32, width: u32) -> u32 {
        self.options.scale_levels.unwrap_or_else(|| scale_levels_for(height, width))
    }

    /// The scale levels a result for an image of this size reports: E-LPIPS's, `None` for LPIPS
    /// (which has none). The CLI's `scale_levels` field and the C `ElpipsResult` both read this.
    pub fn result_levels(&self, height: u32, width: u32) -> Option<u32> {
        self.kind().is_ensemble().then(|| self.scale_levels(height, width))
    }

    /// Checks that the pair can be compared with this metric; returns nothing on success.
    pub fn check_pair(&self, reference: &Image, candidate: &Image) -> Result<()> {
        check_same_size(reference, candidate)?;
        let (w, h) = (reference.width(), reference.height());
        let kind = self.kind();
        let mut min = kind.min_input_size();
        let mut hint = String::new();
        if kind.is_ensemble() {
            // The coarsest level must keep at least 9 pixels so that, with the 7-pixel offset
            // padding, the network still sees 16.
            let levels = self.scale_levels(h, w);
            if levels > 1 {
                let needed = elpips_min_size(levels);
                if needed > min {
                    min = needed;
                    hint = format!(" with {levels} scale levels (use fewer `scale_levels`, or leave them to the size rule)");
                }
            }
        }
        if w.min(h) < min {
            return Err(Error::ImageTooSmall { width: w, height: h, min, metric: kind.to_string(), hint });
        }
        Ok(())
    }

    /// Compares `candidate` to `reference`.
    ///
    /// LPIPS metrics return the exact distance. E-LPIPS returns the Monte-Carlo mean over the
    /// options' sampling policy, with its standard error.
    pub fn compare(&mut self, reference: &Image, candidate: &Image) -> Result<Estimate> {
        self.compare_with_progress(reference, candidate, &mut |_| {})
    }

    /// [`Metric::compare`], calling `progress` after every batch of samples.
    pub fn compare_with_progress(
        &mut self,
        reference: &Image,
        candidate: &Image,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Estimate> {
        self.check_pair(reference, candidate)?;
        if !self.kind().is_ensemble() {
            return Ok(Estimate::exact(self.evaluator.lpips_distance(reference, candidate)?));
        }
        let o = &self.options;
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let sampling = o.sampling;
        if let Some(mut two) = self.two_stream_for(h, w)? {
            check_budget(two.plan(), sampling, h, w)?;
            let candidates = [candidate];
            let pair = self.evaluator.pair(reference, &candidates)?;
            let evaluator = &mut self.evaluator;
            let mut evaluate = |blocks: &mut Blocks| Ok(evaluate_blocks(evaluator, &pair, blocks)?.swap_remove(0));
            let converged = sample(&mut two, sampling, round_samples(h, w), &mut evaluate, progress)?;
            return Ok(two.estimate(converged));
        }
        let mut plan = self.plan_for(reference, o.sampler, o.seed, sampling)?;
        self.run_plan(reference, candidate, &mut plan, sampling, progress, None)
    }

    /// The two-stream estimate of an E-LPIPS comparison of an `h x w` pair under the options'
    /// sampler and seed, where they ask for cheap draws and the pair's samples run whole;
    /// `None` where one stream runs.
    fn two_stream_for(&self, h: usize, w: usize) -> Result<Option<TwoStream>> {
        if !self.two_streams(h as u32, w as u32) {
            return Ok(None);
        }
        let o = &self.options;
        let levels = self.scale_levels(h as u32, w as u32);
        // The cheap value of a full draw is a run of its own (the same function as the
        // cheap-only draws', so their difference has mean exactly 0); prior 0: a tap's share
        // moves with the distance but does not estimate it.
        let fidelity = Fidelity { block: o.cheap_draws + 1, cheap_cost: CHEAP_STREAM_COST, cheap_in_full: false, prior: 0.0 };
        TwoStream::new(o.sampler, o.seed, levels, h, w, fidelity).map(Some)
    }

    /// The sampling plan of an E-LPIPS comparison with `reference`, once `sampling` is known to
    /// be long enough to estimate its error.
    fn plan_for(&self, reference: &Image, sampler: SamplerKind, seed: u64, sampling: Sampling) -> Result<Plan> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let levels = self.scale_levels(h as u32, w as u32);
        let plan = Plan::new(sampler, seed, levels, h, w);
        check_budget(&plan, sampling, h, w)?;
        Ok(plan)
    }

    /// [`Metric::compare_with_progress`], also returning where the images differ: a per-pixel
    /// map in image coordinates whose mean is the returned distance (see [`Heatmap`]).
    /// E-LPIPS averages every sample's map, carried back through that sample's transform;
    /// LPIPS returns its single map (like lpips' `spatial=True`, with area upsampling).
    pub fn compare_with_heatmap(
        &mut self,
        reference: &Image,
        candidate: &Image,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Estimate, Heatmap)> {
        let o = &self.options;
        self.heatmap_run(reference, candidate, o.sampler, o.seed, o.sampling, progress)
    }

    /// The heatmap (and estimate) of `samples` draws of `sampler` under `seed`: what
    /// [`Metric::compare_with_heatmap`] gives with those options, bit for bit, while this
    /// metric's own options stay as they are. For callers that need several independent maps
    /// of one pair (the map rules of `elpips check`), or the map of the draws a gate used.
    pub fn heatmap_of_draws(&mut self, reference: &Image, candidate: &Image, sampler: SamplerKind, seed: u64, samples: u32) -> Result<(Estimate, Heatmap)> {
        let sampling = Sampling::Fixed(samples);
        sampling.validate()?;
        self.heatmap_run(reference, candidate, sampler, seed, sampling, &mut |_| {})
    }

    fn heatmap_run(
        &mut self,
        reference: &Image,
        candidate: &Image,
        sampler: SamplerKind,
        seed: u64,
        sampling: Sampling,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Estimate, Heatmap)> {
        self.check_pair(reference, candidate)?;
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let mut acc = Accumulator::new(w, h);
        if !self.kind().is_ensemble() {
            // The path `compare` takes, tiled alike, so the two report the same distance.
            let (d, maps) = self.evaluator.lpips_maps(reference, candidate)?;
            let taps: Vec<(usize, usize, &[f32])> = maps.iter().map(|(mh, mw, m)| (*mh, *mw, m.as_slice())).collect();
            acc.add(0, None, &input_map(&taps, h, w), h, w);
            return Ok((Estimate::exact(d), acc.finish(&[1.0])));
        }
        self.evaluator.check_has_maps()?;
        let mut plan = self.plan_for(reference, sampler, seed, sampling)?;
        let estimate = self.run_plan(reference, candidate, &mut plan, sampling, progress, Some(&mut acc))?;
        Ok((estimate, acc.finish(&plan.stratum_weights())))
    }

    /// Answers "is the distance of this pair at most `gate.threshold`?" with as few samples as
    /// the gate's error rate allows (see [`crate::estimate::decision`] for the stopping rule and its
    /// guarantee). The gate, not the options' sampling policy, sets the sample counts; the
    /// options' sampler and seed apply. Deterministic metrics (LPIPS) decide exactly at once.
    pub fn decide(&mut self, reference: &Image, candidate: &Image, gate: &Gate) -> Result<Decision> {
        self.decide_with_progress(reference, candidate, gate, &mut |_| {})
    }

    /// [`Metric::decide`], calling `progress` after every batch of samples.
    pub fn decide_with_progress(
        &mut self,
        reference: &Image,
        candidate: &Image,
        gate: &Gate,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Decision> {
        gate.validate()?;
        self.check_pair(reference, candidate)?;
        if !self.kind().is_ensemble() {
            let d = self.evaluator.lpips_distance(reference, candidate)?;
            return Ok(Decision::exact(d, gate));
        }
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let per_round = round_samples(h, w);
        let candidates = [candidate];
        if let Some(mut two) = self.two_stream_for(h, w)? {
            let pair = self.evaluator.pair(reference, &candidates)?;
            let evaluator = &mut self.evaluator;
            return decide_plan(&mut two, gate, per_round, &mut |blocks| Ok(evaluate_blocks(evaluator, &pair, blocks)?.swap_remove(0)), progress);
        }
        let levels = self.scale_levels(h as u32, w as u32);
        let mut plan = Plan::new(self.options.sampler, self.options.seed, levels, h, w);
        let pair = self.evaluator.pair(reference, &candidates)?;
        decide_plan(&mut plan, gate, per_round, &mut |draws| Ok(self.evaluator.evaluate_draws(&pair, draws, None)?.swap_remove(0)), progress)
    }

    /// Compares several candidates to one reference with common random numbers: every sample's
    /// draw is applied to all of them, and the result holds each distance and every pairwise
    /// difference with its own standard error (see [`crate::estimate::multi`]). The options' sampling
    /// policy applies to every candidate's distance. Deterministic metrics give exact values.
    pub fn compare_many(&mut self, reference: &Image, candidates: &[&Image]) -> Result<MultiEstimate> {
        self.compare_many_with_progress(reference, candidates, &mut |_| {})
    }

    /// [`Metric::compare_many`], calling `progress` after every batch (its estimate is the
    /// first candidate's).
    pub fn compare_many_with_progress(
        &mut self,
        reference: &Image,
        candidates: &[&Image],
        progress: &mut dyn FnMut(Progress),
    ) -> Result<MultiEstimate> {
        if candidates.is_empty() {
            return Err(Error::invalid("no candidates to compare"));
        }
        for c in candidates {
            self.check_pair(reference, c)?;
        }
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let ensemble = self.kind().is_ensemble();
        // LPIPS records its one exact value as a single one-level draw.
        let levels = self.result_levels(h as u32, w as u32).unwrap_or(1);
        let mut plans = PairedPlans::new(self.options.sampler, self.options.seed, levels, h, w, candidates.len());
        if !ensemble {
            // The reference's pass once, then each candidate against it: the path `compare` takes,
            // so each distance equals its plain comparison exactly.
            let prepared = self.prepare_reference(reference)?;
            let values = candidates.iter().map(|c| Ok(vec![self.compare_reference(&prepared, c)?.distance])).collect::<Result<Vec<_>>>()?;
            plans.record(&[Draw::iid(0, 0, 1)], &values);
            let mut m = plans.estimate(true);
            m.distances.iter_mut().for_each(|e| *e = Estimate::exact(e.distance));
            m.samples = 1;
            return Ok(m);
        }
        let sampling = self.options.sampling;
        if let Some(two) = self.two_stream_for(h, w)? {
            check_budget(two.plan(), sampling, h, w)?;
            let mut paired = Paired::from_fn(candidates.len(), || two.clone());
            let pair = self.evaluator.pair(reference, candidates)?;
            let evaluator = &mut self.evaluator;
            let mut evaluate = |blocks: &mut Blocks| evaluate_blocks(evaluator, &pair, blocks);
            let converged = sample(&mut paired, sampling, round_samples(h, w), &mut evaluate, progress)?;
            return Ok(paired.estimate(converged));
        }
        check_budget(&plans.driver, sampling, h, w)?;
        // Every candidate sees the same draws (and, tile-sampled, the same tiles).
        let pair = self.evaluator.pair(reference, candidates)?;
        let mut evaluate = |draws: &mut [Draw]| self.evaluator.evaluate_draws(&pair, draws, None);
        let converged = sample(&mut plans, sampling, round_samples(h, w), &mut evaluate, progress)?;
        Ok(plans.estimate(converged))
    }

    /// Draws and evaluates samples of `plan` until `sampling` is met.
    fn run_plan(
        &mut self,
        reference: &Image,
        candidate: &Image,
        plan: &mut Plan,
        sampling: Sampling,
        progress: &mut dyn FnMut(Progress),
        mut heat: Option<&mut Accumulator>,
    ) -> Result<Estimate> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let candidates = [candidate];
        let pair = self.evaluator.pair(reference, &candidates)?;
        let mut evaluate = |draws: &mut [Draw]| -> Result<Vec<f64>> {
            let values = match heat.as_deref_mut() {
                None => self.evaluator.evaluate_draws(&pair, draws, None),
                Some(acc) => {
                    let mut sink = |draw: &Draw, taps: &[(usize, usize, &[f32])], th: usize, tw: usize| {
                        acc.add(draw.stratum, Some(&draw.transform), &input_map(taps, th, tw), th, tw);
                    };
                    self.evaluator.evaluate_draws(&pair, draws, Some(&mut sink))
                }
            };
            Ok(values?.swap_remove(0))
        };
        let converged = sample(plan, sampling, round_samples(h, w), &mut evaluate, progress)?;
        Ok(plan.estimate(converged))
    }

    /// Evaluates the E-LPIPS samples with the given indices; returns their distances in order.
    ///
    /// Sample `i` draws its transform and dropout from its own stream `(seed, i)`, so the
    /// result does not depend on how samples are grouped into batches.
    pub fn evaluate_samples(
        &mut self,
        reference: &Image,
        candidate: &Image,
        levels: u32,
        indices: std::ops::Range<u64>,
    ) -> Result<Vec<f64>> {
        let seed = self.options.seed;
        let mut draws: Vec<Draw> = indices.map(|i| Draw::iid(seed, i, levels)).collect();
        self.evaluate_draws(reference, candidate, &mut draws)
    }

    /// Evaluates `draws` (each draw's dropout masks continue its stream); returns the distances
    /// in order. Draws whose transforms give the same network input size share a run.
    // Hidden: `Draw` is an internal type; the throughput test and the estimator bench drive it.
    #[doc(hidden)]
    pub fn evaluate_draws(&mut self, reference: &Image, candidate: &Image, draws: &mut [Draw]) -> Result<Vec<f64>> {
        let candidates = [candidate];
        let pair = self.evaluator.pair(reference, &candidates)?;
        Ok(self.evaluator.evaluate_draws(&pair, draws, None)?.swap_remove(0))
    }

    /// Every tile of a tile-sampled draw, as a sample that chose it would run it: per tile, its
    /// selection probability and its part of the draw's distance (see
    /// [`SampleEvaluator::tile_parts`]); empty where the draw runs whole.
    #[doc(hidden)]
    pub fn tile_parts(&mut self, reference: &Image, candidate: &Image, draw: &Draw) -> Result<Vec<(f64, f64)>> {
        let candidates = [candidate];
        let pair = self.evaluator.pair(reference, &candidates)?;
        Ok(self.evaluator.tile_parts(&pair, draw)?.into_iter().map(|(q, parts)| (q, parts[0])).collect())
    }

    /// [`Metric::evaluate_draws`] with whole samples, handing each sample's per-tap maps on its
    /// network input to `each` (the draw, the maps `(H_t, W_t, values)`, the input's size):
    /// what the tile bench reads to find any tile's part of a draw.
    #[doc(hidden)]
    pub fn evaluate_draws_maps(&mut self, reference: &Image, candidate: &Image, draws: &mut [Draw], each: &mut MapSink) -> Result<Vec<f64>> {
        self.evaluator.check_has_maps()?;
        let candidates = [candidate];
        let pair = self.evaluator.pair(reference, &candidates)?;
        Ok(self.evaluator.evaluate_draws(&pair, draws, Some(each))?.swap_remove(0))
    }

    /// Per draw, its distance split by tap (each tap's map averaged; they sum to the distance),
    /// for pairs whose samples do not tile: what the estimator bench dumps to try controls
    /// offline (the early taps predict a sample's distance; docs/log.md).
    #[doc(hidden)]
    pub fn evaluate_draws_taps(&mut self, reference: &Image, candidate: &Image, draws: &mut [Draw]) -> Result<Vec<Vec<f64>>> {
        self.evaluator.evaluate_draws_taps(reference, candidate, draws)
    }

    /// The cheap stream's value of each of `draws` (taps 0 and 1 of its distance, from the
    /// cheap model; see [`SampleEvaluator::cheap_values`]), the streams read from copies:
    /// what the tests compare with the full network's own taps 0 and 1 of the same draws.
    #[doc(hidden)]
    pub fn cheap_values(&mut self, reference: &Image, candidate: &Image, draws: &[Draw]) -> Result<Vec<f64>> {
        let candidates = [candidate];
        let pair = self.evaluator.pair(reference, &candidates)?;
        Ok(self.evaluator.cheap_values(&pair, draws)?.swap_remove(0))
    }

    /// [`Metric::evaluate_draws`] for several candidates against one reference with the same
    /// draws (common random numbers): within each group of samples the reference's features
    /// are computed once and every candidate is compared with them. Returns `[candidate][draw]`.
    /// Equal, to float32 rounding, to calling `evaluate_draws` per candidate with fresh copies
    /// of `draws`; costs `(1 + K) / 2K` of that for K candidates.
    #[doc(hidden)]
    pub fn evaluate_draws_many(&mut self, reference: &Image, candidates: &[&Image], draws: &mut [Draw]) -> Result<Vec<Vec<f64>>> {
        let pair = self.evaluator.pair(reference, candidates)?;
        self.evaluator.evaluate_draws_many(&pair, draws)
    }

    /// One network evaluation of the pair: optionally transformed by `transform`, optionally
    /// with dropout masks drawn from the start of stream `(seed, index)` (E-LPIPS only). With
    /// neither, this is the deterministic network distance (for LPIPS, the metric itself).
    pub fn evaluate(
        &mut self,
        reference: &Image,
        candidate: &Image,
        transform: Option<&Transform>,
        dropout_stream: Option<(u64, u64)>,
    ) -> Result<f64> {
        check_same_size(reference, candidate)?;
        if (transform.is_some() || dropout_stream.is_some()) && !self.kind().is_ensemble() {
            return Err(Error::invalid(format!("{} has no transforms or dropout", self.kind())));
        }
        if !self.kind().is_ensemble() {
            // Whole, never tiled: the network's own distance of the pair.
            self.check_pair(reference, candidate)?;
            return self.evaluator.lpips_whole_distance(reference, candidate);
        }
        self.evaluator.evaluate_one(reference, candidate, transform, dropout_stream)
    }
}

/// Evaluates a round of two-stream blocks for every candidate of `pair` (`[candidate]`): each
/// full draw's cheap value (read from a copy of its stream, before the full network consumes
/// it, so both streams see the same transform and dropout), its full distance, and each
/// cheap-only draw's cheap value.
fn evaluate_blocks(evaluator: &mut SampleEvaluator, pair: &SamplePair, blocks: &mut Blocks) -> Result<Vec<BlockValues>> {
    let full_cheap = evaluator.cheap_values(pair, &blocks.full)?;
    let full = evaluator.evaluate_draws(pair, &mut blocks.full, None)?;
    let cheap = evaluator.cheap_values(pair, &blocks.cheap)?;
    Ok(full.into_iter().zip(full_cheap).zip(cheap).map(|((full, full_cheap), cheap)| BlockValues { full, full_cheap, cheap }).collect())
}

/// Samples drawn per round for an `h x w` pair: as many full-size samples as [`ROUND_PIXELS`] holds.
fn round_samples(h: usize, w: usize) -> u64 {
    let (fh, fw) = Transform::neutral().output_size(h, w);
    (ROUND_PIXELS / (fh * fw)).clamp(1, ROUND_SAMPLES) as u64
}

/// Smallest side an image needs for E-LPIPS with `levels` scale levels.
pub fn elpips_min_size(levels: u32) -> u32 {
    // Saturating: a level count from a wrapped or hostile integer must not wrap the size back
    // under an image's side (it would then run with a transform sized by the count).
    levels.saturating_mul(7).saturating_add(2).max(MetricKind::ElpipsVgg.min_input_size())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ensemble::scaled_len;

    #[test]
    fn min_size_rule_keeps_sixteen_pixels_at_the_coarsest_level() {
        for levels in 1..12u32 {
            let n = elpips_min_size(levels) as usize;
            assert!(scaled_len(n, levels as usize) + 7 >= 16);
            if n > 16 {
                assert!(scaled_len(n - 1, levels as usize) + 7 < 16);
            }
        }
    }
}
