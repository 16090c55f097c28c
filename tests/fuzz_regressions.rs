//! Replays the fuzzers' seeds (`fuzz/seeds/<target>`) and every input that once crashed a
//! fuzzer (`tests/fuzz-regressions/<target>`) through the same bodies and invariants the fuzz
//! targets use (`fuzz/harness.rs`), in the normal test suite on the stable toolchain.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

#[test]
fn seeds_and_past_crashes_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let targets: [(&str, fn(&[u8])); 4] = [
        ("decode_image", harness::decode_image),
        ("linear_weights", harness::linear_weights),
        ("capi_image", harness::capi_image),
        ("capi_options", harness::capi_options),
    ];
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
