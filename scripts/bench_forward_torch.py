#!/usr/bin/env python3
"""PyTorch eager CPU forward throughput for the ~15.7M-parameter Llama used as slmc's benchmark model.

    .venv/bin/python scripts/bench_forward_torch.py [--threads N] [--iters 5]

Config: vocab 4096, hidden 384, intermediate 1024, 8 layers, 6 heads, 2 KV heads, max positions 512,
rope_theta 10000, untied, float32. Batch 4 x 256 random ids, no_grad, eval, use_cache=False, full
logits, default attention implementation (sdpa). 2 warm-up iterations, then --iters timed ones.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)

    rope = {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}
    if int(transformers.__version__.split(".")[0]) < 5:
        rope = {"rope_theta": 10000.0}
    cfg = LlamaConfig(
        vocab_size=4096,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=8,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        **rope,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))

    with torch.no_grad():
        for _ in range(2):
            model(input_ids=ids, use_cache=False)
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=False).logits
            times.append(time.perf_counter() - t0)
    assert out.shape == (args.batch, args.seq, cfg.vocab_size)
    mean = sum(times) / len(times)
    print(
        json.dumps(
            {
                "impl": "pytorch",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "attn_implementation": model.config._attn_implementation,
                "threads": args.threads,
                "params": params,
                "batch": args.batch,
                "seq": args.seq,
                "tokens_per_s": round(args.batch * args.seq / mean, 1),
                "ms_per_batch": round(mean * 1000, 2),
                "ms_per_batch_min": round(min(times) * 1000, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
