//! Rotary position embeddings: Wan's 3D RoPE (frame, row, column) on interleaved pairs.
//!
//! Wan splits each attention head's channels into three groups, one per axis of the
//! patch grid: `h = w = 2·⌊D/6⌋` channels for the rows and the columns and `t = D − h − w`
//! for the frames. Within a group of `d` channels, pair `j` (channels `2j`, `2j+1`) turns
//! by `pos · θ^(−2j/d)` radians, where `pos` is the token's index along that axis. The
//! angles are computed in f64 and their cosines and sines stored in f32, as diffusers does.

use candle_core::{DType, Device, Result, Tensor};

use super::cpu::{is_cpu_f32, map_rows};
use super::norm::{rms_norm, rms_row};

/// Wan's base wavelength.
pub const WAN_ROPE_THETA: f64 = 10_000.0;

/// How Wan splits `head_dim` channels between the frame, row and column axes.
///
/// Fails when `head_dim` is odd (the channels are rotated in pairs).
pub fn wan_axis_dims(head_dim: usize) -> Result<[usize; 3]> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        candle_core::bail!("rotary embedding needs an even, non-zero head dim, got {head_dim}");
    }
    let hw = 2 * (head_dim / 6);
    Ok([head_dim - 2 * hw, hw, hw])
}

/// Cosine and sine tables of Wan's 3D RoPE for one `(frames, height, width)` patch grid.
///
/// Tokens are ordered frame-major, then row, then column (the order of a flattened
/// `[frames, height, width]` grid); the tables are `[tokens, head_dim / 2]` f32, one
/// column per rotated pair.
#[derive(Debug, Clone)]
pub struct Rope3d {
    grid: [usize; 3],
    head_dim: usize,
    cos: Tensor,
    sin: Tensor,
}

impl Rope3d {
    /// Precomputes the tables for a `grid = [frames, height, width]` of tokens.
    pub fn new(head_dim: usize, grid: [usize; 3], theta: f64, device: &Device) -> Result<Self> {
        let dims = wan_axis_dims(head_dim)?;
        // Per axis, `(cos, sin)` of every pair at every position along it: [len][d/2].
        let axis_tables: Vec<Vec<(Vec<f32>, Vec<f32>)>> = dims
            .iter()
            .zip(grid)
            .map(|(&d, len)| {
                let inv: Vec<f64> = (0..d / 2)
                    .map(|j| 1.0 / theta.powf((2 * j) as f64 / d as f64))
                    .collect();
                (0..len)
                    .map(|p| {
                        let angles = inv.iter().map(|f| p as f64 * f);
                        (
                            angles.clone().map(|a| a.cos() as f32).collect(),
                            angles.map(|a| a.sin() as f32).collect(),
                        )
                    })
                    .collect()
            })
            .collect();
        let tokens = grid.iter().product::<usize>();
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(tokens * half);
        let mut sin = Vec::with_capacity(tokens * half);
        for (cf, sf) in &axis_tables[0] {
            for (ch, sh) in &axis_tables[1] {
                for (cw, sw) in &axis_tables[2] {
                    cos.extend_from_slice(cf);
                    cos.extend_from_slice(ch);
                    cos.extend_from_slice(cw);
                    sin.extend_from_slice(sf);
                    sin.extend_from_slice(sh);
                    sin.extend_from_slice(sw);
                }
            }
        }
        Ok(Self {
            grid,
            head_dim,
            cos: Tensor::from_vec(cos, (tokens, half), device)?,
            sin: Tensor::from_vec(sin, (tokens, half), device)?,
        })
    }

    /// The `[frames, height, width]` grid the tables cover.
    pub fn grid(&self) -> [usize; 3] {
        self.grid
    }

    /// Number of tokens (`frames · height · width`).
    pub fn tokens(&self) -> usize {
        self.grid.iter().product()
    }

    /// `[tokens, head_dim / 2]` f32 cosines.
    pub fn cos(&self) -> &Tensor {
        &self.cos
    }

    /// `[tokens, head_dim / 2]` f32 sines.
    pub fn sin(&self) -> &Tensor {
        &self.sin
    }

    /// The same rotation multiplied by `factor` (the tables scaled in f32): used to fold
    /// attention's `1/√d` into the queries' rotation at no extra pass over them.
    pub fn scaled(&self, factor: f64) -> Result<Self> {
        Ok(Self {
            grid: self.grid,
            head_dim: self.head_dim,
            cos: (&self.cos * factor)?,
            sin: (&self.sin * factor)?,
        })
    }

    /// Rotates `x` (`[batch, heads, tokens, head_dim]`): each pair `(x₀, x₁)` becomes
    /// `(x₀·cos − x₁·sin, x₀·sin + x₁·cos)`. Computed in f32, returned in `x`'s dtype.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, tokens, head_dim) = x.dims4()?;
        if tokens != self.tokens() || head_dim != self.head_dim {
            candle_core::bail!(
                "rotary embedding for {} tokens of head dim {} applied to {:?}",
                self.tokens(),
                self.head_dim,
                x.shape()
            );
        }
        let dtype = x.dtype();
        // `to_dtype` also makes a strided input contiguous, as `rope_i` requires.
        let xf = if dtype == DType::F32 {
            x.contiguous()?
        } else {
            x.to_dtype(DType::F32)?
        };
        candle_nn::rotary_emb::rope_i(&xf, &self.cos, &self.sin)?.to_dtype(dtype)
    }
}

impl Rope3d {
    /// RMS normalisation of `x` `[B, N, H·D]` across all `H·D` channels (times `weight`,
    /// in f32, rounded to `x`'s dtype), then [`Rope3d::apply`] to each head. Returns
    /// `[B, H, N, D]`: on the CPU in f32 a view of one `[B, N, H·D]` tensor made in a
    /// single pass.
    pub fn rms_norm_apply(&self, x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
        let (b, n, channels) = x.dims3()?;
        let d = self.head_dim;
        if n != self.tokens() || !channels.is_multiple_of(d) || weight.elem_count() != channels {
            candle_core::bail!(
                "rotary embedding for {} tokens of head dim {d} after a norm of {:?} applied \
                 to {:?}",
                self.tokens(),
                weight.shape(),
                x.shape()
            );
        }
        let heads = channels / d;
        if !is_cpu_f32(x) {
            let y = rms_norm(x, Some(weight), eps)?;
            return self.apply(&y.reshape((b, n, heads, d))?.transpose(1, 2)?);
        }
        let half = d / 2;
        let w = weight.to_dtype(DType::F32)?.flatten_all()?.contiguous()?;
        let y = map_rows(x, &[&w, &self.cos, &self.sin], |r, row, out, p| {
            rms_row(row, p[0], eps as f32, out);
            let t = r % n;
            let (cos, sin) = (&p[1][t * half..][..half], &p[2][t * half..][..half]);
            for head in out.chunks_exact_mut(d) {
                for (pair, (&c, &s)) in head.chunks_exact_mut(2).zip(cos.iter().zip(sin)) {
                    let (x0, x1) = (pair[0], pair[1]);
                    pair[0] = x0 * c - x1 * s;
                    pair[1] = x0 * s + x1 * c;
                }
            }
        })?;
        y.reshape((b, n, heads, d))?.transpose(1, 2)
    }
}

#[cfg(test)]
#[path = "rope_tests.rs"]
mod tests;
