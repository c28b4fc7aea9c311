#!/usr/bin/env python3
"""Time PyTorch on the CPU for the full-size Wan2.1-T2V-1.3B transformer and VAE decode.

Random weights (nothing is downloaded). Cases, each run in its own child process so that its
peak RSS (os.wait4 rusage, ru_maxrss) is its own:

  transformer-f32-1f   one transformer forward, 1 latent frame  of 30x52, 512 text tokens, f32
  transformer-f32-5f   one transformer forward, 5 latent frames of 30x52, 512 text tokens, f32
  transformer-bf16-1f  the same in bf16 (the _keep_in_fp32_modules stay f32, as from_pretrained does)
  transformer-bf16-5f
  vae-f32-5f           AutoencoderKLWan.decode of 5 latent frames 30x52 (-> 17 frames 240x416), f32

One JSON object per case on stdout (progress on stderr). peak_rss_mib is the child's ru_maxrss
from os.wait4 (it also covers any process the child forks and reaps, e.g. during import torch);
self_peak_rss_mib is the child's own RUSAGE_SELF after its last run. times_s are the timed repeats after
--warmup untimed runs; median_s is their median. Example (full size: takes a long time on a
few cores, and several GB of RAM: the f32 transformer weights alone are 5.7 GB):

  ~/.cache/aivideo/reference-venv/bin/python tests/reference/bench_wan.py --threads 2 --repeats 3

--tiny swaps in the tiny fixture configs of make_fixtures.py and latents of 8x12 (a smoke test
of the script); --latent-hw HxW overrides the latent size.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = ["transformer-f32-1f", "transformer-f32-5f", "transformer-bf16-1f", "transformer-bf16-5f", "vae-f32-5f"]

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json and vae/config.json.
FULL_TRANSFORMER = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    image_dim=None,
    added_kv_proj_dim=None,
    rope_max_seq_len=1024,
)
FULL_VAE = dict(
    base_dim=96,
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    attn_scales=[],
    temperal_downsample=[False, True, True],
    dropout=0.0,
)

LATENT_HW = (30, 52)  # 480x832 video
TINY_LATENT_HW = (8, 12)  # --tiny default, so the smoke test takes seconds
TEXT_TOKENS = 512


def tiny_configs():
    sys.dont_write_bytecode = True  # no __pycache__ in the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_fixtures  # noqa: PLC0415  (only for --tiny)

    return dict(make_fixtures.TRANSFORMER), dict(make_fixtures.VAE)


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def build_transformer(cfg: dict, dtype):
    """Random full-size transformer built in place in `dtype` (no f32 copy first)."""
    import torch
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    with torch.device("meta"):
        model = WanTransformer3DModel(**cfg)
    model = model.to(dtype).to_empty(device="cpu")
    keep = model._keep_in_fp32_modules or []
    g = torch.Generator("cpu").manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name.split(".") for k in keep):
                p.data = p.data.float()  # as from_pretrained(torch_dtype=bf16) keeps them
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            elif "scale_shift_table" in name:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    # The rope tables are buffers computed in __init__; on the meta device they were never made.
    model.rope = WanRotaryPosEmbed(cfg["attention_head_dim"], cfg["patch_size"], cfg["rope_max_seq_len"])
    return model.eval()


def run_case(case: str, tiny: bool, latent_hw: tuple, repeats: int, warmup: int) -> dict:
    import torch

    import diffusers

    diffusers.utils.logging.set_verbosity_error()
    torch.set_flush_denormal(True)
    tcfg, vcfg = (FULL_TRANSFORMER, FULL_VAE) if not tiny else tiny_configs()
    kind, dtype_name, frames = case.split("-")
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    num_frames = int(frames.rstrip("f"))
    g = torch.Generator("cpu").manual_seed(1)
    t0 = time.perf_counter()

    if kind == "transformer":
        model = build_transformer(tcfg, dtype)
        latents = torch.randn([1, tcfg["in_channels"], num_frames, *latent_hw], generator=g).to(dtype)
        text = torch.randn([1, TEXT_TOKENS, tcfg["text_dim"]], generator=g).to(dtype)
        timestep = torch.tensor([999])

        def step():
            return model(hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]

        params = sum(p.numel() for p in model.parameters())
    else:
        from diffusers import AutoencoderKLWan

        torch.manual_seed(0)
        model = AutoencoderKLWan(**vcfg).eval()  # f32 already
        latents = torch.randn([1, vcfg["z_dim"], num_frames, *latent_hw], generator=g)

        def step():
            return model.decode(latents, return_dict=False)[0]

        params = sum(p.numel() for p in model.parameters())

    build_s = time.perf_counter() - t0
    rss_after_build = rss_mib()
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            t = time.perf_counter()
            out = step()
            dt = time.perf_counter() - t
            print(f"[{case}] run {i + 1}/{warmup + repeats}: {dt:.2f} s", file=sys.stderr, flush=True)
            if i >= warmup:
                times.append(dt)
    return {
        "case": case,
        "model": kind,
        "dtype": dtype_name,
        "config": "tiny" if tiny else "Wan2.1-T2V-1.3B",
        "params": params,
        "latent_frames": num_frames,
        "latent_hw": list(latent_hw),
        "text_tokens": TEXT_TOKENS if kind == "transformer" else None,
        "output_shape": list(out.shape),
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "repeats": repeats,
        "times_s": [round(x, 4) for x in times],
        "median_s": round(statistics.median(times), 4),
        "build_s": round(build_s, 3),
        "rss_after_build_mib": round(rss_after_build, 1),
        "self_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }


def parse_hw(args) -> tuple:
    if args.latent_hw:
        h, w = args.latent_hw.lower().split("x")
        return int(h), int(w)
    return TINY_LATENT_HW if args.tiny else LATENT_HW


def child_main(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    result = run_case(args.child, args.tiny, parse_hw(args), args.repeats, args.warmup)
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0


def parent_main(args) -> int:
    cases = args.cases.split(",") if args.cases else CASES
    for case in cases:
        if case not in CASES:
            print(f"unknown case {case!r}; known: {', '.join(CASES)}", file=sys.stderr)
            return 2
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    status = 0
    for case in cases:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", case, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
        cmd += (["--tiny"] if args.tiny else []) + (["--latent-hw", args.latent_hw] if args.latent_hw else [])
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
        stdout = proc.stdout.read()
        proc.stdout.close()
        _, wait_status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(json.dumps({"case": case, "error": f"exit status {proc.returncode}"}), flush=True)
            status = 1
            continue
        result = json.loads(lines[-1])
        result["peak_rss_mib"] = round(usage.ru_maxrss / 1024.0, 1)  # Linux: KiB
        result["child_wall_s"] = round(time.perf_counter() - t0, 2)
        print(json.dumps(result, sort_keys=True), flush=True)
    return status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (default 3)")
    ap.add_argument("--warmup", type=int, default=0, help="untimed runs before them (default 0)")
    ap.add_argument("--cases", default="", help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--tiny", action="store_true", help="tiny fixture configs instead of the full 1.3B ones")
    ap.add_argument("--latent-hw", default="", help="latent HxW, e.g. 30x52 (default 30x52; 8x12 with --tiny)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return child_main(args) if args.child else parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
