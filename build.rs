//! Link settings of the C library. The header is NOT written here (a build must never dirty the
//! tree): `make header` regenerates `include/elpips.h` and `tests/header.rs` checks it.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the package version");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // The soname carries the ABI major (= the package major), and $ORIGIN lets an installed
        // libelpips find the libonnxruntime installed beside it.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libelpips.so.{major}");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
