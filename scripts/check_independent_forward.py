#!/usr/bin/env python3
"""Re-derive the fixture logits WITHOUT transformers, as an executable spec for the Rust code.

Reads only config.json (v4 or v5 key form) and the *.safetensors weights of each
tests/fixtures/models/<variant>/ directory, runs a from-scratch float32 (float64 for rope tables)
forward pass in plain torch, and compares with reference.safetensors (`logits`, `logits_short`).

    .venv/bin/python scripts/check_independent_forward.py [VARIANT ...]

Exits non-zero if any variant differs by more than 1e-4 * max|logit|.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "fixtures" / "models"


def load_weights(d: Path) -> dict[str, torch.Tensor]:
    w = {}
    for f in sorted(d.glob("*.safetensors")):
        if f.name != "reference.safetensors":
            w.update({k: v.float() for k, v in load_file(str(f)).items()})
    return w


def rope_params(cfg: dict) -> dict:
    """Normalise v4 (rope_theta + rope_scaling) and v5 (rope_parameters) forms."""
    if "rope_parameters" in cfg:
        rp = dict(cfg["rope_parameters"])
    else:
        rp = dict(cfg.get("rope_scaling") or {})
        rp["rope_theta"] = cfg.get("rope_theta", 10000.0)
        if "partial_rotary_factor" in cfg:
            rp["partial_rotary_factor"] = cfg["partial_rotary_factor"]
    rp["rope_type"] = rp.get("rope_type", rp.get("type", "default"))
    # Phi3: a top-level original_max_position_embeddings wins over the one in the rope dict.
    if rp["rope_type"] in ("llama3", "longrope", "yarn"):
        if "original_max_position_embeddings" in cfg:
            rp["original_max_position_embeddings"] = cfg["original_max_position_embeddings"]
        rp.setdefault("original_max_position_embeddings", cfg["max_position_embeddings"])
    return rp


def inv_freq_and_scale(cfg: dict, head_dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    rp = rope_params(cfg)
    theta = rp["rope_theta"]
    dim = int(head_dim * rp.get("partial_rotary_factor", 1.0))
    # transformers computes these in float32; do the same so tables match bit-for-bit-ish.
    exps = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    inv = 1.0 / (theta**exps)
    t = rp["rope_type"]
    scale = 1.0
    if t == "default":
        pass
    elif t == "linear":
        inv = inv / rp["factor"]
    elif t == "llama3":
        factor, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        scaled = torch.where(wl > old / lo, inv / factor, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wl < old / hi) * ~(wl > old / lo)
        inv = torch.where(medium, smoothed, scaled)
    elif t == "longrope":
        orig = rp["original_max_position_embeddings"]
        factor = rp.get("factor") or cfg["max_position_embeddings"] / orig
        scale = rp.get("attention_factor")
        if scale is None:
            scale = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        # ONE factor set for the whole forward, chosen by the largest position + 1:
        ext = rp["long_factor"] if seq_len > orig else rp["short_factor"]
        inv = 1.0 / (torch.tensor(ext, dtype=torch.float32) * theta**exps)
    else:
        raise NotImplementedError(t)
    return inv, scale


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate(x, cos, sin):
    rd = cos.shape[-1]
    xr, xp = x[..., :rd], x[..., rd:]
    x1, x2 = xr[..., : rd // 2], xr[..., rd // 2 :]
    rot = torch.cat([-x2, x1], -1)
    return torch.cat([xr * cos + rot * sin, xp], -1)


def forward(d: Path, ids: torch.Tensor) -> torch.Tensor:
    cfg = json.loads((d / "config.json").read_text())
    w = load_weights(d)
    mt = cfg["model_type"]
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    B, T = ids.shape
    window = cfg.get("sliding_window")
    if mt == "qwen2" and not cfg.get("use_sliding_window", False):
        window = None  # qwen2 only windows layers >= max_window_layers when use_sliding_window
    inv, scale = inv_freq_and_scale(cfg, hd, T)
    pos = torch.arange(T).float()
    freqs = pos[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos() * scale, emb.sin() * scale
    i = torch.arange(T)
    allowed = i[None, :] <= i[:, None]
    if window is not None:
        allowed &= i[None, :] > i[:, None] - window  # key j visible from query i iff i - W < j <= i
    mask = torch.zeros(T, T).masked_fill(~allowed, float("-inf"))

    x = w["model.embed_tokens.weight"][ids]

    def lin(name, v):
        y = v @ w[name + ".weight"].T
        b = w.get(name + ".bias")
        return y + b if b is not None else y

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, w[p + "input_layernorm.weight"], eps)
        if mt == "phi3":
            qkv = lin(p + "self_attn.qkv_proj", h)
            q, k, v = qkv.split([nh * hd, nkv * hd, nkv * hd], -1)
        else:
            q, k, v = (lin(p + f"self_attn.{n}_proj", h) for n in "qkv")
        q = q.view(B, T, nh, hd).transpose(1, 2)
        k = k.view(B, T, nkv, hd).transpose(1, 2)
        v = v.view(B, T, nkv, hd).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        rep = nh // nkv  # query head h uses kv head h // rep
        k = k.repeat_interleave(rep, 1)
        v = v.repeat_interleave(rep, 1)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
        x = x + lin(p + "self_attn.o_proj", a.transpose(1, 2).reshape(B, T, nh * hd))
        h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
        if mt == "phi3":
            gate, up = lin(p + "mlp.gate_up_proj", h).chunk(2, -1)  # first half gate, second half up
        else:
            gate, up = lin(p + "mlp.gate_proj", h), lin(p + "mlp.up_proj", h)
        x = x + lin(p + "mlp.down_proj", torch.nn.functional.silu(gate) * up)
    x = rms(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])  # tied: no lm_head.weight stored
    return x @ head.T


def main() -> int:
    names = sys.argv[1:] or sorted(p.name for p in MODELS.iterdir() if p.is_dir())
    bad = 0
    for name in names:
        d = MODELS / name
        ref = load_file(str(d / "reference.safetensors"))
        with torch.no_grad():
            out = forward(d, ref["input_ids"])
            out_s = forward(d, ref["input_ids"][:1, :12])
        m = ref["logits"].abs().max().item()
        e = (out - ref["logits"]).abs().max().item()
        es = (out_s - ref["logits_short"]).abs().max().item()
        ok = e <= 1e-4 * m and es <= 1e-4 * m
        bad += not ok
        print(f"{name:18s} max|logit| {m:7.3f}  max|diff| {e:.2e}  short {es:.2e}  {'ok' if ok else 'FAIL'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
