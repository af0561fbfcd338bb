//! Fuzz target `stream_usage`: see `fuzz/src/lib.rs` (`stream_usage`) for what it drives and checks.
#![no_main]

#[allow(unused_imports)]
use llm_gateway::formats::Format;
use llm_gateway_fuzz::*;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stream_usage(data);
});
