#!/usr/bin/env python3
"""Generate tests/fixtures/nf4/: bitsandbytes 0.49.2 NF4 (+ double quantization) references for
slmc-formats' `nf4` module (crates/slmc-formats/tests/nf4.rs).

Regenerate (needs bitsandbytes 0.49.2 in .venv, see scripts/requirements-qlora.txt):

    .venv/bin/python scripts/make_nf4_fixture.py

Deterministic: numpy/torch seeds, CPU, torch.set_num_threads(1). bitsandbytes 0.49.2 on CPU runs
`quantize_4bit` as pure torch (backends/default/ops.py: absmax per 64 values, `x * (1/absmax)`,
clamp, `argmin |x - NF4|`, first value in the high nibble) and the double quantization's
`quantize_blockwise` as its native C++ kernel (csrc/cpu_ops.cpp `quantize_cpu`: exact nearest
code, ties to the lower one; it first sets code[0] = -1.0).

Outputs:
* cases.safetensors, for each case <c> (a seeded matrix; see case_inputs):
    <c>.input                          f32 or bf16 [rows, cols]  the quantized values
    <c>.plain.weight…                  `F.quantize_4bit(x, blocksize=64, compress_statistics=False,
                                       quant_type="nf4")`, stored as `QuantState.as_dict(packed=True)`
                                       writes it (the layout transformers saves): weight, weight.absmax,
                                       weight.quant_map, weight.quant_state.bitsandbytes__nf4
    <c>.dq.weight…                     the same with compress_statistics=True: weight, weight.absmax (u8
                                       codes), weight.quant_map, weight.nested_absmax,
                                       weight.nested_quant_map, weight.quant_state.bitsandbytes__nf4
    <c>.dq.dequant                     `F.dequantize_4bit` of the dq state (small cases only; every
                                       case's SHA-256 is in reference.json)
* transformers_layer.safetensors: what transformers' save_pretrained writes for two bnb 4-bit
  linears of a tiny Llama loaded with `BitsAndBytesConfig(load_in_4bit=True,
  bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)` on CPU (all their keys, as saved),
  plus `source.<name>` = the f32 weight it was quantized from.
* reference.json: versions, calls, per case: shape, dtype, nested offset (f32 bits), SHA-256 of bnb's
  dequantize_4bit output and of bnb's own pure-torch `_dequantize_4bit_impl` in f32 rounded once to
  the weight's dtype (the correct one),
  whether they agree (bnb 0.49.2's native CPU dequant is wrong on AVX512 CPUs for widths that are
  a multiple of 16 but not of the blocksize), and a battery of torch float32 means (`offset` is
  `absmax.mean()`) over vectors defined by an integer formula slmc's tests recompute.
"""

import hashlib
import json
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/nf4"
BLOCKSIZE = 64
# Cases whose bnb dequantized output is stored whole (the others only by SHA-256, to stay small).
STORE_DEQUANT = {"w64x64_zero_row", "w33x50_tiny_partial", "w64x128_bf16", "w4x64_ties"}
# Lengths of the torch-mean battery; all below torch's 32768-element parallel grain.
MEAN_LENGTHS = list(range(1, 41)) + [63, 64, 65, 100, 127, 128, 129, 150, 255, 256, 257, 640, 1000,
                                     1023, 1024, 1025, 4095, 4096, 4097, 9999, 20000, 32767]


def case_inputs() -> dict:
    """name -> (values as a torch tensor [rows, cols], description)."""
    rng = np.random.default_rng(20260511)
    cases = {}

    x = (rng.standard_normal((64, 64)) * 0.05).astype(np.float32)
    x[3, :] = 0.0  # one whole 64-value block of zeros
    cases["w64x64_zero_row"] = (torch.from_numpy(x), "N(0, 0.05^2); row 3 all zero (one all-zero block)")

    x = (rng.standard_t(3, (96, 100)) * 0.02).astype(np.float32)
    x.reshape(-1)[640:704] = 0.0  # an all-zero block that crosses a row boundary
    x[5, 7] = 0.9  # an outlier
    cases["w96x100_heavy"] = (torch.from_numpy(x), "Student-t(3)*0.02; flat 640..704 zero (crosses rows); outlier 0.9")

    x = (rng.laplace(0.0, 0.03, (128, 320))).astype(np.float32)
    x[:, 17] *= 25.0  # an outlier input feature, as in LLM weights
    cases["w128x320_outlier_col"] = (torch.from_numpy(x), "Laplace(0, 0.03); column 17 x25 (3 nested blocks, last partial)")

    x = (rng.standard_normal((64, 96)) * 0.1).astype(np.float32)
    cases["w64x96_bnb_cpu_bug"] = (torch.from_numpy(x), "N(0, 0.1^2); width 96: bnb's AVX512 CPU dequant is wrong")

    x = (rng.standard_normal((33, 50)) * 1e-5).astype(np.float32)
    cases["w33x50_tiny_partial"] = (torch.from_numpy(x), "N(0, 1e-10); 1650 values: partial last block (50); offset printed with an exponent")

    x = torch.from_numpy((rng.standard_t(4, (64, 128)) * 0.04).astype(np.float32)).to(torch.bfloat16)
    cases["w64x128_bf16"] = (x, "Student-t(4)*0.04 stored as bfloat16")

    cases["w4x64_ties"] = (torch.from_numpy(ties()), "exact and near ties between NF4 levels (argmin keeps the lower code)")
    return cases


def ties() -> np.ndarray:
    """4 blocks of 64: absmax 1 (scaled by powers of two per row, so x * (1/absmax) is exact), the
    f32 midpoints of adjacent NF4 levels and their f32 neighbours, and exact ties (halfway to 0)."""
    from bitsandbytes.backends.utils import _NF4_QUANT_TABLE

    nf4 = _NF4_QUANT_TABLE.numpy().astype(np.float32)
    mids = ((nf4[:-1] + nf4[1:]) * np.float32(0.5)).astype(np.float32)
    row = [np.float32(1.0), nf4[8] / np.float32(2), nf4[6] / np.float32(2)]
    for m in mids:
        row += [m, np.nextafter(m, np.float32(-2)), np.nextafter(m, np.float32(2))]
    row = np.array(row + [np.float32(0.0)] * (64 - len(row)), np.float32)
    return np.stack([row * np.float32(s) for s in (1.0, 0.5, 2.0, 0.125)]).astype(np.float32)


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def f32_bits(v: float) -> int:
    return int(np.array([v], np.float32).view(np.uint32)[0])


def quantize_case(name: str, x: torch.Tensor, tensors: dict) -> dict:
    import bitsandbytes.functional as F
    from bitsandbytes.backends.default.ops import _dequantize_4bit_impl

    tensors[f"{name}.input"] = x.contiguous()
    info = {"shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
    packed = {}
    for variant, compress in (("plain", False), ("dq", True)):
        q, state = F.quantize_4bit(x, blocksize=BLOCKSIZE, compress_statistics=compress, quant_type="nf4")
        packed[variant] = q
        prefix = f"{name}.{variant}.weight"
        tensors[prefix] = q.contiguous()
        for key, value in state.as_dict(packed=True).items():
            tensors[f"{prefix}.{key}"] = value.contiguous()
        deq = F.dequantize_4bit(q, state)
        absmax = state.absmax
        if compress:
            absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
        # In f32, then rounded once to the weight's dtype (for bf16/f16 weights the pure-torch path
        # itself would round the NF4 level to the dtype before multiplying, a second rounding).
        ref = _dequantize_4bit_impl(q, absmax.float(), BLOCKSIZE, "nf4", x.shape, torch.float32).to(x.dtype)
        v = {
            "dequant_sha256": sha256(deq),
            "reference_dequant_sha256": sha256(ref),
            "bnb_dequant_correct": bool(torch.equal(deq, ref)),
            "bnb_dequant_max_abs_error": (deq.float() - ref.float()).abs().max().item(),
        }
        if compress:
            v["nested_offset_f32_bits"] = f32_bits(state.offset.item())
            v["nested_code0"] = state.state2.code[0].item()
            if name in STORE_DEQUANT:
                tensors[f"{name}.dq.dequant"] = deq.contiguous()
        info[variant] = v
    assert torch.equal(packed["plain"], packed["dq"]), name
    return info


def mean_battery() -> list:
    """x[k] = ((k * 2654435761 + 97 * n) mod 2^32 >> 8) / 2^24 * (1 + n mod 7), all f32-exact."""
    out = []
    for n in MEAN_LENGTHS:
        k = np.arange(n, dtype=np.uint64)
        ints = ((k * np.uint64(2654435761) + np.uint64(97 * n)) % np.uint64(2**32)) >> np.uint64(8)
        x = ints.astype(np.float32) / np.float32(2**24) * np.float32(1 + n % 7)
        out.append({"n": n, "mean_f32_bits": f32_bits(torch.from_numpy(x).mean().item())})
    return out


def transformers_layer() -> dict:
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    keep = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight"]
    torch.manual_seed(7)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "nf4"
        LlamaForCausalLM(cfg).save_pretrained(str(src))
        bnb_cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                     bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(str(src), quantization_config=bnb_cfg,
                                                     device_map="cpu", dtype=torch.float32)
        model.save_pretrained(str(dst))
        source = load_file(str(src / "model.safetensors"))
        saved = load_file(str(dst / "model.safetensors"))
        qcfg = json.loads((dst / "config.json").read_text())["quantization_config"]
    tensors = {k: v.contiguous() for k, v in saved.items() if any(k.startswith(p) for p in keep)}
    for p in keep:
        tensors[f"source.{p}"] = source[p].contiguous()
    save_file(tensors, str(OUT / "transformers_layer.safetensors"))
    return {"weights": keep, "quantization_config": qcfg}


def main() -> None:
    if version("bitsandbytes") != "0.49.2":
        sys.exit(f"bitsandbytes {version('bitsandbytes')} found; the fixtures are made with 0.49.2 "
                 "(see scripts/requirements-qlora.txt)")
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    tensors, cases = {}, {}
    for name, (x, desc) in case_inputs().items():
        cases[name] = dict(quantize_case(name, x, tensors), description=desc)
    save_file(tensors, str(OUT / "cases.safetensors"))
    import bitsandbytes.functional as F

    reference = {
        "generator": "scripts/make_nf4_fixture.py",
        "versions": {p: version(p) for p in ("bitsandbytes", "torch", "numpy", "transformers", "safetensors")},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "calls": {
            "quantize": "bitsandbytes.functional.quantize_4bit(x, blocksize=64, compress_statistics=False|True, quant_type='nf4')",
            "layout": "QuantState.as_dict(packed=True)",
            "dequantize": "bitsandbytes.functional.dequantize_4bit(q, state)",
            "reference_dequantize": "bitsandbytes.backends.default.ops._dequantize_4bit_impl(q, absmax, 64, 'nf4', shape, torch.float32).to(dtype) with absmax = dequantize_blockwise(state.absmax, state.state2) + state.offset",
        },
        "create_dynamic_map_code0": F.create_dynamic_map()[0].item(),
        "cases": cases,
        "torch_mean": {
            "formula": "x[k] = f32(((k*2654435761 + 97*n) mod 2^32) >> 8) / f32(2^24) * f32(1 + n mod 7), k < n",
            "cases": mean_battery(),
        },
        "transformers": transformers_layer(),
    }
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
