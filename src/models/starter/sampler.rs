//! The flow-matching Euler sampler with classifier-free guidance.
//!
//! Clips move from noise at t = 1 to data at t = 0 along the predicted velocity
//! `v = noise − data`; the step count comes from the request.

use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::models::{Control, Phase, PipelineError, Progress};
use crate::rng::Rng;

/// `steps + 1` flow times from `t_max` down to 0, warped by `shift` (1 = evenly spaced).
pub fn timesteps(steps: u32, shift: f32, t_max: f32) -> Vec<f32> {
    (0..=steps)
        .map(|i| {
            let t = t_max * (1.0 - i as f32 / steps as f32);
            shift * t / (1.0 + (shift - 1.0) * t)
        })
        .collect()
}

/// Deterministic Gaussian noise of `shape` from `seed` (the same on every device).
pub fn noise(seed: u64, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
    let n = shape.iter().product();
    Tensor::from_vec(Rng::new(seed).normals(n), shape, device)
}

/// Runs the sampler from `x` at flow time `t_max` (pure noise scaled by `t_max`: like
/// EDM's finite σ_max, this starts where the model was trained well). `velocity(x, t)`
/// must return `(conditional, unconditional)` predictions (the second may be `None` when
/// guidance is off).
pub fn sample(
    mut x: Tensor,
    steps: u32,
    shift: f32,
    t_max: f32,
    guidance: f32,
    mut velocity: impl FnMut(&Tensor, f32) -> candle_core::Result<(Tensor, Option<Tensor>)>,
    on_step: &mut dyn FnMut(Progress) -> Control,
) -> Result<Tensor, PipelineError> {
    let ts = timesteps(steps, shift, t_max);
    let start = Instant::now();
    for (i, w) in ts.windows(2).enumerate() {
        let (t, t_next) = (w[0], w[1]);
        let (cond, uncond) = velocity(&x, t)?;
        let v = match uncond {
            Some(u) => (&u + ((&cond - &u)? * guidance as f64)?)?,
            None => cond,
        };
        x = (&x + (v * (t_next - t) as f64)?)?;
        let progress = Progress {
            phase: Phase::Denoising,
            step: i as u32 + 1,
            total_steps: steps,
            elapsed: start.elapsed(),
        };
        if on_step(progress) == Control::Cancel && (i as u32 + 1) < steps {
            return Err(PipelineError::Canceled {
                step: i as u32 + 1,
                total: steps,
            });
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_run_from_noise_to_data() {
        let ts = timesteps(4, 1.0, 1.0);
        assert_eq!(ts, vec![1.0, 0.75, 0.5, 0.25, 0.0]);
        assert_eq!(timesteps(2, 1.0, 0.8), vec![0.8, 0.4, 0.0]);
        let shifted = timesteps(4, 3.0, 1.0);
        assert_eq!(shifted[0], 1.0);
        assert_eq!(shifted[4], 0.0);
        assert!(shifted[2] > 0.5);
    }

    #[test]
    fn exact_velocity_reaches_the_target_and_cancel_stops_between_steps() {
        let dev = Device::Cpu;
        let target = Tensor::new(&[0.5f32, -0.25], &dev).unwrap();
        let x0 = noise(1, &[2], &dev).unwrap();
        // On the straight path from noise to target the velocity is constant.
        let v = (&x0 - &target).unwrap();
        let out = sample(
            x0,
            7,
            1.0,
            1.0,
            1.0,
            |_, _| Ok((v.clone(), None)),
            &mut |_| Control::Continue,
        )
        .unwrap();
        let err: f32 = (out - target)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(err < 1e-5, "{err}");

        let mut seen = 0;
        let res = sample(
            noise(1, &[2], &dev).unwrap(),
            5,
            1.0,
            1.0,
            1.0,
            |x, _| Ok((x.clone(), None)),
            &mut |p| {
                seen = p.step;
                if p.step == 2 {
                    Control::Cancel
                } else {
                    Control::Continue
                }
            },
        );
        assert!(matches!(
            res,
            Err(PipelineError::Canceled { step: 2, total: 5 })
        ));
        assert_eq!(seen, 2);
    }

    #[test]
    fn noise_depends_only_on_the_seed() {
        let a: Vec<f32> = noise(5, &[8], &Device::Cpu).unwrap().to_vec1().unwrap();
        let b: Vec<f32> = noise(5, &[8], &Device::Cpu).unwrap().to_vec1().unwrap();
        let c: Vec<f32> = noise(6, &[8], &Device::Cpu).unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
