//! `elpips rd` with the real encoders on a tiny corpus (two 64x64 upstream images, jpeg and webp,
//! three settings, 8 samples): the CSV's columns and rows, rd.json's BD-rates with their
//! intervals, the plots, and that two shards merged give the whole run's CSV and BD-rates exactly;
//! a merge refuses a missing shard and an edited part.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::upstream;
use serde_json::Value;

fn elpips(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elpips")).args(args).output().expect("runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const MEASURE: [&str; 9] = ["rd", "-q", "--codec", "jpeg,webp", "--settings", "20,50,80", "--samples", "8", "--bootstrap=200"];

fn measure(out: &Path, extra: &[&str]) -> Output {
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p0.png"));
    let mut args = MEASURE.to_vec();
    args.extend_from_slice(&["--out", s(out), s(&a), s(&b)]);
    args.extend_from_slice(extra);
    elpips(&args)
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn rd_writes_curves_bd_rates_and_plots_and_shards_merge_to_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    ok(&measure(&whole, &[]));

    let csv = std::fs::read_to_string(whole.join("rd.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in ["image", "codec", "setting", "bytes", "bpp", "distance", "ci95", "lpips_vgg"] {
        assert!(header.contains(&col), "{col} missing from {header:?}");
    }
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 2 * 3);
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for r in &rows {
        let (bytes, bpp): (f64, f64) = (r[col("bytes")].parse().unwrap(), r[col("bpp")].parse().unwrap());
        assert!((bpp - bytes * 8.0 / (64.0 * 64.0)).abs() < 1e-12);
        let (d, ci): (f64, f64) = (r[col("distance")].parse().unwrap(), r[col("ci95")].parse().unwrap());
        assert!(d > 0.0 && ci > 0.0 && ci < d, "{r:?}");
    }
    // Higher quality, more bytes, for both encoders on both images.
    for chunk in rows.chunks(3) {
        let bytes: Vec<u64> = chunk.iter().map(|r| r[col("bytes")].parse().unwrap()).collect();
        assert!(bytes.windows(2).all(|w| w[1] > w[0]), "{bytes:?}");
    }

    let v = json(&whole.join("rd.json"));
    let webp = &v["bd_rate"]["webp"];
    assert_eq!(webp["vs"], "jpeg");
    assert_eq!(v["device"], "cpu");
    let (p, ci) = (webp["percent"].as_f64().unwrap(), webp["ci95"].as_f64().unwrap());
    let (lo, hi) = (webp["lower"].as_f64().unwrap(), webp["upper"].as_f64().unwrap());
    assert!(ci > 0.0 && lo < hi && (hi - lo - 2.0 * ci).abs() < 1e-9, "{webp}");
    // WebP beats baseline JPEG on small images by tens of percent (docs/codec.md's table).
    assert!(p < -10.0 && p > -90.0, "{webp}");
    assert_eq!(webp["per_image"].as_array().unwrap().len(), 2);
    assert!(v["bd_rate"].get("jpeg").is_none(), "the anchor has no BD-rate against itself");
    for plot in ["rd.svg", "rd-0-ex_ref.svg", "rd-1-ex_p0.svg"] {
        let svg = std::fs::read_to_string(whole.join(plot)).unwrap();
        assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2, "{plot}");
    }

    let (s0, s1, merged) = (dir.path().join("s0"), dir.path().join("s1"), dir.path().join("merged"));
    ok(&measure(&s0, &["--shard", "0/2"]));
    ok(&measure(&s1, &["--shard", "1/2"]));
    assert!(!s0.join("rd-1-ex_p0.svg").exists(), "a shard plots its own images only");
    let (p0, p1) = (s0.join("rd.json"), s1.join("rd.json"));
    let o = elpips(&["rd", "-q", "--merge", s(&p1), s(&p0), "--out", s(&merged), "--json"]);
    ok(&o);
    let printed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(std::fs::read(merged.join("rd.csv")).unwrap(), csv.as_bytes());
    let m = json(&merged.join("rd.json"));
    assert_eq!(m["bd_rate"], v["bd_rate"]);
    assert_eq!(m["points"], v["points"]);
    assert_eq!(m["device"], "cpu");
    assert_eq!(printed, m);

    let refused = |args: &[&str], want: &str| {
        let o = elpips(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(err.contains(want) && err.lines().count() == 1, "{args:?}: {err}");
    };
    let out = dir.path().join("bad");
    refused(&["rd", "--merge", s(&p0), "--out", s(&out)], "missing the summaries of shard(s) 1/2");
    let mut edited = json(&p1);
    edited["points"][0]["bytes"] = 1.into();
    let e = dir.path().join("edited.json");
    std::fs::write(&e, serde_json::to_vec(&edited).unwrap()).unwrap();
    refused(&["rd", "--merge", s(&p0), s(&e), "--out", s(&out)], "its digest does not match its contents");
    assert!(!out.exists(), "a refused merge writes nothing");
}

/// `--webp-method` (like `--avif-speed` and `--jxl-effort`) reaches the encoder: other bytes at
/// method 0 than at the default 4; the setting is in rd.json only when not the default (so files
/// of default runs are as before), and parts measured with different settings do not merge.
#[test]
fn encoder_settings_reach_the_encoder_and_keep_parts_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p0.png"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec!["rd", "-q", "--codec", "webp", "--settings", "20,60", "--samples", "2", "--bootstrap=0", "--out", s(out), s(&a), s(&b)];
        args.extend_from_slice(extra);
        elpips(&args)
    };
    let (default, fast) = (dir.path().join("default"), dir.path().join("fast"));
    ok(&run(&default, &["--shard", "0/2"]));
    ok(&run(&fast, &["--shard", "1/2", "--webp-method", "0"]));
    let (d, f) = (json(&default.join("rd.json")), json(&fast.join("rd.json")));
    assert!(d["settings"].get("encoder").is_none(), "{}", d["settings"]);
    assert_eq!(f["settings"]["encoder"], serde_json::json!({"avif_speed": 6, "webp_method": 0, "jxl_effort": 7}));
    let o = elpips(&["rd", "--merge", s(&default.join("rd.json")), s(&fast.join("rd.json")), "--out", s(&dir.path().join("m"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("come from different runs"), "{}", String::from_utf8_lossy(&o.stderr));
    // The first image at both methods: method 0 gives another file.
    let fast0 = dir.path().join("fast0");
    ok(&run(&fast0, &["--shard", "0/2", "--webp-method", "0"]));
    let bytes = |v: &Value| -> Vec<u64> { v["points"].as_array().unwrap().iter().map(|p| p["bytes"].as_u64().unwrap()).collect() };
    assert_ne!(bytes(&d), bytes(&json(&fast0.join("rd.json"))));
    let o = run(&dir.path().join("x"), &["--webp-method", "7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("7 is not in 0..=6"), "{}", String::from_utf8_lossy(&o.stderr));
}
