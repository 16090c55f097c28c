//! `elpips check`'s render-suite gates: the rules on the heatmap, presets, the suite error rate,
//! the HTML report, the GitHub outputs and --update-references, on single pairs and on a
//! sharded, merged manifest. Fixtures are 64x64: a smooth reference, the same with a bright 6x6
//! splotch (36 pixels), and the same with faint noise of about the splotch's mean distance.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const N: u32 = 64;

fn elpips(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_elpips"));
    c.args(args).arg("--threads").arg("2").env_remove("GITHUB_STEP_SUMMARY");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {} / {}", text(&o.stdout), text(&o.stderr)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn reference_pixel(x: u32, y: u32) -> [f32; 3] {
    let (fx, fy) = (x as f32 / N as f32, y as f32 / N as f32);
    [0.5 + 0.4 * (7.0 * fx + 3.0 * fy).sin(), 0.5 + 0.4 * (5.0 * fy).cos() * fx, 0.3 + 0.5 * fx * fy]
}

fn write(path: &Path, f: impl Fn(u32, u32, usize) -> f32) {
    let img = image::RgbImage::from_fn(N, N, |x, y| image::Rgb([0, 1, 2].map(|c| (f(x, y, c).clamp(0.0, 1.0) * 255.0).round() as u8)));
    img.save(path).unwrap();
}

/// ref.png, splotch.png, noise.png in `dir`.
fn fixtures(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (r, sp, no) = (dir.join("ref.png"), dir.join("splotch.png"), dir.join("noise.png"));
    write(&r, |x, y, c| reference_pixel(x, y)[c]);
    write(&sp, |x, y, c| if (29..35).contains(&x) && (29..35).contains(&y) { 1.0 } else { reference_pixel(x, y)[c] });
    let mut state = 12345u32;
    let noise: Vec<f32> = (0..3 * N * N)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2.0 * 0.033
        })
        .collect();
    write(&no, |x, y, c| reference_pixel(x, y)[c] + noise[((y * N + x) * 3) as usize + c]);
    (r, sp, no)
}

/// The splotch fails the map rules while the noise, at about the same mean distance, passes
/// them; neither fails max_distance, so only the map rules tell them apart.
#[test]
fn a_local_splotch_fails_the_map_rules_and_faint_noise_of_the_same_distance_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (r, sp, no) = fixtures(dir.path());
    let rules = ["--max-distance", "0.05", "--pixel-threshold", "0.02", "--max-fail-percent", "0.5", "--hard-fail", "0.03", "--json"];
    let splotch = elpips(&[&["check", s(&r), s(&sp)][..], &rules].concat(), &[]);
    assert_eq!(splotch.status.code(), Some(1), "{}", text(&splotch.stderr));
    let noise = elpips(&[&["check", s(&r), s(&no)][..], &rules].concat(), &[]);
    assert_eq!(noise.status.code(), Some(0), "{}", text(&noise.stderr));
    let (a, b) = (json(&splotch), json(&noise));
    let (da, db) = (a["distance"].as_f64().unwrap(), b["distance"].as_f64().unwrap());
    assert!(da / db < 1.5 && db / da < 1.5, "the distances should be alike: {da} vs {db}");
    assert_eq!((a["verdict"].as_str(), b["verdict"].as_str()), (Some("below"), Some("below")), "max_distance passes both");
    assert_eq!(a["map"]["verdict"], "above", "{a}");
    assert!(a["map"]["fail_percent_lower"].as_f64().unwrap() > 0.5, "{a}");
    assert!(a["map"]["max_lower"].as_f64().unwrap() > 0.03, "{a}");
    assert_eq!(b["map"]["verdict"], "below", "{b}");
    assert!(b["map"]["fail_percent_upper"].as_f64().unwrap() <= 0.5 && b["map"]["max_upper"].as_f64().unwrap() <= 0.03, "{b}");
    assert_eq!((a["map"]["samples"].as_u64(), a["settings"]["map_samples"].as_u64()), (Some(32), Some(32)));
    // The hard limit alone catches the splotch too.
    let hard = elpips(&["check", s(&r), s(&sp), "--max-distance", "0.05", "--hard-fail", "0.03", "--json"], &[]);
    assert_eq!(hard.status.code(), Some(1), "{}", text(&hard.stderr));
    assert!(json(&hard)["map"].get("fail_percent").is_none());
    // Without the map rules both pass.
    let plain = elpips(&["check", s(&r), s(&sp), "--max-distance", "0.05"], &[]);
    assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
}

/// The map rules gate alone, as idiff's do (no --max-distance): a single pair, and manifest rows
/// without a max_distance, sharded and merged; the pair's whole error rate goes to the map.
#[test]
fn map_rules_gate_without_a_distance_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (r, sp, no) = fixtures(d);
    let rules = ["--pixel-threshold", "0.02", "--max-fail-percent", "0.5", "--hard-fail", "0.03"];
    let splotch = elpips(&[&["check", s(&r), s(&sp), "--json"][..], &rules].concat(), &[]);
    assert_eq!(splotch.status.code(), Some(1), "{}", text(&splotch.stderr));
    let a = json(&splotch);
    assert_eq!(a["map"]["verdict"], "above", "{a}");
    for absent in ["max_distance", "distance", "verdict", "samples"] {
        assert!(a.get(absent).is_none(), "{absent} in a map-only result: {a}");
    }
    let noise = elpips(&[&["check", s(&r), s(&no)][..], &rules].concat(), &[]);
    assert_eq!(noise.status.code(), Some(0), "{}", text(&noise.stderr));
    assert!(text(&noise.stdout).starts_with("PASS by the map rules"), "{}", text(&noise.stdout));
    // No rule at all is still refused, and says what to give.
    let none = elpips(&["check", s(&r), s(&no)], &[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none.stderr).contains("unless a map rule is given"), "{}", text(&none.stderr));

    // A manifest: two map-only rows, one with a distance rule only, one with no rule (refused).
    let m = d.join("m.csv");
    std::fs::write(&m, "reference,candidate,name,max_distance,hard_fail\nref.png,splotch.png,splotch,,0.03\nref.png,noise.png,noise,,0.03\nref.png,ref.png,same,0.01,\n").unwrap();
    let mut parts = Vec::new();
    for shard in ["0/2", "1/2"] {
        let p = d.join(format!("s{}.json", &shard[..1]));
        let o = elpips(&["check", "--manifest", s(&m), "--shard", shard, "--summary", s(&p)], &[]);
        assert!(o.status.code() == Some(1) || o.status.code() == Some(0), "{}", text(&o.stderr));
        parts.push(p);
    }
    let junit = d.join("junit.xml");
    let o = elpips(&["check", "--merge", s(&parts[0]), s(&parts[1]), "--json", "--junit", s(&junit)], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v = json(&o);
    let statuses: Vec<(&str, &str)> = v["results"].as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(statuses, [("splotch", "fail"), ("noise", "pass"), ("same", "pass")]);
    assert!(v["results"][0].get("max_distance").is_none() && v["results"][2]["max_distance"] == 0.01);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("type=\"elpips.map\"") && xml.contains("map rule failed: largest pixel"), "{xml}");
    std::fs::write(&m, "reference,candidate,name,max_distance,hard_fail\nref.png,noise.png,noise,,0.03\nref.png,ref.png,bare,,\n").unwrap();
    let o = elpips(&["check", "--manifest", s(&m)], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("row 2 (bare) has no rule: give it a max_distance or a map rule"), "{}", text(&o.stderr));
}

/// A manifest whose rows take their tolerances from presets, checked in two shards that write
/// one report folder, merged: the suite error rate, the report, the step summary, the
/// annotations and JUnit all agree with the unsharded run.
#[test]
fn presets_suite_error_rate_report_and_github_outputs_work_sharded_and_merged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fixtures(d);
    std::fs::write(d.join("presets.toml"), "[presets.strict]\nmax_distance = 0.05\npixel_threshold = 0.02\nmax_fail_percent = 0.5\n\n[presets.loose]\nmax_distance = 0.5\n").unwrap();
    std::fs::write(d.join("m.csv"), "reference,candidate,name,preset,max_distance\nref.png,splotch.png,splotch,strict,\nref.png,noise.png,noise,strict,\nref.png,ref.png,same,loose,0.01\n").unwrap();
    let (m, presets, report) = (d.join("m.csv"), d.join("presets.toml"), d.join("report"));
    let step = d.join("step.md");
    let common = ["check", "--manifest", s(&m), "--presets", s(&presets), "--suite-error-rate", "0.06", "--report", s(&report)];
    let mut parts = Vec::new();
    for shard in ["0/2", "1/2"] {
        let p = d.join(format!("s{}.json", &shard[..1]));
        let o = elpips(&[&common[..], &["--shard", shard, "--summary", s(&p)]].concat(), &[]);
        assert!(o.status.code() == Some(1) || o.status.code() == Some(0), "{}", text(&o.stderr));
        parts.push(p);
    }
    let junit = d.join("junit.xml");
    let o = elpips(&["check", "--merge", s(&parts[0]), s(&parts[1]), "--report", s(&report), "--json", "--junit", s(&junit), "--annotations", "github"], &[("GITHUB_STEP_SUMMARY", &step)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let (annotations, summary): (Vec<&str>, Vec<&str>) = out.lines().partition(|l| l.starts_with("::"));
    let v: Value = serde_json::from_str(&summary.join("\n")).unwrap();
    assert_eq!(v["settings"]["suite_error_rate"], 0.06);
    assert_eq!(v["settings"]["error_rate"], 0.02, "0.06 over 3 rows");
    let statuses: Vec<(&str, &str)> = v["results"].as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(statuses, [("splotch", "fail"), ("noise", "pass"), ("same", "pass")]);
    assert_eq!(v["results"][0]["preset"], "strict");
    assert_eq!(v["results"][2]["max_distance"], 0.01, "a row's own column wins over its preset");
    assert_eq!(annotations.len(), 1, "{annotations:?}");
    assert!(annotations[0].starts_with("::error file=splotch.png,title=elpips check failed%3A splotch::"), "{}", annotations[0]);
    let md = std::fs::read_to_string(&step).unwrap();
    assert!(md.contains("3 pairs: **1 fail**, 0 error, 2 pass") && md.contains("| ❌ fail | splotch |"), "{md}");
    assert!(std::fs::read_to_string(&junit).unwrap().contains("<failure"));
    // The report: the merged page and the shards' own pages, every row's three images.
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(report.join("shard-0-of-2.html").is_file() && report.join("shard-1-of-2.html").is_file());
    assert_eq!(html.matches("<tr class=").count(), 3);
    let first = html.find("<tr class=").unwrap();
    assert!(html[first..].starts_with("<tr class=\"fail case\""), "failures first");
    for (row, name) in [(0, "splotch"), (1, "noise"), (2, "same")] {
        for kind in ["reference", "candidate", "heatmap"] {
            let file = format!("{row}-{name}.{kind}.png");
            assert!(report.join(&file).is_file(), "{file}");
            assert!(html.contains(&format!("src=\"{file}\"")), "{file} not on the page");
        }
    }
    assert!(!html.contains("http://") && !html.contains("https://"), "the page loads nothing from the network");
    // A merge of shards whose suite rate was tampered with is refused.
    let mut tampered: Value = serde_json::from_slice(&std::fs::read(&parts[0]).unwrap()).unwrap();
    tampered["settings"]["error_rate"] = 0.06.into();
    common::seal_summary(&mut tampered);
    std::fs::write(&parts[0], serde_json::to_vec(&tampered).unwrap()).unwrap();
    let o = elpips(&["check", "--merge", s(&parts[0]), s(&parts[1])], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is not suite_error_rate 0.06 over 3 manifest rows"), "{}", text(&o.stderr));
}

/// --update-references replaces the reference of the failing row only, and says so.
#[test]
fn update_references_replaces_failing_references_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (r, sp, _) = fixtures(d);
    std::fs::copy(&r, d.join("ref2.png")).unwrap();
    std::fs::write(d.join("m.csv"), "reference,candidate,max_distance\nref.png,splotch.png,0.0001\nref2.png,ref2.png,0.1\n").unwrap();
    let before = std::fs::read(&r).unwrap();
    let o = elpips(&["check", "--manifest", s(&d.join("m.csv")), "--metric", "lpips-alex", "--update-references"], &[]);
    assert_eq!(o.status.code(), Some(1), "the run itself failed: {}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.lines().filter(|l| l.starts_with("updated reference")).count(), 1, "{out}");
    assert!(out.contains(&format!("updated reference {} from candidate {}", r.display(), sp.display())), "{out}");
    assert_ne!(std::fs::read(&r).unwrap(), before);
    assert_eq!(std::fs::read(&r).unwrap(), std::fs::read(&sp).unwrap());
    // Now it passes, and nothing is touched.
    let o = elpips(&["check", "--manifest", s(&d.join("m.csv")), "--metric", "lpips-alex", "--update-references"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("updated"));
}
