//! One output contract for every subcommand (docs/renderer.md, "Exit status and JSON"): exit 0
//! on success, 1 when a gate failed or a goal is not reachable, 2 on an error; under `--json`
//! stdout carries exactly one JSON record in every case, an error as
//! `{"error": {"message", "exit_code"}}`, and every result names what produced it with the same
//! names (metric, sampler, precision, device, backend, seed; the image compared is `candidate`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn elpips(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elpips")).args(args).output().expect("runs")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_png(dir: &Path, name: &str, shift: u8) -> PathBuf {
    let img = image::RgbImage::from_fn(48, 40, |x, y| image::Rgb([(x * 7) as u8 ^ shift, (y * 5) as u8, ((x + y) * 3) as u8]));
    let p = dir.join(name);
    img.save(&p).unwrap();
    p
}

/// The one JSON record on stdout, and the exit status, which must be `code`.
fn record(args: &[&str], code: i32) -> Value {
    let o = elpips(args);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "{args:?}\nstdout: {out}\nstderr: {err}");
    assert_eq!(out.trim_end().lines().count(), 1, "one record on stdout for {args:?}: {out}");
    serde_json::from_str(out.trim_end()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// An error record: the message that stderr's one line also says, and the exit status.
fn assert_error_record(v: &Value, code: i64, needle: &str) {
    let e = &v["error"];
    assert_eq!(e["exit_code"], code, "{v}");
    let m = e["message"].as_str().unwrap_or_else(|| panic!("no message in {v}"));
    assert!(m.contains(needle), "`{needle}` not in {m}");
}

/// The fields that say what produced a result, with their vocabulary's values.
fn assert_provenance(v: &Value, fields: &[&str]) {
    for f in fields {
        let x = &v[f];
        match *f {
            "metric" => assert!(x.as_str().is_some_and(|m| m.starts_with("lpips-") || m.starts_with("elpips-")), "{f} in {v}"),
            "sampler" => assert!(matches!(x.as_str(), Some("iid" | "stratified" | "control")), "{f} in {v}"),
            "precision" => assert!(matches!(x.as_str(), Some("fp32" | "fp16" | "int8")), "{f} in {v}"),
            "device" => assert!(x.as_str().is_some_and(|d| d.starts_with("cpu") || d.starts_with("cuda")), "{f} in {v}"),
            "backend" => assert!(x.as_str().is_some_and(|b| !b.is_empty()), "{f} in {v}"),
            "seed" => assert!(x.as_u64().is_some(), "{f} in {v}"),
            _ => unreachable!(),
        }
    }
}

const ALL: [&str; 6] = ["metric", "sampler", "precision", "device", "backend", "seed"];

#[test]
fn every_subcommand_keeps_the_exit_codes_and_the_json_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (write_png(dir.path(), "a.png", 0), write_png(dir.path(), "b.png", 9), write_png(dir.path(), "c.png", 40));
    let missing = dir.path().join("missing.png");
    let e = ["--metric", "elpips-vgg", "--samples", "2", "--seed", "3"];

    // compare
    let v = record(&[&["compare", "--json", s(&a), s(&b)][..], &e].concat(), 0);
    assert_provenance(&v, &ALL);
    assert_eq!(v["candidate"], s(&b));
    assert_error_record(&record(&["compare", "--json", s(&a), s(&missing)], 2), 2, "missing.png");
    // An argument clap refuses gets its record too.
    assert_error_record(&record(&["compare", "--json", s(&a), s(&b), "--samples", "x"], 2), 2, "--samples");

    // check: pass (0), fail (1), error (2); the single pair's record names what produced it.
    let gate = ["--metric", "lpips-alex"];
    let v = record(&[&["check", "--json", s(&a), s(&b), "--max-distance", "1"][..], &gate].concat(), 0);
    assert_provenance(&v, &ALL);
    assert_eq!((v["candidate"].as_str(), v["status"].as_str()), (Some(s(&b)), Some("pass")), "{v}");
    let v = record(&[&["check", "--json", s(&a), s(&c), "--max-distance", "0.0001"][..], &gate].concat(), 1);
    assert_eq!(v["status"], "fail", "{v}");
    assert!(v.get("error").is_none(), "{v}");
    let v = record(&["check", "--json", s(&a), s(&missing), "--max-distance", "1"], 2);
    assert_eq!(v["status"], "error", "{v}");
    assert_error_record(&v, 2, "missing.png");
    assert_error_record(&record(&["check", "--json", "--manifest", s(&missing)], 2), 2, "missing.png");
    // The sampler story is one: check takes control variates as the library's decide does.
    let v = record(&[&["check", "--json", s(&a), s(&b), "--max-distance", "1", "--sampler", "control", "--max-samples", "32"][..], &e[..2]].concat(), 0);
    assert_eq!(v["sampler"], "control", "{v}");

    // rank
    let v = record(&[&["rank", "--json", s(&a), s(&b), s(&c)][..], &e].concat(), 0);
    assert_provenance(&v, &ALL);
    let names: Vec<&str> = v["candidates"].as_array().unwrap().iter().map(|c| c["candidate"].as_str().unwrap()).collect();
    assert_eq!(names, [s(&b), s(&c)]);
    assert_error_record(&record(&["rank", "--json", s(&a), s(&missing), s(&b)], 2), 2, "missing.png");

    // tune: a goal out of reach is exit 1 with its own record, not an invalid argument.
    let out = dir.path().join("t.jpg");
    let v = record(&["tune", "--json", "--codec", "jpeg", "--metric", "lpips-alex", "--max-distance", "0.5", s(&a), "-o", s(&out)], 0);
    assert_provenance(&v, &ALL);
    let v = record(&["tune", "--json", "--codec", "jpeg", "--metric", "lpips-alex", "--max-distance", "0.000001", s(&a), "-o", s(&out)], 1);
    assert_error_record(&v, 1, "goal not reachable");
    let o = elpips(&["tune", "--codec", "jpeg", "--metric", "lpips-alex", "--max-distance", "0.000001", s(&a), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("elpips: tune: goal not reachable") && err.trim_end().lines().count() == 1, "{err}");
    assert_error_record(&record(&["tune", "--json", "--codec", "jpeg", "--max-distance", "0.1", s(&missing), "-o", s(&out)], 2), 2, "missing.png");

    // rd: its rd.json keeps the settings record (metric, sampler, seed) and the run's device
    // and backend; an error is the shared record.
    let rd = dir.path().join("rd");
    let v = record(&["rd", "-q", "--json", "--codec", "jpeg", "--settings", "30,80", "--metric", "lpips-alex", "--bootstrap=0", "--out", s(&rd), s(&a)], 0);
    assert_provenance(&v["settings"], &["metric", "sampler", "seed"]);
    assert_provenance(&v, &["device", "backend"]);
    assert_error_record(&record(&["rd", "--json", "--codec", "jpeg", "--settings", "30,80", "--out", s(&rd), s(&missing)], 2), 2, "missing.png");

    // info
    let v = record(&["info", "--json"], 0);
    assert!(v.get("error").is_none(), "{v}");
    assert_error_record(&record(&["info", "--json", "--bogus"], 2), 2, "--bogus");
}
