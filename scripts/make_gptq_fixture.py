#!/usr/bin/env python3
"""Generate tests/fixtures/gptq/: a single-layer GPTQ reference computed by GPTQModel's own
`gptqmodel.quantization.gptq.GPTQ` class on a standalone torch.nn.Linear (CPU, float32).

Regenerate (needs the separate venv of scripts/requirements-gptq.txt):

    .venv-gptq/bin/python scripts/make_gptq_fixture.py

Deterministic: numpy-seeded data, CPU, torch.set_num_threads(1); re-running with the pinned
versions rewrites identical files.

Outputs
* layer.safetensors
    weight            f32 [R, C]   the layer weight W (nn.Linear layout, rows = out features)
    inputs            f32 [T, C]   calibration inputs X (one token per row)
    <case>.codes      i32 [R, C]   integer code of every weight, ORIGINAL column order, 0..2^bits-1
    <case>.scales     f32 [R, G]   per (row, group) scale, natural group order (index with g_idx)
    <case>.zeros      f32 [R, G]   TRUE integer zero point (not the v1 "zero - 1" of packed files)
    <case>.g_idx      i32 [C]      group of every input column
    <case>.dequant    f32 [R, C]   fake-quantized weight Q returned by GPTQModel
    <case>.perm       i32 [C]      (act-order cases only) argsort(diag H, descending)
  with dequant[r, c] == scales[r, g_idx[c]] * (codes[r, c] - zeros[r, g_idx[c]])  (checked here).
* layer.json: shapes, versions, per-case config, objectives (GPTQ vs RTN), library quirks.
"""

import json
import math
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/gptq"

SEED = 20240611
R, C, T = 32, 256, 512  # rows (out), cols (in), calibration tokens
DAMP = 0.01
BLOCKSIZE = 128

CASES = [
    # name,            bits, group_size, sym,   act_order, static_groups
    ("asym4_pc",       4,    -1,         False, False,     False),
    ("sym4_g128",      4,    128,        True,  False,     False),
    ("sym4_g128_act",  4,    128,        True,  True,      True),
    ("asym3_pc",       3,    -1,         False, False,     False),
    ("sym8_g128",      8,    128,        True,  False,     False),
]


def make_data():
    rng = np.random.default_rng(SEED)
    w = rng.standard_normal((R, C)) * 0.05
    outlier_cols = np.sort(rng.choice(C, size=4, replace=False))
    w[:, outlier_cols] *= 6.0
    # X = Z @ diag(s) @ Q^T scaled per column: correlated columns, decaying spectrum,
    # per-column scales in [0.1, 3] (log-uniform) so diag(H) varies ~900x and act-order matters.
    z = rng.standard_normal((T, C))
    q, _ = np.linalg.qr(rng.standard_normal((C, C)))
    s = 1.0 / (1.0 + np.arange(C) / 16.0)
    col_scale = np.exp(rng.uniform(math.log(0.1), math.log(3.0), size=C))
    x = (z * s) @ q.T * col_scale
    return w.astype(np.float32), x.astype(np.float32), outlier_cols


def make_qcfg(bits, group_size, sym, act_order, static_groups):
    from gptqmodel.quantization.config import QuantizeConfig

    return QuantizeConfig(
        bits=bits,
        group_size=group_size,
        sym=sym,
        desc_act=act_order,
        static_groups=static_groups,
        damp_percent=DAMP,
        damp_auto_increment=0.0,  # no automatic damp retry
        act_group_aware=False,    # GAR off (GPTQModel turns it on by default when desc_act=False)
        mse=0.0,                  # no MSE clipping search
        fallback=None,            # no low-sample RTN fallback
    )


def gptq_case(w, x, bits, group_size, sym, act_order, static_groups):
    from gptqmodel.quantization.gptq import GPTQ

    lin = nn.Linear(C, R, bias=False)
    lin.weight.data = torch.from_numpy(w).clone()
    g = GPTQ(lin, make_qcfg(bits, group_size, sym, act_order, static_groups))
    g.quantizer.configure(perchannel=True)  # what GPTQModel's GPTQProcessor.preprocess does
    g.add_batch(torch.from_numpy(x).unsqueeze(0), None)
    perm = None
    if act_order:
        # same expression GPTQModel uses on the finalized H (2/N X^T X, fp32)
        xt = torch.from_numpy(x)
        h = (xt.T @ xt) * (2.0 / T)
        perm = torch.argsort(torch.diag(h), descending=True).to(torch.int32)
    q, scale, zero, g_idx, _dur, avg_loss, damp, nsamples = g.quantize(blocksize=BLOCKSIZE)
    assert damp == DAMP, damp
    assert nsamples == T, nsamples
    assert q.dtype == torch.float32 and scale.dtype == torch.float32
    return q, scale, zero, g_idx.to(torch.int32), float(avg_loss), perm


def rtn(w, bits, group_size, sym):
    """Round-to-nearest on the same grid, using GPTQModel's own Quantizer (find_params+quantize)."""
    from gptqmodel.quantization.quantizer import Quantizer

    qcfg = make_qcfg(bits, group_size, sym, False, False)
    wt = torch.from_numpy(w).clone()
    gs = C if group_size == -1 else group_size
    out = torch.empty_like(wt)
    for c0 in range(0, C, gs):
        qz = Quantizer(qcfg=qcfg, name="rtn")
        qz.configure(perchannel=True)
        qz.find_params(wt[:, c0:c0 + gs], weight=True)
        out[:, c0:c0 + gs] = qz.quantize(wt[:, c0:c0 + gs])
    return out


def objective(w, q, x):
    d = (torch.from_numpy(w).double() - q.double()) @ torch.from_numpy(x).double().T
    return float((d * d).sum() / T)


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    w, x, outlier_cols = make_data()
    tensors = {"weight": torch.from_numpy(w), "inputs": torch.from_numpy(x)}
    cases = []
    for name, bits, gs, sym, act, static in CASES:
        q, scale, zero, g_idx, avg_loss, perm = gptq_case(w, x, bits, gs, sym, act, static)
        maxq = 2**bits - 1
        n_groups = 1 if gs == -1 else C // gs
        assert scale.shape == (R, n_groups) and zero.shape == (R, n_groups), (scale.shape, zero.shape)
        assert torch.equal(zero, torch.round(zero)), "zero points must be integers"
        s_c = scale[:, g_idx.long()]
        z_c = zero[:, g_idx.long()]
        codes_f = torch.round(q / s_c + z_c)
        assert codes_f.min() >= 0 and codes_f.max() <= maxq
        recon = s_c * (codes_f - z_c)
        err = (recon - q).abs().max().item()
        assert err <= 1e-6, f"{name}: dequant identity off by {err}"
        bit_exact = torch.equal(recon, q)
        codes = codes_f.to(torch.int32)
        if act:
            assert static and torch.equal(g_idx, torch.arange(C, dtype=torch.int32) // gs)
            tensors[f"{name}.perm"] = perm
        if gs == -1:
            assert torch.all(g_idx == 0)
        q_rtn = rtn(w, bits, gs, sym)
        obj_gptq, obj_rtn = objective(w, q, x), objective(w, q_rtn, x)
        assert obj_gptq < obj_rtn, (name, obj_gptq, obj_rtn)
        tensors[f"{name}.codes"] = codes
        tensors[f"{name}.scales"] = scale.contiguous()
        tensors[f"{name}.zeros"] = zero.contiguous()
        tensors[f"{name}.g_idx"] = g_idx.contiguous()
        tensors[f"{name}.dequant"] = q.contiguous()
        cases.append({
            "name": name,
            "config": {
                "bits": bits, "group_size": gs, "sym": sym, "act_order": act, "desc_act": act,
                "static_groups": static, "damp": DAMP, "blocksize": BLOCKSIZE,
                "true_sequential": "n/a (single layer)", "mse": 0.0, "act_group_aware": False,
                "damp_auto_increment": 0.0, "fallback": None,
            },
            "n_groups": n_groups,
            "objective_gptq": obj_gptq,
            "objective_rtn": obj_rtn,
            "gptq_over_rtn": obj_gptq / obj_rtn,
            "library_avg_loss": avg_loss,
            "library_avg_loss_note": "GPTQModel's sum(Losses)/nsamples, Losses = (w-q)^2/d^2/2 with "
                                     "H = 2/T X^T X + damp; NOT the same normalisation as objective_*",
            "dequant_identity_max_abs_err": err,
            "dequant_identity_bit_exact": bit_exact,
            "codes_min": int(codes.min()), "codes_max": int(codes.max()),
        })
        print(f"{name:14s} gptq {obj_gptq:.6e}  rtn {obj_rtn:.6e}  ratio {obj_gptq / obj_rtn:.3f}  "
              f"identity err {err:.1e} bit-exact {bit_exact}")

    OUT.mkdir(parents=True, exist_ok=True)
    import gptqmodel

    meta = {
        "reference": f"gptqmodel {gptqmodel.__version__}",
        "reference_api": "gptqmodel.quantization.gptq.GPTQ(nn.Linear, QuantizeConfig(...)); "
                         "quantizer.configure(perchannel=True); add_batch(inputs[None], None); "
                         "quantize(blocksize=128) -> (Q, scale, zero, g_idx, ...)",
        "versions": {p: version(p) for p in ("gptqmodel", "torch", "transformers", "safetensors", "numpy")},
        "python": sys.version.split()[0],
        "device": "cpu (eager column loop; GPTQModel's fused CUDA block kernel is not used on CPU)",
        "seed": SEED,
        "shapes": {"R": R, "C": C, "T": T},
        "data": {
            "weight": "normal*0.05, 4 outlier columns x6",
            "outlier_columns": [int(c) for c in outlier_cols],
            "inputs": "X = (Z * s) @ Q^T * col_scale; Z ~ N(0,1) [T,C], s_k = 1/(1+k/16), "
                      "Q random orthogonal, col_scale log-uniform in [0.1, 3]",
        },
        "objective": "||(W - Q) X^T||_F^2 / T in float64 (X = inputs [T,C]); RTN = GPTQModel "
                     "Quantizer.find_params+quantize on the original W, per row (group -1) or per "
                     "contiguous group, same bits/sym",
        "identity": "dequant[r,c] == scales[r,g_idx[c]] * (codes[r,c] - zeros[r,g_idx[c]]) "
                    "(codes derived as round(dequant/scale + zero), checked <= 1e-6)",
        "disabled_extras": [
            "act_group_aware (GAR) = False (GPTQModel default True when desc_act=False)",
            "mse = 0 (no clipping grid search)",
            "damp_auto_increment = 0 (no damp retry; damp 0.01 was accepted on the first Cholesky)",
            "fallback = None (no low-sample RTN fallback)",
            "hessian.staging_dtype = float32 (default), no chunking",
        ],
        "quirks": [
            "Hessian: H = (2/N) * sum_t x_t x_t^T with N = number of TOKENS (rows of the flattened "
            "input), accumulated raw in fp32 and scaled once at the end "
            "(GPTQ.materialize_global_hessian).",
            "Damping: H += damp * mean(diag H) * I with mean over the diagonal after dead-column fix "
            "(diag==0 -> 1, W[:,dead]=0). Then Hinv = cholesky(cholesky_inverse(cholesky(H)), upper=True), "
            "all fp32 on CPU.",
            "Group params (static_groups=False): computed by find_params on the outer W slice "
            "W[:, c:c+gs] when the loop reaches column c with c % gs == 0, i.e. from the error-updated "
            "weights (IST behaviour). With gs == blocksize == 128 the slice is exact (pitfall P3 does "
            "not arise).",
            "static_groups=True: params of every contiguous group computed up front from the original "
            "W (after dead-column zeroing), before the act-order permutation; g_idx = c // gs.",
            "Per-channel (group -1): params from the whole original row before the loop.",
            "act-order: perm = torch.argsort(diag(H), descending=True) on the undamped H; Q is "
            "un-permuted at the end; stored .perm is that permutation (no ties in this data).",
            "Rounding: torch.round (round half to even) in find_params (asym zero = round(-xmin/scale)) "
            "and in quantize: q = clamp(round(w/scale) + zero, 0, maxq).",
            "sym: xmax = max(|xmin|, xmax); xmin = -xmax only where xmin < 0 (all rows here have "
            "negative weights so it is -xmax everywhere); zero = (maxq+1)/2 (8 for 4-bit, 128 for 8-bit); "
            "scale = 2*absmax/maxq, so +absmax rounds to maxq+1 and is clamped (slightly clipped).",
            "asym: xmin = min(min w, 0), xmax = max(max w, 0); scale = (xmax-xmin)/maxq; "
            "zero = round(-xmin/scale) (can be 0 -> not representable in v1 packed format).",
            "All-zero range guard: xmin,xmax = -1,+1 (never hit here). Zero scales would be replaced by "
            "float32 tiny (never hit here).",
            "No fp16 rounding of scales anywhere in GPTQ.quantize: scale/zero/Q are fp32. (Packing to a "
            "checkpoint casts scales to fp16 later; that is the packer's business.)",
            "Order of groups in scales/zeros: natural group order for every case here (desc_act cases "
            "use static_groups, so no permuted group list).",
        ],
        "cases": cases,
    }
    save_file(tensors, str(OUT / "layer.safetensors"), metadata={"reference": meta["reference"]})
    (OUT / "layer.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(p.stat().st_size for p in OUT.iterdir() if p.is_file())
    print(f"wrote {OUT} ({size} bytes)")
    assert size < 1_000_000


if __name__ == "__main__":
    main()
