//! A tiny run of `examples/attack` (32x32, 25 steps, 2 E-LPIPS samples per step): its `--json`
//! has exactly the documented schema, the LPIPS attack stays within epsilon of the source, and
//! LPIPS-VGG is fooled more than E-LPIPS-VGG: the image stays nearer the target (RMSE 0.046 vs
//! 0.153 when written; every draw is seeded, so the run is reproducible). The full run is
//! `make attack`.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // cargo builds the examples before it runs any test: target/<profile>/examples/<name>.
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(p.is_file(), "{} not built (cargo test builds examples)", p.display());
    p
}

#[test]
fn tiny_attack_prints_the_schema_and_lpips_is_fooled_more() {
    let out = Command::new(example("attack"))
        .args(["--json", "--size", "32", "--steps", "25", "--step", "0.004", "--samples", "2", "--check-samples", "4"])
        .args(["--eval-samples", "8", "--bisections", "8", "--threads", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "attack failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["attacks"]);
    let attacks = v["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 2);
    let mut end = std::collections::HashMap::new();
    for a in attacks {
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, ["attacked_metric", "epsilon", "rmse_to_target_end", "rmse_to_target_start", "steps", "to_source"]);
        let metric = a["attacked_metric"].as_str().unwrap();
        assert!(metric == "lpips-vgg" || metric == "elpips-vgg");
        let eps = a["epsilon"].as_f64().unwrap();
        assert!(eps > 0.0);
        assert_eq!(a["steps"].as_u64(), Some(25));
        let to = a["to_source"].as_object().unwrap();
        assert_eq!(to.len(), 2);
        let (dl, de) = (to["lpips-vgg"].as_f64().unwrap(), to["elpips-vgg"].as_f64().unwrap());
        assert!(dl.is_finite() && de.is_finite() && dl >= 0.0 && de >= 0.0);
        let (r0, r1) = (a["rmse_to_target_start"].as_f64().unwrap(), a["rmse_to_target_end"].as_f64().unwrap());
        assert!(r0 > 0.1 && (0.0..=r0 + 1e-9).contains(&r1), "{r0} {r1}");
        if metric == "lpips-vgg" {
            // LPIPS is deterministic: the projection's value is the reported one.
            assert!(dl <= eps, "LPIPS attack left the epsilon ball: {dl}");
        }
        end.insert(metric.to_string(), r1);
    }
    assert!(end["lpips-vgg"] < end["elpips-vgg"], "LPIPS was not fooled more than E-LPIPS: {end:?}");
}
