#!/usr/bin/env python3
"""Build the tiny Wan2.1 text-to-video parity fixtures for the Rust port.

Everything is made offline from configs with seeded random weights (no Hugging Face Hub):

  <out>/tiny-pipeline/          WanPipeline.save_pretrained output (f32 safetensors)
  <out>/schedulers/unipc/       scheduler_config.json (the pipeline's UniPC config)
  <out>/schedulers/euler/       scheduler_config.json (FlowMatchEulerDiscreteScheduler, shift 3.0)
  <out>/reference/*.safetensors reference tensors (F32 floats, I64 ids, U8 frames)
  <out>/reference/*.json        the inputs / call arguments behind them

The reference outputs are computed from the pipeline *reloaded* with
WanPipeline.from_pretrained(<out>/tiny-pipeline), which proves the folder is complete.
Running the script twice gives byte-identical files. See README.md next to this file.
"""

import os

# Offline and single-threaded before any of the libraries is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

import argparse  # noqa: E402
import html  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKLWan,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.pipelines.wan.pipeline_wan import prompt_clean  # noqa: E402
from diffusers.utils import is_ftfy_available  # noqa: E402
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "wan"

# ---------------------------------------------------------------------------------------------
# Tiny architecture (see /work/wan-contract.md): same structure as Wan2.1-T2V-1.3B, tiny sizes.
# ---------------------------------------------------------------------------------------------

# Corpus the tiny Unigram tokenizer is trained on. Only lowercase/uppercase ASCII letters that
# occur here get their own pieces; anything else (e.g. "Z", "ü", "&") maps to <unk> (id 2).
TOKENIZER_CORPUS = [
    "A cat and a dog baking a cake together in a kitchen.",
    "The cat is carefully measuring flour, while the dog is stirring the batter with a wooden spoon.",
    "The kitchen is cozy, with sunlight streaming through the window.",
    "A red fox runs across a snowy field at sunrise.",
    "Waves crash against a rugged shoreline, creating a rhythmic and soothing sound.",
    "A small robot walks through a busy city street at night, neon lights reflecting on wet pavement.",
    "An astronaut rides a horse on the moon, slow motion, cinematic lighting.",
    "A paper boat floats down a river in the rain, close up shot.",
    "Two birds fly over a green mountain valley, aerial view, golden hour.",
    "A bowl of fruit on a wooden table, soft light, still life.",
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images.",
    "Overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete.",
]
TOKENIZER_VOCAB_SIZE = 200  # upper bound given to the trainer; the corpus yields fewer pieces

TEXT_ENCODER = dict(
    d_model=32,
    d_kv=8,
    num_heads=4,
    d_ff=48,
    num_layers=2,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    layer_norm_epsilon=1e-6,
    dropout_rate=0.0,
)

TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=4,
    text_dim=32,
    freq_dim=16,
    ffn_dim=48,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
    rope_max_seq_len=1024,
)

VAE = dict(
    base_dim=8,
    z_dim=4,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=1,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    dropout=0.0,
    latents_mean=[-0.3, 0.1, 0.25, -0.05],
    latents_std=[1.8, 2.5, 1.2, 3.0],
)

# The scheduler config Wan-AI/Wan2.1-T2V-1.3B-Diffusers ships (scheduler/scheduler_config.json);
# every other UniPCMultistepScheduler argument there equals the diffusers default.
UNIPC = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    trained_betas=None,
    solver_order=2,
    prediction_type="flow_prediction",
    thresholding=False,
    dynamic_thresholding_ratio=0.995,
    sample_max_value=1.0,
    predict_x0=True,
    solver_type="bh2",
    lower_order_final=True,
    disable_corrector=[],
    solver_p=None,
    use_karras_sigmas=False,
    use_exponential_sigmas=False,
    use_beta_sigmas=False,
    use_flow_sigmas=True,
    flow_shift=3.0,
    timestep_spacing="linspace",
    steps_offset=0,
    final_sigmas_type="zero",
    rescale_betas_zero_snr=False,
)

EULER = dict(num_train_timesteps=1000, shift=3.0)

# Seeds for torch.manual_seed before constructing each component.
SEED_TEXT_ENCODER = 1
SEED_TRANSFORMER = 2
SEED_VAE = 3

# Reference inputs.
RANDN_SEEDS = [0, 7, 4294967295]
RANDN_SHAPES = [[7], [16], [33], [1, 4, 3, 4, 6]]

ENCODER_TEXTS = [
    # Longer than 12 tokens: truncated to 11 pieces + </s>.
    "The cat is carefully measuring flour, while the dog is stirring the batter.",
    # Short: padded with <pad> (0) and attention_mask 0.
    "A red fox.",
]
ENCODER_MAX_LENGTH = 12

# Raw prompts given to encode_prompt. The pipeline cleans them first (html.unescape twice,
# whitespace runs -> one space, strip); "&amp;" therefore becomes "&", which is <unk>.
UMT5_PROMPTS = [
    "  A cat &amp; a dog baking a cake\n together in a   kitchen.  ",
    "Zebra walks through the snowy field at sunrise, cinematic lighting!",
]
MAX_SEQUENCE_LENGTH = 512

PIPELINE_CALL = dict(
    prompt="A cat and a dog baking a cake together in a kitchen.",
    negative_prompt=None,
    height=256,
    width=256,
    num_frames=5,
    num_inference_steps=2,
    guidance_scale=5.0,
    seed=7,
    output_type="np",
    max_sequence_length=512,
)

SCHEDULER_STEPS = [2, 5]
SCHEDULER_SAMPLE_SHAPE = [1, 4, 3, 4, 6]
SCHEDULER_INPUT_SEED = 1234


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tensors(path: Path, tensors: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.to(torch.float32)
        out[name] = t.contiguous()
    save_file(out, str(path))


def prompt_clean_like_diffusers(text: str) -> str:
    """What diffusers' pipeline_wan.prompt_clean does when ftfy is not installed (cross-check)."""
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------------------------------------
# Building the tiny pipeline
# ---------------------------------------------------------------------------------------------


def canonical_pieces(pieces: list) -> list:
    """Make the trained pieces independent of the trainer's hash-map order.

    The Unigram trainer appends the characters it must keep (for coverage) with scores
    min_score + k * 1e-4 handed out in hash-map order, which changes from run to run. Give those
    scores to the characters in sorted order instead, then sort all pieces by (score desc, piece).
    """
    pieces = [(p, round(s, 6)) for p, s in pieces]
    floor = min(s for _, s in pieces)
    tail = [i for i, (p, s) in enumerate(pieces) if len(p) == 1 and s - floor < 1e-2]
    scores = sorted((pieces[i][1] for i in tail), reverse=True)
    chars = sorted(pieces[i][0] for i in tail)
    rest = [pieces[i] for i in range(len(pieces)) if i not in set(tail)]
    return sorted(rest + list(zip(chars, scores)), key=lambda ps: (-ps[1], ps[0]))


def build_tokenizer() -> T5Tokenizer:
    """A T5-style Unigram tokenizer: <pad>=0, </s>=1, <unk>=2, Metaspace, </s> appended."""
    # The same pre-tokenizer transformers' T5Tokenizer rebuilds on load, so pieces match it.
    trainer_tok = Tokenizer(models.Unigram())
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
        ]
    )
    trainer_tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.UnigramTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
        max_piece_length=8,
    )
    trainer_tok.train_from_iterator(TOKENIZER_CORPUS, trainer=trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    vocab = [(piece, float(score)) for piece, score in model["vocab"]]
    assert [p for p, _ in vocab[:3]] == ["<pad>", "</s>", "<unk>"], vocab[:3]
    vocab = vocab[:3] + canonical_pieces(vocab[3:])
    # extra_ids=0: no <extra_id_N> sentinels, so len(tokenizer) == the Unigram vocab size.
    tok = T5Tokenizer(vocab=vocab, extra_ids=0)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    return tok


def build_pipeline() -> WanPipeline:
    tokenizer = build_tokenizer()

    torch.manual_seed(SEED_TEXT_ENCODER)
    te_config = UMT5Config(vocab_size=len(tokenizer), **TEXT_ENCODER)
    text_encoder = UMT5EncoderModel(te_config).eval()

    torch.manual_seed(SEED_TRANSFORMER)
    transformer = WanTransformer3DModel(**TRANSFORMER).eval()

    torch.manual_seed(SEED_VAE)
    vae = AutoencoderKLWan(**VAE).eval()

    for module in (text_encoder, transformer, vae):
        assert all(t.dtype == torch.float32 for t in module.state_dict().values()), type(module).__name__

    scheduler = UniPCMultistepScheduler(**UNIPC)

    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=scheduler,
        transformer=transformer,
    )


# ---------------------------------------------------------------------------------------------
# Reference files
# ---------------------------------------------------------------------------------------------


def make_randn(ref: Path) -> None:
    tensors = {}
    for seed in RANDN_SEEDS:
        for shape in RANDN_SHAPES:
            g = torch.Generator("cpu").manual_seed(seed)
            name = f"s{seed}_" + "x".join(str(d) for d in shape)
            tensors[name] = torch.randn(shape, generator=g, dtype=torch.float32)
    write_tensors(ref / "randn.safetensors", tensors)


def make_umt5(pipe: WanPipeline, tok_json: Path, ref: Path) -> None:
    tok = pipe.tokenizer
    enc = tok(
        ENCODER_TEXTS,
        padding="max_length",
        max_length=ENCODER_MAX_LENGTH,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    input_ids, attention_mask = enc.input_ids, enc.attention_mask
    assert attention_mask[0].all() and not attention_mask[1].all(), attention_mask
    last_hidden_state = pipe.text_encoder(input_ids, attention_mask).last_hidden_state

    cleaned = [prompt_clean(p) for p in UMT5_PROMPTS]
    assert cleaned == [prompt_clean_like_diffusers(p) for p in UMT5_PROMPTS], cleaned
    penc = tok(
        cleaned,
        padding="max_length",
        max_length=MAX_SEQUENCE_LENGTH,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    prompt_embeds, _ = pipe.encode_prompt(
        UMT5_PROMPTS, do_classifier_free_guidance=False, max_sequence_length=MAX_SEQUENCE_LENGTH
    )

    # encode_prompt tokenized exactly prompt_ids: its rows are the encoder's output on them,
    # cut to the mask length and zero-padded.
    direct = pipe.text_encoder(penc.input_ids, penc.attention_mask).last_hidden_state
    for row, n in enumerate(penc.attention_mask.sum(dim=1).tolist()):
        assert torch.equal(prompt_embeds[row, :n], direct[row, :n]), row
        assert not prompt_embeds[row, n:].any(), row

    # The plain tokenizers JSON (what the Rust `tokenizers` crate loads) gives the same ids.
    plain = Tokenizer.from_file(str(tok_json))
    all_ids = input_ids.tolist() + penc.input_ids.tolist()
    all_masks = attention_mask.tolist() + penc.attention_mask.tolist()
    for text, ids, mask in zip(ENCODER_TEXTS + cleaned, all_ids, all_masks):
        got = plain.encode(text).ids
        n = sum(mask)
        if len(got) > len(ids):  # truncation keeps </s>
            got = got[: len(ids) - 1] + [1]
        assert got == ids[:n], (text, got, ids[:n])

    write_tensors(
        ref / "umt5.safetensors",
        {
            "input_ids": input_ids.to(torch.int64),
            "attention_mask": attention_mask.to(torch.int64),
            "last_hidden_state": last_hidden_state,
            "prompt_ids": penc.input_ids.to(torch.int64),
            "prompt_mask": penc.attention_mask.to(torch.int64),
            "prompt_embeds": prompt_embeds,
        },
    )
    write_json(
        ref / "umt5.json",
        {
            "prompts": UMT5_PROMPTS,
            "cleaned_prompts": cleaned,
            "max_sequence_length": MAX_SEQUENCE_LENGTH,
            "encoder_texts": ENCODER_TEXTS,
            "encoder_max_length": ENCODER_MAX_LENGTH,
            "notes": (
                "input_ids/attention_mask = tokenizer(encoder_texts, padding='max_length', "
                "max_length=encoder_max_length, truncation=True); last_hidden_state = "
                "text_encoder(input_ids, attention_mask).last_hidden_state. prompt_ids/prompt_mask = "
                "tokenizer(cleaned_prompts, padding='max_length', max_length=512, truncation=True): the "
                "pipeline tokenizes the CLEANED prompts (html.unescape twice, whitespace runs -> ' ', strip; "
                "ftfy not installed). prompt_embeds = pipe.encode_prompt(prompts, "
                "do_classifier_free_guidance=False, max_sequence_length=512)[0]: rows trimmed to the mask "
                "length and zero-padded to 512."
            ),
        },
    )


def make_transformer(pipe: WanPipeline, ref: Path) -> None:
    g = torch.Generator("cpu").manual_seed(100)
    hidden_states = torch.randn([2, 4, 3, 4, 6], generator=g, dtype=torch.float32)
    timestep = torch.tensor([999.0, 250.0], dtype=torch.float32)
    encoder_hidden_states = torch.randn([2, MAX_SEQUENCE_LENGTH, TRANSFORMER["text_dim"]], generator=g)
    encoder_hidden_states[1, 7:] = 0.0
    output = pipe.transformer(
        hidden_states=hidden_states,
        timestep=timestep,
        encoder_hidden_states=encoder_hidden_states,
        return_dict=False,
    )[0]
    write_tensors(
        ref / "transformer.safetensors",
        {
            "hidden_states": hidden_states,
            "timestep": timestep,
            "encoder_hidden_states": encoder_hidden_states,
            "output": output,
        },
    )


def make_vae(pipe: WanPipeline, ref: Path) -> None:
    g = torch.Generator("cpu").manual_seed(200)
    latents = torch.randn([1, 4, 3, 4, 6], generator=g, dtype=torch.float32)
    decoded = pipe.vae.decode(latents).sample
    video = torch.rand([1, 3, 9, 32, 48], generator=g, dtype=torch.float32) * 2.0 - 1.0
    dist = pipe.vae.encode(video).latent_dist
    write_tensors(
        ref / "vae.safetensors",
        {
            "latents": latents,
            "decoded": decoded,
            "video": video,
            "encoded_mean": dist.mean,
            "encoded_logvar": dist.logvar,
        },
    )


def scheduler_from(out: Path, kind: str):
    cls = {"unipc": UniPCMultistepScheduler, "euler": FlowMatchEulerDiscreteScheduler}[kind]
    return cls.from_pretrained(str(out / "schedulers" / kind))


def make_schedulers(out: Path, ref: Path) -> None:
    tensors = {}
    for kind in ["unipc", "euler"]:
        for n in SCHEDULER_STEPS:
            sched = scheduler_from(out, kind)
            sched.set_timesteps(n, device="cpu")
            sched.set_begin_index(0)  # as WanPipeline does
            g = torch.Generator("cpu").manual_seed(SCHEDULER_INPUT_SEED + n)
            sample = torch.randn(SCHEDULER_SAMPLE_SHAPE, generator=g, dtype=torch.float32)
            p = f"{kind}_{n}"
            tensors[f"{p}_timesteps"] = sched.timesteps.to(torch.float32)
            tensors[f"{p}_sigmas"] = sched.sigmas.to(torch.float32)
            tensors[f"{p}_sample_0"] = sample
            for i, t in enumerate(sched.timesteps):
                model_output = torch.randn(SCHEDULER_SAMPLE_SHAPE, generator=g, dtype=torch.float32)
                sample = sched.step(model_output, t, sample, return_dict=False)[0]
                tensors[f"{p}_model_output_{i}"] = model_output
                tensors[f"{p}_sample_{i + 1}"] = sample
    write_tensors(ref / "schedulers.safetensors", tensors)


def run_pipeline(pipe: WanPipeline, kind: str, tensors: dict) -> dict:
    """One whole generation; records the latents the pipeline draws and the ones it decodes."""
    record = {"steps": []}
    original_prepare = pipe.prepare_latents

    def prepare_latents(*args, **kwargs):
        latents = original_prepare(*args, **kwargs)
        record["init"] = latents.clone()
        return latents

    def on_step_end(_pipe, i, t, callback_kwargs):
        record["steps"].append(callback_kwargs["latents"].clone())
        record.setdefault("timesteps", []).append(float(t))
        return {}

    pipe.prepare_latents = prepare_latents
    try:
        c = PIPELINE_CALL
        frames = pipe(
            c["prompt"],
            negative_prompt=c["negative_prompt"],
            height=c["height"],
            width=c["width"],
            num_frames=c["num_frames"],
            num_inference_steps=c["num_inference_steps"],
            guidance_scale=c["guidance_scale"],
            generator=torch.Generator("cpu").manual_seed(c["seed"]),
            output_type=c["output_type"],
            max_sequence_length=c["max_sequence_length"],
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents"],
        ).frames
    finally:
        del pipe.prepare_latents
    assert isinstance(frames, np.ndarray) and frames.dtype == np.float32, type(frames)
    assert frames.shape == (1, c["num_frames"], c["height"], c["width"], 3), frames.shape
    frames_u8 = np.round(frames[0] * 255.0).astype(np.uint8)
    tensors[f"{kind}_latents_init"] = record["init"]
    tensors[f"{kind}_latents_final"] = record["steps"][-1]
    tensors[f"{kind}_frames_u8"] = torch.from_numpy(frames_u8)
    for i, latents in enumerate(record["steps"][:-1]):
        tensors[f"{kind}_latents_step_{i + 1}"] = latents
    tensors[f"{kind}_timesteps"] = pipe.scheduler.timesteps.to(torch.float32)
    return {
        "scheduler_class": type(pipe.scheduler).__name__,
        "timesteps": record["timesteps"],
        "frames_min": float(frames.min()),
        "frames_max": float(frames.max()),
    }


def make_pipeline_refs(pipe: WanPipeline, out: Path, ref: Path) -> None:
    tensors = {}
    info = {}
    pipe.set_progress_bar_config(disable=True)

    # Also record the prompt embeddings both runs use (the call encodes "" for negative_prompt=None).
    c = PIPELINE_CALL
    prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
        c["prompt"], negative_prompt=c["negative_prompt"], do_classifier_free_guidance=True,
        max_sequence_length=c["max_sequence_length"],
    )
    tensors["prompt_embeds"] = prompt_embeds
    tensors["negative_prompt_embeds"] = negative_prompt_embeds

    unipc = pipe.scheduler
    info["unipc"] = run_pipeline(pipe, "unipc", tensors)
    pipe.scheduler = scheduler_from(out, "euler")
    info["euler"] = run_pipeline(pipe, "euler", tensors)
    pipe.scheduler = unipc

    write_tensors(ref / "pipeline.safetensors", tensors)
    write_json(
        ref / "pipeline.json",
        {
            "call": {**c, "generator": f"torch.Generator('cpu').manual_seed({c['seed']})"},
            "runs": {
                "unipc": {**info["unipc"], "scheduler_config": "schedulers/unipc/scheduler_config.json"},
                "euler": {**info["euler"], "scheduler_config": "schedulers/euler/scheduler_config.json"},
            },
            "notes": (
                "{kind}_latents_init: the noise prepare_latents draws (randn [1,4,2,32,32] from the generator); "
                "{kind}_latents_final: latents after the last scheduler step, before un-normalising "
                "(latents / (1/latents_std) + latents_mean) and the VAE decode; {kind}_frames_u8: "
                "np.round(frames[0] * 255) of output_type='np' frames ([F,H,W,3], frames = "
                "clamp(decoded*0.5+0.5, 0, 1), decoded itself clamped to [-1,1] by the VAE); "
                "extras: {kind}_latents_step_{i} after step i (1-based, all but the last), {kind}_timesteps "
                "(as F32; UniPC's are int64 in diffusers), prompt_embeds / negative_prompt_embeds [1,512,32] "
                "(negative_prompt=None encodes the empty string \"\")."
            ),
        },
    )


def contract_tensors() -> dict:
    """file -> {tensor name: (dtype, shape)} that the shared contract promises (extras allowed)."""
    f32, i64, u8 = torch.float32, torch.int64, torch.uint8
    lat = [1, 4, 3, 4, 6]
    files = {
        "randn.safetensors": {
            f"s{seed}_" + "x".join(map(str, shape)): (f32, shape)
            for seed in RANDN_SEEDS
            for shape in RANDN_SHAPES
        },
        "umt5.safetensors": {
            "input_ids": (i64, [2, 12]),
            "attention_mask": (i64, [2, 12]),
            "last_hidden_state": (f32, [2, 12, 32]),
            "prompt_ids": (i64, [2, 512]),
            "prompt_mask": (i64, [2, 512]),
            "prompt_embeds": (f32, [2, 512, 32]),
        },
        "transformer.safetensors": {
            "hidden_states": (f32, [2, 4, 3, 4, 6]),
            "timestep": (f32, [2]),
            "encoder_hidden_states": (f32, [2, 512, 32]),
            "output": (f32, [2, 4, 3, 4, 6]),
        },
        "vae.safetensors": {
            "latents": (f32, lat),
            "decoded": (f32, [1, 3, 9, 32, 48]),
            "video": (f32, [1, 3, 9, 32, 48]),
            "encoded_mean": (f32, lat),
            "encoded_logvar": (f32, lat),
        },
        "schedulers.safetensors": {},
        "pipeline.safetensors": {},
    }
    for kind in ["unipc", "euler"]:
        for n in SCHEDULER_STEPS:
            p = f"{kind}_{n}"
            entry = files["schedulers.safetensors"]
            entry[f"{p}_timesteps"] = (f32, [n])
            entry[f"{p}_sigmas"] = (f32, [n + 1])
            for i in range(n + 1):
                entry[f"{p}_sample_{i}"] = (f32, lat)
            for i in range(n):
                entry[f"{p}_model_output_{i}"] = (f32, lat)
        files["pipeline.safetensors"].update(
            {
                f"{kind}_latents_init": (f32, [1, 4, 2, 32, 32]),
                f"{kind}_latents_final": (f32, [1, 4, 2, 32, 32]),
                f"{kind}_frames_u8": (u8, [5, 256, 256, 3]),
            }
        )
    return files


def check_contract(ref: Path) -> None:
    """Print every reference tensor and fail if one the contract names is missing or misshapen."""
    from safetensors import safe_open

    for fname, expected in contract_tensors().items():
        print(f"{fname}")
        with safe_open(str(ref / fname), "pt") as f:
            names = sorted(f.keys())
            for name in names:
                t = f.get_tensor(name)
                tag = "" if name in expected else "  (extra)"
                print(f"  {name:28s} {str(t.dtype).replace('torch.', ''):8s} {list(t.shape)}{tag}")
        for name, (dtype, shape) in expected.items():
            assert name in names, f"{fname}: missing {name}"
            with safe_open(str(ref / fname), "pt") as f:
                t = f.get_tensor(name)
            assert t.dtype == dtype and list(t.shape) == shape, (fname, name, t.dtype, list(t.shape))


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = ap.parse_args()

    if is_ftfy_available():
        print(
            "error: ftfy is installed; WanPipeline would run prompts through ftfy.fix_text and the "
            "fixtures assume it does not. Use a venv without ftfy (tests/reference/run.sh).",
            file=sys.stderr,
        )
        return 1

    torch.set_num_threads(1)
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    versions = f"torch {torch.__version__}, diffusers {diffusers.__version__}"
    print(f"{versions}, transformers {transformers.__version__}")

    out = args.out.resolve()
    pipe_dir, sched_dir, ref = out / "tiny-pipeline", out / "schedulers", out / "reference"
    for d in (pipe_dir, sched_dir, ref):
        if d.exists():
            shutil.rmtree(d)

    with torch.no_grad():
        built = build_pipeline()
        built.save_pretrained(str(pipe_dir), safe_serialization=True)
        del built

        (sched_dir / "unipc").mkdir(parents=True)
        config_name = "scheduler_config.json"
        shutil.copyfile(pipe_dir / "scheduler" / config_name, sched_dir / "unipc" / config_name)
        FlowMatchEulerDiscreteScheduler(**EULER).save_pretrained(str(sched_dir / "euler"))

        tok_json = pipe_dir / "tokenizer" / "tokenizer.json"
        tj = json.loads(tok_json.read_text(encoding="utf-8"))
        assert tj["padding"] is None and tj["truncation"] is None, "tokenizer.json must not bake padding"

        pipe = WanPipeline.from_pretrained(str(pipe_dir), dtype=torch.float32)
        pipe.to("cpu")
        assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)
        assert isinstance(pipe.scheduler, UniPCMultistepScheduler)

        ref.mkdir(parents=True)
        make_randn(ref)
        make_umt5(pipe, tok_json, ref)
        make_transformer(pipe, ref)
        make_vae(pipe, ref)
        make_schedulers(out, ref)
        make_pipeline_refs(pipe, out, ref)

    check_contract(ref)

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
