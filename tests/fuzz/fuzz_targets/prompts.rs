//! Fuzz target `prompts`: the checks are in `aivideo::fuzz_checks::prompts`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`) that stable CI runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aivideo::fuzz_checks::prompts(data));
