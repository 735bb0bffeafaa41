#!/usr/bin/env python3
"""Self-test helper for scripts/check_gptq_load.py: pack a small llama into the packed GPTQ
checkpoint format of docs/algorithms.md §4 with a plain-Python RTN quantizer, write the
matching fake-quantized float model, and run the loader check on the pair.

    .venv-gptq/bin/python scripts/check_gptq_load.py --selftest [--model tests/fixtures/models/llama_gqa]
        [--bits 4] [--group-size 32] [--pack-dtype float16] [--out /tmp/gptq_selftest] [loader options]
    # (running this file directly is the same as check_gptq_load.py --selftest)

Quantizer: RTN, symmetric, grid of GPTQ's find_params (scale = 2*absmax/maxq, zero = 2^(bits-1)),
round half to even, clamp to [0, maxq]. The scale is rounded to the checkpoint dtype (fp16) FIRST
and the codes are computed with that rounded scale, so the packed file and the fake model describe
bit-identical weights. Packing (bits in {2, 4, 8}): qweight [K/pf, N] packs pf = 32/bits codes of
consecutive input columns per int32 (low bits = lower k); qzeros [G, N/pf] packs zero-1 (v1) along
the output dim, fields masked with maxq; scales [G, N] fp16; g_idx [K] = k // group_size.
Symmetric 4-bit therefore gives qzeros words 0x77777777 everywhere (asserted).

Not an exporter for real use; only here to test the loader before slmc's Rust exporter exists.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def rtn_sym(w: torch.Tensor, bits: int, group_size: int, scale_dtype: torch.dtype):
    """w [N, K] f32 -> codes [N, K] int64, scales [N, G] f32 (already rounded to scale_dtype)."""
    n, k = w.shape
    gs = k if group_size == -1 else group_size
    assert k % gs == 0, f"in_features {k} not divisible by group size {gs}"
    maxq = 2**bits - 1
    wg = w.reshape(n, k // gs, gs)
    absmax = wg.abs().amax(-1)
    absmax = torch.where(absmax == 0, torch.ones_like(absmax), absmax)
    scale = (2 * absmax / maxq).to(scale_dtype).float()
    zero = (maxq + 1) // 2
    codes = torch.clamp(torch.round(wg / scale[..., None]) + zero, 0, maxq).to(torch.int64)
    return codes.reshape(n, k), scale, zero


def pack_rows(vals: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack along dim 0: vals [M, X] (ints in [0, 2^bits)) -> int32 [M*bits/32, X]."""
    pf = 32 // bits
    m, x = vals.shape
    assert m % pf == 0, f"{m} not divisible by {pf}"
    v = (vals.to(torch.int64) & (2**bits - 1)).reshape(m // pf, pf, x)
    word = torch.zeros(m // pf, x, dtype=torch.int64)
    for j in range(pf):
        word |= v[:, j, :] << (bits * j)
    return torch.where(word >= 2**31, word - 2**32, word).to(torch.int32)  # uint32 bits as int32


def pack_linear(w: torch.Tensor, bits: int, group_size: int):
    n, k = w.shape
    codes, scale, zero = rtn_sym(w.float(), bits, group_size, torch.float16)
    n_groups = scale.shape[1]
    gs = k if group_size == -1 else group_size
    g_idx = (torch.arange(k) // gs).to(torch.int32)
    dequant = scale[:, g_idx.long()] * (codes - zero).float()
    qweight = pack_rows(codes.T.contiguous(), bits)                          # [K/pf, N]
    zv1 = torch.full((n_groups, n), zero - 1, dtype=torch.int64)            # v1: stored zero-1
    qzeros = pack_rows(zv1.T.contiguous(), bits).T.contiguous()             # [G, N/pf]
    if bits == 4:
        assert torch.all(qzeros == 0x77777777), "sym 4-bit qzeros must be 0x77777777"
    return {
        "qweight": qweight,
        "qzeros": qzeros,
        "scales": scale.T.contiguous().to(torch.float16),                   # [G, N]
        "g_idx": g_idx,
    }, dequant


def build(model_dir: Path, out: Path, bits: int, group_size: int, dtype: str) -> tuple[Path, Path]:
    src = load_file(str(model_dir / "model.safetensors"))
    cfg = json.loads((model_dir / "config.json").read_text())
    tdtype = getattr(torch, dtype)
    packed, fake = {}, {}
    for name, t in src.items():
        parts = name.split(".")
        if name.endswith(".weight") and len(parts) >= 2 and parts[-2] in LINEARS:
            prefix = name[: -len(".weight")]
            tensors, dq = pack_linear(t.float(), bits, group_size)
            for k, v in tensors.items():
                packed[f"{prefix}.{k}"] = v
            fake[name] = dq.float()
        else:
            v = t.to(tdtype)
            packed[name] = v.contiguous()
            fake[name] = v.float().contiguous()

    qcfg = {
        "quant_method": "gptq", "bits": bits, "group_size": group_size, "desc_act": False,
        "sym": True, "damp_percent": 0.01, "static_groups": False, "true_sequential": True,
        "lm_head": False, "checkpoint_format": "gptq",
        "model_name_or_path": None, "model_file_base_name": None,
    }
    qdir, fdir = out / "gptq", out / "fake"
    for d in (qdir, fdir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for f in model_dir.iterdir():
            if f.name.startswith("tokenizer") or f.name == "generation_config.json":
                shutil.copy(f, d / f.name)
    qc = dict(cfg)
    qc.pop("torch_dtype", None)
    qc["dtype"] = dtype
    qc["torch_dtype"] = dtype
    qc["quantization_config"] = qcfg
    (qdir / "config.json").write_text(json.dumps(qc, indent=2) + "\n")
    (qdir / "quantize_config.json").write_text(json.dumps(qcfg, indent=2) + "\n")
    save_file(packed, str(qdir / "model.safetensors"), metadata={"format": "pt"})
    fc = dict(cfg)
    fc.pop("torch_dtype", None)
    fc["dtype"] = "float32"
    (fdir / "config.json").write_text(json.dumps(fc, indent=2) + "\n")
    save_file(fake, str(fdir / "model.safetensors"), metadata={"format": "pt"})
    return qdir, fdir


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import check_gptq_load

    sys.argv.insert(1, "--selftest")
    raise SystemExit(check_gptq_load.main())
