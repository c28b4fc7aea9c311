#!/usr/bin/env bash
# Regenerate the Wan2.1 parity fixtures (tests/data/wan) from the pinned PyTorch reference, and the
# Hugging Face cache Python's huggingface_hub writes from the mock Hub (tests/data/hub).
#
#   tests/reference/run.sh [--out DIR]
#
# Creates (or reuses) a venv OUTSIDE the repository, installs requirements.txt into it and runs
# make_fixtures.py (step "wan"; arguments go to it) then make_hub_cache.py (step "hub": reads
# tests/data/wan/tiny-pipeline, runs `cargo run --example mock_hub`, writes tests/data/hub).
# Environment:
#   AIVIDEO_REFERENCE_VENV      venv folder (default ~/.cache/aivideo/reference-venv)
#   AIVIDEO_REFERENCE_PYTHON    interpreter used to create it (default python3, needs >= 3.10)
#   AIVIDEO_REFERENCE_PIP_ARGS  extra pip arguments, e.g. a CPU-only torch index (see README.md)
#   AIVIDEO_REFERENCE_STEPS     steps to run, in order (default "wan hub", or "wan" when arguments
#                               are given, since they are make_fixtures.py's)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
repo="$(cd "$here/../.." && pwd -P)"
venv="${AIVIDEO_REFERENCE_VENV:-$HOME/.cache/aivideo/reference-venv}"
python="${AIVIDEO_REFERENCE_PYTHON:-python3}"

mkdir -p "$(dirname "$venv")"
venv_abs="$(cd "$(dirname "$venv")" && pwd -P)/$(basename "$venv")"
case "$venv_abs/" in
  "$repo"/*)
    echo "run.sh: the venv must live outside the repository (got $venv_abs)" >&2
    exit 2
    ;;
esac

if [ ! -x "$venv_abs/bin/python" ]; then
  echo "run.sh: creating venv $venv_abs" >&2
  "$python" -m venv "$venv_abs"
fi

# shellcheck disable=SC2086  # AIVIDEO_REFERENCE_PIP_ARGS is a list of words on purpose
"$venv_abs/bin/python" -m pip install --quiet --disable-pip-version-check \
  ${AIVIDEO_REFERENCE_PIP_ARGS:-} -r "$here/requirements.txt"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1
if [ "$#" -gt 0 ]; then default_steps="wan"; else default_steps="wan hub"; fi
for step in ${AIVIDEO_REFERENCE_STEPS:-$default_steps}; do
  case "$step" in
    wan) "$venv_abs/bin/python" "$here/make_fixtures.py" --out "$repo/tests/data/wan" "$@" ;;
    hub) (cd "$repo" && "$venv_abs/bin/python" "$here/make_hub_cache.py" --out "$repo/tests/data/hub") ;;
    *)
      echo "run.sh: unknown step $step (steps: wan, hub)" >&2
      exit 2
      ;;
  esac
done
