//! Fuzz target `eventstream`: see `fuzz/src/lib.rs` (`eventstream`) for what it drives and checks.
#![no_main]

#[allow(unused_imports)]
use llm_gateway::formats::Format;
use llm_gateway_fuzz::*;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    eventstream(data);
});
