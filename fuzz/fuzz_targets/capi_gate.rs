//! Fuzzes the C ABI's gate (`elpips_decide`'s integers); the body and its invariants are in `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::capi_gate(data));
