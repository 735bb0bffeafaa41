#!/usr/bin/env python3
"""`slmc eval` beside llama.cpp's perplexity computation on the same F32 GGUF, tokens and threads.

    .venv/bin/python scripts/bench_eval_vs_llamacpp.py [--model data/models/teacher] [--threads 2]
        [--ctx 256] [--rows 8] [--row-tokens 2048] [--rounds 3]

The held-out corpus (data/corpus/val.parquet) is tokenized once with the model's tokenizer.json and
cut into `--rows` rows of `--row-tokens` ids, written as pre-tokenized jsonl. slmc evaluates that
file (`slmc eval MODEL --data F --ctx C --stride C --json`: non-overlapping windows, every token but
a window's first scored); llama-cpp-python 0.3.36 loads the model exported by `slmc export --format
gguf --type f32`, evaluates the same windows one at a time (n_ctx = n_batch = C, all logits) and the
script scores the same targets in float64. Both run on `--threads` threads, alternately, `--rounds`
times; the medians are printed with the ratio, and both perplexities (they agree to the precision
of the two implementations' f32 arithmetic).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
SLMC = ROOT / "target" / "release" / "slmc"


def rows_of_ids(model: Path, n_rows: int, row_tokens: int) -> list[list[int]]:
    text = "\n\n".join(pq.read_table(ROOT / "data/corpus/val.parquet").column("text").to_pylist())
    ids = Tokenizer.from_file(str(model / "tokenizer.json")).encode(text).ids
    need = n_rows * row_tokens
    if len(ids) < need:
        sys.exit(f"the held-out corpus has {len(ids)} tokens; {need} asked for")
    return [ids[i * row_tokens : (i + 1) * row_tokens] for i in range(n_rows)]


def llamacpp_eval(gguf: Path, rows: list[list[int]], ctx: int, threads: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(gguf),
        n_ctx=ctx,
        n_batch=ctx,
        n_ubatch=ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        verbose=False,
    )
    nll, scored, secs = 0.0, 0, 0.0
    for row in rows:
        for begin in range(0, len(row) - 1, ctx):
            window = row[begin : begin + ctx]
            if len(window) < 2:
                continue
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(window)
            logits = np.asarray(llm.scores[: len(window)], dtype=np.float64)
            secs += time.perf_counter() - t0
            z = logits[:-1]
            m = z.max(axis=1, keepdims=True)
            logz = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
            targets = np.asarray(window[1:])
            nll += float((logz - z[np.arange(len(targets)), targets]).sum())
            scored += len(targets)
    return {"impl": "llama.cpp", "ppl": float(np.exp(nll / scored)), "tokens": scored, "tokens_per_s": scored / secs}


def slmc_eval(model: Path, data: Path, ctx: int, threads: int) -> dict:
    out = subprocess.run(
        [str(SLMC), "--threads", str(threads), "eval", str(model), "--data", str(data), "--ctx", str(ctx),
         "--stride", str(ctx), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return {"impl": "slmc", "ppl": r["ppl"], "tokens": r["tokens"], "tokens_per_s": r["tokens_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "data/models/teacher")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--row-tokens", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "slmc-cli"], check=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gguf = tmp / "model-f32.gguf"
        subprocess.run([str(SLMC), "export", str(args.model), "--format", "gguf", "--type", "f32", "-o", str(gguf)],
                       check=True, capture_output=True)
        data = tmp / "ids.jsonl"
        rows = rows_of_ids(args.model, args.rows, args.row_tokens)
        data.write_text("".join(json.dumps({"input_ids": r}) + "\n" for r in rows))
        results = []
        for _ in range(args.rounds):
            for r in (slmc_eval(args.model, data, args.ctx, args.threads), llamacpp_eval(gguf, rows, args.ctx, args.threads)):
                print(json.dumps(r), flush=True)
                results.append(r)
    med = {k: statistics.median(r["tokens_per_s"] for r in results if r["impl"] == k) for k in ("slmc", "llama.cpp")}
    for k in med:
        r = next(r for r in results if r["impl"] == k)
        print(f"{k:10s} ppl {r['ppl']:.4f} over {r['tokens']} tokens  {med[k]:8.0f} tokens/s (median of {args.rounds})")
    print(f"ratio slmc/llama.cpp = {med['slmc'] / med['llama.cpp']:.2f}x  ({args.threads} threads, ctx {args.ctx})")


if __name__ == "__main__":
    main()
