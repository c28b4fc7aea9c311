#!/usr/bin/env python3
"""Build tests/data/hub/: the Hugging Face cache that Python's huggingface_hub writes when it
downloads the tiny Wan pipeline from the mock Hub, and the requests it made to get it.

No real Hub is contacted. The mock is `cargo run --example mock_hub` (tests/cli/hub_mock/), serving

  test-org/tiny-wan     main:  tests/data/wan/tiny-pipeline/ (10 files, 3 of them LFS safetensors)
                        euler: the same with scheduler/scheduler_config.json replaced by
                               tests/data/wan/schedulers/euler/scheduler_config.json
                        v1.0:  a tag at main
  test-org/tiny-gated   main:  tests/data/wan/tiny-pipeline/text_encoder/, gated (token below)

and the pinned huggingface_hub downloads, in this order (one worker, so the order is fixed):

  1. snapshot_download(tiny-wan, revision="main")      everything: refs/main, blobs, snapshot
  2. the same again                                   only the revision look-up, no file request
  3. snapshot_download(tiny-wan, revision="v1.0")     refs/v1.0, nothing downloaded
  4. hf_hub_download(tiny-wan, scheduler/scheduler_config.json, revision="euler")
                                                      refs/euler, a second, partial snapshot
  5. tiny-gated without a token (GatedRepoError) and with it (into a throwaway cache)
  6. test-org/big-file (one 12 MiB file) with the connection cut after 11 MB (resumed with a
     Range), and the VAE weights with one byte flipped (kept as they came: no sha256 check),
     each into a throwaway cache

Outputs (in --out, default tests/data/hub/):

  python-cache/          the cache of steps 1-4, minus .locks/ (the downloads' lock files)
  python-requests.json   every request of every step: host (hub or cdn), method, path with query,
                         Range, whether Authorization was sent, and the status

Then it checks, in a separate process with HF_HUB_OFFLINE=1, that snapshot_download(...,
local_files_only=True) and hf_hub_download(..., local_files_only=True) resolve the same snapshots
from python-cache/ without a request and without writing to it. Running the script twice gives
identical files. See README.md next to this file; tests/cli/hub_mock/python_cache.rs checks the
committed result.
"""

import os
import sys

# huggingface_hub reads its settings when imported: set them first. The main process starts
# from a clean slate (no token, no config from the user's home, online); the offline check is a
# child process that gets its environment from it, with HF_HUB_OFFLINE=1.
if "--offline-check" not in sys.argv:
    for _name in list(os.environ):
        if _name.startswith("HF_") or _name in ("TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN"):
            del os.environ[_name]
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ["DO_NOT_TRACK"] = "1"
    # Nothing may reach huggingface.co, even by mistake: the default endpoint is a closed port.
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "hub"
PIPELINE = REPO_ROOT / "tests" / "data" / "wan" / "tiny-pipeline"
EULER_CONFIG = REPO_ROOT / "tests" / "data" / "wan" / "schedulers" / "euler" / "scheduler_config.json"
SCHEDULER_FILE = "scheduler/scheduler_config.json"

HUB_VERSION = "2.4.0"  # tests/reference/requirements.txt
REPO_ID = "test-org/tiny-wan"
GATED_ID = "test-org/tiny-gated"
GATED_TOKEN = "hf_mock_gated_token"
STORAGE = "models--test-org--tiny-wan"
BIG_ID = "test-org/big-file"
BIG_FILE = "weights.bin"


def fail(message: str) -> None:
    sys.exit(f"make_hub_cache.py: {message}")


def check(condition: bool, message: str) -> None:
    if not condition:
        fail(message)


class Mock:
    """examples/mock_hub.rs, run by cargo; stops when its stdin closes."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        cargo = os.environ.get("CARGO", "cargo")
        cmd = [cargo, "run", "--quiet", "--locked", "--example", "mock_hub", "--", *args]
        self.proc = subprocess.Popen(
            [*cmd, "--log", str(log)], cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        first = self.proc.stdout.readline().strip()
        if not first.startswith("listening on "):
            self.close()
            fail(f"mock_hub did not start (first line {first!r})")
        self.url = first.removeprefix("listening on ")
        self.revisions: dict[str, dict[str, str]] = {}
        for line in self.proc.stdout:
            words = line.split()
            if words == ["ready"]:
                break
            if words[0] == "revision":
                self.revisions.setdefault(words[1], {})[words[2]] = words[3]
        else:
            fail("mock_hub stopped before it was ready")

    def command(self, line: str) -> None:
        """A fault command on the mock's stdin; returns once it is in effect."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        check(answer == "ok", f"mock_hub: {line!r}: {answer}")

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def big_content() -> bytes:
    """12 MiB of reproducible bytes: over 10 MB, so an LFS file for the Hub whatever its name."""
    block = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(2048))
    return block * (12 * 2**20 // len(block))


def tree_digest(root: Path) -> list[tuple[str, str]]:
    """Every entry under root with its content hash or symlink target (to see that nothing changed)."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out.append((rel, "-> " + os.readlink(path)))
        elif path.is_file():
            out.append((rel, hashlib.sha256(path.read_bytes()).hexdigest()))
        else:
            out.append((rel, "dir"))
    return out


def offline_check(cache: Path) -> None:
    """Child process (HF_HUB_OFFLINE=1): resolve everything from the cache, print the paths."""
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    check(constants.HF_HUB_OFFLINE, "the offline check must run with HF_HUB_OFFLINE=1")
    common = dict(cache_dir=cache, local_files_only=True)
    result = {
        "main": snapshot_download(REPO_ID, revision="main", **common),
        "main_offline_env_only": snapshot_download(REPO_ID, revision="main", cache_dir=cache),
        "v1.0": snapshot_download(REPO_ID, revision="v1.0", **common),
        "euler_file": hf_hub_download(REPO_ID, SCHEDULER_FILE, revision="euler", **common),
        "main_file": hf_hub_download(REPO_ID, "vae/diffusion_pytorch_model.safetensors", **common),
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default tests/data/hub)"
    )
    parser.add_argument("--offline-check", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.offline_check is not None:
        offline_check(args.offline_check)
        return

    import huggingface_hub
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError

    check(
        huggingface_hub.__version__ == HUB_VERSION,
        f"huggingface_hub {huggingface_hub.__version__} is installed, the pinned version is {HUB_VERSION}",
    )
    check(PIPELINE.is_dir() and EULER_CONFIG.is_file(), f"{PIPELINE} is missing (run make_fixtures.py first)")

    with tempfile.TemporaryDirectory(prefix="aivideo-hub-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["HF_HOME"] = str(tmp / "hf-home")
        euler_dir = tmp / "euler"
        shutil.copytree(PIPELINE, euler_dir)
        shutil.copyfile(EULER_CONFIG, euler_dir / SCHEDULER_FILE)
        gated_dir = PIPELINE / "text_encoder"
        (tmp / "big").mkdir()
        (tmp / "big" / BIG_FILE).write_bytes(big_content())
        mock = Mock(
            [
                "--repo", f"{REPO_ID}={PIPELINE}",
                "--branch", f"{REPO_ID}:euler={euler_dir}",
                "--tag", f"{REPO_ID}:v1.0=main",
                "--repo", f"{GATED_ID}={gated_dir}",
                "--gated", f"{GATED_ID}={GATED_TOKEN}",
                "--repo", f"{BIG_ID}={tmp / 'big'}",
            ],
            tmp / "requests.jsonl",
        )  # fmt: skip
        try:
            record = run_downloads(mock, tmp, hf_hub_download, snapshot_download, GatedRepoError)
            cache = tmp / "cache"
            out_cache = args.out / "python-cache"
            if out_cache.exists():
                shutil.rmtree(out_cache)
            args.out.mkdir(parents=True, exist_ok=True)
            # .locks/ only holds the lock files of the downloads; nothing else is left out.
            shutil.copytree(cache, out_cache, symlinks=True, ignore=shutil.ignore_patterns(".locks"))
            leftovers = [p for p in out_cache.rglob("*") if p.name.endswith((".incomplete", ".tmp", ".lock"))]
            check(not leftovers, f"temporary files in the cache: {leftovers}")
            check(not (out_cache / STORAGE / ".no_exist").exists(), "a .no_exist marker was written")
            verify_offline(mock, out_cache)
        finally:
            mock.close()

    (args.out / "python-requests.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out_cache} and {args.out / 'python-requests.json'}")


def run_downloads(mock: Mock, tmp: Path, hf_hub_download, snapshot_download, GatedRepoError) -> dict:
    """Steps 1-5; returns what python-requests.json records. Asserts what each step did."""
    cache = tmp / "cache"
    revs = mock.revisions[REPO_ID]
    main_sha, euler_sha = revs["main"], revs["euler"]
    check(revs["v1.0"] == main_sha, "v1.0 is a tag at main")
    storage = cache / STORAGE
    steps = []

    def step(call: str, fn):
        before = len(mock.requests())
        result = fn()
        requests = mock.requests()[before:]
        steps.append({"call": call, "requests": requests})
        return result, requests

    common = dict(cache_dir=cache, endpoint=mock.url, token=False)
    files = sorted(p.relative_to(PIPELINE).as_posix() for p in PIPELINE.rglob("*") if p.is_file())
    lfs = [f for f in files if f.endswith(".safetensors")]

    path, reqs = step(
        f"snapshot_download({REPO_ID!r}, revision='main', max_workers=1)",
        lambda: snapshot_download(REPO_ID, revision="main", max_workers=1, **common),
    )
    check(Path(path) == storage / "snapshots" / main_sha, f"snapshot path {path}")
    check((storage / "refs" / "main").read_text() == main_sha, "refs/main")
    hub_gets = [r for r in reqs if r["host"] == "hub" and r["method"] == "GET"]
    check(hub_gets[0]["path"] == f"/api/models/{REPO_ID}/revision/main", f"first request {reqs[0]}")
    tree_path = f"/api/models/{REPO_ID}/tree/{main_sha}?"
    check(hub_gets[1]["path"].startswith(tree_path), f"tree request {reqs[1]}")
    check(sum(r["method"] == "HEAD" for r in reqs) == len(files), "one HEAD per file")
    cdn = [r for r in reqs if r["host"] == "cdn"]
    check(len(cdn) == len(lfs) and all(r["method"] == "GET" for r in cdn), "one CDN GET per LFS file")
    check(not any(r["authorization"] for r in reqs), "no token sent")
    check(all(r["status"] in (200, 302) for r in reqs), f"statuses {[r['status'] for r in reqs]}")

    _, reqs = step(
        f"snapshot_download({REPO_ID!r}, revision='main', max_workers=1)  # again",
        lambda: snapshot_download(REPO_ID, revision="main", max_workers=1, **common),
    )
    check([r["path"] for r in reqs] == [f"/api/models/{REPO_ID}/revision/main"], f"second download: {reqs}")

    path, reqs = step(
        f"snapshot_download({REPO_ID!r}, revision='v1.0', max_workers=1)",
        lambda: snapshot_download(REPO_ID, revision="v1.0", max_workers=1, **common),
    )
    check(Path(path) == storage / "snapshots" / main_sha, "v1.0 is main's snapshot")
    check([r["path"] for r in reqs] == [f"/api/models/{REPO_ID}/revision/v1.0"], f"tag download: {reqs}")
    check((storage / "refs" / "v1.0").read_text() == main_sha, "refs/v1.0")

    path, reqs = step(
        f"hf_hub_download({REPO_ID!r}, {SCHEDULER_FILE!r}, revision='euler')",
        lambda: hf_hub_download(REPO_ID, SCHEDULER_FILE, revision="euler", **common),
    )
    check(Path(path) == storage / "snapshots" / euler_sha / SCHEDULER_FILE, f"euler file path {path}")
    check(Path(path).read_bytes() == EULER_CONFIG.read_bytes(), "euler config content")
    check([r["method"] for r in reqs] == ["HEAD", "GET"], f"single file download: {reqs}")

    gated_cache = tmp / "gated-cache"
    gated_common = dict(cache_dir=gated_cache, endpoint=mock.url)

    def refused():
        try:
            hf_hub_download(GATED_ID, "config.json", token=False, **gated_common)
        except GatedRepoError as e:
            return e.response.status_code
        fail("the gated repo was readable without a token")

    status, reqs = step(
        f"hf_hub_download({GATED_ID!r}, 'config.json', token=False)  # GatedRepoError", refused
    )
    check(status == 401 and [r["status"] for r in reqs] == [401], f"gated without token: {reqs}")

    _, reqs = step(
        f"snapshot_download({GATED_ID!r}, token=<token>, max_workers=1)  # into another cache",
        lambda: snapshot_download(GATED_ID, token=GATED_TOKEN, max_workers=1, **gated_common),
    )
    check(
        all(r["authorization"] == (r["host"] == "hub") for r in reqs),
        "the token goes to the Hub only, not to the CDN",
    )
    check(all(r["status"] in (200, 302) for r in reqs), f"gated with token: {reqs}")

    # Faults, each into a throwaway cache: what Python does when a download is cut or corrupted.
    # huggingface_hub writes what it receives in 10 MiB chunks: a cut after 11 MB resumes at 10 MiB,
    # while a cut file it had no whole chunk of would be downloaded again from the start.
    fault_common = dict(endpoint=mock.url, token=False)
    big_bytes = (tmp / "big" / BIG_FILE).read_bytes()
    print("make_hub_cache.py: cutting a download on purpose (huggingface_hub warns):", file=sys.stderr)
    mock.command(f"drop_after {BIG_FILE} 11000000")
    path, reqs = step(
        f"hf_hub_download({BIG_ID!r}, {BIG_FILE!r})  # the CDN cuts the connection after 11000000 bytes",
        lambda: hf_hub_download(BIG_ID, BIG_FILE, cache_dir=tmp / "cut-cache", **fault_common),
    )
    check(Path(path).read_bytes() == big_bytes, "resumed download content")
    check([(r["host"], r["method"], r["range"], r["status"]) for r in reqs] == [
        ("hub", "HEAD", None, 302), ("cdn", "GET", None, 200), ("cdn", "GET", f"bytes={10 * 2**20}-", 206)
    ], f"cut download: {reqs}")  # fmt: skip

    vae = "vae/diffusion_pytorch_model.safetensors"
    vae_bytes = (PIPELINE / vae).read_bytes()
    mock.command(f"corrupt_once {vae}")
    path, reqs = step(
        f"hf_hub_download({REPO_ID!r}, {vae!r})  # the CDN flips one byte, headers keep the sha256",
        lambda: hf_hub_download(REPO_ID, vae, cache_dir=tmp / "corrupt-cache", **fault_common),
    )
    got = Path(path).read_bytes()
    blob_name = Path(os.path.realpath(path)).name
    corrupted_kept = got != vae_bytes and blob_name == hashlib.sha256(vae_bytes).hexdigest()
    check(corrupted_kept, "huggingface_hub 2.4 keeps a corrupted download under the true sha256")

    return {
        "huggingface_hub": HUB_VERSION,
        "made_by": "tests/reference/make_hub_cache.py",
        "notes": [
            "Requests to the mock Hub (host hub) and to the CDN its LFS redirects point to"
            " (host cdn, a second port).",
            "path is the request target as sent (percent-encoded, with the query); authorization"
            " tells whether an Authorization header was sent; status is the mock's answer.",
            "The steps run in this order against one cache (the gated repo and the faults: others),"
            " with max_workers=1.",
            "A cut download is resumed with a Range from the last whole 10 MiB chunk it wrote"
            " (after a 1 s pause); a corrupted LFS download is kept as it came: huggingface_hub 2.4"
            " does not check the sha256 of what it downloads over HTTP.",
        ],
        "revisions": mock.revisions,
        "steps": steps,
    }


def verify_offline(mock: Mock, cache: Path) -> None:
    """HF_HUB_OFFLINE=1 + local_files_only resolves the same snapshots, with no request, no write."""
    revs = mock.revisions[REPO_ID]
    storage = cache.resolve() / STORAGE
    before_files = tree_digest(cache)
    before_requests = len(mock.requests())
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    child = subprocess.run(
        [sys.executable, __file__, "--offline-check", str(cache)], env=env, capture_output=True, text=True
    )
    check(child.returncode == 0, f"offline check failed:\n{child.stdout}\n{child.stderr}")
    got = json.loads(child.stdout)
    main_snapshot = storage / "snapshots" / revs["main"]
    check(Path(got["main"]) == main_snapshot, f"offline main: {got['main']}")
    check(Path(got["main_offline_env_only"]) == main_snapshot, "offline main without local_files_only")
    check(Path(got["v1.0"]) == main_snapshot, f"offline v1.0: {got['v1.0']}")
    check(Path(got["euler_file"]) == storage / "snapshots" / revs["euler"] / SCHEDULER_FILE, "offline euler")
    check(Path(got["euler_file"]).read_bytes() == EULER_CONFIG.read_bytes(), "offline euler content")
    vae = "vae/diffusion_pytorch_model.safetensors"
    check(Path(got["main_file"]).read_bytes() == (PIPELINE / vae).read_bytes(), "offline vae content")
    for f in PIPELINE.rglob("*"):
        if f.is_file():
            rel = f.relative_to(PIPELINE)
            check((main_snapshot / rel).read_bytes() == f.read_bytes(), f"snapshot content of {rel}")
    check(len(mock.requests()) == before_requests, "the offline check made requests")
    check(tree_digest(cache) == before_files, "the offline check changed the cache")


if __name__ == "__main__":
    main()
