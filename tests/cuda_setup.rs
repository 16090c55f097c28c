//! The CUDA set-up without a GPU and without downloading anything: every pin of
//! `make setup DEVICE=cuda` in weights/manifest.json is complete (requirement, file name,
//! sha256, url, licence), every library it unpacks comes from one of its wheels, the libraries
//! elpips preloads are among them, and a CPU-only runtime asked for CUDA names the command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/manifest.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[test]
fn every_cuda_download_is_pinned_with_url_sha256_and_licence() {
    let m = manifest();
    let files = m["cuda"]["downloads"]["files"].as_object().expect("manifest has cuda.downloads.files");
    let mut missing = Vec::new();
    for (key, f) in files {
        let req = f["requirement"].as_str().unwrap_or("");
        let (name, version) = req.split_once("==").unwrap_or(("", ""));
        if name.is_empty() || version.is_empty() {
            missing.push(format!("{key}: requirement `{req}` is not an exact pin (name==version)"));
        }
        let filename = f["filename"].as_str().unwrap_or("");
        if !filename.ends_with(".whl") || !filename.contains(&format!("-{version}-")) {
            missing.push(format!("{key}: filename `{filename}` is not the wheel of {req}"));
        }
        if !is_sha256(f["sha256"].as_str().unwrap_or("")) {
            missing.push(format!("{key}: no sha256"));
        }
        let url = f["url"].as_str().unwrap_or("");
        if !url.starts_with("https://pypi.org/project/") || !url.contains(version) {
            missing.push(format!("{key}: url `{url}` is not the PyPI page of {req}"));
        }
        if f["licence"].as_str().unwrap_or("").trim().is_empty() {
            missing.push(format!("{key}: no licence"));
        }
        if f["pip_args"].as_array().is_none_or(|a| !a.iter().any(|x| x == "--only-binary=:all:")) {
            missing.push(format!("{key}: pip_args must fetch the binary wheel only"));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
    // The runtime is onnxruntime-gpu of the same version as the CPU runtime.
    let cpu = m["downloads"]["files"]["onnxruntime"]["requirement"].as_str().unwrap();
    let gpu = files["onnxruntime_gpu"]["requirement"].as_str().unwrap();
    assert_eq!(gpu.replace("onnxruntime-gpu", "onnxruntime"), cpu);
}

#[test]
fn every_unpacked_library_comes_from_a_pinned_wheel() {
    let m = manifest();
    let lib = &m["cuda"]["library"];
    let wheels = m["cuda"]["downloads"]["files"].as_object().unwrap();
    assert_eq!(lib["dir"], ".cache/onnxruntime-gpu/lib", "src/network/runtime.rs looks there");
    assert_eq!(lib["cuda_libs_file"], "cuda_libs.path", "src/network/cuda.rs reads that name");
    let runtime_from = lib["runtime_from"].as_str().unwrap();
    assert!(wheels.contains_key(runtime_from));
    let files = lib["files"].as_object().unwrap();
    for (name, f) in files {
        let from = f["from"].as_str().unwrap_or("");
        assert!(wheels.contains_key(from), "{name} comes from `{from}`, not a cuda download");
        assert!(f["member"].as_str().is_some_and(|s| s.ends_with(name.as_str())), "{name}: member");
        assert!(is_sha256(f["sha256"].as_str().unwrap_or("")), "{name}: no sha256");
    }
    for needed in ["libonnxruntime.so.1.31.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"] {
        assert_eq!(files[needed]["from"], runtime_from, "{needed}");
    }
    for link_target in lib["symlinks"].as_object().unwrap().values() {
        assert!(files.contains_key(link_target.as_str().unwrap()), "symlink to {link_target}");
    }
    // Every wheel's licence is copied beside its libraries.
    let licensed: BTreeSet<&str> = lib["licences"].as_object().unwrap().values().map(|l| l["from"].as_str().unwrap()).collect();
    assert_eq!(licensed, wheels.keys().map(String::as_str).collect());
}

#[test]
#[cfg(feature = "cuda")]
fn the_libraries_elpips_preloads_are_the_ones_the_set_up_unpacks() {
    let m = manifest();
    let files = m["cuda"]["library"]["files"].as_object().unwrap();
    for name in elpips::network::cuda::library_names() {
        assert!(files.contains_key(name), "{name} is preloaded by src/network/cuda.rs but not unpacked by weights/setup.py");
    }
    // What setup.py requires of an existing installation (--cuda-libs) is preloaded too.
    let setup = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/setup.py")).unwrap();
    let required = setup.split("CUDA_SONAMES_REQUIRED = (").nth(1).unwrap().split(')').next().unwrap();
    let names: Vec<_> = elpips::network::cuda::library_names().collect();
    for so in required.split(',').map(|s| s.trim().trim_matches('"')).filter(|s| !s.is_empty()) {
        assert!(names.contains(&so), "setup.py requires {so}, which elpips does not preload");
    }
}

/// The CPU runtime of `make setup`, named explicitly so the GPU runtime (if set up) is not used.
fn cpu_runtime() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/onnxruntime/lib/libonnxruntime.so.1");
    assert!(p.exists(), "{} is missing: run `make setup` first", p.display());
    p
}

#[test]
fn cuda_on_the_cpu_runtime_names_the_set_up_command() {
    let up = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/upstream/lpips/imgs");
    let (a, b) = (up.join("ex_ref.png"), up.join("ex_p0.png"));
    let o = Command::new(env!("CARGO_BIN_EXE_elpips"))
        .args(["compare", "--metric", "lpips-alex", "--device", "cuda", "--runtime"])
        .arg(cpu_runtime())
        .args([&a, &b])
        .env_remove("ELPIPS_CUDA_LIBS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for needle in ["--device cuda", "has no CUDA execution provider", "run `make setup DEVICE=cuda`"] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
    // auto on the same runtime runs on the CPU and says so.
    let o = Command::new(env!("CARGO_BIN_EXE_elpips"))
        .args(["compare", "--metric", "lpips-alex", "--device", "auto", "--json", "--runtime"])
        .arg(cpu_runtime())
        .args([&a, &b])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["device"], "cpu");
}

#[test]
fn info_names_the_provider_and_the_gpu() {
    let o = Command::new(env!("CARGO_BIN_EXE_elpips")).args(["info", "--runtime"]).arg(cpu_runtime()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("provider: CPUExecutionProvider only") && out.contains("make setup DEVICE=cuda"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("gpu:")), "{out}");
}
