//! aivideo: generate short videos from text prompts locally, with a job history.

pub mod eval;
pub mod media;
pub mod pipeline;
pub mod rng;
pub mod synth;
pub mod train;
