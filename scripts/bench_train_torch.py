#!/usr/bin/env python3
"""PyTorch eager CPU training throughput for slmc's teacher configuration (recipes/teacher.toml).

    .venv/bin/python scripts/bench_train_torch.py [--threads N] [--iters 5] [--batch 8] [--seq 256] [--distill]

Same work per step as `slmc bench train`: forward with full logits, next-token cross-entropy,
backward, global-norm gradient clipping (1.0) and AdamW (betas 0.9/0.95, weight decay 0.1 on
matrices only, eps 1e-8), float32, random token ids. With --distill (as `slmc bench distill`): the
model is the teacher, run under no_grad, and the trained model is its every-other-layer student,
with loss 0.9 * tau^2 * KL(p_T || q_S) at tau = 2 + 0.1 * CE. 2 warm-up steps, then --iters timed
ones; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

# keep in sync with TEACHER_CONFIG in crates/slmc-cli/src/commands/bench.rs
CONFIG = dict(vocab_size=4096, hidden_size=320, intermediate_size=864, num_hidden_layers=8,
              num_attention_heads=5, num_key_value_heads=5, max_position_embeddings=512,
              rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--distill", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    teacher = None
    if args.distill:
        teacher = LlamaForCausalLM(LlamaConfig(**CONFIG)).eval()
        student_cfg = dict(CONFIG, num_hidden_layers=CONFIG["num_hidden_layers"] // 2)
        model = LlamaForCausalLM(LlamaConfig(**student_cfg)).train()
    else:
        model = LlamaForCausalLM(LlamaConfig(**CONFIG)).train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    times = []
    for i in range(args.iters + 2):
        ids = torch.randint(0, CONFIG["vocab_size"], (args.batch, args.seq + 1))
        t0 = time.perf_counter()
        logits = model(input_ids=ids[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))
        if teacher is not None:
            with torch.no_grad():
                t_logits = teacher(input_ids=ids[:, :-1], use_cache=False).logits
            tau = 2.0
            lp = torch.log_softmax(t_logits / tau, -1)
            lq = torch.log_softmax(logits / tau, -1)
            kd = (lp.exp() * (lp - lq)).sum(-1).mean() * tau * tau
            loss = 0.9 * kd + 0.1 * loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    per_step = sum(times) / len(times)
    print(json.dumps({
        "impl": "pytorch", "bench": "distill" if args.distill else "train", "torch": torch.__version__, "threads": args.threads,
        "params": sum(p.numel() for p in model.parameters()), "batch": args.batch, "seq": args.seq,
        "tokens_per_s": args.batch * args.seq / per_step, "ms_per_step": per_step * 1e3,
    }))


if __name__ == "__main__":
    main()
