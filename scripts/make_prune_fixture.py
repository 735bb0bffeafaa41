#!/usr/bin/env python3
"""Generate tests/fixtures/prune/: single-layer unstructured-pruning references computed by
llm-compressor 0.14's own kernels, cross-checked against an independent numpy re-implementation
of the SparseGPT and Wanda kernels ("Appendix A" below; docs/algorithms.md §5.6).

Regenerate (needs the extra packages of scripts/requirements-prune.txt in .venv):

    .venv/bin/python scripts/make_prune_fixture.py

Deterministic: numpy-seeded data, CPU, torch.set_num_threads(1).

Kernels used (llmcompressor 0.14.0.1, CPU, float32):
* SparseGPT: `llmcompressor.modifiers.pruning.sparsegpt.sgpt_sparsify.accumulate_hessian` (one call
  per calibration sequence, as the modifier's forward hook does) and `.sparsify_weight`
  (block_size 128, dampening_frac 0.01, preserve_sparsity_mask False).
* Wanda: `llmcompressor.modifiers.pruning.wanda.wanda_sparsify.accumulate_row_scalars` and
  `.sparsify_weight`.
* Magnitude per output row and magnitude N:M: the same Wanda kernel with all-ones row scalars
  (its metric is then |W|), i.e. locuslab/wanda's per-output comparison group on |W|.
* Magnitude per layer: the rule of locuslab/wanda `lib/prune.py` `prune_magnitude` (and of
  IST-DASLab/sparsegpt `--gmp`), `thresh = sort(|W|.flatten())[int(numel * s)]; W[|W| <= thresh] = 0`,
  executed here in torch (the original calls `.cuda()`, so it cannot run verbatim on CPU).
* OWL: `SparseGPTModifier._infer_owl_layer_sparsity` itself, with `_get_activations` overridden to
  return the fixture's per-column activation norms instead of running a model.

Outputs
* layer.safetensors
    weight              f32 [R, C]           the layer weight (nn.Linear layout, rows = out features)
    inputs              f32 [S, L, C]        calibration inputs, S sequences of L tokens
    hessian             f32 [C, C]           llm-compressor's H = (2/S) sum_t x_t x_t^T (S = sequences)
    scaler_row          f32 [C]              llm-compressor's Wanda row scalars (mean over sequences of sum_t x^2)
    <case>.mask         u8  [R, C]           1 = pruned (every case)
    <case>.weight       f32 [R, C]           SparseGPT cases only: the error-compensated weight
    owl.<l>.<lin>.weight  f32 [16, 24]       OWL blocks: weights of each block's linears
    owl.<l>.<lin>.act     f32 [24]           per-column activation norms of that linear
* layer.json: versions, data recipe, per-case config, pruned counts, SparseGPT losses, OWL result,
  and the Appendix A cross-check.
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/prune"

SEED = 20261128
R, C = 96, 160          # out, in: two SparseGPT blocks (128 + 32 columns)
S, L = 8, 32            # calibration sequences x tokens
DEAD = 37               # an input column that is exactly 0 on every token
BLOCK = 128
DAMP = 0.01

# name, method, sparsity, prune_n, prune_m
CASES = [
    ("sparsegpt_50", "sparsegpt", 0.5, 0, 0),
    ("sparsegpt_2of4", "sparsegpt", 0.5, 2, 4),
    ("sparsegpt_4of8", "sparsegpt", 0.5, 4, 8),
    ("wanda_50", "wanda", 0.5, 0, 0),
    ("wanda_2of4", "wanda", 0.5, 2, 4),
    ("wanda_4of8", "wanda", 0.5, 4, 8),
    ("magnitude_row_50", "magnitude_row", 0.5, 0, 0),
    ("magnitude_2of4", "magnitude_row", 0.5, 2, 4),
    ("magnitude_layer_50", "magnitude_layer", 0.5, 0, 0),
]

OWL_BLOCKS, OWL_LINEARS, OWL_ROWS, OWL_COLS = 6, ("q", "k", "o"), 16, 24
OWL_TARGET, OWL_M, OWL_LAMBDA = 0.5, 5, 0.08


def make_data(rng):
    w = rng.standard_normal((R, C)) * 0.05
    w[rng.choice(R, 8, replace=False)] *= 3.0                     # a few large rows
    # heavy-tailed, correlated inputs: Student-t(3) noise, partly mixed across columns, with
    # log-normal per-column scales and four outlier channels (as in LLM activations)
    z = rng.standard_t(3, size=(S, L, C))
    mix = rng.standard_normal((C, C)) / np.sqrt(C)
    x = z + 0.5 * z @ mix
    col_scale = np.exp(rng.normal(0.0, 0.75, size=C))
    col_scale[rng.choice(C, 4, replace=False)] *= 20.0
    x = x * col_scale
    x[:, :, DEAD] = 0.0
    return w.astype(np.float32), x.astype(np.float32)


def llmc_statistics(lin, x):
    from llmcompressor.modifiers.pruning.sparsegpt.sgpt_sparsify import accumulate_hessian, make_empty_hessian
    from llmcompressor.modifiers.pruning.wanda.wanda_sparsify import (
        accumulate_row_scalars,
        make_empty_row_scalars,
    )

    h, n = make_empty_hessian(lin), 0
    s, m = make_empty_row_scalars(lin), 0
    for seq in x:  # the modifier's hook sees one [1, L, C] batch per calibration sample
        inp = torch.from_numpy(seq).unsqueeze(0)
        h, n = accumulate_hessian(inp, lin, h, n)
        s, m = accumulate_row_scalars(inp, lin, s, m)
    assert n == S and m == S
    return h, s


def llmc_case(lin, h, scaler, method, sparsity, n, m):
    from llmcompressor.modifiers.pruning.sparsegpt.sgpt_sparsify import sparsify_weight as sgpt
    from llmcompressor.modifiers.pruning.wanda.wanda_sparsify import sparsify_weight as wanda

    if method == "sparsegpt":
        loss, w = sgpt(lin, {lin: h.clone()}, sparsity, n, m, BLOCK, DAMP, False)
        return w, float(loss)
    if method == "wanda":
        return wanda(lin, {lin: scaler.clone()}, sparsity, n, m), None
    if method == "magnitude_row":
        return wanda(lin, {lin: torch.ones(C)}, sparsity, n, m), None
    if method == "magnitude_layer":
        # locuslab/wanda lib/prune.py prune_magnitude (unstructured branch), minus `.cuda()`
        W = lin.weight.data.clone()
        W_metric = torch.abs(W)
        thresh = torch.sort(W_metric.flatten())[0][int(W.numel() * sparsity)]
        W_mask = W_metric <= thresh
        W[W_mask] = 0
        return W, None
    raise ValueError(method)


# ---- Appendix A: the independent numpy cross-check (docs/algorithms.md §5.6) ----------------

def appendix_a_sparsegpt(W, H, sparsity=0.5, prunen=0, prunem=0, blocksize=128, percdamp=0.01):
    W = np.array(W, np.float32); H = np.array(H, np.float32); rows, cols = W.shape
    dead = np.diag(H) == 0; H[dead, dead] = 1; W[:, dead] = 0
    H[np.diag_indices(cols)] += np.float32(percdamp) * np.mean(np.diag(H))
    Lc = np.linalg.cholesky(H.astype(np.float64))
    Hinv = np.linalg.inv(Lc).T @ np.linalg.inv(Lc)
    U = np.linalg.cholesky(Hinv).T.astype(np.float32)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].copy(); Q1 = np.zeros_like(W1); Err1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]; d1 = np.diag(U1)
        if prunen == 0:
            tmp = W1 ** 2 / d1[None, :] ** 2
            mask1 = tmp <= np.sort(tmp.ravel())[int(tmp.size * sparsity)]
        else:
            mask1 = np.zeros_like(W1, bool)
        for i in range(i2 - i1):
            w = W1[:, i]; d = U1[i, i]
            if prunen and i % prunem == 0:
                tmp = W1[:, i:i + prunem] ** 2 / d1[i:i + prunem][None, :] ** 2
                idx = np.argsort(tmp, axis=1, kind="stable")[:, :prunen]
                mask1[np.arange(rows)[:, None], i + idx] = True
            q = w.copy(); q[mask1[:, i]] = 0; Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= np.outer(err, U1[i, i:]); Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W


def appendix_a_wanda(W, scaler, sparsity=0.5, prunen=0, prunem=0):
    W = np.array(W, np.float32); metric = np.abs(W) * np.sqrt(scaler)[None, :]
    mask = np.zeros_like(W, bool); r = np.arange(W.shape[0])[:, None]
    if prunen:
        for ii in range(0, W.shape[1], prunem):
            mask[r, ii + np.argsort(metric[:, ii:ii + prunem], axis=1, kind="stable")[:, :prunen]] = True
    else:
        mask[r, np.argsort(metric, axis=1, kind="stable")[:, :int(W.shape[1] * sparsity)]] = True
    W[mask] = 0
    return W


def appendix_a(method, w, h, scaler, sparsity, n, m):
    if method == "sparsegpt":
        return appendix_a_sparsegpt(w, h, sparsity, n, m, BLOCK, DAMP)
    if method == "wanda":
        return appendix_a_wanda(w, scaler, sparsity, n, m)
    if method == "magnitude_row":
        return appendix_a_wanda(w, np.ones(C, np.float32), sparsity, n, m)
    return None  # per-layer magnitude is not part of Appendix A


# ---- OWL ----------------------------------------------------------------------------------

def owl_case(rng, tensors):
    from llmcompressor.modifiers.pruning.sparsegpt import SparseGPTModifier

    layers, acts = {}, {}
    for l in range(OWL_BLOCKS):
        block = nn.Module()
        tail = (0.3, 0.9, 0.5, 1.2, 0.7, 0.4)[l]    # blocks differ in how heavy their tails are
        for name in OWL_LINEARS:
            lin = nn.Linear(OWL_COLS, OWL_ROWS, bias=False)
            wv = (rng.standard_normal((OWL_ROWS, OWL_COLS)) * np.exp(rng.normal(0, tail, (OWL_ROWS, OWL_COLS))))
            lin.weight.data = torch.from_numpy(wv.astype(np.float32))
            setattr(block, name, lin)
            a = np.exp(rng.normal(0, tail, OWL_COLS)).astype(np.float32)
            acts[f"model.layers.{l}.{name}"] = torch.from_numpy(a)
            tensors[f"owl.{l}.{name}.weight"] = lin.weight.data.clone()
            tensors[f"owl.{l}.{name}.act"] = torch.from_numpy(a)
        layers[f"model.layers.{l}"] = block

    class Owl(SparseGPTModifier):
        def _get_activations(self, model, dataloader, nsamples=128):
            return acts

    mod = Owl(sparsity=OWL_TARGET, sparsity_profile="owl", owl_m=OWL_M, owl_lmbda=OWL_LAMBDA)
    out = mod._infer_owl_layer_sparsity(None, layers, None)
    # the outlier ratios D_l, recomputed with the same expression, for the Rust helper's test
    ratios = []
    for name, block in layers.items():
        z = torch.cat([
            (getattr(block, n).weight.abs() * acts[f"{name}.{n}"].unsqueeze(0)).flatten() for n in OWL_LINEARS
        ])
        ratios.append(100 * (z > torch.mean(z) * OWL_M).sum().item() / z.numel())
    return [float(out[k]) for k in layers], ratios


@torch.no_grad()
def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(SEED)
    w, x = make_data(rng)
    assert not (w == 0).any()
    lin = nn.Linear(C, R, bias=False)
    lin.weight.data = torch.from_numpy(w).clone()
    h, scaler = llmc_statistics(lin, x)
    assert h[DEAD, DEAD] == 0 and scaler[DEAD] == 0
    tensors = {
        "weight": torch.from_numpy(w),
        "inputs": torch.from_numpy(x),
        "hessian": h.clone(),
        "scaler_row": scaler.clone(),
    }

    cases = []
    for name, method, sparsity, n, m in CASES:
        out, loss = llmc_case(lin, h, scaler, method, sparsity, n, m)
        assert torch.equal(lin.weight.data, torch.from_numpy(w)), "kernel changed the module"
        mask = out == 0
        pruned = int(mask.sum())
        if n:
            per_group = mask.view(R, C // m, m).sum(-1)
            assert torch.all(per_group == n), f"{name}: not exactly {n} per group of {m}"
        elif method in ("wanda", "magnitude_row"):
            assert torch.all(mask.sum(1) == int(C * sparsity)), f"{name}: per-row count"
        elif method == "sparsegpt":
            for i1 in range(0, C, BLOCK):
                blk = mask[:, i1:i1 + BLOCK]
                assert blk.sum() >= int(blk.numel() * sparsity) + 1, f"{name}: per-block count"
        tensors[f"{name}.mask"] = mask.to(torch.uint8)
        entry = {
            "name": name, "method": method, "sparsity": sparsity, "prune_n": n, "prune_m": m,
            "pruned": pruned, "pruned_fraction": pruned / (R * C),
        }
        if method == "sparsegpt":
            tensors[f"{name}.weight"] = out.contiguous()
            entry.update({"block_size": BLOCK, "dampening_frac": DAMP, "loss": loss})
            entry["pruned_per_block"] = [int(mask[:, i:i + BLOCK].sum()) for i in range(0, C, BLOCK)]

        ref = appendix_a(method, w, h.numpy(), scaler.numpy(), sparsity, n, m)
        if ref is not None:
            ref_mask = ref == 0
            entry["appendix_a"] = {
                "mask_mismatches": int((ref_mask != mask.numpy()).sum()),
                "max_abs_weight_diff": float(np.abs(ref - out.numpy()).max()),
            }
            assert entry["appendix_a"]["mask_mismatches"] == 0, (name, entry["appendix_a"])
        cases.append(entry)
        print(f"{name:20s} pruned {pruned / (R * C):.5f}  appendix A {entry.get('appendix_a')}")

    owl_sparsities, owl_ratios = owl_case(rng, tensors)
    print("owl", owl_sparsities)

    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "reference": "llmcompressor 0.14.0.1 kernels (sgpt_sparsify / wanda_sparsify / "
                     "SparseGPTModifier._infer_owl_layer_sparsity), CPU float32",
        "versions": {p: version(p) for p in ("llmcompressor", "compressed-tensors", "torch", "numpy", "safetensors")},
        "python": sys.version.split()[0],
        "seed": SEED,
        "shapes": {"rows": R, "cols": C, "sequences": S, "tokens_per_sequence": L},
        "dead_column": DEAD,
        "data": {
            "weight": "normal * 0.05, 8 random rows x3",
            "inputs": "z ~ Student-t(3) [S,L,C]; x = (z + 0.5 z @ mix) * col_scale, mix ~ N(0,1/C), "
                      "col_scale = exp(N(0, 0.75)) with 4 outlier columns x20; column 37 is 0 everywhere",
        },
        "statistics": {
            "hessian": "llm-compressor accumulate_hessian per sequence: H = (2/S) sum_t x x^T over all "
                       "S*L tokens (S counts sequences). slmc's Hessian::mean() is (1/(S*L)) sum_t x x^T: "
                       "the same matrix times S/(2*S*L) (every method here is invariant to that scale).",
            "scaler_row": "mean over sequences of sum_t x_j^2 = (1/S) sum_t x_j^2 = diag(H)/2.",
        },
        "mask_semantics": "<case>.mask = (pruned weight == 0); 1 = pruned. The original weight has no "
                          "zeros, so this is exactly the kernel's mask.",
        "rules": {
            "sparsegpt_unstructured": "per 128-column block: s = W1^2 / diag(U1)^2 on the error-updated "
                                      "block, thresh = sort(s)[int(numel*sparsity)], pruned = s <= thresh "
                                      "(so at least int(numel*sparsity)+1 per block)",
            "sparsegpt_n_m": "inside the column loop at every i % m == 0: the n smallest of "
                             "W1[:, i:i+m]^2 / diag(U1)[i:i+m]^2 per row (torch.topk largest=False)",
            "wanda_unstructured": "per output row: stable sort of |W|*sqrt(scaler), first int(C*sparsity) pruned",
            "wanda_n_m": "per row, per group of m consecutive columns: the n smallest metrics (topk)",
            "magnitude_row": "the Wanda kernel with scaler = 1 (metric |W|): per output row",
            "magnitude_layer": "locuslab/wanda prune_magnitude: thresh = sort(|W|.flatten())[int(numel*s)], "
                               "pruned = |W| <= thresh (one threshold per matrix)",
        },
        "cases": cases,
        "owl": {
            "blocks": OWL_BLOCKS, "linears": list(OWL_LINEARS), "shape": [OWL_ROWS, OWL_COLS],
            "target": OWL_TARGET, "owl_m": OWL_M, "owl_lmbda": OWL_LAMBDA,
            "outlier_ratios_percent": owl_ratios,
            "sparsities": owl_sparsities,
            "note": "z = concat over the block's linears of |W| * act (act = per-column activation "
                    "norm, broadcast over rows); D = 100 * mean(z > owl_m * mean(z)).",
        },
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / "layer.safetensors"),
              metadata={"reference": "llmcompressor 0.14.0.1"})
    (OUT / "layer.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"wrote {OUT} ({size} bytes)")
    assert size < 1_000_000


if __name__ == "__main__":
    main()
