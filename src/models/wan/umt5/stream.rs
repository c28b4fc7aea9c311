//! Streaming UMT5 encoding: the encoder run layer by layer straight from the checkpoint's
//! safetensors files, so that memory holds one layer and the activations, never the model.
//!
//! Nothing is memory-mapped (mapped pages that have been read count in the resident set for
//! as long as the mapping lives). Each tensor is read with positioned reads into a buffer of
//! its own, converted to the compute dtype, and freed with its layer before the next layer
//! is read. The token embedding (`shared.weight`, 256384 × 4096 in UMT5-XXL, 4.2 GB as f32)
//! is never loaded: only the rows of the prompt's token ids are read. The pages the reads
//! leave in the page cache belong to the kernel, which reclaims them under pressure.
//!
//! The result is bit for bit what [`Umt5Encoder::forward`](super::Umt5Encoder::forward)
//! gives with the same weights and dtype: the same [`Umt5Layer`] code runs, on tensors
//! converted from the file's dtype exactly as the memory-mapped loader converts them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Error, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::{PromptTokens, Umt5AttentionInputs, Umt5Config, Umt5Layer};
use crate::models::wan::tokenizer::WanTokenizer;
use crate::nn::norm::rms_norm;
use crate::nn::weights::component_files;

const FINAL_NORM: &str = "encoder.final_layer_norm.weight";

/// One safetensors file, open for positioned reads.
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    file: File,
}

/// Where a tensor lies: its shard, the file's dtype and shape, and its bytes in the file.
#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute offset of the first byte in the file.
    start: u64,
    len: u64,
}

/// A tensor's record in a safetensors header.
#[derive(Debug, Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// A UMT5 checkpoint opened for streaming: the safetensors headers of its files (read and
/// checked against the config when it is opened, so that a missing tensor or a wrong shape
/// is reported before any work) and the files themselves, read tensor by tensor.
#[derive(Debug)]
pub struct Umt5Streamer {
    cfg: Umt5Config,
    gated: bool,
    shards: Vec<Shard>,
    tensors: HashMap<String, Entry>,
    embed_name: &'static str,
}

/// The dtypes a streamed tensor may be stored in.
fn file_dtype(name: &str) -> Option<DType> {
    match name {
        "F32" => Some(DType::F32),
        "BF16" => Some(DType::BF16),
        "F16" => Some(DType::F16),
        _ => None,
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Msg(format!("cannot read {}: {e}", path.display()))
}

/// Fills `buf` from `file` at `offset` without moving a shared cursor.
fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// Parses a safetensors header: the tensors' records, with offsets made absolute.
fn read_header(path: &Path, file: &File) -> Result<Vec<(String, HeaderEntry)>> {
    let bad = |reason: String| Error::Msg(format!("{}: {reason}", path.display()));
    let file_len = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut len = [0u8; 8];
    read_at(file, 0, &mut len).map_err(|_| bad("shorter than a safetensors header".into()))?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 || 8 + n > file_len {
        return Err(bad(format!(
            "header length {n} does not fit the file ({file_len} bytes): truncated or not \
             safetensors"
        )));
    }
    let mut header = vec![0u8; n as usize];
    read_at(file, 8, &mut header).map_err(|e| io_error(path, e))?;
    let parsed: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("unreadable safetensors header: {e}")))?;
    let data_start = 8 + n;
    let mut out = Vec::with_capacity(parsed.len());
    for (name, value) in parsed {
        if name == "__metadata__" {
            continue;
        }
        let mut entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| bad(format!("tensor {name}: bad header record: {e}")))?;
        let [begin, end] = entry.data_offsets;
        if begin > end || data_start + end > file_len {
            return Err(bad(format!(
                "tensor {name}: data offsets {begin}..{end} lie outside the file \
                 ({file_len} bytes): truncated?"
            )));
        }
        entry.data_offsets = [data_start + begin, data_start + end];
        out.push((name, entry));
    }
    Ok(out)
}

/// The tensors of block `encoder.block.{i}` that [`Umt5Layer::new`] reads, with their
/// shapes, relative to the block.
fn layer_tensors(cfg: &Umt5Config, gated: bool) -> Vec<(&'static str, Vec<usize>)> {
    let (d, inner, ff) = (cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff);
    let mut names = vec![
        ("layer.0.layer_norm.weight", vec![d]),
        ("layer.0.SelfAttention.q.weight", vec![inner, d]),
        ("layer.0.SelfAttention.k.weight", vec![inner, d]),
        ("layer.0.SelfAttention.v.weight", vec![inner, d]),
        ("layer.0.SelfAttention.o.weight", vec![d, inner]),
        (
            "layer.0.SelfAttention.relative_attention_bias.weight",
            vec![cfg.relative_attention_num_buckets, cfg.num_heads],
        ),
        ("layer.1.layer_norm.weight", vec![d]),
    ];
    if gated {
        names.push(("layer.1.DenseReluDense.wi_0.weight", vec![ff, d]));
        names.push(("layer.1.DenseReluDense.wi_1.weight", vec![ff, d]));
    } else {
        names.push(("layer.1.DenseReluDense.wi.weight", vec![ff, d]));
    }
    names.push(("layer.1.DenseReluDense.wo.weight", vec![d, ff]));
    names
}

/// T5 layer norm weights are kept in f32 whatever the compute dtype.
fn is_norm(name: &str) -> bool {
    name.ends_with("layer_norm.weight")
}

impl Umt5Streamer {
    /// Opens the safetensors `files` of a UMT5 checkpoint (one file, or every shard a
    /// `model.safetensors.index.json` names, as [`component_files`] lists them), reads their
    /// headers and checks that every tensor the encoder needs is there once, with the shape
    /// `cfg` implies and a dtype of F32, BF16 or F16. The shard that holds a tensor is the
    /// one whose header lists it. No tensor data is read.
    pub fn new(files: &[PathBuf], cfg: &Umt5Config) -> Result<Self> {
        let ff = cfg.validate().map_err(Error::wrap)?;
        if files.is_empty() {
            candle_core::bail!("UMT5: no weight files");
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut tensors: HashMap<String, Entry> = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let file = File::open(path).map_err(|e| io_error(path, e))?;
            for (name, h) in read_header(path, &file)? {
                let entry = Entry {
                    shard: i,
                    dtype: h.dtype,
                    shape: h.shape,
                    start: h.data_offsets[0],
                    len: h.data_offsets[1] - h.data_offsets[0],
                };
                if let Some(other) = tensors.insert(name.clone(), entry) {
                    candle_core::bail!(
                        "UMT5: tensor {name} is in both {} and {}",
                        files[other.shard].display(),
                        path.display()
                    );
                }
            }
            shards.push(Shard {
                path: path.clone(),
                file,
            });
        }
        // As `Umt5Encoder::new`: `shared.weight`, or `encoder.embed_tokens.weight` alone.
        let embed_name = if tensors.contains_key("shared.weight")
            || !tensors.contains_key("encoder.embed_tokens.weight")
        {
            "shared.weight"
        } else {
            "encoder.embed_tokens.weight"
        };
        let streamer = Self {
            cfg: cfg.clone(),
            gated: ff.gated,
            shards,
            tensors,
            embed_name,
        };
        for (name, shape) in streamer.needed() {
            streamer.check(&name, &shape)?;
        }
        Ok(streamer)
    }

    /// Every tensor the encoder reads, with its shape.
    fn needed(&self) -> Vec<(String, Vec<usize>)> {
        let cfg = &self.cfg;
        let mut all = vec![(
            self.embed_name.to_string(),
            vec![cfg.vocab_size, cfg.d_model],
        )];
        let layer = layer_tensors(cfg, self.gated);
        for i in 0..cfg.num_layers {
            all.extend(
                layer
                    .iter()
                    .map(|(name, shape)| (format!("encoder.block.{i}.{name}"), shape.clone())),
            );
        }
        all.push((FINAL_NORM.to_string(), vec![cfg.d_model]));
        all
    }

    /// Checks that `name` is stored with `shape` in a supported dtype and fills its bytes.
    fn check(&self, name: &str, shape: &[usize]) -> Result<()> {
        let Some(e) = self.tensors.get(name) else {
            candle_core::bail!("UMT5: tensor {name} is missing from the checkpoint");
        };
        let path = self.shards[e.shard].path.display();
        let Some(dtype) = file_dtype(&e.dtype) else {
            candle_core::bail!(
                "UMT5: tensor {name} in {path} is stored as {}; supported: F32, BF16, F16",
                e.dtype
            );
        };
        if e.shape != shape {
            candle_core::bail!(
                "UMT5: tensor {name} in {path} has shape {:?}, the config needs {shape:?}",
                e.shape
            );
        }
        let want = shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64;
        if e.len != want {
            candle_core::bail!(
                "UMT5: tensor {name} in {path} has {} bytes, its shape and dtype need {want}",
                e.len
            );
        }
        Ok(())
    }

    /// The number of parameters the encoder reads (all of them, embedding included), for
    /// comparing with what loading the whole model would take.
    pub fn parameter_count(&self) -> usize {
        self.needed()
            .iter()
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }

    /// Reads tensor `name` (checked when opened) and converts it to `dtype` on `device`.
    fn read(&self, name: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let Some(e) = self.tensors.get(name) else {
            candle_core::bail!("UMT5: tensor {name} is missing from the checkpoint");
        };
        let shard = &self.shards[e.shard];
        let stored = file_dtype(&e.dtype).ok_or_else(|| Error::Msg(e.dtype.clone()))?;
        let mut buf = vec![0u8; e.len as usize];
        read_at(&shard.file, e.start, &mut buf).map_err(|err| io_error(&shard.path, err))?;
        let raw = Tensor::from_raw_buffer(&buf, stored, &e.shape, device)?;
        drop(buf);
        raw.to_dtype(dtype)
    }

    /// Token embeddings `[B, L, d_model]` of `input_ids` (u8, u32 or i64) in `dtype`: only
    /// the rows of the distinct ids are read from the embedding table.
    fn embed(&self, input_ids: &Tensor, dtype: DType, device: &Device) -> Result<Tensor> {
        let (b, l) = input_ids.dims2()?;
        let ids: Vec<i64> = match input_ids.dtype() {
            DType::I64 | DType::U32 | DType::U8 => {
                input_ids.to_dtype(DType::I64)?.flatten_all()?.to_vec1()?
            }
            other => candle_core::bail!("UMT5: token ids must be u8, u32 or i64, not {other:?}"),
        };
        let e = &self.tensors[self.embed_name];
        let (vocab, d) = (e.shape[0], e.shape[1]);
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if let Some(&bad) = distinct.iter().find(|&&id| id < 0 || id as usize >= vocab) {
            candle_core::bail!("UMT5: token id {bad} is outside the vocabulary of {vocab}");
        }
        let shard = &self.shards[e.shard];
        let row_bytes = e.len as usize / vocab;
        let mut buf = vec![0u8; distinct.len() * row_bytes];
        for (row, &id) in buf.chunks_exact_mut(row_bytes).zip(&distinct) {
            let offset = e.start + (id as u64) * row_bytes as u64;
            read_at(&shard.file, offset, row).map_err(|err| io_error(&shard.path, err))?;
        }
        let stored = file_dtype(&e.dtype).ok_or_else(|| Error::Msg(e.dtype.clone()))?;
        let rows = Tensor::from_raw_buffer(&buf, stored, &[distinct.len(), d], device)?;
        drop(buf);
        let rows = rows.to_dtype(dtype)?;
        let picks: Vec<u32> = ids
            .iter()
            .map(|id| distinct.binary_search(id).unwrap_or_default() as u32)
            .collect();
        let picks = Tensor::from_vec(picks, b * l, device)?;
        rows.index_select(&picks, 0)?.reshape((b, l, d))
    }

    /// Reads block `i` and builds it, its norms in f32 and the rest in `dtype`.
    fn layer(&self, i: usize, dtype: DType, device: &Device) -> Result<Umt5Layer> {
        let mut weights = HashMap::new();
        for (name, _) in layer_tensors(&self.cfg, self.gated) {
            let target = if is_norm(name) { DType::F32 } else { dtype };
            let t = self.read(&format!("encoder.block.{i}.{name}"), target, device)?;
            weights.insert(name.to_string(), t);
        }
        Umt5Layer::new(&self.cfg, VarBuilder::from_tensors(weights, dtype, device))
    }

    /// `last_hidden_state` `[B, L, d_model]` in `dtype` on `device` for `input_ids` (u8, u32
    /// or i64) `[B, L]` and `attention_mask` `[B, L]` (non-zero = real token), as
    /// [`Umt5Encoder::forward`](super::Umt5Encoder::forward) computes it with weights loaded
    /// in `dtype`. One block is in memory at a time.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        if input_ids.dims2()? != attention_mask.dims2()? {
            candle_core::bail!(
                "UMT5: input_ids {:?} and attention_mask {:?} differ in shape",
                input_ids.shape(),
                attention_mask.shape()
            );
        }
        let inputs = Umt5AttentionInputs::new(&self.cfg, &attention_mask.to_device(device)?)?;
        let mut hidden = self.embed(input_ids, dtype, device)?;
        for i in 0..self.cfg.num_layers {
            let layer = self.layer(i, dtype, device)?;
            hidden = layer.forward(&hidden, &inputs)?;
        }
        let norm = self.read(FINAL_NORM, DType::F32, device)?;
        rms_norm(&hidden, Some(&norm), self.cfg.layer_norm_epsilon)?.to_dtype(dtype)
    }

    /// The pipeline's `prompt_embeds` `[B, max_len, d_model]` in `dtype` on `device`: what
    /// [`encode_prompt`](super::encode_prompt) gives with the whole encoder loaded in `dtype`.
    pub fn encode_prompt(
        &self,
        tokenizer: &WanTokenizer,
        prompts: &[String],
        max_len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let tokens = PromptTokens::new(tokenizer, prompts, max_len, device)?;
        let hidden = self.forward(&tokens.ids, &tokens.mask, dtype, device)?;
        tokens.trim(&hidden)
    }
}

/// [`encode_prompt`](super::encode_prompt) for the checkpoint in `dir` (`model.safetensors`
/// or the shards of `model.safetensors.index.json`), streamed: one block in memory at a time.
pub fn encode_prompt_streaming(
    dir: &Path,
    cfg: &Umt5Config,
    tokenizer: &WanTokenizer,
    prompts: &[String],
    max_len: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    let files = component_files(dir, "model").map_err(Error::wrap)?;
    Umt5Streamer::new(&files, cfg)?.encode_prompt(tokenizer, prompts, max_len, dtype, device)
}
