//! Input options shared by the subcommands that read image files: tone mapping of scene-linear
//! files (EXR, HDR) and the alpha policy (see docs/renderer.md). Flatten [`InputArgs`] into a
//! subcommand's arguments and pass [`InputArgs::load_options`] to `Image::open`.

use clap::{Args, ValueEnum};
use elpips::{AlphaPolicy, Encoding, Error, InputOptions, LoadOptions, ToneCurve, ToneMapping};

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Input")]
pub struct InputArgs {
    /// Exposure in stops for scene-linear inputs (EXR, HDR): values are multiplied by 2^STOPS
    /// before the tone curve. 8/16-bit PNG and JPEG are display-referred and never change.
    #[arg(long, value_name = "STOPS", default_value_t = 0.0, allow_negative_numbers = true)]
    pub exposure: f32,
    /// Tone curve for scene-linear inputs.
    #[arg(long, value_name = "CURVE", value_enum, default_value_t = ToneCurve::Clamp)]
    pub tonemap: ToneCurve,
    /// Display encoding of scene-linear inputs after the curve.
    #[arg(long, value_name = "ENC", value_enum, default_value_t = Encoding::Srgb)]
    pub encoding: Encoding,
    /// Alpha channel (straight alpha for PNG, premultiplied for EXR).
    #[arg(long, value_name = "POLICY", value_enum, default_value_t = Alpha::Ignore)]
    pub alpha: Alpha,
    /// Background for --alpha over: R,G,B in the input's own units (display values for PNG,
    /// linear for EXR) [default: 0,0,0].
    #[arg(long, value_name = "R,G,B")]
    pub background: Option<String>,
    /// Refuse images with more pixels than this.
    #[arg(long, value_name = "P", default_value_t = elpips::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}

/// `--alpha`: the names of [`AlphaPolicy`]'s variants (whose `Over` carries --background).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Alpha {
    /// Drop it.
    Ignore,
    /// Composite over --background.
    Over,
}

impl InputArgs {
    pub fn input_options(&self) -> Result<InputOptions, Error> {
        let tone = ToneMapping { exposure: self.exposure, curve: self.tonemap, encoding: self.encoding };
        let background = match &self.background {
            None => [0.0; 3],
            Some(text) => parse_rgb(text)?,
        };
        let alpha = match self.alpha {
            Alpha::Over => AlphaPolicy::Over(background),
            Alpha::Ignore if self.background.is_some() => {
                return Err(Error::InvalidArgument("--background applies to --alpha over only".into()));
            }
            Alpha::Ignore => AlphaPolicy::Ignore,
        };
        let options = InputOptions { tone, alpha };
        options.validate()?;
        Ok(options)
    }

    pub fn load_options(&self) -> Result<LoadOptions, Error> {
        Ok(LoadOptions { max_pixels: self.max_pixels, input: self.input_options()? })
    }
}

fn parse_rgb(text: &str) -> Result<[f32; 3], Error> {
    let bad = || Error::InvalidArgument(format!("--background `{text}` must be three numbers R,G,B (e.g. 1,1,1 for white)"));
    let parts: Vec<f32> = text.split(',').map(|p| p.trim().parse::<f32>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    <[f32; 3]>::try_from(parts).map_err(|_| bad())
}
