#!/usr/bin/env bash
# Evidence that distillation helps: the quickstart student (half-depth, initialised from every
# other teacher layer) trained with the same init, steps and data four ways:
#   ce        cross-entropy only (alpha = 0)
#   kd        forward KL, tau 2, alpha 0.9 (the quickstart objective)
#   kd-hidden kd + cosine hidden-state loss (student layer j vs teacher layer 2j)
#   kd-cache  kd from a precomputed top-64 teacher cache (no teacher at train time)
# and prints a table of held-out perplexities beside the teacher's. Each run goes to
# runs/kd-evidence/<variant>/ (resumable).
#
#   scripts/kd_evidence.sh             # STEPS=150 EVAL_TOKENS=20000
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-150}
tokens=${EVAL_TOKENS:-20000}
cargo build --release -q -p slmc-cli
common=(--set "stage.1.steps=$steps" --set "stage.0.max-tokens=$tokens" --set "stage.2.max-tokens=$tokens")
declare -A extra=(
  [ce]="stage.1.alpha=0.0"
  [kd]="stage.1.alpha=0.9"
  [kd-hidden]="stage.1.hidden-loss=cosine"
  [kd-cache]="stage.1.teacher-cache=topk:64"
)
for v in ce kd kd-hidden kd-cache; do
  echo "== $v" >&2
  ./target/release/slmc run recipes/quickstart.toml "${common[@]}" --set "${extra[$v]}" \
    --set "run-dir=runs/kd-evidence/$v" >&2
done
python3 - "$steps" "$tokens" <<'PY'
import json, sys
steps, tokens = sys.argv[1:]
def ppl(variant, stage):
    return json.load(open(f"runs/kd-evidence/{variant}/stages/{stage}/done.json"))["ppl"]
def rate(variant):
    rows = [json.loads(l) for l in open(f"runs/kd-evidence/{variant}/metrics.jsonl")]
    r = [x["tokens_per_s"] for x in rows if x.get("event") == "step"]
    return sum(r) / len(r)
teacher = ppl("ce", "0-eval")
print(f"student: 4 of 8 teacher layers, {steps} steps x 8 x 128 tokens; held-out perplexity over {tokens} tokens of val")
print("| objective | val ppl | vs teacher | train tokens/s |")
print("|---|---|---|---|")
print(f"| teacher (8 layers) | {teacher:.2f} | 1.00x | - |")
names = {"ce": "cross-entropy only", "kd": "forward KL (tau 2, alpha 0.9)", "kd-hidden": "KD + hidden-state cosine", "kd-cache": "KD from top-64 cache"}
for v in ["ce", "kd", "kd-hidden", "kd-cache"]:
    p = ppl(v, "2-eval")
    print(f"| {names[v]} | {p:.2f} | {p / teacher:.2f}x | {rate(v):.0f} |")
PY
