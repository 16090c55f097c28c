//! Fuzzes the escaping of user text into each output format; the body and its invariants are in `fuzz/harness.rs`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::report_text(data));
