//! The fuzz targets' bodies, shared by `fuzz/fuzz_targets/*` (libFuzzer) and
//! `tests/fuzz_regressions.rs` (which replays the seeds and every input that once failed).
//! Each function panics when an invariant breaks; a panic, or a sanitizer report, is a finding.
#![allow(clippy::missing_safety_doc, dead_code)]

use std::ffi::{c_char, CStr};
use std::sync::OnceLock;

use elpips::capi::*;
use elpips::{Image, LinearWeights, LoadOptions};

/// Any bytes through the PNG/JPEG decoder: an error or a valid image, never a panic, never more
/// than the pixel budget.
pub fn decode_image(data: &[u8]) {
    let options = LoadOptions { max_pixels: 1 << 20, ..Default::default() };
    if let Ok(image) = Image::decode(data, &options) {
        assert!(image.width() as u64 * image.height() as u64 <= options.max_pixels);
        assert!(image.data().iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

/// Any bytes through the linear-weights reader (safetensors; pickle-based files are refused by
/// their magic bytes): an error or weights that keep the reader's promises, never a panic.
pub fn linear_weights(data: &[u8]) {
    if let Ok(w) = LinearWeights::from_bytes(data) {
        assert!(!w.taps.is_empty() && w.taps.iter().all(|t| !t.is_empty()));
        assert!(w.taps.iter().flatten().all(|v| v.is_finite() && *v >= 0.0));
        assert!(w.taps.iter().map(Vec::len).sum::<usize>() * 4 <= data.len());
    }
}

// ---------------------------------------------------------------------------------------------
// The C ABI's image arguments: any width, height, stride, format, transfer and pixel bytes (and
// NULLs) through `elpips_reference_new` (validation only) and `elpips_compare` (which runs
// LPIPS-AlexNet on the few descriptions small enough to pass the context's 64x64 budget).
// Invariants: never `ELPIPS_STATUS_INTERNAL_ERROR` (a caught panic), a NUL-terminated message on
// every failure, a finite non-negative distance on success, and no read outside the bytes the
// description covers (ASan catches those: the buffer is allocated to exactly that size).

const MAX_PIXELS: u64 = 64 * 64;

fn context() -> *mut ElpipsContext {
    static CTX: OnceLock<usize> = OnceLock::new();
    *CTX.get_or_init(|| {
        let mut o = std::mem::MaybeUninit::<ElpipsOptions>::zeroed();
        let mut ctx = std::ptr::null_mut();
        unsafe {
            assert_eq!(elpips_options_default(o.as_mut_ptr(), std::mem::size_of::<ElpipsOptions>()), ELPIPS_OK);
            let mut o = o.assume_init();
            o.metric = ELPIPS_METRIC_LPIPS_ALEX;
            o.threads = 1;
            o.max_pixels = MAX_PIXELS;
            let s = elpips_context_new(&o, &mut ctx);
            assert_eq!(s, ELPIPS_OK, "run `make setup` first");
        }
        ctx as usize
    }) as *mut ElpipsContext
}

struct Input<'a>(&'a [u8]);
impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
}

/// Bytes the description covers, as the C contract defines it; `None` when the library must
/// refuse it before reading (unknown format, empty, over budget, overflowing).
fn span(d: &ElpipsImage) -> Option<usize> {
    let (channels, bytes) = match d.format {
        0 => (3, 1),
        1 => (4, 1),
        2 => (3, 2),
        3 => (4, 2),
        4 => (3, 4),
        5 => (4, 4),
        _ => return None,
    };
    if d.width == 0 || d.height == 0 || d.width as u64 * d.height as u64 > MAX_PIXELS || d.transfer > 1 {
        return None;
    }
    let row = d.width as usize * channels * bytes;
    let stride = if d.stride_bytes == 0 { row } else { d.stride_bytes };
    if stride < row {
        return None;
    }
    stride.checked_mul(d.height as usize - 1)?.checked_add(row).filter(|&s| s <= isize::MAX as usize)
}

pub fn capi_image(data: &[u8]) {
    let mut input = Input(data);
    let [mode, nulls] = input.take::<2>();
    let describe = |input: &mut Input| ElpipsImage {
        data: std::ptr::null(),
        width: u32::from_le_bytes(input.take()),
        height: u32::from_le_bytes(input.take()),
        stride_bytes: usize::from_le_bytes(input.take()),
        format: u32::from(input.take::<1>()[0]),
        transfer: u32::from(input.take::<1>()[0]),
    };
    let mut a = describe(&mut input);
    let mut b = describe(&mut input);
    let pixels = input.0;
    // Exactly the covered bytes, so any over-read is an ASan report. Descriptions the library
    // would read but that are too large to allocate here are skipped (a caller cannot make them).
    let mut buffers = Vec::new();
    for d in [&mut a, &mut b] {
        let n = span(d).unwrap_or(16);
        if n > 1 << 24 {
            return;
        }
        let buf: Vec<u8> = (0..n).map(|i| if pixels.is_empty() { 0 } else { pixels[i % pixels.len()] }).collect();
        d.data = buf.as_ptr().cast();
        buffers.push(buf);
    }
    if nulls & 1 != 0 {
        a.data = std::ptr::null();
    }
    let ctx = if nulls & 2 != 0 { std::ptr::null_mut() } else { context() };
    let pa: *const ElpipsImage = if nulls & 4 != 0 { std::ptr::null() } else { &a };
    let mut result = ElpipsResult::default();
    let status = unsafe {
        match mode % 3 {
            0 => {
                let mut r = std::ptr::null_mut();
                let s = elpips_reference_new(ctx, pa, if nulls & 8 != 0 { std::ptr::null_mut() } else { &mut r });
                assert!((s == ELPIPS_OK) == !r.is_null());
                elpips_reference_free(r);
                s
            }
            1 => elpips_compare(ctx, pa, &b, &mut result),
            _ => elpips_compare(ctx, pa, pa, if nulls & 8 != 0 { std::ptr::null_mut() } else { &mut result }),
        }
    };
    assert!((ELPIPS_OK..ELPIPS_STATUS_INTERNAL_ERROR).contains(&status), "status {status}: {:?}", unsafe {
        CStr::from_ptr(elpips_last_error(ctx))
    });
    if status == ELPIPS_OK && mode % 3 != 0 {
        assert!(result.distance.is_finite() && result.distance >= 0.0, "{result:?}");
    } else if status != ELPIPS_OK && !ctx.is_null() {
        let message = unsafe { CStr::from_ptr(elpips_last_error(ctx)) };
        assert!(!message.to_bytes().is_empty() && message.to_str().is_ok());
    }
    drop(buffers);
}

// ---------------------------------------------------------------------------------------------
// The C ABI's options: any bytes as an `ElpipsOptions` of any `struct_size` (with its string
// fields pointing at NULL, missing files, URLs, devices or directories) through
// `elpips_context_new_with_error`, and `elpips_options_default` over any previous contents.
// Invariants: never `ELPIPS_STATUS_INTERNAL_ERROR`, `*out` set exactly on success, the message
// NUL-terminated within its buffer. Valid metrics are mapped to LPIPS-AlexNet, the cheapest to
// load, so most time goes to the validation paths.

const PATHS: [Option<&CStr>; 7] = [
    None,
    None,
    Some(c"/nonexistent/elpips"),
    Some(c"http://example.com/models"),
    Some(c"/dev/null"),
    Some(c"/tmp"),
    Some(c""),
];

pub fn capi_options(data: &[u8]) {
    let ours = std::mem::size_of::<ElpipsOptions>();
    if data.len() < 4 {
        return;
    }
    let (head, body) = data.split_at(4);
    // Room for a caller built against a newer header (bigger struct) too.
    let mut buf = vec![0u8; ours + 64];
    let n = body.len().min(buf.len());
    buf[..n].copy_from_slice(&body[..n]);
    let size = (head[0] as usize * 4).min(buf.len());
    let p = buf.as_mut_ptr().cast::<ElpipsOptions>();
    unsafe {
        std::ptr::addr_of_mut!((*p).struct_size).write_unaligned(size);
        let mut o = p.read_unaligned();
        let pick = |sel: u8| PATHS[sel as usize % PATHS.len()].map_or(std::ptr::null(), |s| s.as_ptr() as *const c_char);
        o.runtime_library = std::ptr::null();
        o.model_dir = pick(head[1]);
        o.linear_weights = pick(head[2]);
        if o.metric < 2 {
            o.metric = ELPIPS_METRIC_LPIPS_ALEX;
        }
        p.write_unaligned(o);
        let mut ctx = 1 as *mut ElpipsContext;
        let mut message = [0x55 as c_char; 96];
        let msg_size = head[3] as usize % (message.len() + 1);
        let s = elpips_context_new_with_error(p, &mut ctx, message.as_mut_ptr(), msg_size);
        assert!((ELPIPS_OK..ELPIPS_STATUS_INTERNAL_ERROR).contains(&s), "status {s}");
        assert_eq!(s == ELPIPS_OK, !ctx.is_null());
        if msg_size > 0 {
            assert!(message[..msg_size].contains(&0), "message not NUL-terminated within its buffer");
        }
        elpips_context_free(ctx);
        // The defaults over whatever the caller's struct held, at any size its buffer has.
        let s = elpips_options_default(p, size);
        if size < std::mem::offset_of!(ElpipsOptions, exposure) {
            assert_eq!(s, ELPIPS_STATUS_INVALID_ARGUMENT);
        } else {
            assert_eq!(s, ELPIPS_OK);
            assert_eq!(std::ptr::addr_of!((*p).struct_size).read_unaligned(), size);
            assert!(buf[ours.min(size)..size].iter().all(|&b| b == 0), "a newer caller's extra fields not zeroed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `elpips check`'s text inputs: the manifest and summary parsers of the command line, included
// as they are (they depend only on serde, csv, serde_json and the library). Invariants: an
// error or typed values within their documented bounds, never a panic; a summary that parses
// serialises back to one that parses the same.

#[cfg(feature = "cli")]
#[path = "../src/bin/elpips/check/manifest.rs"]
mod manifest;
#[cfg(feature = "cli")]
#[path = "../src/bin/elpips/check/summary.rs"]
mod summary;

#[cfg(feature = "cli")]
fn manifest_rows(data: &[u8], name: &str) {
    if let Ok(rows) = manifest::parse_manifest(data, std::path::Path::new(name)) {
        assert!(!rows.is_empty());
        for r in rows {
            assert!(!r.reference.is_empty() && !r.candidate.is_empty());
            assert!(r.max_distance.is_none_or(|t| t.0.is_finite() && t.0 >= 0.0));
            assert!(r.name.is_none_or(|n| !n.is_empty()));
        }
    }
}

/// Any bytes as a CSV manifest.
#[cfg(feature = "cli")]
pub fn manifest_csv(data: &[u8]) {
    manifest_rows(data, "m.csv");
}

/// Any bytes as a JSON-lines manifest.
#[cfg(feature = "cli")]
pub fn manifest_jsonl(data: &[u8]) {
    manifest_rows(data, "m.jsonl");
}

/// Any bytes as a summary for `--merge`. A seed that is a valid summary but for its digest is
/// re-sealed first (when it is JSON at all), so the checks behind the digest are reached.
#[cfg(feature = "cli")]
pub fn summary(data: &[u8]) {
    let path = std::path::Path::new("s.json");
    let mut attempts = vec![data.to_vec()];
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Some(o) = v.as_object_mut() {
            o.remove("digest");
            let digest = elpips::integrity::sha256_hex(serde_json::to_string(&v).unwrap().as_bytes());
            v["digest"] = digest.into();
            attempts.push(serde_json::to_vec(&v).unwrap());
        }
    }
    for bytes in attempts {
        if let Ok(s) = summary::parse_summary(&bytes, path) {
            let shard = s.shard_or_whole();
            assert!(shard.count >= 1 && shard.index < shard.count && shard.count <= s.manifest_rows);
            assert!(s.manifest_rows <= summary::MAX_ROWS);
            assert_eq!(summary::counts(&s.results), s.counts);
            let again = summary::parse_summary(serde_json::to_string_pretty(&s).unwrap().as_bytes(), path).expect("a parsed summary reads back");
            assert_eq!(again.canonical(), s.canonical());
        }
    }
}

/// Whether a summary is accepted as it is (the committed seeds written by `elpips check` are).
#[cfg(feature = "cli")]
pub fn summary_accepted(data: &[u8]) -> bool {
    summary::parse_summary(data, std::path::Path::new("s.json")).is_ok()
}

// ---------------------------------------------------------------------------------------------
// The other text inputs of the command line, included as they are: `elpips rd --merge`'s rd.json
// reader, `elpips serve`'s request lines, and the escaping of user text into each output format.

#[cfg(feature = "cli")]
use manifest::json_message;
#[cfg(feature = "cli")]
#[path = "../src/bin/elpips/codec/effort.rs"]
mod effort;
#[cfg(feature = "cli")]
use effort::Effort;
#[cfg(feature = "cli")]
#[path = "../src/bin/elpips/rd/format.rs"]
mod rd_format;
#[cfg(feature = "cli")]
#[path = "../src/bin/elpips/serve/request.rs"]
mod serve_request;
#[cfg(feature = "cli")]
#[path = "../src/bin/elpips/escape.rs"]
mod escape;

/// Any bytes as an rd.json part for `elpips rd --merge`. One that parses as the format but for
/// its digest is re-sealed first, so the checks behind the digest are reached. Invariants: an
/// error or a part whose shard, points and settings keep their documented bounds, never a panic.
#[cfg(feature = "cli")]
pub fn rd_json(data: &[u8]) {
    let path = std::path::Path::new("rd.json");
    let mut attempts = vec![data.to_vec()];
    if let Ok(mut f) = serde_json::from_slice::<rd_format::RdFile>(data) {
        f.digest = Some(rd_format::digest(&f));
        attempts.push(serde_json::to_vec(&f).unwrap());
    }
    for bytes in attempts {
        if let Ok(f) = rd_format::parse_part(&bytes, path) {
            assert!(f.settings.bootstrap <= rd_format::MAX_BOOTSTRAP);
            assert!(f.shard.is_none_or(|s| s.index < s.count && s.count <= f.images.len() as u64));
            let images = rd_format::shard_images(f.images.len(), f.shard).len();
            assert_eq!(f.points.len(), images * f.settings.codecs.len() * f.settings.settings.len());
            assert!(f.points.iter().all(|p| p.bpp > 0.0 && p.distance.is_finite() && p.distance >= 0.0));
            let again = rd_format::parse_part(&serde_json::to_vec(&f).unwrap(), path).expect("a parsed part reads back");
            assert_eq!(again, f);
        }
    }
}

/// Any bytes as one `elpips serve` request line. Invariants: a typed request or an error
/// message (which the server escapes to one line: it may quote the request), never a panic;
/// an `id` is echoed only when the line was a JSON object.
#[cfg(feature = "cli")]
pub fn serve_request(data: &[u8]) {
    match serve_request::parse(data) {
        Ok((_, request)) => drop(request),
        Err((id, message)) => {
            assert!(!message.is_empty());
            assert!(!escape::line(&message).contains('\n'));
            if id != serde_json::Value::Null {
                assert!(serde_json::from_slice::<serde_json::Value>(data).is_ok_and(|v| v.is_object()));
            }
        }
    }
}

/// Any text (names, paths, messages are user text) through each output format's escaping.
/// Invariants: a plain line stays one line and starts no workflow command of its own; XML/HTML
/// holds only characters XML 1.0 allows and no markup; markdown holds no HTML and no cell break.
#[cfg(feature = "cli")]
pub fn report_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let line = escape::line(&text);
    assert!(!line.contains(['\n', '\r', '\u{1b}', '\u{2028}', '\u{2029}']), "{line:?}");
    let xml = escape::markup(&text);
    assert!(!xml.contains(['<', '>', '"', '\'']));
    assert!(xml.chars().all(|c| matches!(c as u32, 0x9 | 0xA | 0x20..=0x7E | 0xA0..=0xFFFD | 0x10000..=0x10FFFF)), "{xml:?}");
    for (i, _) in xml.match_indices('&') {
        assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#13;"].iter().any(|e| xml[i..].starts_with(e)), "{xml:?}");
    }
    let md = escape::markdown(&text);
    assert!(!md.contains(['<', '>', '\n', '\r']), "{md:?}");
    assert!(md.match_indices('|').all(|(i, _)| md[..i].ends_with('\\')), "{md:?}");
    let data = escape::command_data(&text);
    assert!(!data.contains(['\n', '\r']));
    assert!(!escape::command_property(&text).contains([':', ',', '\n']));
}

// ---------------------------------------------------------------------------------------------
// The C ABI's gate: any threshold, error rate and sample counts (their whole integer ranges)
// through `elpips_decide` on a 32x32 pair of the LPIPS-AlexNet context. Invariants: never
// `ELPIPS_STATUS_INTERNAL_ERROR`; a refusal for counts above `ELPIPS_MAX_SAMPLES`; on success a
// verdict and a finite estimate.

pub fn capi_gate(data: &[u8]) {
    let mut input = Input(data);
    let gate = ElpipsGate {
        threshold: f64::from_le_bytes(input.take()),
        error_rate: f64::from_le_bytes(input.take()),
        max_samples: u32::from_le_bytes(input.take()),
        min_samples: u32::from_le_bytes(input.take()),
    };
    let (a, b): (Vec<u8>, Vec<u8>) = ((0..32 * 32 * 3).map(|i| (i * 7) as u8).collect(), (0..32 * 32 * 3).map(|i| (i * 5) as u8).collect());
    let image = |p: &Vec<u8>| ElpipsImage { data: p.as_ptr().cast(), width: 32, height: 32, stride_bytes: 0, format: ELPIPS_PIXEL_FORMAT_RGB8, transfer: ELPIPS_TRANSFER_SRGB };
    let (ia, ib) = (image(&a), image(&b));
    let mut d = ElpipsDecision::default();
    let ctx = context();
    let s = unsafe { elpips_decide(ctx, &ia, &ib, &gate, &mut d) };
    assert!((ELPIPS_OK..ELPIPS_STATUS_INTERNAL_ERROR).contains(&s), "status {s}");
    if gate.max_samples > ELPIPS_MAX_SAMPLES || gate.min_samples > ELPIPS_MAX_SAMPLES {
        assert_eq!(s, ELPIPS_STATUS_INVALID_ARGUMENT, "{gate:?}");
    }
    if s == ELPIPS_OK {
        assert!(d.verdict <= ELPIPS_SIDE_UNDECIDED && d.estimate.distance.is_finite(), "{d:?}");
    }
}
