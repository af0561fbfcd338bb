//! Fuzz target `multipart`: see `fuzz/src/lib.rs` (`multipart`) for what it drives and checks.
#![no_main]

use llm_gateway_fuzz::*;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multipart(data);
});
