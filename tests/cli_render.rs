//! `elpips compare` with renderer inputs (EXR, HDR, alpha, tone mapping) and `--heatmap`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn elpips(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elpips")).args(args).output().expect("runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A linear float render-like image (values up to 3, so tone mapping matters).
fn render(w: u32, h: u32, shift: f32) -> image::Rgb32FImage {
    image::ImageBuffer::from_fn(w, h, |x, y| image::Rgb([3.0 * x as f32 / w as f32, (y as f32 * 0.3 + shift).sin().abs(), 0.2]))
}

fn save(dir: &Path, name: &str, img: image::DynamicImage) -> PathBuf {
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

fn distance(o: &Output) -> f64 {
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["distance"].as_f64().unwrap()
}

#[test]
fn exr_and_hdr_inputs_with_tone_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (render(48, 40, 0.0), render(48, 40, 0.7));
    let ea = save(dir.path(), "a.exr", a.clone().into());
    let eb = save(dir.path(), "b.exr", b.into());
    let ha = save(dir.path(), "a.hdr", a.into());
    let lpips = ["compare", "--metric", "lpips-alex", "--json"];
    let d = distance(&elpips(&[&lpips[..], &[s(&ea), s(&eb)]].concat()));
    assert!(d > 0.0);
    // The same picture as EXR and as Radiance HDR (8-bit mantissas) is nearly the same input.
    let same = distance(&elpips(&[&lpips[..], &[s(&ea), s(&ha)]].concat()));
    assert!(same < 0.01 * d, "exr vs hdr of one image: {same} (pair: {d})");
    // Tone mapping changes what the network sees.
    let r = distance(&elpips(&[&lpips[..], &["--tonemap", "reinhard", "--exposure", "-1", s(&ea), s(&eb)]].concat()));
    assert!((r - d).abs() > 1e-3 * d, "reinhard {r} vs clamp {d}");
    // `none` refuses values above 1, naming the pixel and the fix.
    let o = elpips(&[&lpips[..], &["--tonemap", "none", s(&ea), s(&eb)]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("outside [0, 1]") && err.contains("--tonemap clamp"), "{err}");
    let o = elpips(&["compare", "--background", "1,1", s(&ea), s(&eb)]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn heatmap_files_png_and_exr() {
    let dir = tempfile::tempdir().unwrap();
    let a = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
    let mut b = a.clone();
    for y in 0..12 {
        for x in 0..12 {
            b.put_pixel(x, y, image::Rgb([255 * ((x + y) % 2) as u8, 0, 255]));
        }
    }
    let (pa, pb) = (save(dir.path(), "a.png", a.into()), save(dir.path(), "b.png", b.into()));
    let png = dir.path().join("heat.png");
    let o = elpips(&["compare", "--metric", "lpips-alex", "--json", "--heatmap", s(&png), s(&pa), s(&pb)]);
    let d = distance(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["heatmap"]["colormap"], "inferno");
    assert!((v["heatmap"]["mean"].as_f64().unwrap() - d).abs() < 1e-4 * d);
    let heat = image::open(&png).unwrap().to_rgb8();
    assert_eq!(heat.dimensions(), (64, 48));
    // Text mode: stdout keeps its single line; the legend goes to stderr.
    let exr = dir.path().join("heat.exr");
    let o = elpips(&["compare", "--samples", "2", "--heatmap", s(&exr), s(&pa), s(&pb)]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("heat.exr"));
    let raw = image::open(&exr).unwrap().to_rgb32f();
    let (tl, br): (f32, f32) = (raw.get_pixel(5, 5).0[0], raw.get_pixel(58, 42).0[0]);
    assert!(tl > 10.0 * br, "the changed corner is hot: {tl} vs {br}");
    // Bad requests fail with a one-line reason and leave no file.
    let o = elpips(&["compare", "--heatmap", s(&dir.path().join("heat.jpg")), s(&pa), s(&pb)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(".png"));
    let o = elpips(&["compare", "--heatmap", s(&dir.path().join("missing/heat.png")), "--metric", "lpips-alex", s(&pa), s(&pb)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot write"));
}
