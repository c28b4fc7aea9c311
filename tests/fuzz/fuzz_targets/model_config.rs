//! Fuzz target `model_config`: the checks are in `aivideo::fuzz_checks::model_config`, shared with the corpus
//! replay test (`tests/fuzz_corpus.rs`) that stable CI runs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aivideo::fuzz_checks::model_config(data));
