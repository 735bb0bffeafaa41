#!/usr/bin/env python3
"""Checks an slmc structured prune with transformers (evidence; not run in CI).

    cargo run --release -p slmc-prune --example prune_dump -- MODEL_DIR OUT_DIR --heads 2 --hidden 48 ...
    .venv/bin/python scripts/check_structured_hf.py OUT_DIR --original MODEL_DIR

1. Loads OUT_DIR/model (the pruned directory slmc saved) with AutoModelForCausalLM, runs the
   token ids slmc used and compares the logits with slmc's (OUT_DIR/slmc.safetensors): config.json
   and the safetensors shapes must agree for transformers to load it at all.
2. With --original (and activation importance): recomputes Minitron's activation importance on the ORIGINAL model with
   forward hooks (docs/algorithms.md §6.2–6.3: batch = L2, seq = mean; o_proj / down_proj
   inputs, every input_layernorm / post_attention_layernorm output, 1 - mean cos of each decoder
   layer's input and output) over slmc's calibration windows in slmc's batches, and compares with
   slmc's scores.

Prints one JSON object; exits 1 when a check fails (logits beyond --tol, importance beyond
--imp-tol relative).
"""

import argparse
import json
import sys

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM


def load_dump(path):
    with safe_open(path, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    return tensors, meta


def hf_importance(model, calib, batch_size):
    """Minitron activation importance with hooks (forward-only, float32)."""
    layers = model.model.layers
    acc = {}
    influence = [0.0] * len(layers)

    def aggregate(key, a):
        a = a.detach().float()
        contrib = a.abs().mean(dim=1).pow(2).sum(dim=0)  # [D]
        acc[key] = acc.get(key, 0) + contrib.double()

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(
            lambda m, args, i=i: aggregate(("mlp", i), args[0])))
        handles.append(layer.self_attn.o_proj.register_forward_pre_hook(
            lambda m, args, i=i: aggregate(("ctx", i), args[0])))
        handles.append(layer.input_layernorm.register_forward_hook(
            lambda m, args, out, i=i: aggregate(("norm_in", i), out)))
        handles.append(layer.post_attention_layernorm.register_forward_hook(
            lambda m, args, out, i=i: aggregate(("norm_post", i), out)))

        def block_hook(m, args, kwargs, out, i=i):
            h_in = args[0] if args else kwargs["hidden_states"]
            h_out = out[0] if isinstance(out, tuple) else out
            cos = torch.nn.functional.cosine_similarity(h_in.float(), h_out.float(), dim=-1)
            influence[i] += 1.0 - cos.mean().item()

        handles.append(layer.register_forward_hook(block_hook, with_kwargs=True))
    with torch.no_grad():
        for start in range(0, calib.shape[0], batch_size):
            model(calib[start:start + batch_size])
    for h in handles:
        h.remove()
    n = len(layers)
    hd = model.config.head_dim if getattr(model.config, "head_dim", None) else \
        model.config.hidden_size // model.config.num_attention_heads
    heads = torch.stack([acc[("ctx", i)].sqrt().view(-1, hd).norm(dim=1) for i in range(n)])
    mlp = torch.stack([acc[("mlp", i)].sqrt() for i in range(n)])
    hidden = sum(acc[("norm_in", i)].sqrt() + acc[("norm_post", i)].sqrt() for i in range(n))
    return {"heads": heads, "mlp": mlp, "hidden": hidden, "layers": torch.tensor(influence, dtype=torch.float64)}


def rel_diff(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="OUT_DIR written by the prune_dump example")
    p.add_argument("--original", help="the unpruned model directory (enables the importance check)")
    p.add_argument("--tol", type=float, default=1e-3, help="max |Δlogit| accepted")
    p.add_argument("--imp-tol", type=float, default=1e-3, help="max relative importance difference accepted")
    a = p.parse_args()
    torch.set_num_threads(2)
    dump, meta = load_dump(f"{a.out}/slmc.safetensors")
    result = {"out": a.out}

    pruned = AutoModelForCausalLM.from_pretrained(f"{a.out}/model", dtype=torch.float32).eval()
    cfg = pruned.config
    result["config"] = {k: getattr(cfg, k, None) for k in (
        "model_type", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
        "head_dim", "num_hidden_layers")}
    with torch.no_grad():
        logits = pruned(dump["ids"]).logits.float()
    delta = (logits - dump["logits"]).abs().max().item()
    result["max_abs_dlogit"] = delta
    result["max_abs_logit"] = dump["logits"].abs().max().item()
    ok = delta <= a.tol

    with open(f"{a.out}/report.json") as f:
        method = json.load(f)["importance_method"]
    if a.original and method == "magnitude":
        result["importance_rel_diff"] = "skipped: slmc used magnitude importance"
    elif a.original:
        orig = AutoModelForCausalLM.from_pretrained(a.original, dtype=torch.float32).eval()
        ref = hf_importance(orig, dump["calib"], int(meta.get("batch_size", "4")))
        diffs = {k: rel_diff(dump[f"importance.{k}"], v) for k, v in ref.items()}
        result["importance_rel_diff"] = diffs
        ok = ok and all(d <= a.imp_tol for d in diffs.values())
    result["ok"] = ok
    print(json.dumps(result))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
