#![no_main]
//! Runs `harness::idp_metadata` under libFuzzer (see ../README.md).

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::idp_metadata(data));
