#!/usr/bin/env python3
"""Perplexity and mean KL(f32 teacher || model) per token of a plain Hugging Face model directory
(e.g. the fake-quantized model a slmc quantize stage writes to stages/<i>-quantize/model), in
transformers float32, on the first --max-tokens tokens of data/corpus/val.parquet with the
sliding-window protocol of scripts/check_teacher.py. KL is far more sensitive than perplexity on
the small shipped teacher.

    .venv/bin/python scripts/kl_to_f32.py MODEL_DIR [--ref data/models/teacher] [--ctx 256 --stride 128 --max-tokens 16384]

Prints one JSON line {"ppl", "kl_to_f32", "tokens"}.
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

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from check_teacher import sliding_nll  # noqa: E402
from gptq_reference_run import sliding_kl, val_ids  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--ref", default=str(HERE.parent / "data/models/teacher"))
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ids = val_ids(args.ref, args.max_tokens)
    ref = AutoModelForCausalLM.from_pretrained(args.ref, dtype=torch.float32).eval()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    total, count = sliding_nll(model, ids, args.ctx, args.stride)
    kl = sliding_kl(ref, model, ids, args.ctx, args.stride)
    print(json.dumps({"ppl": math.exp(total / count), "kl_to_f32": kl, "tokens": count}))


if __name__ == "__main__":
    main()
