//! The one error type of the library. Every variant has a stable numeric code so that the
//! C ABI's status values can be derived from it without a second table drifting from this one.

use std::path::PathBuf;

/// Everything that can go wrong, phrased for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A caller-supplied option or argument is invalid or conflicts with another.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The file could not be opened or read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        reason: String,
    },

    /// The bytes are not an image we can decode (unknown format, corrupt or truncated data).
    #[error("cannot decode image {path}: {reason}")]
    ImageDecode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },

    /// The two images of a pair do not have the same size.
    #[error("image sizes differ: reference is {reference_width}x{reference_height}, candidate is {candidate_width}x{candidate_height}; resize one of them so both match")]
    SizeMismatch {
        /// The reference's width in pixels.
        reference_width: u32,
        /// The reference's height in pixels.
        reference_height: u32,
        /// The candidate's width in pixels.
        candidate_width: u32,
        /// The candidate's height in pixels.
        candidate_height: u32,
    },

    /// The image is smaller than the network can see.
    #[error("image is {width}x{height} but {metric} needs at least {min}x{min} pixels{hint}")]
    ImageTooSmall {
        /// The image's width in pixels.
        width: u32,
        /// The image's height in pixels.
        height: u32,
        /// The smallest side the metric accepts.
        min: u32,
        /// The metric's name.
        metric: String,
        /// What raised the minimum (scale levels), or empty.
        hint: String,
    },

    /// The image exceeds the configured pixel budget.
    #[error("image is {width}x{height} = {pixels} pixels, above the limit of {limit} pixels; raise the limit (`max_pixels`) only if the machine has the memory")]
    ImageTooLarge {
        /// The image's width in pixels.
        width: u32,
        /// The image's height in pixels.
        height: u32,
        /// `width x height`.
        pixels: u64,
        /// The pixel budget.
        limit: u64,
    },

    /// An image within the pixel budget needs more memory than the machine could allocate.
    /// Shares code 6 with [`Error::ImageTooLarge`]: to a caller both mean "too large here".
    #[error("image is {width}x{height}: its {what} needs {bytes} bytes, more than could be allocated; use a smaller image, or a lower pixel budget (`max_pixels`) to refuse such images up front")]
    OutOfMemory {
        /// The image's width in pixels.
        width: u32,
        /// The image's height in pixels.
        height: u32,
        /// The buffer that could not be had.
        what: &'static str,
        /// Its size in bytes.
        bytes: u64,
    },

    /// ONNX Runtime could not be found or loaded, or is too old.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),

    /// A model file is missing or unusable.
    #[error("model: {0}")]
    Model(String),

    /// A linear-weights file could not be used.
    #[error("linear weights: {0}")]
    LinearWeights(String),

    /// ONNX Runtime failed while evaluating the network.
    #[error("inference failed: {0}")]
    Inference(String),

    /// An output file could not be written, or its path names something outputs never replace
    /// (see [`crate::io`]). Shares code 2 ("i/o error") with [`Error::Io`]: to a caller both
    /// are a file-system problem.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        reason: String,
    },
}

impl Error {
    /// A stable code per variant (never renumbered; new variants are appended).
    pub fn code(&self) -> u32 {
        match self {
            Error::InvalidArgument(_) => 1,
            Error::Io { .. } | Error::Write { .. } => 2,
            Error::ImageDecode { .. } => 3,
            Error::SizeMismatch { .. } => 4,
            Error::ImageTooSmall { .. } => 5,
            Error::ImageTooLarge { .. } | Error::OutOfMemory { .. } => 6,
            Error::Runtime(_) => 7,
            Error::Model(_) => 8,
            Error::LinearWeights(_) => 9,
            Error::Inference(_) => 10,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Inference(e.to_string())
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
