//! No weights file can run code in Rust: the hostile pickle-based files of
//! weights/test_convert.py (an object-array .npy whose pickle runs a shell command, a legacy
//! .pth whose first pickle is the payload, a zip .pth whose data.pkl is it, a numpy global
//! reaching exec) are refused unread by `LinearWeights` and by `--lin-weights`, with the
//! command that converts them, and the marker their payload would create never appears.

mod common;
mod weight_files;

use std::process::Command;

use elpips::linear_weights::{LinearWeights, CONVERT_COMMAND};

#[test]
fn hostile_files_are_refused_by_the_library_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("MARKER");
    let png = common::upstream("lpips/imgs/ex_ref.png");
    for (name, bytes, what) in weight_files::hostile_files(&marker) {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let e = LinearWeights::from_file(&path).unwrap_err().to_string();
        assert!(
            e.contains(what) && e.contains(CONVERT_COMMAND),
            "{name}: {e}"
        );

        let out = Command::new(env!("CARGO_BIN_EXE_elpips"))
            .arg("compare")
            .args([&png, &png])
            .args(["--metric", "lpips-alex", "--lin-weights"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: one line: {stderr}"
        );
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains(CONVERT_COMMAND),
            "{name}: {stderr}"
        );
        assert!(!marker.exists(), "{name}: its payload ran");
    }
}

#[test]
fn a_converted_file_is_accepted_where_its_source_is_refused() {
    // The same weights as the lpips-alex model's own: the distance must not change.
    let lw = common::linear_weights("lpips_alex.safetensors");
    let png = common::upstream("lpips/imgs/ex_ref.png");
    let p0 = common::upstream("lpips/imgs/ex_p0.png");
    let run = |extra: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_elpips"))
            .arg("compare")
            .args([&png, &p0])
            .args(["--metric", "lpips-alex"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run(&["--lin-weights".as_ref(), lw.as_os_str()]), run(&[]));
}
