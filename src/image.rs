//! Pixel buffers in: decoding, validation, and the planar RGB `[0,1]` float image the networks
//! consume. This module owns the pixel budget; it knows nothing about networks or sampling.
//! Turning scene-linear or alpha-carrying pixels into display values is [`crate::image::tonemap`]'s.

use std::path::Path;

use crate::error::{Error, Result};

// Only the C ABI reads raw interleaved buffers so far; a Rust entry would take a slice.
#[cfg_attr(not(feature = "capi"), allow(dead_code))]
pub(crate) mod pixels;
pub mod tonemap;
use crate::image::tonemap::{to_display_planar, InputOptions, Transfer};

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
    /// Tone mapping of scene-linear files (EXR, HDR) and the alpha policy. The default leaves
    /// 8/16-bit files exactly as decoded (value / 255 or / 65535, alpha dropped).
    pub input: InputOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { max_pixels: DEFAULT_MAX_PIXELS, input: InputOptions::default() }
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
        let mut data = try_buffer(width, height, 3 * n, 0.0, "planar RGB image")?;
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * n + i] = f32::from(px[c]) / 255.0;
            }
        }
        Image::from_planar(width, height, data)
    }

    /// Builds an image from interleaved float pixels (`channels` = 3, or 4 with alpha last) with
    /// the given transfer, through `input`'s tone mapping and alpha policy (see
    /// [`crate::image::tonemap`]). Non-finite values are refused.
    pub fn from_interleaved_f32(width: u32, height: u32, channels: usize, pixels: &[f32], transfer: Transfer, input: &InputOptions) -> Result<Self> {
        if channels != 3 && channels != 4 {
            return Err(Error::invalid(format!("pixels need 3 (RGB) or 4 (RGBA) channels, not {channels}")));
        }
        let n = width as usize * height as usize;
        if pixels.len() != n * channels {
            return Err(Error::invalid(format!("{width}x{height} pixels with {channels} channels need {} values, got {}", n * channels, pixels.len())));
        }
        let data = to_display_planar(width as usize, height as usize, channels, pixels, transfer, input)?;
        Image::from_planar(width, height, data)
    }

    /// Decodes a PNG (8 or 16 bit), JPEG, OpenEXR or Radiance HDR file. 8/16-bit files are
    /// display-referred; EXR and HDR are scene-linear and go through `options.input`'s tone
    /// mapping. Alpha follows `options.input.alpha` (dropped by default); grey becomes RGB.
    pub fn open(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::integrity::read_regular_file(path, max_file_bytes(options.max_pixels))
            .map_err(|e| Error::Io { path: path.to_owned(), reason: e.to_string() })?;
        Self::decode(&bytes, options).map_err(|e| match e {
            Error::ImageDecode { reason, .. } => Error::ImageDecode { path: path.to_owned(), reason },
            other => other,
        })
    }

    /// Decodes an in-memory image file; see [`Image::open`].
    ///
    /// Every buffer sized by the image is allocated fallibly: an image within the pixel budget
    /// that this machine cannot hold is [`Error::OutOfMemory`], never an abort. JPEGs are
    /// decoded strictly: a truncated or corrupt one is refused, not filled in.
    pub fn decode(bytes: &[u8], options: &LoadOptions) -> Result<Self> {
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| decode_err(e.to_string()))?;
        let Some(format) = reader.format() else {
            return Err(decode_err("not a PNG, JPEG, OpenEXR or Radiance HDR file (unrecognised signature)".into()));
        };
        // Read the header first so absurd sizes are refused before anything is allocated.
        let (width, height) = reader.into_dimensions().map_err(|e| decode_err(e.to_string()))?;
        check_budget(width, height, options.max_pixels)?;
        let decoded = match format {
            image::ImageFormat::Jpeg => decode_jpeg(bytes, width, height)?,
            _ => decode_other(bytes, width, height)?,
        };
        let color = decoded.color;
        let float = matches!(color, image::ColorType::Rgb32F | image::ColorType::Rgba32F);
        let transfer = if float { Transfer::Linear } else { Transfer::Display };
        let input = &options.input;
        // Alpha matters only when it is composited; otherwise it is never even converted.
        let channels = if color.has_alpha() && input.alpha != crate::image::tonemap::AlphaPolicy::Ignore { 4 } else { 3 };
        let stored = color.channel_count() as usize;
        let n = width as usize * height as usize;
        // Grey is expanded: colour c of a grey pixel is its channel 0; alpha is always last.
        let source = |c: usize| if c == 3 { stored - 1 } else if stored < 3 { 0 } else { c };
        if !float && channels == 3 {
            // The historical path, kept bit for bit: integers divided exactly (value / 255 or
            // / 65535), as the reference implementations do.
            let mut data = try_buffer(width, height, 3 * n, 0.0f32, "planar RGB image")?;
            let mut put = |scale: &dyn Fn(usize) -> f32| (0..n).for_each(|i| (0..3).for_each(|c| data[c * n + i] = scale(i * stored + source(c))));
            match &decoded.samples {
                Samples::U8(v) => put(&|k| f32::from(v[k]) / 255.0),
                Samples::U16(v) => put(&|k| f32::from(v[k]) / 65535.0),
                Samples::F32(_) => unreachable!("float images are linear"),
            }
            return Image::from_planar(width, height, data);
        }
        let interleaved = |value: &dyn Fn(usize) -> f32| -> Result<Vec<f32>> {
            let mut out = try_buffer(width, height, channels * n, 0.0f32, "interleaved image")?;
            (0..n).for_each(|i| (0..channels).for_each(|c| out[i * channels + c] = value(i * stored + source(c))));
            Ok(out)
        };
        let pixels = match decoded.samples {
            Samples::F32(v) if stored == channels => v,
            Samples::F32(v) => interleaved(&|k| v[k])?,
            Samples::U8(v) => interleaved(&|k| f32::from(v[k]) / 255.0)?,
            Samples::U16(v) => interleaved(&|k| f32::from(v[k]) / 65535.0)?,
        };
        Image::from_interleaved_f32(width, height, channels, &pixels, transfer, input).map_err(|e| match e {
            Error::InvalidArgument(reason) => decode_err(reason),
            other => other,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height in pixels.
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

/// A decoder's error, on one line (decoder messages may span several).
fn decode_err(reason: String) -> Error {
    Error::ImageDecode { path: "<memory>".into(), reason: reason.split_whitespace().collect::<Vec<_>>().join(" ") }
}

/// A `width x height` image's buffer of `len` copies of `value`, allocated fallibly: the size
/// comes from an input, and a failed allocation must be an error, not the end of the process
/// (of a C renderer or a Python session linking the library).
pub(crate) fn try_buffer<T: Clone>(width: u32, height: u32, len: usize, value: T, what: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    let bytes = (len as u64).saturating_mul(std::mem::size_of::<T>() as u64);
    v.try_reserve_exact(len).map_err(|_| Error::OutOfMemory { width, height, what, bytes })?;
    v.resize(len, value);
    Ok(v)
}

/// A decoded image's samples, interleaved as its colour type says (grey, grey + alpha, RGB,
/// RGBA), at its own depth.
struct Decoded {
    color: image::ColorType,
    samples: Samples,
}

enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

/// JPEG through zune-jpeg in strict mode, with the output the `image` crate would give (the
/// file's own colour space when it is grey or RGB(A), else RGB): a file cut short or with a
/// corrupt scan is refused, where the lenient decoder fills the missing part with grey.
fn decode_jpeg(bytes: &[u8], width: u32, height: u32) -> Result<Decoded> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let jpeg_err = |e: zune_jpeg::errors::DecodeErrors| decode_err(format!("Format error decoding Jpeg: {e}"));
    let options = DecoderOptions::default().set_strict_mode(true).set_max_width(width as usize).set_max_height(height as usize);
    let mut headers = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    headers.decode_headers().map_err(jpeg_err)?;
    let (out, color) = match headers.input_colorspace() {
        Some(ColorSpace::Luma) => (ColorSpace::Luma, image::ColorType::L8),
        Some(ColorSpace::LumaA) => (ColorSpace::LumaA, image::ColorType::La8),
        Some(ColorSpace::RGBA) => (ColorSpace::RGBA, image::ColorType::Rgba8),
        _ => (ColorSpace::RGB, image::ColorType::Rgb8),
    };
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options.jpeg_set_out_colorspace(out));
    decoder.decode_headers().map_err(jpeg_err)?;
    let len = decoder.output_buffer_size().ok_or_else(|| decode_err("the JPEG's size overflows".into()))?;
    let mut buf = try_buffer(width, height, len, 0u8, "decoded JPEG")?;
    decoder.decode_into(&mut buf).map_err(jpeg_err)?;
    Ok(Decoded { color, samples: Samples::U8(buf) })
}

/// PNG, OpenEXR and Radiance HDR through the `image` crate's decoders, into a buffer allocated
/// here (fallibly) rather than by the crate.
fn decode_other(bytes: &[u8], width: u32, height: u32) -> Result<Decoded> {
    use image::ImageDecoder;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| decode_err(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // The decoder's own buffers (EXR blocks, PNG rows) beside the image, which is ours.
    limits.max_alloc = Some(width as u64 * height as u64 * 32 + (1 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_err(e.to_string()))?;
    let color = decoder.color_type();
    let total = usize::try_from(decoder.total_bytes()).map_err(|_| decode_err("the image's size overflows".into()))?;
    let read = |buf: &mut [u8]| decoder.read_image(buf).map_err(|e| decode_err(e.to_string()));
    let samples = match color.bytes_per_pixel() / color.channel_count() {
        1 => {
            let mut v = try_buffer(width, height, total, 0u8, "decoded image")?;
            read(&mut v)?;
            Samples::U8(v)
        }
        2 => {
            let mut v = try_buffer(width, height, total / 2, 0u16, "decoded image")?;
            read(bytemuck::cast_slice_mut(&mut v))?;
            Samples::U16(v)
        }
        4 if matches!(color, image::ColorType::Rgb32F | image::ColorType::Rgba32F) => {
            let mut v = try_buffer(width, height, total / 4, 0f32, "decoded image")?;
            read(bytemuck::cast_slice_mut(&mut v))?;
            Samples::F32(v)
        }
        _ => return Err(decode_err(format!("unsupported pixel type {color:?}"))),
    };
    Ok(Decoded { color, samples })
}

/// The largest image file read for a pixel budget: 128 bytes per pixel (an uncompressed OpenEXR
/// with eight float RGBA layers) and at least 64 MiB, so no budget lets a read grow without
/// bound, and no real image within the budget is refused for its file size.
pub fn max_file_bytes(max_pixels: u64) -> u64 {
    max_pixels.saturating_mul(128).max(64 << 20)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_png<P: image::Pixel<Subpixel = S> + image::PixelWithColorType, S: image::Primitive>(
        img: image::ImageBuffer<P, Vec<S>>,
    ) -> Vec<u8>
    where
        [S]: image::EncodableLayout,
    {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn sixteen_bit_rgba_keeps_precision_and_drops_alpha() {
        let img = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(3, 2, |x, y| image::Rgba([x as u16 * 1000 + 1, y as u16 * 65535, 12345, 7]));
        let decoded = Image::decode(&encode_png(img), &LoadOptions::default()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (3, 2));
        // 16-bit values survive exactly (8-bit would round 1001/65535 to 1/255).
        assert!((decoded.channel(0)[1] - 1001.0 / 65535.0).abs() < 1e-7);
        assert_eq!(decoded.channel(1)[3], 1.0);
        assert!((decoded.channel(2)[5] - 12345.0 / 65535.0).abs() < 1e-7);
        assert_eq!(decoded.data().len(), 3 * 6, "alpha is dropped");
    }

    #[test]
    fn grey_expands_to_rgb_and_8_bit_divides_by_255() {
        let img = image::GrayImage::from_fn(2, 2, |x, y| image::Luma([(x + 2 * y) as u8 * 51]));
        let decoded = Image::decode(&encode_png(img), &LoadOptions::default()).unwrap();
        for c in 0..3 {
            assert_eq!(decoded.channel(c), &[0.0, 0.2, 0.4, 0.6]);
        }
    }

    #[test]
    fn buffers_are_validated() {
        assert!(Image::from_rgb8(2, 2, &[0; 11]).is_err());
        assert!(Image::from_planar(0, 5, vec![]).is_err());
        let err = Image::from_planar(1, 1, vec![0.0, f32::NAN, 0.0]).unwrap_err();
        assert!(err.to_string().contains("not finite"), "{err}");
        let budget = LoadOptions { max_pixels: 5, ..Default::default() };
        let png = encode_png(image::GrayImage::new(3, 2));
        assert!(matches!(Image::decode(&png, &budget), Err(Error::ImageTooLarge { pixels: 6, limit: 5, .. })));
    }

    fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn exr_and_hdr_are_linear_and_tone_mapped() {
        use crate::image::tonemap::{srgb_encode, AlphaPolicy, InputOptions, ToneCurve, ToneMapping};
        // Premultiplied RGBA: half-covered red with a highlight of 4 in green.
        let px = [0.5f32, 4.0, 0.0, 0.5];
        let exr = encode(image::DynamicImage::ImageRgba32F(image::ImageBuffer::from_fn(2, 1, |_, _| image::Rgba(px))), image::ImageFormat::OpenExr);
        let d = Image::decode(&exr, &LoadOptions::default()).unwrap();
        assert!((d.channel(0)[0] - srgb_encode(0.5)).abs() < 1e-6, "sRGB-encoded by default");
        assert_eq!(d.channel(1)[0], 1.0, "clamped");
        let opts = |input| LoadOptions { input, ..Default::default() };
        let over = InputOptions { alpha: AlphaPolicy::Over([0.0, 0.0, 1.0]), ..Default::default() };
        let d = Image::decode(&exr, &opts(over)).unwrap();
        assert!((d.channel(2)[1] - srgb_encode(0.5)).abs() < 1e-6, "c + (1-a) bg");
        let dark = InputOptions { tone: ToneMapping { exposure: -3.0, curve: ToneCurve::Reinhard, ..Default::default() }, ..Default::default() };
        let d = Image::decode(&exr, &opts(dark)).unwrap();
        assert!((d.channel(1)[0] - srgb_encode(0.5 / 1.5)).abs() < 1e-6, "4 * 2^-3 = 0.5 -> reinhard 1/3");
        let strict = InputOptions { tone: ToneMapping { curve: ToneCurve::None, ..Default::default() }, ..Default::default() };
        let err = Image::decode(&exr, &opts(strict)).unwrap_err();
        assert!(err.to_string().contains("outside [0, 1]"), "{err}");

        let hdr = encode(image::DynamicImage::ImageRgb32F(image::ImageBuffer::from_fn(3, 2, |x, _| image::Rgb([0.25 * x as f32, 2.0, 0.0]))), image::ImageFormat::Hdr);
        let d = Image::decode(&hdr, &LoadOptions::default()).unwrap();
        assert_eq!((d.width(), d.height()), (3, 2));
        // Radiance RGBE keeps 8 mantissa bits: 0.25 survives exactly.
        assert!((d.channel(0)[1] - srgb_encode(0.25)).abs() < 1e-6);
        assert_eq!(d.channel(1)[4], 1.0);
    }

    #[test]
    fn png_alpha_is_ignored_by_default_or_composited_straight() {
        use crate::image::tonemap::{AlphaPolicy, InputOptions};
        let png = encode_png(image::RgbaImage::from_pixel(2, 2, image::Rgba([255, 51, 0, 128])));
        let d = Image::decode(&png, &LoadOptions::default()).unwrap();
        assert_eq!((d.channel(0)[0], d.channel(1)[0], d.channel(2)[0]), (1.0, 0.2, 0.0), "exactly as before");
        let over = LoadOptions { input: InputOptions { alpha: AlphaPolicy::Over([1.0, 1.0, 1.0]), ..Default::default() }, ..Default::default() };
        let d = Image::decode(&png, &over).unwrap();
        let a = 128.0 / 255.0;
        assert!((d.channel(1)[3] - (a * 0.2 + (1.0 - a))).abs() < 1e-6);
        assert!((d.channel(2)[3] - (1.0 - a)).abs() < 1e-6);
    }
}
