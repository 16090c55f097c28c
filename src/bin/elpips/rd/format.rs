//! The `rd.json` format of `elpips rd`: its records, its digest, and the checks a part must pass
//! before `--merge` uses it ([`parse_part`]). Depends on nothing of the command line but the
//! JSON message helper its parent provides, so the fuzz harness includes it as it is.

use std::collections::BTreeMap;
use std::path::Path;

use elpips::Error;
use serde::{Deserialize, Serialize};

use super::{json_message, Effort};

/// Version of `rd.json`.
pub const RD_FORMAT: u64 = 1;
/// Largest `rd.json` read by `--merge`.
pub const MAX_RD_BYTES: u64 = 64 << 20;
/// Most bootstrap replicates (`--bootstrap`, and an rd.json's setting): each holds a value per
/// image, and beyond this the interval no longer changes in its printed digits.
pub const MAX_BOOTSTRAP: u32 = 100_000;

/// `rd.json`. Fields in alphabetical order; unknown fields refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdFile {
    /// The CPU kernels that ran (`mlas`, `openvino`; a merge lists its parts'). Not a setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    pub bd_rate: BTreeMap<String, BdRate>,
    /// Where the networks ran (`cpu`, `cuda`; a merge lists its parts' devices). Not a
    /// setting: parts measured on different machines still merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// sha256 of the file without this field: whole and unedited (not a signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub elpips_rd: u64,
    /// Every image of the run (all shards), in order.
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Vec<String>>,
    pub points: Vec<Point>,
    pub settings: RdSettings,
    pub shard: Option<Shard>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub count: u64,
    pub index: u64,
}

/// What the points depend on; parts merge only when theirs are equal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdSettings {
    pub anchor: String,
    pub bootstrap: u32,
    pub codecs: Vec<String>,
    /// The encoders' speed settings; absent when all are the defaults (as in every file written
    /// before they could be set, which therefore still read and merge).
    #[serde(default, skip_serializing_if = "Effort::is_default")]
    pub encoder: Effort,
    pub metric: String,
    pub sampler: String,
    pub sampling: String,
    pub scale_levels: Option<u32>,
    pub seed: u64,
    pub settings: Vec<i32>,
    /// `--tile-samples`: E-LPIPS draws above 0.3 Mpx were tile-sampled (absent: whole samples).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tile_samples: bool,
    /// `--cheap-draws K`: two-stream estimates, K cheap draws per full sample, on images up to
    /// ~540 x 540 (absent: one stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cheap_draws: Option<u32>,
}

/// One encode of one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    pub image: String,
    pub codec: String,
    pub setting: i32,
    pub bytes: u64,
    pub bpp: f64,
    pub distance: f64,
    pub ci95: f64,
    pub std_error: f64,
    pub samples: u64,
    pub lpips_vgg: f64,
}

/// `bd_rate.<codec>`: against `vs` at equal distance, over the images of the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BdRate {
    pub vs: String,
    pub percent: Option<f64>,
    pub ci95: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub images: usize,
    pub replicates: usize,
    /// Each image's own BD-rate, in `images` order of the points (null: no overlap).
    pub per_image: Vec<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// Refuses a replicate count that would size a bootstrap beyond [`MAX_BOOTSTRAP`].
pub fn check_bootstrap(bootstrap: u32, what: &str) -> Result<(), Error> {
    if bootstrap > MAX_BOOTSTRAP {
        return Err(invalid(format!("{what} {bootstrap} is above the limit of {MAX_BOOTSTRAP} replicates")));
    }
    Ok(())
}

pub fn digest(file: &RdFile) -> String {
    let unsealed = RdFile { digest: None, ..file.clone() };
    elpips::integrity::sha256_hex(&serde_json::to_vec(&unsealed).expect("json"))
}

/// The image indices a shard holds.
pub fn shard_images(count: usize, shard: Option<Shard>) -> Vec<usize> {
    (0..count).filter(|k| shard.is_none_or(|s| *k as u64 % s.count == s.index)).collect()
}

/// Parses one `rd.json` (read from `path`) and checks what a merge relies on: format, digest,
/// settings, and that its points are exactly its shard's images x codecs x settings, in order,
/// with sane numbers.
pub fn parse_part(bytes: &[u8], path: &Path) -> Result<RdFile, Error> {
    let p = path.display();
    let f: RdFile = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("{p}:{}: not an rd.json of `elpips rd`: {}", e.line(), json_message(&e))))?;
    if f.elpips_rd != RD_FORMAT {
        return Err(invalid(format!("{p}: rd.json format {} is not {RD_FORMAT}; measure it again with this elpips", f.elpips_rd)));
    }
    if f.digest.as_deref() != Some(digest(&f).as_str()) {
        return Err(invalid(format!("{p}: its digest does not match its contents: the file was truncated or edited; measure it again with `elpips rd`")));
    }
    let s = &f.settings;
    check_bootstrap(s.bootstrap, &format!("{p}: settings.bootstrap"))?;
    if s.codecs.is_empty() || !s.codecs.contains(&s.anchor) || s.settings.len() < 2 || f.images.is_empty() {
        return Err(invalid(format!("{p}: its settings name no codecs, no anchor among them, fewer than 2 settings or no images")));
    }
    if let Some(sh) = f.shard {
        if sh.count == 0 || sh.index >= sh.count || sh.count > f.images.len() as u64 {
            return Err(invalid(format!("{p}: shard {}/{} is out of range for {} images", sh.index, sh.count, f.images.len())));
        }
    }
    let mut expected = Vec::new();
    for k in shard_images(f.images.len(), f.shard) {
        for c in &s.codecs {
            for q in &s.settings {
                expected.push((f.images[k].as_str(), c.as_str(), *q));
            }
        }
    }
    let got: Vec<(&str, &str, i32)> = f.points.iter().map(|p| (p.image.as_str(), p.codec.as_str(), p.setting)).collect();
    if got != expected {
        return Err(invalid(format!("{p}: its points are not its shard's images x codecs x settings in order: a point is missing, added or moved")));
    }
    if let Some(bad) = f.points.iter().find(|p| !(p.bpp > 0.0 && p.bpp.is_finite() && [p.distance, p.ci95, p.std_error, p.lpips_vgg].iter().all(|v| v.is_finite() && *v >= 0.0))) {
        return Err(invalid(format!("{p}: point {} {} {} has a non-finite or negative number", bad.image, bad.codec, bad.setting)));
    }
    Ok(f)
}
