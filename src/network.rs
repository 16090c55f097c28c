//! The networks: finding and loading ONNX Runtime and opening sessions ([`runtime`]), the CPU
//! backends (MLAS or OpenVINO) and the CPU features that choose them ([`backend`]), the CUDA
//! libraries and the GPU behind `--device cuda` ([`cuda`], cargo feature `cuda`), where an
//! installed elpips keeps its runtime, models and plugins ([`install`]), the named
//! models and their contract with the converter in `weights/` ([`models`]), and the LPIPS
//! feature models with the distance head computed in Rust, their reuse and tiling ([`taps`]), and
//! the one evaluator of pairs and draws that owns the graphs, their buffers and tiling ([`evaluator`]).
//! It knows nothing about sampling: callers hand it tensors and dropout masks.

pub mod backend;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod evaluator;
pub mod install;
pub mod models;
pub mod runtime;
pub mod taps;
