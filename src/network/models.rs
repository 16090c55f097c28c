//! The named networks (elpips-vgg, lpips-vgg, lpips-alex): their files, taps, geometry and size
//! limits. What the converter in `weights/` builds, this module describes; it runs nothing.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::network::install::Install;

/// Environment variable naming the directory that holds the `.onnx` models.
pub const MODEL_DIR_ENV: &str = "ELPIPS_MODEL_DIR";

/// The model contract with the converter in `weights/` (see `weights/README.md`), its one home:
/// the tensor names of every model and the dropout masks the E-LPIPS models take.
pub(crate) mod contract {
    /// The fused and gradient models' image inputs and outputs.
    pub const REFERENCE: &str = "reference";
    pub const CANDIDATE: &str = "candidate";
    pub const DISTANCE: &str = "distance";
    pub const D_CANDIDATE: &str = "d_candidate";
    /// The feature model's one image input.
    pub const IMAGE: &str = "image";
    /// Dropout masks of the E-LPIPS models: one before each VGG conv.
    pub const MASKS: usize = crate::ensemble::VGG_CONV_INPUTS.len();

    /// Input `k` of the dropout masks.
    pub fn mask(k: usize) -> String {
        format!("mask_{k}")
    }

    /// The fused model's linear-weights input of tap `t` (overridable initializer).
    pub fn lin(t: usize) -> String {
        format!("lin_{t}")
    }

    /// The fused model's per-tap distance map output of tap `t` (heatmaps).
    pub fn map(t: usize) -> String {
        format!("map_{t}")
    }

    /// The feature model's unit-normalised tap output `t`.
    pub fn unit(t: usize) -> String {
        format!("unit_{t}")
    }

    /// The feature model's metadata key holding tap `t`'s default linear weights.
    pub fn lin_metadata(t: usize) -> String {
        format!("elpips.lin_{t}")
    }

    /// The mask inputs `kind` takes (none for plain LPIPS).
    pub fn masks_of(kind: super::MetricKind) -> Vec<String> {
        if kind.is_ensemble() {
            (0..MASKS).map(mask).collect()
        } else {
            vec![]
        }
    }
}

/// The metrics this crate ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum MetricKind {
    /// E-LPIPS on VGG16 with average pooling: the ensemble metric (random transforms + dropout).
    ElpipsVgg,
    /// Official LPIPS v0.1 on VGG16 (= pip `lpips` 0.1.4, `net='vgg'`); deterministic.
    LpipsVgg,
    /// Official LPIPS v0.1 on AlexNet (= pip `lpips` 0.1.4 default); deterministic.
    LpipsAlex,
}

impl MetricKind {
    /// Every metric this crate ships.
    pub const ALL: [MetricKind; 3] = [MetricKind::ElpipsVgg, MetricKind::LpipsVgg, MetricKind::LpipsAlex];

    /// The name used on the command line, in the C ABI and for the model file.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::ElpipsVgg => "elpips-vgg",
            MetricKind::LpipsVgg => "lpips-vgg",
            MetricKind::LpipsAlex => "lpips-alex",
        }
    }

    /// Parses a metric name (`elpips-vgg`, `lpips-vgg`, `lpips-alex`).
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            Error::invalid(format!("unknown metric `{name}`; choose one of elpips-vgg, lpips-vgg, lpips-alex"))
        })
    }

    /// `true` for the E-LPIPS ensemble (stochastic), `false` for plain LPIPS (deterministic).
    pub fn is_ensemble(self) -> bool {
        self == MetricKind::ElpipsVgg
    }

    /// Channels of each feature tap, in tap order (the linear weights have these lengths).
    pub fn tap_channels(self) -> &'static [usize] {
        match self {
            MetricKind::ElpipsVgg => &[3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
            MetricKind::LpipsVgg => &[64, 128, 256, 512, 512],
            MetricKind::LpipsAlex => &[64, 192, 384, 256, 256],
        }
    }

    /// 2x2 pools before each tap (VGG), which places the tap on a grid of `2^pools` pixels;
    /// `None` for AlexNet, whose strided 11x11 conv and 3x3 pools do not tile on a simple grid.
    pub fn tap_pools(self) -> Option<&'static [u32]> {
        match self {
            MetricKind::ElpipsVgg => Some(&[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]),
            MetricKind::LpipsVgg => Some(&[0, 1, 2, 3, 4]),
            MetricKind::LpipsAlex => None,
        }
    }

    /// The smallest network input (both sides) for which every tap keeps at least one pixel:
    /// four 2x2 pools for VGG; AlexNet's stride-4 11x11 conv and two 3x3/2 pools need 31.
    pub fn min_input_size(self) -> u32 {
        match self {
            MetricKind::ElpipsVgg | MetricKind::LpipsVgg => 16,
            MetricKind::LpipsAlex => 31,
        }
    }

    /// File name of the model inside the model directory.
    pub fn file_name(self) -> String {
        format!("{}.onnx", self.name())
    }

    /// File name of the cheap stream of a two-stream estimate inside the model directory: the
    /// fused model cut after taps 0 and 1 (the image and relu1_1; inputs `reference`,
    /// `candidate`, `mask_0`, `lin_0`, `lin_1`; outputs `map_0`, `map_1`). E-LPIPS only.
    pub(crate) fn cheap_file_name(self) -> Option<String> {
        self.is_ensemble().then(|| format!("{}.cheap.onnx", self.name()))
    }

    /// File name of the model's gradient graph inside the model directory.
    pub(crate) fn gradient_file_name(self) -> String {
        format!("{}-grad.onnx", self.name())
    }
}

impl std::fmt::Display for MetricKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Resolves the model directory: the explicit one, then `ELPIPS_MODEL_DIR`, then the models of
/// the installation the running program belongs to ([`Install`]: `<prefix>/share/elpips/models`,
/// or the pip package's cache), then the checkout's `weights/models` (where `make setup` writes
/// them).
pub fn model_dir(explicit: Option<&Path>) -> PathBuf {
    model_dir_in(explicit, None)
}

/// [`model_dir`] for an install directory the caller may name (see [`Install::find`]).
pub(crate) fn model_dir_in(explicit: Option<&Path>, install: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    if let Some(p) = std::env::var_os(MODEL_DIR_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    // An installation uses its own models or none: never those of the checkout it was built in.
    if let Some(i) = Install::find(install) {
        return i.models;
    }
    crate::network::install::checkout().join("weights/models")
}
