//! Helpers the benchmark programs share (a folder, so that cargo does not take it for a bench).

use std::path::Path;

use elpips::{Image, LoadOptions};

/// A natural-looking test image: the set-up's upstream image `rel` mirrored out to `w x h`.
pub fn mirrored(rel: &str, w: u32, h: u32) -> elpips::Result<Image> {
    let src = Image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream").join(rel), &LoadOptions::default())?;
    let (iw, ih) = (src.width() as usize, src.height() as usize);
    let fold = |p: usize, n: usize| {
        let p = p % (2 * n);
        if p < n {
            p
        } else {
            2 * n - 1 - p
        }
    };
    let mut data = Vec::with_capacity(3 * (w * h) as usize);
    for ch in 0..3 {
        for y in 0..h as usize {
            let row = &src.channel(ch)[fold(y, ih) * iw..fold(y, ih) * iw + iw];
            data.extend((0..w as usize).map(|x| row[fold(x, iw)]));
        }
    }
    Image::from_planar(w, h, data)
}
