//! Winograd F(4×4, 3×3) for the 3×3 spatial part of causal convolutions on the CPU in f32:
//! 36 products per 4×4 output tile instead of 144, with the temporal taps stacked into the
//! inner dimension of one batched matrix product per output frame.
//!
//! Per band of tile rows, every padded input frame is transformed once (`Bᵀ d B` on 6×6
//! patches), laid out `[frame, channel, 36, tiles]` so that the `kt` frames an output frame
//! reads are consecutive rows; the product with the transformed weights `[36, O, kt·C]` gives
//! `[36, O, tiles]`, which the output transform (`Aᵀ m A`, plus bias) writes straight into the
//! result.

use candle_core::{DType, Device, Result, Storage, Tensor};

use super::for_each_chunk;
use crate::nn::cpu::{Rows, gemm_rows};
use rayon::prelude::*;

/// Output tile side.
const M: usize = 4;
/// Input tile side (M + 3 − 1).
const A: usize = 6;
/// Transform-domain positions per tile.
const Q: usize = A * A;
/// Tiles per band (the width of each matrix product)...
const BAND_TILES: usize = 512;
/// ...unless the band's transformed input would exceed this.
/// (Small enough for the allocator to reuse the memory from band to band.)
const BAND_BYTES: usize = 16 << 20;

// Interpolation points 0, 1, −1, 1/2, −2 and ∞: in f32 their rounding error is about half
// that of the common 0, ±1, ±2 (max relative error ~3e-6 per layer).

/// Weight transform `G`.
const G: [[f64; 3]; A] = [
    [1.0, 0.0, 0.0],
    [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
    [-1.0 / 3.0, 1.0 / 3.0, -1.0 / 3.0],
    [-16.0 / 15.0, -8.0 / 15.0, -4.0 / 15.0],
    [1.0 / 15.0, -2.0 / 15.0, 4.0 / 15.0],
    [0.0, 0.0, 1.0],
];

/// Input transform `Bᵀ d` of one 6-vector.
#[inline(always)]
fn bt(d: [f32; A]) -> [f32; A] {
    [
        d[0] - 1.5 * d[1] - 2.0 * d[2] + 1.5 * d[3] + d[4],
        -d[1] + 0.5 * d[2] + 2.5 * d[3] + d[4],
        d[1] - 2.5 * d[2] + 0.5 * d[3] + d[4],
        -2.0 * d[1] - d[2] + 2.0 * d[3] + d[4],
        0.5 * d[1] - d[2] - 0.5 * d[3] + d[4],
        d[1] - 1.5 * d[2] - 2.0 * d[3] + 1.5 * d[4] + d[5],
    ]
}

/// Output transform `Aᵀ m` of one 6-vector.
#[inline(always)]
fn at(m: [f32; A]) -> [f32; M] {
    let (s1, d1) = (m[1] + m[2], m[1] - m[2]);
    [
        m[0] + s1 + m[3] + m[4],
        d1 + 0.5 * m[3] - 2.0 * m[4],
        s1 + 0.25 * m[3] + 4.0 * m[4],
        d1 + 0.125 * m[3] - 8.0 * m[4] + m[5],
    ]
}

/// One frame of the causally padded clip.
#[derive(Debug, Clone, Copy)]
pub(super) enum Frame {
    Zero,
    Cache(usize),
    Input(usize),
}

/// A 3D convolution with a 3×3 spatial kernel and spatial stride 1, computed with Winograd
/// F(4×4, 3×3).
#[derive(Debug, Clone)]
pub(super) struct Winograd {
    /// `[36, O, kt·C]`, column order (tap, channel).
    u: Tensor,
    bias: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
    kt: usize,
    st: usize,
}

impl Winograd {
    /// `weight` `[O, C, kt, 3, 3]`, `bias` `[O]`; the transform runs in f64.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>, st: usize) -> Result<Self> {
        let (o_n, c_n, kt, kh, kw) = weight.dims5()?;
        if (kh, kw) != (3, 3) {
            candle_core::bail!("Winograd F(4×4, 3×3) needs a 3×3 kernel, got {kh}×{kw}")
        }
        // U = G g Gᵀ for every (out, in, tap) kernel g, in f64, laid out [36, O, kt·C]: one
        // task per transform position (i, j), which takes row i of G g and its product with
        // row j of G.
        let w: Vec<f64> = weight.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let k_n = kt * c_n;
        let mut u = vec![0f32; Q * o_n * k_n];
        u.par_chunks_mut((o_n * k_n).max(1))
            .enumerate()
            .for_each(|(q, uq)| {
                let (gi, gj) = (&G[q / A], &G[q % A]);
                for (o, uo) in uq.chunks_exact_mut(k_n.max(1)).enumerate() {
                    for k in 0..kt {
                        for c in 0..c_n {
                            let g = &w[((o * c_n + c) * kt + k) * 9..][..9];
                            let row: [f64; 3] = std::array::from_fn(|b| {
                                gi[0] * g[b] + gi[1] * g[3 + b] + gi[2] * g[6 + b]
                            });
                            let v = row[0] * gj[0] + row[1] * gj[1] + row[2] * gj[2];
                            uo[k * c_n + c] = v as f32;
                        }
                    }
                }
            });
        let u = Tensor::from_vec(u, (Q, o_n, k_n), &Device::Cpu)?;
        let bias = match bias {
            Some(b) => b.to_dtype(DType::F32)?.to_vec1()?,
            None => vec![0.0; o_n],
        };
        Ok(Self {
            u,
            bias,
            in_channels: c_n,
            out_channels: o_n,
            kt,
            st,
        })
    }

    /// Convolves the clip made of `frames` (planes of `x` `[B, C, T, H, W]`, of `cache`
    /// `[B, C, Tc, H, W]`, or zeros), zero padded by `pad` = (rows, columns) on each side.
    pub fn forward(
        &self,
        x: &Tensor,
        cache: Option<&Tensor>,
        frames: &[Frame],
        pad: (usize, usize),
    ) -> Result<Tensor> {
        let (b_n, c_n, t_n, h, w) = x.dims5()?;
        let (o_n, kt, st) = (self.out_channels, self.kt, self.st);
        if c_n != self.in_channels {
            candle_core::bail!(
                "Winograd conv expects {} channels, got {c_n}",
                self.in_channels
            )
        }
        let tp = frames.len();
        let (ho, wo) = (
            (h + 2 * pad.0).saturating_sub(2),
            (w + 2 * pad.1).saturating_sub(2),
        );
        if tp < kt || ho == 0 || wo == 0 {
            candle_core::bail!("conv3d input {:?} smaller than the kernel", x.shape())
        }
        let t_out = (tp - kt) / st + 1;
        let (ty_n, tx_n) = (ho.div_ceil(M), wo.div_ceil(M));
        // Bands of about BAND_TILES tiles whose transformed input stays under BAND_BYTES.
        let tile_bytes = tp * c_n * Q * std::mem::size_of::<f32>();
        let band_tiles = BAND_TILES.min(BAND_BYTES / tile_bytes);
        let band_rows = (band_tiles / tx_n).max(1);

        let x = x.contiguous()?;
        let (x_guard, x_layout) = x.storage_and_layout();
        let xs = &cpu_f32(&x_guard)?[x_layout.start_offset()..];
        let cache = cache.map(|c| c.contiguous()).transpose()?;
        let cache_guard = cache.as_ref().map(|c| c.storage_and_layout());
        let (cs, tc) = match (&cache_guard, &cache) {
            (Some((g, l)), Some(c)) => (&cpu_f32(g)?[l.start_offset()..], c.dim(2)?),
            _ => (&[][..], 0),
        };
        let plane = |b: usize, c: usize, f: Frame| -> Option<&[f32]> {
            let hw = h * w;
            match f {
                Frame::Zero => None,
                Frame::Cache(i) => Some(&cs[((b * c_n + c) * tc + i) * hw..][..hw]),
                Frame::Input(i) => Some(&xs[((b * c_n + c) * t_n + i) * hw..][..hw]),
            }
        };

        let (u_guard, u_layout) = self.u.storage_and_layout();
        let us = &cpu_f32(&u_guard)?[u_layout.start_offset()..];
        let frame_len = t_out * ho * wo;
        let mut out = vec![0f32; b_n * o_n * frame_len];
        for (b, out_b) in out.chunks_mut(o_n * frame_len).enumerate() {
            for ty0 in (0..ty_n).step_by(band_rows) {
                let ty1 = (ty0 + band_rows).min(ty_n);
                let band = Band {
                    ty0,
                    ty1,
                    tx_n,
                    tiles: (ty1 - ty0) * tx_n,
                };
                let mut v = vec![0f32; tp * c_n * Q * band.tiles];
                for_each_chunk(&mut v, Q * band.tiles, |i, dst| {
                    let (f, c) = (i / c_n, i % c_n);
                    match plane(b, c, frames[f]) {
                        Some(src) => input_tiles(src, (h, w), pad, &band, dst),
                        None => dst.fill(0.0),
                    }
                });
                let mut m = vec![0f32; Q * o_n * band.tiles];
                for t in 0..t_out {
                    let first = t * st * c_n;
                    transformed_product(us, &v, first, [o_n, kt * c_n, band.tiles], &mut m);
                    for_each_chunk(out_b, frame_len, |o, dst| {
                        let dst = &mut dst[t * ho * wo..][..ho * wo];
                        output_tiles(&m, o, o_n, self.bias[o], (ho, wo), &band, dst);
                    });
                }
            }
        }
        Tensor::from_vec(out, (b_n, o_n, t_out, ho, wo), &Device::Cpu)
    }
}

/// `m[q] = u[q] · v[q]` for the 36 transform positions `q`: `u` `[36, O, K]`, `v` the
/// band's transformed input `[rows, 36, tiles]` read from row `first` on (`K` rows), `m`
/// `[36, O, tiles]`. The positions are shared out between the threads, each product a
/// single-threaded gemm: candle's batched matmul ran gemm's threads on each product in
/// turn, and their hand-offs took a third of the decode's time.
fn transformed_product(
    u: &[f32],
    v: &[f32],
    first: usize,
    [o_n, k_n, tiles]: [usize; 3],
    m: &mut [f32],
) {
    assert!(u.len() >= Q * o_n * k_n && v.len() >= (first + k_n) * Q * tiles);
    m.par_chunks_mut((o_n * tiles).max(1))
        .enumerate()
        .for_each(|(q, dst)| {
            let dst = Rows {
                ptr: dst.as_mut_ptr(),
                stride: tiles,
            };
            let lhs = Rows {
                ptr: u[q * o_n * k_n..].as_ptr(),
                stride: k_n,
            };
            let rhs = Rows {
                ptr: v[(first * Q + q) * tiles..].as_ptr(),
                stride: Q * tiles,
            };
            // SAFETY: `dst` is this position's `O × tiles` block of `m`; `u[q]` holds `O`
            // rows of `K` and `v` `K` rows of `tiles` from row `first`, `36 · tiles` apart
            // (the lengths are checked above).
            unsafe { gemm_rows([o_n, tiles, k_n], dst, false, lhs, rhs, false) };
        });
}

/// Rows `ty0..ty1` of tiles, `tx_n` tiles wide.
struct Band {
    ty0: usize,
    ty1: usize,
    tx_n: usize,
    tiles: usize,
}

fn cpu_f32(storage: &Storage) -> Result<&[f32]> {
    match storage {
        Storage::Cpu(s) => s.as_slice::<f32>(),
        _ => candle_core::bail!("Winograd conv runs on the CPU only"),
    }
}

/// Tiles transformed together, one per vector lane.
const L: usize = 8;

/// A 6-vector of lane vectors.
type Lanes6 = [[f32; L]; A];

/// [`bt`] on every lane.
#[inline(always)]
fn bt_lanes(d: &Lanes6) -> Lanes6 {
    let mut r = [[0f32; L]; A];
    for l in 0..L {
        let v = bt([d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]]);
        for (k, x) in v.into_iter().enumerate() {
            r[k][l] = x;
        }
    }
    r
}

/// [`at`] on every lane.
#[inline(always)]
fn at_lanes(m: &Lanes6) -> [[f32; L]; M] {
    let mut r = [[0f32; L]; M];
    for l in 0..L {
        let v = at([m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]]);
        for (k, x) in v.into_iter().enumerate() {
            r[k][l] = x;
        }
    }
    r
}

/// Copies the first `lanes` values of `v` to the start of `dst` (a fixed-size copy when all
/// lanes are used).
#[inline(always)]
fn copy_lanes(dst: &mut [f32], v: &[f32; L], lanes: usize) {
    if lanes == L {
        dst[..L].copy_from_slice(v);
    } else {
        dst[..lanes].copy_from_slice(&v[..lanes]);
    }
}

/// Transforms the 6×6 patches of one `h × w` plane (zero padded by `pad`) for the band's
/// tiles into `dst` `[36, tiles]`, [`L`] horizontally adjacent tiles at a time.
fn input_tiles(
    src: &[f32],
    (h, w): (usize, usize),
    pad: (usize, usize),
    band: &Band,
    dst: &mut [f32],
) {
    let tiles = band.tiles;
    for ty in band.ty0..band.ty1 {
        // Top row of the patches in unpadded coordinates.
        let y0 = (ty * M) as isize - pad.0 as isize;
        for tx0 in (0..band.tx_n).step_by(L) {
            let lanes = L.min(band.tx_n - tx0);
            let x0 = (tx0 * M) as isize - pad.1 as isize;
            let inside = x0 >= 0 && x0 as usize + (lanes - 1) * M + A <= w;
            // patch[i][j][l]: row i, column j of lane l's patch.
            let mut patch = [[[0f32; L]; A]; A];
            for (i, prow) in patch.iter_mut().enumerate() {
                let y = y0 + i as isize;
                if y < 0 || y >= h as isize {
                    continue;
                }
                let row = &src[y as usize * w..][..w];
                if inside {
                    let seg = &row[x0 as usize..][..(lanes - 1) * M + A];
                    for l in 0..lanes {
                        for (j, v) in prow.iter_mut().enumerate() {
                            v[l] = seg[l * M + j];
                        }
                    }
                } else {
                    for l in 0..lanes {
                        for (j, v) in prow.iter_mut().enumerate() {
                            let x = x0 + (l * M + j) as isize;
                            if x >= 0 && x < w as isize {
                                v[l] = row[x as usize];
                            }
                        }
                    }
                }
            }
            // Columns, then rows.
            let mut t = [[[0f32; L]; A]; A];
            for j in 0..A {
                let col = bt_lanes(&[
                    patch[0][j],
                    patch[1][j],
                    patch[2][j],
                    patch[3][j],
                    patch[4][j],
                    patch[5][j],
                ]);
                for i in 0..A {
                    t[i][j] = col[i];
                }
            }
            let p = (ty - band.ty0) * band.tx_n + tx0;
            for (i, trow) in t.iter().enumerate() {
                for (j, v) in bt_lanes(trow).iter().enumerate() {
                    copy_lanes(&mut dst[(i * A + j) * tiles + p..], v, lanes);
                }
            }
        }
    }
}

/// Writes output channel `o` of the band's tiles from the products `m` `[36, O, tiles]` into
/// `dst` `[ho, wo]`, adding `bias`, [`L`] tiles at a time.
fn output_tiles(
    m: &[f32],
    o: usize,
    o_n: usize,
    bias: f32,
    (ho, wo): (usize, usize),
    band: &Band,
    dst: &mut [f32],
) {
    let tiles = band.tiles;
    for ty in band.ty0..band.ty1 {
        for tx0 in (0..band.tx_n).step_by(L) {
            let lanes = L.min(band.tx_n - tx0);
            let p = (ty - band.ty0) * band.tx_n + tx0;
            let mut t = [[[0f32; L]; A]; A];
            for (q, v) in t.iter_mut().flatten().enumerate() {
                if lanes == L {
                    *v = m[(q * o_n + o) * tiles + p..][..L]
                        .try_into()
                        .unwrap_or([0.0; L]);
                } else {
                    v[..lanes].copy_from_slice(&m[(q * o_n + o) * tiles + p..][..lanes]);
                }
            }
            let mut cols = [[[0f32; L]; A]; M];
            for j in 0..A {
                let c = at_lanes(&[t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]]);
                for i in 0..M {
                    cols[i][j] = c[i];
                }
            }
            let x0 = tx0 * M;
            let n = (lanes * M).min(wo - x0);
            for (i, crow) in cols.iter().enumerate() {
                let y = ty * M + i;
                if y >= ho {
                    break;
                }
                let vals = at_lanes(crow);
                let out = &mut dst[y * wo + x0..][..n];
                for (k, v) in out.iter_mut().enumerate() {
                    *v = vals[k % M][k / M] + bias;
                }
            }
        }
    }
}
