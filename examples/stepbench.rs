//! Times training steps (forward + backward) of the starter model, for comparing variants.
use aivideo::models::starter::StarterNet;
use aivideo::models::starter::config::StarterConfig;
use aivideo::models::starter::layers::Activation;
use aivideo::models::starter::synth::vocab::Triple;
use aivideo::models::starter::train::params::Params;
use aivideo::rng::Rng;
use candle_core::Device;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let rounds: usize = std::env::args().nth(1).map_or(3, |v| v.parse().unwrap());
    let mut variants = Vec::new();
    for act in [Activation::Gelu, Activation::Relu] {
        let cfg = StarterConfig {
            activation: act,
            ..StarterConfig::small()
        };
        let params = Params::new(1);
        let net = StarterNet::new(&cfg, params.var_builder(&dev))?;
        variants.push((format!("{act:?}"), net, Vec::new()));
    }
    for r in 0..rounds {
        for (_, net, times) in variants.iter_mut() {
            let batch = aivideo::models::starter::train::make_batch(
                net,
                &Triple::training(),
                1,
                r as u64,
                8,
                0.1,
                &dev,
            )?;
            let mut rng = Rng::new(r as u64);
            let t0 = Instant::now();
            let l = aivideo::models::starter::train::loss(
                net,
                &batch,
                aivideo::models::starter::train::LossOptions {
                    object_weight: 4.0,
                    ..Default::default()
                },
                &mut rng,
                &dev,
            )?;
            let _g = l.backward()?;
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    for (name, _, times) in &mut variants {
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.3} s/step ({:?})",
            times[times.len() / 2],
            times
        );
    }
    Ok(())
}
