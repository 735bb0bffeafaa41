#!/usr/bin/env python3
"""Generate tests/fixtures/lora/: PEFT 0.21.2 LoRA adapters (LoRA, DoRA, rsLoRA, modules_to_save) on the
tiny tests/fixtures/models/llama_gqa, with PEFT's merge_and_unload weights and logits, and (optionally)
the GGUF adapter llama.cpp's own convert_lora_to_gguf.py makes from one of them.

Regenerate (needs the packages of scripts/requirements-lora.txt in .venv):

    .venv/bin/python scripts/make_lora_fixture.py [--llama-cpp LLAMA_CPP_DIR]

LLAMA_CPP_DIR is a llama.cpp tree with convert_lora_to_gguf.py, convert_hf_to_gguf.py, conversion/ and
gguf-py/ (llama-cpp-python 0.3.36's sdist has one under vendor/llama.cpp; see requirements-lora.txt).
Without it the GGUF references are left as they are.

Deterministic: PYTHONHASHSEED=0 (the script re-executes itself with it; PEFT writes target_modules\nfrom a set), seeded torch generators, CPU, torch.set_num_threads(1), float32.

For every case, after get_peft_model (PEFT's own init: A kaiming-uniform, B = 0, DoRA magnitude = ||W||
per output row), the adapter is perturbed so that nothing is trivial:
* every lora_B ~ N(0, 0.2^2) (B = 0 would make the adapter a no-op);
* DoRA: every magnitude multiplied by 1 + N(0, 0.05^2) (else m = ||W0|| exactly);
* modules_to_save: the trainable copy of lm_head gets + N(0, 0.05^2).
Then save_pretrained(<case>/) (PEFT writes README.md, adapter_config.json, adapter_model.safetensors),
a reload with PeftModel.from_pretrained is checked to reproduce the logits exactly, and merge_and_unload
gives the merged weights and logits.

Outputs, per case directory <case>/:
* adapter_config.json, adapter_model.safetensors, README.md: exactly as PEFT wrote them.
* reference.safetensors:
    input_ids        i64 [T]       the fixed input (BOS + tokens)
    logits_base      f32 [T, V]    base model
    logits_adapter   f32 [T, V]    PeftModel (unmerged) forward
    logits_merged    f32 [T, V]    merge_and_unload() forward
    merged.<hf name> f32 [out, in] merge_and_unload()'s weights of a few modules
and lora/reference.json: versions, each case's LoraConfig kwargs, PEFT's scaling, the merged modules,
logit differences, and which GGUF references were made.

GGUF references (with --llama-cpp): lora/reference-f32.gguf and lora/reference-f16.gguf, made by
`convert_lora_to_gguf.py --base tests/fixtures/models/llama_gqa --outtype {f32,f16} lora/`.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
BASE_REL = "tests/fixtures/models/llama_gqa"  # relative: it is written into adapter_config.json
OUT = ROOT / "tests/fixtures/lora"

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
COMMON = dict(task_type="CAUSAL_LM", r=4, lora_alpha=8)
CASES = {
    "lora": dict(COMMON, target_modules=ALL, lora_dropout=0.05),
    "dora": dict(COMMON, target_modules=ALL, use_dora=True),
    "rslora": dict(COMMON, target_modules=ALL, use_rslora=True),
    "modules_to_save": dict(COMMON, target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"]),
}
MERGED = {
    "lora": ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
             "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj"],
    "modules_to_save": ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "lm_head"],
}
MERGED["dora"] = MERGED["lora"]
MERGED["rslora"] = MERGED["lora"]
INPUT_IDS = [0, 17, 240, 5, 99, 311, 42, 7, 128, 383, 64, 3]
SEEDS = {"lora": 11, "dora": 12, "rslora": 13, "modules_to_save": 14}


def load_base():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(BASE_REL, dtype=torch.float32).eval()


def perturb(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + torch.randn(p.shape, generator=g) * 0.05)
            elif ".modules_to_save." in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits[0].float().contiguous()


def make_case(case: str, cfg: dict, ids, base_logits) -> dict:
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(SEEDS[case])  # PEFT's kaiming-uniform init of A draws from the global generator
    model = get_peft_model(load_base(), LoraConfig(**cfg))
    perturb(model, 1000 + SEEDS[case])
    model.eval()
    adapted = logits(model, ids)
    out_dir = OUT / case
    model.save_pretrained(str(out_dir))

    reloaded = PeftModel.from_pretrained(load_base(), str(out_dir)).eval()
    reload_diff = (logits(reloaded, ids) - adapted).abs().max().item()
    assert reload_diff == 0.0, (case, reload_diff)

    scaling = model.base_model.model.model.layers[0].self_attn.q_proj.scaling["default"]
    merged_model = model.merge_and_unload()
    merged_logits = logits(merged_model, ids)
    params = dict(merged_model.named_parameters())
    tensors = {
        "input_ids": ids[0].clone(),
        "logits_base": base_logits,
        "logits_adapter": adapted,
        "logits_merged": merged_logits,
    }
    for m in MERGED[case]:
        tensors[f"merged.{m}.weight"] = params[f"{m}.weight"].detach().clone().contiguous()
    save_file(tensors, str(out_dir / "reference.safetensors"), metadata={"format": "pt"})
    return {
        "lora_config": cfg,
        "peft_scaling": scaling,
        "merged_modules": MERGED[case],
        "max_abs_logits_adapter_minus_base": (adapted - base_logits).abs().max().item(),
        "max_abs_logits_merged_minus_adapter": (merged_logits - adapted).abs().max().item(),
        "reload_max_abs_diff": reload_diff,
    }


def convert_gguf(llama_cpp: Path, outtype: str) -> str:
    """llama.cpp's convert_lora_to_gguf.py on the `lora` case, with the tree's own gguf-py."""
    out = OUT / f"reference-{outtype}.gguf"
    env = dict(os.environ, PYTHONPATH=f"{llama_cpp / 'gguf-py'}:{llama_cpp}")
    cmd = [sys.executable, str(llama_cpp / "convert_lora_to_gguf.py"), "--base", BASE_REL,
           "--outtype", outtype, "--outfile", str(out), str(OUT / "lora")]
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
    return out.name


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # PEFT writes target_modules from a set: fix the hash seed so the order is reproducible.
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, PYTHONHASHSEED="0"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", type=Path, help="llama.cpp tree with convert_lora_to_gguf.py")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.chdir(ROOT)
    OUT.mkdir(parents=True, exist_ok=True)

    ids = torch.tensor([INPUT_IDS], dtype=torch.int64)
    base_logits = logits(load_base(), ids)
    report = {
        "versions": {p: version(p) for p in ("peft", "torch", "transformers", "safetensors", "accelerate")},
        "base_model": BASE_REL,
        "input_ids": INPUT_IDS,
        "perturbation": "lora_B ~ N(0, 0.2^2); DoRA magnitude *= 1 + N(0, 0.05^2); "
                        "modules_to_save copy += N(0, 0.05^2)",
        "cases": {case: make_case(case, cfg, ids, base_logits) for case, cfg in CASES.items()},
    }
    if args.llama_cpp:
        lc = args.llama_cpp.resolve()
        report["gguf_references"] = {
            "converter": "convert_lora_to_gguf.py --base " + BASE_REL + " --outtype {f32,f16} lora/",
            "llama_cpp_tree": "/".join(lc.parts[-3:]),
            "tree_gguf_py": re.search(r'^version = "(.*)"', (lc / "gguf-py/pyproject.toml").read_text(), re.M)[1],
            "files": [convert_gguf(lc, t) for t in ("f32", "f16")],
        }
    else:
        old = OUT / "reference.json"
        if old.is_file():
            prev = json.loads(old.read_text()).get("gguf_references")
            if prev:
                report["gguf_references"] = prev
    (OUT / "reference.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(json.dumps({c: {k: v for k, v in r.items() if k.startswith("max")} for c, r in report["cases"].items()},
                     indent=1))


if __name__ == "__main__":
    main()
