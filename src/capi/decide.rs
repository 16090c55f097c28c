//! The C ABI of the sequential gate: "is the distance of `candidate` from `reference` at most T?"
//! answered with as few samples as the documented error rate allows (see docs/estimator.md and
//! `Metric::decide`). This is what test-suite shims call to fail a frame.

use std::ffi::c_char;

use super::{context, guard, need, need_out, result_of, CResult, ElpipsContext, ElpipsImage, ElpipsResult, ElpipsStatus, Failure};
use super::{ElpipsSide, ELPIPS_SIDE_ABOVE, ELPIPS_SIDE_BELOW, ELPIPS_SIDE_UNDECIDED};
use crate::estimate::decision::{Gate, Side};
use crate::image::Image;

/// A gate: the threshold T and how hard to look. Zero in `error_rate`, `max_samples` or
/// `min_samples` means that field's default, so `ElpipsGate g = {0.02}` is a complete gate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ElpipsGate {
    /// The distance T (finite, >= 0): the verdict is whether the true distance is at most T.
    pub threshold: f64,
    /// Largest chance of a wrong verdict on either side for a decided pair, in (0, 0.5).
    /// 0: the default 0.05.
    pub error_rate: f64,
    /// Stop undecided after this many E-LPIPS samples. 0: the default 200.
    pub max_samples: u32,
    /// First look at the verdict after this many samples (>= 2). 0: the default 8.
    pub min_samples: u32,
}

/// The outcome of `elpips_decide`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ElpipsDecision {
    /// `ELPIPS_SIDE_BELOW` (shown at most T), `ELPIPS_SIDE_ABOVE` (shown above T) or
    /// `ELPIPS_SIDE_UNDECIDED` (neither within `max_samples`; see `estimate_below`).
    pub verdict: ElpipsSide,
    /// For an undecided gate: which side the point estimate lies on (a test suite's fallback).
    pub estimate_below: bool,
    /// The estimate from the samples the verdict used.
    pub estimate: ElpipsResult,
    /// Lower confidence bound at the verdict's error rate (the distance itself for LPIPS).
    pub lower: f64,
    /// Upper confidence bound at the verdict's error rate (the distance itself for LPIPS).
    pub upper: f64,
    /// Looks at the verdict taken.
    pub looks: u32,
    /// Looks the gate would take at most.
    pub looks_planned: u32,
}

/// Decides whether the distance of `candidate` from `reference` is at most `gate->threshold`,
/// sampling look by look and stopping as soon as the interval at the gate's error rate excludes
/// T (deterministic metrics decide at once). The context's metric, seed, sampler and input
/// options apply; its sampling options do not (the gate's sample counts replace them). Same
/// inputs, same answer. NULL anything: `ELPIPS_STATUS_NULL_POINTER`; a bad gate:
/// `ELPIPS_STATUS_INVALID_ARGUMENT`. `*decision` is written only on success. Thread-safe as
/// `elpips_compare`.
///
/// # Safety
/// `ctx` is NULL or a live context; the images are NULL or valid descriptions of readable
/// pixels; `gate` is NULL or readable; `decision` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_decide(
    ctx: *mut ElpipsContext,
    reference: *const ElpipsImage,
    candidate: *const ElpipsImage,
    gate: *const ElpipsGate,
    decision: *mut ElpipsDecision,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let g = *need(gate, "gate")?;
        let out = need_out(decision, "decision")?;
        // SAFETY: forwarded from the caller.
        let (reference, candidate) = unsafe { ctx.read_pair(reference, candidate)? };
        *out = decide_images(ctx, &reference, &candidate, &g)?;
        Ok(())
    })
}

/// `elpips_decide` on two image files (PNG, JPEG, EXR, HDR, ... as `elpips_compare_files` reads
/// them, with the context's input options). NULL anything: `ELPIPS_STATUS_NULL_POINTER`.
///
/// # Safety
/// `ctx` is NULL or a live context; the paths are NULL or NUL-terminated; `gate` is NULL or
/// readable; `decision` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_decide_files(
    ctx: *mut ElpipsContext,
    reference_path: *const c_char,
    candidate_path: *const c_char,
    gate: *const ElpipsGate,
    decision: *mut ElpipsDecision,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let g = *need(gate, "gate")?;
        let out = need_out(decision, "decision")?;
        // SAFETY: forwarded from the caller.
        let (reference, candidate) = unsafe { ctx.open_pair(reference_path, candidate_path)? };
        *out = decide_images(ctx, &reference, &candidate, &g)?;
        Ok(())
    })
}

fn decide_images(ctx: &ElpipsContext, reference: &Image, candidate: &Image, g: &ElpipsGate) -> CResult<ElpipsDecision> {
    let defaults = Gate::new(g.threshold);
    let gate = Gate {
        threshold: g.threshold,
        error_rate: if g.error_rate == 0.0 { defaults.error_rate } else { g.error_rate },
        max_samples: if g.max_samples == 0 { defaults.max_samples } else { g.max_samples },
        min_samples: if g.min_samples == 0 { defaults.min_samples } else { g.min_samples },
    };
    let mut metric = ctx.metric();
    let d = metric.decide(reference, candidate, &gate)?;
    let levels = super::result_levels(&metric, &reference);
    Ok(ElpipsDecision {
        verdict: match d.verdict {
            Side::Below => ELPIPS_SIDE_BELOW,
            Side::Above => ELPIPS_SIDE_ABOVE,
            Side::Undecided => ELPIPS_SIDE_UNDECIDED,
        },
        estimate_below: d.estimate_below,
        estimate: result_of(&d.estimate, levels),
        lower: d.lower,
        upper: d.upper,
        looks: d.looks,
        looks_planned: d.looks_planned,
    })
}
