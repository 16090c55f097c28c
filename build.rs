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
//!
//! The probe must never go stale: cargo re-runs this script when pkg-config's search folders
//! change (installing or removing a `-dev` package adds or removes a `.pc` file there, which
//! updates the folder's mtime; dpkg keeps the packaged mtime of the file itself, so watching the
//! files alone would miss it) and when the pkg-config environment changes. Without the `cli`
//! feature nothing is probed or compiled: the library itself has no C.

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
    if env::var_os("CARGO_FEATURE_CLI").is_some() {
        codec_shims();
    }
}

/// The folders pkg-config searches: `$PKG_CONFIG_PATH`, then `$PKG_CONFIG_LIBDIR` or its
/// built-in path (asked of pkg-config itself, with Debian's multiarch default as a fallback).
fn pkg_config_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for var in ["PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR"] {
        if let Some(v) = env::var_os(var) {
            dirs.extend(env::split_paths(&v));
        }
    }
    if env::var_os("PKG_CONFIG_LIBDIR").is_none() {
        let builtin = std::process::Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
            .args(["--variable", "pc_path", "pkg-config"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "/usr/local/lib/pkgconfig:/usr/lib/x86_64-linux-gnu/pkgconfig:/usr/lib/pkgconfig:/usr/share/pkgconfig".into());
        dirs.extend(env::split_paths(&builtin));
    }
    dirs.retain(|d| !d.as_os_str().is_empty());
    dirs
}

fn codec_shims() {
    println!("cargo:rerun-if-changed=plugins/codec");
    for var in ["ELPIPS_CODECS_MISSING", "PKG_CONFIG", "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // Only folders that exist: a missing path makes cargo re-run the script on every build.
    // (Debian's packages all install into /usr/lib/<triplet>/pkgconfig or /usr/share/pkgconfig,
    // which exist on any system with pkg-config.)
    for dir in pkg_config_dirs().into_iter().filter(|d| d.is_dir()) {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
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
