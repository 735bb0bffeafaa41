#!/usr/bin/env python3
"""llama.cpp runs a GGUF file that holds a quantize stage's codes as-is, and computes the same
perplexity as the fake-quantized model slmc evaluates.

    .venv/bin/python scripts/check_gguf_codes.py RUN_DIR/artifacts/NAME-q4_0.gguf RUN_DIR/stages/<i>-quantize/model \\
        [--max-tokens 8192] [--ctx 256] [--stride 128]

The stage model directory holds the fake-quantized weights in f32 (scale x (code - zero)); the
GGUF file holds the same codes as Q4_0 / Q4_1 / Q8_0 blocks. Both are scored on the same token
ids (scripts/gguf_ppl_table.py's protocol): llama.cpp (llama-cpp-python) on the GGUF file,
`slmc eval` on the stage model. Weights are compared through check_llamacpp.py's GGUF →
Hugging Face conversion (dequantized, q/k permutation undone). Also reports the GGUF tensor types (gguf-py) and checks
that every quantized linear dequantizes exactly to the stage model's weight (Q4_0 / Q8_0 are
exact; Q4_1 within the f16 rounding of its minimum). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from check_llamacpp import gguf_to_hf_state, validate  # noqa: E402
from gguf_ppl_table import llama_cpp_nll, token_ids  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, default=HERE.parent / "data/corpus/val.parquet")
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--slmc", type=Path, default=HERE.parent / "target/release/slmc")
    args = ap.parse_args()
    from safetensors.numpy import load_file

    dense = load_file(args.model / "model.safetensors")
    reader, kv = validate(args.gguf)
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    # Dequantized GGUF tensors under Hugging Face names, q/k permutation undone.
    state = gguf_to_hf_state(reader, kv, kv["general.architecture"])
    worst = 0.0
    for name, got in state.items():
        if ".layers." in name and name.endswith("proj.weight"):
            want = dense[name]
            got = got.float().numpy().reshape(want.shape)
            worst = max(worst, float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)))
    ids = token_ids(args.model, args.data, args.max_tokens)
    total, count = llama_cpp_nll(args.gguf, ids, args.ctx, args.stride)
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = Path(tmp) / "ids.jsonl"
        ids_file.write_text(json.dumps({"input_ids": ids}) + "\n")
        p = subprocess.run([str(args.slmc), "eval", str(args.model), "--data", str(ids_file), "--ctx", str(args.ctx),
                            "--stride", str(args.stride), "--json"], check=True, capture_output=True, text=True)
    ev = json.loads(p.stdout)
    ppl_cpp, ppl_slmc = math.exp(total / count), ev["ppl"]
    print(json.dumps({"gguf_types": types, "max_rel_weight_diff": worst, "ppl_llama_cpp": ppl_cpp,
                      "ppl_fake_quant_slmc": ppl_slmc, "relative_difference": abs(ppl_cpp - ppl_slmc) / ppl_slmc,
                      "tokens": count, "tokens_slmc": ev["tokens"]}))


if __name__ == "__main__":
    main()
