#!/usr/bin/env python3
"""Check that a directory written by slmc loads in Hugging Face transformers and reproduces a fixture.

    .venv/bin/python scripts/check_hf_roundtrip.py SAVED_DIR FIXTURE_DIR [--rel-tol 1e-4]

SAVED_DIR: config.json + *.safetensors (+ index) + tokenizer files, as saved by our Rust tool.
FIXTURE_DIR: a tests/fixtures/models/<variant>/ directory (holds reference.safetensors).

Loads SAVED_DIR with AutoModelForCausalLM (float32, eager attention) and AutoTokenizer, runs the
fixture's `input_ids`, prints the max abs difference against the fixture's `logits` and max|logit|,
and exits 1 if the difference exceeds rel_tol * max|logit|. The loaded tokenizer must also tokenize
the texts of tests/fixtures/tokenizer/reference.json exactly as AutoTokenizer does for FIXTURE_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

TOKENIZER_REF = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tokenizer" / "reference.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("saved_dir", type=Path)
    ap.add_argument("fixture_dir", type=Path)
    ap.add_argument("--rel-tol", type=float, default=1e-4, help="allowed max|diff| / max|logit| (default 1e-4)")
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()

    # transformers 5 renamed `torch_dtype` to `dtype` (the old name still works there, with a warning).
    major = int(transformers.__version__.split(".")[0])
    dtype_kw = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(args.saved_dir, attn_implementation="eager", **dtype_kw)
    model.eval()
    tok = AutoTokenizer.from_pretrained(args.saved_dir)

    ref = load_file(str(args.fixture_dir / "reference.safetensors"))
    ids = ref["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits.float()
    want = ref["logits"]
    if logits.shape != want.shape:
        print(f"FAIL: logits shape {tuple(logits.shape)} != fixture {tuple(want.shape)}")
        return 1
    diff = (logits - want).abs().max().item()
    max_logit = want.abs().max().item()
    limit = args.rel_tol * max_logit
    print(f"model: {type(model).__name__} from {args.saved_dir}")
    print(f"max_abs_diff {diff:.3e}  max_abs_logit {max_logit:.4f}  limit {limit:.3e}")
    ok = diff <= limit

    # Tokenizer: the saved dir must tokenize like the fixture dir does under the same transformers
    # (AutoTokenizer picks the class from config.json's model_type, and for some types, e.g. qwen2 in
    # transformers 5, replaces tokenizer.json's normalizer/pre-tokenizer: so compare like with like).
    texts = []
    if TOKENIZER_REF.exists():
        texts = [c["text"] for c in json.loads(TOKENIZER_REF.read_text())["cases"]]
    texts.append(" ".join(str(i) for i in range(20)) + " The end.\n")
    if (args.fixture_dir / "tokenizer.json").exists():
        want_tok = AutoTokenizer.from_pretrained(args.fixture_dir)
        mism = [t for t in texts if tok(t)["input_ids"] != want_tok(t)["input_ids"]]
        print(f"tokenizer: {type(tok).__name__}, {len(texts) - len(mism)}/{len(texts)} texts tokenize as the fixture's")
        if mism:
            print(f"tokenizer mismatches: {mism!r}")
            ok = False
    else:
        print(f"tokenizer: {type(tok).__name__} loaded (fixture dir has no tokenizer.json to compare)")
    print("OK" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
