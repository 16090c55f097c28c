//! The bad-input table of `docs/bad-inputs.md`, row by row: each row of the document names an
//! input, the interface it goes through, the status it must get and a part of the message. This
//! test reads the document, runs the case of every row, and fails if the status or message
//! differ, if a row has no case here, or if a case here has no row there.
//!
//! `BAD_INPUTS_PRINT=1 cargo test --release --test bad_inputs -- --nocapture` prints what every
//! case gets (to write a new row).

mod common;
mod weight_files;

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr;

use elpips::capi::*;
use elpips::{Error, Image, LoadOptions, Metric, MetricKind, MetricOptions, Sampling};

/// Runs `cmd` with exactly these CI engines' shard variables (`--shard auto`), none inherited.
fn with_engines(mut cmd: Command, vars: &[(&str, &str)]) -> Outcome {
    for v in ["TEST_SHARD_INDEX", "TEST_TOTAL_SHARDS", "TEST_SHARD_STATUS_FILE", "CI_NODE_INDEX", "CI_NODE_TOTAL", "BUILDKITE_PARALLEL_JOB",
        "BUILDKITE_PARALLEL_JOB_COUNT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP", "SLURM_ARRAY_TASK_COUNT"]
    {
        cmd.env_remove(v);
    }
    outcome(&cmd.envs(vars.iter().copied()).output().unwrap())
}

/// What a case got: the status name (`ELPIPS_STATUS_*`, or `exit N` for the command line) and
/// the message.
type Outcome = (String, String);

const STATUS_NAMES: [&str; 16] = [
    "ELPIPS_OK",
    "ELPIPS_STATUS_INVALID_ARGUMENT",
    "ELPIPS_STATUS_IO",
    "ELPIPS_STATUS_IMAGE_DECODE",
    "ELPIPS_STATUS_SIZE_MISMATCH",
    "ELPIPS_STATUS_IMAGE_TOO_SMALL",
    "ELPIPS_STATUS_IMAGE_TOO_LARGE",
    "ELPIPS_STATUS_RUNTIME",
    "ELPIPS_STATUS_MODEL",
    "ELPIPS_STATUS_LINEAR_WEIGHTS",
    "ELPIPS_STATUS_INFERENCE",
    "ELPIPS_STATUS_NULL_POINTER",
    "ELPIPS_STATUS_INVALID_IMAGE",
    "ELPIPS_STATUS_NON_FINITE",
    "ELPIPS_STATUS_UNSUPPORTED",
    "ELPIPS_STATUS_INTERNAL_ERROR",
];

fn status_name(s: ElpipsStatus) -> String {
    STATUS_NAMES.get(s as usize).map_or_else(|| format!("status {s}"), |n| n.to_string())
}

fn lib<T>(r: Result<T, Error>) -> Outcome {
    match r {
        Ok(_) => ("ELPIPS_OK".into(), String::new()),
        Err(e) => (status_name(e.code() as i32), e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Fixtures {
    dir: tempfile::TempDir,
    png: Vec<u8>,
    jpeg: Vec<u8>,
    /// The same pixels as OpenEXR (RGBA float) and Radiance HDR, scene-linear.
    exr: Vec<u8>,
    hdr: Vec<u8>,
    rgb8: Vec<u8>,
    /// LPIPS-AlexNet, the cheapest network, with a 64x64 pixel budget.
    ctx: *mut ElpipsContext,
}

const N: u32 = 40;

impl Fixtures {
    fn new() -> Self {
        let img = image::RgbImage::from_fn(N, N, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]));
        let mut png = std::io::Cursor::new(Vec::new());
        img.write_to(&mut png, image::ImageFormat::Png).unwrap();
        let mut jpeg = std::io::Cursor::new(Vec::new());
        img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
        let linear = |v: u8| (v as f32 / 255.0).powf(2.2);
        let rgba = image::Rgba32FImage::from_fn(N, N, |x, y| {
            let p = img.get_pixel(x, y).0;
            image::Rgba([linear(p[0]), linear(p[1]), linear(p[2]), 1.0])
        });
        let mut exr = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgba32F(rgba.clone()).write_to(&mut exr, image::ImageFormat::OpenExr).unwrap();
        let mut hdr = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgba32F(rgba).to_rgb32f().write_to(&mut hdr, image::ImageFormat::Hdr).unwrap();
        let mut o = options();
        o.metric = ELPIPS_METRIC_LPIPS_ALEX;
        o.max_pixels = 64 * 64;
        let (s, ctx, msg) = context_new(&o);
        assert_eq!(s, ELPIPS_OK, "{msg}; run `make setup` first");
        Fixtures { dir: tempfile::tempdir().unwrap(), png: png.into_inner(), jpeg: jpeg.into_inner(), exr: exr.into_inner(), hdr: hdr.into_inner(), rgb8: img.into_raw(), ctx }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn image(&self) -> ElpipsImage {
        ElpipsImage { data: self.rgb8.as_ptr().cast(), width: N, height: N, stride_bytes: 0, format: ELPIPS_PIXEL_FORMAT_RGB8, transfer: ELPIPS_TRANSFER_SRGB }
    }

    /// `elpips_compare(ctx, reference, candidate)` through the C ABI.
    fn compare(&self, reference: *const ElpipsImage, candidate: *const ElpipsImage) -> Outcome {
        let mut r = ElpipsResult::default();
        // SAFETY: the descriptions are valid or deliberately NULL (what is being tested).
        let s = unsafe { elpips_compare(self.ctx, reference, candidate, &mut r) };
        (status_name(s), self.last_error())
    }

    fn compare_one(&self, candidate: ElpipsImage) -> Outcome {
        let good = self.image();
        self.compare(&good, &candidate)
    }

    fn last_error(&self) -> String {
        // SAFETY: a live context; the message is NUL-terminated.
        unsafe { CStr::from_ptr(elpips_last_error(self.ctx)) }.to_string_lossy().into_owned()
    }

    /// A model directory holding a copy of lpips-alex.features.onnx and the manifest, for tampering.
    fn model_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let models = elpips::network::models::model_dir(None);
        std::fs::copy(models.join("lpips-alex.features.onnx"), dir.join("lpips-alex.features.onnx")).unwrap();
        std::fs::copy(models.join("../manifest.json"), dir.join("manifest.json")).unwrap();
        dir
    }

    fn alex_with_model_dir(&self, dir: &Path) -> Outcome {
        lib(Metric::new(MetricOptions { metric: MetricKind::LpipsAlex, model_dir: Some(dir.to_owned()), ..Default::default() }))
    }

    /// A named pipe with no writer: opening it for reading the ordinary way blocks for ever.
    fn fifo(&self) -> PathBuf {
        let path = self.dir.path().join("frame.png");
        if !path.exists() {
            let c = CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        }
        path
    }

    /// `elpips_compare_files` of a valid PNG against `candidate`, on the fixture's context.
    fn compare_files(&self, candidate: &str) -> Outcome {
        let png = self.file("capi.png", &self.png);
        let (r, c) = (CString::new(png.to_str().unwrap()).unwrap(), CString::new(candidate).unwrap());
        let mut result = std::mem::MaybeUninit::<ElpipsResult>::zeroed();
        // SAFETY: valid context, NUL-terminated paths, a writable result.
        let status = unsafe { elpips_compare_files(self.ctx, r.as_ptr(), c.as_ptr(), result.as_mut_ptr()) };
        // SAFETY: the context is valid; the message is NUL-terminated and ours to read now.
        let message = unsafe { CStr::from_ptr(elpips_last_error(self.ctx)) }.to_string_lossy().into_owned();
        (status_name(status), if status == 0 { String::new() } else { message })
    }

    /// The command line, on a pair of valid PNGs plus `args`.
    fn cli(&self, args: &[&str]) -> Outcome {
        let png = self.file("cli.png", &self.png);
        self.cli_files(png.to_str().unwrap(), args)
    }

    /// The command line, comparing a valid PNG to `candidate`, plus `args`.
    fn cli_files(&self, candidate: &str, args: &[&str]) -> Outcome {
        let png = self.file("cli.png", &self.png);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_elpips"));
        cmd.arg("compare").arg(&png).arg(candidate).args(args).env_remove("ORT_DYLIB_PATH");
        let out = cmd.output().unwrap();
        let code = out.status.code().map_or("killed".into(), |c| format!("exit {c}"));
        (code, String::from_utf8_lossy(&out.stderr).trim_end().to_owned())
    }
}

impl Fixtures {
    /// `elpips rd` of one valid PNG, plus `args` (every case here is refused before any network
    /// runs or anything is written).
    fn rd(&self, args: &[&str]) -> Outcome {
        let png = self.file("cli.png", &self.png);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_elpips"));
        cmd.arg("rd").arg("--out").arg(self.dir.path().join("rd-out")).args(args).env_remove("ORT_DYLIB_PATH");
        if !args.contains(&"--merge") && !args.contains(&"--corpus") {
            cmd.arg(&png);
        }
        let out = cmd.output().unwrap();
        assert!(!self.dir.path().join("rd-out").exists(), "a refused rd writes nothing");
        let code = out.status.code().map_or("killed".into(), |c| format!("exit {c}"));
        (code, String::from_utf8_lossy(&out.stderr).trim_end().to_owned())
    }

    /// An rd.json that is well-formed but whose digest is not its own.
    fn rd_part(&self) -> String {
        let v = serde_json::json!({
            "bd_rate": {}, "digest": "0".repeat(64), "elpips_rd": 1, "images": ["a.png"], "points": [], "shard": null,
            "settings": {"anchor": "jpeg", "bootstrap": 10, "codecs": ["jpeg"], "metric": "elpips-vgg", "sampler": "iid",
                         "sampling": "Fixed(8)", "scale_levels": null, "seed": 0, "settings": [20, 50]},
        });
        self.file("part.json", v.to_string().as_bytes()).to_str().unwrap().to_owned()
    }

    /// `elpips check` plus `args` (no images are read by these cases).
    fn check_cli(&self, args: &[&str]) -> Outcome {
        outcome(&self.check_cmd(args).output().unwrap())
    }

    fn check_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_elpips"));
        cmd.arg("check").args(args).env_remove("ORT_DYLIB_PATH");
        cmd
    }

    /// `elpips rd` plus `args`, not run.
    fn rd_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_elpips"));
        cmd.arg("rd").arg("--out").arg(self.dir.path().join("rd-out")).args(args).env_remove("ORT_DYLIB_PATH");
        cmd
    }

    /// Shard `index` of 2 of a two-row manifest's summary (one error row each, so no network
    /// is needed), edited by `edit` and then sealed unless `reseal` is false; as a file.
    fn summary(&self, index: u64, edit: impl FnOnce(&mut serde_json::Value), reseal: bool) -> PathBuf {
        let mut v = serde_json::json!({
            "counts": {"error": 1, "fail": 0, "pass": 0},
            "elpips_check": 2,
            "manifest": "m.csv",
            "manifest_rows": 2,
            "manifest_sha256": "ab".repeat(32),
            "results": [{"candidate": "b.png", "max_distance": 0.1, "message": "cannot read b.png", "name": "b", "reference": "a.png", "row": index, "seconds": 0.0, "status": "error"}],
            "seconds": 0.0,
            "settings": {"error_rate": 0.05, "lin_weights": null, "max_samples": 200, "metric": "elpips-vgg", "min_samples": 16, "sampler": "iid", "scale_levels": null, "seed": 0, "undecided": "estimate"},
            "shard": {"count": 2, "index": index},
        });
        common::seal_summary(&mut v);
        edit(&mut v);
        if reseal {
            common::seal_summary(&mut v);
        }
        let n = self.dir.path().read_dir().unwrap().count();
        self.file(&format!("summary{n}.json"), serde_json::to_string_pretty(&v).unwrap().as_bytes())
    }

    /// `elpips check --merge` of an edited shard 0 and a good shard 1.
    fn merge_edited(&self, edit: impl FnOnce(&mut serde_json::Value), reseal: bool) -> Outcome {
        let (a, b) = (self.summary(0, edit, reseal), self.summary(1, |_| {}, true));
        self.check_cli(&["--merge", a.to_str().unwrap(), b.to_str().unwrap()])
    }
}

/// Runs `statement` in Python with the binding (bindings/python/src) over the library this test
/// was built with, in the set-up's virtual environment (it has numpy); the outcome is the
/// exception's type (and, for an `ElpipsError`, its status) and message.
fn python(f: &Fixtures, statement: &str) -> Outcome {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join(".cache/venv/bin/python");
    let interpreter = if venv.is_file() { venv } else { PathBuf::from("python3") };
    let library = Path::new(env!("CARGO_BIN_EXE_elpips")).with_file_name("libelpips.so");
    let code = format!(
        "import elpips, sys\ntry:\n    {statement}\n    print('OK')\nexcept elpips.ElpipsError as e:\n    print('ElpipsError ' + e.status_name + '|' + str(e))\nexcept Exception as e:\n    print(type(e).__name__ + '|' + str(e))\n"
    );
    let out = Command::new(interpreter)
        .arg("-c")
        .arg(code)
        .env("PYTHONPATH", root.join("bindings/python/src"))
        .env("ELPIPS_LIBRARY", library)
        .env_remove("ORT_DYLIB_PATH")
        .current_dir(f.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match stdout.split_once('|') {
        Some((status, message)) => (status.to_owned(), message.to_owned()),
        None => (stdout, String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        // SAFETY: ours, freed once.
        unsafe { elpips_context_free(self.ctx) };
    }
}

fn options() -> ElpipsOptions {
    let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
    // SAFETY: writable.
    assert_eq!(unsafe { elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()) }, ELPIPS_OK);
    // SAFETY: initialised above.
    let mut o = unsafe { o.assume_init() };
    o.threads = 1;
    o
}

fn context_new(o: &ElpipsOptions) -> (ElpipsStatus, *mut ElpipsContext, String) {
    let mut ctx = ptr::null_mut();
    let mut msg = [0 as c_char; 1024];
    // SAFETY: valid options (strings NUL-terminated or NULL), out-pointer and buffer.
    let s = unsafe { elpips_context_new_with_error(o, &mut ctx, msg.as_mut_ptr(), msg.len()) };
    // SAFETY: NUL-terminated by the call.
    (s, ctx, unsafe { CStr::from_ptr(msg.as_ptr()) }.to_string_lossy().into_owned())
}

/// Creating a context with `o` must fail; its status and message.
fn context_fails(o: &ElpipsOptions) -> Outcome {
    let (s, ctx, msg) = context_new(o);
    // SAFETY: ours (NULL on failure, which is a no-op).
    unsafe { elpips_context_free(ctx) };
    (status_name(s), msg)
}

/// The set-up's runtime, named through a link in a folder without the OpenVINO plugin beside it.
static NO_PLUGIN_RUNTIME: std::sync::LazyLock<CString> = std::sync::LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("elpips-no-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("libonnxruntime.so.1");
    let (real, _) = elpips::network::runtime::locate_library(None);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(real.canonicalize().unwrap(), &link).unwrap();
    CString::new(link.to_str().unwrap()).unwrap()
});

fn with_options(f: impl FnOnce(&mut ElpipsOptions)) -> Outcome {
    let mut o = options();
    o.metric = ELPIPS_METRIC_LPIPS_ALEX;
    f(&mut o);
    context_fails(&o)
}

/// A baseline JPEG's SOF0 with its size replaced by `w x h`.
fn jpeg_with_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out.windows(2).position(|m| m == [0xff, 0xc0]).expect("baseline JPEG");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}

/// An OpenEXR file of `n x n` mid-grey pixels with channel 1 of pixel (1, 1) NaN.
fn exr_with_nan(n: u32) -> Vec<u8> {
    let img = image::Rgba32FImage::from_fn(n, n, |x, y| image::Rgba([0.2, if (x, y) == (1, 1) { f32::NAN } else { 0.2 }, 0.2, 1.0]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba32F(img).write_to(&mut out, image::ImageFormat::OpenExr).unwrap();
    out.into_inner()
}

/// A Radiance HDR whose resolution line claims `w x h` (the pixel data is left as it was).
fn hdr_with_size(hdr: &[u8], w: u32, h: u32) -> Vec<u8> {
    let at = hdr.windows(4).position(|m| m == b"\n-Y ").expect("a Radiance resolution line") + 1;
    let end = at + hdr[at..].iter().position(|&b| b == b'\n').unwrap();
    let mut out = hdr[..at].to_vec();
    out.extend_from_slice(format!("-Y {h} +X {w}").as_bytes());
    out.extend_from_slice(&hdr[end..]);
    out
}

/// A shared library that says it is ONNX Runtime 1.16.3 (older than the 1.31 ort needs).
fn fake_old_runtime(dir: &Path) -> PathBuf {
    let src = dir.join("old_ort.c");
    std::fs::write(
        &src,
        "typedef struct { const void *(*get_api)(unsigned); const char *(*version)(void); } Base;\n\
         static const void *get_api(unsigned v) { (void)v; return 0; }\n\
         static const char *version(void) { return \"1.16.3\"; }\n\
         static const Base base = { get_api, version };\n\
         const Base *OrtGetApiBase(void) { return &base; }\n",
    )
    .unwrap();
    let lib = dir.join("libonnxruntime.so.1.16.3");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let ok = Command::new(cc).args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(&src).status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "a C compiler is needed to build the fake old runtime");
    lib
}

/// What a command got: its exit status and its stderr (the outcome of a CLI row).
fn outcome(out: &std::process::Output) -> Outcome {
    let code = out.status.code().map_or("killed".into(), |c| format!("exit {c}"));
    (code, String::from_utf8_lossy(&out.stderr).trim_end().to_owned())
}

/// `elpips ARGS` with nothing in its environment that would pick another runtime.
fn elpips(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_elpips"));
    cmd.args(args).env_remove("ORT_DYLIB_PATH").env_remove("GITHUB_STEP_SUMMARY");
    cmd
}

/// Runs `cmd`, killing it after `seconds` (a hang is an outcome too: "killed").
fn run_for(cmd: &mut Command, seconds: u64) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() >= seconds {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// What kind of file `path` is now (without following a link), for rows that check that an
/// output left the node it named as it was.
fn kind(path: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(path).unwrap().file_type();
    match () {
        _ if t.is_symlink() => "a symbolic link",
        _ if t.is_char_device() => "a character device",
        _ if t.is_fifo() => "a named pipe",
        _ if t.is_file() => "a regular file",
        _ => "something else",
    }
}

/// A character device to write to: as root a private node with /dev/null's numbers in the test
/// folder (so a regression replaces that node, not the system's); otherwise /dev/null itself,
/// which a process that is not root cannot replace.
fn null_device(dir: &Path) -> PathBuf {
    let path = dir.join("null-device");
    if !path.exists() {
        let c = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) } != 0 {
            return PathBuf::from("/dev/null");
        }
    }
    path
}

/// The sha256 of an rd.json's value without its digest (the fields serialise in order).
fn seal_rd(v: &mut serde_json::Value) {
    v.as_object_mut().unwrap().remove("digest");
    v["digest"] = elpips::integrity::sha256_hex(&serde_json::to_vec(v).unwrap()).into();
}

/// A PNG declaring `w x h` pixels of RGB8 with no pixel data to speak of.
fn huge_png(f: &Fixtures, w: u32, h: u32) -> PathBuf {
    f.file(&format!("huge-{w}x{h}.png"), &common::png_header(w, h))
}

// ---------------------------------------------------------------------------------------------
// The cases, by the ids of the document's rows

fn run_case(id: &str, f: &Fixtures) -> Option<Outcome> {
    let load = LoadOptions::default();
    let decode = |bytes: &[u8]| lib(Image::decode(bytes, &load));
    let good = f.image();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    Some(match id {
        // Image files
        "png-empty" => decode(b""),
        "png-garbage" => decode(b"this is not an image\n"),
        "png-truncated" => decode(&f.png[..f.png.len() / 2]),
        "png-bad-crc" => {
            let mut b = f.png.clone();
            b[29] ^= 0xff; // the IHDR CRC
            decode(&b)
        }
        "png-corrupt-data" => {
            let mut b = f.png.clone();
            let idat = b.windows(4).position(|w| w == b"IDAT").unwrap();
            b[idat + 8..idat + 40].iter_mut().for_each(|v| *v ^= 0x5a);
            decode(&b)
        }
        "png-zero-size" => decode(&common::png_header(0, 10)),
        "png-huge-header" => decode(&common::png_header(100_000, 100_000)),
        "png-over-budget" => lib(Image::decode(&f.png, &LoadOptions { max_pixels: 1000, ..Default::default() })),
        "jpeg-truncated" => decode(&f.jpeg[..f.jpeg.len() / 3]),
        "jpeg-header-only" => decode(&f.jpeg[..20]),
        "jpeg-huge-header" => decode(&jpeg_with_size(&f.jpeg, 65_000, 65_000)),
        "jpeg-zero-size" => decode(&jpeg_with_size(&f.jpeg, 0, 40)),
        "exr-truncated" => decode(&f.exr[..f.exr.len() / 2]),
        "exr-header-only" => decode(&f.exr[..40]),
        "exr-nan" => decode(&exr_with_nan(N)),
        "exr-over-budget" => lib(Image::decode(&f.exr, &LoadOptions { max_pixels: 1000, ..Default::default() })),
        "hdr-truncated" => decode(&f.hdr[..f.hdr.len() / 2]),
        "hdr-huge-header" => decode(&hdr_with_size(&f.hdr, 100_000, 100_000)),
        "hdr-zero-size" => decode(&hdr_with_size(&f.hdr, 0, 40)),
        "gif-unsupported" => decode(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"),
        "file-missing" => lib(Image::open(f.dir.path().join("missing.png"), &load)),
        "file-directory" => lib(Image::open(f.dir.path(), &load)),
        "file-fifo" => lib(Image::open(f.fifo(), &load)),
        "file-device" => lib(Image::open("/dev/zero", &load)),
        "file-socket" => {
            let path = f.dir.path().join("image.sock");
            let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            lib(Image::open(&path, &load))
        }
        "file-too-large" => {
            // Sparse: 65 MiB that take no disk, one byte over the cap of a 4096-pixel budget.
            let path = f.dir.path().join("huge.png");
            std::fs::File::create(&path).unwrap().set_len((64 << 20) + 1).unwrap();
            lib(Image::open(&path, &LoadOptions { max_pixels: 4096, ..Default::default() }))
        }
        "cli-file-missing" => f.cli_files("/nonexistent/x.png", &["--metric", "lpips-alex"]),
        "cli-file-fifo" => f.cli_files(f.fifo().to_str().unwrap(), &["--metric", "lpips-alex"]),
        "capi-file-device" => f.compare_files("/dev/zero"),
        // Pixel buffers (C ABI)
        "image-null" => f.compare(&good, ptr::null()),
        "image-data-null" => f.compare_one(ElpipsImage { data: ptr::null(), ..good }),
        "image-zero-width" => f.compare_one(ElpipsImage { width: 0, ..good }),
        "image-zero-height" => f.compare_one(ElpipsImage { height: 0, ..good }),
        "image-negative-width" => f.compare_one(ElpipsImage { width: -1i32 as u32, ..good }),
        "image-over-budget" => f.compare_one(ElpipsImage { width: 65, height: 65, ..good }),
        "image-stride-short" => f.compare_one(ElpipsImage { stride_bytes: 3 * N as usize - 1, ..good }),
        "image-stride-overflow" => f.compare_one(ElpipsImage { stride_bytes: usize::MAX, ..good }),
        "image-format-unknown" => f.compare_one(ElpipsImage { format: 99, ..good }),
        "image-transfer-unknown" => f.compare_one(ElpipsImage { transfer: 7, ..good }),
        "image-nan" | "image-inf" => {
            let mut px = vec![0.5f32; (3 * N * N) as usize];
            px[3 * 41 + 1] = if id == "image-nan" { f32::NAN } else { f32::INFINITY };
            f.compare_one(ElpipsImage { data: px.as_ptr().cast(), format: ELPIPS_PIXEL_FORMAT_RGB_F32, ..good })
        }
        "image-size-mismatch" => {
            let other = vec![0u8; (3 * (N - 1) * N) as usize];
            f.compare_one(ElpipsImage { data: other.as_ptr().cast(), width: N - 1, ..good })
        }
        "image-too-small" => {
            let small = ElpipsImage { width: 30, height: 30, ..good };
            f.compare(&small, &small)
        }
        "planar-nan" => lib(Image::from_planar(1, 1, vec![0.0, f32::NAN, 0.0])),
        "planar-length" => lib(Image::from_planar(2, 2, vec![0.0; 11])),
        // Options (C ABI and command line)
        "options-metric-unknown" => with_options(|o| o.metric = 9),
        "options-device-unknown" => with_options(|o| o.device = 9),
        "options-device-cuda" => with_options(|o| o.device = ELPIPS_DEVICE_CUDA),
        "options-backend-unknown" => with_options(|o| o.backend = 9),
        "options-backend-openvino-absent" => with_options(|o| {
            o.backend = ELPIPS_BACKEND_OPENVINO;
            o.runtime_library = NO_PLUGIN_RUNTIME.as_ptr();
        }),
        "options-sampler-unknown" => with_options(|o| o.sampler = 7),
        "options-sampling-unknown" => with_options(|o| o.sampling = 7),
        "options-samples-zero" => with_options(|o| {
            o.sampling = ELPIPS_SAMPLING_FIXED;
            o.samples = 0
        }),
        "options-rel-error-nan" => with_options(|o| o.rel_error = f64::NAN),
        "options-abs-error-negative" => with_options(|o| o.abs_error = -1.0),
        "options-min-over-max" => with_options(|o| {
            o.min_samples = 50;
            o.max_samples = 10
        }),
        "options-threads-huge" => with_options(|o| o.threads = u32::MAX),
        "options-scale-levels-lpips" => with_options(|o| o.scale_levels = 3),
        "options-struct-size-small" => with_options(|o| o.struct_size = 8),
        "options-struct-size-newer" => {
            let mut bigger = [0u8; std::mem::size_of::<ElpipsOptions>() + 16];
            let mut o = options();
            o.struct_size = bigger.len();
            // SAFETY: the buffer is larger than the struct.
            unsafe { ptr::write_unaligned(bigger.as_mut_ptr().cast(), o) };
            *bigger.last_mut().unwrap() = 1;
            let mut ctx = ptr::null_mut();
            let mut msg = [0 as c_char; 512];
            // SAFETY: `struct_size` readable bytes; a message buffer of its size.
            let st = unsafe { elpips_context_new_with_error(bigger.as_ptr().cast(), &mut ctx, msg.as_mut_ptr(), msg.len()) };
            // SAFETY: NUL-terminated by the call.
            (status_name(st), unsafe { CStr::from_ptr(msg.as_ptr()) }.to_string_lossy().into_owned())
        }
        "options-out-null" => {
            let mut msg = [0 as c_char; 512];
            // SAFETY: NULL `out` is what is tested; a message buffer of its size.
            let st = unsafe { elpips_context_new_with_error(ptr::null(), ptr::null_mut(), msg.as_mut_ptr(), msg.len()) };
            // SAFETY: NUL-terminated by the call.
            (status_name(st), unsafe { CStr::from_ptr(msg.as_ptr()) }.to_string_lossy().into_owned())
        }
        "cli-samples-zero" => f.cli(&["--samples", "0"]),
        "cli-rel-error-negative" => f.cli(&["--rel-error", "-1"]),
        "cli-rel-error-nan" => f.cli(&["--rel-error", "NaN"]),
        "cli-metric-unknown" => f.cli(&["--metric", "ssim"]),
        "cli-max-pixels-text" => f.cli(&["--max-pixels", "lots"]),
        "cli-threads-negative" => f.cli(&["--threads", "-2"]),
        "rd-anchor-not-a-codec" => f.rd(&["--codec", "jpeg", "--settings", "20,50", "--anchor", "webp"]),
        "rd-codec-twice" => f.rd(&["--codec", "jpeg,jpeg", "--settings", "20,50"]),
        "rd-one-setting" => f.rd(&["--codec", "jpeg", "--settings", "50"]),
        "rd-setting-out-of-range" => f.rd(&["--codec", "jpeg", "--settings", "0,50"]),
        "rd-shard-over-images" => f.rd(&["--codec", "jpeg", "--settings", "20,50", "--shard", "0/2"]),
        "rd-corpus-empty" => {
            let empty = f.dir.path().join("empty-corpus");
            std::fs::create_dir_all(&empty).unwrap();
            f.rd(&["--codec", "jpeg", "--settings", "20,50", "--corpus", empty.to_str().unwrap()])
        }
        "rd-merge-with-settings" => f.rd(&["--merge", &f.rd_part(), "--codec", "jpeg"]),
        "rd-merge-not-rd-json" => {
            let text = f.file("notes.json", b"{\"hello\": 1}");
            f.rd(&["--merge", text.to_str().unwrap()])
        }
        "rd-merge-digest" => f.rd(&["--merge", &f.rd_part()]),
        // Weights and models
        "model-dir-missing" => f.alex_with_model_dir(Path::new("/nonexistent/models")),
        "model-corrupt" => {
            let dir = f.model_dir("corrupt");
            let p = dir.join("lpips-alex.features.onnx");
            let mut b = std::fs::read(&p).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            std::fs::write(&p, b).unwrap();
            f.alex_with_model_dir(&dir)
        }
        "model-truncated" => {
            let dir = f.model_dir("truncated");
            let p = dir.join("lpips-alex.features.onnx");
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() / 2]).unwrap();
            f.alex_with_model_dir(&dir)
        }
        "model-wrong-pin" => {
            let dir = f.model_dir("wrong-pin");
            let m = dir.join("manifest.json");
            let text = std::fs::read_to_string(&m).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
            json["models"]["files"]["lpips-alex.features.onnx"]["sha256"] = "0".repeat(64).into();
            std::fs::write(&m, json.to_string()).unwrap();
            f.alex_with_model_dir(&dir)
        }
        "model-unpinned" => {
            let dir = f.model_dir("unpinned");
            let m = dir.join("manifest.json");
            let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
            json["models"]["files"].as_object_mut().unwrap().remove("lpips-alex.features.onnx");
            std::fs::write(&m, json.to_string()).unwrap();
            f.alex_with_model_dir(&dir)
        }
        "model-no-manifest" => {
            let dir = f.model_dir("no-manifest");
            std::fs::remove_file(dir.join("manifest.json")).unwrap();
            f.alex_with_model_dir(&dir)
        }
        "model-manifest-corrupt" => {
            let dir = f.model_dir("bad-manifest");
            std::fs::write(dir.join("manifest.json"), "{ not json").unwrap();
            f.alex_with_model_dir(&dir)
        }
        "model-is-directory" => {
            let dir = f.dir.path().join("dir-model");
            std::fs::create_dir_all(dir.join("lpips-alex.features.onnx")).unwrap();
            f.alex_with_model_dir(&dir)
        }
        "model-is-fifo" => {
            let dir = f.dir.path().join("fifo-model");
            std::fs::create_dir_all(&dir).unwrap();
            assert!(Command::new("mkfifo").arg(dir.join("lpips-alex.features.onnx")).status().unwrap().success());
            f.alex_with_model_dir(&dir)
        }
        "model-dir-url" => f.alex_with_model_dir(Path::new("https://example.com/models")),
        "model-not-onnx" => {
            // Pinned, so it passes the checksum, but it is not an ONNX model.
            let dir = f.dir.path().join("not-onnx");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("lpips-alex.features.onnx"), b"not a model").unwrap();
            let pin = elpips::integrity::sha256_hex(b"not a model");
            let manifest = serde_json::json!({"models": {"files": {"lpips-alex.features.onnx": {"sha256": pin}}}});
            std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
            f.alex_with_model_dir(&dir)
        }
        "c-model-dir-missing" => {
            let dir = CString::new("/nonexistent/models").unwrap();
            with_options(|o| o.model_dir = dir.as_ptr())
        }
        "lin-weights-missing" => f.cli(&["--lin-weights", "/nonexistent/w.safetensors"]),
        "lin-weights-garbage" => {
            let p = f.file("weights.safetensors", b"nope");
            f.cli(&["--lin-weights", &s(&p)])
        }
        "lin-weights-wrong-network" => f.cli(&["--lin-weights", &s(&common::linear_weights("vgg_maxpool.safetensors"))]),
        "lin-weights-npy" | "lin-weights-pth-legacy" | "lin-weights-pth-zip" => {
            let marker = f.dir.path().join("MARKER");
            let name = match id { "lin-weights-npy" => "object.npy", "lin-weights-pth-legacy" => "legacy.pth", _ => "zip.pth" };
            let (_, bytes, _) = weight_files::hostile_files(&marker).into_iter().find(|h| h.0 == name).unwrap();
            let out = f.cli(&["--lin-weights", &s(&f.file(name, &bytes))]);
            assert!(!marker.exists(), "{name}: its payload ran");
            out
        }
        "lin-weights-malformed" => {
            let st = weight_files::safetensors(&[("lin0", "F32", &[2], weight_files::f32s(&[1.0, 2.0]))]);
            f.cli(&["--lin-weights", &s(&f.file("cut.safetensors", &st[..st.len() - 1]))])
        }
        "lin-weights-no-taps" => {
            let st = weight_files::safetensors(&[("net.0.weight", "F32", &[1], weight_files::f32s(&[1.0]))]);
            f.cli(&["--lin-weights", &s(&f.file("other.safetensors", &st))])
        }
        "lin-weights-float16" => {
            let st = weight_files::safetensors(&[("lin0", "F16", &[2], vec![0; 4])]);
            f.cli(&["--lin-weights", &s(&f.file("f16.safetensors", &st))])
        }
        "lin-weights-negative" => {
            let st = weight_files::safetensors(&[("lin0", "F32", &[2], weight_files::f32s(&[1.0, -0.5]))]);
            f.cli(&["--lin-weights", &s(&f.file("negative.safetensors", &st))])
        }
        "lin-weights-directory" => f.cli(&["--lin-weights", &s(f.dir.path())]),
        // ONNX Runtime (each in a fresh process: the runtime is loaded once per process)
        "runtime-missing" => f.cli(&["--runtime", "/nonexistent/libonnxruntime.so"]),
        "runtime-not-a-library" => {
            let p = f.file("libonnxruntime.so", b"garbage");
            f.cli(&["--runtime", &s(&p)])
        }
        "runtime-directory" => f.cli(&["--runtime", &s(f.dir.path())]),
        "runtime-too-old" => {
            let lib = fake_old_runtime(f.dir.path());
            f.cli(&["--metric", "lpips-alex", "--runtime", &s(&lib)])
        }
        "runtime-wrong-pin" => {
            let dir = f.dir.path().join("ort");
            std::fs::create_dir_all(&dir).unwrap();
            let (lib, _) = elpips::network::runtime::locate_library(None);
            let real = lib.canonicalize().unwrap();
            let name = real.file_name().unwrap().to_str().unwrap().to_owned();
            std::fs::copy(&real, dir.join(&name)).unwrap();
            std::fs::write(dir.join("onnxruntime.sha256"), format!("{}  {name}\n", "0".repeat(64))).unwrap();
            f.cli(&["--metric", "lpips-alex", "--runtime", &s(&dir.join(&name))])
        }
        "runtime-url" => f.cli(&["--runtime", "http://example.com/libonnxruntime.so"]),
        // Outputs
        "output-parent-missing" => lib(elpips::io::write_atomic(f.dir.path().join("no/such/dir/out.json"), b"{}")),
        "output-parent-is-file" => {
            let p = f.file("plain", b"x");
            lib(elpips::io::write_atomic(p.join("out.json"), b"{}"))
        }
        "output-is-directory" => lib(elpips::io::write_atomic(f.dir.path(), b"{}")),
        "output-device" => {
            let dev = null_device(f.dir.path());
            let (status, _) = lib(elpips::io::write_atomic(&dev, b"{}"));
            (status, format!("{} afterwards", kind(&dev)))
        }
        "output-link-to-device" => {
            let dev = null_device(f.dir.path());
            let link = f.dir.path().join("stdout-like");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&dev, &link).unwrap();
            let (status, _) = lib(elpips::io::write_atomic(&link, b"{}"));
            (status, format!("{} to {} afterwards", kind(&link), kind(&dev)))
        }
        "output-link-to-file" => {
            let target = f.file("target.json", b"old");
            let link = f.dir.path().join("link.json");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let (status, _) = lib(elpips::io::write_atomic(&link, b"new"));
            (status, format!("{} to a file holding {:?}", kind(&link), String::from_utf8_lossy(&std::fs::read(&target).unwrap())))
        }
        "output-link-dangling" => {
            let link = f.dir.path().join("dangling.json");
            std::os::unix::fs::symlink("/nonexistent/elpips/out.json", &link).unwrap();
            lib(elpips::io::write_atomic(&link, b"{}"))
        }
        "output-fifo-no-reader" => {
            let p = f.dir.path().join("out.fifo");
            assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
            lib(elpips::io::write_atomic(&p, b"{}"))
        }
        "output-socket" => {
            let p = f.dir.path().join("out.sock");
            let _listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
            lib(elpips::io::write_atomic(&p, b"{}"))
        }
        "output-keeps-mode" => {
            use std::os::unix::fs::PermissionsExt;
            let p = f.file("private.json", b"old");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let (status, _) = lib(elpips::io::write_atomic(&p, b"new"));
            (status, format!("mode {:o} afterwards", std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777))
        }
        "output-long-name" => {
            let p = f.dir.path().join(format!("{}.json", "n".repeat(245)));
            let (status, message) = lib(elpips::io::write_atomic(&p, b"{}"));
            (status, if p.is_file() { "written".into() } else { message })
        }
        "cli-junit-device" => {
            let dev = null_device(f.dir.path());
            let png = f.file("cli.png", &f.png);
            let out = elpips(&["check", &s(&png), &s(&png), "--metric", "lpips-alex", "--max-distance", "0.1", "--junit", &s(&dev)]).output().unwrap();
            (outcome(&out).0, format!("{} afterwards", kind(&dev)))
        }
        "cli-summary-stdout" => {
            let png = f.file("cli.png", &f.png);
            let out = elpips(&["check", &s(&png), &s(&png), "--metric", "lpips-alex", "--max-distance", "0.1", "--summary", "/dev/stdout"]).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            (outcome(&out).0, if stdout.contains("\"elpips_check\": 2") { "the summary on stdout".into() } else { outcome(&out).1 })
        }
        "cli-step-summary-fifo" => {
            let p = f.dir.path().join("step-summary.fifo");
            assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
            let png = f.file("cli.png", &f.png);
            let mut cmd = elpips(&["check", &s(&png), &s(&png), "--metric", "lpips-alex", "--max-distance", "0.1"]);
            outcome(&run_for(cmd.env("GITHUB_STEP_SUMMARY", &p), 120))
        }
        "cli-junit-unwritable" => {
            let png = f.file("cli.png", &f.png);
            let summary = f.dir.path().join("before-junit.json");
            let out = elpips(&["check", &s(&png), &s(&png), "--metric", "lpips-alex", "--max-distance", "0.1", "--summary", &s(&summary), "--junit", "/nonexistent/elpips/j.xml"]).output().unwrap();
            assert!(!summary.exists(), "refused before the run: no summary written");
            outcome(&out)
        }
        "cli-tune-output-is-input" => {
            let src = f.file("source.png", &f.png);
            let out = elpips(&["tune", &s(&src), "-o", &s(&src), "--codec", "jpeg", "--max-distance", "0.1", "--metric", "lpips-alex"]).output().unwrap();
            assert_eq!(std::fs::read(&src).unwrap(), f.png, "the source is untouched");
            outcome(&out)
        }
        "cli-tune-decoded-directory" => {
            let png = f.file("cli.png", &f.png);
            let tuned = f.dir.path().join("never.jpg");
            let out = elpips(&["tune", &s(&png), "-o", &s(&tuned), "--decoded", &s(f.dir.path()), "--codec", "jpeg", "--max-distance", "0.3", "--metric", "lpips-alex"]).output().unwrap();
            assert!(!tuned.exists(), "refused before any probe: -o not written");
            outcome(&out)
        }
        // Standard output
        "cli-stdout-full" => {
            let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
            let png = f.file("cli.png", &f.png);
            outcome(&elpips(&["compare", &s(&png), &s(&png), "--metric", "lpips-alex"]).stdout(full).output().unwrap())
        }
        "cli-stdout-closed" => {
            let png = f.file("cli.png", &f.png);
            let mut child = elpips(&["compare", &s(&png), &s(&png), "--metric", "lpips-alex"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            drop(child.stdout.take());
            outcome(&child.wait_with_output().unwrap())
        }
        "cli-tune-stdout-full" => {
            let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
            let png = f.file("cli.png", &f.png);
            let tuned = f.dir.path().join("unprinted.jpg");
            let out = elpips(&["tune", &s(&png), "-o", &s(&tuned), "--codec", "jpeg", "--max-distance", "0.3", "--metric", "lpips-alex"]).stdout(full).output().unwrap();
            assert!(!tuned.exists(), "the result could not be printed, so -o was not written");
            outcome(&out)
        }
        // Integers
        "cli-scale-levels-wrap" => f.cli(&["--scale-levels", "613566758", "--samples", "2"]),
        "cli-samples-huge" => f.cli(&["--samples", "4294967295"]),
        "options-samples-huge" => with_options(|o| {
            o.metric = ELPIPS_METRIC_ELPIPS_VGG;
            o.sampling = ELPIPS_SAMPLING_FIXED;
            o.samples = u32::MAX
        }),
        "options-max-samples-huge" => with_options(|o| {
            o.metric = ELPIPS_METRIC_ELPIPS_VGG;
            o.max_samples = u32::MAX
        }),
        "gate-max-samples-huge" => {
            let gate = ElpipsGate { threshold: 0.1, error_rate: 0.0, max_samples: u32::MAX, min_samples: 0 };
            let mut d = ElpipsDecision::default();
            // SAFETY: a live context, valid images, gate and out-parameter.
            let st = unsafe { elpips_decide(f.ctx, &good, &good, &gate, &mut d) };
            (status_name(st), f.last_error())
        }
        "rd-bootstrap-huge" => f.rd(&["--codec", "jpeg,webp", "--settings", "20,50", "--bootstrap", "4294967295"]),
        "rd-merge-bootstrap-huge" => {
            let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f.rd_part()).unwrap()).unwrap();
            v["settings"]["bootstrap"] = u32::MAX.into();
            seal_rd(&mut v);
            let p = f.file("huge-bootstrap.json", v.to_string().as_bytes());
            f.rd(&["--merge", &s(&p)])
        }
        // Allocation
        "png-huge-raised-budget" => {
            // 3 TB of pixels: more than any machine allocates, whatever its overcommit policy.
            let png = huge_png(f, 1_000_000, 1_000_000);
            lib(Image::open(&png, &LoadOptions { max_pixels: u64::MAX, ..Default::default() }))
        }
        "cli-png-huge-raised-budget" => {
            // The case: 30 GB in a process held to 8 GB of address space.
            let png = huge_png(f, 100_000, 100_000);
            let mut cmd = elpips(&["compare", &s(&png), &s(&png), "--metric", "lpips-alex", "--max-pixels", "10000000000"]);
            use std::os::unix::process::CommandExt;
            // SAFETY: only async-signal-safe setrlimit between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let limit = libc::rlimit { rlim_cur: 8 << 30, rlim_max: 8 << 30 };
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
                })
            };
            outcome(&cmd.output().unwrap())
        }
        "capi-png-huge-raised-budget" => {
            let mut o = options();
            o.metric = ELPIPS_METRIC_LPIPS_ALEX;
            o.max_pixels = u64::MAX;
            let (st, ctx, msg) = context_new(&o);
            assert_eq!(st, ELPIPS_OK, "{msg}");
            let png = CString::new(s(&huge_png(f, 1_000_000, 1_000_000))).unwrap();
            let mut r = ElpipsResult::default();
            // SAFETY: a live context, NUL-terminated paths, a writable result.
            let st = unsafe { elpips_compare_files(ctx, png.as_ptr(), png.as_ptr(), &mut r) };
            // SAFETY: the context is live; its message is NUL-terminated.
            let message = unsafe { CStr::from_ptr(elpips_last_error(ctx)) }.to_string_lossy().into_owned();
            // SAFETY: ours, freed once.
            unsafe { elpips_context_free(ctx) };
            (status_name(st), message)
        }
        // Strict JPEG
        "jpeg-cut-half" => decode(&f.jpeg[..f.jpeg.len() / 2]),
        "jpeg-cut-90" => decode(&f.jpeg[..f.jpeg.len() * 9 / 10]),
        // Reports and CI outputs: names are escaped for each format
        "cli-name-newline" => {
            let png = f.file("cli.png", &f.png);
            let m = f.file("newline.jsonl", format!("{}\n", serde_json::json!({"reference": s(&png), "candidate": s(&png), "name": "x\n::error file=y::pwned"})).as_bytes());
            let out = elpips(&["check", "--manifest", &s(&m), "--metric", "lpips-alex", "--max-distance", "0.1", "--annotations", "github"]).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(!stdout.lines().any(|l| l.starts_with("::")), "a name started a workflow command: {stdout}");
            (outcome(&out).0, stdout.lines().find(|l| l.starts_with("PASS")).unwrap_or("").to_owned())
        }
        "cli-junit-noncharacter" => {
            let png = f.file("cli.png", &f.png);
            let m = f.file("nonchar.jsonl", format!("{}\n", serde_json::json!({"reference": s(&png), "candidate": s(&png), "name": "x\u{ffff}\u{fffe}<y>"})).as_bytes());
            let junit = f.dir.path().join("nonchar.xml");
            let out = elpips(&["check", "--manifest", &s(&m), "--metric", "lpips-alex", "--max-distance", "0.1", "--junit", &s(&junit)]).output().unwrap();
            let xml = std::fs::read_to_string(&junit).unwrap_or_default();
            assert!(!xml.contains(['\u{fffe}', '\u{ffff}']), "XML 1.0 forbids U+FFFE and U+FFFF");
            (outcome(&out).0, xml.lines().find(|l| l.contains("<testcase")).unwrap_or("").trim().to_owned())
        }
        "cli-step-summary-html" => {
            let png = f.file("cli.png", &f.png);
            let m = f.file("html.jsonl", format!("{}\n", serde_json::json!({"reference": s(&png), "candidate": s(&png), "name": "<img src=x onerror=alert(1)>|*"})).as_bytes());
            let step = f.dir.path().join("step-summary.md");
            let out = elpips(&["check", "--manifest", &s(&m), "--metric", "lpips-alex", "--max-distance", "0.1"]).env("GITHUB_STEP_SUMMARY", &step).output().unwrap();
            let md = std::fs::read_to_string(&step).unwrap_or_default();
            assert!(!md.contains("<img"), "raw HTML from a name: {md}");
            (outcome(&out).0, md.lines().find(|l| l.contains("pass |")).unwrap_or("").to_owned())
        }
        "cli-long-name-report" => {
            let png = f.file("cli.png", &f.png);
            let name = "n".repeat(250);
            let m = f.file("long.jsonl", format!("{}\n", serde_json::json!({"reference": s(&png), "candidate": s(&png), "name": name})).as_bytes());
            let report = f.dir.path().join("long-report");
            let out = elpips(&["check", "--manifest", &s(&m), "--metric", "lpips-alex", "--max-distance", "0.1", "--report", &s(&report)]).output().unwrap();
            let pngs = std::fs::read_dir(&report).map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png")).count());
            (outcome(&out).0, format!("{pngs} images in the report; {}", outcome(&out).1))
        }
        "cli-long-output-name" => {
            let png = f.file("cli.png", &f.png);
            let summary = f.dir.path().join(format!("{}.json", "s".repeat(245)));
            let out = elpips(&["check", &s(&png), &s(&png), "--metric", "lpips-alex", "--max-distance", "0.1", "--summary", &s(&summary)]).output().unwrap();
            (outcome(&out).0, if summary.is_file() { "written".into() } else { outcome(&out).1 })
        }
        "check-merge-same-summary-thrice" => {
            let png = f.file("cli.png", &f.png);
            let one = f.dir.path().join("one.json");
            let made = elpips(&["check", &s(&png), &s(&png), "--metric", "lpips-alex", "--max-distance", "0.1", "--summary", &s(&one)]).output().unwrap();
            assert!(made.status.success(), "{}", outcome(&made).1);
            f.check_cli(&["--merge", &s(&one), &s(&one), &s(&one)])
        }
        // The Python binding (through ctypes: every value is checked before a C field holds it)
        "py-samples-wrap" => python(f, "elpips.Context('lpips-alex', samples=2**32 + 3)"),
        "py-samples-negative" => python(f, "elpips.Context('elpips-vgg', samples=-1)"),
        "py-max-pixels-negative" => python(f, "elpips.Context('lpips-alex', max_pixels=-1)"),
        "py-path-nul" => python(f, &format!("elpips.Context('lpips-alex', threads=1).compare_files({:?} + '\\0.png', {:?})", s(&f.file("py.png", &f.png)), s(&f.file("py.png", &f.png)))),
        "py-png-huge-raised-budget" => {
            let png = huge_png(f, 1_000_000, 1_000_000);
            python(f, &format!("elpips.Context('lpips-alex', threads=1, max_pixels=2**64 - 1).compare_files({0:?}, {0:?})", s(&png)))
        }
        // elpips check: manifests and summaries
        "check-summary-count-huge" => f.merge_edited(|v| v["shard"]["count"] = 1_000_000_000_000_000_000u64.into(), true),
        "check-summary-index-past-count" => f.merge_edited(|v| v["shard"]["index"] = 5.into(), true),
        "check-summary-rows-huge" => f.merge_edited(|v| v["manifest_rows"] = serde_json::json!(1e30), true),
        "check-summary-wrong-type" => f.merge_edited(|v| v["manifest_rows"] = "2".into(), true),
        "check-summary-missing-field" => f.merge_edited(|v| drop(v["results"][0].as_object_mut().unwrap().remove("status")), true),
        "check-summary-row-dropped" => f.merge_edited(|v| v["results"] = serde_json::json!([]), true),
        "check-summary-status-edited" => f.merge_edited(|v| v["results"][0]["status"] = "pass".into(), true),
        "check-summary-edited" => f.merge_edited(|v| v["results"][0]["status"] = "pass".into(), false),
        "check-summary-truncated" => {
            let a = f.summary(0, |_| {}, true);
            let text = std::fs::read(&a).unwrap();
            std::fs::write(&a, &text[..text.len() / 2]).unwrap();
            f.check_cli(&["--merge", &s(&a), &s(&f.summary(1, |_| {}, true))])
        }
        "check-summary-shard-twice" => {
            let a = f.summary(0, |_| {}, true);
            f.check_cli(&["--merge", &s(&a), &s(&a), &s(&f.summary(1, |_| {}, true))])
        }
        "check-summary-directory" => f.check_cli(&["--merge", &s(f.dir.path())]),
        "check-summary-fifo" | "check-manifest-fifo" => {
            let p = f.dir.path().join(format!("{id}.json"));
            assert!(Command::new("mkfifo").arg(&p).status().unwrap().success());
            match id {
                "check-summary-fifo" => f.check_cli(&["--merge", &s(&p)]),
                _ => f.check_cli(&["--manifest", &s(&p), "--max-distance", "0.1"]),
            }
        }
        "check-summary-too-large" => {
            let p = f.dir.path().join("huge.json");
            std::fs::File::create(&p).unwrap().set_len(65 << 20).unwrap();
            f.check_cli(&["--merge", &s(&p)])
        }
        "check-manifest-directory" => f.check_cli(&["--manifest", &s(f.dir.path()), "--max-distance", "0.1"]),
        "check-manifest-threshold-negative" => {
            let p = f.file("neg.csv", b"reference,candidate,max_distance\na.png,b.png,0.1\na.png,c.png,-1\n");
            f.check_cli(&["--manifest", &s(&p)])
        }
        "check-manifest-wrong-type" => {
            let p = f.file("typed.jsonl", b"{\"reference\": \"a.png\", \"candidate\": 7}\n");
            f.check_cli(&["--manifest", &s(&p), "--max-distance", "0.1"])
        }
        "check-shard-auto-disagree" => {
            let p = f.file("two.csv", b"reference,candidate\na.png,b.png\na.png,c.png\n");
            with_engines(f.check_cmd(&["--manifest", &s(&p), "--shard", "auto", "--max-distance", "0.1"]), &[("TEST_SHARD_INDEX", "0"), ("TEST_TOTAL_SHARDS", "2"), ("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "2")])
        }
        "check-shard-auto-half" => {
            let p = f.file("two.csv", b"reference,candidate\na.png,b.png\na.png,c.png\n");
            with_engines(f.check_cmd(&["--manifest", &s(&p), "--shard", "auto", "--max-distance", "0.1"]), &[("BUILDKITE_PARALLEL_JOB", "1")])
        }
        "rd-shard-auto-sparse-slurm" => {
            let mut cmd = f.rd_cmd(&["--codec", "jpeg", "--settings", "20,50", "--shard", "auto"]);
            cmd.arg(f.file("cli.png", &f.png));
            with_engines(cmd, &[("SLURM_ARRAY_TASK_ID", "3"), ("SLURM_ARRAY_TASK_MIN", "1"), ("SLURM_ARRAY_TASK_MAX", "4"), ("SLURM_ARRAY_TASK_COUNT", "3")])
        }
        "rd-effort-out-of-range" => f.rd(&["--codec", "webp", "--settings", "20,50", "--webp-method", "7"]),
        "check-shard-over-rows" => {
            let p = f.file("two.csv", b"reference,candidate\na.png,b.png\na.png,c.png\n");
            f.check_cli(&["--manifest", &s(&p), "--shard", "0/3", "--max-distance", "0.1"])
        }
        // The render-suite gates' refusals (before any image is read)
        "check-preset-bad-toml" => {
            let p = f.file("bad.toml", b"[presets.a]\nmax_distance = \n");
            f.check_cli(&["a.png", "b.png", "--presets", &s(&p), "--preset", "a"])
        }
        "check-preset-unknown-field" => {
            let p = f.file("field.toml", b"[presets.a]\nthreshold = 0.1\n");
            f.check_cli(&["a.png", "b.png", "--presets", &s(&p), "--preset", "a"])
        }
        "check-preset-bad-value" => {
            let p = f.file("value.toml", b"[presets.a]\nmax_fail_percent = 150\npixel_threshold = 0.1\n");
            f.check_cli(&["a.png", "b.png", "--presets", &s(&p), "--preset", "a"])
        }
        "check-preset-unknown-name" => {
            let p = f.file("named.toml", b"[presets.glossy]\nmax_distance = 0.1\n");
            let m = f.file("named.csv", b"reference,candidate,preset\na.png,b.png,hair\n");
            f.check_cli(&["--manifest", &s(&m), "--presets", &s(&p)])
        }
        "check-preset-without-file" => {
            let m = f.file("nofile.csv", b"reference,candidate,preset\na.png,b.png,hair\n");
            f.check_cli(&["--manifest", &s(&m), "--max-distance", "0.1"])
        }
        "check-rule-percent-out-of-range" => f.check_cli(&["a.png", "b.png", "--max-distance", "0.1", "--pixel-threshold", "0.1", "--max-fail-percent", "150"]),
        "check-rule-threshold-negative" => f.check_cli(&["a.png", "b.png", "--max-distance", "0.1", "--hard-fail", "-1"]),
        "check-manifest-share-rule-half" => {
            let m = f.file("half.csv", b"reference,candidate,pixel_threshold\na.png,b.png,0.1\n");
            f.check_cli(&["--manifest", &s(&m), "--max-distance", "0.1"])
        }
        "check-map-samples-odd" => f.check_cli(&["a.png", "b.png", "--max-distance", "0.1", "--hard-fail", "0.1", "--map-samples", "5"]),
        "check-suite-error-rate-bad" => {
            let m = f.file("suite.csv", b"reference,candidate\na.png,b.png\n");
            f.check_cli(&["--manifest", &s(&m), "--max-distance", "0.1", "--suite-error-rate", "0.7"])
        }
        "check-update-shared-reference" => {
            let m = f.file("shared.csv", b"reference,candidate\na.png,b.png\na.png,c.png\n");
            f.check_cli(&["--manifest", &s(&m), "--max-distance", "0.1", "--update-references"])
        }
        "check-update-format-change" => {
            let m = f.file("format.csv", b"reference,candidate\na.png,b.exr\n");
            f.check_cli(&["--manifest", &s(&m), "--max-distance", "0.1", "--update-references"])
        }
        // E-LPIPS runs too short to estimate their error
        "elpips-one-sample" => {
            let img = Image::from_rgb8(N, N, &f.rgb8).unwrap();
            let mut m = common::metric_with(MetricOptions { sampling: Sampling::Fixed(1), ..Default::default() });
            lib(m.compare(&img, &img))
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// The document

struct Row {
    id: String,
    status: String,
    message: String,
}

/// Rows of the tables in docs/bad-inputs.md: `| `id` | input | through | `STATUS` | `message` |`.
fn document_rows() -> Vec<Row> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bad-inputs.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let code = |cell: &str| cell.trim().trim_matches('`').trim().replace("\\|", "|");
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 5, "a row needs 5 cells: {l}");
            Row { id: code(cells[0]), status: code(cells[3]), message: code(cells[4]) }
        })
        .collect()
}

#[test]
fn every_row_of_the_bad_input_table_holds() {
    let rows = document_rows();
    assert!(rows.len() >= 60, "only {} rows parsed", rows.len());
    let mut seen = BTreeMap::new();
    for r in &rows {
        assert!(seen.insert(r.id.clone(), ()).is_none(), "row `{}` appears twice", r.id);
    }
    let f = Fixtures::new();
    let print = std::env::var_os("BAD_INPUTS_PRINT").is_some();
    let mut failures = Vec::new();
    for r in &rows {
        let Some((status, message)) = run_case(&r.id, &f) else {
            failures.push(format!("`{}`: no case in tests/bad_inputs.rs", r.id));
            continue;
        };
        if print {
            println!("| `{}` | `{status}` | `{}` |", r.id, message.replace('|', "\\|"));
        }
        if status != r.status || !message.contains(&r.message) {
            failures.push(format!("`{}`: documented {} / `{}`, got {status} / `{message}`", r.id, r.status, r.message));
        }
        if message.contains('\n') {
            failures.push(format!("`{}`: messages are one line: {message}", r.id));
        }
    }
    assert!(failures.is_empty(), "{} rows disagree with docs/bad-inputs.md:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_case_has_a_row() {
    // The ids the cases answer to, read from this file, must all be documented.
    let source = include_str!("bad_inputs.rs");
    let documented: Vec<String> = document_rows().into_iter().map(|r| r.id).collect();
    let start = source.find("fn run_case").unwrap();
    let end = source.find("// The document").unwrap();
    let mut missing = Vec::new();
    for line in source[start..end].lines() {
        let line = line.trim_start();
        if !line.starts_with('"') {
            continue;
        }
        for id in line.split("=>").next().unwrap().split('|').map(|s| s.trim().trim_matches('"')) {
            if !id.is_empty() && !documented.iter().any(|d| d == id) {
                missing.push(id.to_owned());
            }
        }
    }
    assert!(missing.is_empty(), "cases without a row in docs/bad-inputs.md: {missing:?}");
}
