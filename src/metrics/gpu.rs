//! GPU utilisation and memory through NVML: initialised once and kept for every scrape; without
//! an NVIDIA driver (NVML fails to load) there are simply no GPU metrics.

use nvml_wrapper::Nvml;

/// One GPU as sampled for a scrape; a value NVML could not read is `None` (and not reported).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuStats {
    /// NVML device index.
    pub index: u32,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3` (empty when NVML cannot tell).
    pub name: String,
    /// Fraction (0 to 1) of the last sample period during which a kernel ran.
    pub utilization: Option<f64>,
    pub memory_used_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
}

/// The NVML handle, when there is a driver to talk to.
pub struct GpuMonitor {
    nvml: Option<Nvml>,
    /// Why NVML is not available (for a debug message), when it is not.
    unavailable: Option<String>,
}

impl std::fmt::Debug for GpuMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuMonitor")
            .field("nvml", &self.nvml.is_some())
            .field("unavailable", &self.unavailable)
            .finish()
    }
}

impl GpuMonitor {
    /// Loads NVML; failure (no driver, no library, no permission) is not an error: the
    /// monitor then reports no GPUs.
    pub fn init() -> GpuMonitor {
        match Nvml::init() {
            Ok(nvml) => GpuMonitor {
                nvml: Some(nvml),
                unavailable: None,
            },
            Err(e) => GpuMonitor {
                nvml: None,
                unavailable: Some(e.to_string()),
            },
        }
    }

    /// A monitor that never reports GPUs.
    pub fn disabled() -> GpuMonitor {
        GpuMonitor {
            nvml: None,
            unavailable: Some("GPU monitoring disabled".into()),
        }
    }

    /// Why there are no GPU metrics, or `None` when NVML is loaded.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Samples every GPU NVML lists; devices or values it cannot read are left out.
    pub fn sample(&self) -> Vec<GpuStats> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        let count = nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|index| {
                let device = nvml.device_by_index(index).ok()?;
                let memory = device.memory_info().ok();
                Some(GpuStats {
                    index,
                    name: device.name().unwrap_or_default(),
                    utilization: device
                        .utilization_rates()
                        .ok()
                        .map(|u| f64::from(u.gpu.min(100)) / 100.0),
                    memory_used_bytes: memory.as_ref().map(|m| m.used),
                    memory_total_bytes: memory.as_ref().map(|m| m.total),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_monitor_reports_no_gpus() {
        let m = GpuMonitor::disabled();
        assert!(m.sample().is_empty());
        assert!(m.unavailable_reason().is_some());
    }

    #[test]
    fn init_never_fails_and_agrees_with_its_reason() {
        // With or without a driver: either NVML loaded, or there is a reason and no GPUs.
        let m = GpuMonitor::init();
        let gpus = m.sample();
        if m.unavailable_reason().is_some() {
            assert!(gpus.is_empty());
        }
        for gpu in gpus {
            if let Some(u) = gpu.utilization {
                assert!((0.0..=1.0).contains(&u), "{gpu:?}");
            }
            if let (Some(used), Some(total)) = (gpu.memory_used_bytes, gpu.memory_total_bytes) {
                assert!(used <= total, "{gpu:?}");
            }
        }
    }
}
