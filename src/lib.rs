//! # elpips: the E-LPIPS perceptual image metric on ONNX Runtime
//!
//! E-LPIPS (Kettunen, Härkönen, Lehtinen 2019) is LPIPS (deep features compared with learned
//! weights) averaged over random transformations and dropout applied identically to both images.
//! The averaging makes it robust to adversarial images while keeping LPIPS's agreement with human
//! judgement. Because it is an expectation, every E-LPIPS answer is an [`Estimate`]: a mean, its
//! standard error and a 95% half-width.
//!
//! The networks run on ONNX Runtime, loaded at run time (see [`RuntimeOptions`]); the models are built
//! by `make setup` from published weights (see `weights/README.md`).
//!
//! ## Compare two files
//! ```no_run
//! use elpips::{Image, LoadOptions, Metric, MetricOptions, Sampling};
//!
//! let load = LoadOptions::default();
//! let reference = Image::open("reference.png", &load)?;
//! let candidate = Image::open("candidate.png", &load)?;
//! let mut metric = Metric::new(MetricOptions { sampling: Sampling::Fixed(50), seed: 1, ..Default::default() })?;
//! let e = metric.compare(&reference, &candidate)?;
//! println!("E-LPIPS {:.4} ± {:.4} (95%, {} samples)", e.distance, e.ci95, e.samples);
//! # Ok::<(), elpips::Error>(())
//! ```
//!
//! ## Plain LPIPS on your own pixels
//! ```
//! use elpips::{Image, Metric, MetricKind, MetricOptions};
//!
//! // A 64x64 grey ramp and a slightly brighter copy, as interleaved RGB8.
//! let a: Vec<u8> = (0..64 * 64 * 3).map(|i| (i / 3 % 64 * 4) as u8).collect();
//! let b: Vec<u8> = a.iter().map(|&v| v.saturating_add(20)).collect();
//! let (a, b) = (Image::from_rgb8(64, 64, &a)?, Image::from_rgb8(64, 64, &b)?);
//!
//! let mut lpips = Metric::new(MetricOptions { metric: MetricKind::LpipsVgg, ..Default::default() })?;
//! let d = lpips.compare(&a, &b)?;
//! assert!(d.distance > 0.0 && d.std_error == 0.0); // LPIPS is deterministic
//! assert_eq!(lpips.compare(&a, &a)?.distance, 0.0);
//! # Ok::<(), elpips::Error>(())
//! ```
//!
//! ## Adaptive sampling
//! ```no_run
//! # use elpips::{Image, Metric, MetricOptions, Sampling};
//! # let (reference, candidate): (Image, Image) = todo!();
//! // Stop once the 95% half-width is below 0.005 and below 2% of the mean (at most 400 samples).
//! let sampling = Sampling::Adaptive { abs_error: 0.005, rel_error: 0.02, max_samples: 400, min_samples: 16 };
//! let mut metric = Metric::new(MetricOptions { sampling, ..Default::default() })?;
//! let e = metric.compare_with_progress(&reference, &candidate, &mut |p| eprintln!("{} samples", p.samples))?;
//! assert!(e.converged || e.samples == 400);
//! # Ok::<(), elpips::Error>(())
//! ```

// All unsafe code and FFI lives in `capi`, but for the driver query (network::cuda), the heap
// trim and mmap threshold (network::runtime::release_free_heap, bound_heap_cache) and the runtime's version query
// (network::runtime::loaded_version), each allowed where it is.
#![deny(unsafe_code)]
#![warn(missing_docs)]

// The layers, lowest first; each uses only those above it in this list (docs/architecture.md, "Layers").
// The public API is the re-exports below, `tune` and `capi`; the `#[doc(hidden)]` modules are
// reachable only for the CLI, tests, benches and fuzz targets, and promise nothing.
pub(crate) mod error;
#[doc(hidden)]
pub mod io;
#[doc(hidden)]
pub mod integrity;
#[doc(hidden)]
pub mod linear_weights;
#[doc(hidden)]
pub mod image;
#[doc(hidden)]
pub mod ensemble;
#[doc(hidden)]
pub mod network;
#[doc(hidden)]
pub mod estimate;
pub(crate) mod heatmap;
pub(crate) mod metric;
pub(crate) mod gradient;
pub mod tune;
#[cfg(feature = "capi")]
#[allow(unsafe_code)]
pub mod capi;

pub use crate::estimate::decision::{Decision, Gate, Side};
pub use crate::ensemble::{Flip, Transform};
pub use crate::error::{Error, Result};
pub use crate::estimate::{Estimate, Progress, Sampling};
pub use crate::network::taps::Precision;
pub use crate::gradient::{DistanceGradient, Gradient, GradientOptions};
pub use crate::heatmap::Heatmap;
pub use crate::image::{Image, LoadOptions, DEFAULT_MAX_PIXELS};
pub use crate::linear_weights::LinearWeights;
pub use crate::metric::{Metric, MetricOptions, Reference, CHEAP_STREAM_COST};
pub use crate::network::models::MetricKind;
pub use crate::estimate::multi::{Difference, MultiEstimate};
pub use crate::network::backend::Backend;
pub use crate::network::evaluator::SampleArea;
pub use crate::network::runtime::{CudnnSearch, Device, RuntimeOptions};
pub use crate::estimate::sampler::SamplerKind;
pub use crate::image::tonemap::{AlphaPolicy, Encoding, InputOptions, ToneCurve, ToneMapping, Transfer};
