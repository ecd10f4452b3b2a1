#![no_main]
//! Runs `harness::oidc_authorize` under libFuzzer (see ../README.md).

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::oidc_authorize(data));
