//! Where two images differ: a per-pixel E-LPIPS (or LPIPS) map in image coordinates.
//!
//! Each network evaluation returns, per tap `t`, the map `map_t` whose spatial mean is the tap's
//! term (see the model contract in `weights/README.md`). One sample's map on the network input
//! grid is `M = sum_t up(map_t)`, where `up` is area (box) resampling from the tap's grid to the
//! input's (each tap cell spread evenly over the input area it stands for, stretched over the
//! whole input as lpips' `spatial=True` does). Area resampling keeps the mean, so
//! `mean(M) = sum_t mean(map_t)` = the sample's distance.
//!
//! The sample's map is then carried back to image coordinates by the adjoint of the sample's
//! geometric transform ([`Transform::pull_back`]): flips and transpose are undone, the reflected
//! offset padding folds back onto the pixels it mirrored, and a downscaled pixel spreads over its
//! `s x s` block. The adjoint keeps the sum, so the result is scaled by `(h w) / (h_in w_in)` to
//! keep the mean: every sample's image-space map has mean equal to its distance. The heatmap is
//! the average of the samples' maps (per scale level and then weighted by level probability for
//! the stratified sampler, as the estimate is), so **its mean equals the reported distance**.
//!
//! This module owns the maps, their resampling and their files; it does not run networks.

use std::path::Path;

use crate::ensemble::Transform;
use crate::error::{Error, Result};

/// A single-channel map over the image, row-major: `data[y * width + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    width: u32,
    height: u32,
    data: Vec<f32>,
}

impl Heatmap {
    /// A heatmap of `width x height` values, row-major; refuses a length that does not match.
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Result<Self> {
        if data.len() != width as usize * height as usize {
            return Err(Error::invalid(format!("a {width}x{height} heatmap needs {} values, got {}", width as usize * height as usize, data.len())));
        }
        Ok(Heatmap { width, height, data })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Values, row-major. Units: distance per pixel (the map's mean is the distance).
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// The values, row-major, without a copy.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Mean over all pixels (equals the distance it came with; see the module docs).
    pub fn mean(&self) -> f64 {
        self.data.iter().map(|&v| v as f64).sum::<f64>() / self.data.len() as f64
    }

    /// Largest value (0 for an all-zero map).
    pub fn max(&self) -> f32 {
        self.data.iter().copied().fold(0.0, f32::max)
    }

    /// Sum over the pixels of the rectangle `[x0, x1) x [y0, y1)`.
    pub fn sum_in(&self, x0: u32, y0: u32, x1: u32, y1: u32) -> f64 {
        let mut s = 0.0;
        for y in y0..y1.min(self.height) {
            for x in x0..x1.min(self.width) {
                s += self.data[(y * self.width + x) as usize] as f64;
            }
        }
        s
    }

    /// Colour-maps the heatmap with `inferno` (perceptually uniform): 0 is black, `max` and
    /// above the top colour (pale yellow). Returns interleaved RGB8.
    pub fn to_rgb8(&self, max: f32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() * 3);
        for &v in &self.data {
            let t = if max > 0.0 { (v / max).clamp(0.0, 1.0) } else { 0.0 };
            let c = colorous::INFERNO.eval_continuous(t as f64);
            out.extend_from_slice(&[c.r, c.g, c.b]);
        }
        out
    }

    /// Writes the heatmap (under [`crate::io`]'s policy): `.png` colour-mapped (0 .. `max`,
    /// inferno), `.exr` the raw values (32-bit float, R = G = B = value). Other extensions are
    /// refused.
    pub fn write(&self, path: impl AsRef<Path>, max: f32) -> Result<()> {
        let path = path.as_ref();
        crate::io::write_atomic(path, &self.encode(path, max)?)
    }

    /// The bytes [`Heatmap::write`] writes to `path` (its extension picks the format).
    pub fn encode(&self, path: &Path, max: f32) -> Result<Vec<u8>> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        let encode_err = |e: image::ImageError| Error::Write { path: path.to_owned(), reason: e.to_string() };
        let mut bytes = std::io::Cursor::new(Vec::new());
        match ext.as_deref() {
            Some("png") => {
                let img = image::RgbImage::from_raw(self.width, self.height, self.to_rgb8(max)).expect("sized above");
                img.write_to(&mut bytes, image::ImageFormat::Png).map_err(encode_err)?;
            }
            Some("exr") => {
                let rgb: Vec<f32> = self.data.iter().flat_map(|&v| [v, v, v]).collect();
                let img = image::Rgb32FImage::from_raw(self.width, self.height, rgb).expect("sized above");
                img.write_to(&mut bytes, image::ImageFormat::OpenExr).map_err(encode_err)?;
            }
            _ => {
                return Err(Error::invalid(format!(
                    "heatmap file {} must end in .png (colour-mapped) or .exr (raw values)",
                    path.display()
                )))
            }
        }
        Ok(bytes.into_inner())
    }
}

/// Area (box) resampling of a `sh x sw` map to `dh x dw`, keeping the mean exactly: the source
/// is a piecewise-constant function over the destination's area, and each destination pixel
/// takes its average over the pixel's footprint.
pub fn area_resize(src: &[f32], sh: usize, sw: usize, dh: usize, dw: usize) -> Vec<f32> {
    assert_eq!(src.len(), sh * sw);
    let wx = area_weights(sw, dw);
    let wy = area_weights(sh, dh);
    // Rows first (sh x dw), then columns.
    let mut tmp = vec![0.0f32; sh * dw];
    for y in 0..sh {
        let (s, t) = (&src[y * sw..(y + 1) * sw], &mut tmp[y * dw..(y + 1) * dw]);
        for &(d, i, w) in &wx {
            t[d] += s[i] * w;
        }
    }
    let mut out = vec![0.0f32; dh * dw];
    for &(d, i, w) in &wy {
        let (s, t) = (&tmp[i * dw..(i + 1) * dw], &mut out[d * dw..(d + 1) * dw]);
        for (o, v) in t.iter_mut().zip(s) {
            *o += v * w;
        }
    }
    out
}

/// `(destination, source, weight)` triples of 1-D area resampling from `n` to `m` cells. In units
/// of `1/(n m)`, source cell `i` spans `[i m, (i+1) m)` and destination cell `d` spans
/// `[d n, (d+1) n)`; the weight is the overlap over `n`, so each destination's weights sum to 1.
fn area_weights(n: usize, m: usize) -> Vec<(usize, usize, f32)> {
    let mut out = Vec::with_capacity(m + n);
    for d in 0..m {
        let (lo, hi) = (d * n, (d + 1) * n);
        for i in lo / m..=((hi - 1) / m).min(n - 1) {
            let overlap = hi.min((i + 1) * m) - lo.max(i * m);
            if overlap > 0 {
                out.push((d, i, overlap as f32 / n as f32));
            }
        }
    }
    out
}

/// One sample's map on the network input grid (`th x tw`): the sum over taps of each tap's map
/// (`(H_t, W_t, values)`) area-resampled to the input grid.
pub fn input_map(taps: &[(usize, usize, &[f32])], th: usize, tw: usize) -> Vec<f32> {
    let mut m = vec![0.0f32; th * tw];
    for &(h, w, v) in taps {
        for (o, x) in m.iter_mut().zip(area_resize(v, h, w, th, tw)) {
            *o += x;
        }
    }
    m
}

/// Averages per-sample image-space maps, per stratum, so the result weights samples exactly as
/// the estimate does.
#[derive(Clone, Debug)]
pub struct Accumulator {
    width: usize,
    height: usize,
    sums: Vec<Vec<f64>>,
    counts: Vec<u64>,
}

impl Accumulator {
    pub fn new(width: usize, height: usize) -> Self {
        Accumulator { width, height, sums: Vec::new(), counts: Vec::new() }
    }

    /// Adds one sample's map on the network input grid (`th x tw`), taken by `transform` (or
    /// `None`: the image itself) from the `height x width` image.
    pub fn add(&mut self, stratum: usize, transform: Option<&Transform>, input_map: &[f32], th: usize, tw: usize) {
        let (h, w) = (self.height, self.width);
        let image_map = match transform {
            Some(t) => {
                let mut back = t.pull_back(input_map, h, w);
                // The adjoint keeps the sum; rescale so the mean is kept too.
                let k = (h * w) as f32 / (th * tw) as f32;
                back.iter_mut().for_each(|v| *v *= k);
                back
            }
            None => {
                assert_eq!((th, tw), (h, w), "an untransformed map has the image's size");
                input_map.to_vec()
            }
        };
        if self.sums.len() <= stratum {
            self.sums.resize_with(stratum + 1, || vec![0.0; h * w]);
            self.counts.resize(stratum + 1, 0);
        }
        for (s, v) in self.sums[stratum].iter_mut().zip(&image_map) {
            *s += *v as f64;
        }
        self.counts[stratum] += 1;
    }

    /// The average: per stratum, weighted by `weights[stratum]` (one weight of 1 for plain
    /// averages). Strata without samples are skipped.
    pub fn finish(&self, weights: &[f64]) -> Heatmap {
        let mut out = vec![0.0f64; self.width * self.height];
        for (s, (sum, &n)) in self.sums.iter().zip(&self.counts).enumerate() {
            if n == 0 {
                continue;
            }
            let k = weights.get(s).copied().unwrap_or(0.0) / n as f64;
            for (o, v) in out.iter_mut().zip(sum) {
                *o += k * v;
            }
        }
        Heatmap { width: self.width as u32, height: self.height as u32, data: out.into_iter().map(|v| v as f32).collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_keeps_the_mean_and_constants() {
        let src: Vec<f32> = (0..12).map(|i| (i * i % 7) as f32).collect();
        let mean = src.iter().sum::<f32>() / 12.0;
        for (dh, dw) in [(3, 4), (5, 7), (16, 16), (23, 9), (6, 8)] {
            let out = area_resize(&src, 3, 4, dh, dw);
            let m = out.iter().sum::<f32>() / (dh * dw) as f32;
            assert!((m - mean).abs() < 1e-5, "{dh}x{dw}: {m} vs {mean}");
        }
        assert!(area_resize(&[2.5; 6], 2, 3, 17, 11).iter().all(|&v| (v - 2.5).abs() < 1e-6));
        // An exact 2x upsampling repeats each cell over its 2x2 block.
        assert_eq!(area_resize(&[1.0, 2.0, 3.0, 4.0], 2, 2, 4, 4), [1., 1., 2., 2., 1., 1., 2., 2., 3., 3., 4., 4., 3., 3., 4., 4.]);
    }

    #[test]
    fn accumulator_weights_strata_like_the_estimate() {
        let mut acc = Accumulator::new(2, 1);
        acc.add(0, None, &[1.0, 1.0], 1, 2);
        acc.add(0, None, &[3.0, 3.0], 1, 2);
        acc.add(2, None, &[10.0, 0.0], 1, 2);
        let h = acc.finish(&[0.75, 0.2, 0.25]);
        // 0.75 * mean(1, 3) + 0.25 * 10 on the left; 0.75 * 2 on the right; level 1 is empty.
        assert_eq!(h.data(), &[4.0, 1.5]);
    }

    #[test]
    fn writes_png_and_exr_and_refuses_other_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let h = Heatmap::new(3, 2, vec![0.0, 0.5, 1.0, 2.0, 0.25, 0.0]).unwrap();
        h.write(dir.path().join("m.png"), 1.0).unwrap();
        let png = image::open(dir.path().join("m.png")).unwrap().to_rgb8();
        assert_eq!(png.get_pixel(0, 0).0, [0, 0, 4], "inferno starts near black");
        assert_eq!(png.get_pixel(2, 0), png.get_pixel(0, 1), "values above max take the top colour");
        h.write(dir.path().join("m.exr"), 1.0).unwrap();
        let exr = image::open(dir.path().join("m.exr")).unwrap().to_rgb32f();
        assert_eq!(exr.get_pixel(1, 0).0, [0.5; 3]);
        assert_eq!(exr.get_pixel(0, 1).0, [2.0; 3]);
        assert!(h.write(dir.path().join("m.jpg"), 1.0).unwrap_err().to_string().contains(".png"));
    }
}
