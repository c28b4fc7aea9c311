//! Neural-network pieces shared by the model families: normalisation layers, rotary
//! embeddings, causal 3D convolution and safetensors loading.

pub mod activation;
pub mod conv3d;
pub mod norm;
pub mod rope;
pub mod weights;
