//! Integrity at run time: no network is needed (or used) to compare, and the build has no way
//! to download models. The checksum checks themselves are rows of docs/bad-inputs.md.

use std::process::Command;

fn png(dir: &std::path::Path, name: &str, shift: u8) -> std::path::PathBuf {
    let img = image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([(x * 7) as u8 ^ shift, (y * 5) as u8, ((x + y) * 3) as u8]));
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

/// A comparison with no network: inside a new network namespace (only a down loopback) when the
/// machine allows unprivileged ones, and in any case with every proxy variable pointing at a
/// closed port, so a download attempt would fail the run.
#[test]
fn compares_without_any_network() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (png(dir.path(), "a.png", 0), png(dir.path(), "b.png", 9));
    let bin = env!("CARGO_BIN_EXE_elpips");
    let isolated = Command::new("unshare").args(["-rn", "true"]).status().is_ok_and(|s| s.success());
    let mut cmd = if isolated {
        let mut c = Command::new("unshare");
        c.args(["-rn", bin]);
        c
    } else {
        eprintln!("no unprivileged network namespace here: proxies only");
        Command::new(bin)
    };
    cmd.args(["compare", "--metric", "lpips-alex"]).arg(&a).arg(&b);
    for var in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"] {
        cmd.env(var, "http://127.0.0.1:9");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d: f64 = String::from_utf8_lossy(&out.stdout).split_whitespace().find_map(|w| w.parse().ok()).expect("a distance");
    assert!(d > 0.0 && d.is_finite());
}

/// `ort`'s model download (`commit_from_url`) is behind its `fetch-models` feature: never on.
#[test]
fn the_build_cannot_download_models() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let ort = manifest.lines().find(|l| l.starts_with("ort ")).expect("ort dependency");
    assert!(!ort.contains("fetch-models") && ort.contains("default-features = false"), "{ort}");
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
    for client in ["ureq", "reqwest", "hyper", "curl"] {
        assert!(!lock.contains(&format!("name = \"{client}\"")), "{client} in Cargo.lock: something can reach the network");
    }
}
