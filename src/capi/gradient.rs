//! C ABI for gradients: the distance and its gradient with respect to the candidate, so that
//! LPIPS-VGG or E-LPIPS-VGG can serve as a loss in a C/C++ optimiser. Wraps
//! [`crate::gradient::Gradient`]; holds no metric logic of its own.

use super::*;
use crate::gradient::{Gradient, GradientOptions};

/// A loaded gradient model (ONNX Runtime + `<metric>-grad.onnx`). Create with
/// `elpips_gradient_new`, free with `elpips_gradient_free`. May be shared between threads:
/// calls on one handle are serialised by an internal lock.
pub struct ElpipsGradient {
    gradient: Mutex<Gradient>,
    max_pixels: u64,
    /// How the caller's pixels become [0, 1] values (tone mapping, alpha), as for a context.
    input: InputOptions,
    errors: LastErrors,
}

impl ElpipsGradient {
    fn record(&self, message: &str) {
        self.errors.record(message);
    }
}

/// Runs `f` through [`guard`] and keeps a failure's message on `handle`.
fn guard_gradient(handle: Option<&ElpipsGradient>, f: impl FnOnce() -> CResult<()>) -> ElpipsStatus {
    let mut message = String::new();
    let status = guard(None, || {
        let r = f();
        if let Err(e) = &r {
            message = e.message.clone();
        }
        r
    });
    if status != ELPIPS_OK {
        if let Some(h) = handle {
            if message.is_empty() {
                message = "internal error (a bug in elpips, please report it)".into();
            }
            let _ = catch_unwind(AssertUnwindSafe(|| h.record(&message)));
        }
    }
    status
}

/// Loads the gradient model of `options->metric`: `ELPIPS_METRIC_LPIPS_VGG` or
/// `ELPIPS_METRIC_ELPIPS_VGG` (`ELPIPS_METRIC_LPIPS_ALEX` has none:
/// `ELPIPS_STATUS_INVALID_ARGUMENT`). Uses the options' seed, scale levels, threads,
/// max_pixels, runtime library and model directory; sampling, sampler and linear weights do not
/// apply (custom linear weights are refused). NULL `options` = the defaults (E-LPIPS-VGG).
/// On success `*out` receives a handle to free with `elpips_gradient_free`; on failure `*out`
/// is set to NULL (no handle to ask: the status says what failed). Thread-safe.
///
/// # Safety
/// As `elpips_context_new`.
#[no_mangle]
pub unsafe extern "C" fn elpips_gradient_new(options: *const ElpipsOptions, out: *mut *mut ElpipsGradient) -> ElpipsStatus {
    guard(None, || {
        let out = need_out(out, "out")?;
        *out = std::ptr::null_mut();
        let options = if options.is_null() {
            ElpipsOptions::defaults()
        } else {
            // SAFETY: forwarded from the caller.
            unsafe { ElpipsOptions::read(options)? }
        };
        // SAFETY: the strings are the caller's, promised NUL-terminated.
        let m = unsafe { options.metric_options()? };
        let input = options.input_options()?;
        if m.linear_weights.is_some() {
            return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, "gradients use the published linear weights; leave linear_weights NULL"));
        }
        let gradient = Gradient::new(GradientOptions {
            metric: m.metric,
            model_dir: m.model_dir,
            runtime: m.runtime,
            seed: m.seed,
            scale_levels: m.scale_levels,
        })?;
        let handle = ElpipsGradient { gradient: Mutex::new(gradient), max_pixels: options.max_pixels(), input, errors: LastErrors::default() };
        *out = Box::into_raw(Box::new(handle));
        Ok(())
    })
}

/// Releases a gradient handle. NULL is a no-op. It must not be in use by another thread.
///
/// # Safety
/// `gradient` is NULL or a handle from `elpips_gradient_new` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn elpips_gradient_free(gradient: *mut ElpipsGradient) {
    let _ = guard(None, || {
        if !gradient.is_null() {
            // SAFETY: the caller hands back ownership of a handle we allocated.
            drop(unsafe { Box::from_raw(gradient) });
        }
        Ok(())
    });
}

/// The message of the calling thread's last failed call on `gradient` ("" if none), UTF-8,
/// NUL-terminated, owned by the handle (valid until this thread's next call on it or its
/// release; never free it). NULL gives "". Thread-safe.
///
/// # Safety
/// `gradient` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn elpips_gradient_last_error(gradient: *const ElpipsGradient) -> *const c_char {
    let empty = c"".as_ptr();
    // SAFETY: forwarded from the caller.
    let Some(h) = (unsafe { gradient.as_ref() }) else { return empty };
    catch_unwind(AssertUnwindSafe(|| h.errors.get(empty))).unwrap_or(empty)
}

/// The distance from `reference` to `candidate` and its gradient with respect to the candidate.
///
/// - LPIPS-VGG: the exact distance and gradient; `samples` must be 0 (`first_sample` ignored).
/// - E-LPIPS-VGG: the mean over the samples `first_sample .. first_sample + samples - 1` (at
///   least 1) of the handle's seed, and the gradient of that mean: each sample's transform and
///   dropout are fixed, exactly those `elpips_compare` draws for the same seed and index.
///   Use fresh sample indices per optimisation step for a stochastic gradient of E-LPIPS.
///
/// `gradient` receives `3 * width * height` floats, planar (all of red, then green, then blue;
/// rows top to bottom), the derivative per unit of candidate value on the [0, 1] scale the
/// metric sees (for 8-bit input: per 255 code values; for `ELPIPS_TRANSFER_LINEAR` input:
/// with respect to the values after the options' tone mapping and sRGB encoding). `gradient_len` is its capacity in floats; less
/// than needed is `ELPIPS_STATUS_INVALID_ARGUMENT`. `*distance` and `gradient` are written only
/// on success. NULL pointers: `ELPIPS_STATUS_NULL_POINTER`. Thread-safe (serialised per handle).
///
/// # Safety
/// `handle` is NULL or live; each image is NULL or valid; `distance` is NULL or writable;
/// `gradient` is NULL or has `gradient_len` writable floats.
#[no_mangle]
pub unsafe extern "C" fn elpips_gradient_compute(
    handle: *mut ElpipsGradient,
    reference: *const ElpipsImage,
    candidate: *const ElpipsImage,
    first_sample: u64,
    samples: u32,
    distance: *mut f64,
    gradient: *mut f32,
    gradient_len: usize,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let h = unsafe { handle.as_ref() };
    guard_gradient(h, || {
        let h = h.ok_or_else(|| Failure::null("gradient"))?;
        let distance = need_out(distance, "distance")?;
        if gradient.is_null() {
            return Err(Failure::null("gradient"));
        }
        // SAFETY: the caller promises valid image descriptions.
        let reference = unsafe { read_image(reference, "reference", h.max_pixels, &h.input)? };
        // SAFETY: as above.
        let candidate = unsafe { read_image(candidate, "candidate", h.max_pixels, &h.input)? };
        let needed = 3 * candidate.width() as usize * candidate.height() as usize;
        if gradient_len < needed {
            return Err(Failure::new(
                ELPIPS_STATUS_INVALID_ARGUMENT,
                format!("gradient_len is {gradient_len}, but a {}x{} candidate needs 3 * width * height = {needed} floats", candidate.width(), candidate.height()),
            ));
        }
        let mut g = h.gradient.lock().unwrap_or_else(PoisonError::into_inner);
        let result = if g.kind().is_ensemble() {
            if samples == 0 {
                return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, "E-LPIPS gradients need samples >= 1"));
            }
            let end = first_sample.checked_add(samples as u64).ok_or_else(|| Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, "first_sample + samples overflows"))?;
            g.samples(&reference, &candidate, first_sample..end)?
        } else {
            if samples != 0 {
                return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("{} is deterministic: pass samples = 0", g.kind())));
            }
            g.network(&reference, &candidate)?
        };
        // SAFETY: the caller promises `gradient_len >= needed` writable floats.
        let out = unsafe { std::slice::from_raw_parts_mut(gradient, needed) };
        out.copy_from_slice(&result.gradient);
        *distance = result.distance;
        Ok(())
    })
}
