//! From what renderers write to what the networks see: the display-referred RGB in `[0, 1]`
//! that LPIPS and E-LPIPS were trained on (sRGB-encoded photographs).
//!
//! Two kinds of input:
//! * display-referred ([`Transfer::Display`]): 8/16-bit PNG and JPEG, and caller buffers marked
//!   sRGB. Used as they are (integers divided exactly by 255 or 65535; floats clamped to
//!   `[0, 1]`); exposure and tone curve do not apply. Alpha, when present, is straight.
//! * scene-linear ([`Transfer::Linear`]): OpenEXR and Radiance HDR files, and caller buffers
//!   marked linear. Alpha, when present, is premultiplied (the OpenEXR convention). Each value
//!   goes through [`ToneMapping`]: `encode(curve(v * 2^exposure))`.
//!
//! Alpha ([`AlphaPolicy`]) is resolved first, in the input's own units: straight
//! `a*c + (1-a)*bg`, premultiplied `c + (1-a)*bg`. The formulas are in `docs/renderer.md`.
//! This module owns those conversions; it knows nothing about files or networks.

use crate::error::{Error, Result};

/// How the input's values relate to light.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Display-referred, already encoded for a screen (sRGB): PNG, JPEG.
    Display,
    /// Scene-linear light (a renderer's radiance): EXR, HDR.
    Linear,
}

/// The range compression applied to exposed linear values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ToneCurve {
    /// `clamp(x, 0, 1)`: what a plain "save as PNG" of a render does. The default.
    #[default]
    #[cfg_attr(feature = "cli", value(help = "clamp(x, 0, 1): what a plain \"save as PNG\" of a render does"))]
    Clamp,
    /// `x / (1 + x)` for `x >= 0` (negative values clamp to 0): keeps highlight detail.
    Reinhard,
    /// No compression: every exposed value must already lie in `[0, 1]`, otherwise the image is
    /// refused (for inputs that are display-ready in a float container).
    None,
}

impl ToneCurve {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ToneCurve::Clamp => "clamp",
            ToneCurve::Reinhard => "reinhard",
            ToneCurve::None => "none",
        }
    }

    /// Parses a name given by [`Self::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "clamp" => Ok(ToneCurve::Clamp),
            "reinhard" => Ok(ToneCurve::Reinhard),
            "none" => Ok(ToneCurve::None),
            other => Err(Error::invalid(format!("unknown tone curve `{other}`; use clamp, reinhard or none"))),
        }
    }
}

/// The display encoding applied after the curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Encoding {
    /// The sRGB transfer function (IEC 61966-2-1). The default: the networks were trained on
    /// sRGB photographs.
    #[default]
    #[cfg_attr(feature = "cli", value(help = "the sRGB transfer function (IEC 61966-2-1); the networks were trained on sRGB photographs"))]
    Srgb,
    /// No encoding: the curve's output is used as it is.
    Linear,
}

impl Encoding {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Srgb => "srgb",
            Encoding::Linear => "linear",
        }
    }

    /// Parses a name given by [`Self::name`].
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "srgb" => Ok(Encoding::Srgb),
            "linear" => Ok(Encoding::Linear),
            other => Err(Error::invalid(format!("unknown encoding `{other}`; use srgb or linear"))),
        }
    }
}

/// How scene-linear inputs become display-referred: `encode(curve(v * 2^exposure))`.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ToneMapping {
    /// Exposure in stops: values are multiplied by `2^exposure` first. Default 0.
    pub exposure: f32,
    /// The curve that maps exposed values into [0, 1].
    pub curve: ToneCurve,
    /// The display encoding after the curve.
    pub encoding: Encoding,
}

impl ToneMapping {
    /// Refuses values no input can use, with a message naming the option.
    pub fn validate(&self) -> Result<()> {
        if !self.exposure.is_finite() || self.exposure.abs() > 64.0 {
            return Err(Error::invalid(format!("exposure {} stops is out of range; use a value in [-64, 64]", self.exposure)));
        }
        Ok(())
    }

    /// Maps one scene-linear value; `None` when [`ToneCurve::None`] finds it outside `[0, 1]`.
    #[inline]
    pub fn map(&self, gain: f32, v: f32) -> Option<f32> {
        let x = v * gain;
        let y = match self.curve {
            ToneCurve::Clamp => x.clamp(0.0, 1.0),
            ToneCurve::Reinhard => {
                let x = x.max(0.0);
                // An extreme exposure can overflow the product to +inf: its limit is 1.
                if x.is_infinite() {
                    1.0
                } else {
                    x / (1.0 + x)
                }
            }
            ToneCurve::None => {
                if !(0.0..=1.0).contains(&x) {
                    return None;
                }
                x
            }
        };
        Some(match self.encoding {
            Encoding::Srgb => srgb_encode(y),
            Encoding::Linear => y,
        })
    }

    /// `2^exposure`.
    pub fn gain(&self) -> f32 {
        self.exposure.exp2()
    }
}

/// What to do with an alpha channel.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum AlphaPolicy {
    /// Drop it and use the colour as stored. The default (what earlier versions did).
    #[default]
    Ignore,
    /// Composite over a background colour given in the input's own units (display values for
    /// PNG/JPEG, linear values for EXR/HDR), before tone mapping.
    Over([f32; 3]),
}

impl AlphaPolicy {
    /// Refuses values no input can use, with a message naming the option.
    pub fn validate(&self) -> Result<()> {
        if let AlphaPolicy::Over(bg) = self {
            if bg.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(Error::invalid(format!("background {bg:?} must be three finite values >= 0")));
            }
        }
        Ok(())
    }
}

/// Everything that turns decoded pixels into the networks' input.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct InputOptions {
    /// How scene-linear (HDR) inputs are tone-mapped.
    pub tone: ToneMapping,
    /// What is done with an alpha channel.
    pub alpha: AlphaPolicy,
}

impl InputOptions {
    /// Refuses values no input can use, with a message naming the option.
    pub fn validate(&self) -> Result<()> {
        self.tone.validate()?;
        self.alpha.validate()
    }
}

/// sRGB encoding of linear light in `[0, 1]` (IEC 61966-2-1).
#[inline]
pub fn srgb_encode(v: f32) -> f32 {
    if v >= 1.0 {
        // The formula gives 0.99999994 in f32; white must stay white.
        1.0
    } else if v <= 0.003_130_8 {
        12.92 * v
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// Converts interleaved pixels (`channels` = 3, or 4 with alpha last; `width * height` pixels)
/// to planar display-referred RGB in `[0, 1]`. Non-finite values are refused, naming the pixel.
pub fn to_display_planar(
    width: usize,
    height: usize,
    channels: usize,
    pixels: &[f32],
    transfer: Transfer,
    options: &InputOptions,
) -> Result<Vec<f32>> {
    assert!(channels == 3 || channels == 4, "3 or 4 channels");
    assert_eq!(pixels.len(), width * height * channels, "pixel count");
    options.validate()?;
    let n = width * height;
    // Sides come from u32 image sizes.
    let mut out = crate::image::try_buffer(width as u32, height as u32, 3 * n, 0.0f32, "planar RGB image")?;
    let gain = options.tone.gain();
    for (i, px) in pixels.chunks_exact(channels).enumerate() {
        if let Some(c) = px.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "pixel (x {}, y {}) channel {c} is {}; images must hold finite values (fix the renderer's NaN/inf pixels first)",
                i % width,
                i / width,
                px[c]
            )));
        }
        let mut rgb = [px[0], px[1], px[2]];
        if let (4, AlphaPolicy::Over(bg)) = (channels, options.alpha) {
            let a = px[3].clamp(0.0, 1.0);
            for c in 0..3 {
                rgb[c] = match transfer {
                    Transfer::Display => a * rgb[c] + (1.0 - a) * bg[c],
                    Transfer::Linear => rgb[c] + (1.0 - a) * bg[c],
                };
            }
        }
        for c in 0..3 {
            out[c * n + i] = match transfer {
                Transfer::Display => rgb[c].clamp(0.0, 1.0),
                Transfer::Linear => options.tone.map(gain, rgb[c]).ok_or_else(|| {
                    Error::invalid(format!(
                        "pixel (x {}, y {}) channel {c} is {} after exposure, outside [0, 1]; tone curve `none` needs display-ready values (use `tonemap` clamp or reinhard, or a lower `exposure`)",
                        i % width,
                        i / width,
                        rgb[c] * gain
                    ))
                })?,
            };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: f32, transfer: Transfer, o: &InputOptions) -> Result<f32> {
        to_display_planar(1, 1, 3, &[v, v, v], transfer, o).map(|p| p[0])
    }

    #[test]
    fn display_inputs_pass_through_and_clamp() {
        let o = InputOptions { tone: ToneMapping { exposure: 3.0, curve: ToneCurve::Reinhard, encoding: Encoding::Srgb }, ..Default::default() };
        // Exposure and curve apply to linear inputs only.
        assert_eq!(one(0.25, Transfer::Display, &o).unwrap(), 0.25);
        assert_eq!(one(1.5, Transfer::Display, &o).unwrap(), 1.0);
        assert_eq!(one(-0.5, Transfer::Display, &o).unwrap(), 0.0);
    }

    #[test]
    fn linear_inputs_are_exposed_curved_and_encoded() {
        let d = InputOptions::default();
        assert_eq!(one(0.0, Transfer::Linear, &d).unwrap(), 0.0);
        assert!((one(1.0, Transfer::Linear, &d).unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(one(7.0, Transfer::Linear, &d).unwrap(), 1.0, "clamp");
        // sRGB: linear 0.2140 is display 0.5 (the usual mid-grey pair).
        assert!((one(0.214_041, Transfer::Linear, &d).unwrap() - 0.5).abs() < 1e-5);
        assert!((one(0.002, Transfer::Linear, &d).unwrap() - 0.002 * 12.92).abs() < 1e-7, "linear toe");
        // +1 stop doubles before the curve.
        let plus1 = InputOptions { tone: ToneMapping { exposure: 1.0, encoding: Encoding::Linear, ..Default::default() }, ..d };
        assert_eq!(one(0.25, Transfer::Linear, &plus1).unwrap(), 0.5);
        // Reinhard: x / (1 + x), monotone, below 1 for finite x.
        let r = InputOptions { tone: ToneMapping { curve: ToneCurve::Reinhard, encoding: Encoding::Linear, ..Default::default() }, ..d };
        assert!((one(3.0, Transfer::Linear, &r).unwrap() - 0.75).abs() < 1e-7);
        assert!(one(1e30, Transfer::Linear, &r).unwrap() <= 1.0);
        assert_eq!(one(-2.0, Transfer::Linear, &r).unwrap(), 0.0);
    }

    #[test]
    fn curve_none_refuses_out_of_range_values_by_pixel() {
        let o = InputOptions { tone: ToneMapping { curve: ToneCurve::None, ..Default::default() }, ..Default::default() };
        let err = to_display_planar(2, 1, 3, &[0.5, 0.5, 0.5, 0.5, 1.5, 0.5], Transfer::Linear, &o).unwrap_err();
        assert!(err.to_string().contains("pixel (x 1, y 0) channel 1"), "{err}");
        assert!(one(1.0, Transfer::Linear, &o).is_ok());
    }

    #[test]
    fn alpha_ignore_or_over_straight_and_premultiplied() {
        let px = [0.8f32, 0.4, 0.0, 0.5];
        let ignore = InputOptions::default();
        assert_eq!(to_display_planar(1, 1, 4, &px, Transfer::Display, &ignore).unwrap(), [0.8, 0.4, 0.0]);
        let over = InputOptions { alpha: AlphaPolicy::Over([1.0, 0.0, 0.2]), ..Default::default() };
        // Straight: a*c + (1-a)*bg.
        let d = to_display_planar(1, 1, 4, &px, Transfer::Display, &over).unwrap();
        for (got, want) in d.iter().zip([0.9, 0.2, 0.1]) {
            assert!((got - want).abs() < 1e-6, "{d:?}");
        }
        // Premultiplied: c + (1-a)*bg, then tone mapping (linear encoding here to read it back).
        let over_lin = InputOptions { tone: ToneMapping { encoding: Encoding::Linear, ..Default::default() }, ..over };
        let l = to_display_planar(1, 1, 4, &[0.4, 0.2, 0.0, 0.5], Transfer::Linear, &over_lin).unwrap();
        for (got, want) in l.iter().zip([0.9, 0.2, 0.1]) {
            assert!((got - want).abs() < 1e-6, "{l:?}");
        }
    }

    #[test]
    fn non_finite_values_and_bad_options_are_refused() {
        let err = to_display_planar(1, 1, 3, &[0.0, f32::INFINITY, 0.0], Transfer::Linear, &InputOptions::default()).unwrap_err();
        assert!(err.to_string().contains("channel 1 is inf"), "{err}");
        let bad = InputOptions { tone: ToneMapping { exposure: f32::NAN, ..Default::default() }, ..Default::default() };
        assert!(one(0.5, Transfer::Linear, &bad).is_err());
        let bad_bg = InputOptions { alpha: AlphaPolicy::Over([0.0, -1.0, 0.0]), ..Default::default() };
        assert!(one(0.5, Transfer::Linear, &bad_bg).is_err());
        assert!(ToneCurve::from_name("filmic").is_err());
    }
}
