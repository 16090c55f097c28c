//! `elpips check`, the CI gate: exit codes, early stopping, the undecided policy, manifests,
//! shards, merging and the reports. On the LPIPS 2AFC images (64x64), so each case is quick;
//! the rendered end-to-end case is `make test-e2e`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{seal_summary, upstream};
use serde_json::Value;

fn elpips(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elpips")).args(args).arg("--threads").arg("1").output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn images() -> (PathBuf, PathBuf, PathBuf) {
    (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p0.png"), upstream("lpips/imgs/ex_p1.png"))
}

#[test]
fn identical_pair_passes_early_and_distorted_pair_fails_early() {
    let (r, p0, _) = images();
    let o = elpips(&["check", s(&r), s(&r), "--max-distance", "0.01", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["status"], "pass");
    assert_eq!(v["verdict"], "below");
    assert!(v["samples"].as_u64().unwrap() < 200, "stopped at the first look: {v}");
    assert_eq!(v["settings"]["error_rate"], 0.05);

    let o = elpips(&["check", s(&r), s(&p0), "--max-distance", "0.01"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = String::from_utf8_lossy(&o.stdout);
    assert!(line.starts_with("FAIL ") && line.contains("> 0.01 (above;"), "{line}");
}

#[test]
fn lpips_decides_exactly_on_either_side_of_its_distance() {
    // lpips-vgg's distance for this pair is 0.568613 (tests/cli.rs).
    let (r, p0, _) = images();
    let pass = elpips(&["check", s(&r), s(&p0), "--metric", "lpips-vgg", "--max-distance", "0.5687"]);
    assert_eq!(pass.status.code(), Some(0), "{}", stderr(&pass));
    let fail = elpips(&["check", s(&r), s(&p0), "--metric", "lpips-vgg", "--max-distance", "0.5685"]);
    assert_eq!(fail.status.code(), Some(1), "{}", stderr(&fail));
}

#[test]
fn undecided_pairs_follow_the_documented_policy() {
    let (r, p0, _) = images();
    let fixed = ["--min-samples", "8", "--max-samples", "8"];
    let probe = elpips(&[&["check", s(&r), s(&p0), "--max-distance", "0", "--json"][..], &fixed].concat());
    let d = json(&probe)["distance"].as_f64().unwrap();
    // A threshold equal to the estimate cannot be decided at any error rate (the bounds straddle it).
    let t = format!("{d:.17}");
    let run = |policy: &str| elpips(&[&["check", s(&r), s(&p0), "--max-distance", &t, "--json", "--undecided", policy][..], &fixed].concat());
    let by_estimate = run("estimate");
    assert_eq!(by_estimate.status.code(), Some(0), "{}", stderr(&by_estimate));
    let v = json(&by_estimate);
    assert_eq!(v["verdict"], "undecided");
    assert!(v["message"].as_str().unwrap().contains("undecided after 8 samples"), "{v}");
    assert!(stderr(&by_estimate).contains("warning"), "a warning on stderr: {}", stderr(&by_estimate));
    assert_eq!(run("fail").status.code(), Some(1));
    assert_eq!(run("pass").status.code(), Some(0));
}

#[test]
fn bad_input_is_exit_2_with_one_line() {
    let (r, _, _) = images();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["check", s(&r), s(&r)], "--max-distance"),
        (vec!["check", s(&r), s(&r), "--max-distance", "-1"], "--max-distance"),
        (vec!["check", s(&r), s(&r), "--max-distance", "0.1", "--error-rate", "0.7"], "error rate"),
        (vec!["check", s(&r), "no/such.png", "--max-distance", "0.1"], "no/such.png"),
        (vec!["check", "--manifest", "no/such.csv", "--max-distance", "0.1"], "no/such.csv"),
        (vec!["check", "--merge", "no/such.json"], "no/such.json"),
    ];
    for (args, needle) in cases {
        let o = elpips(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: one line expected: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
    }
}

/// A manifest of five rows (the middle one broken) in a scratch folder, with relative paths.
fn manifest(dir: &Path, ext: &str) -> PathBuf {
    let (r, p0, p1) = images();
    for (name, src) in [("ref.png", &r), ("p0.png", &p0), ("p1.png", &p1)] {
        std::fs::copy(src, dir.join(name)).unwrap();
    }
    let path = dir.join(format!("frames.{ext}"));
    let text = if ext == "csv" {
        "name,reference,candidate,max_distance\nsame,ref.png,ref.png,\np0,ref.png,p0.png,\nmissing,ref.png,gone.png,\np1-generous,ref.png,p1.png,0.9\nsame-again,ref.png,ref.png,0.001\n".to_string()
    } else {
        [
            r#"{"name": "same", "reference": "ref.png", "candidate": "ref.png"}"#,
            r#"{"name": "p0", "reference": "ref.png", "candidate": "p0.png"}"#,
            r#"{"name": "missing", "reference": "ref.png", "candidate": "gone.png"}"#,
            r#"{"name": "p1-generous", "reference": "ref.png", "candidate": "p1.png", "max_distance": 0.9}"#,
            r#"{"name": "same-again", "reference": "ref.png", "candidate": "ref.png", "max_distance": 0.001}"#,
        ]
        .join("\n")
    };
    std::fs::write(&path, text).unwrap();
    path
}

fn statuses(summary: &Value) -> Vec<(String, String)> {
    summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn manifest_shards_merge_into_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "csv");
    let common = ["--metric", "lpips-alex", "--max-distance", "0.01"];

    // The whole manifest at once: an error row makes it exit 2; the other rows still run.
    let whole_path = dir.path().join("whole.json");
    let o = elpips(&[&["check", "--manifest", s(&m), "--summary", s(&whole_path)][..], &common].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("elpips check: 5 pairs: 3 pass, 1 fail, 1 error"));
    assert!(stderr(&o).contains("gone.png"), "{}", stderr(&o));
    let whole: Value = serde_json::from_slice(&std::fs::read(&whole_path).unwrap()).unwrap();
    let expected = [("same", "pass"), ("p0", "fail"), ("missing", "error"), ("p1-generous", "pass"), ("same-again", "pass")];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(statuses(&whole), expected);
    assert_eq!(whole["counts"]["error"], 1);
    assert_eq!(whole["device"], "cpu");
    assert_eq!(whole["results"][3]["max_distance"], 0.9, "a row's threshold overrides --max-distance");

    // Three shards: rows i, i+3, ...; disjoint, together all rows; merged = the whole run.
    let mut parts = Vec::new();
    for i in 0..3 {
        let p = dir.path().join(format!("shard{i}.json"));
        let shard = format!("{i}/3");
        let o = elpips(&[&["check", "--manifest", s(&m), "--shard", &shard, "--summary", s(&p)][..], &common].concat());
        let code = o.status.code();
        assert_eq!(code, Some([0, 1, 2][i]), "shard {shard}: {}", stderr(&o));
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let rows: Vec<u64> = v["results"].as_array().unwrap().iter().map(|r| r["row"].as_u64().unwrap()).collect();
        assert_eq!(rows, (0..5).filter(|r| r % 3 == i as u64).collect::<Vec<_>>());
        parts.push(p);
    }
    let junit = dir.path().join("report.xml");
    let merged_path = dir.path().join("merged.json");
    let o = elpips(&["check", "--merge", s(&parts[2]), s(&parts[0]), s(&parts[1]), "--junit", s(&junit), "--summary", s(&merged_path)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let merged: Value = serde_json::from_slice(&std::fs::read(&merged_path).unwrap()).unwrap();
    assert_eq!(statuses(&merged), statuses(&whole));
    assert_eq!(merged["counts"], whole["counts"]);
    assert_eq!(merged["device"], "cpu", "the parts' one device");

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"<testsuites tests="5" failures="1" errors="1""#), "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 5);
    assert!(xml.contains(r#"name="p0""#) && xml.contains("<failure message=\"E-LPIPS distance"), "{xml}");
    assert!(xml.contains("<error message=\"cannot read"), "{xml}");
    // Written through a temporary and a rename: nothing else is left in the folder.
    let mut names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["frames.csv", "merged.json", "p0.png", "p1.png", "ref.png", "report.xml", "shard0.json", "shard1.json", "shard2.json", "whole.json"]);

    // A lost shard or a shard given twice cannot pass as a whole run.
    let o = elpips(&["check", "--merge", s(&parts[0]), s(&parts[2])]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("missing the summaries of shard(s) 1/3"), "{}", stderr(&o));
    let o = elpips(&["check", "--merge", s(&parts[0]), s(&parts[1]), s(&parts[1]), s(&parts[2])]);
    assert!(stderr(&o).contains("given twice"), "{}", stderr(&o));
    // Shards of another manifest (or other settings) do not mix.
    let other = dir.path().join("other.json");
    elpips(&[&["check", "--manifest", s(&m), "--shard", "1/3", "--summary", s(&other), "--seed", "9"][..], &common].concat());
    let o = elpips(&["check", "--merge", s(&parts[0]), s(&other), s(&parts[2])]);
    assert!(stderr(&o).contains("different manifests or settings"), "{}", stderr(&o));
}

/// The summaries of a real two-shard run (3 rows of identical pairs), as JSON values.
fn two_shards(dir: &Path) -> [Value; 2] {
    let (r, _, _) = images();
    std::fs::copy(&r, dir.join("ref.png")).unwrap();
    let m = dir.join("m.csv");
    std::fs::write(&m, "reference,candidate\nref.png,ref.png\nref.png,ref.png\nref.png,ref.png\n").unwrap();
    [0, 1].map(|i| {
        let p = dir.join(format!("shard{i}.json"));
        let shard = format!("{i}/2");
        let o = elpips(&["check", "--manifest", s(&m), "--shard", &shard, "--metric", "lpips-alex", "--max-distance", "0.01", "--summary", s(&p)]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    })
}

#[test]
fn merge_refuses_every_hostile_summary_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = two_shards(dir.path());
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good_b = write("b.json", &serde_json::to_string_pretty(&b).unwrap());
    let merge = |first: &Path, rest: &[&Path]| {
        let mut args = vec!["check", "--merge", s(first)];
        args.extend(rest.iter().map(|p| s(p)));
        elpips(&args)
    };
    // The untouched pair merges (so each refusal below is the edit's doing).
    let good_a = write("a.json", &serde_json::to_string_pretty(&a).unwrap());
    let o = merge(&good_a, &[&good_b]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    type Edit = fn(&mut Value);
    // (edit of shard 0, reseal after it, what the one-line error says)
    let cases: Vec<(&str, Edit, bool, &str)> = vec![
        ("count-huge", |v| v["shard"]["count"] = 1_000_000_000_000_000_000u64.into(), true, "shard 0/1000000000000000000 is out of range"),
        ("index-past-count", |v| v["shard"]["index"] = 2.into(), true, "shard 2/2 is out of range"),
        ("count-zero", |v| v["shard"]["count"] = 0.into(), true, "shard 0/0 is out of range"),
        ("rows-huge", |v| v["manifest_rows"] = serde_json::json!(1e30), true, "invalid type: floating point `1e+30`, expected u64"),
        ("rows-string", |v| v["manifest_rows"] = "3".into(), true, "invalid type: string \"3\", expected u64"),
        ("threshold-negative", |v| v["results"][0]["max_distance"] = (-1.0).into(), true, "max_distance -1 must be a finite number >= 0"),
        ("name-missing", |v| drop(v["results"][0].as_object_mut().unwrap().remove("name")), true, "missing field `name`"),
        ("status-unknown", |v| v["results"][0]["status"] = "ok".into(), true, "unknown variant `ok`"),
        ("field-unknown", |v| v["extra"] = 1.into(), true, "unknown field `extra`"),
        ("row-dropped", |v| drop(v["results"].as_array_mut().unwrap().pop()), true, "holds 1 results, but shard 0/2 of 3 rows has 2: a row is missing or added"),
        ("row-renumbered", |v| v["results"][1]["row"] = 1.into(), true, "results[1] is row 1, expected row 2"),
        ("status-edited", |v| v["results"][0]["status"] = "fail".into(), true, "status fail does not follow from verdict below"),
        ("status-edited-unsealed", |v| v["results"][0]["status"] = "fail".into(), false, "its digest does not match its contents"),
        ("counts-edited", |v| v["counts"]["pass"] = 7.into(), true, "do not match its results"),
        ("digest-missing", |v| drop(v.as_object_mut().unwrap().remove("digest")), false, "has no digest"),
        ("format-1", |v| v["elpips_check"] = 1.into(), false, "format 2, found 1"),
        ("samples-over-max", |v| v["results"][0]["samples"] = 100000.into(), true, "samples 100000 must be between 1 and max_samples 200"),
        ("settings-edited", |v| v["settings"]["seed"] = 9.into(), true, "different manifests or settings"),
    ];
    for (name, edit, reseal, needle) in cases {
        let mut v = a.clone();
        edit(&mut v);
        if reseal {
            seal_summary(&mut v);
        }
        let p = write(&format!("{name}.json"), &serde_json::to_string_pretty(&v).unwrap());
        let o = merge(&p, &[&good_b]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line expected: {err}");
        assert!(err.contains(needle), "{name}: `{needle}` not in {err}");
    }
    // A field's mistake names the file and the line serde_json found it on.
    let mut v = a.clone();
    v["manifest_rows"] = "3".into();
    seal_summary(&mut v);
    let text = serde_json::to_string_pretty(&v).unwrap();
    let line = text.lines().position(|l| l.contains("\"manifest_rows\"")).unwrap() + 1;
    let p = write("typed.json", &text);
    assert!(stderr(&merge(&p, &[&good_b])).contains(&format!("typed.json:{line}: invalid type")));

    // A truncated file, a duplicated shard, a directory, a named pipe.
    let full = serde_json::to_string_pretty(&a).unwrap();
    let cut = write("cut.json", &full[..full.len() / 2]);
    let fifo = dir.path().join("fifo.json");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let others: Vec<(&str, Vec<&Path>, &str)> = vec![
        ("truncated", vec![&cut, &good_b], "EOF while parsing"),
        ("shard-twice", vec![&good_a, &good_a, &good_b], "shard 0/2 is given twice"),
        ("shard-lost", vec![&good_b], "missing the summaries of shard(s) 0/2"),
        ("directory", vec![dir.path(), &good_b], "it is a directory, not a file; the summary must be a regular file"),
        ("fifo", vec![&fifo, &good_b], "it is a named pipe, not a file; the summary must be a regular file"),
    ];
    for (name, paths, needle) in others {
        let o = merge(paths[0], &paths[1..]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line expected: {err}");
        assert!(err.contains(needle), "{name}: `{needle}` not in {err}");
    }
    // The same for manifests, and a shard count above the rows.
    for (m, needle) in [(&fifo, "it is a named pipe, not a file; the manifest must be a regular file"), (&dir.path().to_path_buf(), "it is a directory")] {
        let o = elpips(&["check", "--manifest", s(m), "--max-distance", "0.1"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(needle), "{}", stderr(&o));
    }
    let o = elpips(&["check", "--manifest", s(&dir.path().join("m.csv")), "--shard", "0/4", "--max-distance", "0.1"]);
    assert!(stderr(&o).contains("has only 3 rows; use at most 3 shards"), "{}", stderr(&o));
}

#[test]
fn json_lines_manifests_read_like_csv() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), "jsonl");
    let o = elpips(&["check", "--manifest", s(&m), "--metric", "lpips-alex", "--max-distance", "0.01", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["manifest_rows"], 5);
    assert_eq!(statuses(&v)[1], ("p0".to_string(), "fail".to_string()));
}

#[test]
fn manifest_mistakes_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("a.csv", "reference,candidate,threshold\na.png,b.png,1\n", "unknown column `threshold`"),
        ("b.csv", "reference,candidate,max_distance\na.png,b.png,abc\n", "b.csv:2: max_distance `abc` is not a number"),
        ("c.csv", "reference,candidate\n", "lists no pairs"),
        ("d.jsonl", "{\"reference\": \"a.png\"}\n", "d.jsonl:1:"),
        ("e.csv", "reference,candidate\na.png,b.png\n", "row 1 (b.png) has no rule: give it a max_distance or a map rule"),
    ];
    for (name, text, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let args: Vec<&str> = if name == "e.csv" { vec!["check", "--manifest", s(&p)] } else { vec!["check", "--manifest", s(&p), "--max-distance", "0.1"] };
        let o = elpips(&args);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{name}: `{needle}` not in {}", stderr(&o));
    }
    let p = dir.path().join("a.csv");
    let o = elpips(&["check", "--manifest", s(&p), "--max-distance", "0.1", "--shard", "3/3"]);
    assert!(stderr(&o).contains("--shard takes I/N"), "{}", stderr(&o));
}

#[test]
fn heatmaps_for_one_pair_and_for_the_pairs_that_did_not_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (r, p0, _) = images();
    let one = dir.path().join("p0.png");
    let o = elpips(&["check", s(&r), s(&p0), "--metric", "lpips-alex", "--max-distance", "0.01", "--heatmap", s(&one), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(json(&o)["heatmap"]["path"], s(&one));
    assert!(std::fs::read(&one).unwrap().starts_with(b"\x89PNG"));

    let m = manifest(dir.path(), "csv");
    let maps = dir.path().join("maps");
    let o = elpips(&["check", "--manifest", s(&m), "--metric", "lpips-alex", "--max-distance", "0.01", "--heatmap-dir", s(&maps)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(&maps).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["1-p0.png"], "only the failing pair (the error row has no images)");

    let o = elpips(&["check", "--manifest", s(&m), "--max-distance", "0.01", "--heatmap", s(&one)]);
    assert!(stderr(&o).contains("use --heatmap-dir"), "{}", stderr(&o));
}

/// `--shard auto` takes the shard from the engine running the job: the same rows as the
/// explicit `--shard I/N`, Bazel's status file touched, engines that disagree refused, and the
/// whole run where no engine shards the job.
#[test]
fn shard_auto_reads_the_engine_running_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _, _) = images();
    std::fs::copy(&r, dir.path().join("ref.png")).unwrap();
    let m = dir.path().join("m.csv");
    std::fs::write(&m, "reference,candidate\nref.png,ref.png\nref.png,ref.png\nref.png,ref.png\n").unwrap();
    let engines = ["TEST_SHARD_INDEX", "TEST_TOTAL_SHARDS", "TEST_SHARD_STATUS_FILE", "CI_NODE_INDEX", "CI_NODE_TOTAL", "BUILDKITE_PARALLEL_JOB", "BUILDKITE_PARALLEL_JOB_COUNT", "SLURM_ARRAY_TASK_ID"];
    let run = |vars: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_elpips"));
        c.args(["check", "--manifest", s(&m), "--shard", "auto", "--metric", "lpips-alex", "--max-distance", "0.01", "--json", "--threads", "1"]);
        for v in engines {
            c.env_remove(v);
        }
        c.envs(vars.iter().copied()).output().unwrap()
    };
    let status = dir.path().join("shard-status");
    let o = run(&[("TEST_SHARD_INDEX", "1"), ("TEST_TOTAL_SHARDS", "2"), ("TEST_SHARD_STATUS_FILE", s(&status))]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["shard"], serde_json::json!({"index": 1, "count": 2}));
    assert_eq!(v["results"].as_array().unwrap().iter().map(|r| r["row"].as_u64().unwrap()).collect::<Vec<_>>(), [1]);
    assert!(status.is_file(), "Bazel's status file says the test shards itself");
    let v = json(&run(&[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "2")]));
    assert_eq!(v["shard"], serde_json::json!({"index": 0, "count": 2}));
    let v = json(&run(&[("CI_NODE_TOTAL", "1")]));
    assert_eq!((v["shard"].clone(), v["results"].as_array().unwrap().len()), (Value::Null, 3), "no engine shards this job: the whole run");
    let o = run(&[("TEST_SHARD_INDEX", "0"), ("TEST_TOTAL_SHARDS", "2"), ("BUILDKITE_PARALLEL_JOB", "1"), ("BUILDKITE_PARALLEL_JOB_COUNT", "2")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Bazel") && stderr(&o).contains("but Buildkite"), "{}", stderr(&o));
}
