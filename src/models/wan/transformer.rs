//! Wan2.1's text-to-video diffusion transformer (diffusers' `WanTransformer3DModel`):
//! patchify, timestep and text conditioning, the blocks, output modulation, unpatchify.
//!
//! dtypes follow diffusers loading the model in bf16: the timestep MLP
//! (`condition_embedder.time_embedder`), every `scale_shift_table` and `norm2` are kept in
//! f32; the layer norms, the modulation and the residual sums around self-attention and the
//! feed-forward run in f32; the RoPE rotation runs in f32; everything else runs in the
//! VarBuilder's dtype, which is also the output's.

mod attention;
mod block;
mod config;
mod embed;

pub use attention::{SelfAttnRope, WanAttention};
pub use block::WanBlock;
pub use config::{QK_NORM, TRANSFORMER_CLASS, TransformerConfigError, WanTransformerConfig};
pub use embed::{ConditionEmbedder, Conditions, PatchEmbed, timestep_sinusoids};

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::linear::{Linear, linear};

use crate::nn::norm::layer_norm_modulate;
use crate::nn::rope::{Rope3d, WAN_ROPE_THETA};

/// The Wan2.1 transformer, loaded from the checkpoint's `transformer/` weights.
#[derive(Debug, Clone)]
pub struct WanTransformer {
    cfg: WanTransformerConfig,
    dtype: DType,
    patch_embedding: PatchEmbed,
    condition_embedder: ConditionEmbedder,
    blocks: Vec<WanBlock>,
    /// `[1, 2, dim]` f32: shift and scale of the output norm.
    scale_shift_table: Tensor,
    proj_out: Linear,
}

impl WanTransformer {
    /// Validates `cfg` and loads the weights with `vb.pp` paths equal to the checkpoint keys
    /// (`patch_embedding`, `condition_embedder.*`, `blocks.{i}.*`, `scale_shift_table`,
    /// `proj_out`). The model runs in `vb.dtype()` (f32 or bf16), with the f32 parts listed
    /// in the module documentation.
    pub fn new(cfg: &WanTransformerConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let dtype = vb.dtype();
        if !matches!(dtype, DType::F32 | DType::BF16) {
            candle_core::bail!("the Wan transformer runs in f32 or bf16, not {dtype:?}");
        }
        let dim = cfg.inner_dim();
        let patch = cfg.patch();
        let blocks = (0..cfg.num_layers)
            .map(|i| {
                WanBlock::new(
                    dim,
                    cfg.ffn_dim,
                    cfg.num_attention_heads,
                    cfg.cross_attn_norm,
                    cfg.eps,
                    vb.pp(format!("blocks.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            dtype,
            patch_embedding: PatchEmbed::new(
                cfg.in_channels,
                dim,
                patch,
                vb.pp("patch_embedding"),
            )?,
            condition_embedder: ConditionEmbedder::new(
                cfg.freq_dim,
                dim,
                cfg.text_dim,
                vb.pp("condition_embedder"),
            )?,
            blocks,
            scale_shift_table: vb
                .to_dtype(DType::F32)
                .get((1, 2, dim), "scale_shift_table")?,
            proj_out: linear(
                dim,
                cfg.out_channels() * patch.iter().product::<usize>(),
                vb.pp("proj_out"),
            )?,
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &WanTransformerConfig {
        &self.cfg
    }

    /// The dtype the model runs in (its VarBuilder's).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The patch grid `[frames, height, width]` of a latent of `[frames, height, width]`,
    /// or an error when a size is not a positive multiple of the patch or an axis is
    /// longer than `rope_max_seq_len` patches.
    pub fn patch_grid(&self, frames: usize, height: usize, width: usize) -> Result<[usize; 3]> {
        let patch = self.cfg.patch();
        let mut grid = [0; 3];
        for (i, (size, p)) in [frames, height, width].into_iter().zip(patch).enumerate() {
            if size == 0 || !size.is_multiple_of(p) {
                candle_core::bail!(
                    "latent of {frames}x{height}x{width} (frames x height x width) is not a \
                     multiple of the patch {patch:?}"
                );
            }
            grid[i] = size / p;
        }
        if grid.iter().any(|&g| g > self.cfg.rope_max_seq_len) {
            candle_core::bail!(
                "patch grid {grid:?} exceeds rope_max_seq_len {}",
                self.cfg.rope_max_seq_len
            );
        }
        Ok(grid)
    }

    /// Predicts the flow for `hidden_states` (`[B, in_channels, F, H, W]` latents) at
    /// `timestep` (`[B]`, e.g. 999.0) given `encoder_hidden_states` (`[B, L, text_dim]`, the
    /// text encoder's output). Inputs of another float dtype are cast to the model's.
    /// Returns `[B, out_channels, F, H, W]` in the model dtype.
    pub fn forward(
        &self,
        hidden_states: &Tensor,
        timestep: &Tensor,
        encoder_hidden_states: &Tensor,
    ) -> Result<Tensor> {
        // Every layer allocates the same buffers again: keep freed memory for reuse.
        let _keep = crate::allocator::KeepFreed::new();
        let (b, _, frames, height, width) = hidden_states.dims5()?;
        let grid = self.patch_grid(frames, height, width)?;
        if timestep.dims() != [b] {
            candle_core::bail!(
                "timestep must be [{b}] (one per batch entry), got {:?}",
                timestep.shape()
            );
        }
        let (tb, _, text_dim) = encoder_hidden_states.dims3()?;
        if tb != b || text_dim != self.cfg.text_dim {
            candle_core::bail!(
                "encoder_hidden_states must be [{b}, L, {}], got {:?}",
                self.cfg.text_dim,
                encoder_hidden_states.shape()
            );
        }
        let head_dim = self.cfg.attention_head_dim;
        let rope = Rope3d::new(head_dim, grid, WAN_ROPE_THETA, hidden_states.device())?;
        let rope = SelfAttnRope::new(rope, head_dim)?;
        let mut x = self
            .patch_embedding
            .forward(&hidden_states.to_dtype(self.dtype)?)?;
        let cond = self.condition_embedder.forward(
            timestep,
            &encoder_hidden_states.to_dtype(self.dtype)?,
            self.dtype,
        )?;
        for block in &self.blocks {
            x = block.forward(&x, &cond.text, &cond.timestep_proj, &rope)?;
        }

        // Output norm modulated by the timestep embedding (in f32), projection.
        let m = self
            .scale_shift_table
            .broadcast_add(&cond.temb.to_dtype(DType::F32)?.unsqueeze(1)?)?;
        let (shift, scale) = (m.narrow(1, 0, 1)?, (m.narrow(1, 1, 1)? + 1.0)?);
        let h = layer_norm_modulate(&x.to_dtype(DType::F32)?, &scale, &shift, self.cfg.eps)?
            .to_dtype(self.dtype)?;
        let y = self.proj_out.forward(&h)?;
        self.unpatchify(&y, b, grid)
    }

    /// `[B, N, pt·ph·pw·C]` to `[B, C, F, H, W]`.
    fn unpatchify(&self, y: &Tensor, b: usize, grid: [usize; 3]) -> Result<Tensor> {
        let [pt, ph, pw] = self.cfg.patch();
        let [gf, gh, gw] = grid;
        let c = self.cfg.out_channels();
        y.reshape(vec![b, gf, gh, gw, pt, ph, pw, c])?
            .permute(vec![0, 7, 1, 4, 2, 5, 3, 6])?
            .contiguous()?
            .reshape((b, c, gf * pt, gh * ph, gw * pw))
    }
}

#[cfg(test)]
#[path = "transformer_tests.rs"]
mod tests;
