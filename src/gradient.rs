//! The gradient of a distance with respect to the candidate image, so that a metric can serve as
//! a loss: LPIPS-VGG exactly, and E-LPIPS-VGG per sample (its transform and dropout fixed) or
//! averaged over samples (the gradient of the Monte-Carlo estimate, "expectation over
//! transformation").
//!
//! The networks' backward passes are ONNX graphs built by `weights/convert.py` from standard
//! inference operators (`lpips-vgg-grad.onnx`, `elpips-vgg-grad.onnx`; outputs `distance` and
//! `d_candidate`), so they run on the same ONNX Runtime as the metric. The E-LPIPS transform is
//! linear in the pixels; its gradient is mapped back to image coordinates by
//! [`Transform::apply_adjoint`]. Draws (transform and dropout per sample index) are exactly those
//! of [`Metric`](crate::Metric), so a sample's distance here equals the metric's for that sample.

use std::ops::Range;
use std::path::PathBuf;

use crate::ensemble::{for_each_batch, sample_rng, scale_levels_for, Draw, DropoutBatch, Transform};
use crate::error::{Error, Result};
use crate::image::{check_same_size, Image};
use crate::network::backend::Backend;
use crate::network::models::{contract, model_dir_in, MetricKind};
use crate::network::runtime::{RuntimeOptions, Session};

/// Network-input pixels (summed over a batch) per ONNX Runtime call. The backward graph keeps
/// every forward activation alive, about twice the memory of a forward pass per pixel.
const BATCH_PIXELS: usize = 1 << 17;

/// What configures a [`Gradient`].
#[derive(Clone, Debug)]
pub struct GradientOptions {
    /// `LpipsVgg` or `ElpipsVgg` (LPIPS-AlexNet has no gradient model).
    /// Which metric's gradient (lpips-vgg or elpips-vgg).
    pub metric: MetricKind,
    /// Directory holding `<metric>-grad.onnx`; `None` = the same search as the metric's models.
    pub model_dir: Option<PathBuf>,
    /// Where ONNX Runtime comes from, its threads and device.
    pub runtime: RuntimeOptions,
    /// Seed of the E-LPIPS draws: sample `i` of seed `s` is the metric's sample `i` of seed `s`.
    pub seed: u64,
    /// E-LPIPS scale levels; `None` = the size rule `max(1, min(H, W) / 64)`.
    pub scale_levels: Option<u32>,
}

impl Default for GradientOptions {
    fn default() -> Self {
        GradientOptions { metric: MetricKind::ElpipsVgg, model_dir: None, runtime: RuntimeOptions::default(), seed: 0, scale_levels: None }
    }
}

/// A distance and its gradient with respect to the candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct DistanceGradient {
    /// The distance (for several E-LPIPS samples, their mean).
    pub distance: f64,
    /// `d distance / d candidate`, planar RGB like [`Image::data`] (`3 * width * height`), per
    /// unit of pixel value in [0, 1].
    pub gradient: Vec<f32>,
}

/// A loaded gradient model. Not `Sync`: use one per thread.
pub struct Gradient {
    options: GradientOptions,
    session: Session,
}

impl Gradient {
    /// Loads the runtime and `<metric>-grad.onnx`.
    pub fn new(options: GradientOptions) -> Result<Self> {
        if options.metric == MetricKind::LpipsAlex {
            return Err(Error::invalid("gradients are available for lpips-vgg and elpips-vgg, not lpips-alex"));
        }
        if options.scale_levels == Some(0) {
            return Err(Error::invalid("scale levels must be at least 1"));
        }
        let path = model_dir_in(options.model_dir.as_deref(), options.runtime.install_dir.as_deref()).join(options.metric.gradient_file_name());
        // The gradient graphs were never measured on OpenVINO: `auto` keeps them on MLAS, which
        // cannot be slower than itself (an explicit backend is honoured).
        let mut runtime = options.runtime.clone();
        if runtime.backend == Backend::Auto {
            runtime.backend = Backend::Mlas;
        }
        let session = Session::open(&path, &runtime)?;
        let inputs = session.input_names();
        let has = |n: &str| inputs.iter().any(|i| i == n);
        if !(has(contract::REFERENCE) && has(contract::CANDIDATE) && contract::masks_of(options.metric).iter().all(|m| has(m))) {
            return Err(Error::Model(format!(
                "{} is not a {} gradient model (inputs: {}); rebuild the models with `make setup`",
                path.display(),
                options.metric,
                inputs.join(", ")
            )));
        }
        Ok(Gradient { options, session })
    }

    /// Which metric this is the gradient of.
    pub fn kind(&self) -> MetricKind {
        self.options.metric
    }

    /// Scale levels E-LPIPS uses for an image of this size.
    pub fn scale_levels(&self, height: u32, width: u32) -> u32 {
        self.options.scale_levels.unwrap_or_else(|| scale_levels_for(height, width))
    }

    /// The network's distance and gradient without transform or dropout: for LPIPS-VGG, the
    /// metric itself.
    pub fn network(&mut self, reference: &Image, candidate: &Image) -> Result<DistanceGradient> {
        check_same_size(reference, candidate)?;
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        check_network_size(self.kind(), h, w)?;
        let ones = [1.0f32];
        let masks: Option<Vec<(Vec<usize>, &[f32])>> =
            self.kind().is_ensemble().then(|| (0..contract::MASKS).map(|_| (vec![1, 1, 1, 1], &ones[..])).collect());
        let (d, g) = self.run(reference.data(), candidate.data(), 1, h, w, masks.as_deref())?;
        Ok(DistanceGradient { distance: d[0], gradient: g })
    }

    /// One E-LPIPS sample with a given transform, and dropout masks drawn from the start of
    /// stream `(seed, index)` (no dropout with `None`): the same evaluation as
    /// [`Metric::evaluate`](crate::Metric::evaluate), with its gradient in image coordinates.
    pub fn sample(
        &mut self,
        reference: &Image,
        candidate: &Image,
        transform: &Transform,
        dropout_stream: Option<(u64, u64)>,
    ) -> Result<DistanceGradient> {
        self.need_ensemble()?;
        check_same_size(reference, candidate)?;
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let (r, c) = (transform.apply(reference.data(), h, w), candidate_input(transform, candidate));
        check_network_size(self.kind(), r.height, r.width)?;
        let ones = [1.0f32];
        let masks = dropout_stream.map(|(seed, index)| DropoutBatch::draw(r.height, r.width, std::iter::once(&mut sample_rng(seed, index))));
        let mask_inputs: Vec<(Vec<usize>, &[f32])> = match &masks {
            Some(m) => m.inputs(),
            None => (0..contract::MASKS).map(|_| (vec![1, 1, 1, 1], &ones[..])).collect(),
        };
        let (d, g) = self.run(&r.data, &c, 1, r.height, r.width, Some(&mask_inputs))?;
        Ok(DistanceGradient { distance: d[0], gradient: transform.apply_adjoint(&g, h, w) })
    }

    /// The mean distance and mean gradient over the E-LPIPS samples `indices` (independent
    /// draws under the options' seed, as [`Metric::evaluate_samples`](crate::Metric::evaluate_samples)
    /// draws them): the gradient of the Monte-Carlo estimate, for optimising the expectation.
    pub fn samples(&mut self, reference: &Image, candidate: &Image, indices: Range<u64>) -> Result<DistanceGradient> {
        self.need_ensemble()?;
        check_same_size(reference, candidate)?;
        if indices.is_empty() {
            return Err(Error::invalid("an E-LPIPS gradient needs at least one sample"));
        }
        let (h, w) = (reference.height() as usize, reference.width() as usize);
        let levels = self.scale_levels(h as u32, w as u32);
        let min = crate::metric::elpips_min_size(levels) as usize;
        if h.min(w) < min {
            return Err(Error::ImageTooSmall {
                width: w as u32,
                height: h as u32,
                min: min as u32,
                metric: self.kind().to_string(),
                hint: format!(" with {levels} scale levels"),
            });
        }
        let n = (indices.end - indices.start) as usize;
        let mut draws: Vec<Draw> = indices.map(|i| Draw::iid(self.options.seed, i, levels)).collect();
        let mut total = 0.0f64;
        let mut gradient = vec![0.0f64; 3 * h * w];
        for_each_batch(reference.data(), candidate.data(), (h, w), &mut draws, BATCH_PIXELS, &mut |batch, members| {
            let (m, plane) = (members.len(), 3 * batch.height * batch.width);
            let inputs = batch.masks.inputs();
            let (d, g) = self.run(&batch.references, &batch.candidates, m, batch.height, batch.width, Some(&inputs))?;
            for (j, (_, dj)) in members.iter().enumerate() {
                total += d[j];
                let back = dj.transform.apply_adjoint(&g[j * plane..(j + 1) * plane], h, w);
                for (acc, v) in gradient.iter_mut().zip(back) {
                    *acc += v as f64;
                }
            }
            Ok(())
        })?;
        let inv = 1.0 / n as f64;
        Ok(DistanceGradient { distance: total * inv, gradient: gradient.into_iter().map(|v| (v * inv) as f32).collect() })
    }

    fn need_ensemble(&self) -> Result<()> {
        if self.kind().is_ensemble() {
            Ok(())
        } else {
            Err(Error::invalid(format!("{} has no transforms or dropout; use Gradient::network", self.kind())))
        }
    }

    /// Runs the gradient graph on `n` stacked pairs; returns the distances and `d_candidate`.
    fn run(
        &mut self,
        refs: &[f32],
        cands: &[f32],
        n: usize,
        th: usize,
        tw: usize,
        masks: Option<&[(Vec<usize>, &[f32])]>,
    ) -> Result<(Vec<f64>, Vec<f32>)> {
        let shape = vec![n, 3, th, tw];
        let mut inputs: Vec<(String, Vec<usize>, &[f32])> =
            vec![(contract::REFERENCE.into(), shape.clone(), refs), (contract::CANDIDATE.into(), shape, cands)];
        if let Some(masks) = masks {
            for (k, (shape, data)) in masks.iter().enumerate() {
                inputs.push((contract::mask(k), shape.clone(), data));
            }
        }
        let named: Vec<(&str, Vec<usize>, &[f32])> = inputs.iter().map(|(a, b, c)| (a.as_str(), b.clone(), *c)).collect();
        let mut out = self.session.run(&named, &[contract::DISTANCE, contract::D_CANDIDATE])?;
        let g = out.pop().unwrap_or_default();
        let d: Vec<f64> = out.pop().unwrap_or_default().iter().map(|&v| v as f64).collect();
        if d.len() != n || g.len() != n * 3 * th * tw {
            return Err(Error::Model(format!("gradient model returned {} distances and {} gradient values for {n} pairs", d.len(), g.len())));
        }
        if d.iter().any(|v| !v.is_finite()) || g.iter().any(|v| !v.is_finite()) {
            return Err(Error::Inference("the gradient network produced a non-finite value".into()));
        }
        Ok((d, g))
    }
}

/// The candidate as the network sees it under `transform`.
fn candidate_input(transform: &Transform, candidate: &Image) -> Vec<f32> {
    transform.apply(candidate.data(), candidate.height() as usize, candidate.width() as usize).data
}

fn check_network_size(kind: MetricKind, h: usize, w: usize) -> Result<()> {
    let min = kind.min_input_size() as usize;
    if h.min(w) < min {
        return Err(Error::ImageTooSmall { width: w as u32, height: h as u32, min: min as u32, metric: kind.to_string(), hint: String::new() });
    }
    Ok(())
}

