//! The CPU backends: every branch of `--backend auto` on any machine, with the CPU's features
//! and the plugin's path injected (`ELPIPS_CPU_FEATURES`, `ELPIPS_OPENVINO_PLUGIN`): no plugin,
//! a plugin that does not load, a CPU it does not serve, a CPU it serves; explicit backends
//! and bf16 honoured or refused with the reason; the backend that ran in every result's JSON.
//! Where OpenVINO really runs (an Intel CPU with the plugin set up), the same tests check that
//! it gives MLAS's figures.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::upstream;
use elpips::RuntimeOptions;

/// /proc/cpuinfo names of an AMD EPYC like the CI's (AVX2 only), and of a Sapphire Rapids.
const EPYC: &str = "AuthenticAMD:avx2,fma";
const SAPPHIRE_RAPIDS: &str = "GenuineIntel:avx2,fma,avx512f,avx512_vnni,avx512_bf16,amx_tile,amx_bf16,amx_int8";

fn elpips(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_elpips"));
    c.args(args).env_remove("ELPIPS_CPU_FEATURES").env_remove("ELPIPS_OPENVINO_PLUGIN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// LPIPS-VGG on the 64x64 pair: (backend that ran, distance, stderr).
fn lpips(extra: &[&str], envs: &[(&str, &str)]) -> (String, f64, String) {
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p1.png"));
    let mut args = vec!["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--metric", "lpips-vgg", "--json", "--threads", "1"];
    args.extend(extra);
    let o = elpips(&args, envs);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (v["backend"].as_str().unwrap().to_owned(), v["distance"].as_f64().unwrap(), stderr(&o))
}

fn assert_refused(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
}

/// A file that is not a library, to stand for a plugin that does not load.
fn broken_plugin() -> PathBuf {
    let p = std::env::temp_dir().join(format!("elpips-broken-plugin-{}.so", std::process::id()));
    std::fs::write(&p, b"not an ELF file").unwrap();
    p
}

/// Whether the plugin is set up and serves this machine's real CPU.
fn openvino_here() -> bool {
    RuntimeOptions::default().openvino_ready().is_ok()
}

#[test]
fn auto_takes_mlas_without_the_plugin_or_on_a_cpu_it_does_not_serve() {
    let (_, mlas, _) = lpips(&["--backend", "mlas"], &[]);
    // No plugin: MLAS, and nothing to warn about.
    let (backend, d, err) = lpips(&[], &[("ELPIPS_CPU_FEATURES", SAPPHIRE_RAPIDS), ("ELPIPS_OPENVINO_PLUGIN", "")]);
    assert_eq!((backend.as_str(), d), ("mlas", mlas));
    assert!(err.is_empty(), "{err}");
    // An AMD CPU: MLAS without even loading the plugin (it serves Intel only), silently.
    let (backend, d, err) = lpips(&[], &[("ELPIPS_CPU_FEATURES", EPYC)]);
    assert_eq!((backend.as_str(), d), ("mlas", mlas));
    assert!(err.is_empty(), "{err}");
    // An Intel CPU without AVX-512 (unmeasured): MLAS.
    let (backend, _, err) = lpips(&[], &[("ELPIPS_CPU_FEATURES", "GenuineIntel:avx2,fma,avx_vnni")]);
    assert_eq!(backend, "mlas");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn auto_falls_back_to_mlas_with_a_warning_when_the_plugin_does_not_load() {
    let (_, mlas, _) = lpips(&["--backend", "mlas"], &[]);
    let broken = broken_plugin();
    let envs = [("ELPIPS_CPU_FEATURES", SAPPHIRE_RAPIDS), ("ELPIPS_OPENVINO_PLUGIN", broken.to_str().unwrap())];
    let (backend, d, err) = lpips(&[], &envs);
    assert_eq!((backend.as_str(), d), ("mlas", mlas));
    assert!(err.starts_with("elpips: warning: OpenVINO unavailable, running on MLAS") && err.contains("does not load"), "{err}");
    assert_eq!(err.lines().count(), 1, "said once: {err}");
    // Asked for by name, it is an error.
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p1.png"));
    let o = elpips(&["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--metric", "lpips-vgg", "--backend", "openvino"], &envs);
    assert_refused(&o, &["OpenVINO", "does not load", "--backend auto or mlas"]);
    std::fs::remove_file(broken).unwrap();
}

#[test]
fn auto_takes_openvino_on_a_cpu_it_serves() {
    let (_, mlas, _) = lpips(&["--backend", "mlas"], &[]);
    // The features of an Intel AVX-512 CPU with the real plugin: OpenVINO where it serves this
    // machine, else (an AMD CPU pretending) the plugin's own refusal and MLAS, with a warning.
    let (backend, d, err) = lpips(&[], &[("ELPIPS_CPU_FEATURES", SAPPHIRE_RAPIDS)]);
    if openvino_here() {
        assert_eq!(backend, "openvino", "{err}");
        assert!((d - mlas).abs() <= 1e-5 * mlas, "openvino {d} vs mlas {mlas}");
    } else if RuntimeOptions::default().openvino_plugin().is_some() {
        assert_eq!((backend.as_str(), d), ("mlas", mlas));
        assert!(err.contains("offers no device for this CPU") && err.contains("Intel CPUs only"), "{err}");
    } else {
        assert_eq!(backend, "mlas");
        assert!(err.is_empty(), "{err}");
    }
    // This machine's own features decide without injection, and the JSON says what ran.
    let (backend, d, _) = lpips(&[], &[]);
    let want = match RuntimeOptions::default().backend_plan(elpips::network::backend::Arithmetic::F32) {
        Ok(elpips::network::backend::Plan::Openvino { .. }) if openvino_here() => "openvino",
        _ => "mlas",
    };
    assert_eq!(backend, want);
    assert!((d - mlas).abs() <= 1e-5 * mlas);
}

#[test]
fn explicit_openvino_runs_or_says_why_not() {
    let (_, mlas, _) = lpips(&["--backend", "mlas"], &[]);
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p1.png"));
    let args = ["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--metric", "lpips-vgg", "--backend", "openvino", "--json"];
    let o = elpips(&args, &[]);
    if openvino_here() {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["backend"], "openvino");
        assert!((v["distance"].as_f64().unwrap() - mlas).abs() <= 1e-5 * mlas);
    } else {
        assert_refused(&o, &["OpenVINO", "--backend auto or mlas"]);
    }
    assert_refused(&elpips(&args, &[("ELPIPS_OPENVINO_PLUGIN", "")]), &["not installed", "make setup"]);
    let mut cuda = args.to_vec();
    cuda.extend(["--device", "cuda"]);
    assert_refused(&elpips(&cuda, &[]), &["--backend openvino runs on the CPU"]);
}

#[test]
fn bf16_is_refused_where_it_cannot_run_and_close_to_fp32_where_it_can() {
    let (a, b) = (upstream("lpips/imgs/ex_ref.png"), upstream("lpips/imgs/ex_p1.png"));
    let args = ["compare", a.to_str().unwrap(), b.to_str().unwrap(), "--metric", "lpips-vgg", "--precision", "bf16"];
    // No bf16 in hardware: refused, never emulated.
    assert_refused(&elpips(&args, &[("ELPIPS_CPU_FEATURES", EPYC)]), &["needs a CPU with AVX512-BF16 or AMX", "AVX2"]);
    assert_refused(&elpips(&args, &[("ELPIPS_CPU_FEATURES", "GenuineIntel:avx2,fma,avx512f,avx512_vnni")]), &["AVX512-BF16 or AMX"]);
    // MLAS has no bf16 kernels; without the plugin there is nothing to run it.
    let mut mlas = args.to_vec();
    mlas.extend(["--backend", "mlas"]);
    assert_refused(&elpips(&mlas, &[("ELPIPS_CPU_FEATURES", SAPPHIRE_RAPIDS)]), &["openvino backend only"]);
    assert_refused(&elpips(&args, &[("ELPIPS_CPU_FEATURES", SAPPHIRE_RAPIDS), ("ELPIPS_OPENVINO_PLUGIN", "")]), &["not installed"]);
    let served = openvino_here() && elpips::network::backend::CpuFeatures::detect().bf16();
    if !served {
        // The CPU pretends, the plugin does not: its own refusal, as an error (bf16 never
        // falls back to fp32 silently).
        if RuntimeOptions::default().openvino_plugin().is_some() && !openvino_here() {
            assert_refused(&elpips(&args, &[("ELPIPS_CPU_FEATURES", SAPPHIRE_RAPIDS)]), &["offers no device"]);
        }
        return;
    }
    let (_, fp32, _) = lpips(&[], &[]);
    let (backend, bf16, _) = lpips(&["--precision", "bf16"], &[]);
    assert_eq!(backend, "openvino");
    // The VGG16 graph moved -0.09% at bf16; docs/performance.md has this pair's figure.
    assert!(bf16 != fp32 && (bf16 - fp32).abs() < 0.02 * fp32, "bf16 {bf16} vs fp32 {fp32}");
}

#[test]
fn info_names_the_cpu_the_plugin_and_each_precision_s_backend() {
    let o = elpips(&["info"], &[("ELPIPS_CPU_FEATURES", EPYC)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("cpu:     AuthenticAMD") && text.contains("(AVX2)"), "{text}");
    assert!(text.contains("openvino:"), "{text}");
    assert!(text.contains("backend fp32: mlas (AVX2)") && text.contains("backend int8: mlas (AVX2)"), "{text}");
    assert!(text.contains("backend bf16: none: --precision bf16 needs a CPU with AVX512-BF16 or AMX"), "{text}");
    assert!(text.contains("lpips-vgg   ok (device cpu, backend mlas)"), "{text}");
    let o = elpips(&["info"], &[("ELPIPS_CPU_FEATURES", SAPPHIRE_RAPIDS), ("ELPIPS_OPENVINO_PLUGIN", "")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("(AVX2, AVX-512, VNNI, AVX512-BF16, AMX)") && text.contains("openvino: not installed"), "{text}");
    assert!(text.contains("backend int8: mlas (AVX-512, VNNI, AMX)"), "{text}");
}
