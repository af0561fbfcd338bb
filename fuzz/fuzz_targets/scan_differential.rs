//! Fuzz target `scan_differential`: every JSON fast path (`formats::scan`: the stream chunk,
//! the answer check, the request peek and admission check, the usage readers) against its
//! `serde_json` twin on the same bytes; a panic is a fast path that accepts what its twin
//! refuses, or reads it differently.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    llm_gateway::formats::fast_paths_agree(data);
});
