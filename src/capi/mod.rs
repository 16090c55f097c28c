//! The C ABI: `extern "C"` functions and `#[repr(C)]` types, from which cbindgen generates
//! `include/elpips.h`. This is the crate's only `unsafe` module: it turns raw pointers into safe
//! values, calls the safe core, and turns every [`Error`] into a status and a message. It must
//! not hold any metric logic of its own.
//!
//! Rules every export follows:
//! - It goes through `guard`, so no panic crosses the boundary (a panic becomes
//!   `ELPIPS_STATUS_INTERNAL_ERROR`).
//! - Every pointer is checked; NULL where a value is needed is `ELPIPS_STATUS_NULL_POINTER`.
//! - Enumerations coming *from* C are plain integers (`typedef uint32_t ElpipsPixelFormat`, with
//!   `#define`d values): a C caller may pass any number, and reading an out-of-range value into
//!   a Rust enum would be undefined behaviour. Out-of-range values get a status instead.
//! - Status values are fixed and only ever appended. 1..=10 equal [`Error::code`].
//!
//! Thread-safety: a context holds its network behind a lock, so it may be shared between threads;
//! calls on one context run one at a time. Its last-error message is kept per calling thread.
//! A prepared reference is immutable and may be shared freely.

use std::ffi::{c_char, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

mod execution;
mod last_error;
use last_error::LastErrors;

use crate::error::Error;
use crate::estimate::{Estimate, Sampling};
use crate::image::{Image, LoadOptions, DEFAULT_MAX_PIXELS};
use crate::metric::{Metric, MetricOptions};
use crate::network::models::MetricKind;
use crate::metric::Reference;
use crate::network::backend::Backend;
use crate::network::evaluator::SampleArea;
use crate::network::runtime::{Device, RuntimeOptions};
use crate::estimate::sampler::SamplerKind;
use crate::image::pixels::{PixelError, PixelFormat, PixelLayout};
use crate::image::tonemap::{InputOptions, Transfer};

mod heatmap;
mod input;
pub use heatmap::*;
pub use input::*;

mod tune;
pub use tune::*;
// C ABI areas beyond the core, one file each (cbindgen follows these declarations).
pub mod multi;
mod decide;
pub use decide::*;

// ---------------------------------------------------------------------------------------------
// Status codes

/// What a call did: `ELPIPS_OK` (0) on success, otherwise one of the `ELPIPS_STATUS_*` values.
/// Values are fixed and only ever appended; `elpips_status_str` names them.
pub type ElpipsStatus = i32;

/// Success.
pub const ELPIPS_OK: ElpipsStatus = 0;
/// An option or argument is invalid or conflicts with another (see `elpips_last_error`).
pub const ELPIPS_STATUS_INVALID_ARGUMENT: ElpipsStatus = 1;
/// A file could not be opened, read or written (e.g. `elpips_compare_files`).
pub const ELPIPS_STATUS_IO: ElpipsStatus = 2;
/// A file is not a PNG or JPEG image we can decode (`elpips_compare_files`).
pub const ELPIPS_STATUS_IMAGE_DECODE: ElpipsStatus = 3;
/// The reference and the candidate differ in size.
pub const ELPIPS_STATUS_SIZE_MISMATCH: ElpipsStatus = 4;
/// The image is smaller than the metric can see (16x16 for the VGG metrics, 31x31 for AlexNet,
/// more for E-LPIPS with many scale levels).
pub const ELPIPS_STATUS_IMAGE_TOO_SMALL: ElpipsStatus = 5;
/// The image has more pixels than the context's `max_pixels`, or needs more memory than the
/// machine could allocate.
pub const ELPIPS_STATUS_IMAGE_TOO_LARGE: ElpipsStatus = 6;
/// ONNX Runtime could not be found or loaded, or is too old.
pub const ELPIPS_STATUS_RUNTIME: ElpipsStatus = 7;
/// A model file is missing or unusable.
pub const ELPIPS_STATUS_MODEL: ElpipsStatus = 8;
/// A custom linear-weights file could not be used.
pub const ELPIPS_STATUS_LINEAR_WEIGHTS: ElpipsStatus = 9;
/// ONNX Runtime failed while evaluating the network.
pub const ELPIPS_STATUS_INFERENCE: ElpipsStatus = 10;
/// A pointer that must not be NULL was NULL.
pub const ELPIPS_STATUS_NULL_POINTER: ElpipsStatus = 11;
/// An `ElpipsImage` is malformed: zero or absurd size, stride smaller than a row, unknown
/// format or transfer, or a buffer size that overflows.
pub const ELPIPS_STATUS_INVALID_IMAGE: ElpipsStatus = 12;
/// A float image holds NaN or infinity (the message gives the pixel).
pub const ELPIPS_STATUS_NON_FINITE: ElpipsStatus = 13;
/// The request needs something this build lacks (e.g. `ELPIPS_DEVICE_CUDA`).
pub const ELPIPS_STATUS_UNSUPPORTED: ElpipsStatus = 14;
/// A bug in elpips (a caught panic); the message says where. Please report it.
pub const ELPIPS_STATUS_INTERNAL_ERROR: ElpipsStatus = 15;
/// A caller-supplied callback reported a failure (e.g. `elpips_tune`'s encoder).
pub const ELPIPS_STATUS_CALLBACK: ElpipsStatus = 16;

const STATUS_NAMES: [&CStr; 17] = [
    c"ok",
    c"invalid argument",
    c"i/o error",
    c"cannot decode image",
    c"image sizes differ",
    c"image too small",
    c"image too large",
    c"ONNX Runtime unavailable",
    c"model unavailable",
    c"linear weights unusable",
    c"inference failed",
    c"null pointer",
    c"invalid image description",
    c"non-finite pixel value",
    c"unsupported in this build",
    c"internal error",
    c"callback failed",
];

/// The status an [`Error`] maps to. Exhaustive, so a new `Error` variant cannot compile without
/// being given a status here (appended, never renumbered).
fn error_status(e: &Error) -> ElpipsStatus {
    match e {
        Error::InvalidArgument(_) => ELPIPS_STATUS_INVALID_ARGUMENT,
        Error::Io { .. } | Error::Write { .. } => ELPIPS_STATUS_IO,
        Error::ImageDecode { .. } => ELPIPS_STATUS_IMAGE_DECODE,
        Error::SizeMismatch { .. } => ELPIPS_STATUS_SIZE_MISMATCH,
        Error::ImageTooSmall { .. } => ELPIPS_STATUS_IMAGE_TOO_SMALL,
        Error::ImageTooLarge { .. } | Error::OutOfMemory { .. } => ELPIPS_STATUS_IMAGE_TOO_LARGE,
        Error::Runtime(_) => ELPIPS_STATUS_RUNTIME,
        Error::Model(_) => ELPIPS_STATUS_MODEL,
        Error::LinearWeights(_) => ELPIPS_STATUS_LINEAR_WEIGHTS,
        Error::Inference(_) => ELPIPS_STATUS_INFERENCE,
    }
}

/// A failure on the C side: a status and the message `elpips_last_error` will return.
struct Failure {
    status: ElpipsStatus,
    message: String,
}

impl Failure {
    fn new(status: ElpipsStatus, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }
    fn null(what: &str) -> Self {
        Failure::new(ELPIPS_STATUS_NULL_POINTER, format!("`{what}` is NULL"))
    }
    fn image(message: impl Into<String>) -> Self {
        Failure::new(ELPIPS_STATUS_INVALID_IMAGE, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure { status: error_status(&e), message: e.to_string() }
    }
}

type CResult<T> = Result<T, Failure>;

// ---------------------------------------------------------------------------------------------
// Enumerations (plain integers on the C side; see the module docs)

/// Which metric a context computes.
pub type ElpipsMetric = u32;
/// E-LPIPS on VGG16 (the robust ensemble; stochastic, reported with its standard error). Default.
pub const ELPIPS_METRIC_ELPIPS_VGG: ElpipsMetric = 0;
/// Official LPIPS v0.1 on VGG16 (deterministic).
pub const ELPIPS_METRIC_LPIPS_VGG: ElpipsMetric = 1;
/// Official LPIPS v0.1 on AlexNet (deterministic).
pub const ELPIPS_METRIC_LPIPS_ALEX: ElpipsMetric = 2;

/// How many E-LPIPS samples to draw (ignored by the deterministic LPIPS metrics).
pub type ElpipsSampling = u32;
/// Draw until the 95% half-width is at most `abs_error` and at most `rel_error` x distance,
/// checked after each batch from `min_samples` on, or until `max_samples`. Default.
pub const ELPIPS_SAMPLING_ADAPTIVE: ElpipsSampling = 0;
/// Draw exactly `samples` samples.
pub const ELPIPS_SAMPLING_FIXED: ElpipsSampling = 1;

/// How E-LPIPS draws its samples (all estimate the same expectation; see the crate's `sampler`).
pub type ElpipsSampler = u32;
/// Independent draws (the authors' estimator): sample `i` comes from stream `(seed, i)`. The
/// zero value; the options' default is `ELPIPS_SAMPLER_CONTROL`.
pub const ELPIPS_SAMPLER_IID: ElpipsSampler = 0;
/// Stratified by scale level with cost-aware allocation and shuffled decks within levels.
pub const ELPIPS_SAMPLER_STRATIFIED: ElpipsSampler = 1;
/// Independent draws with regression control variates on the colour gains and scale level
/// (docs/estimator.md). Default, as in the library and the command line.
pub const ELPIPS_SAMPLER_CONTROL: ElpipsSampler = 2;

/// The most samples `samples`, `max_samples` or a gate's `max_samples` may ask for; a larger
/// count (a wrapped or unset integer, most likely) is `ELPIPS_STATUS_INVALID_ARGUMENT`.
pub const ELPIPS_MAX_SAMPLES: u32 = 1_000_000;

/// Where the networks run.
pub type ElpipsDevice = u32;
/// The CPU. Default.
pub const ELPIPS_DEVICE_CPU: ElpipsDevice = 0;
/// CUDA when this build (cargo feature `cuda`), the loaded ONNX Runtime (onnxruntime-gpu) and a
/// GPU allow it, else the CPU; `elpips_context_device` tells which one a context got.
pub const ELPIPS_DEVICE_AUTO: ElpipsDevice = 1;
/// An NVIDIA GPU through CUDA (CPU provider behind it for any node CUDA does not take);
/// `ELPIPS_STATUS_UNSUPPORTED` when the build or the runtime has no CUDA provider (the
/// CPU-only runtime `make setup` installs has none).
pub const ELPIPS_DEVICE_CUDA: ElpipsDevice = 2;

/// The kernels that run the networks on the CPU (see `ElpipsOptions.backend`).
pub type ElpipsBackend = u32;
/// What measured fastest for this CPU: OpenVINO on Intel CPUs with AVX-512 where its plugin is
/// installed (`make setup`, `make install`), else MLAS; OpenVINO failing to load or to compile
/// a model falls back to MLAS with a warning on stderr. The zero value, hence the default.
pub const ELPIPS_BACKEND_AUTO: ElpipsBackend = 0;
/// ONNX Runtime's own CPU kernels (MLAS), always present.
pub const ELPIPS_BACKEND_MLAS: ElpipsBackend = 1;
/// OpenVINO through its ONNX Runtime plugin, or `ELPIPS_STATUS_UNSUPPORTED` where it is not
/// installed or does not serve this CPU (it serves Intel CPUs only).
pub const ELPIPS_BACKEND_OPENVINO: ElpipsBackend = 2;

/// Arithmetic of the networks.
pub type ElpipsPrecision = u32;
/// float32 everywhere. Default.
pub const ELPIPS_PRECISION_FP32: ElpipsPrecision = 0;
/// int8 convolutions (lpips-vgg and elpips-vgg; faster on CPUs, up to ~3% measured distance error: see
/// docs/performance.md). Other metrics: `ELPIPS_STATUS_INVALID_ARGUMENT`.
pub const ELPIPS_PRECISION_INT8: ElpipsPrecision = 1;
/// bf16 multiplications on the float32 models, by OpenVINO on CPUs with AVX512-BF16 or AMX
/// (error against fp32 measured in docs/performance.md); `ELPIPS_STATUS_UNSUPPORTED` on other
/// CPUs, or where the OpenVINO plugin is not installed or the context's backend is MLAS.
pub const ELPIPS_PRECISION_BF16: ElpipsPrecision = 2;

/// `elpips_context_set_tile_size` value that turns tiling off.
pub const ELPIPS_TILE_NEVER: u32 = u32::MAX;

/// Layout of the pixels an `ElpipsImage` points to: interleaved channels, rows `stride_bytes`
/// apart. Alpha follows `ElpipsOptions.alpha` (ignored by default). 16-bit samples are
/// native-endian and divided by 65535; 8-bit ones by 255; float samples are used as they are.
/// The values then go through the transfer (see `ElpipsTransfer`).
pub type ElpipsPixelFormat = u32;
/// 3 x `uint8_t` per pixel. The zero value, hence the default.
pub const ELPIPS_PIXEL_FORMAT_RGB8: ElpipsPixelFormat = 0;
/// 4 x `uint8_t` per pixel (alpha ignored).
pub const ELPIPS_PIXEL_FORMAT_RGBA8: ElpipsPixelFormat = 1;
/// 3 x native-endian `uint16_t` per pixel.
pub const ELPIPS_PIXEL_FORMAT_RGB16: ElpipsPixelFormat = 2;
/// 4 x native-endian `uint16_t` per pixel (alpha ignored).
pub const ELPIPS_PIXEL_FORMAT_RGBA16: ElpipsPixelFormat = 3;
/// 3 x `float` per pixel.
pub const ELPIPS_PIXEL_FORMAT_RGB_F32: ElpipsPixelFormat = 4;
/// 4 x `float` per pixel (alpha ignored).
pub const ELPIPS_PIXEL_FORMAT_RGBA_F32: ElpipsPixelFormat = 5;

/// How the pixel values encode light.
pub type ElpipsTransfer = u32;
/// sRGB-encoded values (what PNG and JPEG files hold, and what the networks were trained on):
/// used as they are, clamped to [0, 1]. The zero value, hence the default.
pub const ELPIPS_TRANSFER_SRGB: ElpipsTransfer = 0;
/// Linear light (e.g. a renderer's output before display encoding): exposed by
/// `ElpipsOptions.exposure`, compressed by `ElpipsOptions.tonemap`, then sRGB-encoded.
pub const ELPIPS_TRANSFER_LINEAR: ElpipsTransfer = 1;

fn metric_kind(m: ElpipsMetric) -> CResult<MetricKind> {
    match m {
        ELPIPS_METRIC_ELPIPS_VGG => Ok(MetricKind::ElpipsVgg),
        ELPIPS_METRIC_LPIPS_VGG => Ok(MetricKind::LpipsVgg),
        ELPIPS_METRIC_LPIPS_ALEX => Ok(MetricKind::LpipsAlex),
        other => Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown metric {other}; use an ELPIPS_METRIC_* value"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Options

/// Everything that configures a context. Fill it with `elpips_options_default`, then change
/// what you need. The struct may grow at its end in later versions: `struct_size` tells the
/// library which version the caller was built with, and fields beyond it take their defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ElpipsOptions {
    /// `sizeof(ElpipsOptions)` as the caller sees it; set by `elpips_options_default`.
    pub struct_size: usize,
    /// An `ELPIPS_METRIC_*` value. Default `ELPIPS_METRIC_ELPIPS_VGG`.
    pub metric: ElpipsMetric,
    /// An `ELPIPS_DEVICE_*` value. Default `ELPIPS_DEVICE_CPU`.
    pub device: ElpipsDevice,
    /// Seed of the E-LPIPS random transforms and dropout. Sample `i` always draws the same
    /// transform and masks for a given seed, whatever the images. Default 0.
    pub seed: u64,
    /// An `ELPIPS_SAMPLER_*` value. Default `ELPIPS_SAMPLER_CONTROL`.
    pub sampler: ElpipsSampler,
    /// An `ELPIPS_SAMPLING_*` value. Default `ELPIPS_SAMPLING_ADAPTIVE`.
    pub sampling: ElpipsSampling,
    /// Sample count for `ELPIPS_SAMPLING_FIXED` (1 to `ELPIPS_MAX_SAMPLES`). Default 200.
    pub samples: u32,
    /// Adaptive: target 95% half-width, absolute (> 0). Default 0.01.
    pub abs_error: f64,
    /// Adaptive: target 95% half-width relative to the distance (> 0). Default 0.025.
    pub rel_error: f64,
    /// Adaptive: most samples to draw (2 to `ELPIPS_MAX_SAMPLES`). Default 200.
    pub max_samples: u32,
    /// Adaptive: fewest samples before the stopping rule is consulted (<= `max_samples`). Default 16.
    pub min_samples: u32,
    /// ONNX Runtime intra-op threads; 0 = one per available core. Default 0.
    pub threads: u32,
    /// E-LPIPS scale levels; 0 = the size rule max(1, min(height, width) / 64). Default 0.
    pub scale_levels: u32,
    /// Refuse images with more pixels than this (`ELPIPS_STATUS_IMAGE_TOO_LARGE`); 0 = the
    /// default of 16 Mpx. Above it, an image the machine cannot hold is also
    /// `ELPIPS_STATUS_IMAGE_TOO_LARGE` (its buffers are allocated fallibly), never an abort.
    pub max_pixels: u64,
    /// Path of libonnxruntime.so, or NULL for the default search: `ORT_DYLIB_PATH`, then the
    /// directory of the loaded libelpips, then the source checkout the library was built in.
    /// The runtime is loaded once per process; a later context naming another file fails.
    /// Copied by `elpips_context_new`; need not outlive that call.
    pub runtime_library: *const c_char,
    /// Directory holding the `.onnx` models, or NULL for the default search: `ELPIPS_MODEL_DIR`,
    /// then `<libdir>/../share/elpips/models` beside the loaded libelpips, then the checkout's
    /// `weights/models`. Copied by `elpips_context_new`.
    pub model_dir: *const c_char,
    /// Custom linear weights (a safetensors file; `weights/convert.py safetensors` converts the
    /// authors' `.npy` dicts and lpips `.pth` files) replacing the metric's, or NULL (default)
    /// for the published ones. Copied by `elpips_context_new`.
    pub linear_weights: *const c_char,
    /// Exposure in stops for `ELPIPS_TRANSFER_LINEAR` images (and EXR/HDR files): values are
    /// multiplied by 2^exposure before the tone curve (finite, within +-64). Default 0.
    /// Older callers (a smaller `struct_size`) get the defaults of this and the following fields.
    pub exposure: f32,
    /// An `ELPIPS_TONEMAP_*` value for linear images. Default `ELPIPS_TONEMAP_CLAMP`.
    pub tonemap: ElpipsTonemap,
    /// An `ELPIPS_ALPHA_*` value for RGBA images. Default `ELPIPS_ALPHA_IGNORE`.
    pub alpha: ElpipsAlpha,
    /// Background colour (R, G, B >= 0) for `ELPIPS_ALPHA_OVER`, in the image's own units:
    /// display values for sRGB images, linear for linear ones. Default 0, 0, 0.
    pub background: [f32; 3],
    /// An `ELPIPS_BACKEND_*` value: the CPU kernels. Default `ELPIPS_BACKEND_AUTO`; older callers
    /// (a `struct_size` that ends before it) get the default. `elpips_context_backend` tells
    /// which one a context got.
    pub backend: ElpipsBackend,
    /// E-LPIPS: 1 = samples whose network input is above 0.3 Mpx evaluate one tile, chosen
    /// where the images differ and weighted so that the expectation is the same
    /// (docs/estimator.md, "Tile-sampled draws"); 0 (default) = every sample evaluates its
    /// whole transformed pair (the authors' estimator). Default 0; older callers (a
    /// `struct_size` that ends before it) get the default. Other values are refused.
    pub tile_samples: u32,
    /// E-LPIPS: two-stream estimates, each full sample with this many draws through the cheap
    /// stream only (taps 0-1 of the network, ~5.5% of a sample; docs/estimator.md, "Two
    /// streams"): the same expectation, less variance per unit of work, on pairs up to ~540 x
    /// 540 (larger pairs take one stream). 0 to 255; needs `ELPIPS_SAMPLER_IID` or
    /// `ELPIPS_SAMPLER_CONTROL`. Default 0 (one stream); older callers (a `struct_size` that
    /// ends before it) get the default.
    pub cheap_draws: u32,
}

/// The size of the first version of `ElpipsOptions` (up to `linear_weights`); smaller
/// `struct_size` values are refused, and fields beyond a caller's size take their defaults.
const OPTIONS_V1_SIZE: usize = std::mem::offset_of!(ElpipsOptions, exposure);

impl ElpipsOptions {
    fn defaults() -> Self {
        let Sampling::Adaptive { abs_error, rel_error, max_samples, min_samples } = Sampling::DEFAULT else {
            unreachable!("the default sampling is adaptive")
        };
        ElpipsOptions {
            struct_size: std::mem::size_of::<ElpipsOptions>(),
            metric: ELPIPS_METRIC_ELPIPS_VGG,
            device: ELPIPS_DEVICE_CPU,
            seed: 0,
            sampler: match SamplerKind::default() {
                SamplerKind::Iid => ELPIPS_SAMPLER_IID,
                SamplerKind::Stratified => ELPIPS_SAMPLER_STRATIFIED,
                SamplerKind::Control => ELPIPS_SAMPLER_CONTROL,
            },
            sampling: ELPIPS_SAMPLING_ADAPTIVE,
            samples: 200,
            abs_error,
            rel_error,
            max_samples,
            min_samples,
            threads: 0,
            scale_levels: 0,
            max_pixels: 0,
            runtime_library: std::ptr::null(),
            model_dir: std::ptr::null(),
            linear_weights: std::ptr::null(),
            exposure: 0.0,
            tonemap: ELPIPS_TONEMAP_CLAMP,
            alpha: ELPIPS_ALPHA_IGNORE,
            background: [0.0; 3],
            backend: ELPIPS_BACKEND_AUTO,
            tile_samples: 0,
            cheap_draws: 0,
        }
    }

    /// Reads a caller's options of any supported `struct_size`.
    ///
    /// # Safety
    /// `p` must point to at least `struct_size` readable bytes (its first field).
    unsafe fn read(p: *const ElpipsOptions) -> CResult<Self> {
        let ours = std::mem::size_of::<ElpipsOptions>();
        // SAFETY: every version starts with `struct_size`.
        let size = unsafe { std::ptr::addr_of!((*p).struct_size).read_unaligned() };
        if size < OPTIONS_V1_SIZE {
            return Err(Failure::new(
                ELPIPS_STATUS_INVALID_ARGUMENT,
                format!("options.struct_size is {size}, smaller than any ElpipsOptions ({OPTIONS_V1_SIZE} bytes); fill the options with elpips_options_default"),
            ));
        }
        let bytes = p.cast::<u8>();
        if size > ours {
            // A caller built against a newer header: its extra fields must be left at zero,
            // since this library cannot honour them.
            // SAFETY: the caller promises `size` readable bytes.
            let extra = unsafe { std::slice::from_raw_parts(bytes.add(ours), size - ours) };
            if extra.iter().any(|&b| b != 0) {
                return Err(Failure::new(
                    ELPIPS_STATUS_UNSUPPORTED,
                    format!("options come from a newer elpips ({size} bytes, this library knows {ours}) and set fields this version does not have"),
                ));
            }
        }
        let mut out = ElpipsOptions::defaults();
        // SAFETY: every field is an integer, float (array) or raw pointer, for which any bytes are valid;
        // the caller's bytes beyond `size` are not read.
        unsafe { std::ptr::copy_nonoverlapping(bytes, (&mut out as *mut ElpipsOptions).cast::<u8>(), size.min(ours)) };
        out.struct_size = ours;
        Ok(out)
    }

    /// The safe core's options.
    ///
    /// # Safety
    /// The path pointers must be NULL or NUL-terminated strings.
    unsafe fn metric_options(&self) -> CResult<MetricOptions> {
        let metric = metric_kind(self.metric)?;
        let device = match self.device {
            ELPIPS_DEVICE_CPU => Device::Cpu,
            ELPIPS_DEVICE_AUTO => Device::Auto,
            ELPIPS_DEVICE_CUDA => Device::Cuda,
            other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown device {other}; use an ELPIPS_DEVICE_* value"))),
        };
        let backend = match self.backend {
            ELPIPS_BACKEND_AUTO => Backend::Auto,
            ELPIPS_BACKEND_MLAS => Backend::Mlas,
            ELPIPS_BACKEND_OPENVINO => Backend::Openvino,
            other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown backend {other}; use an ELPIPS_BACKEND_* value"))),
        };
        if backend == Backend::Openvino {
            // SAFETY: forwarded from the caller.
            let library = unsafe { opt_path(self.runtime_library) };
            let runtime = RuntimeOptions { library, install_dir: loaded_from_dir(), ..Default::default() };
            if let Err(why) = runtime.openvino_ready() {
                return Err(Failure::new(ELPIPS_STATUS_UNSUPPORTED, format!("ELPIPS_BACKEND_OPENVINO: {why}; use ELPIPS_BACKEND_AUTO or ELPIPS_BACKEND_MLAS")));
            }
        }
        if device == Device::Cuda {
            // SAFETY: forwarded from the caller.
            let library = unsafe { opt_path(self.runtime_library) };
            let runtime = RuntimeOptions { library, install_dir: loaded_from_dir(), ..Default::default() };
            if !runtime.cuda_available()? {
                let reason = crate::network::runtime::no_cuda_reason(&runtime);
                return Err(Failure::new(ELPIPS_STATUS_UNSUPPORTED, reason));
            }
        }
        let sampler = match self.sampler {
            ELPIPS_SAMPLER_STRATIFIED => SamplerKind::Stratified,
            ELPIPS_SAMPLER_IID => SamplerKind::Iid,
            ELPIPS_SAMPLER_CONTROL => SamplerKind::Control,
            other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown sampler {other}; use an ELPIPS_SAMPLER_* value"))),
        };
        let sampling = match self.sampling {
            ELPIPS_SAMPLING_FIXED => Sampling::Fixed(self.samples),
            ELPIPS_SAMPLING_ADAPTIVE => Sampling::Adaptive {
                abs_error: self.abs_error,
                rel_error: self.rel_error,
                max_samples: self.max_samples,
                min_samples: self.min_samples,
            },
            other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown sampling {other}; use an ELPIPS_SAMPLING_* value"))),
        };
        // SAFETY: forwarded from the caller.
        let path = |p: *const c_char| unsafe { opt_path(p) };
        Ok(MetricOptions {
            metric,
            model_dir: path(self.model_dir),
            linear_weights: path(self.linear_weights),
            runtime: RuntimeOptions {
                library: path(self.runtime_library),
                threads: self.threads as usize,
                device,
                install_dir: loaded_from_dir(),
                backend,
                ..Default::default()
            },
            seed: self.seed,
            sampler,
            sampling,
            scale_levels: (self.scale_levels > 0).then_some(self.scale_levels),
            sample_area: match self.tile_samples {
                0 => SampleArea::Whole,
                1 => SampleArea::Auto,
                other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("tile_samples is {other}; use 0 (whole samples) or 1 (tile-sampled draws above 0.3 Mpx)"))),
            },
            cheap_draws: self.cheap_draws,
            ..Default::default()
        })
    }

    fn max_pixels(&self) -> u64 {
        if self.max_pixels == 0 {
            DEFAULT_MAX_PIXELS
        } else {
            self.max_pixels
        }
    }
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn opt_path(p: *const c_char) -> Option<PathBuf> {
    if p.is_null() {
        return None;
    }
    // SAFETY: forwarded from the caller.
    let s = unsafe { CStr::from_ptr(p) };
    Some(PathBuf::from(OsStr::from_bytes(s.to_bytes())))
}

// ---------------------------------------------------------------------------------------------
// Images

/// A caller's pixel buffer, borrowed for the duration of one call (the library copies what it
/// needs). Zeroed `stride_bytes`, `format` and `transfer` mean: tightly packed rows, RGB8, sRGB.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ElpipsImage {
    /// First byte of the top row. Need not be aligned.
    pub data: *const c_void,
    /// Pixels per row (> 0).
    pub width: u32,
    /// Rows (> 0). `width x height` must not exceed the context's `max_pixels`.
    pub height: u32,
    /// Bytes from the start of one row to the next; 0 = `width` x bytes per pixel (packed).
    pub stride_bytes: usize,
    /// An `ELPIPS_PIXEL_FORMAT_*` value.
    pub format: ElpipsPixelFormat,
    /// An `ELPIPS_TRANSFER_*` value.
    pub transfer: ElpipsTransfer,
}

/// The core's pixel format of an `ELPIPS_PIXEL_FORMAT_*` value.
fn pixel_format(format: ElpipsPixelFormat) -> CResult<PixelFormat> {
    Ok(match format {
        ELPIPS_PIXEL_FORMAT_RGB8 => PixelFormat::Rgb8,
        ELPIPS_PIXEL_FORMAT_RGBA8 => PixelFormat::Rgba8,
        ELPIPS_PIXEL_FORMAT_RGB16 => PixelFormat::Rgb16,
        ELPIPS_PIXEL_FORMAT_RGBA16 => PixelFormat::Rgba16,
        ELPIPS_PIXEL_FORMAT_RGB_F32 => PixelFormat::RgbF32,
        ELPIPS_PIXEL_FORMAT_RGBA_F32 => PixelFormat::RgbaF32,
        other => return Err(Failure::image(format!("unknown pixel format {other}; use an ELPIPS_PIXEL_FORMAT_* value"))),
    })
}

impl From<PixelError> for Failure {
    fn from(e: PixelError) -> Self {
        match e {
            PixelError::Layout(m) => Failure::image(m),
            PixelError::NonFinite(m) => Failure::new(ELPIPS_STATUS_NON_FINITE, m),
            PixelError::Core(e) => e.into(),
        }
    }
}

/// Checks an image description (everything but the pixel values; `image::pixels` owns the rules).
fn layout(img: &ElpipsImage, max_pixels: u64) -> CResult<PixelLayout> {
    let format = pixel_format(img.format)?;
    let transfer = match img.transfer {
        ELPIPS_TRANSFER_SRGB => Transfer::Display,
        ELPIPS_TRANSFER_LINEAR => Transfer::Linear,
        other => return Err(Failure::image(format!("unknown transfer {other}; use ELPIPS_TRANSFER_SRGB or ELPIPS_TRANSFER_LINEAR"))),
    };
    let layout = PixelLayout::new(img.width, img.height, img.stride_bytes, format, transfer, max_pixels)?;
    if img.data.is_null() {
        return Err(Failure::null("image->data"));
    }
    Ok(layout)
}

/// Validates and copies a caller's image.
///
/// # Safety
/// `img` is NULL or points to an `ElpipsImage` whose `data` holds the bytes it describes.
unsafe fn read_image(img: *const ElpipsImage, what: &str, max_pixels: u64, input: &InputOptions) -> CResult<Image> {
    if img.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL, and the caller promises a valid ElpipsImage (all fields plain data).
    let desc = unsafe { img.read_unaligned() };
    let g = layout(&desc, max_pixels).map_err(|f| Failure { message: format!("{what}: {}", f.message), ..f })?;
    // SAFETY: `layout` checked `data` is non-NULL and that `span` is the extent the caller
    // described (and fits in isize); the caller promises those bytes are readable.
    let bytes = unsafe { std::slice::from_raw_parts(desc.data.cast::<u8>(), g.span()) };
    g.decode(bytes, input).map_err(|e| {
        let f = Failure::from(e);
        Failure { message: format!("{what}: {}", f.message), ..f }
    })
}

// ---------------------------------------------------------------------------------------------
// Contexts and references

/// A loaded metric (runtime + network) with its options. Create with `elpips_context_new`, free
/// with `elpips_context_free`. May be shared between threads: calls on one context are
/// serialised by an internal lock (create one context per thread to run in parallel).
pub struct ElpipsContext {
    metric: Mutex<Metric>,
    /// The LPIPS-VGG network that aims `elpips_tune`'s probes, loaded on its first use.
    guide: Mutex<Option<Metric>>,
    max_pixels: u64,
    /// Tone mapping and alpha policy for every image read with this context.
    input: InputOptions,
    /// The last failure's message, per calling thread.
    errors: LastErrors,
}

impl ElpipsContext {
    fn metric(&self) -> std::sync::MutexGuard<'_, Metric> {
        // A panic while comparing (caught at the boundary) leaves the metric usable: it keeps no
        // state between calls.
        self.metric.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, message: &str) {
        self.errors.record(message);
    }
}

/// A reference image prepared once for comparing many candidates with
/// `elpips_compare_reference`. Immutable: may be shared between threads and contexts.
pub struct ElpipsReference {
    /// The image, and for LPIPS its taps from the preparing context's network.
    prepared: Reference,
}

/// The result of a comparison.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ElpipsResult {
    /// The distance (the Monte-Carlo mean for E-LPIPS). 0 for identical images.
    pub distance: f64,
    /// Standard error of `distance` (0 for the deterministic LPIPS metrics).
    pub std_error: f64,
    /// 95% confidence half-width: the true value lies in `distance +- ci95` with ~95% probability.
    pub ci95: f64,
    /// Samples averaged (1 for LPIPS).
    pub samples: u64,
    /// E-LPIPS scale levels used (0 for LPIPS).
    pub scale_levels: u32,
    /// `false` when adaptive sampling stopped at `max_samples` before reaching its error target.
    pub converged: bool,
}

fn result_of(e: &Estimate, scale_levels: u32) -> ElpipsResult {
    ElpipsResult { distance: e.distance, std_error: e.std_error, ci95: e.ci95, samples: e.samples, scale_levels, converged: e.converged }
}

/// Runs `f`, catching panics, and records a failure's message on `ctx` (when there is one).
/// Every export goes through here.
fn guard(ctx: Option<&ElpipsContext>, f: impl FnOnce() -> CResult<()>) -> ElpipsStatus {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return ELPIPS_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure::new(ELPIPS_STATUS_INTERNAL_ERROR, format!("internal error (a bug in elpips, please report it): {what}"))
        }
    };
    if let Some(ctx) = ctx {
        // Recording must not unwind either.
        let _ = catch_unwind(AssertUnwindSafe(|| ctx.record(&failure.message)));
    }
    failure.status
}

/// # Safety
/// `ctx` is NULL or a live context.
unsafe fn context<'a>(ctx: *const ElpipsContext) -> Option<&'a ElpipsContext> {
    // SAFETY: forwarded from the caller.
    unsafe { ctx.as_ref() }
}

fn need<'a, T>(p: *const T, what: &str) -> CResult<&'a T> {
    // SAFETY: callers pass pointers the C caller promised valid or NULL.
    unsafe { p.as_ref() }.ok_or_else(|| Failure::null(what))
}

fn need_out<'a, T>(p: *mut T, what: &str) -> CResult<&'a mut T> {
    // SAFETY: callers pass pointers the C caller promised valid or NULL.
    unsafe { p.as_mut() }.ok_or_else(|| Failure::null(what))
}

impl ElpipsContext {
    /// The two images of a comparison from caller buffers, with this context's pixel budget and
    /// input options.
    ///
    /// # Safety
    /// Each pointer is NULL or a valid description of readable pixels.
    unsafe fn read_pair(&self, reference: *const ElpipsImage, candidate: *const ElpipsImage) -> CResult<(Image, Image)> {
        // SAFETY: forwarded from the caller.
        let r = unsafe { read_image(reference, "reference", self.max_pixels, &self.input)? };
        // SAFETY: forwarded from the caller.
        let c = unsafe { read_image(candidate, "candidate", self.max_pixels, &self.input)? };
        Ok((r, c))
    }

    /// The two images of a comparison from files, with this context's pixel budget and input
    /// options.
    ///
    /// # Safety
    /// Each path is NULL or NUL-terminated.
    unsafe fn open_pair(&self, reference_path: *const c_char, candidate_path: *const c_char) -> CResult<(Image, Image)> {
        // SAFETY: forwarded from the caller.
        let r = unsafe { opt_path(reference_path) }.ok_or_else(|| Failure::null("reference_path"))?;
        // SAFETY: forwarded from the caller.
        let c = unsafe { opt_path(candidate_path) }.ok_or_else(|| Failure::null("candidate_path"))?;
        let load = LoadOptions { max_pixels: self.max_pixels, input: self.input };
        Ok((Image::open(&r, &load)?, Image::open(&c, &load)?))
    }
}

fn compare_images(ctx: &ElpipsContext, reference: &Image, candidate: &Image) -> CResult<ElpipsResult> {
    let mut metric = ctx.metric();
    let estimate = metric.compare(reference, candidate)?;
    let levels = result_levels(&metric, &reference);
    Ok(result_of(&estimate, levels))
}

// ---------------------------------------------------------------------------------------------
// Exports

/// The library version, e.g. "0.1.0" (equals `ELPIPS_VERSION_STRING` of the header it was built
/// with). Static storage: never free it. Thread-safe.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub unsafe extern "C" fn elpips_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The ABI major version of the library (its soname is `libelpips.so.<this>`). A program built
/// with a header whose `ELPIPS_ABI_VERSION` differs must not use it. Thread-safe.
///
/// # Safety
/// None: no arguments.
#[no_mangle]
pub unsafe extern "C" fn elpips_abi_version() -> u32 {
    // The package's major version: the soname and the header's ELPIPS_ABI_VERSION use it too.
    env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(u32::MAX)
}

/// A short English name of `status`, e.g. "null pointer"; "unknown status" for values this
/// library does not know. Static storage: never free it. Thread-safe.
///
/// # Safety
/// None: any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn elpips_status_str(status: ElpipsStatus) -> *const c_char {
    let unknown = c"unknown status";
    let name = catch_unwind(|| usize::try_from(status).ok().and_then(|i| STATUS_NAMES.get(i).copied()));
    name.ok().flatten().unwrap_or(unknown).as_ptr()
}

/// Fills `options` with the defaults (see each field); pass `sizeof(ElpipsOptions)` as `size`.
///
/// `size` is the caller's idea of the struct's size, so a program built against an older header
/// (a smaller struct) gets only its own fields written, and one built against a newer header gets
/// this library's defaults with its unknown trailing fields zeroed (which mean "default").
/// `struct_size` is set to `size`. The struct's previous contents are never read, so it may be
/// uninitialised. NULL `options`: `ELPIPS_STATUS_NULL_POINTER`; `size` smaller than the first
/// version of the struct: `ELPIPS_STATUS_INVALID_ARGUMENT`. Thread-safe.
///
/// # Safety
/// `options` is NULL or points to `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn elpips_options_default(options: *mut ElpipsOptions, size: usize) -> ElpipsStatus {
    guard(None, || {
        if options.is_null() {
            return Err(Failure::null("options"));
        }
        if size < OPTIONS_V1_SIZE {
            return Err(Failure::new(
                ELPIPS_STATUS_INVALID_ARGUMENT,
                format!("size {size} is smaller than any ElpipsOptions ({OPTIONS_V1_SIZE} bytes); pass sizeof(ElpipsOptions)"),
            ));
        }
        let ours = std::mem::size_of::<ElpipsOptions>();
        let mut defaults = ElpipsOptions::defaults();
        defaults.struct_size = size;
        let bytes = options.cast::<u8>();
        // SAFETY: the caller promises `size` writable bytes; `defaults` has `ours`.
        unsafe {
            std::ptr::copy_nonoverlapping((&defaults as *const ElpipsOptions).cast::<u8>(), bytes, size.min(ours));
            if size > ours {
                std::ptr::write_bytes(bytes.add(ours), 0, size - ours);
            }
        }
        Ok(())
    })
}

/// Creates a context: loads ONNX Runtime (once per process) and the metric's network.
///
/// `options` NULL means all defaults; otherwise it is read, not kept (its strings are copied).
/// On success `*out` receives a new context owned by the caller, to be released with
/// `elpips_context_free`; on failure `*out` is set to NULL and the status says why (with no
/// context there is no `elpips_last_error`: `elpips_context_new_with_error` also returns the
/// message). NULL `out`: `ELPIPS_STATUS_NULL_POINTER`.
/// Thread-safe (contexts may be created concurrently).
///
/// # Safety
/// `options` is NULL or points to an `ElpipsOptions` of at least `options->struct_size` bytes
/// whose string fields are NULL or NUL-terminated; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_context_new(options: *const ElpipsOptions, out: *mut *mut ElpipsContext) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    unsafe { elpips_context_new_with_error(options, out, std::ptr::null_mut(), 0) }
}

/// `elpips_context_new`, also writing the failure's message (NUL-terminated, truncated to fit)
/// into `message` when it is not NULL and `message_size` > 0; on success `message` receives "".
///
/// # Safety
/// As `elpips_context_new`; `message` is NULL or has `message_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn elpips_context_new_with_error(
    options: *const ElpipsOptions,
    out: *mut *mut ElpipsContext,
    message: *mut c_char,
    message_size: usize,
) -> ElpipsStatus {
    let mut text = String::new();
    let status = guard(None, || {
        let result = (|| -> CResult<()> {
            let out = need_out(out, "out")?;
            *out = std::ptr::null_mut();
            let options = if options.is_null() {
                ElpipsOptions::defaults()
            } else {
                // SAFETY: forwarded from the caller.
                unsafe { ElpipsOptions::read(options)? }
            };
            // SAFETY: the strings are the caller's, promised NUL-terminated.
            let metric_options = unsafe { options.metric_options()? };
            let input = options.input_options()?;
            let metric = Metric::new(metric_options)?;
            let ctx = ElpipsContext { metric: Mutex::new(metric), guide: Mutex::new(None), max_pixels: options.max_pixels(), input, errors: LastErrors::default() };
            *out = Box::into_raw(Box::new(ctx));
            Ok(())
        })();
        if let Err(f) = &result {
            text = f.message.clone();
        }
        result
    });
    if status == ELPIPS_STATUS_INTERNAL_ERROR && text.is_empty() {
        text = "internal error (a bug in elpips, please report it)".into();
    }
    if !message.is_null() && message_size > 0 {
        let bytes = text.as_bytes();
        let n = bytes.len().min(message_size - 1);
        // SAFETY: the caller promises `message_size` writable bytes; we write n + 1 <= that.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), message.cast::<u8>(), n);
            *message.add(n) = 0;
        }
    }
    status
}

/// Releases a context and everything it holds. NULL is a no-op. The context must not be in use
/// by another thread, and must not be used afterwards (references prepared with it stay valid).
///
/// # Safety
/// `ctx` is NULL or a context from `elpips_context_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn elpips_context_free(ctx: *mut ElpipsContext) {
    let _ = guard(None, || {
        if !ctx.is_null() {
            // SAFETY: the caller hands back ownership of a context we allocated.
            drop(unsafe { Box::from_raw(ctx) });
        }
        Ok(())
    });
}

/// The message of the calling thread's last failed call on `ctx` ("" if none), UTF-8 and
/// NUL-terminated. Owned by the context: valid until the calling thread's next call on `ctx`,
/// or until `ctx` is freed; never free it. NULL `ctx` gives "". Thread-safe.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn elpips_last_error(ctx: *const ElpipsContext) -> *const c_char {
    let empty = c"".as_ptr();
    // SAFETY: forwarded from the caller.
    let Some(ctx) = (unsafe { context(ctx) }) else { return empty };
    catch_unwind(AssertUnwindSafe(|| ctx.errors.get(empty))).unwrap_or(empty)
}

/// Compares `candidate` to `reference` and writes the result to `*result`.
///
/// The images are borrowed for the call only. They must have the same size (else
/// `ELPIPS_STATUS_SIZE_MISMATCH`); their formats and transfers may differ. E-LPIPS draws its
/// samples from the context's seed: the same inputs and options give the same result, equal to
/// the `elpips compare` command line's with the same seed and sampling. NULL anything:
/// `ELPIPS_STATUS_NULL_POINTER`. `*result` is written only on success. Thread-safe: calls on
/// one context are serialised.
///
/// # Safety
/// `ctx` is NULL or a live context; each image is NULL or a valid description of readable
/// pixels; `result` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_compare(
    ctx: *mut ElpipsContext,
    reference: *const ElpipsImage,
    candidate: *const ElpipsImage,
    result: *mut ElpipsResult,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let result = need_out(result, "result")?;
        // SAFETY: forwarded from the caller.
        let (reference, candidate) = unsafe { ctx.read_pair(reference, candidate)? };
        *result = compare_images(ctx, &reference, &candidate)?;
        Ok(())
    })
}

/// Compares two image files (PNG 8/16-bit, JPEG, OpenEXR, Radiance HDR) as the `elpips compare`
/// command does, with the context's tone mapping (EXR/HDR) and alpha policy; grey is expanded. Paths are NUL-terminated; NULL anything: `ELPIPS_STATUS_NULL_POINTER`.
/// Unreadable file: `ELPIPS_STATUS_IO`; undecodable: `ELPIPS_STATUS_IMAGE_DECODE`.
/// Thread-safe as `elpips_compare`.
///
/// # Safety
/// `ctx` is NULL or a live context; the paths are NULL or NUL-terminated; `result` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_compare_files(
    ctx: *mut ElpipsContext,
    reference_path: *const c_char,
    candidate_path: *const c_char,
    result: *mut ElpipsResult,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let result = need_out(result, "result")?;
        // SAFETY: forwarded from the caller.
        let (reference, candidate) = unsafe { ctx.open_pair(reference_path, candidate_path)? };
        *result = compare_images(ctx, &reference, &candidate)?;
        Ok(())
    })
}

/// Prepares `image` as a reference for many candidates: validates and converts it once, and for
/// the LPIPS metrics also runs the network on it once (with `ctx`'s options), so each candidate
/// compared on a context with the same metric, precision, model directory and linear weights
/// costs one network pass instead of two (about 2x faster; any other context still gets the
/// right answer by a full comparison). The taps take memory: about 490 bytes per pixel for
/// lpips-vgg (128 MB at 512x512); images that are tiled keep only the pixels.
///
/// Every candidate compared against it with `elpips_compare_reference` on a context with a given
/// seed sees the same transform and dropout masks at each sample index, so differences between
/// candidates are measured with common random numbers. The image is copied: it need not outlive
/// the call. The size limits of `ctx`'s metric are checked here (`ELPIPS_STATUS_IMAGE_TOO_SMALL`,
/// `..._TOO_LARGE`). On success `*out` owns a new reference (free with `elpips_reference_free`);
/// on failure `*out` is NULL. NULL anything: `ELPIPS_STATUS_NULL_POINTER`. Thread-safe.
///
/// # Safety
/// `ctx` is NULL or a live context; `image` is NULL or a valid description of readable pixels;
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_reference_new(
    ctx: *mut ElpipsContext,
    image: *const ElpipsImage,
    out: *mut *mut ElpipsReference,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let out = need_out(out, "out")?;
        *out = std::ptr::null_mut();
        // SAFETY: forwarded from the caller.
        let image = unsafe { read_image(image, "image", ctx.max_pixels, &ctx.input)? };
        let prepared = ctx.metric().prepare_reference(&image)?;
        *out = Box::into_raw(Box::new(ElpipsReference { prepared }));
        Ok(())
    })
}

/// Releases a prepared reference. NULL is a no-op. It must not be in use by another thread.
///
/// # Safety
/// `reference` is NULL or from `elpips_reference_new` and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn elpips_reference_free(reference: *mut ElpipsReference) {
    let _ = guard(None, || {
        if !reference.is_null() {
            // SAFETY: the caller hands back ownership of a reference we allocated.
            drop(unsafe { Box::from_raw(reference) });
        }
        Ok(())
    });
}

/// Compares `candidate` to a prepared reference; the result equals `elpips_compare` with the
/// reference's original image. The reference may be used with any context (and by several
/// threads at once); the sample draws come from `ctx`'s seed. NULL anything:
/// `ELPIPS_STATUS_NULL_POINTER`. Thread-safe as `elpips_compare`.
///
/// # Safety
/// `ctx` is NULL or a live context; `reference` is NULL or a live reference; `candidate` is NULL
/// or a valid description of readable pixels; `result` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_compare_reference(
    ctx: *mut ElpipsContext,
    reference: *const ElpipsReference,
    candidate: *const ElpipsImage,
    result: *mut ElpipsResult,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let reference = need(reference, "reference")?;
        let result = need_out(result, "result")?;
        // SAFETY: forwarded from the caller.
        let candidate = unsafe { read_image(candidate, "candidate", ctx.max_pixels, &ctx.input)? };
        let mut metric = ctx.metric();
        let estimate = metric.compare_reference(&reference.prepared, &candidate)?;
        let image = reference.prepared.image();
        let levels = result_levels(&metric, &image);
        *result = result_of(&estimate, levels);
        Ok(())
    })
}

/// The scale levels an `ElpipsResult` for `image` reports ([`Metric::result_levels`]; 0 for none).
fn result_levels(metric: &Metric, image: &Image) -> u32 {
    metric.result_levels(image.height(), image.width()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Where this library was loaded from: passed down as `RuntimeOptions::install_dir`, so that the
// runtime and model searches of an installed libelpips look beside it

/// The directory of the file this code was loaded from: the shared libelpips when a program
/// links it, otherwise the executable that linked the crate statically. `None` if unknown.
pub(crate) fn loaded_from_dir() -> Option<PathBuf> {
    let anchor = elpips_version as unsafe extern "C" fn() -> *const c_char;
    // SAFETY: a zeroed Dl_info is a valid out-parameter; dladdr only reads the address.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `anchor` is an address inside this object; `info` is writable.
    if unsafe { libc::dladdr(anchor as *const c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated name owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(OsStr::from_bytes(name.to_bytes()));
    let path = path.canonicalize().unwrap_or(path);
    path.parent().map(|p| p.to_owned())
}

mod gradient;
pub use gradient::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_error_codes_equal_their_statuses() {
        let errors = [
            Error::InvalidArgument(String::new()),
            Error::Io { path: "x".into(), reason: String::new() },
            Error::Write { path: "x".into(), reason: String::new() },
            Error::ImageDecode { path: "x".into(), reason: String::new() },
            Error::SizeMismatch { reference_width: 1, reference_height: 1, candidate_width: 2, candidate_height: 2 },
            Error::ImageTooSmall { width: 1, height: 1, min: 16, metric: String::new(), hint: String::new() },
            Error::ImageTooLarge { width: 1, height: 1, pixels: 1, limit: 0 },
            Error::OutOfMemory { width: 1, height: 1, what: "x", bytes: 1 },
            Error::Runtime(String::new()),
            Error::Model(String::new()),
            Error::LinearWeights(String::new()),
            Error::Inference(String::new()),
        ];
        for e in &errors {
            assert_eq!(error_status(e), e.code() as i32, "{e:?}");
        }
    }

    #[test]
    fn the_headers_sample_limit_is_the_librarys() {
        assert_eq!(ELPIPS_MAX_SAMPLES, crate::estimate::MAX_SAMPLES);
    }

    #[test]
    fn every_status_has_a_name() {
        for s in ELPIPS_OK..=ELPIPS_STATUS_CALLBACK {
            // SAFETY: no preconditions.
            let name = unsafe { CStr::from_ptr(elpips_status_str(s)) };
            assert_ne!(name.to_str().unwrap(), "unknown status");
        }
        // SAFETY: no preconditions.
        assert_eq!(unsafe { CStr::from_ptr(elpips_status_str(-1)) }.to_str().unwrap(), "unknown status");
    }

    #[test]
    fn c_defaults_are_the_cores() {
        // SAFETY: the defaults hold no strings.
        let c = unsafe { ElpipsOptions::defaults().metric_options() }.ok().unwrap();
        let d = MetricOptions::default();
        assert_eq!((c.metric, c.sampler, c.sampling, c.seed, c.scale_levels), (d.metric, d.sampler, d.sampling, d.seed, d.scale_levels));
        assert_eq!((c.model_dir, c.linear_weights, c.runtime.library, c.runtime.threads), (None, None, None, 0));
    }

    #[test]
    fn a_panic_becomes_an_internal_error() {
        assert_eq!(guard(None, || panic!("deliberate")), ELPIPS_STATUS_INTERNAL_ERROR);
        assert_eq!(guard(None, || Err(Failure::null("x"))), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(guard(None, || Ok(())), ELPIPS_OK);
    }

    #[test]
    fn srgb_encoding_matches_the_standard_at_known_points() {
        use crate::image::tonemap::srgb_encode;
        assert_eq!(srgb_encode(0.0), 0.0);
        assert!((srgb_encode(1.0) - 1.0).abs() < 1e-6);
        assert!((srgb_encode(0.18) - 0.461_356).abs() < 1e-5);
    }
}
