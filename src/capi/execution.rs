//! Settings for speed and size: the device and CPU backend a context runs on, its arithmetic precision, and
//! tiling of big images. Setters rather than `ElpipsOptions` fields: that struct is filled from
//! uninitialised memory by `elpips_options_default`, so it does not grow.

use super::{
    context, guard, need_out, ElpipsBackend, ElpipsContext, ElpipsDevice, ElpipsPrecision, ElpipsStatus, Failure, ELPIPS_BACKEND_MLAS,
    ELPIPS_BACKEND_OPENVINO, ELPIPS_DEVICE_CPU, ELPIPS_DEVICE_CUDA, ELPIPS_PRECISION_BF16, ELPIPS_PRECISION_FP32, ELPIPS_PRECISION_INT8,
    ELPIPS_STATUS_INVALID_ARGUMENT, ELPIPS_STATUS_UNSUPPORTED, ELPIPS_TILE_NEVER,
};
use crate::network::backend::{Arithmetic, Backend, Plan};
use crate::network::taps::Precision;
use crate::network::runtime::Device;

/// Writes the device `ctx`'s network runs on to `*device`: `ELPIPS_DEVICE_CPU` or
/// `ELPIPS_DEVICE_CUDA` (never `ELPIPS_DEVICE_AUTO`: this says what `AUTO` chose). NULL
/// anything: `ELPIPS_STATUS_NULL_POINTER`. Thread-safe.
///
/// # Safety
/// `ctx` is NULL or a live context; `device` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_context_device(ctx: *mut ElpipsContext, device: *mut ElpipsDevice) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let out = need_out(device, "device")?;
        *out = match ctx.metric().device() {
            Device::Cuda => ELPIPS_DEVICE_CUDA,
            Device::Cpu | Device::Auto => ELPIPS_DEVICE_CPU,
        };
        Ok(())
    })
}

/// Writes the CPU kernels `ctx`'s network runs on to `*backend`: `ELPIPS_BACKEND_MLAS` or
/// `ELPIPS_BACKEND_OPENVINO` (never `ELPIPS_BACKEND_AUTO`: this says what `AUTO` chose; MLAS
/// behind CUDA). NULL anything: `ELPIPS_STATUS_NULL_POINTER`. Thread-safe.
///
/// # Safety
/// `ctx` is NULL or a live context; `backend` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_context_backend(ctx: *mut ElpipsContext, backend: *mut ElpipsBackend) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let out = need_out(backend, "backend")?;
        *out = match ctx.metric().backend() {
            Backend::Openvino => ELPIPS_BACKEND_OPENVINO,
            Backend::Mlas | Backend::Auto => ELPIPS_BACKEND_MLAS,
        };
        Ok(())
    })
}

/// Sets the arithmetic of `ctx`'s network: `ELPIPS_PRECISION_FP32` (the default),
/// `ELPIPS_PRECISION_INT8` (lpips-vgg and elpips-vgg, opt-in; up to ~3% distance error, see
/// docs/performance.md) or `ELPIPS_PRECISION_BF16` (OpenVINO on CPUs with AVX512-BF16 or AMX;
/// error measured in docs/performance.md). On failure the context keeps its precision. Unknown
/// value, or int8 for another metric: `ELPIPS_STATUS_INVALID_ARGUMENT`. bf16 where the CPU, the
/// plugin or the context's backend cannot run it: `ELPIPS_STATUS_UNSUPPORTED`, with the reason.
/// NULL `ctx`: `ELPIPS_STATUS_NULL_POINTER`.
/// Thread-safe (serialised with the context's comparisons). References prepared before keep
/// their taps; used with a context of another precision they are compared in full.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn elpips_context_set_precision(ctx: *mut ElpipsContext, precision: ElpipsPrecision) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let precision = match precision {
            ELPIPS_PRECISION_FP32 => Precision::Fp32,
            ELPIPS_PRECISION_INT8 => Precision::Int8,
            ELPIPS_PRECISION_BF16 => Precision::Bf16,
            other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown precision {other}; use an ELPIPS_PRECISION_* value"))),
        };
        let mut metric = ctx.metric();
        if precision == Precision::Bf16 {
            let runtime = &metric.options().runtime;
            let ready = runtime.backend_plan(Arithmetic::Bf16).and_then(|plan| match plan {
                Plan::Openvino { .. } => runtime.openvino_ready().map(|_| ()),
                Plan::Mlas => Ok(()),
            });
            if let Err(why) = ready {
                return Err(Failure::new(ELPIPS_STATUS_UNSUPPORTED, format!("ELPIPS_PRECISION_BF16: {why}")));
            }
        }
        metric.set_precision(precision)?;
        Ok(())
    })
}

/// Sets how `ctx` tiles big network inputs (lpips-vgg: the pair; elpips-vgg: each sample's
/// transformed pair): 0 (default) = automatically (lpips-vgg: inputs above 1 Mpx in 512-pixel
/// cores; elpips-vgg: samples above 0.3 Mpx in the least-overlap grid of tiles up to 2^18 pixels);
/// `ELPIPS_TILE_NEVER` = never; otherwise the tile core side in pixels (rounded up to 16).
/// Tiled distances equal untiled ones to float32 rounding while memory stays bounded
/// (docs/performance.md). lpips-alex ignores it. NULL `ctx`:
/// `ELPIPS_STATUS_NULL_POINTER`. Thread-safe.
///
/// # Safety
/// `ctx` is NULL or a live context.
#[no_mangle]
pub unsafe extern "C" fn elpips_context_set_tile_size(ctx: *mut ElpipsContext, tile_size: u32) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        ctx.metric().set_tile_size(match tile_size {
            0 => None,
            ELPIPS_TILE_NEVER => Some(0),
            n => Some(n),
        });
        Ok(())
    })
}
