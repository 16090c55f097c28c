//! `elpips serve --stdio` driven over pipes: good requests of every op answered with their ids,
//! the same distance as `elpips compare`, and malformed lines, unknown ops and fields, bad paths
//! and handles each answered with an error while the server goes on; EOF exits 0. Also runs the
//! Python client example (an external quality search over the server).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::upstream;
use serde_json::{json, Value};

/// Sends `lines` and closes stdin; returns the answers and the exit status.
fn serve(lines: &[String]) -> (Vec<Value>, Option<i32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elpips"))
        .args(["serve", "--stdio", "--seed", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let answers = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (answers, out.status.code())
}

#[test]
fn the_server_answers_every_line_and_survives_bad_ones() {
    let (r, c) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p0.png"));
    let (r, c) = (r.to_str().unwrap(), c.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let decoded = dir.path().join("d.png");
    let lines = vec![
        json!({"id": "a", "op": "compare", "reference": r, "candidate": c, "samples": 8}).to_string(),
        "this is not json".to_owned(),
        json!({"id": 2, "op": "transcode"}).to_string(),
        json!({"id": 3, "op": "compare", "reference": r, "candidate": c, "colour": 1}).to_string(),
        json!({"id": 4, "op": "compare", "reference": r, "candidate": "/no/such.png"}).to_string(),
        json!({"id": 5, "op": "prepare_reference", "reference": r}).to_string(),
        json!({"id": 6, "op": "compare_reference", "handle": 1, "candidate": c, "samples": 8}).to_string(),
        json!({"id": 7, "op": "compare_reference", "handle": 99, "candidate": c}).to_string(),
        json!({"id": 8, "op": "decide", "reference": r, "candidate": c, "max_distance": 2.0, "metric": "lpips-vgg"}).to_string(),
        json!({"id": 9, "op": "encode", "image": r, "codec": "jpeg", "quality": 60, "decoded": decoded}).to_string(),
        json!({"id": 10, "op": "release_reference", "handle": 1}).to_string(),
        json!({"id": 11, "op": "compare_reference", "handle": 1, "candidate": c}).to_string(),
        "[1, 2]".to_owned(),
        json!({"id": 12, "op": "compare", "reference": r, "candidate": c, "metric": "lpips-vgg", "samples": 4}).to_string(),
        // User text in an error stays on one line (found by the serve_request fuzz target).
        json!({"id": 13, "op": "com\npare"}).to_string(),
        json!({"id": 14, "op": "compare", "reference": r, "candidate": "/no/such\n.png"}).to_string(),
        // A count beyond u32 is refused, not wrapped; one within it but above the limit too.
        json!({"id": 15, "op": "compare", "reference": r, "candidate": c, "samples": 4294967299u64}).to_string(),
        json!({"id": 16, "op": "compare", "reference": r, "candidate": c, "samples": 4294967295u64}).to_string(),
    ];
    let (a, code) = serve(&lines);
    assert_eq!(code, Some(0), "EOF ends the server with exit 0");
    assert_eq!(a.len(), lines.len(), "{a:?}");
    let err = |k: usize, want: &str| {
        let e = a[k]["error"].as_str().unwrap_or_else(|| panic!("answer {k} is no error: {}", a[k]));
        assert!(e.contains(want), "answer {k}: {e}");
    };
    assert_eq!(a[0]["id"], "a");
    assert_eq!(a[0]["samples"], 8);
    // The same draws as `elpips compare` with that seed and sample count.
    let o = Command::new(env!("CARGO_BIN_EXE_elpips")).args(["compare", r, c, "--samples", "8", "--seed", "3", "--json"]).output().unwrap();
    let cli: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(a[0]["distance"], cli["distance"]);
    err(1, "not a JSON request");
    assert_eq!(a[1]["id"], Value::Null);
    err(2, "unknown variant `transcode`");
    assert_eq!(a[2]["id"], 2);
    err(3, "unknown field `colour`");
    err(4, "/no/such.png");
    assert_eq!(a[5]["handle"], 1);
    assert_eq!(a[6]["distance"], a[0]["distance"], "a prepared reference gives the same answer");
    err(7, "no prepared reference has handle 99");
    assert_eq!(a[8]["verdict"], "below");
    assert_eq!(a[8]["metric"], "lpips-vgg");
    assert_eq!(a[8]["device"], "cpu");
    assert!(a[9]["bytes"].as_u64().unwrap() > 100 && decoded.exists());
    assert_eq!(a[10]["released"], 1);
    err(11, "no prepared reference has handle 1");
    err(12, "a request is a JSON object");
    err(13, "lpips-vgg is deterministic");
    assert_eq!(a[13]["id"], 12);
    err(14, "unknown variant `com\\npare`");
    err(15, "/no/such\\n.png");
    err(16, "invalid value: integer `4294967299`, expected u32");
    err(17, "`samples` 4294967295 is above the limit of 1000000 samples");
}

#[test]
fn the_python_client_runs_an_external_quality_search() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/serve/quality_search.py");
    let image = upstream("lpips/imgs/ex_ref.png");
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new("python3")
        .args([example, "--elpips", env!("CARGO_BIN_EXE_elpips"), "--max-distance", "0.02", "--samples", "8", "--max-samples", "24", "--workdir"])
        .arg(dir.path())
        .arg(&image)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    let q = v["quality"].as_i64().unwrap();
    assert!((1..=100).contains(&q), "{v}");
    assert!(v["upper"].as_f64().unwrap() <= 0.02, "the chosen quality is shown below the goal: {v}");
    assert!(v["probes"].as_u64().unwrap() <= 8, "quality 100, then bisection of 1..100: at most 8 probes: {v}");
}
