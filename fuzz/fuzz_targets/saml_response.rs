#![no_main]
//! Runs `harness::saml_response` under libFuzzer (see ../README.md).

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::saml_response(data));
