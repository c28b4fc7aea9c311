//! Debugging aid for the starter model: does it listen to one kind of caption word?
//! Renders clips of a known scene, noises them to several flow times, and compares the
//! model's error with the true caption against a caption with one word swapped. Equal
//! errors mean the model ignores that word at that noise level.
//!
//! `cargo run --release --example wordprobe -- MODEL_DIR [CLIPS]`
use aivideo::models::starter::StarterNet;
use aivideo::models::starter::synth::captions::caption_with;
use aivideo::models::starter::synth::render::{ClipSpec, scene};
use aivideo::models::starter::synth::vocab::{Background, Colour, Motion, Scene, Shape};
use aivideo::models::starter::weights;
use aivideo::rng::Rng;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

const TIMES: [f32; 5] = [0.5, 0.8, 0.9, 0.95, 1.0];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        anyhow::bail!("usage: wordprobe MODEL_DIR [CLIPS]");
    };
    let clips: u64 = args.next().map_or(Ok(24), |v| v.parse())?;
    let dev = Device::Cpu;
    let (cfg, w) = weights::load_dir(std::path::Path::new(&dir))?;
    let net = StarterNet::new(
        &cfg,
        VarBuilder::from_buffered_safetensors(w, DType::F32, &dev)?,
    )?;
    let red = |shape, motion| scene(Colour::Red, shape, motion, Background::Black);
    let probes = [
        (
            "right vs left",
            red(Shape::Circle, Motion::Right),
            red(Shape::Circle, Motion::Left),
        ),
        (
            "down vs up",
            red(Shape::Circle, Motion::Down),
            red(Shape::Circle, Motion::Up),
        ),
        (
            "square vs circle",
            red(Shape::Square, Motion::Down),
            red(Shape::Circle, Motion::Down),
        ),
        (
            "triangle vs circle",
            red(Shape::Triangle, Motion::Down),
            red(Shape::Circle, Motion::Down),
        ),
        (
            "red vs blue",
            red(Shape::Circle, Motion::Right),
            scene(
                Colour::Blue,
                Shape::Circle,
                Motion::Right,
                Background::Black,
            ),
        ),
    ];
    println!("mean squared error of the clean-clip prediction: true caption / swapped word");
    for (label, truth, swapped) in probes {
        let errors = TIMES
            .iter()
            .map(|&t| {
                let mut sum = [0f64; 2];
                for k in 0..clips {
                    let e = errors(&net, &truth, &swapped, t, 100 + k, &dev)?;
                    sum[0] += e[0];
                    sum[1] += e[1];
                }
                Ok(format!(
                    "t={t}: {:.4}/{:.4}",
                    sum[0] / clips as f64,
                    sum[1] / clips as f64
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        println!("{label:>16}  {}", errors.join("  "));
    }
    Ok(())
}

/// The error of the prediction for one noised clip of `truth`, captioned truly and swapped.
fn errors(
    net: &StarterNet,
    truth: &Scene,
    swapped: &Scene,
    t: f32,
    seed: u64,
    dev: &Device,
) -> anyhow::Result<[f64; 2]> {
    let mut rng = Rng::new(seed);
    let clip = ClipSpec::sample(*truth, net.cfg.native_size, net.cfg.frames, &mut rng).render();
    let px: Vec<f32> = clip
        .frames
        .iter()
        .flatten()
        .map(|&v| v as f32 / 127.5 - 1.0)
        .collect();
    let x0 = Tensor::from_vec(px, net.clip_shape(1).to_vec(), dev)?;
    let noise = Tensor::from_vec(rng.normals(x0.elem_count()), x0.shape(), dev)?;
    let xt = ((&x0 * (1.0 - t) as f64)? + (noise * t as f64)?)?;
    let mut out = [0f64; 2];
    for (slot, scn) in out.iter_mut().zip([truth, swapped]) {
        let caption = caption_with(scn, 0, &mut Rng::new(7));
        let text = net.encode(&[net.tokenize(&caption).ids], dev, false)?;
        let pred = net.denoiser.forward(&xt, &[t], &text, false)?;
        *slot = (pred - &x0)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    }
    Ok(out)
}
