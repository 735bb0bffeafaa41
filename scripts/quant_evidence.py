#!/usr/bin/env python3
"""Quantization evidence on the shipped teacher: slmc RTN vs slmc GPTQ vs GPTQModel's GPTQ.

    .venv/bin/python scripts/quant_evidence.py [--max-tokens 16384] [--no-reference] [--out runs/quant-evidence]

For every configuration it writes a recipe (quantize stage + eval stage) and runs
`target/release/slmc run` on data/models/teacher: 128 calibration windows of 256 tokens from
data/corpus/train.parquet (seed 0), then the sliding-window perplexity (ctx 256, stride 128) over
the first --max-tokens tokens of data/corpus/val.parquet. The wall time is the quantize stage's
own (done.json `seconds`: calibration forward passes, Hessians, solves).

The reference (unless --no-reference) is GPTQModel on CPU through scripts/gptq_reference_run.py
in .venv-gptq (see scripts/requirements-gptq.txt), fed the very calibration windows slmc used
(the stage's calibration.safetensors) and evaluated with the same protocol in transformers;
its time is GPTQModel's .quantize() wall time. Both run on the same 2 threads.

KL is the mean KL(f32 teacher || quantized) per scored token on the same windows, computed in
transformers for both (scripts/kl_to_f32.py on slmc's fake-quantized stage model, which also
re-measures slmc's perplexity independently): on this small teacher perplexity moves little even
at 3 bits, KL separates the methods clearly.

Prints a markdown table (also written to OUT/table.md) and the raw rows (OUT/rows.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLMC = ROOT / "target/release/slmc"
REF_PY = ROOT / ".venv-gptq/bin/python"

# (label, method, bits, group size (-1 = per channel), sym, act-order)
CONFIGS = [
    ("RTN 4-bit per-channel asym", "rtn", 4, -1, False, False),
    ("GPTQ 4-bit per-channel asym", "gptq", 4, -1, False, False),
    ("RTN 4-bit g128 sym", "rtn", 4, 128, True, False),
    ("GPTQ 4-bit g128 sym", "gptq", 4, 128, True, False),
    ("GPTQ 4-bit g128 sym act-order", "gptq", 4, 128, True, True),
    ("RTN 4-bit g32 sym (= GGUF q4_0 grid)", "rtn", 4, 32, True, False),
    ("GPTQ 4-bit g32 sym", "gptq", 4, 32, True, False),
    ("GPTQ 4-bit g32 sym act-order", "gptq", 4, 32, True, True),
    ("RTN 3-bit g128 asym", "rtn", 3, 128, False, False),
    ("GPTQ 3-bit g128 asym", "gptq", 3, 128, False, False),
    ("RTN 3-bit per-channel asym", "rtn", 3, -1, False, False),
    ("GPTQ 3-bit per-channel asym", "gptq", 3, -1, False, False),
]


def recipe(name: str, stage: str, max_tokens: int, out: Path) -> Path:
    text = f'''name = "{name}"
seed = 0
run-dir = "{out / name}"
[model]
path = "{ROOT / 'data/models/teacher'}"
[data]
train = {{ path = "{ROOT / 'data/corpus/train.parquet'}", text-column = "text" }}
eval = {{ path = "{ROOT / 'data/corpus/val.parquet'}", text-column = "text" }}
seq-len = 256
{stage}
[[stage]]
kind = "eval"
ctx = 256
stride = 128
max-tokens = {max_tokens}
'''
    path = out / f"{name}.toml"
    path.write_text(text)
    return path


def run_slmc(name: str, stage: str, args) -> dict:
    path = recipe(name, stage, args.max_tokens, args.out)
    env = dict(os.environ, SLMC_THREADS=str(args.threads))
    proc = subprocess.run([str(SLMC), "run", str(path), "--fresh"], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"slmc failed on {name}:\n{proc.stderr[-3000:]}")
    stages = sorted((args.out / name / "stages").iterdir())
    done = [json.loads((s / "done.json").read_text()) for s in stages]
    row = {"ppl": done[-1]["ppl"], "tokens": done[-1]["tokens"]}
    if len(done) > 1:
        row["seconds"] = done[0]["seconds"]
        row["mean_rel_error"] = done[0].get("mean_rel_error")
        calib = stages[0] / "calibration.safetensors"
        if calib.is_file():
            row["calibration"] = str(calib)
        if args.kl:
            proc = subprocess.run([sys.executable, str(ROOT / "scripts/kl_to_f32.py"), str(stages[0] / "model"),
                                   "--max-tokens", str(args.max_tokens), "--threads", str(args.threads)],
                                  cwd=ROOT, capture_output=True, text=True, check=True)
            kl = json.loads([l for l in proc.stdout.splitlines() if l.startswith("{")][-1])
            row["kl_to_f32"] = kl["kl_to_f32"]
            row["ppl_transformers"] = kl["ppl"]
    return row


def run_reference(bits, group, sym, act, calib, args) -> dict:
    cmd = [str(REF_PY), str(ROOT / "scripts/gptq_reference_run.py"), "--model", str(ROOT / "data/models/teacher"),
           "--calib", calib, "--bits", str(bits), "--group-size", str(group), "--sym" if sym else "--asym",
           "--out", str(args.out / f"ref-{bits}-{group}-{sym}-{act}"), "--ctx", "256", "--stride", "128",
           "--max-tokens", str(args.max_tokens), "--threads", str(args.threads), "--skip-baselines"]
    if args.kl:
        cmd.append("--kl")
    if act:
        cmd.append("--act-order")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs/quant-evidence")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-kl", dest="kl", action="store_false",
                    help="skip the KL(f32 || quantized) column (computed in transformers by scripts/kl_to_f32.py)")
    ap.add_argument("--only", help="comma-separated substrings of the configuration labels to run")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "slmc-cli"], cwd=ROOT, check=True)
    reference = not args.no_reference and REF_PY.is_file()

    rows = [{"label": "f32 (unquantized)", **run_slmc("f32", "", args)}]
    print(f"f32: ppl {rows[0]['ppl']:.3f}", file=sys.stderr)
    calib = None
    for label, method, bits, group, sym, act in CONFIGS:
        if args.only and not any(s in label for s in args.only.split(",")):
            continue
        stage = (f'[[stage]]\nkind = "quantize"\nmethod = "{method}"\nbits = {bits}\ngroup-size = {group}\n'
                 f'sym = {str(sym).lower()}\nact-order = {str(act).lower()}\ncalibration-samples = 128\n')
        name = label.split(" (")[0].lower().replace(" ", "-")
        row = {"label": label, "method": method, **run_slmc(name, stage, args)}
        calib = row.get("calibration", calib)
        if reference and method == "gptq" and calib:
            row["reference"] = run_reference(bits, group, sym, act, calib, args)
        rows.append(row)
        print(f"{label}: {json.dumps(row)}", file=sys.stderr)

    f32 = rows[0]["ppl"]
    lines = [
        f"Shipped teacher (11.2M, hidden 320, 8 layers); perplexity over the first {rows[0]['tokens'] + 1} tokens "
        "of the held-out works (ctx 256, stride 128); 128 × 256-token calibration windows; 2 threads.",
        "",
        "| configuration | slmc ppl | vs f32 | slmc KL to f32 | slmc s | GPTQModel ppl | GPTQModel KL to f32 | GPTQModel s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = r.get("reference") or {}
        ref_ppl = f"{ref['ppl']:.3f}" if "ppl" in ref else (f"failed: {ref['error']}" if "error" in ref else "")
        ref_s = f"{ref['quant_seconds']:.1f}" if "quant_seconds" in ref else ""
        secs = f"{r['seconds']:.1f}" if "seconds" in r else ""
        kl = f"{r['kl_to_f32']:.2e}" if "kl_to_f32" in r else ""
        ref_kl = f"{ref['kl_to_f32']:.2e}" if "kl_to_f32" in ref else ""
        lines.append(f"| {r['label']} | {r['ppl']:.3f} | {100 * (r['ppl'] / f32 - 1):+.2f} % | {kl} | {secs} | {ref_ppl} | {ref_kl} | {ref_s} |")
    table = "\n".join(lines)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(table)


if __name__ == "__main__":
    main()
