//! Scratch: does the model use a caption word? Loss with the true caption vs a swapped one.
use aivideo::pipeline::starter::StarterNet;
use aivideo::pipeline::weights;
use aivideo::rng::Rng;
use aivideo::synth::captions::caption_with;
use aivideo::synth::render::{ClipSpec, scene};
use aivideo::synth::vocab::*;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap();
    let dev = Device::Cpu;
    let (cfg, w, _) = weights::load_dir(std::path::Path::new(&dir))?;
    let vb = VarBuilder::from_buffered_safetensors(w, DType::F32, &dev)?;
    let net = StarterNet::new(&cfg, vb)?;
    let s = cfg.native_size;
    for (label, m_true, m_swap, c_swap) in [
        ("dir R vs L", Motion::Right, Motion::Left, Colour::Red),
        ("dir D vs U", Motion::Down, Motion::Up, Colour::Red),
        ("col R vs B", Motion::Right, Motion::Right, Colour::Blue),
        ("mot R vs G", Motion::Right, Motion::Growing, Colour::Red),
    ] {
        for t in [0.5f32, 0.8, 0.9, 0.95, 1.0] {
            let mut tot = [0f64; 2];
            for k in 0..24u64 {
                let mut rng = Rng::new(100 + k);
                let sc = scene(Colour::Red, Shape::Circle, m_true, Background::Black);
                let clip = ClipSpec::sample(sc, s, cfg.frames, &mut rng).render();
                let px: Vec<f32> = clip
                    .frames
                    .iter()
                    .flatten()
                    .map(|&v| v as f32 / 127.5 - 1.0)
                    .collect();
                let x0 = Tensor::from_vec(px, net.clip_shape(1).to_vec(), &dev)?;
                let noise = Tensor::from_vec(rng.normals(x0.elem_count()), x0.shape(), &dev)?;
                let xt = ((&x0 * (1.0 - t) as f64)? + (noise * t as f64)?)?;
                let sw = scene(c_swap, Shape::Circle, m_swap, Background::Black);
                for (j, scn) in [sc, sw].iter().enumerate() {
                    let cap = caption_with(scn, 0, &mut Rng::new(7));
                    let text = net.encode(&[net.tokenize(&cap).ids], &dev, false)?;
                    let pred = net.denoiser.forward(&xt, &[t], &text, false)?;
                    tot[j] += (pred - &x0)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
                }
            }
            println!(
                "{label} t={t}: true {:.4} swapped {:.4}",
                tot[0] / 24.0,
                tot[1] / 24.0
            );
        }
    }
    Ok(())
}
