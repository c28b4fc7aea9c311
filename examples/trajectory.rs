//! Debugging aid: samples one clip with the Euler sampler and saves frame 0 of the model's
//! clean-clip prediction at every step (left to right), to see where a sample goes wrong.
//!
//! `cargo run --example trajectory -- MODEL_DIR OUT.png "prompt" [steps] [guidance] [t_max]`
use aivideo::models::starter::{StarterNet, sampler, text_encoder::EMPTY, weights};
use candle_core::{DType, Device, Tensor};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (cfg, w) = weights::load_dir(std::path::Path::new(&a[1]))?;
    let steps: u32 = a.get(4).map_or(10, |s| s.parse().unwrap());
    let g: f64 = a.get(5).map_or(3.0, |s| s.parse().unwrap());
    let t_max: f32 = a.get(6).map_or(1.0, |s| s.parse().unwrap());
    let dev = Device::Cpu;
    let net = StarterNet::new(
        &cfg,
        candle_nn::VarBuilder::from_buffered_safetensors(w, DType::F32, &dev)?,
    )?;
    let text = net.encode(&[net.tokenize(&a[3]).ids, vec![EMPTY]], &dev, false)?;
    let mut x = (sampler::noise(3, &net.clip_shape(1), &dev)? * t_max as f64)?;
    let ts = sampler::timesteps(steps, 1.0, t_max);
    let mut cols = Vec::new();
    for w in ts.windows(2) {
        let xx = Tensor::cat(&[&x, &x], 0)?;
        let x0 = net.denoiser.forward(&xx, &[w[0], w[0]], &text, false)?;
        let (c, u) = (x0.narrow(0, 0, 1)?, x0.narrow(0, 1, 1)?);
        let x0 = (&u + ((&c - &u)? * g)?)?;
        cols.push(Tensor::cat(
            &[&x.narrow(1, 0, 1)?, &x0.narrow(1, 0, 1)?],
            2,
        )?);
        let r = (w[1] / w[0]) as f64;
        x = ((&x * r)? + (&x0 * (1.0 - r))?)?;
    }
    let img = Tensor::cat(&cols, 3)?.squeeze(0)?.squeeze(0)?;
    let img = ((img.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?.to_dtype(DType::U8)?;
    let (h, wd, _) = img.dims3()?;
    let im = image::RgbImage::from_raw(wd as u32, h as u32, img.flatten_all()?.to_vec1()?).unwrap();
    image::imageops::resize(
        &im,
        wd as u32 * 3,
        h as u32 * 3,
        image::imageops::FilterType::Nearest,
    )
    .save(&a[2])?;
    Ok(())
}
