//! Fuzz target `stream_anthropic`: see `fuzz/src/lib.rs` (`stream`) for what it drives and checks.
#![no_main]

#[allow(unused_imports)]
use llm_gateway::formats::Format;
use llm_gateway_fuzz::*;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    stream(Format::Anthropic, data);
});
