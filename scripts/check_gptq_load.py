#!/usr/bin/env python3
"""Check that a packed GPTQ checkpoint directory (docs/algorithms.md §4: qweight / qzeros /
scales / g_idx, config.json["quantization_config"], quantize_config.json) loads in Hugging Face
transformers on CPU and computes the same logits as the fake-quantized float model.

    .venv-gptq/bin/python scripts/check_gptq_load.py DIR --fake FAKE_DIR
        [--loader transformers|gptqmodel] [--dtype float32|float16|bfloat16] [--backend torch]
    .venv-gptq/bin/python scripts/check_gptq_load.py --selftest [--model M] [--group-size 32] ...

DIR is loaded with AutoModelForCausalLM.from_pretrained(DIR, dtype=--dtype, device_map="cpu")
(transformers 5.23 -> optimum 2.3 GPTQQuantizer -> GPTQModel's hf_select_quant_linear_v2 picks
the CPU kernel), or with GPTQModel's own loader (`--loader gptqmodel`: GPTQModel.load). FAKE_DIR
is a plain HF llama directory whose weights equal the dequantized GPTQ weights; it is loaded in
float32. A fixed prompt of token ids (BOS + a deterministic pattern) is run through both; prints
one JSON line with max |Δlogit|, relative diff = max|Δ| / max|fake logit|, the Frobenius-relative
diff, and the quantized-linear classes used. Exit status 1 when relative diff > --tol (1e-3).

--selftest packs a small llama with scripts/_gptq_pack_selftest.py (RTN, 4-bit sym g32 by default)
and checks that pair; see that file's docstring. Needs .venv-gptq (scripts/requirements-gptq.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent


def prompt_ids(vocab: int, bos: int | None, n: int = 48) -> torch.Tensor:
    ids = [(7 + 37 * i + (i * i) % 11) % vocab for i in range(n)]
    if bos is not None:
        ids[0] = bos
    return torch.tensor([ids])


def load_gptq(qdir: Path, dtype: torch.dtype, loader: str, backend: str | None):
    if loader == "transformers":
        from transformers import AutoModelForCausalLM

        kw = {}
        if backend and backend != "auto":
            from transformers import GPTQConfig

            qc = json.loads((qdir / "config.json").read_text())["quantization_config"]
            kw["quantization_config"] = GPTQConfig(**{**qc, "backend": backend})
        return AutoModelForCausalLM.from_pretrained(str(qdir), dtype=dtype, device_map="cpu", **kw).eval()
    from gptqmodel import BACKEND, GPTQModel

    m = GPTQModel.load(str(qdir), device="cpu", dtype=dtype,
                       backend=BACKEND(backend or "auto"))
    return m.model.eval()


def check(qdir: Path, fdir: Path, args) -> int:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    cfg = AutoConfig.from_pretrained(str(fdir))
    ids = prompt_ids(cfg.vocab_size, getattr(cfg, "bos_token_id", None))

    t0 = time.time()
    qmodel = load_gptq(qdir, dtype, args.loader, args.backend)
    load_s = time.time() - t0
    qmods = [m for m in qmodel.modules() if isinstance(getattr(m, "qweight", None), torch.Tensor)]
    kernels = sorted({type(m).__name__ for m in qmods})
    fmodel = AutoModelForCausalLM.from_pretrained(str(fdir), dtype=torch.float32).eval()
    with torch.no_grad():
        fl = fmodel(ids, use_cache=False).logits.double()

    def compare(model):
        with torch.no_grad():
            ql = model(ids, use_cache=False).logits.double()
        d = (ql - fl).abs().max().item()
        return {"max_abs_dlogit": d, "rel_max": d / fl.abs().max().item(),
                "rel_fro": ((ql - fl).norm() / fl.norm()).item(),
                "argmax_agree": (ql.argmax(-1) == fl.argmax(-1)).double().mean().item()}

    native = compare(qmodel)
    out = {"dir": str(qdir), "fake": str(fdir), "loader": args.loader, "dtype": args.dtype,
           "backend": args.backend or "auto", "quant_linear": kernels, "n_quant_linear": len(qmods),
           "scales_dtype": sorted({str(m.scales.dtype) for m in qmods if hasattr(m, "scales")}),
           "native": native}
    judged = native
    # The eager torch kernel dequantizes as scales[g] * (code - zero) in the dtype of `scales`
    # (fp16 on disk), i.e. it rounds every dequantized weight to fp16. Upcasting the scales to fp32
    # makes it compute exactly scale16 * (code - zero), the fake model's weights, so the remaining
    # difference checks the packed format itself rather than the kernel's precision.
    if not args.native and kernels and all(type(m).__name__ == "TorchLinear" for m in qmods):
        for m in qmods:
            m.scales = m.scales.float()
        judged = out["scales_fp32"] = compare(qmodel)
    ok = judged["rel_max"] <= args.tol
    out.update({"judged": "native" if judged is native else "scales_fp32", "tol": args.tol, "ok": ok,
                "load_seconds": round(load_s, 2)})
    print(json.dumps(out))
    return 0 if ok else 1


def add_check_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--loader", default="transformers", choices=("transformers", "gptqmodel"))
    ap.add_argument("--dtype", dest="dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                    help="compute dtype the GPTQ model is loaded in (fake model is always float32)")
    ap.add_argument("--backend", default="gptq_torch",
                    help="GPTQModel backend (BACKEND enum value): gptq_torch (default; eager TorchLinear), "
                         "auto (on CPU picks TorchAtenLinear, int4pack bf16/fp16 kernel), ...")
    ap.add_argument("--native", action="store_true",
                    help="judge the kernel as loaded (fp16 dequant) instead of with fp32-upcast scales")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)


def main() -> int:
    sys.path.insert(0, str(HERE))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--fake")
    ap.add_argument("--selftest", action="store_true")
    add_check_args(ap)
    import _gptq_pack_selftest

    sel = ap.add_argument_group("--selftest options")
    # the packer's own options, minus --dtype (here it names the load dtype)
    sel.add_argument("--model", default=str(HERE.parent / "tests/fixtures/models/llama_gqa"))
    sel.add_argument("--bits", type=int, default=4, choices=(2, 4, 8))
    sel.add_argument("--group-size", type=int, default=32)
    sel.add_argument("--pack-dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    sel.add_argument("--out", default="/tmp/gptq_selftest")
    args = ap.parse_args()
    if args.selftest:
        qdir, fdir = _gptq_pack_selftest.build(Path(args.model), Path(args.out), args.bits,
                                               args.group_size, args.pack_dtype)
        print(f"packed {args.model} -> {qdir} (+ fake {fdir})", file=sys.stderr)
        return check(qdir, fdir, args)
    if not args.dir or not args.fake:
        ap.error("DIR and --fake FAKE_DIR are required (or --selftest)")
    return check(Path(args.dir), Path(args.fake), args)


if __name__ == "__main__":
    raise SystemExit(main())
