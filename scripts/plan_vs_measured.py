#!/usr/bin/env python3
"""`slmc check`'s peak-memory estimate beside the measured peak (VmHWM) of the real stage, on CPU.

A 111.5M-parameter Llama (hidden 1024, 8 layers, MLP 2816, 16 heads, vocab 4096; random weights
drawn by slmc from an inline config, the model scripts/quant_memory.sh uses) is written once as an
f32 Hugging Face directory; then each stage kind runs alone, twice, with two batch shapes, a few
steps each:

  finetune   full fine-tuning, batch 2 and 4 x 256 tokens, 2 steps
  distill    the 8-layer model teaching a 4-layer student (teacher-layers), batch 2 and 4 x 256, 2 steps
  quantize   GPTQ 4-bit g128, 32 and 128 calibration windows x 256 tokens
  eval       perplexity windows of 256 and 1024 tokens

Measured: the peak the stage records in its done.json (VmHWM reset when the stage's own work starts,
so loading and the run's bookkeeping before it are not counted; the stage's resident weights are):
`train_peak_rss_bytes` (finetune, distill), `peak_rss_bytes` (quantize, eval). The process's
whole max RSS (`/usr/bin/time -v`, loading included) is printed beside it.

    python3 scripts/plan_vs_measured.py [--slmc target/release/slmc] [--out runs/plan-vs-measured]
        [--only finetune,distill,quantize,eval] [--md docs/plan-vs-measured.md]

Python only orchestrates (writes recipes, runs slmc, reads JSON); no Python packages needed.
"""

import argparse
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = (
    '{ model_type = "llama", hidden_size = 1024, intermediate_size = 2816, num_hidden_layers = 8, '
    'num_attention_heads = 16, num_key_value_heads = 16, vocab_size = 4096, max_position_embeddings = 1024, '
    "tie_word_embeddings = false }"
)
DATA = '[data]\ntrain = { path = "data/corpus/train.parquet", text-column = "text" }\nseq-len = 256\n'
TRAIN = "steps = 2\nlr = 1e-4\nwarmup-steps = 0\neval-sequences = 2\nlog-every = 1\n"


def cases(base):
    model = f'[model]\npath = "{base}"\n'
    out = []
    for b in (2, 4):
        out.append(("finetune", f"batch {b} x 256", model, f'kind = "finetune"\nbatch-size = {b}\n{TRAIN}'))
    for b in (2, 4):
        out.append(
            (
                "distill",
                f"batch {b} x 256, 8 → 4 layers",
                model + f'[teacher]\npath = "{base}"\n',
                f'kind = "distill"\ninit = "teacher-layers"\nalpha = 0.5\ntemperature = 2.0\nbatch-size = {b}\n{TRAIN}',
            )
        )
    for n in (32, 128):
        out.append(
            (
                "quantize",
                f"GPTQ, {n} windows x 256",
                model,
                f'kind = "quantize"\nmethod = "gptq"\nbits = 4\ngroup-size = 128\ncalibration-samples = {n}\n',
            )
        )
    for ctx in (256, 1024):
        out.append(("eval", f"window {ctx}", model, f'kind = "eval"\nctx = {ctx}\nmax-tokens = 4096\n'))
    return out


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, cwd=ROOT, **kw)


def estimate(slmc, recipe):
    text = sh([slmc, "check", recipe]).stdout
    m = re.search(r"peak memory ≈ ([\d.]+) (GB|MB|kB)", text)
    scale = {"GB": 1e9, "MB": 1e6, "kB": 1e3}[m.group(2)]
    return float(m.group(1)) * scale, text


def run(slmc, recipe, run_dir, kind):
    r = subprocess.run(
        ["/usr/bin/time", "-v", str(slmc), "run", str(recipe), "--fresh"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if r.returncode != 0:
        sys.exit(f"slmc run {recipe} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    max_rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) * 1024
    done = json.loads((run_dir / f"stages/0-{kind}/done.json").read_text())
    rec = done.get("record", done)
    peak = rec.get("train_peak_rss_bytes") or rec.get("peak_rss_bytes")
    return peak, max_rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slmc", type=pathlib.Path, default=ROOT / "target/release/slmc")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "runs/plan-vs-measured")
    ap.add_argument("--only", default="finetune,distill,quantize,eval")
    ap.add_argument("--md", type=pathlib.Path, help="also write the table to this Markdown file")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = out / "base-model"
    if not (base / "config.json").is_file():
        recipe = out / "base.toml"
        recipe.write_text(
            f'name = "pvm-base"\nrun-dir = "{out}/base-run"\n[model]\ntokenizer = "data/tokenizer/tokenizer.json"\n'
            f"config = {CONFIG}\n{DATA}[[stage]]\nkind = \"eval\"\nmax-tokens = 512\n"
            '[export]\nformats = ["safetensors"]\ndtype = "float32"\n'
        )
        sh([args.slmc, "run", recipe, "--fresh"])
        exported = next((out / "base-run/artifacts").glob("*safetensors*"))
        exported.rename(base)
    rows = []
    only = set(args.only.split(","))
    for i, (kind, shape, model, stage) in enumerate(cases(base)):
        if kind not in only:
            continue
        run_dir = out / f"run-{i}-{kind}"
        recipe = out / f"case-{i}-{kind}.toml"
        recipe.write_text(f'name = "pvm-{i}"\nrun-dir = "{run_dir}"\n{model}{DATA}[[stage]]\n{stage}')
        est, _ = estimate(args.slmc, recipe)
        peak, max_rss = run(args.slmc, recipe, run_dir, kind)
        err = (est - peak) / peak
        rows.append((kind, shape, est, peak, max_rss, err))
        print(f"{kind:9} {shape:28} plan {est / 1e6:8.1f} MB  measured {peak / 1e6:8.1f} MB  "
              f"({err:+.1%})  process max RSS {max_rss / 1e6:8.1f} MB", flush=True)
    lines = [
        "| stage | shape | plan (slmc check) | measured VmHWM (stage) | plan error | process max RSS |",
        "|---|---|---|---|---|---|",
    ]
    for kind, shape, est, peak, max_rss, err in rows:
        lines.append(f"| {kind} | {shape} | {est / 1e6:.1f} MB | {peak / 1e6:.1f} MB | {err:+.1%} | {max_rss / 1e6:.1f} MB |")
    table = "\n".join(lines)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")
    worst = max((abs(r[5]) for r in rows), default=0.0)
    print(f"worst plan error {worst:.1%} (target ±15 %)")


if __name__ == "__main__":
    main()
