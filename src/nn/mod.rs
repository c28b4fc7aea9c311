//! Neural-network pieces shared by the model families: attention, activations,
//! normalisation layers, rotary embeddings, causal 3D convolution, vectorised math and
//! safetensors loading.

pub mod activation;
pub mod attention;
pub mod conv3d;
pub mod cpu;
pub mod fastmath;
pub mod linear;
pub mod norm;
pub mod residual;
pub mod rope;
pub mod weights;

#[cfg(test)]
pub mod testing;
