//! Link settings of the C library, and the codec shims. The header is NOT written here (a build
//! must never dirty the tree): `make header` regenerates `include/elpips.h` and `tests/header.rs`
//! checks it.
//!
//! The codec shims of `plugins/codec/` (used by `elpips tune` and the tune benchmark).
//!
//! Each encoder library is found with pkg-config; a missing one turns its codec off with a
//! warning, never a build failure, and `elpips tune --codec X` then says which package to
//! install. The shims link into the command-line tool and the benchmarks only: libelpips itself
//! (whose C tuning API takes the caller's own encoder) gains no dependency.
//!
//! `ELPIPS_CODECS_MISSING=jpeg,webp,...` (or `all`) pretends those libraries are absent, so a
//! build without them can be checked on a machine that has them.

use std::env;
use std::path::PathBuf;

/// (name, pkg-config module, Debian package, shim source)
const CODECS: [(&str, &str, &str, &str); 4] = [
    ("jpeg", "libturbojpeg", "libturbojpeg0-dev", "jpeg.c"),
    ("webp", "libwebp", "libwebp-dev", "webp.c"),
    ("avif", "libavif", "libavif-dev", "avif.c"),
    ("jxl", "libjxl", "libjxl-dev", "jxl.c"),
];

fn main() {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the package version");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // The soname carries the ABI major (= the package major), and $ORIGIN lets an installed
        // libelpips find the libonnxruntime installed beside it.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libelpips.so.{major}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN");
    }
    println!("cargo:rerun-if-changed=build.rs");
    codec_shims();
}

fn codec_shims() {
    println!("cargo:rerun-if-changed=plugins/codec");
    println!("cargo:rerun-if-env-changed=ELPIPS_CODECS_MISSING");
    let missing = env::var("ELPIPS_CODECS_MISSING").unwrap_or_default();
    let pretend_missing = |name: &str| missing.split(',').any(|m| m.trim() == name || m.trim() == "all");

    let mut build = cc::Build::new();
    build.file("plugins/codec/codec.c").include("plugins/codec").warnings(true).cargo_metadata(false);
    let mut link: Vec<String> = Vec::new();
    for (name, module, package, source) in CODECS {
        if pretend_missing(name) {
            println!("cargo:warning=codec {name} off: ELPIPS_CODECS_MISSING names it (elpips tune --codec {name} will ask for {package})");
            continue;
        }
        match pkg_config::Config::new().cargo_metadata(false).env_metadata(true).probe(module) {
            Ok(lib) => {
                build.file(format!("plugins/codec/{source}")).define(&format!("ELPIPS_HAVE_{}", name.to_uppercase()), None);
                for dir in &lib.include_paths {
                    build.include(dir);
                }
                link.extend(lib.link_paths.iter().map(|p| format!("-L{}", p.display())));
                link.extend(lib.libs.iter().map(|l| format!("-l{l}")));
            }
            Err(_) => println!(
                "cargo:warning=codec {name} off: pkg-config finds no {module}; install {package} (apt) and rebuild to tune {name}"
            ),
        }
    }
    build.compile("elpips_codec");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // The archive first, then the libraries it needs (the linker resolves left to right).
    let mut args = vec![format!("-L{}", out.display()), "-lelpips_codec".to_string()];
    args.extend(link);
    args.push("-lm".into());
    for arg in args {
        println!("cargo:rustc-link-arg-bins={arg}");
        println!("cargo:rustc-link-arg-benches={arg}");
    }
}
