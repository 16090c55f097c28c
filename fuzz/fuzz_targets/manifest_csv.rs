//! Fuzzes `elpips check`'s CSV manifest parser; the body and its invariants are in `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::manifest_csv(data));
