//! The `elpips` command on good and bad input: exit codes, one-line errors, JSON output.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{png_header, upstream};

fn elpips(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elpips")).args(args).output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit status 2 with a single line on stderr containing every `needle`.
fn assert_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error expected, got: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert!(o.stdout.is_empty(), "nothing on stdout on error");
}

fn write_png(dir: &Path, name: &str, w: u32, h: u32, shift: u8) -> PathBuf {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8 ^ shift, (y * 5) as u8, ((x + y) * 3) as u8]));
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn lpips_json_has_the_documented_fields() {
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p0.png"));
    let o = elpips(&["compare", s(&a), s(&b), "--metric", "lpips-vgg", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["metric"], "lpips-vgg");
    assert_eq!(v["device"], "cpu", "every result says which device ran");
    assert!((v["distance"].as_f64().unwrap() - 0.568612813949585).abs() < 1e-5);
    assert_eq!(v["std_error"], 0.0);
    assert_eq!(v["ci95"], 0.0);
    assert_eq!(v["samples"], 1);
    assert_eq!(v["seed"], 0);
}

#[test]
fn elpips_is_reproducible_per_seed() {
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p1.png"));
    let run = |seed: &str| {
        let o = elpips(&["compare", s(&a), s(&b), "--samples", "6", "--seed", seed, "--json", "--threads", "1"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let (first, again, other) = (run("7"), run("7"), run("8"));
    assert_eq!(first, again);
    assert_ne!(first["distance"], other["distance"]);
    assert_eq!(first["samples"], 6);
    assert!(first["ci95"].as_f64().unwrap() > 0.0);
    assert_eq!(first["scale_levels"], 1);
    let text = elpips(&["compare", s(&a), s(&b), "--samples", "2"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("± "));
}

#[test]
fn identical_images_are_at_distance_zero() {
    let a = upstream("lpips/imgs/ex_ref.png");
    let o = elpips(&["compare", s(&a), s(&a), "--samples", "3", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["distance"], 0.0);
}

#[test]
fn bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_png(dir.path(), "good.png", 40, 32, 0);

    let missing = dir.path().join("missing.png");
    assert_error(&elpips(&["compare", s(&good), s(&missing)]), &["cannot read", "missing.png"]);

    let text = dir.path().join("notes.png");
    std::fs::write(&text, "this is not an image\n").unwrap();
    assert_error(&elpips(&["compare", s(&text), s(&good)]), &["cannot decode image", "notes.png", "not a PNG, JPEG, OpenEXR or Radiance HDR"]);

    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.png");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(&elpips(&["compare", s(&good), s(&truncated)]), &["cannot decode image", "truncated.png"]);

    let jpeg = dir.path().join("good.jpg");
    image::open(&good).unwrap().save(&jpeg).unwrap();
    let jbytes = std::fs::read(&jpeg).unwrap();
    let truncated_jpeg = dir.path().join("truncated.jpg");
    std::fs::write(&truncated_jpeg, &jbytes[..jbytes.len() / 3]).unwrap();
    assert_error(&elpips(&["compare", s(&jpeg), s(&truncated_jpeg)]), &["cannot decode image", "truncated.jpg"]);
    // The intact JPEG itself is fine.
    let o = elpips(&["compare", s(&jpeg), s(&good), "--metric", "lpips-vgg"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let directory = dir.path();
    assert_error(&elpips(&["compare", s(directory), s(&good)]), &["cannot read"]);
}

#[test]
fn bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_png(dir.path(), "a.png", 40, 32, 0);
    let b = write_png(dir.path(), "b.png", 32, 40, 1);
    assert_error(&elpips(&["compare", s(&a), s(&b)]), &["sizes differ", "40x32", "32x40"]);

    let tiny_a = write_png(dir.path(), "tiny_a.png", 12, 20, 0);
    let tiny_b = write_png(dir.path(), "tiny_b.png", 12, 20, 1);
    assert_error(&elpips(&["compare", s(&tiny_a), s(&tiny_b)]), &["12x20", "at least 16x16"]);
    let alex_a = write_png(dir.path(), "alex_a.png", 30, 30, 0);
    let alex_b = write_png(dir.path(), "alex_b.png", 30, 30, 1);
    assert_error(&elpips(&["compare", s(&alex_a), s(&alex_b), "--metric", "lpips-alex"]), &["at least 31x31"]);
    // Too many scale levels for the size.
    assert_error(&elpips(&["compare", s(&a), s(&a), "--scale-levels", "8"]), &["at least 58x58", "scale levels"]);

    assert_error(&elpips(&["compare", s(&a), s(&a), "--max-pixels", "1000"]), &["1280 pixels", "limit of 1000"]);
    // A header claiming 100000 x 100000 is refused before anything is decoded.
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, png_header(100_000, 100_000)).unwrap();
    assert_error(&elpips(&["compare", s(&huge), s(&huge)]), &["10000000000 pixels", "--max-pixels"]);
}

#[test]
fn bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_png(dir.path(), "a.png", 40, 32, 0);
    let (a, a2) = (s(&a), s(&a));
    assert_error(&elpips(&["compare", a, a2, "--samples", "5", "--rel-error", "0.1"]), &["--samples", "--rel-error"]);
    assert_error(&elpips(&["compare", a, a2, "--metric", "lpips-vgg", "--samples", "5"]), &["deterministic"]);
    assert_error(&elpips(&["compare", a, a2, "--metric", "lpips-vgg", "--scale-levels", "2"]), &["elpips-vgg only"]);
    assert_error(&elpips(&["compare", a, a2, "--samples", "0"]), &["at least 1"]);
    assert_error(&elpips(&["compare", a, a2, "--samples", "1"]), &["at least 2 samples"]);
    assert_error(&elpips(&["compare", a, a2, "--abs-error", "-1"]), &["positive"]);
    assert_error(&elpips(&["compare", a, a2, "--scale-levels", "0"]), &["at least 1"]);
    assert_error(&elpips(&["compare", a, a2, "--metric", "ssim"]), &["ssim"]);
    assert_error(&elpips(&["compare", a]), &["required"]);
    // A path the caller named: what to name instead, not the checkout's `make setup`.
    assert_error(&elpips(&["compare", a, a2, "--runtime", "/nonexistent/libonnxruntime.so"]), &["1.31 or newer", "/nonexistent"]);
    let not_lib = dir.path().join("libonnxruntime.so");
    std::fs::write(&not_lib, "garbage").unwrap();
    assert_error(&elpips(&["compare", a, a2, "--runtime", s(&not_lib)]), &["cannot load", "1.31 or newer"]);
    assert_error(&elpips(&["compare", a, a2, "--model-dir", s(dir.path())]), &["not found", "must hold the pinned models and their manifest.json"]);
    // Linear weights for the wrong network.
    let lw = common::linear_weights("vgg_maxpool.safetensors");
    assert_error(&elpips(&["compare", a, a2, "--lin-weights", s(&lw)]), &["5 taps", "elpips-vgg needs 14 taps"]);
    let bogus = dir.path().join("weights.npy");
    std::fs::write(&bogus, "nope").unwrap();
    assert_error(&elpips(&["compare", a, a2, "--lin-weights", s(&bogus)]), &["linear weights", "weights.npy"]);
}

#[test]
fn device_and_precision_options() {
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p1.png"));
    // auto falls back to the CPU here (no CUDA provider in the CPU runtime) and says so.
    let o = elpips(&["compare", s(&a), s(&b), "--metric", "lpips-alex", "--device", "auto", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cuda_here = elpips::network::runtime::cuda_available(None).unwrap_or(false);
    assert_eq!(v["device"], if cuda_here { "cuda" } else { "cpu" });
    assert_eq!(v["precision"], "fp32");
    assert!(v["backend"] == "mlas" || v["backend"] == "openvino", "{v}");
    if !cuda_here {
        assert_error(&elpips(&["compare", s(&a), s(&b), "--metric", "lpips-alex", "--device", "cuda"]), &["--device cuda", "CUDA"]);
    }
    assert_error(&elpips(&["compare", s(&a), s(&b), "--device", "tpu"]), &["tpu"]);
    assert_error(&elpips(&["compare", s(&a), s(&b), "--metric", "lpips-vgg", "--precision", "bf16", "--backend", "mlas"]), &["bf16", "openvino backend only"]);
    assert_error(&elpips(&["compare", s(&a), s(&b), "--metric", "lpips-alex", "--precision", "int8"]), &["int8", "lpips-vgg"]);
    let o = elpips(&["compare", s(&a), s(&b), "--metric", "lpips-vgg", "--precision", "int8", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["precision"], "int8");
    let info = elpips(&["info"]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("cuda:") && text.contains("threads:") && text.contains("device cpu"), "{text}");
}
