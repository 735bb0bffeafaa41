#!/usr/bin/env bash
# (Re)create the Python virtualenv used only by scripts/ (fixture generation, HF round-trip check,
# PyTorch benchmark). Idempotent: re-running it on a complete venv just checks it.
#
#   scripts/setup_python.sh            # creates/updates ./.venv from scripts/requirements.txt
#   PYTHON=python3.11 VENV=/tmp/venv scripts/setup_python.sh   # other interpreter / location
#
# Only PyPI is used. The PyPI torch wheel for Linux x86_64 is the CUDA build; it runs on CPU, but
# its libraries link the CUDA runtime, so the pinned nvidia-* wheels (~4 GB) are installed as well.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
REQ="$ROOT/scripts/requirements.txt"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi

if "$VENV/bin/python" - "$REQ" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
want = {}
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if "==" in line:
        name, ver = line.split("==", 1)
        want[name] = ver
bad = []
for name, ver in want.items():
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or have.split("+", 1)[0] != ver:
        bad.append(f"{name} {have} != {ver}")
if bad:
    print("venv out of date:", *bad[:10], sep="\n  ")
    sys.exit(1)
EOF
then
    echo "venv already matches scripts/requirements.txt"
else
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ"
fi

"$VENV/bin/python" - <<'EOF'
import torch, transformers, tokenizers, safetensors, numpy
x = torch.randn(2) @ torch.randn(2)
print(f"ok: torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), "
      f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
      f"safetensors {safetensors.__version__}, numpy {numpy.__version__}")
EOF
