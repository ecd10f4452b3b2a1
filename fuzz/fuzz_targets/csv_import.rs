#![no_main]
//! Runs `harness::csv_import` under libFuzzer (see ../README.md).

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::csv_import(data));
