//! The spatio-temporal denoiser: a small diffusion transformer over video patches with
//! factorised space and time attention, text cross-attention and adaLN-Zero conditioning.
//! It predicts the clean clip; the sampler and the loss work with the implied velocity.

use candle_core::{D, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::StarterConfig;
use super::layers::{CrossAttention, Linear, Mlp, SelfAttention, layer_norm, sincos};
use super::text_encoder::TextEmbedding;

/// Smallest flow time used to turn a clean-clip prediction into a velocity.
pub const MIN_T: f32 = 0.05;

/// Number of frequency channels of the timestep embedding.
const TIME_FREQS: usize = 64;

struct Block {
    ada: Linear,
    spatial: SelfAttention,
    temporal: SelfAttention,
    cross: CrossAttention,
    mlp: Mlp,
}

/// `x·(1 + scale) + shift`. `x` is `(B, T·N, D)`; `shift` and `scale` are `(B, Tc, D)`
/// with `Tc` = 1 (one modulation per clip) or `T` (one per token frame).
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor, g: Grid) -> Result<Tensor> {
    let scale = (scale.unsqueeze(2)? + 1.0)?;
    per_frame(x, g, |x| {
        x.broadcast_mul(&scale)?.broadcast_add(&shift.unsqueeze(2)?)
    })
}

/// `x·gate` with the same shapes as [`modulate`].
fn gated(x: &Tensor, gate: &Tensor, g: Grid) -> Result<Tensor> {
    per_frame(x, g, |x| x.broadcast_mul(&gate.unsqueeze(2)?))
}

/// Applies `f` to `x` viewed as `(B, T, N, D)` and returns it as `(B, T·N, D)`.
fn per_frame(x: &Tensor, g: Grid, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    f(&x.reshape((g.b, g.t, g.n, g.d))?)?.reshape((g.b, g.t * g.n, g.d))
}

/// Shapes of one forward pass.
#[derive(Clone, Copy)]
struct Grid {
    b: usize,
    t: usize,
    n: usize,
    d: usize,
}

impl Block {
    fn new(cfg: &StarterConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(Block {
            ada: Linear::zeros(d, 12 * d, vb.pp("ada"))?,
            spatial: SelfAttention::new(d, cfg.heads, vb.pp("spatial"))?,
            temporal: SelfAttention::new(d, cfg.heads, vb.pp("temporal"))?,
            cross: CrossAttention::new(d, d, cfg.heads, vb.pp("cross"))?,
            mlp: Mlp::new(d, cfg.mlp_ratio * d, cfg.activation, vb.pp("mlp"))?,
        })
    }

    /// `x`: `(B, T·N, D)`; `cond`: `(B, 1, D)` or `(B, T, D)` after SiLU.
    fn forward(
        &self,
        x: &Tensor,
        cond: &Tensor,
        text: &TextEmbedding,
        g: Grid,
        training: bool,
    ) -> Result<Tensor> {
        let m = self.ada.forward(cond)?.chunk(12, D::Minus1)?;
        let gate = |x: &Tensor, i: usize| gated(x, &m[i], g);
        let Grid { b, t, n, d } = g;

        // Attention within each frame.
        let h = modulate(&layer_norm(x, 1e-6)?, &m[0], &m[1], g)?;
        let h = self
            .spatial
            .forward(&h.reshape((b * t, n, d))?, None, training)?
            .reshape((b, t * n, d))?;
        let x = (x + gate(&h, 2)?)?;

        // Attention across frames, per patch position.
        let h = modulate(&layer_norm(&x, 1e-6)?, &m[3], &m[4], g)?;
        let h = h
            .reshape((b, t, n, d))?
            .transpose(1, 2)?
            .reshape((b * n, t, d))?;
        let h = self
            .temporal
            .forward(&h, None, training)?
            .reshape((b, n, t, d))?
            .transpose(1, 2)?
            .reshape((b, t * n, d))?;
        let x = (x + gate(&h, 5)?)?;

        // Attention to the prompt.
        let h = modulate(&layer_norm(&x, 1e-6)?, &m[6], &m[7], g)?;
        let h = self
            .cross
            .forward(&h, &text.tokens, Some(&text.bias), training)?;
        let x = (x + gate(&h, 8)?)?;

        let h = modulate(&layer_norm(&x, 1e-6)?, &m[9], &m[10], g)?;
        let h = self.mlp.forward(&h)?;
        x + gate(&h, 11)?
    }
}

/// Mixes the clip's condition (noise level and prompt) with an embedding of the token
/// frame through one hidden layer, so each frame gets its own modulation: what the prompt
/// asks of frame 0 and of frame 15 differs for "moving left" but not for "red".
struct FrameConditioning {
    embed: Linear,
    mix: Linear,
}

impl FrameConditioning {
    fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(FrameConditioning {
            embed: Linear::new(TIME_FREQS, d, vb.pp("embed"))?,
            mix: Linear::new(d, d, vb.pp("mix"))?,
        })
    }

    /// `cond`: `(B, D)` before SiLU → `(B, T, D)` after SiLU, for `t` token frames.
    fn forward(&self, cond: &Tensor, t: usize) -> Result<Tensor> {
        let frames: Vec<f32> = (0..t).map(|i| i as f32).collect();
        let emb = Tensor::from_vec(
            sincos(&frames, TIME_FREQS, 100.0),
            (1, t, TIME_FREQS),
            cond.device(),
        )?;
        let cond = cond.unsqueeze(1)?;
        let hidden = cond.broadcast_add(&self.embed.forward(&emb)?)?.silu()?;
        cond.broadcast_add(&self.mix.forward(&hidden)?)?.silu()
    }
}

/// Predicts the flow-matching velocity for noisy clips.
pub struct Denoiser {
    cfg: StarterConfig,
    patch_in: Linear,
    time1: Linear,
    time2: Linear,
    text_proj: Linear,
    /// Present when the config asks for per-frame conditioning.
    frame_cond: Option<FrameConditioning>,
    blocks: Vec<Block>,
    final_ada: Linear,
    patch_out: Linear,
    /// `(1, T·N, D)` fixed space + time position embedding.
    pos: Tensor,
}

impl Denoiser {
    pub fn new(cfg: &StarterConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        let pdim = cfg.token_values();
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Denoiser {
            patch_in: Linear::new(pdim, d, vb.pp("patch_in"))?,
            time1: Linear::new(TIME_FREQS, d, vb.pp("time.fc1"))?,
            time2: Linear::new(d, d, vb.pp("time.fc2"))?,
            text_proj: Linear::new(d, d, vb.pp("text_proj"))?,
            frame_cond: cfg
                .frame_conditioning
                .then(|| FrameConditioning::new(d, vb.pp("frame_cond")))
                .transpose()?,
            blocks,
            final_ada: Linear::zeros(d, 2 * d, vb.pp("final.ada"))?,
            patch_out: Linear::zeros(d, pdim, vb.pp("final.out"))?,
            pos: position_embedding(cfg, vb.device())?,
            cfg: cfg.clone(),
        })
    }

    /// `(B, T, S, S, 3)` → `(B, T/k·N, k·p·p·3)` with tubelets of `k` frames.
    fn patchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, s, _, c) = x.dims5()?;
        let (p, k) = (self.cfg.patch, self.cfg.tubelet);
        let g = s / p;
        x.reshape(vec![b, t / k, k, g, p, g, p, c])?
            .permute(vec![0, 1, 3, 5, 2, 4, 6, 7])?
            .reshape((b, t / k * g * g, k * p * p * c))
    }

    /// Inverse of [`Self::patchify`]; `t` is the clip's frame count.
    fn unpatchify(&self, x: &Tensor, t: usize) -> Result<Tensor> {
        let b = x.dim(0)?;
        let (p, k) = (self.cfg.patch, self.cfg.tubelet);
        let s = self.cfg.native_size;
        let g = s / p;
        x.reshape(vec![b, t / k, g, g, k, p, p, 3])?
            .permute(vec![0, 1, 4, 2, 5, 3, 6, 7])?
            .reshape(vec![b, t, s, s, 3])
    }

    /// The flow velocity `v = (x_t − x̂₀) / t` implied by the clean-clip prediction, with `t`
    /// floored at [`MIN_T`] so the division stays tame near the data.
    pub fn velocity(
        &self,
        x: &Tensor,
        time: &[f32],
        text: &TextEmbedding,
        training: bool,
    ) -> Result<Tensor> {
        let x0 = self.forward(x, time, text, training)?;
        let denom: Vec<f32> = time.iter().map(|t| t.max(MIN_T)).collect();
        let denom = Tensor::from_vec(denom, (time.len(), 1, 1, 1, 1), x.device())?;
        (x - x0)?.broadcast_div(&denom)
    }

    /// Predicts the clean clip `x̂₀` (x-prediction: a network narrower than a patch can
    /// still output clean images, while it could not pass pixel noise through).
    ///
    /// `x`: noisy clips `(B, T, S, S, 3)`; `time`: `(B,)` flow time in [0, 1] (1 = noise).
    pub fn forward(
        &self,
        x: &Tensor,
        time: &[f32],
        text: &TextEmbedding,
        training: bool,
    ) -> Result<Tensor> {
        let (b, frames, ..) = x.dims5()?;
        let t = frames / self.cfg.tubelet;
        let g = Grid {
            b,
            t,
            n: self.cfg.patches(),
            d: self.cfg.dim,
        };
        let scaled: Vec<f32> = time.iter().map(|v| v * 1000.0).collect();
        let temb = Tensor::from_vec(
            sincos(&scaled, TIME_FREQS, 10_000.0),
            (b, TIME_FREQS),
            x.device(),
        )?;
        let temb = self.time2.forward(&self.time1.forward(&temb)?.silu()?)?;
        let cond = (temb + self.text_proj.forward(&text.pooled)?)?;
        let cond = match &self.frame_cond {
            Some(fc) => fc.forward(&cond, t)?,
            None => cond.silu()?.unsqueeze(1)?,
        };

        let mut h = self.patch_in.forward(&self.patchify(x)?)?;
        let pos = self.pos.narrow(1, 0, t * g.n)?;
        h = h.broadcast_add(&pos)?;
        for block in &self.blocks {
            h = block.forward(&h, &cond, text, g, training)?;
        }
        let m = self.final_ada.forward(&cond)?.chunk(2, D::Minus1)?;
        let h = modulate(&layer_norm(&h, 1e-6)?, &m[0], &m[1], g)?;
        self.unpatchify(&self.patch_out.forward(&h)?, frames)
    }
}

/// Fixed 2-D sine–cosine embedding of patch positions plus a 1-D one of frame index.
fn position_embedding(cfg: &StarterConfig, device: &Device) -> Result<Tensor> {
    let g = cfg.native_size / cfg.patch;
    let d = cfg.dim;
    let quarter = d / 2;
    let rows: Vec<f32> = (0..g).map(|i| i as f32).collect();
    let row_emb = sincos(&rows, quarter, 100.0);
    let tf = cfg.token_frames();
    let frames: Vec<f32> = (0..tf).map(|i| i as f32).collect();
    let time_emb = sincos(&frames, d, 100.0);
    let mut out = Vec::with_capacity(tf * g * g * d);
    for f in 0..tf {
        for y in 0..g {
            for x in 0..g {
                for k in 0..d {
                    let spatial = if k < quarter {
                        row_emb[y * quarter + k]
                    } else if k < 2 * quarter {
                        row_emb[x * quarter + k - quarter]
                    } else {
                        0.0
                    };
                    out.push(spatial + 0.5 * time_emb[f * d + k]);
                }
            }
        }
    }
    Tensor::from_vec(out, (1, tf * g * g, d), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::starter::text_encoder::{TextEncoder, TokenBatch};
    use candle_core::DType;
    use candle_nn::VarMap;

    #[test]
    fn output_has_input_shape_and_patchify_round_trips() {
        let cfg = StarterConfig::tiny();
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let den = Denoiser::new(&cfg, vb.pp("denoiser")).unwrap();
        let enc =
            TextEncoder::new(cfg.vocabulary.len(), cfg.dim, 1, cfg.heads, vb.pp("text")).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 16, 32, 32, 3), &Device::Cpu).unwrap();
        let back = den.unpatchify(&den.patchify(&x).unwrap(), 16).unwrap();
        let diff = (&x - &back).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let batch = TokenBatch::new(&[vec![2, 13], vec![1]], 16, &Device::Cpu).unwrap();
        let text = enc.forward(&batch, false).unwrap();
        assert_eq!(text.tokens.dims(), &[2, 2, cfg.dim]);
        let y = den.forward(&x, &[0.3, 0.9], &text, false).unwrap();
        assert_eq!(y.dims(), x.dims());
    }

    #[test]
    fn frame_conditioning_gives_each_frame_its_own_condition_and_is_optional() {
        let dev = Device::Cpu;
        for on in [false, true] {
            let cfg = StarterConfig {
                frame_conditioning: on,
                ..StarterConfig::tiny()
            };
            let map = VarMap::new();
            let den = Denoiser::new(&cfg, VarBuilder::from_varmap(&map, DType::F32, &dev)).unwrap();
            let names: Vec<String> = map.data().lock().unwrap().keys().cloned().collect();
            // Older weights have no frame-conditioning tensors, and need none to load.
            assert_eq!(names.iter().any(|n| n.starts_with("frame_cond.")), on);
            assert_eq!(den.frame_cond.is_some(), on);
        }
        let cfg = StarterConfig::tiny();
        let fc = FrameConditioning::new(cfg.dim, VarBuilder::zeros(DType::F32, &dev)).unwrap();
        let map = VarMap::new();
        let fc_random = FrameConditioning::new(
            cfg.dim,
            VarBuilder::from_varmap(&map, DType::F32, &dev).pp("fc"),
        )
        .unwrap();
        let cond = Tensor::randn(0f32, 1.0, (2, cfg.dim), &dev).unwrap();
        let t = cfg.token_frames();
        // With zero weights every frame gets the clip's own condition...
        let same = fc.forward(&cond, t).unwrap();
        assert_eq!(same.dims(), &[2, t, cfg.dim]);
        let expected = cond.silu().unwrap().unsqueeze(1).unwrap();
        let diff = same
            .broadcast_sub(&expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        // ...and with trained (here random) ones, frames differ.
        let own = fc_random.forward(&cond, t).unwrap();
        let first = own.narrow(1, 0, 1).unwrap();
        let last = own.narrow(1, t - 1, 1).unwrap();
        let gap = (first - last).unwrap().abs().unwrap().max_all().unwrap();
        assert!(gap.to_scalar::<f32>().unwrap() > 1e-3);
    }
}
