//! Pixel buffers in: decoding, validation, and the planar RGB `[0,1]` float image the networks
//! consume. This module owns the pixel budget; it knows nothing about networks or sampling.

use std::path::Path;

use crate::error::{Error, Result};

/// Default pixel budget: 16 Mpx (e.g. 4096x4096). A full-size VGG pass keeps several feature maps
/// of 64 channels x the pixel count alive, so far larger inputs would exhaust memory instead of
/// failing cleanly. Raise it with [`LoadOptions::max_pixels`] when the machine can take it.
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 24;

/// A planar RGB image with values in `[0, 1]`: `data[c * height * width + y * width + x]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    width: u32,
    height: u32,
    data: Vec<f32>,
}

/// How files are turned into [`Image`]s.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Refuse images with more pixels than this (checked from the header, before decoding).
    pub max_pixels: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { max_pixels: DEFAULT_MAX_PIXELS }
    }
}

impl Image {
    /// Wraps planar RGB data (`3 * width * height` values in `[0,1]`).
    pub fn from_planar(width: u32, height: u32, data: Vec<f32>) -> Result<Self> {
        let expected = 3 * width as usize * height as usize;
        if width == 0 || height == 0 {
            return Err(Error::invalid(format!("image size {width}x{height} is empty")));
        }
        if data.len() != expected {
            return Err(Error::invalid(format!(
                "planar RGB buffer for {width}x{height} needs {expected} values, got {}",
                data.len()
            )));
        }
        if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!("pixel value at index {bad} is not finite ({})", data[bad])));
        }
        Ok(Image { width, height, data })
    }

    /// Builds an image from interleaved 8-bit RGB (`3 * width * height` bytes, no padding).
    pub fn from_rgb8(width: u32, height: u32, rgb: &[u8]) -> Result<Self> {
        let n = width as usize * height as usize;
        if rgb.len() != 3 * n {
            return Err(Error::invalid(format!("RGB8 buffer for {width}x{height} needs {} bytes, got {}", 3 * n, rgb.len())));
        }
        let mut data = vec![0.0; 3 * n];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * n + i] = f32::from(px[c]) / 255.0;
            }
        }
        Image::from_planar(width, height, data)
    }

    /// Decodes a PNG (8 or 16 bit) or JPEG file. Alpha is dropped; grey is expanded to RGB.
    pub fn open(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_owned(), reason: e.to_string() })?;
        Self::decode(&bytes, options).map_err(|e| match e {
            Error::ImageDecode { reason, .. } => Error::ImageDecode { path: path.to_owned(), reason },
            other => other,
        })
    }

    /// Decodes an in-memory PNG or JPEG; see [`Image::open`].
    pub fn decode(bytes: &[u8], options: &LoadOptions) -> Result<Self> {
        let decode_err = |reason: String| Error::ImageDecode { path: "<memory>".into(), reason };
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| decode_err(e.to_string()))?;
        if reader.format().is_none() {
            return Err(decode_err("not a PNG or JPEG file (unrecognised signature)".into()));
        }
        // Read the header first so absurd sizes are refused before anything is allocated.
        let (width, height) = reader.into_dimensions().map_err(|e| decode_err(e.to_string()))?;
        check_budget(width, height, options.max_pixels)?;
        let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| decode_err(e.to_string()))?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        // Decoded image at 16 bit RGBA, plus our float copy.
        limits.max_alloc = Some(width as u64 * height as u64 * 8 + (1 << 20));
        reader.limits(limits);
        let decoded = reader.decode().map_err(|e| decode_err(e.to_string()))?;
        let rgb = decoded.to_rgb32f();
        let n = width as usize * height as usize;
        let mut data = vec![0.0; 3 * n];
        for (i, px) in rgb.pixels().enumerate() {
            for c in 0..3 {
                data[c * n + i] = px.0[c].clamp(0.0, 1.0);
            }
        }
        Image::from_planar(width, height, data)
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    /// Planar RGB values, channel-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    /// One channel plane (`height * width` values, row-major).
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.width as usize * self.height as usize;
        &self.data[c * n..(c + 1) * n]
    }
}

/// Refuses images over the pixel budget, with the numbers in the message.
pub fn check_budget(width: u32, height: u32, max_pixels: u64) -> Result<()> {
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(Error::ImageTooLarge { width, height, pixels, limit: max_pixels });
    }
    Ok(())
}

/// Checks that a reference/candidate pair can be compared at all.
pub fn check_same_size(reference: &Image, candidate: &Image) -> Result<()> {
    if reference.width != candidate.width || reference.height != candidate.height {
        return Err(Error::SizeMismatch {
            reference_width: reference.width,
            reference_height: reference.height,
            candidate_width: candidate.width,
            candidate_height: candidate.height,
        });
    }
    Ok(())
}
