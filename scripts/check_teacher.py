#!/usr/bin/env python3
"""Check the shipped teacher in transformers, and compute a unigram baseline for scale.

    .venv/bin/python scripts/check_teacher.py [MODEL_DIR] [--ctx 256] [--stride 128]

Tokenizes data/corpus/val.parquet exactly as slmc's data pipeline does (each row:
tokenizer(text) with BOS, then EOS appended; rows concatenated into one stream), evaluates the
Hugging Face sliding-window perplexity (ctx, stride) with transformers in float32, and prints it
beside slmc's figure for the same protocol (`slmc eval`'s ctx/stride on the same token stream,
read from runs/teacher/stages/1-eval/done.json if present). The unigram baseline is an add-one
smoothed token-frequency model fitted on data/corpus/train.parquet, scored on the same val tokens.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def stream(tok, path: Path) -> list[int]:
    ids: list[int] = []
    for text in pq.read_table(path, columns=["text"]).column("text").to_pylist():
        ids += tok(text)["input_ids"] + [tok.eos_token_id]
    return ids


def token_nlls(model, ids: list[int], ctx: int, stride: int) -> torch.Tensor:
    """Per-token NLLs (float64) of the sliding-window protocol: windows of ctx tokens every stride,
    every token after the first scored once, by the window that first reaches it."""
    out, prev_end = [], 0
    for begin in range(0, len(ids), stride):
        end = min(begin + ctx, len(ids))
        window = torch.tensor([ids[begin:end]])
        with torch.no_grad():
            logp = torch.log_softmax(model(window, use_cache=False).logits[0].double(), -1)
        first = max(1, (end - begin) - (end - prev_end))
        out.append(-logp[first - 1:end - begin - 1].gather(1, window[0, first:end - begin, None])[:, 0])
        prev_end = end
        if end == len(ids):
            break
    return torch.cat(out)


def sliding_nll(model, ids: list[int], ctx: int, stride: int) -> tuple[float, int]:
    nll = token_nlls(model, ids, ctx, stride)
    return nll.sum().item(), len(nll)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=str(ROOT / "data/models/teacher"))
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--stride", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    val = stream(tok, ROOT / "data/corpus/val.parquet")
    total, count = sliding_nll(model, val, args.ctx, args.stride)
    hf_ppl = math.exp(total / count)
    train = stream(tok, ROOT / "data/corpus/train.parquet")
    counts = Counter(train)
    vocab = model.config.vocab_size
    denom = len(train) + vocab
    uni = math.exp(-sum(math.log((counts[t] + 1) / denom) for t in val[1:]) / (len(val) - 1))
    out = {"val_tokens": len(val), "scored": count, "ctx": args.ctx, "stride": args.stride,
           "transformers_ppl": hf_ppl, "unigram_ppl": uni, "train_tokens": len(train)}
    done = ROOT / "runs/teacher/stages/1-eval/done.json"
    if done.is_file():
        slmc = json.loads(done.read_text())
        out["slmc_ppl"] = slmc["ppl"]
        out["relative_difference"] = abs(slmc["ppl"] - hf_ppl) / hf_ppl
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
