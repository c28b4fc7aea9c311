//! Fuzz target `request`: the checks are in `aivideo::fuzz_checks::request`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`) that stable CI runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aivideo::fuzz_checks::request(data));
