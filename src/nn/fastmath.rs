//! Branch-free f32 `exp` and `tanh` that the compiler vectorises (libm's are one call per
//! element), and [`simd_dispatch!`], which compiles a CPU kernel again for AVX-512 and for
//! AVX2 and picks the widest copy the processor runs.

/// Defines `fn $name(args)` that runs `$body` compiled for AVX-512 (F, VL, BW, DQ) or for
/// AVX2+FMA when the CPU has them, else for the build's baseline. The arithmetic is the
/// same in every copy (Rust does not contract `a * b + c` into a fused multiply-add, and
/// `mul_add` is exact in all), so the results are bit-identical; only the vector width
/// changes.
#[macro_export]
#[doc(hidden)]
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $crate::simd_dispatch! {
            $(#[$meta])* $vis fn $name($($arg: $ty),*) -> () $body
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn generic($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    generic($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features `avx512` was compiled for are present.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features `avx2` was compiled for are present.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

/// `e^x` in f32 within 2 ulp: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-7
/// polynomial for `e^r` (Cephes' `expf` coefficients, evaluated in Estrin's scheme so that
/// its chain of dependent operations is short) and `2^n` built in the exponent bits. Inputs
/// below −87.33 give 0 (so `exp(-inf) = 0`, as a softmax mask needs) and above 88.37 give
/// the largest finite range's end, not infinity; NaN gives NaN. The products are fused
/// multiply-adds (`mul_add`), exact in every compiled copy, so the copies agree to the bit.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const HI: f32 = 88.376_26;
    let (p, ni) = exp_reduced(x.clamp(EXP_LO, HI));
    // n ∈ [−126, 128]: 2ⁿ as two factors so that n = 128 stays finite.
    let half = ni >> 1;
    let scale_a = f32::from_bits(((half + 127) as u32) << 23);
    let scale_b = f32::from_bits(((ni - half + 127) as u32) << 23);
    let y = p * scale_a * scale_b;
    let y = if x < EXP_LO { 0.0 } else { y };
    if x.is_nan() { x } else { y }
}

/// `e^x` for `x ≤ 88` (a softmax's shifted scores): [`exp_f32`]'s result (the same
/// reduction and polynomial) without its clamps, in fewer operations. Below −87.33 it gives
/// 0 (also for −∞); NaN gives NaN.
#[inline(always)]
pub fn exp_f32_upto_88(x: f32) -> f32 {
    let (p, ni) = exp_reduced(x);
    // n ∈ [−126, 127] where the result is used: 2ⁿ is one normal factor. Lanes below the
    // range (whose n may lie outside) are replaced by 0; NaN stays NaN through `p`.
    let y = p * f32::from_bits(((ni + 127) as u32) << 23);
    if x < EXP_LO { 0.0 } else { y }
}

/// Below this, `e^x` is 0 in the exp functions here.
const EXP_LO: f32 = -87.336_55;

/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`: returns `(e^r, n)`.
#[inline(always)]
fn exp_reduced(x: f32) -> (f32, i32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n · LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer without `round`.
    const ROUND: f32 = 12_582_912.0;
    // `t` holds n + 1.5·2²³ exactly, so its low mantissa bits are n (no float-to-int
    // conversion, whose saturation the vectoriser would do lane by lane).
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let ni = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let r2 = r * r;
    let p01 = 1.987_569_2e-4f32.mul_add(r, 1.398_2e-3);
    let p23 = 8.333_452e-3f32.mul_add(r, 4.166_579_6e-2);
    let p45 = 0.166_666_65f32.mul_add(r, 0.5);
    let p = p01.mul_add(r2, p23).mul_add(r2, p45);
    (p.mul_add(r2, r) + 1.0, ni)
}

/// tanh for f32 as a rational function: an odd polynomial of degree 13 over an even one of
/// degree 6 in the clamped input (Eigen's `generic_fast_tanh_float` coefficients; beyond
/// ±7.9053 the f32 result is ±1).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    const LIMIT: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-LIMIT, LIMIT);
    let x2 = x * x;
    let p = ((((((A13 * x2 + A11) * x2 + A9) * x2 + A7) * x2 + A5) * x2 + A3) * x2 + A1) * x;
    let q = ((B6 * x2 + B4) * x2 + B2) * x2 + B0;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_the_library() {
        let mut worst = 0;
        let mut x = -87.3f32;
        while x <= 88.3 {
            worst = worst.max(ulps(exp_f32(x), x.exp()));
            x += 7.3e-4;
        }
        for x in [0.0f32, -0.0, 1e-8, -1e-8, 0.5, -0.5, 1.0, 88.0, -87.0] {
            worst = worst.max(ulps(exp_f32(x), x.exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-1000.0), 0.0);
        assert!(exp_f32(f32::INFINITY).is_finite() && exp_f32(100.0) > 1e38);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn the_short_exp_is_the_full_one_below_88() {
        let mut x = -90.0f32;
        while x <= 88.0 {
            assert_eq!(
                exp_f32_upto_88(x).to_bits(),
                exp_f32(x).to_bits(),
                "exp({x})"
            );
            x += 3.1e-4;
        }
        for x in [-0.0f32, 0.0, -1e-30, 88.0, -87.33, -87.34, -1e30] {
            assert_eq!(
                exp_f32_upto_88(x).to_bits(),
                exp_f32(x).to_bits(),
                "exp({x})"
            );
        }
        assert_eq!(exp_f32_upto_88(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32_upto_88(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_matches_the_library_to_a_few_ulp() {
        let mut worst = 0f32;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let err = (tanh_f32(x) - x.tanh()).abs();
            worst = worst.max(err / x.tanh().abs().max(1e-30));
            x += 1e-3;
        }
        // Also tiny inputs, where tanh(x) ≈ x.
        for x in [1e-8f32, -3e-6, 1e-4, -0.01] {
            let err = (tanh_f32(x) - x.tanh()).abs() / x.tanh().abs();
            worst = worst.max(err);
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(-50.0), -1.0);
    }

    crate::simd_dispatch! {
        fn exp_into(src: &[f32], dst: &mut [f32]) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = exp_f32(s);
            }
        }
    }

    #[test]
    fn the_dispatched_copy_gives_the_same_bits() {
        let src: Vec<f32> = (0..4099).map(|i| (i as f32 - 2000.0) * 0.031).collect();
        let mut dst = vec![0f32; src.len()];
        exp_into(&src, &mut dst);
        for (&s, &d) in src.iter().zip(&dst) {
            assert_eq!(d.to_bits(), exp_f32(s).to_bits(), "exp({s})");
        }
    }
}
