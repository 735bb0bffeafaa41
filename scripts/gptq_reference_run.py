#!/usr/bin/env python3
"""Reference full-model GPTQ with GPTQModel on CPU, on exactly the calibration sequences given,
then perplexity of the quantized model with the sliding-window protocol of check_teacher.py.

    .venv-gptq/bin/python scripts/gptq_reference_run.py --write-calib CALIB.safetensors \\
        [--model data/models/teacher] [--n 128] [--seq-len 256] [--seed 0]
    .venv-gptq/bin/python scripts/gptq_reference_run.py --model data/models/teacher \\
        --calib CALIB.safetensors --bits 4 --group-size 128 [--act-order] [--sym | --asym] \\
        --out DIR [--ctx 128 --stride 64 --max-tokens 8192] [--threads 2]

--write-calib: tokenizes data/corpus/train.parquet like check_teacher.py (each row tokenizer(text)
with BOS, then EOS appended, rows concatenated) and stores `input_ids` int64 [n, seq_len]: n windows
at uniformly random offsets (numpy default_rng(seed)). No padding.

Quantization: GPTQModel.load(model, QuantizeConfig(bits, group_size, sym, desc_act=act_order,
damp_percent=0.01, true_sequential=True, act_group_aware=False, mse=0, fallback=None,
static_groups=False), dtype=float32) then .quantize(calibration=[{"input_ids", "attention_mask"
all ones}] one sequence per batch, calibration_sort=None). GPTQModel's sequential looper
quantizes block by block, inside a block [q,k,v] -> o -> [gate,up] -> down, and replays each block
with its quantized weights before capturing the next block's inputs. lm_head / embeddings stay
float. quant_seconds is the wall time of .quantize() (includes packing); the packed checkpoint is
then saved to DIR (docs/algorithms.md §4 format, written by GPTQModel) and reloaded with
transformers (backend gptq_torch, float32, scales upcast to fp32, so weights are exactly
scale16*(q-zero)) to measure the perplexity on data/corpus/val.parquet truncated to its first
--max-tokens tokens.

Prints one JSON line {library, version, bits, group_size, act_order, sym, quant_seconds, ppl,
threads, ...} that also carries ppl_f32 (the unquantized teacher, float32, same protocol) and
ppl_rtn (round-to-nearest on the same grid: GPTQModel's Quantizer per group of the original
weights, fp32 scales, no calibration), and kl_to_f32 / kl_rtn_to_f32: mean KL(f32 || quantized)
per scored token on the same windows -- far more sensitive than ppl on this small teacher, whose
ppl barely moves even under 2-bit RTN.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# GPTQModel 7.7.0 sizes its CPU pool as (cpus+1)//2 workers but its model-loader sub-pool asks for
# 2, so on a 2-core machine GPTQModel.load raises "Virtual pool 'model_loader:cpu' requests 2
# workers but parent 'cpu' only has 1" unless this is >= 2.
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from check_teacher import sliding_nll, stream  # noqa: E402

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def write_calib(args) -> None:
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    ids = np.asarray(stream(tok, ROOT / "data/corpus/train.parquet"), dtype=np.int64)
    rng = np.random.default_rng(args.seed)
    starts = rng.integers(0, len(ids) - args.seq_len + 1, size=args.n)
    x = np.stack([ids[s:s + args.seq_len] for s in starts])
    save_file({"input_ids": torch.from_numpy(x)}, args.write_calib,
              metadata={"source": "data/corpus/train.parquet", "seed": str(args.seed),
                        "stream_tokens": str(len(ids))})
    print(json.dumps({"wrote": args.write_calib, "shape": list(x.shape), "stream_tokens": int(len(ids)),
                      "seed": args.seed}))


def ppl(model, ids, args) -> float:
    total, count = sliding_nll(model, ids, args.ctx, args.stride)
    return math.exp(total / count)


def sliding_kl(ref, model, ids: list[int], ctx: int, stride: int) -> float:
    """Mean KL(ref || model) per scored token, same windows/positions as check_teacher.sliding_nll."""
    total, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + ctx, len(ids))
        trg = end - prev_end
        window = torch.tensor([ids[begin:end]])
        first = max(1, (end - begin) - trg)
        with torch.no_grad():
            lp = torch.log_softmax(ref(window, use_cache=False).logits[0].double(), -1)[first - 1:end - begin - 1]
            lq = torch.log_softmax(model(window, use_cache=False).logits[0].double(), -1)[first - 1:end - begin - 1]
        total += (lp.exp() * (lp - lq)).sum().item()
        count += lp.shape[0]
        prev_end = end
        if end == len(ids):
            break
    return total / count


def val_ids(model_dir, max_tokens):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = stream(tok, ROOT / "data/corpus/val.parquet")
    return ids[:max_tokens] if max_tokens > 0 else ids


def rtn_model(model_dir, bits, group_size, sym):
    """Float32 teacher with every decoder linear fake-quantized round-to-nearest (same grid)."""
    from gptqmodel.quantization.config import QuantizeConfig
    from gptqmodel.quantization.quantizer import Quantizer
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    qcfg = QuantizeConfig(bits=bits, group_size=group_size, sym=sym, act_group_aware=False, mse=0.0,
                          fallback=None, offload_to_disk=False)
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.split(".")[-1] in LINEARS:
            w = mod.weight.data
            gs = w.shape[1] if group_size == -1 else group_size
            for c0 in range(0, w.shape[1], gs):
                qz = Quantizer(qcfg=qcfg, name="rtn")
                qz.configure(perchannel=True)
                qz.find_params(w[:, c0:c0 + gs], weight=True)
                w[:, c0:c0 + gs] = qz.quantize(w[:, c0:c0 + gs])
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "data/models/teacher"))
    ap.add_argument("--write-calib", metavar="PATH")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--act-order", action="store_true")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--sym", dest="sym", action="store_true", default=True)
    g.add_argument("--asym", dest="sym", action="store_false")
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--static-groups", action="store_true",
                    help="group params from the original weights (slmc's act-order uses static groups)")
    ap.add_argument("--out")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--stride", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true",
                    help="if --out already holds a checkpoint, only evaluate it (quant_seconds: null)")
    ap.add_argument("--skip-baselines", action="store_true", help="do not compute ppl_f32 / ppl_rtn")
    ap.add_argument("--kl", action="store_true", help="with --skip-baselines: still report kl_to_f32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.write_calib:
        write_calib(args)
        return 0
    if not args.calib or not args.out:
        ap.error("--calib and --out are required (or --write-calib)")

    import gptqmodel
    from gptqmodel import GPTQModel
    from gptqmodel.quantization.config import QuantizeConfig
    from safetensors.torch import load_file

    calib = load_file(args.calib)["input_ids"].to(torch.int64)
    assert calib.dim() == 2, calib.shape
    calibration = [{"input_ids": row.tolist(), "attention_mask": [1] * row.numel()} for row in calib]

    qcfg = QuantizeConfig(
        bits=args.bits, group_size=args.group_size, sym=args.sym, desc_act=args.act_order,
        static_groups=args.static_groups, damp_percent=args.damp, true_sequential=True,
        act_group_aware=False, mse=0.0, fallback=None, offload_to_disk=False,
    )
    if args.reuse and (Path(args.out) / "model.safetensors").is_file():
        quant_seconds = None  # evaluate the checkpoint already in --out
    else:
        model = GPTQModel.load(args.model, qcfg, dtype=torch.float32, device="cpu")
        t0 = time.perf_counter()
        model.quantize(calibration, batch_size=1, calibration_sort=None)
        quant_seconds = round(time.perf_counter() - t0, 2)
        model.save(args.out)
        del model

    import check_gptq_load

    ids = val_ids(args.model, args.max_tokens)
    qmodel = check_gptq_load.load_gptq(Path(args.out), torch.float32, "transformers", "gptq_torch")
    qmods = [m for m in qmodel.modules() if isinstance(getattr(m, "qweight", None), torch.Tensor)]
    for m in qmods:
        m.scales = m.scales.float()
    out = {
        "library": "gptqmodel", "version": gptqmodel.__version__, "bits": args.bits,
        "group_size": args.group_size, "act_order": args.act_order, "sym": args.sym,
        "static_groups": args.static_groups,
        "quant_seconds": quant_seconds, "ppl": ppl(qmodel, ids, args), "threads": args.threads,
        "damp": args.damp, "calib_shape": list(calib.shape), "n_quant_linear": len(qmods),
        "quant_linear": sorted({type(m).__name__ for m in qmods}),
        "eval": {"ctx": args.ctx, "stride": args.stride, "max_tokens": args.max_tokens, "val_tokens": len(ids)},
    }
    if args.skip_baselines and args.kl:
        from transformers import AutoModelForCausalLM

        f32 = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        out["kl_to_f32"] = sliding_kl(f32, qmodel, ids, args.ctx, args.stride)
    if not args.skip_baselines:
        from transformers import AutoModelForCausalLM

        f32 = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
        out["ppl_f32"] = ppl(f32, ids, args)
        out["kl_to_f32"] = sliding_kl(f32, qmodel, ids, args.ctx, args.stride)
        del qmodel
        rtn = rtn_model(args.model, args.bits, args.group_size, args.sym)
        out["ppl_rtn"] = ppl(rtn, ids, args)
        out["kl_rtn_to_f32"] = sliding_kl(f32, rtn, ids, args.ctx, args.stride)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
