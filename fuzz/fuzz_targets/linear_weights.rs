//! Fuzzes the linear-weights reader (safetensors; seeded by the set-up's `.cache/linear`
//! files); the body and its invariants are in `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::linear_weights(data));
