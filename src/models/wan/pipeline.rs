//! The Wan2.1 text-to-video pipeline as diffusers' `WanPipeline` runs it: prompt encoding
//! with UMT5, torch-compatible initial latents, the scheduler loop with classifier-free
//! guidance, and the VAE decode to RGB frames.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::WanManifest;
use super::tokenizer::WanTokenizer;
use super::transformer::WanTransformer;
use super::umt5::{Umt5Config, Umt5Streamer};
use super::vae::AutoencoderKlWan;
use crate::models::{
    Control, GenerationParams, Limits, ModelInfo, Phase, PhaseTimings, PipelineError, Progress,
    Video, VideoModel,
};
use crate::nn::weights::{component_files, mmap_var_builder};
use crate::noise::torch::torch_randn;
use crate::schedulers::scheduler_from_json;

/// The prompt length `WanPipeline` pads and truncates to by default.
pub const MAX_SEQUENCE_LENGTH: usize = 512;

/// A config error of one component, naming its file.
fn bad_config(path: PathBuf) -> impl FnOnce(&dyn std::fmt::Display) -> PipelineError {
    move |e| PipelineError::BadConfig {
        path,
        reason: e.to_string(),
    }
}

/// Adds the failing component's folder to a tensor error raised while building it (a
/// missing tensor or a shape that does not match the config).
fn in_component(dir: &Path) -> impl Fn(candle_core::Error) -> PipelineError + '_ {
    move |e| PipelineError::BadWeights(format!("{}: {e}", dir.display()))
}

/// A loaded `WanPipeline`. The text encoder is loaded for each generation and released
/// before denoising, so that UMT5-XXL and the transformer are never in memory together.
pub struct WanModel {
    dir: PathBuf,
    tokenizer: WanTokenizer,
    text_encoder_cfg: Umt5Config,
    /// `scheduler/scheduler_config.json`, read once by `inspect`.
    scheduler_json: String,
    transformer: WanTransformer,
    vae: AutoencoderKlWan,
    device: Device,
    dtype: DType,
    limits: Limits,
    info: ModelInfo,
}

impl WanModel {
    /// Loads the tokenizer, transformer and VAE (checking every config and tensor shape)
    /// and checks the text encoder's and scheduler's configs.
    pub fn load(
        manifest: &WanManifest,
        source: &str,
        device: Device,
        dtype: Option<DType>,
    ) -> Result<Self, PipelineError> {
        let dir = manifest.dir.clone();
        let dtype = dtype.unwrap_or(if device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        });
        let path = dir.join("tokenizer").join("tokenizer.json");
        let tokenizer = WanTokenizer::from_file(&path).map_err(|e| bad_config(path)(&e))?;
        // The components' configs were parsed and checked by `inspect`.
        let tdir = dir.join("transformer");
        let vb = mmap_var_builder(
            &component_files(&tdir, "diffusion_pytorch_model")?,
            dtype,
            &device,
        )?;
        let transformer =
            WanTransformer::new(&manifest.transformer, vb).map_err(in_component(&tdir))?;

        let vdir = dir.join("vae");
        let vb = mmap_var_builder(
            &component_files(&vdir, "diffusion_pytorch_model")?,
            dtype,
            &device,
        )?;
        let vae = AutoencoderKlWan::decoder_only(manifest.vae.clone(), vb)
            .map_err(in_component(&vdir))?;

        let info = ModelInfo {
            name: manifest.name.clone(),
            kind: manifest.pipeline_class.clone(),
            source: source.to_string(),
            weights_sha256: String::new(),
            device: crate::models::device::describe(&device),
        };
        Ok(WanModel {
            dir,
            tokenizer,
            text_encoder_cfg: manifest.text_encoder.clone(),
            scheduler_json: manifest.scheduler_json.clone(),
            transformer,
            vae,
            device,
            dtype,
            limits: manifest.limits(),
            info,
        })
    }

    /// Encodes the prompt and the negative prompt (empty when none is given, as diffusers
    /// does) with the text encoder streamed from its files one block at a time, so that
    /// UMT5-XXL never sits in memory whole. Both prompts go through in one batch: each row
    /// is padded to the same length and encoded on its own (the tests check that a batch of
    /// two equals two separate calls bit for bit), so this is what diffusers' two calls give.
    fn encode(
        &self,
        params: &GenerationParams,
        guided: bool,
    ) -> Result<(Tensor, Option<Tensor>), PipelineError> {
        let edir = self.dir.join("text_encoder");
        let encoder = Umt5Streamer::new(&component_files(&edir, "model")?, &self.text_encoder_cfg)
            .map_err(in_component(&edir))?;
        let mut prompts = vec![params.prompt.clone()];
        if guided {
            prompts.push(params.negative_prompt.clone().unwrap_or_default());
        }
        let embeds = encoder.encode_prompt(
            &self.tokenizer,
            &prompts,
            MAX_SEQUENCE_LENGTH,
            self.dtype,
            &self.device,
        )?;
        let cond = embeds.narrow(0, 0, 1)?;
        let uncond = if guided {
            Some(embeds.narrow(0, 1, 1)?)
        } else {
            None
        };
        Ok((cond, uncond))
    }

    /// The transformer's prediction at timestep `t`, guided when `uncond` is given.
    fn predict(
        &self,
        latents: &Tensor,
        t: f64,
        cond: &Tensor,
        uncond: Option<&Tensor>,
        guidance: f64,
    ) -> Result<Tensor, PipelineError> {
        let x = latents.to_dtype(self.dtype)?;
        let ts = Tensor::new(&[t as f32], &self.device)?;
        let c = self
            .transformer
            .forward(&x, &ts, cond)?
            .to_dtype(DType::F32)?;
        Ok(match uncond {
            None => c,
            Some(u) => {
                let u = self.transformer.forward(&x, &ts, u)?.to_dtype(DType::F32)?;
                (&u + ((c - &u)? * guidance)?)?
            }
        })
    }

    /// Runs the whole pipeline; the frames are RGB bytes at the requested size.
    pub fn generate_frames(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<Video, PipelineError> {
        let l = &self.limits;
        if !l.frames.contains(params.frames)
            || !(params.frames - 1).is_multiple_of(l.frame_step)
            || !params.width.is_multiple_of(l.size_multiple)
            || !params.height.is_multiple_of(l.size_multiple)
            || params.steps == 0
        {
            return Err(PipelineError::OutOfLimits(format!(
                "Wan needs 1 + {}·k frames, sides divisible by {} and at least 1 step",
                l.frame_step, l.size_multiple
            )));
        }
        let guided = params.guidance > 1.0;
        let t0 = Instant::now();
        let (cond, uncond) = self.encode(params, guided)?;
        let cond = cond.to_dtype(self.dtype)?;
        let uncond = uncond.map(|u| u.to_dtype(self.dtype)).transpose()?;
        // Each phase's buffers differ from the next one's: hand back what this one freed.
        crate::allocator::release_free_memory();
        let text_encoding_s = t0.elapsed().as_secs_f64();

        let t1 = Instant::now();
        let spatial = l.size_multiple as usize / self.transformer.config().patch()[1];
        let shape = [
            1,
            self.vae.config().z_dim,
            ((params.frames - 1) / l.frame_step + 1) as usize,
            params.height as usize / spatial,
            params.width as usize / spatial,
        ];
        let mut latents =
            torch_randn(params.seed, &shape, &Device::Cpu)?.to_device(&self.device)?;
        let path = self.dir.join("scheduler").join("scheduler_config.json");
        let mut scheduler =
            scheduler_from_json(&self.scheduler_json, &path).map_err(|e| bad_config(path)(&e))?;
        scheduler.set_timesteps(params.steps as usize);
        let timesteps = scheduler.timesteps().to_vec();
        let total = timesteps.len() as u32;
        for (i, &t) in timesteps.iter().enumerate() {
            let noise =
                self.predict(&latents, t, &cond, uncond.as_ref(), params.guidance as f64)?;
            latents = scheduler.step(&noise, t, &latents)?;
            let step = i as u32 + 1;
            let progress = Progress {
                phase: Phase::Denoising,
                step,
                total_steps: total,
                elapsed: t1.elapsed(),
            };
            if on_step(progress) == Control::Cancel && step < total {
                return Err(PipelineError::Canceled { step, total });
            }
        }
        crate::allocator::release_free_memory();
        let denoising_s = t1.elapsed().as_secs_f64();

        let t2 = Instant::now();
        let z = self.vae.denormalize_latents(&latents)?;
        let mut canceled = false;
        let decoded = self.vae.decode(&z, &mut |done, chunks| {
            let progress = Progress {
                phase: Phase::Decoding,
                step: done as u32,
                total_steps: chunks as u32,
                elapsed: t2.elapsed(),
            };
            if on_step(progress) == Control::Cancel && done < chunks {
                canceled = true;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        let Some(video) = decoded.filter(|_| !canceled) else {
            return Err(PipelineError::Canceled { step: total, total });
        };
        let frames = to_rgb_frames(&video)?;
        Ok(Video {
            width: params.width,
            height: params.height,
            fps: params.fps,
            frames,
            timings: PhaseTimings {
                text_encoding_s,
                denoising_s,
                resampling_s: None,
                vae_decoding_s: Some(t2.elapsed().as_secs_f64()),
            },
            ignored_words: Vec::new(),
        })
    }
}

/// `[1, 3, T, H, W]` in [-1, 1] to `T` RGB frames, rounded as diffusers' `numpy_to_pil` does
/// (`round((x / 2 + 0.5).clamp(0, 1) · 255)`).
pub fn to_rgb_frames(video: &Tensor) -> Result<Vec<image::RgbImage>, PipelineError> {
    let (_, _, t, h, w) = video.dims5()?;
    let bytes = ((video.to_dtype(DType::F32)? * 0.5)? + 0.5)?
        .clamp(0f32, 1f32)?
        .affine(255.0, 0.0)?
        .round()?
        .squeeze(0)?
        .permute((1, 2, 3, 0))? // T, H, W, 3
        .to_dtype(DType::U8)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let per = h * w * 3;
    (0..t)
        .map(|i| {
            image::RgbImage::from_raw(w as u32, h as u32, bytes[i * per..(i + 1) * per].to_vec())
                .ok_or_else(|| PipelineError::OutOfLimits("frame size".into()))
        })
        .collect()
}

impl VideoModel for WanModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn unknown_words(&self, _prompt: &str) -> Vec<String> {
        Vec::new()
    }

    fn generate(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<Video, PipelineError> {
        self.generate_frames(params, on_step)
    }
}
