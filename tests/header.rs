//! `include/elpips.h` is generated from `src/capi/mod.rs` by cbindgen and committed. This test
//! regenerates it into memory and fails when the committed copy has drifted (the failure of
//! resvg's header, whose error codes went off by one). `make header` (ELPIPS_WRITE_HEADER=1)
//! rewrites the committed file instead.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let (major, minor, patch) =
        (env!("CARGO_PKG_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MINOR"), env!("CARGO_PKG_VERSION_PATCH"));
    // One source for the version: Cargo.toml. The soname (build.rs) and elpips_version() use it too.
    config.after_includes = Some(format!(
        "\n#define ELPIPS_VERSION_MAJOR {major}\n#define ELPIPS_VERSION_MINOR {minor}\n#define ELPIPS_VERSION_PATCH {patch}\n\
         #define ELPIPS_VERSION_STRING \"{}\"\n/* The ABI major: the soname is libelpips.so.<this>; see elpips_abi_version(). */\n\
         #define ELPIPS_ABI_VERSION {major}",
        env!("CARGO_PKG_VERSION")
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/elpips.h");
    let fresh = generate();
    if std::env::var_os("ELPIPS_WRITE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("writes include/elpips.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let tmp = std::env::temp_dir().join("elpips-fresh.h");
        std::fs::write(&tmp, &fresh).expect("writes the fresh header");
        let first = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b);
        panic!(
            "include/elpips.h is out of date with src/capi/mod.rs (first difference at line {}); \
             see `diff -u include/elpips.h {}` and run `make header`",
            first.map_or_else(|| "end".to_string(), |i| (i + 1).to_string()),
            tmp.display()
        );
    }
}
