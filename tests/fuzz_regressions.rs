//! Replays the fuzzers' seeds (`fuzz/seeds/<target>`) and every input that once crashed a
//! fuzzer (`tests/fuzz-regressions/<target>`) through the same bodies and invariants the fuzz
//! targets use (`fuzz/harness.rs`), in the normal test suite on the stable toolchain.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn seeds_and_past_crashes_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    #[allow(unused_mut)]
    let mut targets: Vec<(&str, fn(&[u8]))> = vec![
        ("decode_image", harness::decode_image),
        ("linear_weights", harness::linear_weights),
        ("capi_image", harness::capi_image),
        ("capi_options", harness::capi_options),
        ("capi_gate", harness::capi_gate),
    ];
    // The command line's parsers (built with the `cli` feature, as the binary is).
    #[cfg(feature = "cli")]
    targets.extend([
        ("manifest_csv", harness::manifest_csv as fn(&[u8])),
        ("manifest_jsonl", harness::manifest_jsonl),
        ("summary", harness::summary),
        ("rd_json", harness::rd_json),
        ("serve_request", harness::serve_request),
        ("report_text", harness::report_text),
    ]);
    let mut replayed = 0;
    for (name, run) in targets {
        for dir in [root.join("fuzz/seeds").join(name), root.join("tests/fuzz-regressions").join(name)] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
            files.sort();
            for file in files {
                let bytes = std::fs::read(&file).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&bytes));
                assert!(outcome.is_ok(), "{name}: {} fails again", file.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 8, "only {replayed} inputs found");
}

/// The summary seeds are files `elpips check --summary` and `--merge` wrote (E-LPIPS numbers
/// with all their digits): they must read back as they are, digest included.
#[cfg(feature = "cli")]
#[test]
fn summaries_written_by_check_are_accepted() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/summary");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(harness::summary_accepted(&std::fs::read(&path).unwrap()), "{} is refused", path.display());
        n += 1;
    }
    assert!(n >= 3, "only {n} summary seeds");
}
