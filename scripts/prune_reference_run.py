#!/usr/bin/env python3
"""Reference one-shot pruning with llm-compressor 0.14 on CPU, on exactly the calibration windows
given (an slmc prune stage's calibration.safetensors), saved as a dense-zeros HF directory.

    .venv/bin/python scripts/prune_reference_run.py --calib RUN/stages/0-prune/calibration.safetensors \\
        --method sparsegpt|wanda|magnitude [--sparsity 0.5 | --pattern 2:4] --out DIR \\
        [--model data/models/teacher] [--damp 0.01] [--block-size 128] [--threads 2] [--reverse-windows]

Needs the packages of scripts/requirements-prune.txt in .venv (installed --no-deps).

The model is loaded with transformers in float32 (slmc computes in f32 too). The windows become a
`datasets.Dataset` of `input_ids` / all-ones `attention_mask` rows, in file order
(`shuffle_calibration_samples=False`), one per batch, no padding or truncation (every row is
`max_seq_length` long). Recipe: `SparseGPTModifier(sparsity, mask_structure, block_size,
dampening_frac)` or `WandaPruningModifier(sparsity, mask_structure)`, `targets=["Linear"]`,
`ignore=["re:.*lm_head"]`, i.e. every decoder linear and not the LM head, through the sequential
pipeline (one decoder layer at a time, every linear of a layer calibrated on the layer as it
entered, the pruned layer's outputs feeding the next: the rule slmc follows).

`--method magnitude` tries llm-compressor's `MagnitudePruningModifier` (init = final sparsity 0.5,
start 0, end 1) through `oneshot` and reports the sparsity it leaves, to document whether it can
do a one-shot mask (it is a gradual-pruning modifier whose masks are applied on optimizer steps).

`seconds` is the wall time of `oneshot()` alone (tracing, calibration forwards, statistics and
pruning; model loading and saving excluded, as slmc's done.json `seconds` excludes them).

Prints one JSON line: {library, version, method, sparsity, pattern, seconds, threads, modules,
overall_sparsity, min/max_module_sparsity, n_m_ok (every row of every target holds the pattern),
out}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def read_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every decoder linear's weight [out, in] as saved in model_dir's safetensors files, by module
    name (`model.layers.3.mlp.down_proj`), in float32."""
    from safetensors.torch import load_file

    weights = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        for name, t in load_file(f).items():
            parts = name.split(".")
            if len(parts) > 2 and parts[-1] == "weight" and parts[-2] in LINEARS:
                weights[name[: -len(".weight")]] = t.float()
    return weights


def sparsity_report(weights: dict[str, torch.Tensor], pattern: str | None) -> dict:
    """Zeros per module, overall, and whether every row keeps at most N of every M weights."""
    per = {n: (w == 0).float().mean().item() for n, w in weights.items()}
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    total = sum(w.numel() for w in weights.values())
    out = {"modules": len(per), "overall_sparsity": zeros / total,
           "min_module_sparsity": min(per.values()), "max_module_sparsity": max(per.values())}
    if pattern:
        n_zero, m = (int(x) for x in pattern.split(":"))
        # "2:4" = two of every four consecutive input weights of each row are zero.
        out["n_m_ok"] = all(
            bool(((w.reshape(w.shape[0], -1, m) == 0).sum(-1) >= n_zero).all()) for w in weights.values())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "data/models/teacher"))
    ap.add_argument("--calib", required=True)
    ap.add_argument("--method", choices=["sparsegpt", "wanda", "magnitude"], required=True)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--sparsity", type=float, default=0.5)
    g.add_argument("--pattern", help="N:M with N pruned of every M, e.g. 2:4")
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reverse-windows", action="store_true",
                    help="feed the windows last to first: the same statistics up to float rounding "
                         "(the reference's own numerical noise)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import llmcompressor
    from datasets import Dataset
    from llmcompressor import oneshot
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calib = load_file(args.calib)["input_ids"].to(torch.int64)
    assert calib.dim() == 2, calib.shape
    n, seq_len = calib.shape
    if args.reverse_windows:
        calib = calib.flip(0)
    dataset = Dataset.from_dict({"input_ids": calib.tolist(), "attention_mask": torch.ones_like(calib).tolist()})

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    sparsity = 0.5 if args.pattern else args.sparsity
    # mask_structure "2:4": the 2 lowest-scored of every 4 consecutive inputs of a row are pruned
    # (sgpt_sparsify / wanda_sparsify topk(prune_n, largest=False)), as slmc's `pattern = "2:4"`.
    structure = args.pattern or "0:0"
    common = dict(targets=["Linear"], ignore=["re:.*lm_head"])
    if args.method == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        modifier = SparseGPTModifier(sparsity=sparsity, mask_structure=structure, block_size=args.block_size,
                                     dampening_frac=args.damp, **common)
    elif args.method == "wanda":
        from llmcompressor.modifiers.pruning import WandaPruningModifier

        modifier = WandaPruningModifier(sparsity=sparsity, mask_structure=structure, **common)
    else:
        from llmcompressor.modifiers.pruning import MagnitudePruningModifier

        if args.pattern:
            raise SystemExit("MagnitudePruningModifier has no N:M mask structure (unstructured, channel, filter, block)")
        modifier = MagnitudePruningModifier(targets=["re:.*(q|k|v|o|gate|up|down)_proj.weight$"],
                                            init_sparsity=sparsity, final_sparsity=sparsity, start=0, end=1,
                                            update=1)

    t0 = time.perf_counter()
    oneshot(model=model, processor=tok, dataset=dataset, recipe=[modifier], num_calibration_samples=n,
            max_seq_length=seq_len, shuffle_calibration_samples=False, batch_size=1,
            pipeline="sequential" if args.method != "magnitude" else "independent")
    seconds = time.perf_counter() - t0

    out = Path(args.out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # Read back what was saved: the zeros are in the file, not only in the live model.
    weights = read_weights(out)
    print(json.dumps({
        "library": "llmcompressor", "version": llmcompressor.__version__, "method": args.method,
        "sparsity": sparsity, "pattern": args.pattern, "damp": args.damp, "block_size": args.block_size,
        "seconds": round(seconds, 2), "threads": args.threads, "calib_shape": [n, seq_len],
        **sparsity_report(weights, args.pattern), "out": str(out),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
