//! The bundled starter model family: its config, weights, text encoder, denoiser and
//! sampler, the [`VideoModel`] implementation, and the training, synthetic data and
//! evaluation code that serve only it.

pub mod config;
pub mod config_check;
pub mod denoiser;
pub mod eval;
pub mod layers;
pub mod resample;
pub mod sampler;
pub mod synth;
pub mod text_encoder;
pub mod train;
pub mod weights;

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::models::{
    Bound, Control, GenerationParams, Limits, ModelInfo, PhaseTimings, PipelineError, Progress,
    Video, VideoModel,
};
use config::StarterConfig;
use denoiser::Denoiser;
use resample::resample_clip;
use text_encoder::{EMPTY, TextEmbedding, TextEncoder, TokenBatch, Tokens};

/// The network: shared by training and inference so both use one definition.
pub struct StarterNet {
    pub cfg: StarterConfig,
    pub text: TextEncoder,
    pub denoiser: Denoiser,
}

impl StarterNet {
    /// Builds the network; parameter names are `text.*` and `denoiser.*`.
    pub fn new(cfg: &StarterConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(StarterNet {
            text: TextEncoder::new(
                cfg.vocabulary.len(),
                cfg.dim,
                cfg.text_layers,
                cfg.heads,
                vb.pp("text"),
            )?,
            denoiser: Denoiser::new(cfg, vb.pp("denoiser"))?,
            cfg: cfg.clone(),
        })
    }

    pub fn tokenize(&self, prompt: &str) -> Tokens {
        self.cfg.vocabulary.tokenize(prompt, self.cfg.max_tokens)
    }

    /// Encodes token sequences (use `vec![EMPTY]` for the unconditional branch).
    pub fn encode(
        &self,
        seqs: &[Vec<u32>],
        device: &Device,
        training: bool,
    ) -> candle_core::Result<TextEmbedding> {
        let batch = TokenBatch::new(seqs, self.cfg.max_tokens, device)?;
        self.text.forward(&batch, training)
    }

    /// Shape of one native clip batch: `(B, T, S, S, 3)`.
    pub fn clip_shape(&self, batch: usize) -> [usize; 5] {
        let s = self.cfg.native_size;
        [batch, self.cfg.frames, s, s, 3]
    }
}

/// One clip at the native resolution, before resampling.
pub struct NativeClip {
    /// `T` frames of `S×S` RGB bytes.
    pub frames: Vec<Vec<u8>>,
    pub text_encoding_s: f64,
    pub denoising_s: f64,
    /// Prompt words outside the vocabulary (ignored).
    pub unknown_words: Vec<String>,
}

/// The starter model ready for generation.
pub struct StarterModel {
    net: StarterNet,
    device: Device,
    limits: Limits,
    info: ModelInfo,
}

impl StarterModel {
    pub fn new(
        cfg: StarterConfig,
        weights: Vec<u8>,
        source: String,
        device: Device,
    ) -> Result<Self, PipelineError> {
        // The tensors must have the shapes the config implies: a mismatch (weights from
        // another config) is reported with the tensor's name, before anything runs.
        let bad_weights = |e: candle_core::Error| {
            PipelineError::BadWeights(format!(
                "{source}: {e} (do the weights belong to this config.json?)"
            ))
        };
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(bad_weights)?;
        let net = StarterNet::new(&cfg, vb).map_err(bad_weights)?;
        let limits = starter_limits(&cfg);
        let info = ModelInfo {
            name: cfg.name.clone(),
            kind: cfg.architecture.clone(),
            source,
            weights_sha256: cfg.weights_sha256.clone(),
            device: crate::models::device::describe(&device),
        };
        Ok(StarterModel {
            net,
            device,
            limits,
            info,
        })
    }

    /// Generates native-resolution frames in [0, 255] without resampling.
    pub fn generate_native(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<NativeClip, PipelineError> {
        let t0 = Instant::now();
        let prompt = self.net.tokenize(&params.prompt);
        let cond = prompt.ids;
        let uncond = match &params.negative_prompt {
            Some(neg) => self.net.tokenize(neg).ids,
            None => vec![EMPTY],
        };
        let guided = params.guidance != 1.0;
        let seqs = if guided {
            vec![cond, uncond]
        } else {
            vec![cond]
        };
        let text = self.net.encode(&seqs, &self.device, false)?;
        let cond_text = text.narrow(0, 1)?;
        let text_s = t0.elapsed().as_secs_f64();
        // Guidance only below this noise level (a guidance interval): at the noisiest
        // times it adds artefacts rather than following the prompt.
        let guide_below = self.net.cfg.guidance_max_t;

        let t1 = Instant::now();
        let t_max = self.net.cfg.t_max;
        let x =
            (sampler::noise(params.seed, &self.net.clip_shape(1), &self.device)? * t_max as f64)?;
        let den = &self.net.denoiser;
        let out = sampler::sample(
            x,
            params.steps,
            self.net.cfg.shift,
            t_max,
            params.guidance,
            |x, t| {
                if guided && t <= guide_below {
                    let xx = Tensor::cat(&[x, x], 0)?;
                    let v = den.velocity(&xx, &[t, t], &text, false)?;
                    Ok((v.narrow(0, 0, 1)?, Some(v.narrow(0, 1, 1)?)))
                } else {
                    Ok((den.velocity(x, &[t], &cond_text, false)?, None))
                }
            },
            on_step,
        )?;
        let pixels = ((out.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?
            .round()?
            .to_dtype(DType::U8)?
            .squeeze(0)?
            .to_device(&Device::Cpu)?;
        let t = self.net.cfg.frames;
        let flat: Vec<u8> = pixels.flatten_all()?.to_vec1()?;
        let per = flat.len() / t;
        let frames = flat.chunks(per).map(<[u8]>::to_vec).collect();
        Ok(NativeClip {
            frames,
            text_encoding_s: text_s,
            denoising_s: t1.elapsed().as_secs_f64(),
            unknown_words: prompt.unknown,
        })
    }
}

/// The limits the starter model declares. Its sampler is a full (not distilled) one, so
/// the preset rules are the product defaults: `high` needs ≥ 50 steps, `low` allows ≤ 30.
pub fn starter_limits(cfg: &StarterConfig) -> Limits {
    let frames = cfg.frames as u32;
    Limits {
        native_width: cfg.native_size as u32,
        native_height: cfg.native_size as u32,
        frames: Bound {
            min: frames,
            max: frames,
            default: frames,
        },
        frame_step: 1,
        fps: Bound {
            min: *config_check::FPS.start(),
            max: *config_check::FPS.end(),
            default: cfg.fps,
        },
        guidance: Bound {
            min: *config_check::GUIDANCE.start(),
            max: *config_check::GUIDANCE.end(),
            default: cfg.default_guidance,
        },
        width: Bound {
            min: 256,
            max: 1024,
            default: 512,
        },
        height: Bound {
            min: 256,
            max: 1024,
            default: 512,
        },
        size_multiple: 8,
        presets: Limits::full_sampler_presets(8, 20, 50),
    }
}

impl VideoModel for StarterModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn unknown_words(&self, prompt: &str) -> Vec<String> {
        self.net.tokenize(prompt).unknown
    }

    fn understands_any(&self, prompt: &str) -> bool {
        self.net.tokenize(prompt).ids != [EMPTY]
    }

    fn generate(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<Video, PipelineError> {
        let l = &self.limits;
        if !l.frames.contains(params.frames) || params.steps == 0 {
            return Err(PipelineError::OutOfLimits(format!(
                "this model makes {} frames and needs at least 1 step",
                l.frames.default
            )));
        }
        let native = self.generate_native(params, on_step)?;
        let t = Instant::now();
        let s = self.net.cfg.native_size as u32;
        let frames = resample_clip(&native.frames, s, params.width, params.height);
        Ok(Video {
            width: params.width,
            height: params.height,
            fps: params.fps,
            frames,
            timings: PhaseTimings {
                text_encoding_s: native.text_encoding_s,
                denoising_s: native.denoising_s,
                resampling_s: Some(t.elapsed().as_secs_f64()),
                vae_decoding_s: None,
            },
            ignored_words: native.unknown_words,
        })
    }
}
