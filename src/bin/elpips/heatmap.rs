//! `--heatmap FILE`: where the images differ, written as a colour-mapped PNG or a raw EXR.
//! Shared by the subcommands that compare a pair; see docs/renderer.md.

use std::path::PathBuf;

use clap::Args;
use elpips::{Error, Heatmap};

use crate::output::Outputs;

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Output")]
pub struct HeatmapArgs {
    /// Write a per-pixel map of where the images differ: FILE.png (inferno colour map, black =
    /// 0) or FILE.exr (raw values; their mean is the distance). Written atomically.
    #[arg(long, value_name = "FILE")]
    pub heatmap: Option<PathBuf>,
    /// Value shown as the top colour of a PNG heatmap (larger values saturate) [default: the
    /// map's maximum]. Fix it to compare heatmaps of several frames on one scale.
    #[arg(long, value_name = "V", requires = "heatmap")]
    pub heatmap_max: Option<f32>,
}

impl HeatmapArgs {
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(path) = &self.heatmap {
            let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("png" | "exr")) {
                return Err(Error::InvalidArgument(format!("--heatmap {} must end in .png (colour-mapped) or .exr (raw values)", path.display())));
            }
        }
        if let Some(m) = self.heatmap_max {
            if !(m.is_finite() && m > 0.0) {
                return Err(Error::InvalidArgument(format!("--heatmap-max {m} must be a positive number")));
            }
        }
        Ok(())
    }

    /// Writes `map` to the requested file; returns a JSON description (path, colour-map range,
    /// mean and maximum) for reports, or `None` when no heatmap was asked for.
    pub fn write(&self, map: &Heatmap) -> Result<Option<serde_json::Value>, Error> {
        let mut outputs = Outputs::default();
        let info = self.stage(map, &mut outputs)?;
        outputs.commit()?;
        Ok(info)
    }

    /// [`HeatmapArgs::write`], staged in `outputs` (put in place when they are committed).
    pub fn stage(&self, map: &Heatmap, outputs: &mut Outputs) -> Result<Option<serde_json::Value>, Error> {
        let Some(path) = &self.heatmap else { return Ok(None) };
        let max = map.max();
        let scale = self.heatmap_max.unwrap_or(max);
        outputs.add(path, &map.encode(path, scale)?)?;
        Ok(Some(serde_json::json!({
            "path": path,
            "colormap": "inferno",
            "scale_max": scale,
            "max": max,
            "mean": map.mean(),
        })))
    }

    /// One line for people: what the file shows.
    pub fn describe(info: &serde_json::Value) -> String {
        let path = info["path"].as_str().unwrap_or("?");
        if path.to_ascii_lowercase().ends_with(".exr") {
            format!("heatmap: {path} (raw values, max {:.6}, mean {:.6} = the distance)", info["max"].as_f64().unwrap_or(0.0), info["mean"].as_f64().unwrap_or(0.0))
        } else {
            format!(
                "heatmap: {path} (inferno: black 0 .. yellow {:.6}; max {:.6}, mean {:.6} = the distance)",
                info["scale_max"].as_f64().unwrap_or(0.0),
                info["max"].as_f64().unwrap_or(0.0),
                info["mean"].as_f64().unwrap_or(0.0)
            )
        }
    }
}
