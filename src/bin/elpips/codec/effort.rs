//! The encoders' speed settings, apart from the encoders so that `rd.json`'s reader (also
//! built into the fuzz harness, which links no encoder) can name them.

/// The encoders' own speed settings (`--avif-speed`, `--webp-method`, `--jxl-effort`), given to
/// every encode of `tune` and `rd`. The defaults are the values the shims always used (those of
/// avifenc, cwebp and cjxl), so results change only when one is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effort {
    /// AVIF encoder speed: 0 (slowest, smallest files) to 10 (fastest), as avifenc -s.
    #[arg(long, value_name = "S", default_value_t = 6, value_parser = clap::value_parser!(i32).range(0..=10), allow_negative_numbers = true, help_heading = "Encoder")]
    pub avif_speed: i32,
    /// WebP compression method: 0 (fastest) to 6 (slowest, smallest files), as cwebp -m.
    #[arg(long, value_name = "M", default_value_t = 4, value_parser = clap::value_parser!(i32).range(0..=6), allow_negative_numbers = true, help_heading = "Encoder")]
    pub webp_method: i32,
    /// JPEG XL encoder effort: 1 (fastest) to 9 (slowest, smallest files), as cjxl -e.
    #[arg(long, value_name = "E", default_value_t = 7, value_parser = clap::value_parser!(i32).range(1..=9), allow_negative_numbers = true, help_heading = "Encoder")]
    pub jxl_effort: i32,
}

impl Default for Effort {
    fn default() -> Self {
        Effort { avif_speed: 6, webp_method: 4, jxl_effort: 7 }
    }
}

impl Effort {
    /// Whether every setting is its default (what files written before they could be set used).
    pub fn is_default(&self) -> bool {
        *self == Effort::default()
    }
}
