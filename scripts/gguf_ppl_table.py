#!/usr/bin/env python3
"""Per GGUF type: file size, bits per weight, and perplexity in slmc and in llama.cpp on the same
tokens (the README's GGUF table).

    .venv/bin/python scripts/gguf_ppl_table.py MODEL_DIR [--data data/corpus/val.parquet]
        [--types f32,f16,bf16,q8_0,q6_k,q5_k_m,q5_0,q4_k_m,q4_0] [--ctx 256] [--stride 128]
        [--max-tokens 16384]

1. The text rows of --data are joined with blank lines and tokenized once with MODEL_DIR's
   tokenizer.json (special tokens included), cut to --max-tokens; both implementations score
   exactly these ids with the Hugging Face sliding-window protocol (--ctx/--stride; every token
   after the first scored once).
2. For each type, `slmc export MODEL_DIR --format gguf --type T` writes the file (its size and
   bits/weight are reported).
3. llama.cpp (llama-cpp-python: CPU, F32 KV cache) evaluates the GGUF file window by window.
4. slmc evaluates the same quantized weights: the GGUF tensors are dequantized with gguf-py, the
   llama Q/K permutation undone, written as a Hugging Face directory, and `slmc eval` runs on it
   (f32 compute). So the two columns differ only by the engines (llama.cpp also quantizes the
   activations for quantized matmuls), not by the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_llamacpp import gguf_to_hf_state, no_extra_buffers, validate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def token_ids(model_dir: Path, data: Path, max_tokens: int) -> list[int]:
    from tokenizers import Tokenizer

    if data.suffix == ".parquet":
        import pyarrow.parquet as pq

        texts = pq.read_table(data, columns=["text"]).column("text").to_pylist()
    else:
        texts = [data.read_text()]
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    ids = tok.encode("\n\n".join(texts), add_special_tokens=True).ids
    return ids[:max_tokens]


def windows(n: int, ctx: int, stride: int):
    """(begin, end, n_targets) of the HF sliding-window protocol."""
    prev_end = 0
    for begin in range(0, n, stride):
        end = min(begin + ctx, n)
        yield begin, end, end - prev_end if begin > 0 else end - begin - 1
        prev_end = end
        if end == n:
            break


def llama_cpp_nll(path: Path, ids: list[int], ctx: int, stride: int) -> tuple[float, int]:
    import llama_cpp

    no_extra_buffers()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, logits_all=True,
                          n_threads=2, type_k=0, type_v=0, flash_attn=False, verbose=False)
    total, count = 0.0, 0
    for begin, end, n_targets in windows(len(ids), ctx, stride):
        w = ids[begin:end]
        llm.reset()
        llm.eval(w)
        logits = np.array(llm.scores[: len(w)], dtype=np.float64)
        logp = logits - logits.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        for t in range(len(w) - n_targets, len(w)):
            total -= logp[t - 1, w[t]]
            count += 1
    return total, count


def slmc_nll(slmc: Path, gguf_path: Path, model_dir: Path, ids_file: Path, ctx: int, stride: int, tmp: Path):
    from safetensors.torch import save_file

    r, kv = validate(gguf_path)
    state = gguf_to_hf_state(r, kv, kv["general.architecture"])
    d = tmp / "dequantized"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(d / "model.safetensors"), metadata={"format": "pt"})
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (model_dir / f).is_file():
            shutil.copy(model_dir / f, d / f)
    cfg = json.loads((d / "config.json").read_text())
    cfg["torch_dtype"] = "float32"
    cfg.pop("dtype", None)
    (d / "config.json").write_text(json.dumps(cfg))
    p = subprocess.run([str(slmc), "eval", str(d), "--data", str(ids_file), "--ctx", str(ctx), "--stride", str(stride),
                        "--json"], check=True, capture_output=True, text=True)
    out = json.loads(p.stdout)
    return out["mean_nll"] * out["tokens"], out["tokens"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "data/corpus/val.parquet")
    ap.add_argument("--types", default="f32,f16,bf16,q8_0,q6_k,q5_k_m,q5_1,q5_0,q4_k_m,q4_1,q4_0")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--slmc", type=Path, default=ROOT / "target/release/slmc")
    args = ap.parse_args()
    no_extra_buffers()
    ids = token_ids(args.model_dir, args.data, args.max_tokens)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids_file = tmp / "ids.jsonl"
        ids_file.write_text(json.dumps({"input_ids": ids}) + "\n")
        for ty in args.types.split(","):
            out = tmp / f"model.{ty}.gguf"
            subprocess.run([str(args.slmc), "export", str(args.model_dir), "--format", "gguf", "--type", ty, "-o",
                            str(out)], check=True, capture_output=True)
            from gguf import GGUFReader

            r = GGUFReader(str(out))
            n_el = sum(int(t.n_elements) for t in r.tensors)
            bpw = sum(int(t.n_bytes) for t in r.tensors) * 8 / n_el
            ln, n_l = llama_cpp_nll(out, ids, args.ctx, args.stride)
            sn, n_s = slmc_nll(args.slmc, out, args.model_dir, ids_file, args.ctx, args.stride, tmp)
            assert n_l == n_s, (n_l, n_s)
            row = {"type": ty, "file_mb": os.path.getsize(out) / 1e6, "bpw": bpw, "params": n_el,
                   "ppl_slmc": float(np.exp(sn / n_s)), "ppl_llama_cpp": float(np.exp(ln / n_l)), "tokens": n_s}
            rows.append(row)
            print(json.dumps(row), flush=True)
    base = rows[0]
    print(f"\nmodel {args.model_dir}, {base['params'] / 1e6:.2f}M parameters; {base['tokens']} tokens of {args.data.name}, "
          f"ctx {args.ctx}, stride {args.stride}\n")
    print("| --type | file MB | bits/weight | ppl (slmc) | ppl (llama.cpp) | llama.cpp vs F32 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        d = (r["ppl_llama_cpp"] / base["ppl_llama_cpp"] - 1) * 100
        print(f"| {r['type']} | {r['file_mb']:.2f} | {r['bpw']:.2f} | {r['ppl_slmc']:.3f} | {r['ppl_llama_cpp']:.3f} | "
              f"{d:+.2f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
