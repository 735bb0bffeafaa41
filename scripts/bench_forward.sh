#!/usr/bin/env bash
# Forward throughput of slmc (flex backend) beside PyTorch eager CPU, same ~15.7M-parameter Llama
# config (crates/slmc-cli/src/commands/bench.rs = scripts/bench_forward_torch.py), same batch
# (4 x 256) and thread count. Runs the two alternately ROUNDS times and prints the medians and the
# ratio slmc / PyTorch. Needs the venv of scripts/setup_python.sh. Run it on an otherwise idle
# machine: a concurrent compile halves either figure.
#
#   scripts/bench_forward.sh            # THREADS=$(nproc) ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
py=${PYTHON:-.venv/bin/python}
cargo build --release -q -p slmc-cli
for _ in $(seq "$rounds"); do
  ./target/release/slmc --threads "$threads" bench forward
  "$py" scripts/bench_forward_torch.py --threads "$threads"
done | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
med = {k: statistics.median(r["tokens_per_s"] for r in rows if r["impl"] == k) for k in ("slmc", "pytorch")}
for k, v in med.items():
    print(f"{k:8s} {v:8.0f} tokens/s (median of {sum(r[\"impl\"] == k for r in rows)})")
print(f"ratio slmc/pytorch = {med[\"slmc\"] / med[\"pytorch\"]:.2f}x")
'
