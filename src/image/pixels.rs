//! Interleaved pixel buffers in memory: their formats and strides, the checks on a buffer's
//! description, and the conversion to an [`Image`] through the tone mapping and alpha policy.
//! The C ABI hands its `ElpipsImage` here once it has turned the raw pointer into a slice; it
//! knows nothing about pointers itself.

use crate::error::Error;
use crate::image::tonemap::{to_display_planar, AlphaPolicy, InputOptions, Transfer};
use crate::image::{check_budget, Image};

/// How the samples of an interleaved buffer are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PixelFormat {
    Rgb8,
    Rgba8,
    Rgb16,
    Rgba16,
    RgbF32,
    RgbaF32,
}

impl PixelFormat {
    fn channels(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgb16 | PixelFormat::RgbF32 => 3,
            PixelFormat::Rgba8 | PixelFormat::Rgba16 | PixelFormat::RgbaF32 => 4,
        }
    }

    fn sample_bytes(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Rgba8 => 1,
            PixelFormat::Rgb16 | PixelFormat::Rgba16 => 2,
            PixelFormat::RgbF32 | PixelFormat::RgbaF32 => 4,
        }
    }
}

/// What is wrong with a pixel buffer: its description, a value in it, or what the core refuses
/// of any image (the pixel budget, the tone mapping).
#[derive(Debug)]
pub(crate) enum PixelError {
    Layout(String),
    NonFinite(String),
    Core(Error),
}

impl From<Error> for PixelError {
    fn from(e: Error) -> Self {
        PixelError::Core(e)
    }
}

/// A checked description of an interleaved buffer: rows `stride` bytes apart.
pub(crate) struct PixelLayout {
    width: usize,
    height: usize,
    stride: usize,
    row_bytes: usize,
    span: usize,
    format: PixelFormat,
    transfer: Transfer,
}

impl PixelLayout {
    /// Checks everything about a description except the pixel values: a non-empty size within
    /// `max_pixels`, a stride (0 = packed rows) no shorter than a row, an extent that fits in
    /// memory.
    pub(crate) fn new(width: u32, height: u32, stride_bytes: usize, format: PixelFormat, transfer: Transfer, max_pixels: u64) -> Result<Self, PixelError> {
        let (w, h) = (width, height);
        if w == 0 || h == 0 {
            return Err(PixelError::Layout(format!("image size {w}x{h} is empty")));
        }
        check_budget(w, h, max_pixels)?;
        let (channels, bytes_per_sample) = (format.channels(), format.sample_bytes());
        let too_big = || PixelError::Layout(format!("a {w}x{h} image with stride {stride_bytes} bytes does not fit in memory"));
        let row_bytes = (w as usize).checked_mul(channels * bytes_per_sample).ok_or_else(too_big)?;
        let stride = if stride_bytes == 0 { row_bytes } else { stride_bytes };
        if stride < row_bytes {
            return Err(PixelError::Layout(format!(
                "stride_bytes {stride} is smaller than a row ({w} pixels x {} bytes = {row_bytes})",
                channels * bytes_per_sample
            )));
        }
        let span = stride.checked_mul(h as usize - 1).and_then(|s| s.checked_add(row_bytes)).ok_or_else(too_big)?;
        if span > isize::MAX as usize {
            return Err(too_big());
        }
        Ok(PixelLayout { width: w as usize, height: h as usize, stride, row_bytes, span, format, transfer })
    }

    /// Bytes from the first to one past the last byte read.
    pub(crate) fn span(&self) -> usize {
        self.span
    }

    /// Converts `bytes` (at least [`PixelLayout::span`] of them) to the planar RGB image,
    /// through `input`'s tone mapping and alpha policy.
    pub(crate) fn decode(&self, bytes: &[u8], input: &InputOptions) -> Result<Image, PixelError> {
        let stored = self.format.channels();
        // Alpha is read only when it is composited.
        let channels = if stored == 4 && input.alpha != AlphaPolicy::Ignore { 4 } else { 3 };
        let mut pixels = crate::image::try_buffer(self.width as u32, self.height as u32, channels * self.width * self.height, 0.0f32, "interleaved image")?;
        for y in 0..self.height {
            let row = &bytes[y * self.stride..y * self.stride + self.row_bytes];
            for x in 0..self.width {
                for c in 0..channels {
                    let i = x * stored + c;
                    let v = match self.format.sample_bytes() {
                        1 => f32::from(row[i]) / 255.0,
                        2 => f32::from(u16::from_ne_bytes([row[2 * i], row[2 * i + 1]])) / 65535.0,
                        _ => {
                            let v = f32::from_ne_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]]);
                            if !v.is_finite() {
                                return Err(PixelError::NonFinite(format!(
                                    "pixel (x {x}, y {y}) channel {c} is {v}; float images must be finite"
                                )));
                            }
                            v
                        }
                    };
                    pixels[(y * self.width + x) * channels + c] = v;
                }
            }
        }
        let data = to_display_planar(self.width, self.height, channels, &pixels, self.transfer, input)?;
        Ok(Image::from_planar(self.width as u32, self.height as u32, data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_convert_to_the_same_image() {
        let (w, h) = (3u32, 2u32);
        let convert_from = |bytes: Vec<u8>, format, stride| {
            let layout = PixelLayout::new(w, h, stride, format, Transfer::Display, 1000).ok().unwrap();
            layout.decode(&bytes[..layout.span()], &InputOptions::default()).ok().unwrap()
        };
        let rgb8: Vec<u8> = (0..w * h * 3).map(|i| (i * 13) as u8).collect();
        let base = convert_from(rgb8.clone(), PixelFormat::Rgb8, 0);
        // RGBA8 with a padded stride.
        let mut rgba8 = vec![0u8; (w * 4 + 5) as usize * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                for c in 0..3 {
                    rgba8[y * (w as usize * 4 + 5) + x * 4 + c] = rgb8[(y * w as usize + x) * 3 + c];
                }
            }
        }
        assert_eq!(convert_from(rgba8, PixelFormat::Rgba8, (w * 4 + 5) as usize), base);
        let rgb16: Vec<u8> = rgb8.iter().flat_map(|&v| (u16::from(v) * 257).to_ne_bytes()).collect();
        let a = convert_from(rgb16, PixelFormat::Rgb16, 0);
        assert!(a.data().iter().zip(base.data()).all(|(x, y)| (x - y).abs() < 1e-6));
        let f32s: Vec<u8> = rgb8.iter().flat_map(|&v| (f32::from(v) / 255.0).to_ne_bytes()).collect();
        assert_eq!(convert_from(f32s, PixelFormat::RgbF32, 0), base);
    }
}
