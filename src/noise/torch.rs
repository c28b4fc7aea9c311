//! A CPU random generator that reproduces `torch.randn(..., generator=torch.Generator("cpu")
//! .manual_seed(seed), dtype=torch.float32)` bit for bit, so that a seed gives the same
//! initial latents here as in a diffusers pipeline.
//!
//! How torch does it (PyTorch 2.x, CPU, x86-64 with AVX2, the capability torch picks on any
//! AVX2 or AVX-512 machine):
//!
//! * The engine is a 32-bit Mersenne Twister (mt19937) whose state is initialised from the low
//!   32 bits of the seed. A "64-bit draw" is two 32-bit draws, the first one in the high half.
//! * A float32 tensor with 16 or more elements is first filled with 24-bit uniforms
//!   `(draw & 0xFFFFFF) / 2^24`, one draw each. Each complete block of 16 is then turned into
//!   normals by Box-Muller in single precision: for `j` in 0..8, `u1 = 1 - x[j]`,
//!   `u2 = x[j + 8]`, `r = sqrt(-2 ln u1)`, `theta = 2 pi u2`, `x[j] = r cos theta`,
//!   `x[j + 8] = r sin theta`. If the length is not a multiple of 16, the last 16 elements are
//!   drawn again (16 fresh uniforms) and transformed as one more block, overwriting the tail.
//!   `ln`, `sin` and `cos` are the Cephes-style polynomial approximations of `avx_mathfun.h`,
//!   compiled with fused multiply-adds; they are reproduced below operation for operation.
//! * A tensor with fewer than 16 elements takes one double-precision normal per element:
//!   two 53-bit uniforms `u1, u2` from 64-bit draws, `r = sqrt(-2 ln1p(-u2))`,
//!   `theta = 2 pi u1`, the value is `r cos theta` rounded to f32 and `r sin theta` is kept in
//!   the generator for the next such element (also across calls; the block path neither uses
//!   nor clears it).
//!
//! Tensors are filled in row-major order, so the shape only matters through its element count.
//! On a machine without AVX2 torch uses libm instead of the polynomials, which can differ by
//! one or two ulp; this module always follows the AVX2 path.

use candle_core::{Device, Tensor};

const MT_N: usize = 624;
const MT_M: usize = 397;

/// The 32-bit Mersenne Twister exactly as `at::mt19937` seeds and advances it.
#[derive(Clone)]
struct Mt19937 {
    state: [u32; MT_N],
    next: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Self {
        let mut state = [0u32; MT_N];
        // torch keeps only the low 32 bits of the seed in the state.
        state[0] = seed as u32;
        for i in 1..MT_N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, next: MT_N }
    }

    fn twist(&mut self) {
        for i in 0..MT_N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % MT_N] & 0x7fff_ffff);
            let mut v = self.state[(i + MT_M) % MT_N] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.next = 0;
    }

    fn next_u32(&mut self) -> u32 {
        if self.next >= MT_N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }
}

/// A `torch.Generator("cpu")` after `manual_seed(seed)`, restricted to what `torch.randn`
/// with dtype float32 needs.
#[derive(Clone)]
pub struct TorchGenerator {
    engine: Mt19937,
    /// The second value of the last double-precision Box-Muller pair, if not used yet.
    cached_normal: Option<f64>,
}

impl std::fmt::Debug for TorchGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchGenerator")
            .field("position", &self.engine.next)
            .field("cached_normal", &self.cached_normal)
            .finish()
    }
}

impl TorchGenerator {
    /// Same as `torch.Generator("cpu").manual_seed(seed)`. A negative Python seed is its
    /// two's complement here; only the low 32 bits reach the engine, as in torch.
    pub fn new(seed: u64) -> Self {
        TorchGenerator {
            engine: Mt19937::new(seed),
            cached_normal: None,
        }
    }

    /// The next 32-bit draw (`generator->random()`).
    pub fn next_u32(&mut self) -> u32 {
        self.engine.next_u32()
    }

    /// The next 64-bit draw (`generator->random64()`): two 32-bit draws, first one high.
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.engine.next_u32() as u64;
        let lo = self.engine.next_u32() as u64;
        (hi << 32) | lo
    }

    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// One sample of torch's scalar `normal_distribution<double>` (mean 0, std 1).
    fn normal_f64(&mut self) -> f64 {
        if let Some(cached) = self.cached_normal.take() {
            return cached;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let radius = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.cached_normal = Some(radius * theta.sin());
        radius * theta.cos()
    }

    /// The values of `torch.randn(n, generator=self, dtype=torch.float32)`; the generator
    /// advances exactly as torch's does, so successive calls continue the same stream.
    pub fn randn_f32(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            return (0..n).map(|_| self.normal_f64() as f32).collect();
        }
        let mut data: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        for block in data.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if !n.is_multiple_of(16) {
            let tail = &mut data[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }
}

impl TorchGenerator {
    /// `torch.randn(shape, generator=self, dtype=torch.float32)` on `device` (generated on
    /// the CPU, then copied).
    pub fn randn(&mut self, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let values = self.randn_f32(shape.iter().product());
        Tensor::from_vec(values, shape, device)
    }
}

/// `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=float32)`,
/// placed on `device`.
pub fn torch_randn(seed: u64, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    TorchGenerator::new(seed).randn(shape, device)
}

/// Box-Muller on 16 uniforms in place: pairs `(j, j + 8)` for `j` in 0..8.
fn box_muller_16(block: &mut [f32]) {
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    for j in 0..8 {
        let u1 = 1.0 - block[j];
        let u2 = block[j + 8];
        let radius = (-2.0 * ln_cephes(u1)).sqrt();
        let (sin, cos) = sin_cos_cephes(two_pi * u2);
        block[j] = radius * cos;
        block[j + 8] = radius * sin;
    }
}

/// Natural logarithm as `log256_ps` computes it, for `x` in (0, 1] (NaN for `x <= 0`).
fn ln_cephes(x: f32) -> f32 {
    // The constants are the double literals of avx_mathfun.h rounded to f32, as C does.
    const SQRT_HALF: f32 = 0.707_106_781_186_547_5_f64 as f32;
    const P: [f32; 9] = [
        7.037_683_629_2e-2_f64 as f32,
        -1.151_461_031_0e-1_f64 as f32,
        1.167_699_874_0e-1_f64 as f32,
        -1.242_014_084_6e-1_f64 as f32,
        1.424_932_278_7e-1_f64 as f32,
        -1.666_805_766_5e-1_f64 as f32,
        2.000_071_476_5e-1_f64 as f32,
        -2.499_999_399_3e-1_f64 as f32,
        3.333_333_117_4e-1_f64 as f32,
    ];
    const Q1: f32 = -2.121_944_40e-4_f64 as f32;
    const Q2: f32 = 0.693_359_375_f64 as f32;
    if x.is_nan() || x <= 0.0 {
        return f32::NAN;
    }
    let x = x.max(f32::MIN_POSITIVE);
    let bits = x.to_bits();
    let exponent = (bits >> 23) as i32 - 0x7f;
    // Mantissa scaled into [0.5, 1).
    let mut m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let mut e = exponent as f32 + 1.0;
    let small = m < SQRT_HALF;
    let extra = if small { m } else { 0.0 };
    m -= 1.0;
    if small {
        e -= 1.0;
    }
    m += extra;
    let z = m * m;
    let mut y = P[0];
    for &p in &P[1..] {
        y = y.mul_add(m, p);
    }
    y *= m;
    y = y.mul_add(z, e * Q1);
    y -= z * 0.5;
    m += y;
    e.mul_add(Q2, m)
}

/// `(sin x, cos x)` as `sincos256_ps` computes them, for `x >= 0` of moderate size.
fn sin_cos_cephes(x: f32) -> (f32, f32) {
    const FOUR_OVER_PI: f32 = 1.273_239_544_735_16_f64 as f32;
    const DP1: f32 = -0.785_156_25_f64 as f32;
    const DP2: f32 = -2.418_756_484_985_352e-4_f64 as f32;
    const DP3: f32 = -3.774_894_977_445_941e-8_f64 as f32;
    const SIN_P: [f32; 3] = [
        -1.951_529_589_1e-4_f64 as f32,
        8.332_160_873_6e-3_f64 as f32,
        -1.666_665_461_1e-1_f64 as f32,
    ];
    const COS_P: [f32; 3] = [
        2.443_315_711_809_948e-5_f64 as f32,
        -1.388_731_625_493_765e-3_f64 as f32,
        4.166_664_568_298_827e-2_f64 as f32,
    ];
    let sign_sin = x.to_bits() & 0x8000_0000;
    let ax = x.abs();
    let mut octant = (ax * FOUR_OVER_PI) as i32;
    octant = (octant + 1) & !1;
    let y = octant as f32;
    let swap_sin = ((octant & 4) as u32) << 29;
    let sin_poly_first = (octant & 2) == 0;
    let sign_cos = ((!(octant - 2) & 4) as u32) << 29;
    let sign_sin = sign_sin ^ swap_sin;
    // Extended-precision range reduction: r = ((x - y DP1) - y DP2) - y DP3.
    let r = y.mul_add(DP3, y.mul_add(DP2, y.mul_add(DP1, ax)));
    let z = r * r;
    let mut c = COS_P[0].mul_add(z, COS_P[1]);
    c = c.mul_add(z, COS_P[2]);
    c *= z;
    c = c.mul_add(z, -(z * 0.5));
    c += 1.0;
    let mut s = SIN_P[0].mul_add(z, SIN_P[1]);
    s = s.mul_add(z, SIN_P[2]);
    s *= z;
    s = s.mul_add(r, r);
    // The vector code selects with masks and additions; keep its +0.0 terms.
    let (sin_part, cos_part) = if sin_poly_first {
        (0.0 + s, c + 0.0)
    } else {
        (c + 0.0, 0.0 + s)
    };
    (
        f32::from_bits(sin_part.to_bits() ^ sign_sin),
        f32::from_bits(cos_part.to_bits() ^ sign_cos),
    )
}

#[cfg(test)]
#[path = "torch_tests.rs"]
mod tests;
