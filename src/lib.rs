//! aivideo: generate short videos from text prompts locally, with a job history.

pub mod media;
pub mod pipeline;
