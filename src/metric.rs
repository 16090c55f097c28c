//! Comparing images: ties the named model, the ensemble draws and the estimator together.
//! This is the library's main entry point ([`Metric`]).

use std::collections::BTreeMap;
use std::path::PathBuf;


use crate::ensemble::{sample_rng, scale_levels_for, stack_transformed, DropoutBatch, SampleDropout, Transform};
use crate::estimate::decision::{decide_plan, Decision, Gate};
use crate::error::{Error, Result};
use crate::heatmap::{input_map, Accumulator, Heatmap};
use crate::estimate::multi::{MultiEstimate, PairedPlans};
use crate::estimate::{Estimate, Progress, Sampling};
use crate::ensemble::{for_each_batch, group_by_size, Draw};
use crate::estimate::sampler::{Plan, SamplerKind};
use crate::estimate::sequential::{check_budget, sample};
use crate::network::taps::{
    tiled, tiled_distance, tiled_maps, FeatureNet, Precision, TapMap, Taps, TileGrid, AUTO_TILE_PIXELS, DEFAULT_TILE, ELPIPS_FUSED_PIXELS,
    ELPIPS_TILE_PIXELS,
};
use crate::image::{check_same_size, Image};
use crate::linear_weights::LinearWeights;
use crate::network::models::{contract, model_dir_in, MetricKind};
use crate::network::backend::Backend;
use crate::network::runtime::{release_free_heap, Buffers, Device, RuntimeOptions, Session};

/// Pixels of full-size samples that one adaptive round holds (see [`round_samples`]). It sized
/// the fused batches too before they were bounded by [`ELPIPS_FUSED_PIXELS`]; kept so that
/// seeded adaptive runs draw the same rounds as before.
const ROUND_PIXELS: usize = 1 << 19;
/// Samples per round at most: the adaptive rule is checked after each round, so rounds must
/// stay short enough not to overshoot the target by much on small images.
const ROUND_SAMPLES: usize = 16;

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
        }
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
    /// The fused model (`<metric>.onnx`: both images in, distance and per-tap maps out), opened
    /// for E-LPIPS only, whose sampled batches run there. LPIPS runs the feature model and the
    /// head everywhere (`features`), so it never opens this.
    session: Option<Session>,
    /// Where `session` came from, and how it keeps its buffers: reopened with the other kind
    /// when a pair needs it ([`Metric::fit_buffers`]).
    fused: Option<(PathBuf, Buffers)>,
    mask_names: Vec<String>,
    lin_names: Vec<String>,
    /// Custom linear weights fed over the model's built-in ones.
    linear_weights: Option<LinearWeights>,
    /// The feature network (reference reuse, tiling, int8), opened on first use.
    features: Option<FeatureNet>,
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
        let kind = options.metric;
        let linear_weights = match &options.linear_weights {
            None => None,
            Some(path) => {
                let bytes = crate::integrity::read_weights_file(path).map_err(|e| Error::LinearWeights(format!("{}: {e}", path.display())))?;
                let lw = LinearWeights::from_bytes(&bytes).map_err(|e| Error::LinearWeights(format!("{}: {e}", path.display())))?;
                let want = kind.tap_channels();
                if lw.channels() != want {
                    return Err(Error::LinearWeights(format!(
                        "{} has {} taps with channels {:?}, but {kind} needs {} taps with channels {want:?}",
                        path.display(),
                        lw.taps.len(),
                        lw.channels(),
                        want.len()
                    )));
                }
                Some(lw)
            }
        };
        let taps = kind.tap_channels().len();
        let lin_names: Vec<String> = (0..taps).map(contract::lin).collect();
        let mask_names = contract::masks_of(kind);
        let (session, fused) = if kind.is_ensemble() {
            let path = model_dir_in(options.model_dir.as_deref(), options.runtime.install_dir.as_deref()).join(kind.file_name());
            // The arena, for pairs that never tile: most pairs (see `fit_buffers`).
            let session = Session::open_with(&path, &options.runtime, Buffers::Arena)?;
            let inputs = session.input_names();
            let has = |n: &str| inputs.iter().any(|i| i == n);
            let expected_ok = has(contract::REFERENCE)
                && has(contract::CANDIDATE)
                && mask_names.iter().all(|m| has(m))
                && lin_names.iter().all(|l| has(l))
                && !has(&contract::lin(taps));
            if !expected_ok {
                return Err(Error::Model(format!(
                    "{} is not a {kind} model (inputs: {}); rebuild the models with `make setup`",
                    path.display(),
                    inputs.join(", ")
                )));
            }
            (Some(session), Some((path, Buffers::Arena)))
        } else {
            (None, None)
        };
        let mut metric = Metric { options, session, fused, mask_names, lin_names, linear_weights, features: None };
        if !kind.is_ensemble() || metric.options.precision != Precision::Fp32 {
            // LPIPS runs only there, and int8 too: fail now if it cannot open.
            metric.open_features(Buffers::Arena)?;
        }
        Ok(metric)
    }

    /// Switches the arithmetic (see [`MetricOptions::precision`]); fails, leaving the metric as
    /// it was, where the precision is not built for this metric.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision != self.options.precision {
            let o = &self.options;
            let buffers = self.features.as_ref().map_or(Buffers::Arena, FeatureNet::buffers);
            let net = FeatureNet::open(o.metric, o.model_dir.as_deref(), &o.runtime, precision, self.linear_weights.as_ref(), buffers)?;
            self.options.precision = precision;
            self.features = Some(net);
        }
        Ok(())
    }

    /// Sets [`MetricOptions::tile_size`].
    pub fn set_tile_size(&mut self, tile_size: Option<u32>) {
        self.options.tile_size = tile_size;
    }

    /// The device the networks run on (CPU, or CUDA when asked for and available).
    pub fn device(&self) -> Device {
        match (&self.session, &self.features) {
            (Some(s), _) => s.device(),
            (None, Some(f)) => f.device(),
            // Not reached: `new` opens one of the two.
            (None, None) => Device::Cpu,
        }
    }

    /// The CPU kernels the networks run on (MLAS or OpenVINO; what `auto` chose): the feature
    /// network's where it is open (LPIPS, int8, bf16), else the fused model's.
    pub fn backend(&self) -> Backend {
        match (&self.features, &self.session) {
            (Some(f), _) => f.backend(),
            (None, Some(s)) => s.backend(),
            // Not reached: `new` opens one of the two.
            (None, None) => Backend::Mlas,
        }
    }

    /// The feature network with the [`Buffers`] an `h x w` pair wants (`pair_buffers`), opened
    /// on first use and reopened when the last pair wanted the other kind.
    fn feature_net_for(&mut self, h: usize, w: usize) -> Result<&mut FeatureNet> {
        let want = self.pair_buffers(h, w);
        self.open_features(want)
    }

    fn open_features(&mut self, want: Buffers) -> Result<&mut FeatureNet> {
        if self.features.as_ref().is_some_and(|f| f.buffers() != want) {
            self.features = None;
        }
        if self.features.is_none() {
            let o = &self.options;
            let net = FeatureNet::open(o.metric, o.model_dir.as_deref(), &o.runtime, o.precision, self.linear_weights.as_ref(), want)?;
            self.features = Some(net);
        }
        Ok(self.features.as_mut().expect("opened above"))
    }

    fn features_key(&self) -> FeaturesKey {
        let o = &self.options;
        FeaturesKey { metric: o.metric, precision: o.precision, model_dir: o.model_dir.clone(), linear_weights: o.linear_weights.clone() }
    }

    /// What E-LPIPS offers at fp32 only (the fused model's outputs).
    fn fp32_only(&self, what: &str) -> Error {
        Error::invalid(format!("{what} of {} run at fp32 only, not {}; use `precision` fp32", self.kind(), self.options.precision))
    }

    /// Whether an `h x w` pair's biggest E-LPIPS samples (level 1, with the offset's padding) run
    /// in tiles: then its runs of many shapes share the process, and keep no buffers between them.
    fn samples_tile(&self, h: usize, w: usize) -> bool {
        self.sample_tile(&Transform::neutral(), h, w).is_some()
    }

    /// The [`Buffers`] for an `h x w` pair's runs: freed per run where the pair tiles (LPIPS: the
    /// image; E-LPIPS: its full-size samples), else the arena.
    fn pair_buffers(&self, h: usize, w: usize) -> Buffers {
        let tiles = if self.kind().is_ensemble() { self.samples_tile(h, w) } else { self.tile_for(h, w).is_some() };
        if tiles {
            Buffers::Lean
        } else {
            Buffers::Arena
        }
    }

    /// Gives the fused session the [`Buffers`] an `h x w` pair wants (`pair_buffers`). Reopens
    /// the model when the last pair wanted the other kind (a fraction of a second; a pair that
    /// tiles takes minutes). The distances do not depend on it.
    fn fit_buffers(&mut self, h: usize, w: usize) -> Result<()> {
        let want = self.pair_buffers(h, w);
        if let Some((path, have)) = &self.fused {
            if *have != want {
                let path = path.clone();
                // The old session first: its weights and arena go before the new one loads.
                self.session = None;
                self.fused = None;
                self.session = Some(Session::open_with(&path, &self.options.runtime, want)?);
                self.fused = Some((path, want));
            }
        }
        Ok(())
    }

    /// The tiles of a network input of this size (LPIPS-VGG: the image; E-LPIPS: one sample's
    /// transformed image), or `None` to run it whole (always for AlexNet).
    fn tile_for(&self, h: usize, w: usize) -> Option<TileGrid> {
        if self.kind().tap_pools().is_none() {
            return None;
        }
        match self.options.tile_size {
            Some(0) => None,
            Some(t) => Some(TileGrid::square(h, w, t as usize)),
            None if self.kind().is_ensemble() => (h * w > ELPIPS_FUSED_PIXELS).then(|| TileGrid::within(h, w, ELPIPS_TILE_PIXELS)),
            None => (h as u64 * w as u64 > AUTO_TILE_PIXELS).then(|| TileGrid::square(h, w, DEFAULT_TILE as usize)),
        }
    }

    /// The LPIPS distance of a checked pair. The split path (reference taps, then the candidate
    /// against them) serves every LPIPS comparison, so a prepared reference gives bit-identical
    /// answers; big pairs are tiled.
    fn lpips_distance(&mut self, reference: &Image, candidate: &Image) -> Result<f64> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        if let Some(grid) = self.tile_for(h, w) {
            return tiled_distance(self.feature_net_for(h, w)?, reference.data(), candidate.data(), h, w, &grid);
        }
        let (_, maps) = self.lpips_whole_maps(reference.data(), candidate.data(), h, w)?;
        distance_of_maps(&maps)
    }

    /// LPIPS per-tap maps of a whole (untiled) `h x w` pair, with each map's `(H_t, W_t)`:
    /// reference taps, then the candidate against them.
    fn lpips_whole_maps(&mut self, reference: &[f32], candidate: &[f32], h: usize, w: usize) -> Result<WholeMaps> {
        let net = self.feature_net_for(h, w)?;
        let taps = net.taps(reference, 1, h, w, None)?;
        let maps = net.maps_against(&taps, candidate, 1, h, w, None, &[(0, 0)])?.swap_remove(0);
        Ok((taps.shapes.iter().map(|s| (s[2], s[3])).collect(), maps))
    }

    /// Prepares `image` as the reference of many comparisons (see [`Reference`]).
    pub fn prepare_reference(&mut self, image: &Image) -> Result<Reference> {
        self.check_pair(image, image)?;
        let (h, w) = (image.height() as usize, image.width() as usize);
        let taps = if self.kind().is_ensemble() || self.tile_for(h, w).is_some() {
            None
        } else {
            let key = self.features_key();
            Some((key, self.feature_net_for(h, w)?.taps(image.data(), 1, h, w, None)?))
        };
        Ok(Reference { image: image.clone(), taps })
    }

    /// Compares `candidate` to a prepared reference: the same answer as [`Metric::compare`] with
    /// the reference's image (bit for bit), with the reference's pass saved for LPIPS.
    pub fn compare_reference(&mut self, reference: &Reference, candidate: &Image) -> Result<Estimate> {
        self.check_pair(&reference.image, candidate)?;
        match &reference.taps {
            Some((key, taps)) if *key == self.features_key() => {
                let (h, w) = (candidate.height() as usize, candidate.width() as usize);
                let maps = self.feature_net_for(h, w)?.maps_against(taps, candidate.data(), 1, h, w, None, &[(0, 0)])?;
                Ok(Estimate::exact(distance_of_maps(&maps[0])?))
            }
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
            return Ok(Estimate::exact(self.lpips_distance(reference, candidate)?));
        }
        let mut plan = self.plan_for(reference)?;
        let estimate = self.run_plan(reference, candidate, &mut plan, progress, None)?;
        Ok(estimate)
    }

    /// The sampling plan of an E-LPIPS comparison with `reference`, once the options' sampling
    /// policy is known to be long enough to estimate its error.
    fn plan_for(&self, reference: &Image) -> Result<Plan> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let levels = self.scale_levels(h as u32, w as u32);
        let plan = Plan::new(self.options.sampler, self.options.seed, levels, h, w);
        check_budget(&plan, self.options.sampling, h, w)?;
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
        self.check_pair(reference, candidate)?;
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let mut acc = Accumulator::new(w, h);
        if !self.kind().is_ensemble() {
            // The path `compare` takes, tiled alike, so the two report the same distance.
            let (d, maps) = match self.tile_for(h, w) {
                Some(grid) => tiled_maps(self.feature_net_for(h, w)?, reference.data(), candidate.data(), h, w, &grid)?,
                None => {
                    let (sizes, per_tap) = self.lpips_whole_maps(reference.data(), candidate.data(), h, w)?;
                    let d = distance_of_maps(&per_tap)?;
                    (d, sizes.into_iter().zip(per_tap).map(|((mh, mw), m)| (mh, mw, m)).collect())
                }
            };
            let taps: Vec<(usize, usize, &[f32])> = maps.iter().map(|(mh, mw, m)| (*mh, *mw, m.as_slice())).collect();
            acc.add(0, None, &input_map(&taps, h, w), h, w);
            return Ok((Estimate::exact(d), acc.finish(&[1.0])));
        }
        self.check_has_maps()?;
        let mut plan = self.plan_for(reference)?;
        let estimate = self.run_plan(reference, candidate, &mut plan, progress, Some(&mut acc))?;
        Ok((estimate, acc.finish(&plan.stratum_weights())))
    }

    /// Checks that the fused model (E-LPIPS) has the per-tap map outputs heatmaps read.
    fn check_has_maps(&self) -> Result<()> {
        let outputs = self.session.as_ref().ok_or_else(|| no_fused_model(self.kind()))?.output_names();
        let taps = self.kind().tap_channels().len();
        if (0..taps).all(|t| outputs.iter().any(|o| *o == contract::map(t))) {
            return Ok(());
        }
        Err(Error::Model(format!(
            "the {} model has no per-tap maps (outputs: {}); heatmaps need model contract 2: rebuild the models with `make setup`",
            self.kind(),
            outputs.join(", ")
        )))
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
            let d = self.lpips_distance(reference, candidate)?;
            return Ok(Decision::exact(d, gate));
        }
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let levels = self.scale_levels(h as u32, w as u32);
        let mut plan = Plan::new(self.options.sampler, self.options.seed, levels, h, w);
        let per_round = round_samples(h, w);
        decide_plan(&mut plan, gate, per_round, &mut |draws| self.evaluate_draws(reference, candidate, draws), progress)
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
        check_budget(&plans.driver, sampling, h, w)?;
        let mut evaluate = |draws: &mut [Draw]| {
            // Each candidate's dropout continues a copy of the same streams.
            candidates.iter().map(|c| self.evaluate_draws(reference, c, &mut draws.to_vec())).collect::<Result<Vec<_>>>()
        };
        let converged = sample(&mut plans, sampling, round_samples(h, w), &mut evaluate, progress)?;
        Ok(plans.estimate(converged))
    }

    /// Draws and evaluates samples of `plan` until the sampling policy is met.
    fn run_plan(
        &mut self,
        reference: &Image,
        candidate: &Image,
        plan: &mut Plan,
        progress: &mut dyn FnMut(Progress),
        mut heat: Option<&mut Accumulator>,
    ) -> Result<Estimate> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let sampling = self.options.sampling;
        let mut evaluate = |draws: &mut [Draw]| self.evaluate_draws_into(reference, candidate, draws, heat.as_deref_mut());
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
        self.evaluate_draws_into(reference, candidate, draws, None)
    }

    /// Per draw, its distance split by tap (each tap's map averaged; they sum to the distance),
    /// for pairs whose samples do not tile: what the estimator bench dumps to try controls
    /// offline (the early taps predict a sample's distance; docs/estimator.md).
    #[doc(hidden)]
    pub fn evaluate_draws_taps(&mut self, reference: &Image, candidate: &Image, draws: &mut [Draw]) -> Result<Vec<Vec<f64>>> {
        check_same_size(reference, candidate)?;
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        if !self.kind().is_ensemble() || self.samples_tile(h, w) {
            return Err(Error::invalid("per-tap distances of draws: E-LPIPS pairs whose samples do not tile only"));
        }
        if self.options.precision != Precision::Fp32 {
            return Err(self.fp32_only("per-tap distances of draws"));
        }
        self.check_has_maps()?;
        self.fit_buffers(h, w)?;
        let mut out = vec![Vec::new(); draws.len()];
        for_each_batch(reference.data(), candidate.data(), (h, w), draws, ELPIPS_FUSED_PIXELS, &mut |batch, members| {
            let (n, th, tw) = (members.len(), batch.height, batch.width);
            let mask_inputs = batch.masks.inputs();
            let (_, maps) = self.run_with_maps(&batch.references, &batch.candidates, n, th, tw, Some(&mask_inputs), true)?;
            for (j, (slot, _)) in members.iter().enumerate() {
                out[*slot] = maps
                    .iter()
                    .map(|(shape, values)| {
                        let k = shape[2] * shape[3];
                        values[j * k..(j + 1) * k].iter().map(|&v| v as f64).sum::<f64>() / k as f64
                    })
                    .collect();
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Metric::evaluate_draws`], adding each sample's map to `heat` when given. Draws whose
    /// network input is above the tiling size run one at a time in tiles (feature model, masks
    /// cut from the sample's compact draw); the rest run in fused-model batches of at most
    /// [`ELPIPS_FUSED_PIXELS`], so memory does not grow with the number of draws.
    fn evaluate_draws_into(
        &mut self,
        reference: &Image,
        candidate: &Image,
        draws: &mut [Draw],
        mut heat: Option<&mut Accumulator>,
    ) -> Result<Vec<f64>> {
        if self.options.precision != Precision::Fp32 {
            // The fused model is fp32: int8 samples run on the int8 feature network, the path
            // of several candidates (and of tiles), with the same draws.
            if heat.is_some() {
                return Err(self.fp32_only("heatmaps"));
            }
            return Ok(self.evaluate_draws_many(reference, &[candidate], draws)?.swap_remove(0));
        }
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let mut out = vec![0.0; draws.len()];
        let tiled_slots: Vec<(usize, TileGrid)> =
            (0..draws.len()).filter_map(|i| self.sample_tile(&draws[i].transform, h, w).map(|grid| (i, grid))).collect();
        if tiled_slots.is_empty() {
            // The usual case: every draw batched, in place.
            let slots: Vec<usize> = (0..draws.len()).collect();
            self.run_batches(reference, candidate, draws, &slots, &mut out, heat.as_deref_mut())?;
        } else {
            // Copies of the untiled draws, whose advanced streams are put back after.
            let slots: Vec<usize> = (0..draws.len()).filter(|i| !tiled_slots.iter().any(|(t, _)| t == i)).collect();
            let mut rest: Vec<Draw> = slots.iter().map(|&i| draws[i].clone()).collect();
            self.run_batches(reference, candidate, &mut rest, &slots, &mut out, heat.as_deref_mut())?;
            for (slot, draw) in slots.into_iter().zip(rest) {
                draws[slot] = draw;
            }
        }
        for (slot, grid) in tiled_slots {
            let draw = &mut draws[slot];
            let (th, tw) = draw.transform.output_size(h, w);
            let mut results = self.tiled_sample(reference, &[candidate], draw, &grid, heat.is_some())?;
            let (d, maps) = results.swap_remove(0);
            out[slot] = d;
            if let Some(acc) = heat.as_deref_mut() {
                let taps: Vec<(usize, usize, &[f32])> = maps.iter().map(|(mh, mw, m)| (*mh, *mw, m.as_slice())).collect();
                acc.add(draw.stratum, Some(&draw.transform), &input_map(&taps, th, tw), th, tw);
            }
        }
        Ok(out)
    }

    /// The fused-model batches of `draws` (at most [`ELPIPS_FUSED_PIXELS`] each): draw `j`'s distance
    /// goes to `out[slots[j]]`, its map to `heat`.
    fn run_batches(
        &mut self,
        reference: &Image,
        candidate: &Image,
        draws: &mut [Draw],
        slots: &[usize],
        out: &mut [f64],
        mut heat: Option<&mut Accumulator>,
    ) -> Result<()> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        // A pair whose full-size samples tile: its batches share the process with tile runs,
        // so each gives its free heap back (memory kept between runs is what raised the peak).
        let big = self.samples_tile(h, w);
        self.fit_buffers(h, w)?;
        for_each_batch(reference.data(), candidate.data(), (h, w), draws, ELPIPS_FUSED_PIXELS, &mut |batch, members| {
            let (n, th, tw) = (members.len(), batch.height, batch.width);
            let mask_inputs = batch.masks.inputs();
            let (d, maps) = self.run_with_maps(&batch.references, &batch.candidates, n, th, tw, Some(&mask_inputs), heat.is_some())?;
            for (j, (slot, draw)) in members.iter().enumerate() {
                out[slots[*slot]] = d[j];
                if let Some(acc) = heat.as_deref_mut() {
                    add_maps(acc, &maps, j, draw.stratum, Some(&draw.transform), th, tw);
                }
            }
            if big {
                release_free_heap();
            }
            Ok(())
        })
    }

    /// The tiles of `transform`'s network input of an `h x w` pair (E-LPIPS).
    fn sample_tile(&self, transform: &Transform, h: usize, w: usize) -> Option<TileGrid> {
        let (th, tw) = transform.output_size(h, w);
        self.tile_for(th, tw)
    }

    /// One E-LPIPS sample in tiles: both images under the draw's transform, its 13 masks drawn
    /// compactly from its stream (the values the batched path draws), each candidate against
    /// the reference's taps per tile. Returns per candidate the distance and, with `keep_maps`,
    /// the per-tap maps over the transformed input, in the tiles of `grid`.
    fn tiled_sample(
        &mut self,
        reference: &Image,
        candidates: &[&Image],
        draw: &mut Draw,
        grid: &TileGrid,
        keep_maps: bool,
    ) -> Result<Vec<(f64, Vec<TapMap>)>> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let t = &draw.transform;
        let (th, tw) = t.output_size(h, w);
        let dropout = SampleDropout::draw(&mut draw.rng, th, tw);
        let reference = t.apply(reference.data(), h, w).data;
        let candidates: Vec<Vec<f32>> = candidates.iter().map(|c| t.apply(c.data(), h, w).data).collect();
        let views: Vec<&[f32]> = candidates.iter().map(Vec::as_slice).collect();
        let results = tiled(self.feature_net_for(h, w)?, &reference, &views, th, tw, grid, Some(&dropout), keep_maps)?;
        for (d, _) in &results {
            if !d.is_finite() {
                return Err(Error::Inference(format!("the network produced a non-finite distance ({d})")));
            }
        }
        Ok(results)
    }

    /// [`Metric::evaluate_draws`] for several candidates against one reference with the same
    /// draws (common random numbers): within each group of samples the reference's features
    /// are computed once and every candidate is compared with them. Returns `[candidate][draw]`.
    /// Equal, to float32 rounding, to calling `evaluate_draws` per candidate with fresh copies
    /// of `draws`; costs `(1 + K) / 2K` of that for K candidates.
    #[doc(hidden)]
    pub fn evaluate_draws_many(&mut self, reference: &Image, candidates: &[&Image], draws: &mut [Draw]) -> Result<Vec<Vec<f64>>> {
        if !self.kind().is_ensemble() {
            return Err(Error::invalid(format!("{} has no draws; use prepare_reference / compare_reference", self.kind())));
        }
        for c in candidates {
            check_same_size(reference, c)?;
        }
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let groups = group_by_size(draws, h, w);
        let big = self.samples_tile(h, w);
        let mut out = vec![vec![0.0; draws_len(&groups)]; candidates.len()];
        for ((th, tw), mut members) in groups {
            if let Some(grid) = self.tile_for(th, tw) {
                for (slot, draw) in members.iter_mut() {
                    for (k, (d, _)) in self.tiled_sample(reference, candidates, draw, &grid, false)?.into_iter().enumerate() {
                        out[k][*slot] = d;
                    }
                }
                continue;
            }
            let plane = 3 * th * tw;
            for chunk in members.chunks_mut((ELPIPS_FUSED_PIXELS / (th * tw)).max(1)) {
                let n = chunk.len();
                let mut buf = vec![0.0f32; n * plane];
                stack_transformed(reference.data(), h, w, chunk.iter().map(|(_, d)| &d.transform), plane, &mut buf);
                let masks = DropoutBatch::draw(th, tw, chunk.iter_mut().map(|(_, d)| &mut d.rng));
                let mask_inputs = masks.inputs();
                let net = self.feature_net_for(h, w)?;
                let ref_taps = net.taps(&buf, n, th, tw, Some(&mask_inputs))?;
                let pairs: Vec<(usize, usize)> = (0..n).map(|j| (j, j)).collect();
                for (k, cand) in candidates.iter().enumerate() {
                    stack_transformed(cand.data(), h, w, chunk.iter().map(|(_, d)| &d.transform), plane, &mut buf);
                    let maps = net.maps_against(&ref_taps, &buf, n, th, tw, Some(&mask_inputs), &pairs)?;
                    for (j, (slot, _)) in chunk.iter().enumerate() {
                        out[k][*slot] = distance_of_maps(&maps[j])?;
                    }
                }
                if big {
                    release_free_heap();
                }
            }
        }
        Ok(out)
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
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        if self.kind().is_ensemble() && self.options.precision != Precision::Fp32 {
            return Err(self.fp32_only("one network evaluation (`evaluate`)"));
        }
        if !self.kind().is_ensemble() {
            // Whole, never tiled: the network's own distance of the pair.
            self.check_pair(reference, candidate)?;
            let (_, maps) = self.lpips_whole_maps(reference.data(), candidate.data(), h, w)?;
            return distance_of_maps(&maps);
        }
        let (refs, cands, th, tw) = match transform {
            Some(t) => {
                let (a, b) = (t.apply(reference.data(), h, w), t.apply(candidate.data(), h, w));
                (a.data, b.data, a.height, a.width)
            }
            None => (reference.data().to_vec(), candidate.data().to_vec(), h, w),
        };
        let min = self.kind().min_input_size() as usize;
        if th.min(tw) < min {
            return Err(Error::ImageTooSmall {
                width: tw as u32,
                height: th as u32,
                min: min as u32,
                metric: self.kind().to_string(),
                hint: String::new(),
            });
        }
        let ones = [1.0f32];
        let masks = dropout_stream.map(|(seed, index)| DropoutBatch::draw(th, tw, std::iter::once(&mut sample_rng(seed, index))));
        let mask_inputs: Vec<(Vec<usize>, &[f32])> = match &masks {
            Some(m) => m.inputs(),
            // A broadcast 1 keeps every activation: no dropout.
            None => (0..contract::MASKS).map(|_| (vec![1, 1, 1, 1], &ones[..])).collect(),
        };
        self.fit_buffers(h, w)?;
        Ok(self.run_with_maps(&refs, &cands, 1, th, tw, Some(&mask_inputs), false)?.0[0])
    }

    /// Runs the fused model (E-LPIPS) on `n` stacked pairs of `th x tw` planar images; returns
    /// the distances, and the per-tap maps `(shape [n,1,H_t,W_t], values)` when `maps` is set
    /// (empty otherwise: they are not copied out of the runtime).
    #[allow(clippy::too_many_arguments)]
    fn run_with_maps(
        &mut self,
        refs: &[f32],
        cands: &[f32],
        n: usize,
        th: usize,
        tw: usize,
        masks: Option<&[(Vec<usize>, &[f32])]>,
        maps: bool,
    ) -> Result<(Vec<f64>, Vec<(Vec<usize>, Vec<f32>)>)> {
        let shape = vec![n, 3, th, tw];
        let mut inputs: Vec<(&str, Vec<usize>, &[f32])> = vec![(contract::REFERENCE, shape.clone(), refs), (contract::CANDIDATE, shape, cands)];
        if let Some(masks) = masks {
            for (name, (shape, data)) in self.mask_names.iter().zip(masks) {
                inputs.push((name, shape.clone(), data));
            }
        }
        if let Some(lw) = &self.linear_weights {
            for (name, tap) in self.lin_names.iter().zip(&lw.taps) {
                inputs.push((name, vec![tap.len()], tap.as_slice()));
            }
        }
        let map_names: Vec<String> = if maps { (0..self.kind().tap_channels().len()).map(contract::map).collect() } else { vec![] };
        let mut names = vec![contract::DISTANCE];
        names.extend(map_names.iter().map(String::as_str));
        let kind = self.options.metric;
        let session = self.session.as_mut().ok_or_else(|| no_fused_model(kind))?;
        let mut out = session.run_shaped(&inputs, &names)?;
        let tap_maps = out.split_off(1);
        let d: Vec<f64> = out[0].1.iter().map(|&v| v as f64).collect();
        if d.len() != n {
            return Err(Error::Model(format!("model returned {} distances for {n} pairs", d.len())));
        }
        if let Some(bad) = d.iter().find(|v| !v.is_finite()) {
            return Err(Error::Inference(format!("the network produced a non-finite distance ({bad})")));
        }
        for (shape, values) in &tap_maps {
            if shape.len() != 4 || shape[0] != n || shape[1] != 1 || values.len() != shape.iter().product::<usize>() {
                return Err(Error::Model(format!("model returned a per-tap map of shape {shape:?} for {n} pairs; rebuild the models with `make setup`")));
            }
        }
        Ok((d, tap_maps))
    }
}

/// Adds sample `j`'s per-tap maps (of a batch run on a `th x tw` input) to `acc`.
fn add_maps(acc: &mut Accumulator, maps: &[(Vec<usize>, Vec<f32>)], j: usize, stratum: usize, transform: Option<&Transform>, th: usize, tw: usize) {
    let taps: Vec<(usize, usize, &[f32])> = maps
        .iter()
        .map(|(shape, v)| {
            let len = shape[2] * shape[3];
            (shape[2], shape[3], &v[j * len..(j + 1) * len])
        })
        .collect();
    acc.add(stratum, transform, &input_map(&taps, th, tw), th, tw);
}

/// Per-tap maps of one pair with each map's `(H_t, W_t)`.
type WholeMaps = (Vec<(usize, usize)>, Vec<Vec<f32>>);

/// Refusal of a fused-model run (sampled draws) by a metric that has none: LPIPS.
fn no_fused_model(kind: MetricKind) -> Error {
    Error::invalid(format!("{kind} has no draws; use compare, compare_many or prepare_reference"))
}

/// Samples drawn per round for an `h x w` pair: as many full-size samples as [`ROUND_PIXELS`] holds.
fn round_samples(h: usize, w: usize) -> u64 {
    let (fh, fw) = Transform::neutral().output_size(h, w);
    (ROUND_PIXELS / (fh * fw)).clamp(1, ROUND_SAMPLES) as u64
}

fn draws_len(groups: &BTreeMap<(usize, usize), Vec<(usize, &mut Draw)>>) -> usize {
    groups.values().map(Vec::len).sum()
}

/// The distance from per-tap maps: the sum over taps of each map's mean.
fn distance_of_maps(maps: &[Vec<f32>]) -> Result<f64> {
    let d: f64 = maps.iter().map(|m| m.iter().map(|&v| v as f64).sum::<f64>() / m.len().max(1) as f64).sum();
    if !d.is_finite() {
        return Err(Error::Inference(format!("the network produced a non-finite distance ({d})")));
    }
    Ok(d)
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
