//! Synthetic data for the starter model: vocabulary, procedural clips, captions and the analyser.

pub mod analyse;
pub mod captions;
pub mod render;
pub mod vocab;
