//! The C ABI of encoder tuning: the search of `elpips::tune` driven by the caller's own encoder
//! through a callback, so an encoder's tool can find "the smallest output within distance T" or
//! "the setting closest to T" without writing files. See docs/codec.md.

use std::ffi::c_void;
use std::sync::PoisonError;

use super::{context, guard, need, need_out, read_image, result_of, ElpipsContext, ElpipsImage, ElpipsReference, ElpipsResult, ElpipsStatus, Failure};
use super::{ELPIPS_STATUS_CALLBACK, ELPIPS_STATUS_INVALID_ARGUMENT};
use crate::error::Error;
use crate::estimate::decision::Side;
use crate::network::models::MetricKind;
use crate::tune::{self, Encoded, Goal, ProbeRule, TuneOptions};

/// What `elpips_tune` looks for.
pub type ElpipsTuneGoal = u32;
/// The output with the fewest bytes whose distance is shown to be at most the threshold.
pub const ELPIPS_TUNE_MAX_DISTANCE: ElpipsTuneGoal = 0;
/// The output whose distance is closest to the threshold.
pub const ELPIPS_TUNE_TARGET: ElpipsTuneGoal = 1;

/// Where a probe's distance lies relative to the threshold, at the options' error rate.
pub type ElpipsSide = u32;
/// Shown to be at most the threshold.
pub const ELPIPS_SIDE_BELOW: ElpipsSide = 0;
/// Shown to be above the threshold.
pub const ELPIPS_SIDE_ABOVE: ElpipsSide = 1;
/// Not shown either way within `max_samples` (does not meet a maximum distance).
pub const ELPIPS_SIDE_UNDECIDED: ElpipsSide = 2;

/// Which exact metric aims `elpips_tune`'s probes (docs/codec.md).
pub type ElpipsTuneGuide = u32;
/// LPIPS-VGG for an E-LPIPS context; none for the (exact) LPIPS contexts.
pub const ELPIPS_TUNE_GUIDE_AUTO: ElpipsTuneGuide = 0;
/// No guide: the probes' own estimates are interpolated.
pub const ELPIPS_TUNE_GUIDE_NONE: ElpipsTuneGuide = 1;
/// LPIPS-VGG (one network pass per guided setting, the reference's taps reused).
pub const ELPIPS_TUNE_GUIDE_LPIPS_VGG: ElpipsTuneGuide = 2;

/// `start_setting` value meaning "the middle of the range".
pub const ELPIPS_TUNE_START_MIDDLE: i32 = i32::MIN;

/// Options of `elpips_tune`. Fill with `elpips_tune_options_default`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ElpipsTuneOptions {
    /// `sizeof(ElpipsTuneOptions)`, set by `elpips_tune_options_default`.
    pub struct_size: usize,
    /// `ELPIPS_TUNE_MAX_DISTANCE` (default) or `ELPIPS_TUNE_TARGET`.
    pub goal: ElpipsTuneGoal,
    /// The distance threshold T (> 0). Default 0: must be set.
    pub threshold: f64,
    /// Lowest (worst-quality) setting. Default 0.
    pub min_setting: i32,
    /// Highest (best-quality) setting; distance should mostly fall as the setting rises. Default 100.
    pub max_setting: i32,
    /// First setting to probe; `ELPIPS_TUNE_START_MIDDLE` (default) = the middle of the range.
    pub start_setting: i32,
    /// Encodes at most. Default 16.
    pub max_probes: u32,
    /// Chance that one probe is put on the wrong side of T (E-LPIPS; one-sided). Default 0.05.
    pub error_rate: f64,
    /// E-LPIPS samples at a probe's first look (later looks at 1.5x). Default 8.
    pub min_samples: u32,
    /// E-LPIPS samples per probe at most. Default 200.
    pub max_samples: u32,
    /// `ELPIPS_TUNE_TARGET` only: stop once a probe's 95% interval lies within T +- tolerance.
    /// Default 0 (search until the neighbouring settings are known).
    pub tolerance: f64,
    /// `ELPIPS_TUNE_GUIDE_*`. Default `ELPIPS_TUNE_GUIDE_AUTO`. A guided search calls `encode`
    /// also for the settings the guide evaluates (still at most once in a row per setting).
    pub guide: ElpipsTuneGuide,
}

/// What the encode callback reports for one setting.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ElpipsEncoded {
    /// Size of the encoded output in bytes.
    pub bytes: u64,
    /// Identifies the output's bytes (e.g. a hash): two settings with the same non-zero
    /// fingerprint are taken to give the same output, and the second reuses the first's
    /// estimate. 0 = never the same.
    pub fingerprint: u64,
    /// The output decoded back: same size as the reference, any supported format. Its pixels
    /// must stay valid until the callback is called again or `elpips_tune` returns.
    pub decoded: ElpipsImage,
}

/// The caller's encoder: encodes at `setting`, fills `*out`, returns 0; any other value stops
/// the search with `ELPIPS_STATUS_CALLBACK`. Called from the thread that called `elpips_tune`,
/// while the context is locked: it must not call elpips functions on the same context.
pub type ElpipsEncodeFn = Option<unsafe extern "C" fn(user_data: *mut c_void, setting: i32, out: *mut ElpipsEncoded) -> i32>;

/// One probed setting.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ElpipsTuneProbe {
    /// The encoder setting.
    pub setting: i32,
    /// Size of its output.
    pub bytes: u64,
    /// Its distance estimate (distance, std_error, ci95, samples, ...).
    pub result: ElpipsResult,
    /// `ELPIPS_SIDE_*`.
    pub side: ElpipsSide,
    /// True when its output had the same fingerprint as the probe at `same_as` (whose estimate it reuses).
    pub duplicate: bool,
    /// The index of that earlier probe (meaningful when `duplicate`).
    pub same_as: i32,
}

/// The answer of `elpips_tune`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ElpipsTuneResult {
    /// True when a probe meets the goal (`ELPIPS_TUNE_TARGET`: always, the nearest probe).
    /// False: no probe was shown to be within a maximum distance; `probe` is then the one with
    /// the lowest distance, for information.
    pub met: bool,
    /// The chosen probe.
    pub probe: ElpipsTuneProbe,
    /// Probes made (settings judged by the context's metric).
    pub probes: u32,
    /// E-LPIPS samples evaluated over all probes.
    pub samples: u64,
    /// Settings the guide evaluated (0 without a guide).
    pub guide_evaluations: u32,
    /// Calls to `encode`.
    pub encodes: u32,
}

fn side_of(side: Side) -> ElpipsSide {
    match side {
        Side::Below => ELPIPS_SIDE_BELOW,
        Side::Above => ELPIPS_SIDE_ABOVE,
        Side::Undecided => ELPIPS_SIDE_UNDECIDED,
    }
}

fn probe_of(p: &tune::Probe, scale_levels: u32) -> ElpipsTuneProbe {
    ElpipsTuneProbe {
        setting: p.setting,
        bytes: p.bytes,
        result: result_of(&p.estimate, scale_levels),
        side: side_of(p.side),
        duplicate: p.same_as.is_some(),
        same_as: p.same_as.unwrap_or(0),
    }
}

fn options_default() -> ElpipsTuneOptions {
    let rule = ProbeRule::default();
    ElpipsTuneOptions {
        struct_size: std::mem::size_of::<ElpipsTuneOptions>(),
        goal: ELPIPS_TUNE_MAX_DISTANCE,
        threshold: 0.0,
        min_setting: 0,
        max_setting: 100,
        start_setting: ELPIPS_TUNE_START_MIDDLE,
        max_probes: 16,
        error_rate: rule.error_rate,
        min_samples: rule.min_samples,
        max_samples: rule.max_samples,
        tolerance: rule.tolerance,
        guide: ELPIPS_TUNE_GUIDE_AUTO,
    }
}

/// The guide's metric for `guide` on a context measuring with `kind`.
fn guide_kind(guide: ElpipsTuneGuide, kind: MetricKind) -> Result<Option<MetricKind>, Failure> {
    match guide {
        ELPIPS_TUNE_GUIDE_AUTO => Ok(tune::auto_guide(kind)),
        ELPIPS_TUNE_GUIDE_NONE => Ok(None),
        ELPIPS_TUNE_GUIDE_LPIPS_VGG => Ok(Some(MetricKind::LpipsVgg)),
        g => Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown tune guide {g}: use ELPIPS_TUNE_GUIDE_AUTO, _NONE or _LPIPS_VGG"))),
    }
}

fn tune_options(o: &ElpipsTuneOptions) -> Result<TuneOptions, Failure> {
    if o.struct_size != std::mem::size_of::<ElpipsTuneOptions>() {
        return Err(Failure::new(
            ELPIPS_STATUS_INVALID_ARGUMENT,
            format!(
                "tune options.struct_size is {}, not {}: fill the options with elpips_tune_options_default",
                o.struct_size,
                std::mem::size_of::<ElpipsTuneOptions>()
            ),
        ));
    }
    let goal = match o.goal {
        ELPIPS_TUNE_MAX_DISTANCE => Goal::MaxDistance(o.threshold),
        ELPIPS_TUNE_TARGET => Goal::Target(o.threshold),
        g => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown tune goal {g}"))),
    };
    let options = TuneOptions {
        goal,
        min_setting: o.min_setting,
        max_setting: o.max_setting,
        start: (o.start_setting != ELPIPS_TUNE_START_MIDDLE).then_some(o.start_setting),
        max_probes: o.max_probes,
        rule: ProbeRule { error_rate: o.error_rate, min_samples: o.min_samples, max_samples: o.max_samples, tolerance: o.tolerance },
    };
    options.validate()?;
    Ok(options)
}

/// Fills `options` with the defaults (see each field) and sets `struct_size`. NULL:
/// `ELPIPS_STATUS_NULL_POINTER`. Thread-safe.
///
/// # Safety
/// `options` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn elpips_tune_options_default(options: *mut ElpipsTuneOptions) -> ElpipsStatus {
    guard(None, || {
        *need_out(options, "options")? = options_default();
        Ok(())
    })
}

/// Searches the settings `options->min_setting..=max_setting` for the one that meets the goal,
/// calling `encode(user_data, setting, &out)` for each setting it looks at and comparing each
/// probed output to `reference` on `ctx`. A setting is probed at most once; with a guide
/// (`options->guide`, on by default for E-LPIPS contexts) the guide's LPIPS-VGG is evaluated at
/// more settings to aim the probes, and a setting may be encoded once for the guide and once
/// more when it is probed.
///
/// Every probe samples E-LPIPS with `ctx`'s seed, so all candidates share their draws (common
/// random numbers), and stops as soon as its interval puts it on one side of the threshold (see
/// docs/codec.md for the search and its error rate). LPIPS contexts give exact probes. On
/// success `*result` holds the chosen probe; up to `probes_capacity` probes, in the order made,
/// are written to `probes` (may be NULL when the capacity is 0), and `*probes_written` (may be
/// NULL) receives how many were made, which may exceed the capacity.
///
/// Errors: NULL `ctx`, `reference`, `options`, `encode` or `result`:
/// `ELPIPS_STATUS_NULL_POINTER`; bad options: `ELPIPS_STATUS_INVALID_ARGUMENT`; the callback
/// returned non-zero: `ELPIPS_STATUS_CALLBACK`; a decoded image of the wrong size:
/// `ELPIPS_STATUS_SIZE_MISMATCH` (or the image statuses for a bad description). Nothing is
/// written to `*result` on failure. Thread-safe as `elpips_compare` (the context is locked for
/// the whole search).
///
/// # Safety
/// `ctx`, `reference` are NULL or live; `options` NULL or readable; `encode` a valid function
/// or NULL; `result` NULL or writable; `probes` NULL or writable for `probes_capacity` entries;
/// `probes_written` NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn elpips_tune(
    ctx: *mut ElpipsContext,
    reference: *const ElpipsReference,
    options: *const ElpipsTuneOptions,
    encode: ElpipsEncodeFn,
    user_data: *mut c_void,
    result: *mut ElpipsTuneResult,
    probes: *mut ElpipsTuneProbe,
    probes_capacity: usize,
    probes_written: *mut usize,
) -> ElpipsStatus {
    // SAFETY: forwarded from the caller.
    let c = unsafe { context(ctx) };
    guard(c, || {
        let ctx = c.ok_or_else(|| Failure::null("ctx"))?;
        let reference = need(reference, "reference")?;
        let c_options = need(options, "options")?;
        let options = tune_options(c_options)?;
        let encode = encode.ok_or_else(|| Failure::null("encode"))?;
        let result = need_out(result, "result")?;
        if probes.is_null() && probes_capacity > 0 {
            return Err(Failure::null("probes"));
        }
        let reference = reference.prepared.image();
        let mut metric = ctx.metric();
        let guide_kind = guide_kind(c_options.guide, metric.kind())?;
        let mut guide = ctx.guide.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kind) = guide_kind {
            if guide.as_ref().is_none_or(|g| g.kind() != kind) {
                *guide = Some(tune::open_guide(&metric, kind)?);
            }
        }
        let guide = if guide_kind.is_some() { guide.as_mut() } else { None };
        let levels = super::result_levels(&metric, &reference);
        // A failure inside the callback, kept with its own status (the core only carries Errors).
        let mut failure: Option<Failure> = None;
        let searched = tune::tune(&mut metric, guide, reference, &options, &mut |setting| {
            let mut out = ElpipsEncoded {
                bytes: 0,
                fingerprint: 0,
                decoded: ElpipsImage { data: std::ptr::null(), width: 0, height: 0, stride_bytes: 0, format: 0, transfer: 0 },
            };
            // SAFETY: the caller promises a valid callback; `out` is writable.
            let rc = unsafe { encode(user_data, setting, &mut out) };
            if rc != 0 {
                failure = Some(Failure::new(ELPIPS_STATUS_CALLBACK, format!("the encode callback returned {rc} at setting {setting}")));
                return Err(Error::invalid("encode callback failed"));
            }
            // SAFETY: the callback promises a valid description of readable pixels.
            match unsafe { read_image(&out.decoded, "decoded", ctx.max_pixels, &ctx.input) } {
                Ok(decoded) => Ok(Encoded { bytes: out.bytes, fingerprint: (out.fingerprint != 0).then_some(out.fingerprint), decoded }),
                Err(f) => {
                    failure = Some(Failure { message: format!("setting {setting}: {}", f.message), ..f });
                    Err(Error::invalid("decoded image unusable"))
                }
            }
        });
        let outcome = match (searched, failure) {
            (_, Some(f)) => return Err(f),
            (Err(e), None) => return Err(e.into()),
            (Ok(o), None) => o,
        };
        let (met, chosen) = match outcome.chosen_probe() {
            Some(p) => (true, p),
            None => {
                let lowest = outcome.probes.iter().min_by(|a, b| a.estimate.distance.total_cmp(&b.estimate.distance));
                (false, lowest.expect("a search makes at least one probe"))
            }
        };
        if !probes.is_null() {
            for (i, p) in outcome.probes.iter().take(probes_capacity).enumerate() {
                // SAFETY: the caller promises `probes_capacity` writable entries.
                unsafe { probes.add(i).write(probe_of(p, levels)) };
            }
        }
        // SAFETY: NULL or writable, as the caller promises.
        if let Some(n) = unsafe { probes_written.as_mut() } {
            *n = outcome.probes.len();
        }
        *result = ElpipsTuneResult {
            met,
            probe: probe_of(chosen, levels),
            probes: outcome.probes.len() as u32,
            samples: outcome.samples,
            guide_evaluations: outcome.guide.len() as u32,
            encodes: outcome.encodes as u32,
        };
        Ok(())
    })
}
