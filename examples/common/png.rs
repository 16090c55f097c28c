//! Writes an image as an 8-bit sRGB PNG, atomically (the library's `io::write_atomic_with`),
//! for the examples that save their results (`attack`, `interpolate`).

use std::path::Path;

use elpips::Image;

pub fn save_png(img: &Image, path: &Path) -> Result<(), String> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut rgb = vec![0u8; 3 * w * h];
    for c in 0..3 {
        for (i, &v) in img.channel(c).iter().enumerate() {
            rgb[3 * i + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    elpips::io::write_atomic_with(path, |f| {
        image::write_buffer_with_format(f, &rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
            .map_err(std::io::Error::other)
    })
    .map_err(|e| e.to_string())
}
