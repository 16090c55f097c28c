//! Fuzzes `elpips rd --merge`'s rd.json reader; the body and its invariants are in `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::rd_json(data));
