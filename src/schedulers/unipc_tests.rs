//! UniPC parity tests against diffusers 0.42.1 (fixtures of the Wan reference and schedules
//! computed with diffusers from torch-seeded inputs).

use super::super::Scheduler;
use super::super::tests::{Case, WAN_DATA, check_case, check_trajectory};
use super::*;
use candle_core::Device;
use std::path::Path;

#[test]
fn unipc_matches_reference_fixture() -> candle_core::Result<()> {
    let config = Path::new(WAN_DATA).join("schedulers/unipc/scheduler_config.json");
    let reference = format!("{WAN_DATA}/reference/schedulers.safetensors");
    let tensors = candle_core::safetensors::load(&reference, &Device::Cpu)?;
    for steps in [2, 5] {
        let mut s = super::super::load_scheduler(&config).unwrap_or_else(|e| panic!("{e}"));
        let parity = check_trajectory(s.as_mut(), &tensors, &format!("unipc_{steps}"), steps)?;
        println!(
            "unipc_{steps}: {} steps, max relative difference {:e}",
            parity.steps, parity.worst
        );
    }
    Ok(())
}

#[test]
fn unipc_matches_diffusers_schedules() -> candle_core::Result<()> {
    let mut worst = 0f32;
    for case in CASES {
        worst = worst.max(check_case(case)?);
    }
    println!("unipc cases: max relative difference {worst:e}");
    Ok(())
}

#[test]
fn unipc_wan_timesteps_are_truncated_shifted_sigmas() {
    let mut s = UniPcMultistepScheduler::new(UniPcConfig::wan()).unwrap();
    s.set_timesteps(5);
    // diffusers: [999, 923, 818, 667, 429] (int64), sigmas end with 0.
    assert_eq!(s.timesteps(), &[999.0, 923.0, 818.0, 667.0, 429.0]);
    assert_eq!(s.sigmas().len(), 6);
    assert_eq!(s.sigmas()[5], 0.0);
    assert_eq!(s.sigmas()[0], 0.999_999);
}

#[test]
fn unipc_last_step_returns_data_estimate() -> candle_core::Result<()> {
    // Final sigma zero and first-order last step: x_next = x - sigma * v.
    let mut s = UniPcMultistepScheduler::new(UniPcConfig::wan()).unwrap();
    s.set_timesteps(1);
    let x = Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu)?;
    let v = Tensor::new(&[0.25f32, 1.0, -4.0], &Device::Cpu)?;
    let out = s.step(&v, 999.0, &x)?.to_vec1::<f32>()?;
    let sigma = s.sigmas()[0];
    let expected: Vec<f32> = [(1.0f32, 0.25f32), (-2.0, 1.0), (0.5, -4.0)]
        .iter()
        .map(|&(x, v)| x - sigma * v)
        .collect();
    assert_eq!(out, expected);
    Ok(())
}

#[test]
fn unipc_solve_small_systems() {
    let x = solve(vec![vec![1.0, 1.0], vec![-0.5, 1.0]], vec![2.0, 0.5]);
    assert!(
        (x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6,
        "{x:?}"
    );
    let x = solve(
        vec![
            vec![1.0, 1.0, 1.0],
            vec![2.0, -1.0, 1.0],
            vec![4.0, 1.0, 1.0],
        ],
        vec![6.0, 3.0, 9.0],
    );
    for (got, want) in x.iter().zip([1.0f32, 2.0, 3.0]) {
        assert!((got - want).abs() < 1e-5, "{x:?}");
    }
}

const CASES: &[Case] = &[
    Case {
        name: "wan_12_steps",
        config: r#"{"prediction_type": "flow_prediction", "use_flow_sigmas": true, "flow_shift": 3.0, "_class_name": "UniPCMultistepScheduler"}"#,
        steps: 12,
        timesteps: &[
            999.0, 970.0, 937.0, 900.0, 857.0, 807.0, 750.0, 682.0, 600.0, 500.0, 376.0, 216.0,
        ],
        sigmas: &[
            0.999999, 0.9706194, 0.93757033, 0.90011996, 0.8573265, 0.8079585, 0.7503748,
            0.68233854, 0.60071945, 0.500999, 0.3764045, 0.21630295, 0.0,
        ],
        final_sample: &[
            0.3452461,
            -2.577358,
            0.6477981,
            0.6756161,
            0.47520807,
            1.7773983,
            0.322694,
            -1.0205224,
            0.14321154,
            1.1841826,
            0.39750022,
            -0.22506948,
            1.5993836,
            -1.6086988,
            0.4262396,
            0.13274375,
            0.8769717,
            -0.43995702,
            0.43500376,
            -0.32002592,
            0.23277709,
            -1.0123023,
            0.7842617,
            -0.7881389,
        ],
    },
    Case {
        name: "wan_1_step",
        config: r#"{"prediction_type": "flow_prediction", "use_flow_sigmas": true, "flow_shift": 3.0, "_class_name": "UniPCMultistepScheduler"}"#,
        steps: 1,
        timesteps: &[999.0],
        sigmas: &[0.999999, 0.0],
        final_sample: &[
            0.17261195,
            -3.999255,
            0.16009116,
            0.94302046,
            0.6778488,
            1.4093986,
            0.9880215,
            -1.3355137,
            -0.9710234,
            2.9579432,
            -1.6438887,
            -0.7089546,
            1.0668421,
            -1.2853423,
            -0.44133604,
            -0.89882046,
            2.2621727,
            -1.6391062,
            1.0053042,
            -1.6221756,
            -0.18406208,
            1.1697767,
            -0.3383938,
            -0.28439692,
        ],
    },
    Case {
        name: "bh1_sigma_min_disable_corrector",
        config: r#"{"prediction_type": "flow_prediction", "use_flow_sigmas": true, "flow_shift": 5.0, "solver_type": "bh1", "final_sigmas_type": "sigma_min", "disable_corrector": [0, 3], "_class_name": "UniPCMultistepScheduler"}"#,
        steps: 6,
        timesteps: &[999.0, 961.0, 909.0, 833.0, 714.0, 501.0],
        sigmas: &[
            0.999999, 0.96158284, 0.90921485, 0.83361095, 0.7148973, 0.50149703, 0.50149703,
        ],
        final_sample: &[
            0.7339166,
            -2.8230252,
            1.0410525,
            0.8330543,
            0.2655833,
            2.0940466,
            0.3095375,
            -1.1348058,
            -0.8241982,
            0.7481823,
            0.44080964,
            -0.64431405,
            1.883285,
            -1.8064544,
            0.36207792,
            -0.24732292,
            1.113226,
            -0.7910276,
            0.67199326,
            -0.30570728,
            0.12632912,
            -0.5051963,
            0.7350568,
            -0.9382418,
        ],
    },
    Case {
        name: "order_3_trailing_900",
        config: r#"{"prediction_type": "flow_prediction", "use_flow_sigmas": true, "flow_shift": 7.3, "solver_order": 3, "timestep_spacing": "trailing", "num_train_timesteps": 900, "_class_name": "UniPCMultistepScheduler"}"#,
        steps: 7,
        timesteps: &[899.0, 879.0, 853.0, 816.0, 761.0, 671.0, 495.0],
        sigmas: &[
            0.999999, 0.97770685, 0.9481285, 0.9069965, 0.84589803, 0.7456356, 0.550792, 0.0,
        ],
        final_sample: &[
            -0.17089239,
            -2.2825089,
            0.5057101,
            0.8319565,
            -0.67654717,
            2.5087411,
            0.7295666,
            -1.8749833,
            -1.0465724,
            0.59927386,
            0.51924837,
            -0.3333856,
            2.6566117,
            -2.1282802,
            0.32825103,
            0.26467952,
            0.79062456,
            -1.7666106,
            1.7873101,
            -0.89313006,
            0.18950556,
            -0.06798749,
            0.8019976,
            -1.2689947,
        ],
    },
    Case {
        name: "order_1_shift_terminal",
        config: r#"{"prediction_type": "flow_prediction", "use_flow_sigmas": true, "flow_shift": 1.0, "solver_order": 1, "shift_terminal": 0.1, "_class_name": "UniPCMultistepScheduler"}"#,
        steps: 4,
        timesteps: &[999.0, 700.0, 399.0, 99.0],
        sigmas: &[0.999999, 0.7, 0.4, 0.1, 0.0],
        final_sample: &[
            0.5112272,
            -3.4106739,
            0.76765394,
            0.24990603,
            0.6037472,
            1.2849524,
            0.37840202,
            -1.4830267,
            -0.7727779,
            1.5960926,
            -0.36590135,
            -0.6191842,
            2.1880581,
            -1.0635797,
            0.27104774,
            -0.43346083,
            1.4923263,
            -1.2226897,
            1.1530299,
            -1.1530889,
            -0.18507057,
            0.35760736,
            0.61029184,
            -1.2867092,
        ],
    },
];
