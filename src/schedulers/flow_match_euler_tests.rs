//! Flow-match Euler parity tests against diffusers 0.42.1 (fixtures of the Wan reference and
//! schedules computed with diffusers from torch-seeded inputs).

use super::super::Scheduler;
use super::super::tests::{Case, WAN_DATA, check_case, check_trajectory};
use super::*;
use candle_core::{DType, Device};
use std::path::Path;

#[test]
fn euler_matches_reference_fixture() -> candle_core::Result<()> {
    let config = Path::new(WAN_DATA).join("schedulers/euler/scheduler_config.json");
    let reference = format!("{WAN_DATA}/reference/schedulers.safetensors");
    let tensors = candle_core::safetensors::load(&reference, &Device::Cpu)?;
    for steps in [2, 5] {
        let mut s = super::super::load_scheduler(&config).unwrap_or_else(|e| panic!("{e}"));
        let parity = check_trajectory(s.as_mut(), &tensors, &format!("euler_{steps}"), steps)?;
        println!(
            "euler_{steps}: {} steps, max relative difference {:e}",
            parity.steps, parity.worst
        );
    }
    Ok(())
}

#[test]
fn euler_matches_diffusers_schedules() -> candle_core::Result<()> {
    let mut worst = 0f32;
    for case in CASES {
        worst = worst.max(check_case(case)?);
    }
    println!("euler cases: max relative difference {worst:e}");
    Ok(())
}

#[test]
fn euler_step_is_exact_f32_update_in_model_dtype() -> candle_core::Result<()> {
    let config = FlowMatchEulerConfig {
        shift: 3.0,
        ..FlowMatchEulerConfig::default()
    };
    let mut s = FlowMatchEulerDiscreteScheduler::new(config).unwrap();
    s.set_timesteps(2);
    let x = Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu)?;
    let v = Tensor::new(&[0.25f32, 1.0, -4.0], &Device::Cpu)?;
    let (t0, t1) = (s.timesteps()[0], s.timesteps()[1]);
    let dt = s.sigmas()[1] - s.sigmas()[0];
    let out = s.step(&v, t0, &x)?;
    let expected: Vec<f32> = [(1.0f32, 0.25f32), (-2.0, 1.0), (0.5, -4.0)]
        .iter()
        .map(|&(x, v)| x + dt * v)
        .collect();
    assert_eq!(out.to_vec1::<f32>()?, expected);
    // diffusers returns the model output's dtype.
    let out = s.step(&v.to_dtype(DType::BF16)?, t1, &out)?;
    assert_eq!(out.dtype(), DType::BF16);
    Ok(())
}

const CASES: &[Case] = &[
    Case {
        name: "shift_3_12_steps",
        config: r#"{"shift": 3.0, "_class_name": "FlowMatchEulerDiscreteScheduler"}"#,
        steps: 12,
        timesteps: &[
            1000.0,
            967.8447265625,
            931.2693481445312,
            889.2952270507812,
            840.6317138671875,
            783.5413208007812,
            715.627685546875,
            633.4905395507812,
            532.1390991210938,
            403.93792724609375,
            236.58871459960938,
            8.928571701049805,
        ],
        sigmas: &[
            1.0,
            0.9678447,
            0.93126935,
            0.8892952,
            0.8406317,
            0.7835413,
            0.7156277,
            0.63349056,
            0.5321391,
            0.40393794,
            0.23658872,
            0.008928572,
            0.0,
        ],
        final_sample: &[
            0.38946185,
            -2.4716032,
            0.48628864,
            0.75174844,
            0.54406464,
            2.1038556,
            -0.003032839,
            -1.0869745,
            0.0849117,
            1.1560824,
            0.51073474,
            -0.15938224,
            1.8380642,
            -1.8808078,
            0.26767182,
            -0.08302565,
            1.2380911,
            -0.72736424,
            0.60058725,
            -0.46816522,
            0.16357054,
            -0.4529309,
            0.87128717,
            -0.97852147,
        ],
    },
    Case {
        name: "shift_7_3_terminal_900",
        config: r#"{"shift": 7.3, "num_train_timesteps": 900, "shift_terminal": 0.05, "_class_name": "FlowMatchEulerDiscreteScheduler"}"#,
        steps: 6,
        timesteps: &[
            900.0,
            870.302001953125,
            825.1390380859375,
            748.1790771484375,
            587.5985717773438,
            45.0,
        ],
        sigmas: &[1.0, 0.9670022, 0.9168212, 0.8313101, 0.6528873, 0.05, 0.0],
        final_sample: &[
            1.5544857,
            -2.9243214,
            1.2459226,
            0.5317846,
            0.14075035,
            2.9050012,
            -0.13558014,
            -1.1494818,
            -1.0498511,
            0.83175695,
            0.47438356,
            -1.067344,
            1.7721269,
            -2.0973601,
            0.9515091,
            -6.476045e-05,
            1.1494932,
            -1.4384719,
            -0.5701067,
            0.068504736,
            1.221092,
            -0.5636772,
            0.54219246,
            -1.132191,
        ],
    },
    Case {
        name: "shift_1_1_step",
        config: r#"{"_class_name": "FlowMatchEulerDiscreteScheduler"}"#,
        steps: 1,
        timesteps: &[1000.0],
        sigmas: &[1.0, 0.0],
        final_sample: &[
            0.17261182,
            -3.9992564,
            0.16009057,
            0.9430206,
            0.6778492,
            1.4093981,
            0.9880222,
            -1.335514,
            -0.9710237,
            2.9579453,
            -1.6438904,
            -0.70895475,
            1.0668414,
            -1.285342,
            -0.4413367,
            -0.89882106,
            2.262174,
            -1.6391073,
            1.0053041,
            -1.6221768,
            -0.18406186,
            1.1697782,
            -0.33839488,
            -0.28439644,
        ],
    },
];
