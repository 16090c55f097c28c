//! C ABI for several candidates against one prepared reference with common random numbers:
//! each distance and every pairwise difference, from the same draws.

use super::*;
use crate::estimate::multi::MultiEstimate;

/// The difference `distance(first) - distance(second)` between two candidates of
/// `elpips_compare_many`, measured on the same draws.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ElpipsDifference {
    /// Index of the first candidate.
    pub first: usize,
    /// Index of the second candidate (`first < second`).
    pub second: usize,
    /// `distance(first) - distance(second)`.
    pub difference: f64,
    /// Standard error of `difference` (0 for the deterministic LPIPS metrics).
    pub std_error: f64,
    /// 95% confidence half-width of `difference`.
    pub ci95: f64,
}

/// Compares `count` candidates to a prepared reference, applying every sample's transform and
/// dropout to all of them (common random numbers), so differences between candidates are
/// measured far more precisely than the distances themselves.
///
/// Writes `results[0..count]` (each candidate's distance, as `elpips_compare_reference` would
/// give it with a fixed sample count) and, unless `differences` is NULL,
/// `differences[0..count * (count - 1) / 2]`: every pair `first < second` in the order
/// (0,1), (0,2), ..., (0,count-1), (1,2), .... The context's sampling options apply; with
/// adaptive sampling, sampling stops once every distance meets the targets (`converged` says
/// whether they did). `count` = 0: `ELPIPS_STATUS_INVALID_ARGUMENT`. NULL `ctx`, `reference`,
/// `candidates` or `results`: `ELPIPS_STATUS_NULL_POINTER`. On failure the outputs are
/// unspecified. Thread-safe as `elpips_compare`.
///
/// # Safety
/// `ctx` is NULL or a live context; `reference` is NULL or a live reference; `candidates` is NULL
/// or points to `count` valid image descriptions; `results` is NULL or has room for `count`
/// results; `differences` is NULL or has room for `count * (count - 1) / 2` differences.
#[no_mangle]
pub unsafe extern "C" fn elpips_compare_many(
    ctx: *mut ElpipsContext,
    reference: *const ElpipsReference,
    candidates: *const ElpipsImage,
    count: usize,
    results: *mut ElpipsResult,
    differences: *mut ElpipsDifference,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let reference = need(reference, "reference")?;
        need(candidates, "candidates")?;
        need(results, "results")?;
        if count == 0 {
            return Err(Error::invalid("`count` is 0: give at least one candidate").into());
        }
        let images = (0..count)
            // SAFETY: the caller promises `count` readable descriptions.
            .map(|i| unsafe { read_image(candidates.add(i), &format!("candidates[{i}]"), ctx.max_pixels, &ctx.input) })
            .collect::<CResult<Vec<Image>>>()?;
        let refs: Vec<&Image> = images.iter().collect();
        let mut metric = ctx.metric();
        let m: MultiEstimate = metric.compare_many(reference.prepared.image(), &refs)?;
        let levels =
            super::result_levels(&metric, reference.prepared.image());
        // SAFETY: the caller promises room for `count` results.
        let out = unsafe { std::slice::from_raw_parts_mut(results, count) };
        for (slot, e) in out.iter_mut().zip(&m.distances) {
            *slot = result_of(e, levels);
        }
        if !differences.is_null() {
            // SAFETY: the caller promises room for every pair.
            let out = unsafe { std::slice::from_raw_parts_mut(differences, m.differences.len()) };
            for (slot, d) in out.iter_mut().zip(&m.differences) {
                *slot = ElpipsDifference { first: d.first, second: d.second, difference: d.difference, std_error: d.std_error, ci95: d.ci95 };
            }
        }
        Ok(())
    })
}
