//! `elpips rank`: several candidates, one reference, common draws.

mod common;

use std::process::{Command, Output};

use common::upstream;

fn elpips(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elpips")).args(args).output().expect("runs")
}

#[test]
fn rank_json_orders_candidates_and_reports_differences() {
    let (r, p0, p1) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p0.png"), upstream("lpips/imgs/ex_p1.png"));
    let (r, p0, p1) = (r.to_str().unwrap(), p0.to_str().unwrap(), p1.to_str().unwrap());
    let o = elpips(&["rank", r, p0, p1, r, "--samples", "6", "--seed", "2", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["samples"], 6);
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["ranking"][0], 2, "the reference itself ranks first: {v}");
    assert_eq!(v["candidates"][2]["distance"], 0.0);
    assert_eq!(v["differences"].as_array().unwrap().len(), 3);
    // Each distance is what `compare` reports for the same seed and samples.
    let c = elpips(&["compare", r, p1, "--samples", "6", "--seed", "2", "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(v["candidates"][1]["distance"], c["distance"]);
    let text = elpips(&["rank", r, p0, p1, "--metric", "lpips-alex"]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success() && out.lines().count() == 3, "{out}");
}

#[test]
fn rank_refuses_bad_input_with_one_line() {
    let r = upstream("lpips/imgs/ex_ref.png");
    let r = r.to_str().unwrap();
    let o = elpips(&["rank", r]);
    assert_eq!(o.status.code(), Some(2));
    let cat = upstream("elpips/inputs/cat.png");
    let o = elpips(&["rank", r, cat.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.trim_end().lines().count() == 1 && err.contains("size"), "{err}");
    let o = elpips(&["rank", r, r, "--metric", "lpips-vgg", "--samples", "4"]);
    assert_eq!(o.status.code(), Some(2));
}
