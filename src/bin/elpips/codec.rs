//! The codec shims of `plugins/codec/` (C, over libjpeg-turbo, libwebp, libavif and libjxl),
//! linked into the command-line tool by build.rs. The only unsafe code of the tool: it turns
//! the shims' buffers into owned Rust values.

use std::ffi::{c_char, c_int, CStr};

use elpips::Error;

#[path = "codec/effort.rs"] // also when benches include this file by path
mod effort;
pub use effort::Effort;

#[repr(C)]
struct CodecOutput {
    bytes: *mut u8,
    size: usize,
    pixels: *mut u8,
}

extern "C" {
    fn elpips_codec_available(codec: c_int) -> c_int;
    fn elpips_codec_encode(
        codec: c_int,
        pixels: *const u8,
        width: u32,
        height: u32,
        channels: u32,
        quality: c_int,
        effort: c_int,
        out: *mut CodecOutput,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    fn elpips_codec_output_free(out: *mut CodecOutput);
}

/// The encoders `elpips tune` can drive (`--codec`). Settings are qualities 0..100 (higher =
/// better).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Codec {
    /// libjpeg-turbo.
    Jpeg,
    /// libwebp.
    Webp,
    /// libavif.
    Avif,
    /// libjxl.
    Jxl,
}

impl Codec {
    /// The speed setting `effort` gives this encoder (the shim's ELPIPS_CODEC_EFFORT_DEFAULT, -1,
    /// for JPEG: it has none).
    fn effort_setting(self, effort: Effort) -> c_int {
        match self {
            Codec::Jpeg => -1,
            Codec::Webp => effort.webp_method,
            Codec::Avif => effort.avif_speed,
            Codec::Jxl => effort.jxl_effort,
        }
    }

    /// The name on the command line and in reports (clap's, so it is written once). Not
    /// `crate::value_name`: benches/tune.rs includes this file as a module of its own.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).map(|v| v.get_name().to_owned()).unwrap_or_default()
    }

    /// The Debian package whose library the shim needs at build time.
    pub fn package(self) -> &'static str {
        match self {
            Codec::Jpeg => "libturbojpeg0-dev",
            Codec::Webp => "libwebp-dev",
            Codec::Avif => "libavif-dev",
            Codec::Jxl => "libjxl-dev",
        }
    }

    /// The lowest quality the encoder accepts (JPEG has no quality 0).
    pub fn min_quality(self) -> i32 {
        if self == Codec::Jpeg {
            1
        } else {
            0
        }
    }

    /// Whether its library was found when this tool was built.
    pub fn available(self) -> bool {
        // SAFETY: no pointers; any codec number is accepted.
        unsafe { elpips_codec_available(self as c_int) == 1 }
    }

    /// Errors unless this codec was compiled in, naming what to install.
    pub fn require(self) -> Result<(), Error> {
        if self.available() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "this elpips was built without {} support: install {} (e.g. `apt-get install {}`) and rebuild (cargo build --release)",
            self.name(),
            self.package(),
            self.package()
        )))
    }

    /// Encodes packed RGB8 (`channels` 3) or RGBA8 (4) at `quality` and the codec's `effort`;
    /// returns the file and the file decoded back to packed RGB8.
    pub fn encode(self, pixels: &[u8], width: u32, height: u32, channels: u32, quality: i32, effort: Effort) -> Result<(Vec<u8>, Vec<u8>), Error> {
        self.require()?;
        let need = width as usize * height as usize * channels as usize;
        if pixels.len() != need || !(channels == 3 || channels == 4) {
            return Err(Error::InvalidArgument(format!(
                "{}: {} bytes of pixels for {width}x{height}x{channels}",
                self.name(),
                pixels.len()
            )));
        }
        let mut out = CodecOutput { bytes: std::ptr::null_mut(), size: 0, pixels: std::ptr::null_mut() };
        let mut err = [0 as c_char; 256];
        // SAFETY: `pixels` holds width * height * channels bytes (checked above); `out` and
        // `err` are writable and `err`'s length is passed.
        let rc = unsafe {
            elpips_codec_encode(self as c_int, pixels.as_ptr(), width, height, channels, quality, self.effort_setting(effort), &mut out, err.as_mut_ptr(), err.len())
        };
        if rc != 0 {
            // SAFETY: the shim NUL-terminates `err` within its length.
            let reason = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
            return Err(Error::InvalidArgument(format!("{} encoder at quality {quality}: {reason}", self.name())));
        }
        // SAFETY: on success the shim set `bytes` to `size` bytes and `pixels` to
        // width * height * 3 bytes; both stay valid until elpips_codec_output_free.
        let result = unsafe {
            (
                std::slice::from_raw_parts(out.bytes, out.size).to_vec(),
                std::slice::from_raw_parts(out.pixels, width as usize * height as usize * 3).to_vec(),
            )
        };
        // SAFETY: `out` came from a successful elpips_codec_encode and is freed once.
        unsafe { elpips_codec_output_free(&mut out) };
        Ok(result)
    }
}
