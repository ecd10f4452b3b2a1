#![no_main]
//! Runs `harness::oidc_token` under libFuzzer (see ../README.md).

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::oidc_token(data));
