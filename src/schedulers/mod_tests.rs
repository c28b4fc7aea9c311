//! Tests of config loading and rejection, and the parity harness the scheduler tests share.

use super::*;
use candle_core::Device;
use std::collections::HashMap;

pub(crate) const WAN_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wan");

/// Largest difference seen in one parity run, relative to `max(1, max |reference|)`.
#[derive(Debug, Default)]
pub(crate) struct Parity {
    pub steps: usize,
    pub worst: f32,
}

/// `max |a - b|` and `max(1, max |b|)`.
pub(crate) fn difference(a: &Tensor, b: &Tensor) -> candle_core::Result<(f32, f32)> {
    let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?.max(1.0);
    Ok((diff, scale))
}

/// Runs `scheduler` through the reference trajectory `{prefix}_*` of `tensors`: same timesteps
/// and sigmas, then every step from our own previous output, each within 1e-4 (relative).
pub(crate) fn check_trajectory(
    scheduler: &mut dyn Scheduler,
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    steps: usize,
) -> candle_core::Result<Parity> {
    let get = |name: String| {
        tensors
            .get(&name)
            .unwrap_or_else(|| panic!("reference has no tensor {name}"))
    };
    scheduler.set_timesteps(steps);
    let timesteps = get(format!("{prefix}_timesteps"))
        .to_dtype(DType::F64)?
        .to_vec1::<f64>()?;
    let ours: Vec<f64> = scheduler.timesteps().to_vec();
    assert_eq!(ours.len(), timesteps.len(), "{prefix}: number of timesteps");
    for (o, r) in ours.iter().zip(&timesteps) {
        // The fixture may hold them as F32.
        assert!(
            *o == *r || *o as f32 as f64 == *r,
            "{prefix}: timesteps {ours:?} vs {timesteps:?}"
        );
    }
    let sigmas = get(format!("{prefix}_sigmas"))
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    assert_eq!(scheduler.sigmas(), &sigmas[..], "{prefix}: sigmas");
    let mut sample = get(format!("{prefix}_sample_0")).clone();
    let mut parity = Parity::default();
    for (i, &t) in ours.iter().enumerate() {
        let model_output = get(format!("{prefix}_model_output_{i}"));
        sample = scheduler.step(model_output, t, &sample)?;
        let reference = get(format!("{prefix}_sample_{}", i + 1));
        let (diff, scale) = difference(&sample, reference)?;
        let relative = diff / scale;
        assert!(
            relative <= 1e-4,
            "{prefix}: step {i} differs by {diff:e} (scale {scale})"
        );
        parity.worst = parity.worst.max(relative);
        parity.steps += 1;
    }
    Ok(parity)
}

fn config_error(json: &str) -> SchedulerError {
    match scheduler_from_json(json, Path::new("scheduler/scheduler_config.json")) {
        Ok(s) => panic!("accepted {json}: {s:?}"),
        Err(e) => e,
    }
}

fn unsupported_field(json: &str) -> (&'static str, String) {
    match config_error(json) {
        SchedulerError::Unsupported { source, .. } => (source.field, source.value),
        other => panic!("expected an unsupported option, got {other}"),
    }
}

const WAN_UNIPC: &str = r#"{"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction",
    "use_flow_sigmas": true, "flow_shift": 3.0, "solver_order": 2, "solver_type": "bh2",
    "final_sigmas_type": "zero", "timestep_spacing": "linspace", "beta_schedule": "linear",
    "trained_betas": null, "solver_p": null, "sigma_min": null, "unknown_future_field": 1}"#;

fn unipc_with(field: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(WAN_UNIPC).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

fn euler_with(field: &str, value: &str) -> String {
    let mut v = serde_json::json!({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0});
    v[field] = serde_json::from_str(value).unwrap();
    v.to_string()
}

#[test]
fn config_accepts_wan_unipc_and_euler() {
    let origin = Path::new("x.json");
    let s = scheduler_from_json(WAN_UNIPC, origin).unwrap();
    assert_eq!(s.init_noise_sigma(), 1.0);
    let euler = euler_with("base_shift", "0.5");
    scheduler_from_json(&euler, origin).unwrap();
    // Legacy solver names are mapped to bh2 as diffusers does.
    scheduler_from_json(&unipc_with("solver_type", "\"midpoint\""), origin).unwrap();
}

#[test]
fn config_rejects_unknown_or_missing_class() {
    let e = config_error(r#"{"_class_name": "DDIMScheduler"}"#);
    assert!(
        matches!(e, SchedulerError::UnknownClass { ref class, .. } if class == "DDIMScheduler")
    );
    let msg = e.to_string();
    assert!(
        msg.contains("scheduler/scheduler_config.json") && msg.contains("DDIMScheduler"),
        "{msg}"
    );
    assert!(matches!(
        config_error(r#"{"shift": 3.0}"#),
        SchedulerError::MissingClass { .. }
    ));
    assert!(matches!(config_error("{"), SchedulerError::Json { .. }));
    let wrong_type = r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": "3"}"#;
    assert!(matches!(
        config_error(wrong_type),
        SchedulerError::Json { .. }
    ));
}

#[test]
fn config_rejects_unipc_options_that_change_the_math() {
    let cases = [
        ("use_flow_sigmas", "false"),
        ("prediction_type", "\"epsilon\""),
        ("use_karras_sigmas", "true"),
        ("use_exponential_sigmas", "true"),
        ("use_beta_sigmas", "true"),
        ("use_dynamic_shifting", "true"),
        ("thresholding", "true"),
        ("predict_x0", "false"),
        ("solver_order", "0"),
        ("flow_shift", "0.0"),
        ("timestep_spacing", "\"uniform\""),
        ("final_sigmas_type", "\"one\""),
        ("solver_type", "\"bh3\""),
        ("solver_p", "{\"_class_name\": \"DDIMScheduler\"}"),
    ];
    for (field, value) in cases {
        let (got, shown) = unsupported_field(&unipc_with(field, value));
        assert_eq!(got, field, "{field} = {value}");
        assert!(!shown.is_empty());
    }
    // Combinations for which diffusers itself returns non-finite samples.
    let bh1 = unipc_with("solver_type", "\"bh1\"");
    assert_eq!(unsupported_field(&bh1).0, "solver_type");
    let no_lower = unipc_with("lower_order_final", "false");
    assert_eq!(unsupported_field(&no_lower).0, "lower_order_final");
    let mut ok: serde_json::Value = serde_json::from_str(&bh1).unwrap();
    ok["final_sigmas_type"] = "sigma_min".into();
    scheduler_from_json(&ok.to_string(), Path::new("x")).unwrap();
}

#[test]
fn config_rejects_euler_options_that_change_the_math() {
    for (field, value) in [
        ("use_dynamic_shifting", "true"),
        ("invert_sigmas", "true"),
        ("use_karras_sigmas", "true"),
        ("use_exponential_sigmas", "true"),
        ("use_beta_sigmas", "true"),
        ("stochastic_sampling", "true"),
        ("shift", "-1.0"),
        ("num_train_timesteps", "0"),
    ] {
        assert_eq!(
            unsupported_field(&euler_with(field, value)).0,
            field,
            "{field}"
        );
    }
}

/// A huge `solver_order` allocated that many history slots; a terminal
/// sigma outside (0, 1) or a shift that is 0 or infinite in f32 gave non-finite or
/// out-of-range sigmas.
#[test]
fn config_rejects_sizes_and_levels_that_break_the_schedule() {
    for order in ["4", "1000000000000000"] {
        let (field, _) = unsupported_field(&unipc_with("solver_order", order));
        assert_eq!(field, "solver_order", "{order}");
    }
    scheduler_from_json(&unipc_with("solver_order", "3"), Path::new("x")).unwrap();
    for terminal in ["1.0", "2.0", "-0.5"] {
        let (field, _) = unsupported_field(&unipc_with("shift_terminal", terminal));
        assert_eq!(field, "shift_terminal", "unipc {terminal}");
        let (field, _) = unsupported_field(&euler_with("shift_terminal", terminal));
        assert_eq!(field, "shift_terminal", "euler {terminal}");
    }
    for shift in ["1e300", "1e-300"] {
        assert_eq!(unsupported_field(&euler_with("shift", shift)).0, "shift");
    }
}

/// Found by the `model_config` fuzz check on its seed corpus: with a terminal sigma, a
/// one-step schedule (which starts and ends at sigma 1) stretched by 0/0 into NaN.
#[test]
fn a_one_step_schedule_with_a_terminal_sigma_is_finite() {
    let origin = Path::new("x.json");
    for json in [
        euler_with("shift_terminal", "0.1"),
        unipc_with("shift_terminal", "0.1"),
    ] {
        let mut s = scheduler_from_json(&json, origin).unwrap();
        for steps in [1, 2, 30] {
            s.set_timesteps(steps);
            assert!(s.timesteps().iter().all(|t| t.is_finite()), "{json}");
            assert!(s.sigmas().iter().all(|x| (0.0..=1.0).contains(x)), "{json}");
        }
        s.set_timesteps(1);
        assert!(s.sigmas()[0] > 0.99, "{:?}", s.sigmas());
    }
}

#[test]
fn config_error_message_names_file_field_and_value() {
    let msg = config_error(&euler_with("stochastic_sampling", "true")).to_string();
    assert!(
        msg.starts_with("scheduler/scheduler_config.json: "),
        "{msg}"
    );
    assert!(msg.contains("`stochastic_sampling` = true"), "{msg}");
}

#[test]
fn load_scheduler_reports_missing_file() {
    let e = load_scheduler(Path::new("/nonexistent/scheduler_config.json")).unwrap_err();
    assert!(matches!(e, SchedulerError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/scheduler_config.json"));
}

#[test]
fn load_scheduler_reads_fixture_and_pipeline_configs() {
    for dir in [
        "schedulers/unipc",
        "schedulers/euler",
        "tiny-pipeline/scheduler",
    ] {
        let path = Path::new(WAN_DATA).join(dir).join("scheduler_config.json");
        let mut s = load_scheduler(&path).unwrap_or_else(|e| panic!("{e}"));
        s.set_timesteps(3);
        assert_eq!(s.timesteps().len(), 3, "{dir}");
        assert_eq!(s.sigmas().len(), 4, "{dir}");
    }
}

#[test]
fn linspace_matches_numpy() {
    // np.linspace(1, 0.001, 6).tolist()
    let expected = [
        1.0,
        0.8002,
        0.6004,
        0.40059999999999996,
        0.20079999999999998,
        0.001,
    ];
    assert_eq!(linspace(1.0, 0.001, 6), expected);
    // np.linspace(1000.0, 2.9940119760479043, 7).tolist()
    let expected = [
        1000.0,
        833.8323353293413,
        667.6646706586826,
        501.49700598802394,
        335.3293413173652,
        169.1616766467065,
        2.9940119760479043,
    ];
    assert_eq!(linspace(1000.0, 2.9940119760479043, 7), expected);
    assert_eq!(linspace(3.0, 4.0, 1), [3.0]);
    assert!(linspace(3.0, 4.0, 0).is_empty());
}

#[test]
fn step_checks_timesteps_and_step_count() -> candle_core::Result<()> {
    let mut s = scheduler_from_json(WAN_UNIPC, Path::new("x")).unwrap();
    let x = Tensor::zeros((1, 2), DType::F32, &Device::Cpu)?;
    assert!(s.step(&x, 999.0, &x).is_err(), "before set_timesteps");
    s.set_timesteps(1);
    assert!(s.step(&x, 500.0, &x).is_err(), "wrong timestep");
    let t = s.timesteps()[0];
    s.step(&x, t, &x)?;
    assert!(s.step(&x, t, &x).is_err(), "past the end");
    Ok(())
}

/// A schedule computed with diffusers 0.42.1 from torch-seeded inputs: sample
/// `randn((2, 3, 4), seed 99)`, model output of step i `randn((2, 3, 4), seed 100 + i)`.
pub(crate) struct Case {
    pub name: &'static str,
    pub config: &'static str,
    pub steps: usize,
    pub timesteps: &'static [f64],
    pub sigmas: &'static [f32],
    pub final_sample: &'static [f32],
}

/// Runs `case` and returns the final sample's difference relative to `max(1, max |ref|)`.
pub(crate) fn check_case(case: &Case) -> candle_core::Result<f32> {
    let device = Device::Cpu;
    let mut s =
        scheduler_from_json(case.config, Path::new(case.name)).unwrap_or_else(|e| panic!("{e}"));
    s.set_timesteps(case.steps);
    assert_eq!(s.timesteps(), case.timesteps, "{}: timesteps", case.name);
    assert_eq!(s.sigmas(), case.sigmas, "{}: sigmas", case.name);
    let mut sample = crate::noise::torch::torch_randn(99, &[2, 3, 4], &device)?;
    let timesteps = s.timesteps().to_vec();
    for (i, t) in timesteps.into_iter().enumerate() {
        let model_output = crate::noise::torch::torch_randn(100 + i as u64, &[2, 3, 4], &device)?;
        sample = s.step(&model_output, t, &sample)?;
    }
    let reference = Tensor::from_slice(case.final_sample, (2, 3, 4), &device)?;
    let (diff, scale) = difference(&sample, &reference)?;
    let relative = diff / scale;
    println!(
        "{}: final sample max abs difference {diff:e} (relative {relative:e})",
        case.name
    );
    assert!(relative <= 1e-5, "{}: differs by {diff:e}", case.name);
    Ok(relative)
}
