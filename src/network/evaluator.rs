//! The sample evaluator: the one place where a pair (LPIPS) or a set of E-LPIPS draws becomes
//! network runs and distances. It owns the graphs (the fused E-LPIPS model and the feature
//! model, each opened with the [`Buffers`] the pair wants), the tensor names of the model
//! contract, custom linear weights, and tiling. `Metric` (and through it the gate, the
//! several-candidate paths, heatmaps and the map rules of `elpips check`) hands it images and
//! draws and gets distances back; it knows nothing about how draws are chosen or how their
//! distances are combined (the estimate layer's business).
//!
//! Per-sample maps (heatmaps) leave through a [`MapSink`]: the evaluator hands each sample's
//! per-tap maps on its network input grid to the caller, which carries them to the image.
//!
//! A new way of evaluating a draw belongs here, beside the whole-pair paths: another network
//! on the same draw (a cheap stream for a multi-fidelity estimate: the int8 feature network,
//! or a draw's first taps) is one more graph this evaluator opens and runs on the draws it
//! is handed, returning its values next to the full network's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ensemble::tiles::{choose_tile, tile_probabilities, tile_uniform, Pilot};
use crate::ensemble::{downscale, for_each_batch, group_by_size, sample_rng, scaled_len, stack_transformed, Draw, DropoutBatch, SampleDropout, Transform};
use crate::error::{Error, Result};
use crate::image::{check_same_size, Image};
use crate::linear_weights::LinearWeights;
use crate::network::backend::Backend;
use crate::network::models::{contract, model_dir_in, MetricKind};
use crate::network::runtime::{release_free_heap, Buffers, Device, RuntimeOptions, Session};
use crate::network::taps::{
    run_tile, tile_masks, tile_sum_distance, tiled, tiled_distance, tiled_maps, FeatureNet, Precision, TapMap, Taps, TileGrid, AUTO_TILE_PIXELS,
    DEFAULT_TILE, ELPIPS_FUSED_PIXELS, ELPIPS_TILE_PIXELS, SAMPLE_TILE_PIXELS,
};

/// Where each evaluated sample's per-tap maps go: called with the draw, the maps
/// `(H_t, W_t, values)` of every tap, and the network input's size `(th, tw)`.
pub type MapSink<'a> = dyn FnMut(&Draw, &[(usize, usize, &[f32])], usize, usize) + 'a;

/// Per-tap maps of one pair with each map's `(H_t, W_t)`.
type WholeMaps = (Vec<(usize, usize)>, Vec<Vec<f32>>);

/// The most pixels of the distance pilot's downscaled pair ([`SampleEvaluator::distance_map`]):
/// level 4 of a 1080p pair (480 x 270), level 8 of a 4K one, a few percent of one LPIPS-VGG
/// pair of the image.
const PILOT_NET_PIXELS: usize = 1 << 17;

/// Which part of its transformed pair an E-LPIPS sample evaluates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SampleArea {
    /// Every sample evaluates its whole transformed pair: the authors' estimator, and the
    /// default (tile-sampled draws are opt-in: a defect made of detail finer than the pilot's
    /// distance map, in a pair whose pixels differ as much everywhere, fools the pilot;
    /// docs/estimator.md).
    #[default]
    Whole,
    /// One tile where that pays (`--tile-samples`): a draw whose network input is above 0.3 Mpx
    /// (most draws of a 1080p pair, none of a 512x512 one) evaluates one tile of it, chosen
    /// with probabilities from the pair's pilot and weighted so that the estimate stays
    /// unbiased for the same expectation (`crate::ensemble::tiles`); smaller draws run whole,
    /// and so does every draw where a heatmap is made (its per-pixel maps need every pixel of
    /// every sample) or a tile size is given (`--tile N` tiles whole samples).
    Auto,
    /// Tile-sample every draw whose network input holds more than one square core of this
    /// many pixels (rounded up to 16): for tests and measurements on small pairs.
    Tiles(u32),
}

impl SampleArea {
    /// What a result reports: `tiles` where draws are tile-sampled, `whole` where not.
    pub fn name(tile_sampled: bool) -> &'static str {
        if tile_sampled {
            "tiles"
        } else {
            "whole"
        }
    }
}

/// A reference and its candidates as the evaluator sees them, with the pilot that gives
/// tile-sampled draws their tile probabilities: built once per comparison by
/// [`SampleEvaluator::pair`], and only where draws are tile-sampled. Every candidate shares
/// it, so candidates compared with the same draws evaluate the same tiles.
pub struct SamplePair<'a> {
    /// The reference image.
    pub reference: &'a Image,
    /// The candidates, each the reference's size.
    pub candidates: &'a [&'a Image],
    pilot: Option<Pilot>,
}

/// The fused E-LPIPS model (`<metric>.onnx`: both images in, distance and per-tap maps out),
/// with where it came from and how it keeps its buffers.
struct Fused {
    session: Session,
    path: PathBuf,
    buffers: Buffers,
}

/// Evaluates pairs and draws of one metric (see the module docs). Not `Sync`: ONNX Runtime
/// sessions run with `&mut`.
pub struct SampleEvaluator {
    kind: MetricKind,
    model_dir: Option<PathBuf>,
    runtime: RuntimeOptions,
    precision: Precision,
    /// See `MetricOptions::tile_size`.
    tile_size: Option<u32>,
    /// Whole or tile-sampled draws.
    sample_area: SampleArea,
    /// Opened for E-LPIPS only, whose sampled batches run there. LPIPS runs the feature model
    /// and the head everywhere (`features`), so it never opens this.
    fused: Option<Fused>,
    mask_names: Vec<String>,
    lin_names: Vec<String>,
    /// Custom linear weights fed over the model's built-in ones.
    linear_weights: Option<LinearWeights>,
    /// The feature network (reference reuse, tiling, int8), opened on first use.
    features: Option<FeatureNet>,
    /// The cheap stream of two-stream estimates (`<metric>.cheap.onnx`), opened on first use.
    cheap: Option<Session>,
}

impl SampleEvaluator {
    /// Opens `kind`'s networks: for E-LPIPS the fused model (its inputs checked), for LPIPS and
    /// for int8 the feature model, so that a missing model fails here. `linear_weights` is a
    /// safetensors file replacing the model's own.
    pub fn open(
        kind: MetricKind,
        model_dir: Option<&Path>,
        linear_weights: Option<&Path>,
        runtime: &RuntimeOptions,
        precision: Precision,
        tile_size: Option<u32>,
        sample_area: SampleArea,
    ) -> Result<Self> {
        let linear_weights = match linear_weights {
            None => None,
            Some(path) => Some(read_linear_weights(path, kind)?),
        };
        let taps = kind.tap_channels().len();
        let lin_names: Vec<String> = (0..taps).map(contract::lin).collect();
        let mask_names = contract::masks_of(kind);
        let fused = if kind.is_ensemble() {
            let path = model_dir_in(model_dir, runtime.install_dir.as_deref()).join(kind.file_name());
            // The arena, for pairs that never tile: most pairs (see `fit_buffers`).
            let session = Session::open_with(&path, runtime, Buffers::Arena)?;
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
            Some(Fused { session, path, buffers: Buffers::Arena })
        } else {
            None
        };
        let mut evaluator = SampleEvaluator {
            kind,
            model_dir: model_dir.map(Path::to_owned),
            runtime: runtime.clone(),
            precision,
            tile_size,
            sample_area,
            fused,
            mask_names,
            lin_names,
            linear_weights,
            features: None,
            cheap: None,
        };
        if !kind.is_ensemble() || precision != Precision::Fp32 {
            // LPIPS runs only there, and int8 too: fail now if it cannot open.
            evaluator.open_features(Buffers::Arena)?;
        }
        Ok(evaluator)
    }

    /// Which metric it evaluates.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// Switches the arithmetic; fails, leaving the evaluator as it was, where the precision is
    /// not built for this metric.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        if precision != self.precision {
            let buffers = self.features.as_ref().map_or(Buffers::Arena, FeatureNet::buffers);
            let net = FeatureNet::open(self.kind, self.model_dir.as_deref(), &self.runtime, precision, self.linear_weights.as_ref(), buffers)?;
            self.precision = precision;
            self.features = Some(net);
        }
        Ok(())
    }

    /// Sets the tile core side (`MetricOptions::tile_size`).
    pub fn set_tile_size(&mut self, tile_size: Option<u32>) {
        self.tile_size = tile_size;
    }

    /// Sets which part of its pair a sample evaluates (`MetricOptions::sample_area`).
    pub fn set_sample_area(&mut self, sample_area: SampleArea) {
        self.sample_area = sample_area;
    }

    /// The tiles of `transform`'s network input of an `h x w` pair when the draw is
    /// tile-sampled (one of them evaluated), `None` where it runs whole.
    fn sampled_tiles(&self, transform: &Transform, h: usize, w: usize) -> Option<TileGrid> {
        if !self.kind.is_ensemble() {
            return None;
        }
        let (th, tw) = transform.output_size(h, w);
        match self.sample_area {
            SampleArea::Whole => None,
            SampleArea::Auto => (self.tile_size.is_none() && th * tw > ELPIPS_FUSED_PIXELS).then(|| TileGrid::within(th, tw, SAMPLE_TILE_PIXELS)),
            SampleArea::Tiles(core) => Some(TileGrid::square(th, tw, core as usize)).filter(|g| g.tiles() > 1),
        }
    }

    /// Whether comparisons of an `h x w` pair tile-sample some of their draws (the biggest,
    /// level 1, first); heatmaps never do.
    pub fn tile_sampled(&self, h: usize, w: usize) -> bool {
        self.sampled_tiles(&Transform::neutral(), h, w).is_some()
    }

    /// `reference` and `candidates` for evaluation, with their pilot where draws of this size
    /// are tile-sampled: pixel differences and the distance map of [`Self::distance_map`].
    pub fn pair<'a>(&mut self, reference: &'a Image, candidates: &'a [&'a Image]) -> Result<SamplePair<'a>> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let pilot = match self.tile_sampled(h, w) {
            false => None,
            true => {
                let pilot = pilot_of(reference, candidates);
                Some(match self.distance_map(reference, candidates)? {
                    Some((mh, mw, scale, map)) => pilot.with_distance(&map, mh, mw, scale),
                    None => pilot,
                })
            }
        };
        Ok(SamplePair { reference, candidates, pilot })
    }

    /// Where the pair's distance lies, cheaply: the pair box-downscaled to at most
    /// [`PILOT_NET_PIXELS`] and run whole through the feature network without dropout (the
    /// identity draw of a coarse level), each pixel of the downscaled grid getting the sum over
    /// candidates and taps of the tap's map at the cell above it. Returns `(mh, mw, scale,
    /// map)`; `None` where the downscaled pair is below the network's minimum size. Only the
    /// tile probabilities read it, so the estimate stays unbiased whatever it shows; what it
    /// cannot show is detail finer than its level (docs/estimator.md, "Tile-sampled draws").
    fn distance_map(&mut self, reference: &Image, candidates: &[&Image]) -> Result<Option<(usize, usize, usize, Vec<f32>)>> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let scale = (1..).find(|s| scaled_len(h, *s) * scaled_len(w, *s) <= PILOT_NET_PIXELS).expect("some scale fits");
        let (mh, mw) = (scaled_len(h, scale), scaled_len(w, scale));
        if mh.min(mw) < self.kind.min_input_size() as usize {
            return Ok(None);
        }
        let down = |img: &Image| downscale(img.data(), h, w, scale, (0, 0));
        let net = self.feature_net_for(h, w)?;
        let taps = net.taps(&down(reference), 1, mh, mw, None)?;
        let stacked: Vec<f32> = candidates.iter().flat_map(|c| down(c)).collect();
        let pairs: Vec<(usize, usize)> = (0..candidates.len()).map(|i| (0, i)).collect();
        let maps = net.maps_against(&taps, &stacked, candidates.len(), mh, mw, None, &pairs)?;
        let mut map = vec![0.0f32; mh * mw];
        for per_tap in &maps {
            for (t, m) in per_tap.iter().enumerate() {
                let [_, _, th, tw] = taps.shapes[t];
                for y in 0..mh {
                    let row = &m[(y * th / mh) * tw..];
                    for x in 0..mw {
                        map[y * mw + x] += row[x * tw / mw];
                    }
                }
            }
        }
        release_free_heap();
        Ok(Some((mh, mw, scale, map)))
    }

    /// The device the networks run on (CPU, or CUDA when asked for and available).
    pub fn device(&self) -> Device {
        match (&self.fused, &self.features) {
            (Some(f), _) => f.session.device(),
            (None, Some(f)) => f.device(),
            // Not reached: `open` opens one of the two.
            (None, None) => Device::Cpu,
        }
    }

    /// The CPU kernels the networks run on (MLAS or OpenVINO; what `auto` chose): the feature
    /// network's where it is open (LPIPS, int8, bf16), else the fused model's.
    pub fn backend(&self) -> Backend {
        match (&self.features, &self.fused) {
            (Some(f), _) => f.backend(),
            (None, Some(f)) => f.session.backend(),
            // Not reached: `open` opens one of the two.
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
            let net = FeatureNet::open(self.kind, self.model_dir.as_deref(), &self.runtime, self.precision, self.linear_weights.as_ref(), want)?;
            self.features = Some(net);
        }
        Ok(self.features.as_mut().expect("opened above"))
    }

    /// What E-LPIPS offers at fp32 only (the fused model's outputs).
    pub fn fp32_only(&self, what: &str) -> Error {
        Error::invalid(format!("{what} of {} run at fp32 only, not {}; use `precision` fp32", self.kind, self.precision))
    }

    /// Whether an `h x w` pair's biggest E-LPIPS samples (level 1, with the offset's padding) run
    /// in tiles: then its runs of many shapes share the process, and keep no buffers between them.
    fn samples_tile(&self, h: usize, w: usize) -> bool {
        self.sample_tile(&Transform::neutral(), h, w).is_some()
    }

    /// The [`Buffers`] for an `h x w` pair's runs: freed per run where the pair tiles (LPIPS: the
    /// image; E-LPIPS: its full-size samples), else the arena.
    fn pair_buffers(&self, h: usize, w: usize) -> Buffers {
        let tiles = if self.kind.is_ensemble() { self.samples_tile(h, w) } else { self.tile_for(h, w).is_some() };
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
        if let Some(fused) = self.fused.take_if(|f| f.buffers != want) {
            // The old session first: its weights and arena go before the new one loads.
            let Fused { session, path, .. } = fused;
            drop(session);
            self.fused = Some(Fused { session: Session::open_with(&path, &self.runtime, want)?, path, buffers: want });
        }
        Ok(())
    }

    /// The tiles of a network input of this size (LPIPS-VGG: the image; E-LPIPS: one sample's
    /// transformed image), or `None` to run it whole (always for AlexNet).
    pub fn tile_for(&self, h: usize, w: usize) -> Option<TileGrid> {
        self.kind.tap_pools()?;
        match self.tile_size {
            Some(0) => None,
            Some(t) => Some(TileGrid::square(h, w, t as usize)),
            None if self.kind.is_ensemble() => (h * w > ELPIPS_FUSED_PIXELS).then(|| TileGrid::within(h, w, ELPIPS_TILE_PIXELS)),
            None => (h as u64 * w as u64 > AUTO_TILE_PIXELS).then(|| TileGrid::square(h, w, DEFAULT_TILE as usize)),
        }
    }

    /// The tiles of `transform`'s network input of an `h x w` pair (E-LPIPS).
    fn sample_tile(&self, transform: &Transform, h: usize, w: usize) -> Option<TileGrid> {
        let (th, tw) = transform.output_size(h, w);
        self.tile_for(th, tw)
    }

    /// The LPIPS distance of a checked pair. The split path (reference taps, then the candidate
    /// against them) serves every LPIPS comparison, so a prepared reference gives bit-identical
    /// answers; big pairs are tiled.
    pub fn lpips_distance(&mut self, reference: &Image, candidate: &Image) -> Result<f64> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        if let Some(grid) = self.tile_for(h, w) {
            return tiled_distance(self.feature_net_for(h, w)?, reference.data(), candidate.data(), h, w, &grid);
        }
        self.lpips_whole_distance(reference, candidate)
    }

    /// The LPIPS distance of a pair run whole, never tiled: the network's own distance.
    pub fn lpips_whole_distance(&mut self, reference: &Image, candidate: &Image) -> Result<f64> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let (_, maps) = self.lpips_whole_maps(reference.data(), candidate.data(), h, w)?;
        distance_of_maps(&maps)
    }

    /// The LPIPS distance of a checked pair with each tap's map over the image, tiled as
    /// [`SampleEvaluator::lpips_distance`] is (so both give the same distance).
    pub fn lpips_maps(&mut self, reference: &Image, candidate: &Image) -> Result<(f64, Vec<TapMap>)> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        match self.tile_for(h, w) {
            Some(grid) => tiled_maps(self.feature_net_for(h, w)?, reference.data(), candidate.data(), h, w, &grid),
            None => {
                let (sizes, per_tap) = self.lpips_whole_maps(reference.data(), candidate.data(), h, w)?;
                let d = distance_of_maps(&per_tap)?;
                Ok((d, sizes.into_iter().zip(per_tap).map(|((mh, mw), m)| (mh, mw, m)).collect()))
            }
        }
    }

    /// LPIPS per-tap maps of a whole (untiled) `h x w` pair, with each map's `(H_t, W_t)`:
    /// reference taps, then the candidate against them.
    fn lpips_whole_maps(&mut self, reference: &[f32], candidate: &[f32], h: usize, w: usize) -> Result<WholeMaps> {
        let net = self.feature_net_for(h, w)?;
        let taps = net.taps(reference, 1, h, w, None)?;
        let maps = net.maps_against(&taps, candidate, 1, h, w, None, &[(0, 0)])?.swap_remove(0);
        Ok((taps.shapes.iter().map(|s| (s[2], s[3])).collect(), maps))
    }

    /// The LPIPS taps of a whole image, to compare candidates against
    /// ([`SampleEvaluator::distance_against`]); `None` where the image would be tiled or the
    /// metric is E-LPIPS (whose features depend on each sample's draw).
    pub fn reference_taps(&mut self, image: &Image) -> Result<Option<Taps>> {
        let (h, w) = (image.height() as usize, image.width() as usize);
        if self.kind.is_ensemble() || self.tile_for(h, w).is_some() {
            return Ok(None);
        }
        Ok(Some(self.feature_net_for(h, w)?.taps(image.data(), 1, h, w, None)?))
    }

    /// The LPIPS distance of `candidate` against a reference's taps: bit for bit the distance of
    /// the pair (the same split path).
    pub fn distance_against(&mut self, taps: &Taps, candidate: &Image) -> Result<f64> {
        let (h, w) = (candidate.height() as usize, candidate.width() as usize);
        let maps = self.feature_net_for(h, w)?.maps_against(taps, candidate.data(), 1, h, w, None, &[(0, 0)])?;
        distance_of_maps(&maps[0])
    }

    /// Checks that the fused model (E-LPIPS) has the per-tap map outputs heatmaps read.
    pub fn check_has_maps(&self) -> Result<()> {
        let outputs = self.fused.as_ref().ok_or_else(|| no_fused_model(self.kind))?.session.output_names();
        let taps = self.kind.tap_channels().len();
        if (0..taps).all(|t| outputs.iter().any(|o| *o == contract::map(t))) {
            return Ok(());
        }
        Err(Error::Model(format!(
            "the {} model has no per-tap maps (outputs: {}); heatmaps need model contract 2: rebuild the models with `make setup`",
            self.kind,
            outputs.join(", ")
        )))
    }

    /// Evaluates `draws` for every candidate of `pair` (each draw's dropout masks continue its
    /// stream; each candidate sees the same draws: common random numbers); returns the
    /// distances `[candidate][draw]`, and hands each sample's maps to `maps` when given (one
    /// candidate). Tile-sampled draws ([`SampleArea`]; never with `maps`) evaluate one tile for
    /// all candidates at once. The rest run whole: at fp32 on the fused model, per candidate
    /// on a copy of the draws, so each candidate's values are those of its own comparison; at
    /// int8 on the feature network ([`SampleEvaluator::evaluate_draws_many`]).
    pub fn evaluate_draws(&mut self, pair: &SamplePair, draws: &mut [Draw], mut maps: Option<&mut MapSink<'_>>) -> Result<Vec<Vec<f64>>> {
        if maps.is_some() && (pair.candidates.len() != 1 || self.precision != Precision::Fp32) {
            return Err(if pair.candidates.len() != 1 { Error::invalid("sample maps are made for one candidate at a time") } else { self.fp32_only("heatmaps") });
        }
        let sampled = if maps.is_some() { vec![] } else { self.sampled_slots(pair, draws) };
        self.split_sampled(pair, draws, &sampled, &mut |me, rest| {
            if me.precision != Precision::Fp32 {
                // The fused model is fp32: int8 samples run on the int8 feature network, the
                // path of several candidates (and of tiles), with the same draws.
                return me.evaluate_whole_many(pair.reference, pair.candidates, rest);
            }
            match pair.candidates {
                [candidate] => Ok(vec![me.evaluate_draws_one(pair.reference, candidate, rest, maps.as_deref_mut())?]),
                // Each candidate's dropout continues a copy of the same streams.
                many => many.iter().map(|c| me.evaluate_draws_one(pair.reference, c, &mut rest.to_vec(), None)).collect(),
            }
        })
    }

    /// [`SampleEvaluator::evaluate_draws`] with the draws that run whole on the feature network
    /// (the reference's features computed once per group of samples and every candidate
    /// compared with them: `(1 + K) / 2K` of the passes for K candidates), at any precision.
    /// Equal, to float32 rounding, to `evaluate_draws` per candidate with fresh copies of the
    /// draws.
    pub fn evaluate_draws_many(&mut self, pair: &SamplePair, draws: &mut [Draw]) -> Result<Vec<Vec<f64>>> {
        let sampled = self.sampled_slots(pair, draws);
        self.split_sampled(pair, draws, &sampled, &mut |me, rest| me.evaluate_whole_many(pair.reference, pair.candidates, rest))
    }

    /// The draws of `draws` that are tile-sampled, with their tiles.
    fn sampled_slots(&self, pair: &SamplePair, draws: &[Draw]) -> Vec<(usize, TileGrid)> {
        let (h, w) = (pair.reference.height() as usize, pair.reference.width() as usize);
        draws.iter().enumerate().filter_map(|(i, d)| self.sampled_tiles(&d.transform, h, w).map(|g| (i, g))).collect()
    }

    /// Runs the draws not in `sampled` through `whole` (in place when there are none, else on
    /// copies whose advanced streams are put back), then each sampled draw's tile.
    fn split_sampled(
        &mut self,
        pair: &SamplePair,
        draws: &mut [Draw],
        sampled: &[(usize, TileGrid)],
        whole: &mut dyn FnMut(&mut Self, &mut [Draw]) -> Result<Vec<Vec<f64>>>,
    ) -> Result<Vec<Vec<f64>>> {
        for c in pair.candidates {
            check_same_size(pair.reference, c)?;
        }
        if sampled.is_empty() {
            return whole(self, draws);
        }
        let mut out = vec![vec![0.0; draws.len()]; pair.candidates.len()];
        let slots: Vec<usize> = (0..draws.len()).filter(|i| !sampled.iter().any(|(s, _)| s == i)).collect();
        if !slots.is_empty() {
            let mut rest: Vec<Draw> = slots.iter().map(|&i| draws[i].clone()).collect();
            let values = whole(self, &mut rest)?;
            for (j, (&slot, draw)) in slots.iter().zip(rest).enumerate() {
                draws[slot] = draw;
                for (k, v) in values.iter().enumerate() {
                    out[k][slot] = v[j];
                }
            }
        }
        for (slot, grid) in sampled {
            for (k, v) in self.tile_sample(pair, &mut draws[*slot], grid)?.into_iter().enumerate() {
                out[k][*slot] = v;
            }
        }
        Ok(out)
    }

    /// One tile-sampled draw: the draw's transform and dropout as a whole sample has them, one
    /// tile chosen by the pair's pilot ([`tile_probabilities`], with the draw's own tile
    /// uniform) and run for every candidate against the reference's taps there; per candidate
    /// the tile's part of the draw's distance over its probability (unbiased for the draw's
    /// distance). A draw none of whose tiles sees a difference has distance 0 and runs nothing.
    fn tile_sample(&mut self, pair: &SamplePair, draw: &mut Draw, grid: &TileGrid) -> Result<Vec<f64>> {
        let q = self.tile_probabilities(pair, draw, grid);
        let Some(k) = choose_tile(&q, tile_uniform(draw)) else {
            let (th, tw) = draw.transform.output_size(pair.reference.height() as usize, pair.reference.width() as usize);
            // Consumed as a whole draw would, so the stream ends where it would.
            SampleDropout::draw_window(&mut draw.rng, th, tw, (0, 0), (0, 0));
            return Ok(vec![0.0; pair.candidates.len()]);
        };
        let parts = self.tile_part(pair, draw, grid, k)?;
        parts
            .into_iter()
            .map(|part| {
                let d = part / q[k];
                if d.is_finite() {
                    Ok(d)
                } else {
                    Err(Error::Inference(format!("the network produced a non-finite distance ({d})")))
                }
            })
            .collect()
    }

    /// The selection probabilities of `draw`'s tiles in `grid` under the pair's pilot.
    fn tile_probabilities(&self, pair: &SamplePair, draw: &Draw, grid: &TileGrid) -> Vec<f64> {
        match &pair.pilot {
            Some(p) => tile_probabilities(p, &draw.transform, &grid.rects()),
            None => tile_probabilities(&pilot_of(pair.reference, pair.candidates), &draw.transform, &grid.rects()),
        }
    }

    /// Tile `k` of `draw`'s network input run for every candidate (the draw's masks drawn from
    /// its stream, keeping the tile's window): per candidate, the tile's part of the draw's
    /// distance (each tap's map summed over the core, over the tap's whole size).
    fn tile_part(&mut self, pair: &SamplePair, draw: &mut Draw, grid: &TileGrid, k: usize) -> Result<Vec<f64>> {
        let (h, w) = (pair.reference.height() as usize, pair.reference.width() as usize);
        let t = &draw.transform;
        let (th, tw) = t.output_size(h, w);
        let (r, c) = grid.tile(k);
        let dropout = SampleDropout::draw_window(&mut draw.rng, th, tw, (r.start, r.extent()), (c.start, c.extent()));
        let masks = tile_masks(&dropout, (0, r.extent()), (0, c.extent()));
        let region = |img: &Image| t.apply_region(img.data(), h, w, (r.start, r.end), (c.start, c.end));
        let net = self.feature_net_for(h, w)?;
        let pools = net.tap_pools()?;
        let candidates = pair.candidates;
        let sums = run_tile(net, &region(pair.reference), candidates.len(), &|i| region(candidates[i]), (r, c), (th, tw), Some(&masks), &mut |_, _, _, _, _| {})?;
        release_free_heap();
        Ok(sums.iter().map(|s| tile_sum_distance(pools, s, th, tw)).collect())
    }

    /// Every tile of a tile-sampled `draw` as a sample that chose it would run it: per tile, its
    /// probability and each candidate's part of the draw's distance (a sample reports part /
    /// probability). The parts sum to the draw's distance; tests check it. Empty for a draw
    /// that runs whole.
    pub fn tile_parts(&mut self, pair: &SamplePair, draw: &Draw) -> Result<Vec<(f64, Vec<f64>)>> {
        let (h, w) = (pair.reference.height() as usize, pair.reference.width() as usize);
        let Some(grid) = self.sampled_tiles(&draw.transform, h, w) else { return Ok(vec![]) };
        let q = self.tile_probabilities(pair, draw, &grid);
        (0..grid.tiles()).map(|k| Ok((q[k], self.tile_part(pair, &mut draw.clone(), &grid, k)?))).collect()
    }

    /// One candidate's draws run whole (see [`SampleEvaluator::evaluate_draws`]): draws whose
    /// network input is above the tiling size run one at a time in tiles (feature model, masks
    /// cut from the sample's compact draw); the rest in fused-model batches of at most
    /// [`ELPIPS_FUSED_PIXELS`], so memory does not grow with the number of draws.
    fn evaluate_draws_one(&mut self, reference: &Image, candidate: &Image, draws: &mut [Draw], mut maps: Option<&mut MapSink<'_>>) -> Result<Vec<f64>> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let mut out = vec![0.0; draws.len()];
        let tiled_slots: Vec<(usize, TileGrid)> =
            (0..draws.len()).filter_map(|i| self.sample_tile(&draws[i].transform, h, w).map(|grid| (i, grid))).collect();
        if tiled_slots.is_empty() {
            // The usual case: every draw batched, in place.
            let slots: Vec<usize> = (0..draws.len()).collect();
            self.run_batches(reference, candidate, draws, &slots, &mut out, maps.as_deref_mut())?;
        } else {
            // Copies of the untiled draws, whose advanced streams are put back after.
            let slots: Vec<usize> = (0..draws.len()).filter(|i| !tiled_slots.iter().any(|(t, _)| t == i)).collect();
            let mut rest: Vec<Draw> = slots.iter().map(|&i| draws[i].clone()).collect();
            self.run_batches(reference, candidate, &mut rest, &slots, &mut out, maps.as_deref_mut())?;
            for (slot, draw) in slots.into_iter().zip(rest) {
                draws[slot] = draw;
            }
        }
        for (slot, grid) in tiled_slots {
            let draw = &mut draws[slot];
            let (th, tw) = draw.transform.output_size(h, w);
            let mut results = self.tiled_sample(reference, &[candidate], draw, &grid, maps.is_some())?;
            let (d, tap_maps) = results.swap_remove(0);
            out[slot] = d;
            if let Some(sink) = maps.as_deref_mut() {
                let taps: Vec<(usize, usize, &[f32])> = tap_maps.iter().map(|(mh, mw, m)| (*mh, *mw, m.as_slice())).collect();
                sink(draw, &taps, th, tw);
            }
        }
        Ok(out)
    }

    /// The fused-model batches of `draws` (at most [`ELPIPS_FUSED_PIXELS`] each): draw `j`'s distance
    /// goes to `out[slots[j]]`, its maps to `maps`.
    fn run_batches(
        &mut self,
        reference: &Image,
        candidate: &Image,
        draws: &mut [Draw],
        slots: &[usize],
        out: &mut [f64],
        mut maps: Option<&mut MapSink<'_>>,
    ) -> Result<()> {
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        // A pair whose full-size samples tile: its batches share the process with tile runs,
        // so each gives its free heap back (memory kept between runs is what raised the peak).
        let big = self.samples_tile(h, w);
        self.fit_buffers(h, w)?;
        for_each_batch(reference.data(), candidate.data(), (h, w), draws, ELPIPS_FUSED_PIXELS, &mut |batch, members| {
            let (n, th, tw) = (members.len(), batch.height, batch.width);
            let mask_inputs = batch.masks.inputs();
            let (d, tap_maps) = self.run_fused(&batch.references, &batch.candidates, n, th, tw, Some(&mask_inputs), maps.is_some())?;
            for (j, (slot, draw)) in members.iter().enumerate() {
                out[slots[*slot]] = d[j];
                if let Some(sink) = maps.as_deref_mut() {
                    let taps: Vec<(usize, usize, &[f32])> = tap_maps
                        .iter()
                        .map(|(shape, v)| {
                            let len = shape[2] * shape[3];
                            (shape[2], shape[3], &v[j * len..(j + 1) * len])
                        })
                        .collect();
                    sink(draw, &taps, th, tw);
                }
            }
            if big {
                release_free_heap();
            }
            Ok(())
        })
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

    /// Whole draws on the feature network for several candidates against one reference
    /// ([`SampleEvaluator::evaluate_draws_many`]).
    fn evaluate_whole_many(&mut self, reference: &Image, candidates: &[&Image], draws: &mut [Draw]) -> Result<Vec<Vec<f64>>> {
        if !self.kind.is_ensemble() {
            return Err(Error::invalid(format!("{} has no draws; use prepare_reference / compare_reference", self.kind)));
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

    /// Whether two-stream estimates run for an `h x w` pair: E-LPIPS pairs whose samples run
    /// whole in fused batches (every pair up to ~540 x 540). The cheap stream runs each draw's
    /// whole network input, whose conv1_1 activations alone would exceed the fused batches'
    /// memory on a pair whose samples tile (or are tile-sampled).
    pub fn two_streams(&self, h: usize, w: usize) -> bool {
        self.kind.is_ensemble() && !self.samples_tile(h, w) && !self.tile_sampled(h, w)
    }

    /// The cheap stream's value of each of `draws` for every candidate of `pair`
    /// (`[candidate][draw]`): the sum of taps 0 and 1 of the draw's distance (the image and
    /// relu1_1 under the draw's transform and mask 0), from the cheap model. It reads each
    /// draw's stream from a copy, so a draw evaluated here is then evaluated by the full
    /// network with the same masks (its mask 0 the same values).
    pub fn cheap_values(&mut self, pair: &SamplePair, draws: &[Draw]) -> Result<Vec<Vec<f64>>> {
        let (h, w) = (pair.reference.height() as usize, pair.reference.width() as usize);
        for c in pair.candidates {
            check_same_size(pair.reference, c)?;
        }
        if !self.two_streams(h, w) {
            return Err(Error::invalid(format!("two-stream estimates run on E-LPIPS pairs whose samples run whole (up to ~540 x 540), not this {w}x{h} {} pair", self.kind)));
        }
        let mut copies = draws.to_vec();
        let mut out = vec![vec![0.0; draws.len()]; pair.candidates.len()];
        for ((th, tw), mut members) in group_by_size(&mut copies, h, w) {
            let plane = 3 * th * tw;
            for chunk in members.chunks_mut((ELPIPS_FUSED_PIXELS / (th * tw)).max(1)) {
                let n = chunk.len();
                let mut refs = vec![0.0f32; n * plane];
                stack_transformed(pair.reference.data(), h, w, chunk.iter().map(|(_, d)| &d.transform), plane, &mut refs);
                let mask = DropoutBatch::draw_first(th, tw, chunk.iter_mut().map(|(_, d)| &mut d.rng));
                let mut cands = vec![0.0f32; n * plane];
                for (k, candidate) in pair.candidates.iter().enumerate() {
                    stack_transformed(candidate.data(), h, w, chunk.iter().map(|(_, d)| &d.transform), plane, &mut cands);
                    let values = self.run_cheap(&refs, &cands, n, th, tw, &mask)?;
                    for (j, (slot, _)) in chunk.iter().enumerate() {
                        out[k][*slot] = values[j];
                    }
                }
            }
        }
        Ok(out)
    }

    /// The cheap model, opened on first use with its inputs and outputs checked.
    fn cheap_session(&mut self) -> Result<&mut Session> {
        if self.cheap.is_none() {
            let name = self.kind.cheap_file_name().ok_or_else(|| no_fused_model(self.kind))?;
            let path = model_dir_in(self.model_dir.as_deref(), self.runtime.install_dir.as_deref()).join(name);
            let session = Session::open_with(&path, &self.runtime, Buffers::Arena)?;
            let (inputs, outputs) = (session.input_names(), session.output_names());
            let want_in = [contract::REFERENCE.to_owned(), contract::CANDIDATE.to_owned(), contract::mask(0), contract::lin(0), contract::lin(1)];
            let want_out = [contract::map(0), contract::map(1)];
            if !want_in.iter().all(|n| inputs.contains(n)) || !want_out.iter().all(|n| outputs.contains(n)) {
                return Err(Error::Model(format!(
                    "{} is not the cheap stream of {} (inputs: {}; outputs: {}); rebuild the models with `make setup`",
                    path.display(),
                    self.kind,
                    inputs.join(", "),
                    outputs.join(", ")
                )));
            }
            self.cheap = Some(session);
        }
        Ok(self.cheap.as_mut().expect("opened above"))
    }

    /// Runs the cheap model on `n` stacked pairs of `th x tw` planar images with their mask 0;
    /// returns per pair the mean of tap 0's map plus that of tap 1's.
    fn run_cheap(&mut self, refs: &[f32], cands: &[f32], n: usize, th: usize, tw: usize, (mask_shape, mask): &(Vec<usize>, Vec<f32>)) -> Result<Vec<f64>> {
        // Opened first: the inputs below borrow the linear weights, the run the session.
        self.cheap_session()?;
        let shape = vec![n, 3, th, tw];
        let (mask_name, lin_names) = (contract::mask(0), [contract::lin(0), contract::lin(1)]);
        let mut inputs: Vec<(&str, Vec<usize>, &[f32])> =
            vec![(contract::REFERENCE, shape.clone(), refs), (contract::CANDIDATE, shape, cands), (&mask_name, mask_shape.clone(), mask)];
        if let Some(lw) = &self.linear_weights {
            for (name, tap) in lin_names.iter().zip(&lw.taps) {
                inputs.push((name, vec![tap.len()], tap.as_slice()));
            }
        }
        let map_names = [contract::map(0), contract::map(1)];
        let names: Vec<&str> = map_names.iter().map(String::as_str).collect();
        let maps = self.cheap.as_mut().expect("opened above").run_shaped(&inputs, &names)?;
        let mut out = vec![0.0f64; n];
        for (shape, values) in &maps {
            if shape.len() != 4 || shape[0] != n || shape[1] != 1 || values.len() != shape.iter().product::<usize>() {
                return Err(Error::Model(format!("the cheap model returned a map of shape {shape:?} for {n} pairs; rebuild the models with `make setup`")));
            }
            let k = shape[2] * shape[3];
            for (j, v) in out.iter_mut().enumerate() {
                *v += map_mean(&values[j * k..(j + 1) * k]);
            }
        }
        if let Some(bad) = out.iter().find(|v| !v.is_finite()) {
            return Err(Error::Inference(format!("the cheap stream produced a non-finite value ({bad})")));
        }
        Ok(out)
    }

    /// Per draw, its distance split by tap (each tap's map averaged; they sum to the distance),
    /// for pairs whose samples do not tile.
    pub fn evaluate_draws_taps(&mut self, reference: &Image, candidate: &Image, draws: &mut [Draw]) -> Result<Vec<Vec<f64>>> {
        check_same_size(reference, candidate)?;
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        if !self.kind.is_ensemble() || self.samples_tile(h, w) {
            return Err(Error::invalid("per-tap distances of draws: E-LPIPS pairs whose samples do not tile only"));
        }
        if self.precision != Precision::Fp32 {
            return Err(self.fp32_only("per-tap distances of draws"));
        }
        self.check_has_maps()?;
        self.fit_buffers(h, w)?;
        let mut out = vec![Vec::new(); draws.len()];
        for_each_batch(reference.data(), candidate.data(), (h, w), draws, ELPIPS_FUSED_PIXELS, &mut |batch, members| {
            let (n, th, tw) = (members.len(), batch.height, batch.width);
            let mask_inputs = batch.masks.inputs();
            let (_, maps) = self.run_fused(&batch.references, &batch.candidates, n, th, tw, Some(&mask_inputs), true)?;
            for (j, (slot, _)) in members.iter().enumerate() {
                out[*slot] = maps
                    .iter()
                    .map(|(shape, values)| {
                        let k = shape[2] * shape[3];
                        map_mean(&values[j * k..(j + 1) * k])
                    })
                    .collect();
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// One fused-model run of a checked E-LPIPS pair: optionally transformed by `transform`,
    /// optionally with dropout masks drawn from the start of stream `(seed, index)`. Never tiled.
    pub fn evaluate_one(&mut self, reference: &Image, candidate: &Image, transform: Option<&Transform>, dropout_stream: Option<(u64, u64)>) -> Result<f64> {
        if self.precision != Precision::Fp32 {
            return Err(self.fp32_only("one network evaluation (`evaluate`)"));
        }
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let (refs, cands, th, tw) = match transform {
            Some(t) => {
                let (a, b) = (t.apply(reference.data(), h, w), t.apply(candidate.data(), h, w));
                (a.data, b.data, a.height, a.width)
            }
            None => (reference.data().to_vec(), candidate.data().to_vec(), h, w),
        };
        let min = self.kind.min_input_size() as usize;
        if th.min(tw) < min {
            return Err(Error::ImageTooSmall { width: tw as u32, height: th as u32, min: min as u32, metric: self.kind.to_string(), hint: String::new() });
        }
        let ones = [1.0f32];
        let masks = dropout_stream.map(|(seed, index)| DropoutBatch::draw(th, tw, std::iter::once(&mut sample_rng(seed, index))));
        let mask_inputs: Vec<(Vec<usize>, &[f32])> = match &masks {
            Some(m) => m.inputs(),
            // A broadcast 1 keeps every activation: no dropout.
            None => (0..contract::MASKS).map(|_| (vec![1, 1, 1, 1], &ones[..])).collect(),
        };
        self.fit_buffers(h, w)?;
        Ok(self.run_fused(&refs, &cands, 1, th, tw, Some(&mask_inputs), false)?.0[0])
    }

    /// Runs the fused model (E-LPIPS) on `n` stacked pairs of `th x tw` planar images; returns
    /// the distances, and the per-tap maps `(shape [n,1,H_t,W_t], values)` when `maps` is set
    /// (empty otherwise: they are not copied out of the runtime).
    #[allow(clippy::too_many_arguments)]
    fn run_fused(
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
        let map_names: Vec<String> = if maps { (0..self.kind.tap_channels().len()).map(contract::map).collect() } else { vec![] };
        let mut names = vec![contract::DISTANCE];
        names.extend(map_names.iter().map(String::as_str));
        let kind = self.kind;
        let session = &mut self.fused.as_mut().ok_or_else(|| no_fused_model(kind))?.session;
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

/// The pilot of a reference and its candidates (`crate::ensemble::tiles::Pilot`).
fn pilot_of(reference: &Image, candidates: &[&Image]) -> Pilot {
    let views: Vec<&[f32]> = candidates.iter().map(|c| c.data()).collect();
    Pilot::new(reference.data(), &views, reference.height() as usize, reference.width() as usize)
}

/// Reads a safetensors file of linear weights for `kind`, checking its taps and channels.
fn read_linear_weights(path: &Path, kind: MetricKind) -> Result<LinearWeights> {
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
    Ok(lw)
}

/// Refusal of a fused-model run (sampled draws) by a metric that has none: LPIPS.
fn no_fused_model(kind: MetricKind) -> Error {
    Error::invalid(format!("{kind} has no draws; use compare, compare_many or prepare_reference"))
}

fn draws_len(groups: &BTreeMap<(usize, usize), Vec<(usize, &mut Draw)>>) -> usize {
    groups.values().map(Vec::len).sum()
}

/// A tap map's mean in f64 (a tap's term of the distance); 0 for an empty map.
fn map_mean(map: &[f32]) -> f64 {
    map.iter().map(|&v| v as f64).sum::<f64>() / map.len().max(1) as f64
}

/// The distance from per-tap maps: the sum over taps of each map's mean.
fn distance_of_maps(maps: &[Vec<f32>]) -> Result<f64> {
    let d: f64 = maps.iter().map(|m| map_mean(m)).sum();
    if !d.is_finite() {
        return Err(Error::Inference(format!("the network produced a non-finite distance ({d})")));
    }
    Ok(d)
}
