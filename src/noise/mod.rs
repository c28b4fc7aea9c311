//! Initial noise for diffusion: a generator that reproduces PyTorch's CPU `torch.randn`, so
//! that a seed gives Diffusers-format models the latents diffusers would draw.

pub mod torch;
