#!/usr/bin/env bash
# Create ./.venv-tch holding PyPI's torch 2.9.0, the libtorch that torch-sys 0.22 (burn-tch 0.22.1)
# is pinned to, and print the environment to export before `cargo build --features tch`.
# Idempotent: on a complete venv it only checks the version and prints the environment.
#
#   scripts/setup_tch.sh                 # creates/updates ./.venv-tch, prints the exports
#   eval "$(scripts/setup_tch.sh --env)"  # only the exports (after a first run), for a shell
#   source scripts/tch_env.sh            # same, sourced
#
# Only PyPI is used. Its Linux x86_64 torch wheel is the CUDA build (~4 GB with the nvidia-*
# wheels it depends on); libtorch's CPU path runs without a GPU, but libtorch_cuda.so needs the
# nvidia-* libraries to load, so they are installed too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV_TCH:-$ROOT/.venv-tch}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.9.0"   # torch-sys 0.22.0 checks for exactly this libtorch version
# transformers (same pins as scripts/requirements.txt) only for the PyTorch side of
# `DEVICE=tch scripts/bench_vs_torch.sh`, so that both sides run libtorch 2.9.0.
EXTRA=(transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 numpy)

env_only=0
[ "${1:-}" = "--env" ] && env_only=1

have_torch() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$TORCH_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
ok = version("torch").split("+", 1)[0] == sys.argv[1] and version("transformers") == "5.23.0"
sys.exit(0 if ok else 1)
PY
}

if [ "$env_only" = 0 ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating $VENV with $($PYTHON --version 2>&1)" >&2
        "$PYTHON" -m venv "$VENV"
    fi
    if have_torch; then
        echo "$VENV: torch $TORCH_VERSION present" >&2
    else
        echo "installing torch==$TORCH_VERSION into $VENV (several GB)" >&2
        "$VENV/bin/python" -m pip install --upgrade pip >&2
        "$VENV/bin/python" -m pip install "torch==$TORCH_VERSION" "${EXTRA[@]}" >&2
    fi
fi

have_torch || { echo "torch $TORCH_VERSION (or transformers) missing in $VENV; run scripts/setup_tch.sh" >&2; exit 1; }
TORCH_LIB="$("$VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"

[ "$env_only" = 0 ] && echo "# export these before cargo build/test --features tch (or: source scripts/tch_env.sh)" >&2
echo "export LIBTORCH_USE_PYTORCH=1"
echo "export PATH=\"$VENV/bin:\$PATH\""
echo "export LD_LIBRARY_PATH=\"$TORCH_LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
