#!/usr/bin/env python3
"""Tiny transformers checkpoints of the Gemma 1/2/3, Granite, Phi-2, Qwen3 and SmolLM3 families (and
a Gemma 3 multimodal checkpoint) plus transformers' reference outputs, as test fixtures in the
same layout as scripts/make_fixtures.py writes (tests/fixtures/models/<variant>/).

    scripts/setup_python.sh && .venv/bin/python scripts/make_family_fixtures.py [--only NAME ...]

As docs/families.md describes them: every parameter randomised (Gemma's `(1 + w)` norm
weights around 0, Llama-style and LayerNorm weights around 1, all biases non-zero), sequences of 48
tokens longer than the 8-token sliding windows, eager attention, float32. Each variant records in
reference.json how much its logits move when each family feature is removed (`branch_sensitivity`:
max |Δlogit| / max |logit|), so the Rust tests' 1e-4 tolerance is known to see every feature.
`gemma_geglu` carries a SentencePiece-style tokenizer (the 400-piece BPE of tests/fixtures/gguf/spm
converted by transformers' GemmaTokenizer, byte fallback, saved as tokenizer.json only); the others
the byte-level BPE fixture tokenizer.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from pathlib import Path

import make_fixtures as mf  # noqa: E402  (same directory)
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoTokenizer,
    Gemma2Config,
    Gemma3Config,
    Gemma3TextConfig,
    GemmaConfig,
    GraniteConfig,
    PhiConfig,
    Qwen3Config,
    SiglipVisionConfig,
    SmolLM3Config,
)

ROOT = mf.ROOT
FIXTURES = mf.FIXTURES
SPM_MODEL = FIXTURES / "gguf" / "spm" / "tokenizer.model"

COMMON = dict(
    vocab_size=mf.VOCAB,
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=96,
    num_attention_heads=4,
    max_position_embeddings=128,
    bos_token_id=mf.BOS,
    eos_token_id=mf.EOS,
    pad_token_id=mf.PAD,
)

GEMMA3_TEXT = dict(
    num_hidden_layers=6,
    num_key_value_heads=1,
    head_dim=16,
    sliding_window=8,
    query_pre_attn_scalar=16,
    layer_types=["sliding_attention"] * 5 + ["full_attention"],
    rope_parameters={
        "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
    },
    final_logit_softcapping=None,
    tie_word_embeddings=True,
)

VARIANTS = {
    "qwen3_qknorm": dict(
        cls=Qwen3Config,
        seed=2001,
        cfg=dict(num_key_value_heads=2, head_dim=32, intermediate_size=128, tie_word_embeddings=True,
                 rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
    ),
    "granite_mult": dict(
        cls=GraniteConfig,
        seed=2002,
        cfg=dict(num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=True, embedding_multiplier=12.0,
                 attention_multiplier=0.1, residual_multiplier=0.22, logits_scaling=2.0,
                 rope_parameters={"rope_type": "default", "rope_theta": 5e6}),
    ),
    "smollm3_nope": dict(
        cls=SmolLM3Config,
        seed=2003,
        cfg=dict(num_hidden_layers=4, num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=True),
    ),
    "phi2_parallel": dict(
        cls=PhiConfig,
        seed=2004,
        cfg=dict(intermediate_size=256, hidden_act="gelu_new", layer_norm_eps=1e-5, tie_word_embeddings=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
    ),
    "gemma_geglu": dict(
        cls=GemmaConfig,
        seed=2005,
        spm=True,
        cfg=dict(num_key_value_heads=2, head_dim=24, hidden_act="gelu_pytorch_tanh", rms_norm_eps=1e-6),
    ),
    "gemma2_softcap": dict(
        cls=Gemma2Config,
        seed=2006,
        cfg=dict(num_hidden_layers=4, num_key_value_heads=2, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                 attn_logit_softcapping=5.0, final_logit_softcapping=8.0),
    ),
    "gemma3_text_swa": dict(cls=Gemma3TextConfig, seed=2007, cfg=GEMMA3_TEXT),
    "gemma3_mm": dict(cls=Gemma3Config, seed=2008, cfg=GEMMA3_TEXT, multimodal=True),
}


def reinit_(model: torch.nn.Module, seed: int, gemma: bool) -> None:
    """Every parameter random: matrices N(0, 0.15²), biases N(0, 0.1²), (1+w) norms N(0, 0.3²),
    other norm weights 1 + N(0, 0.1²)."""
    gen = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(remove_duplicate=False), key=lambda kv: kv[0]):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif p.dim() == 1 and "norm" in name:
                if gemma and "vision" not in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
                else:
                    p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.15)


def spm_tokenizer(out: Path):
    """The fixture SentencePiece model as transformers 5's GemmaTokenizer saves it."""
    tmp = out.parent / (out.name + ".spm-src")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(SPM_MODEL, tmp / "tokenizer.model")
    (tmp / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GemmaTokenizer", "add_bos_token": True}))
    tok = AutoTokenizer.from_pretrained(tmp)
    shutil.rmtree(tmp)
    return tok


def load(out: Path, multimodal: bool):
    cls = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
    m = cls.from_pretrained(out, attn_implementation="eager", dtype=torch.float32)
    m.eval()
    return m


def rel_change(model_dir: Path, multimodal: bool, ids, logits, edit) -> float:
    """max |Δlogit| / max |logit| after editing the saved config with `edit(cfg_dict)`."""
    cfg = json.loads((model_dir / "config.json").read_text())
    alt = copy.deepcopy(cfg)
    edit(alt["text_config"] if multimodal else alt)
    tmp = model_dir.parent / (model_dir.name + ".ablation")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    (tmp / "config.json").write_text(json.dumps(alt))
    try:
        other = mf.logits_of(load(tmp, multimodal), ids)
    finally:
        shutil.rmtree(tmp)
    return ((other - logits).abs().max() / logits.abs().max()).item()


ABLATIONS = {
    "granite_mult": {
        "embedding_multiplier 1": lambda c: c.update(embedding_multiplier=1.0),
        "attention_multiplier 1/sqrt(hd)": lambda c: c.update(attention_multiplier=0.25),
        "residual_multiplier 1": lambda c: c.update(residual_multiplier=1.0),
        "logits_scaling 1": lambda c: c.update(logits_scaling=1.0),
    },
    "smollm3_nope": {"RoPE on every layer": lambda c: c.update(no_rope_layers=[1] * c["num_hidden_layers"])},
    "phi2_parallel": {"full rotary": lambda c: c["rope_parameters"].update(partial_rotary_factor=1.0)},
    "gemma2_softcap": {
        "no attention soft-cap": lambda c: c.update(attn_logit_softcapping=None),
        "no final soft-cap": lambda c: c.update(final_logit_softcapping=None),
        "sliding → full": lambda c: c.update(layer_types=["full_attention"] * c["num_hidden_layers"]),
    },
    "gemma3_text_swa": {
        "sliding → full": lambda c: c.update(layer_types=["full_attention"] * c["num_hidden_layers"]),
        "global θ on every layer": lambda c: c["rope_parameters"].update(sliding_attention=dict(c["rope_parameters"]["full_attention"])),
    },
    "gemma3_mm": {"sliding → full": lambda c: c.update(layer_types=["full_attention"] * c["num_hidden_layers"])},
}


def build(name: str, spec: dict, bpe_tok) -> dict:
    out = FIXTURES / "models" / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    tok = spm_tokenizer(out) if spec.get("spm") else bpe_tok
    ids_kw = {}
    if spec.get("spm"):
        ids_kw = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    text_cfg = {**COMMON, **spec["cfg"], **ids_kw}
    multimodal = spec.get("multimodal", False)
    if multimodal:
        vision = SiglipVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                    image_size=28, patch_size=14)
        config = Gemma3Config(text_config=Gemma3TextConfig(**text_cfg).to_dict(), vision_config=vision.to_dict(),
                              mm_tokens_per_image=4, boi_token_index=380, eoi_token_index=381, image_token_index=382)
        model = transformers.Gemma3ForConditionalGeneration(config)
    else:
        config = spec["cls"](**text_cfg)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.eval()
    reinit_(model, spec["seed"], gemma=name.startswith("gemma"))
    model.generation_config.bos_token_id = text_cfg["bos_token_id"]
    model.generation_config.eos_token_id = text_cfg["eos_token_id"]
    model.generation_config.pad_token_id = text_cfg["pad_token_id"]
    model.save_pretrained(out)
    if spec.get("spm"):
        tok.save_pretrained(out)
        tc_path = out / "tokenizer_config.json"
        tc = json.loads(tc_path.read_text())
        for k in ("vocab_file", "is_local", "local_files_only"):  # machine-specific
            tc.pop(k, None)
        mf.write_json(tc_path, tc)
    else:
        mf.save_tokenizer(tok, out)
    del model

    model = load(out, multimodal)
    ids = mf.make_input_ids(tok, spec["seed"]) if not spec.get("spm") else spm_input_ids(tok, spec["seed"])
    logits = mf.logits_of(model, ids)
    logits_short = mf.logits_of(model, ids[:1, : mf.SHORT])
    save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous(), "logits_short": logits_short.contiguous()},
              str(out / "reference.safetensors"))
    eos = text_cfg["eos_token_id"]
    prompt = ids[0, :8].tolist()
    with torch.no_grad():
        gen = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.int64),
                             do_sample=False, max_new_tokens=12, use_cache=True)
    new_ids = gen[0, len(prompt):].tolist()
    ref_ids = greedy_no_cache(model, prompt, 12, eos)
    assert new_ids == ref_ids, (name, new_ids, ref_ids)
    eval_rows = mf.make_eval_rows(spec["seed"] + 500)
    with open(out / "eval.jsonl", "w") as f:
        for r in eval_rows:
            f.write(json.dumps({"input_ids": r}) + "\n")
    text_ids = tok((FIXTURES / "eval.txt").read_text())["input_ids"]
    nll_text = mf.nll_summary(model, [text_ids])
    nll_text["text_tokens"] = len(text_ids)
    sensitivity = {}
    for label, edit in ABLATIONS.get(name, {}).items():
        sensitivity[label] = rel_change(out, multimodal, ids, logits, edit)
    with safe_keys(out) as keys:
        layout = "language_model.model.*" if any(k.startswith("language_model.model.") for k in keys) else (
            "model.language_model.*" if any(k.startswith("model.language_model.") for k in keys) else "model.*")
    ref = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "variant": name,
        "family": json.loads((out / "config.json").read_text())["model_type"],
        "storage_dtype": "float32",
        "config_form": "v5",
        "max_abs_logit": logits.abs().max().item(),
        "max_abs_logit_short": logits_short.abs().max().item(),
        "greedy": {"prompt_ids": prompt, "new_ids": new_ids, "stopped_at_eos": eos in new_ids, "eos_id": eos},
        "nll": mf.nll_summary(model, eval_rows),
        "nll_text": nll_text,
        "branch_sensitivity": sensitivity,
        "tensor_layout": layout,
    }
    mf.write_json(out / "reference.json", ref)
    size = mf.dir_size(out)
    assert size < 1_500_000, (name, size)
    return {"variant": name, "size_bytes": size, "max_abs_logit": ref["max_abs_logit"], "greedy": new_ids,
            "branch_sensitivity": sensitivity, "tensor_layout": layout}


def spm_input_ids(tok, seed: int) -> torch.Tensor:
    """Two 48-token rows: fixture text through the SentencePiece tokenizer, and random ids."""
    row0 = tok(mf.ROW0_TEXT + " " + mf.TRAIN_TEXT)["input_ids"][: mf.SEQ]
    assert len(row0) == mf.SEQ
    gen = torch.Generator().manual_seed(seed)
    row1 = torch.randint(3, 384, (mf.SEQ,), generator=gen)
    return torch.stack([torch.tensor(row0, dtype=torch.int64), row1.to(torch.int64)])


@torch.no_grad()
def greedy_no_cache(model, prompt: list[int], n: int, eos: int) -> list[int]:
    ids = list(prompt)
    out = []
    for _ in range(n):
        nxt = int(torch.argmax(model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]).item())
        out.append(nxt)
        ids.append(nxt)
        if nxt == eos:
            break
    return out


class safe_keys:
    """The tensor names of a saved directory's model.safetensors."""

    def __init__(self, d: Path):
        self.d = d

    def __enter__(self):
        from safetensors import safe_open

        self.f = safe_open(str(self.d / "model.safetensors"), "pt")
        return list(self.f.keys())

    def __exit__(self, *exc):
        del self.f


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="only these variants")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    bpe = AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")
    for name, spec in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        print(json.dumps(build(name, spec, bpe)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
