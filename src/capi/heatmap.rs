//! C ABI: where two images differ. One export, `elpips_compare_heatmap`, that compares like
//! `elpips_compare` and also fills a caller-allocated per-pixel map (see [`crate::heatmap`]).

use std::ffi::c_void;

use super::{context, guard, need_out, result_of, ElpipsContext, ElpipsImage, ElpipsResult, ElpipsStatus, Failure, ELPIPS_STATUS_INVALID_ARGUMENT};

/// Compares `candidate` to `reference` like `elpips_compare` (same result for the same options
/// and seed) and fills `heatmap` with where they differ.
///
/// `heatmap` is caller-allocated: `heatmap_len` floats, which must equal width x height of the
/// images (else `ELPIPS_STATUS_INVALID_ARGUMENT`); it receives the map row-major (`heatmap[y *
/// width + x]`, top row first). Values are distance per pixel, >= 0: their mean equals
/// `result->distance` (up to float rounding), so a region's share of the sum is its share of the
/// distance. E-LPIPS averages every sample's map, carried back through that sample's transform
/// to image coordinates; LPIPS gives its single map. Identical images give all zeros.
/// `*result` and `heatmap` are written only on success. NULL anything:
/// `ELPIPS_STATUS_NULL_POINTER`. Thread-safe as `elpips_compare`.
///
/// # Safety
/// `ctx` is NULL or a live context; each image is NULL or a valid description of readable
/// pixels; `result` is NULL or writable; `heatmap` is NULL or has `heatmap_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn elpips_compare_heatmap(
    ctx: *mut ElpipsContext,
    reference: *const ElpipsImage,
    candidate: *const ElpipsImage,
    result: *mut ElpipsResult,
    heatmap: *mut f32,
    heatmap_len: usize,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let result = need_out(result, "result")?;
        if heatmap.is_null() {
            return Err(Failure::null("heatmap"));
        }
        // SAFETY: forwarded from the caller.
        let (reference, candidate) = unsafe { ctx.read_pair(reference, candidate)? };
        let pixels = reference.width() as usize * reference.height() as usize;
        if heatmap_len != pixels {
            return Err(Failure::new(
                ELPIPS_STATUS_INVALID_ARGUMENT,
                format!("heatmap_len is {heatmap_len} but the {}x{} images need {pixels} floats", reference.width(), reference.height()),
            ));
        }
        let mut metric = ctx.metric();
        let (estimate, map) = metric.compare_with_heatmap(&reference, &candidate, &mut |_| {})?;
        let levels = super::result_levels(&metric, &reference);
        // SAFETY: non-NULL, and the caller promises `heatmap_len` writable floats (checked equal
        // to the map's length); written as bytes, so no alignment is assumed.
        unsafe { std::ptr::copy_nonoverlapping(map.data().as_ptr().cast::<u8>(), heatmap.cast::<c_void>().cast::<u8>(), pixels * 4) };
        *result = result_of(&estimate, levels);
        Ok(())
    })
}
