//! Choosing the compute device: CPU always, CUDA or Metal when compiled in and present.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::PipelineError;

/// The `--device` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// An available GPU, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "metal" => Ok(Self::Metal),
            o => Err(format!(
                "unknown device `{o}` (expected auto, cpu, cuda or metal)"
            )),
        }
    }
}

/// The number type a model computes in (`--dtype`); `Auto` lets the model choose (f32 on
/// the CPU, bf16 on a GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
}

impl Precision {
    /// The candle number type, `None` for the model's own choice.
    pub fn dtype(self) -> Option<candle_core::DType> {
        match self {
            Precision::Auto => None,
            Precision::F32 => Some(candle_core::DType::F32),
            Precision::Bf16 => Some(candle_core::DType::BF16),
            Precision::F16 => Some(candle_core::DType::F16),
        }
    }
}

/// Opens the chosen device; `Auto` falls back to the CPU when no GPU can be opened.
pub fn select_device(choice: DeviceChoice) -> Result<Device, PipelineError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            Device::new_cuda(0).map_err(|_| PipelineError::DeviceUnavailable("cuda".into()))
        }
        DeviceChoice::Metal => {
            Device::new_metal(0).map_err(|_| PipelineError::DeviceUnavailable("metal".into()))
        }
        DeviceChoice::Auto => Ok(Device::new_cuda(0)
            .or_else(|_| Device::new_metal(0))
            .unwrap_or(Device::Cpu)),
    }
}

/// Devices this build could use on this machine, e.g. `["cpu", "cuda:0"]`.
pub fn available() -> Vec<String> {
    let mut out = vec!["cpu".to_string()];
    if cfg!(feature = "cuda") && Device::new_cuda(0).is_ok() {
        out.push("cuda:0".into());
    }
    if cfg!(feature = "metal") && Device::new_metal(0).is_ok() {
        out.push("metal:0".into());
    }
    out
}

/// A short name for job metadata: `cpu`, `cuda:0` or `metal:0`.
pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda:0".into(),
        Device::Metal(_) => "metal:0".into(),
    }
}
