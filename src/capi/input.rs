//! C ABI: how caller pixels become the networks' input (tone mapping of linear buffers and the
//! alpha policy). The settings live in `ElpipsOptions` (context-wide); this file holds their
//! values and the conversion of an `ElpipsImage`. The formulas are in docs/renderer.md and
//! [`crate::image::tonemap`].

use crate::image::tonemap::{AlphaPolicy, Encoding, InputOptions, ToneCurve, ToneMapping};

use super::{CResult, ElpipsOptions, Failure, ELPIPS_STATUS_INVALID_ARGUMENT};

/// The tone curve for linear images (`ELPIPS_TRANSFER_LINEAR`), applied after the exposure and
/// before the sRGB encoding.
pub type ElpipsTonemap = u32;
/// clamp(x, 0, 1). The zero value, hence the default.
pub const ELPIPS_TONEMAP_CLAMP: ElpipsTonemap = 0;
/// x / (1 + x) for x >= 0 (negative values clamp to 0).
pub const ELPIPS_TONEMAP_REINHARD: ElpipsTonemap = 1;
/// No curve: every exposed value must lie in [0, 1], else `ELPIPS_STATUS_INVALID_ARGUMENT`.
pub const ELPIPS_TONEMAP_NONE: ElpipsTonemap = 2;

/// What to do with the alpha channel of RGBA formats.
pub type ElpipsAlpha = u32;
/// Drop it and use the colour as stored. The zero value, hence the default.
pub const ELPIPS_ALPHA_IGNORE: ElpipsAlpha = 0;
/// Composite over `ElpipsOptions.background`: straight alpha for sRGB images
/// (`a*c + (1-a)*bg`), premultiplied for linear ones (`c + (1-a)*bg`), before tone mapping.
pub const ELPIPS_ALPHA_OVER: ElpipsAlpha = 1;

impl ElpipsOptions {
    /// The core's input options from the tone-mapping and alpha fields.
    pub(super) fn input_options(&self) -> CResult<InputOptions> {
        let curve = match self.tonemap {
            ELPIPS_TONEMAP_CLAMP => ToneCurve::Clamp,
            ELPIPS_TONEMAP_REINHARD => ToneCurve::Reinhard,
            ELPIPS_TONEMAP_NONE => ToneCurve::None,
            other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown tonemap {other}; use an ELPIPS_TONEMAP_* value"))),
        };
        let alpha = match self.alpha {
            ELPIPS_ALPHA_IGNORE => AlphaPolicy::Ignore,
            ELPIPS_ALPHA_OVER => AlphaPolicy::Over(self.background),
            other => return Err(Failure::new(ELPIPS_STATUS_INVALID_ARGUMENT, format!("unknown alpha policy {other}; use an ELPIPS_ALPHA_* value"))),
        };
        // Linear buffers are always sRGB-encoded for the network: that is what
        // ELPIPS_TRANSFER_LINEAR means.
        let options = InputOptions { tone: ToneMapping { exposure: self.exposure, curve, encoding: Encoding::Srgb }, alpha };
        options.validate()?;
        Ok(options)
    }
}
