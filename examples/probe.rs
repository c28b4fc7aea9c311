//! Debugging aid for the starter model: renders a training clip, noises it to several flow
//! times, and saves what the model predicts (noisy input, prediction of frames 0 and 8,
//! target) as one image, with the error per time on stdout.
//!
//! `cargo run --example probe -- MODEL_DIR OUT.png [T,T,…]`
use aivideo::models::starter::synth::vocab::Triple;
use aivideo::models::starter::{StarterNet, weights};
use aivideo::rng::Rng;
use candle_core::{DType, Device, Tensor};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(out)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: probe MODEL_DIR OUT.png");
    };
    let times: Vec<f32> = match args.next() {
        Some(list) => list
            .split(',')
            .map(|t| t.parse())
            .collect::<Result<_, _>>()?,
        None => vec![0.05, 0.2, 0.5, 0.8, 0.95, 1.0],
    };
    let dir = std::path::PathBuf::from(dir);
    let (cfg, w) = weights::load_dir(&dir)?;
    let dev = Device::Cpu;
    let vb = candle_nn::VarBuilder::from_buffered_safetensors(w, DType::F32, &dev)?;
    let net = StarterNet::new(&cfg, vb)?;
    let aivideo::models::starter::train::Batch { x0, seqs, .. } =
        aivideo::models::starter::train::make_batch(
            &net,
            &Triple::training(),
            99,
            0,
            1,
            0.0,
            &dev,
        )?;
    let text = net.encode(&seqs, &dev, false)?;
    let mut rows = Vec::new();
    for &t in &times {
        let noise = Tensor::from_vec(Rng::new(5).normals(x0.elem_count()), x0.shape(), &dev)?;
        let xt = ((&x0 * (1.0 - t as f64))? + (&noise * t as f64)?)?;
        let pred = net.denoiser.forward(&xt, &[t], &text, false)?;
        let err: f32 = (&pred - &x0)?.sqr()?.mean_all()?.to_scalar()?;
        println!("t={t} x0 mse {err:.4}");
        rows.push(Tensor::cat(
            &[
                &xt.narrow(1, 0, 1)?,
                &pred.narrow(1, 0, 1)?,
                &pred.narrow(1, 8, 1)?,
                &x0.narrow(1, 0, 1)?,
            ],
            3,
        )?);
    }
    let img = Tensor::cat(&rows, 2)?.squeeze(0)?.squeeze(0)?; // (H·times, W·4, 3)
    let img = ((img.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?.to_dtype(DType::U8)?;
    let (h, w, _) = img.dims3()?;
    let data: Vec<u8> = img.flatten_all()?.to_vec1()?;
    let im = image::RgbImage::from_raw(w as u32, h as u32, data).unwrap();
    image::imageops::resize(
        &im,
        w as u32 * 4,
        h as u32 * 4,
        image::imageops::FilterType::Nearest,
    )
    .save(&out)?;
    println!("prompt ids {:?}", seqs);
    Ok(())
}
