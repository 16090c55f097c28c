//! The C ABI driven from Rust, through the same `extern "C"` functions a C program calls:
//! results equal the Rust API's and the command line's for the same seed, the prepared
//! reference equals a plain comparison, and bad arguments get their statuses.

mod common;

use std::ffi::{CStr, CString};
use std::path::Path;
use std::process::Command;
use std::ptr;

use elpips::capi::*;

const N: u32 = 64;

/// The synthetic pattern of `examples/c/compare.c` and `tests/c/harness.h` (interleaved RGB8).
fn pattern(shift: u8) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((N * N * 3) as usize);
    for y in 0..N {
        for x in 0..N {
            rgb.extend_from_slice(&[((x * 7) as u8) ^ shift, (y * 5) as u8, ((x + y) * 3) as u8]);
        }
    }
    rgb
}

fn image(rgb: &[u8]) -> ElpipsImage {
    ElpipsImage { data: rgb.as_ptr().cast(), width: N, height: N, stride_bytes: 0, format: ELPIPS_PIXEL_FORMAT_RGB8, transfer: ELPIPS_TRANSFER_SRGB }
}

fn options(metric: ElpipsMetric, samples: u32, seed: u64) -> ElpipsOptions {
    let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
    // SAFETY: a writable options struct.
    assert_eq!(unsafe { elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()) }, ELPIPS_OK);
    // SAFETY: initialised by elpips_options_default.
    let mut o = unsafe { o.assume_init() };
    o.metric = metric;
    o.sampling = ELPIPS_SAMPLING_FIXED;
    o.samples = samples;
    o.seed = seed;
    o.threads = 1;
    o
}

/// An owned context that frees itself.
struct Ctx(*mut ElpipsContext);

impl Ctx {
    fn new(o: &ElpipsOptions) -> Ctx {
        let mut ctx = ptr::null_mut();
        let mut msg = [0 as std::ffi::c_char; 512];
        // SAFETY: valid options, out-pointer and message buffer.
        let s = unsafe { elpips_context_new_with_error(o, &mut ctx, msg.as_mut_ptr(), msg.len()) };
        // SAFETY: NUL-terminated by the call.
        assert_eq!(s, ELPIPS_OK, "{}", unsafe { CStr::from_ptr(msg.as_ptr()) }.to_string_lossy());
        Ctx(ctx)
    }

    fn compare(&self, a: &ElpipsImage, b: &ElpipsImage) -> Result<ElpipsResult, (ElpipsStatus, String)> {
        let mut r = ElpipsResult::default();
        // SAFETY: a live context, valid images and result.
        let s = unsafe { elpips_compare(self.0, a, b, &mut r) };
        if s == ELPIPS_OK {
            Ok(r)
        } else {
            Err((s, self.last_error()))
        }
    }

    fn last_error(&self) -> String {
        // SAFETY: a live context; the message is copied before the next call.
        unsafe { CStr::from_ptr(elpips_last_error(self.0)) }.to_string_lossy().into_owned()
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: ours, freed once.
        unsafe { elpips_context_free(self.0) };
    }
}

#[test]
fn c_abi_equals_the_rust_api_and_the_cli() {
    let (seed, samples) = (7u64, 4u32);
    let (a, b) = (pattern(0), pattern(0x55));
    let ctx = Ctx::new(&options(ELPIPS_METRIC_ELPIPS_VGG, samples, seed));
    let r = ctx.compare(&image(&a), &image(&b)).unwrap();
    assert_eq!((r.samples, r.scale_levels, r.converged), (samples as u64, 1, true));

    // The Rust API on the same pixels.
    let (ra, rb) = (elpips::Image::from_rgb8(N, N, &a).unwrap(), elpips::Image::from_rgb8(N, N, &b).unwrap());
    let mut metric = common::elpips_fixed(samples, seed);
    let e = metric.compare(&ra, &rb).unwrap();
    assert_eq!((r.distance, r.std_error, r.ci95), (e.distance, e.std_error, e.ci95));

    // The command line on the same pixels written as PNG: the very same figure.
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("reference.png"), dir.path().join("candidate.png"));
    image::RgbImage::from_raw(N, N, a).unwrap().save(&pa).unwrap();
    image::RgbImage::from_raw(N, N, b).unwrap().save(&pb).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_elpips"))
        .args(["compare", "--json", "--threads", "1", "--seed", &seed.to_string(), "--samples", &samples.to_string()])
        .args([&pa, &pb])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // serde_json's own float parsing is not always correctly rounded; the printed text (ryu,
    // shortest round-trip) is exact, so parse it with Rust's parser.
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let exact = |key: &str| {
        let start = text.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
        let end = start + text[start..].find([',', '}']).unwrap();
        text[start..end].trim().parse::<f64>().unwrap()
    };
    assert_eq!(exact("distance"), r.distance);
    assert_eq!(exact("std_error"), r.std_error);
    assert_eq!(v["samples"].as_u64().unwrap(), r.samples);

    // And elpips_compare_files on those files.
    let (ca, cb) = (CString::new(pa.to_str().unwrap()).unwrap(), CString::new(pb.to_str().unwrap()).unwrap());
    let mut f = ElpipsResult::default();
    // SAFETY: live context, NUL-terminated paths, writable result.
    assert_eq!(unsafe { elpips_compare_files(ctx.0, ca.as_ptr(), cb.as_ptr(), &mut f) }, ELPIPS_OK);
    assert_eq!(f, r);
}

#[test]
fn prepared_reference_uses_common_random_numbers() {
    // The iid sampler, whose sample i is stream (seed, i): comparable with evaluate_samples below.
    let ctx = Ctx::new(&ElpipsOptions { sampler: ELPIPS_SAMPLER_IID, ..options(ELPIPS_METRIC_ELPIPS_VGG, 3, 11) });
    let (a, b, c) = (pattern(0), pattern(0x55), pattern(0x0F));
    let mut reference = ptr::null_mut();
    // SAFETY: live context, valid image, writable out-pointer.
    assert_eq!(unsafe { elpips_reference_new(ctx.0, &image(&a), &mut reference) }, ELPIPS_OK);
    for cand in [&b, &c, &a] {
        let mut r = ElpipsResult::default();
        // SAFETY: live context and reference, valid image and result.
        assert_eq!(unsafe { elpips_compare_reference(ctx.0, reference, &image(cand), &mut r) }, ELPIPS_OK);
        assert_eq!(r, ctx.compare(&image(&a), &image(cand)).unwrap());
    }
    // Per sample index, both candidates saw the same transform and dropout: the per-sample
    // difference of their distances equals the difference of per-sample evaluations made
    // with the same stream.
    let mut metric = common::metric_with(elpips::MetricOptions {
        sampler: elpips::SamplerKind::Iid,
        sampling: elpips::Sampling::Fixed(3),
        seed: 11,
        ..Default::default()
    });
    let img = |v: &[u8]| elpips::Image::from_rgb8(N, N, v).unwrap();
    let db = metric.evaluate_samples(&img(&a), &img(&b), 1, 0..3).unwrap();
    let dc = metric.evaluate_samples(&img(&a), &img(&c), 1, 0..3).unwrap();
    let mean = |d: &[f64]| d.iter().sum::<f64>() / d.len() as f64;
    let mut rb = ElpipsResult::default();
    // SAFETY: as above.
    assert_eq!(unsafe { elpips_compare_reference(ctx.0, reference, &image(&b), &mut rb) }, ELPIPS_OK);
    let mut rc = ElpipsResult::default();
    // SAFETY: as above.
    assert_eq!(unsafe { elpips_compare_reference(ctx.0, reference, &image(&c), &mut rc) }, ELPIPS_OK);
    assert!((rb.distance - mean(&db)).abs() < 1e-12 && (rc.distance - mean(&dc)).abs() < 1e-12);
    // SAFETY: ours, freed once; NULL is a no-op.
    unsafe {
        elpips_reference_free(reference);
        elpips_reference_free(ptr::null_mut());
    }
}

#[test]
fn bad_arguments_get_their_statuses_and_messages() {
    let ctx = Ctx::new(&options(ELPIPS_METRIC_LPIPS_ALEX, 1, 0));
    let a = pattern(0);
    let good = image(&a);
    assert_eq!(ctx.last_error(), "");
    let expect = |img: ElpipsImage, status: ElpipsStatus, needle: &str| {
        let (s, msg) = ctx.compare(&good, &img).unwrap_err();
        assert_eq!(s, status, "{msg}");
        assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    };
    expect(ElpipsImage { data: ptr::null(), ..good }, ELPIPS_STATUS_NULL_POINTER, "image->data");
    expect(ElpipsImage { width: 0, ..good }, ELPIPS_STATUS_INVALID_IMAGE, "empty");
    expect(ElpipsImage { stride_bytes: 5, ..good }, ELPIPS_STATUS_INVALID_IMAGE, "smaller than a row");
    expect(ElpipsImage { stride_bytes: usize::MAX, ..good }, ELPIPS_STATUS_INVALID_IMAGE, "does not fit");
    expect(ElpipsImage { format: 42, ..good }, ELPIPS_STATUS_INVALID_IMAGE, "unknown pixel format 42");
    expect(ElpipsImage { height: N - 1, ..good }, ELPIPS_STATUS_SIZE_MISMATCH, "sizes differ");
    let mut f = vec![0.5f32; (N * N * 3) as usize];
    f[3 * (N as usize * 5 + 9) + 2] = f32::INFINITY;
    let fi = ElpipsImage { data: f.as_ptr().cast(), format: ELPIPS_PIXEL_FORMAT_RGB_F32, ..good };
    expect(fi, ELPIPS_STATUS_NON_FINITE, "pixel (x 9, y 5) channel 2 is inf");

    let mut r = ElpipsResult::default();
    // SAFETY: NULL arguments are what is being tested; the others are valid.
    unsafe {
        assert_eq!(elpips_compare(ptr::null_mut(), &good, &good, &mut r), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(elpips_compare(ctx.0, ptr::null(), &good, &mut r), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(elpips_compare(ctx.0, &good, &good, ptr::null_mut()), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(elpips_options_default(ptr::null_mut(), std::mem::size_of::<ElpipsOptions>()), ELPIPS_STATUS_NULL_POINTER);
        assert_eq!(elpips_context_new(ptr::null(), ptr::null_mut()), ELPIPS_STATUS_NULL_POINTER);
        elpips_context_free(ptr::null_mut());
        assert_eq!(CStr::from_ptr(elpips_last_error(ptr::null())).to_str().unwrap(), "");
    }

    let mut short = options(ELPIPS_METRIC_LPIPS_ALEX, 1, 0);
    short.struct_size = 16;
    let mut out = ptr::null_mut();
    // SAFETY: valid pointers; the size is what is being tested.
    assert_eq!(unsafe { elpips_context_new(&short, &mut out) }, ELPIPS_STATUS_INVALID_ARGUMENT);
    assert!(out.is_null());
}

#[test]
fn versions_agree() {
    // SAFETY: no preconditions.
    let v = unsafe { CStr::from_ptr(elpips_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    // SAFETY: no preconditions.
    assert_eq!(unsafe { elpips_abi_version() }.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
    let header = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/elpips.h")).unwrap();
    assert!(header.contains(&format!("#define ELPIPS_VERSION_STRING \"{v}\"")));
}
