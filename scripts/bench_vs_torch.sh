#!/usr/bin/env bash
# Throughput of slmc (flex backend) beside PyTorch eager CPU on the same model configuration,
# batch and thread count; runs the two alternately ROUNDS times, prints the medians and the ratio.
#
#   scripts/bench_vs_torch.sh forward   # ~15.7M Llama, 4 x 256, no grad, full logits
#                                       #   (slmc bench forward / scripts/bench_forward_torch.py)
#   scripts/bench_vs_torch.sh train     # teacher config, 8 x 256, fwd + bwd + clip + AdamW
#                                       #   (slmc bench train / scripts/bench_train_torch.py)
#   scripts/bench_vs_torch.sh distill   # teacher fwd + half-depth student step, FKL tau 2, alpha 0.9
#                                       #   (slmc bench distill / scripts/bench_distill_torch.py)
#
# Also prints the GFLOP/s of matrix products each side reaches and its fraction of the machine's FMA
# peak, measured first (`slmc bench peak`).
#
# THREADS (default: nproc) and ROUNDS (default 3) are read from the environment. Needs the venv of
# scripts/setup_python.sh.
#
# DEVICE=tch runs slmc on burn's libtorch backend (CPU) instead of flex: it builds
# target-tch/release/slmc with `--features tch` in the environment of scripts/tch_env.sh (run
# scripts/setup_tch.sh once) and passes `--device tch`. The PyTorch side then defaults to
# .venv-tch/bin/python, so both sides run the same libtorch 2.9.0 (PYTHON= overrides it).
#
# Run it on an otherwise idle machine: a concurrent compile or training run halves either figure.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/bench_vs_torch.sh forward|train|distill}
case $kind in forward|train|distill) ;; *) echo "unknown benchmark $kind (forward, train or distill)" >&2; exit 1;; esac
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
device=${DEVICE:-flex}
case $device in
  flex)
    py=${PYTHON:-.venv/bin/python}
    cargo build --release -q -p slmc-cli
    slmc=./target/release/slmc ;;
  tch)
    # shellcheck source=scripts/tch_env.sh
    source scripts/tch_env.sh
    py=${PYTHON:-.venv-tch/bin/python}
    CARGO_TARGET_DIR=target-tch cargo build --release -q -p slmc-cli --features tch
    slmc=./target-tch/release/slmc
    # libtorch computes on its own OpenMP pool, not slmc's thread pool
    export OMP_NUM_THREADS=$threads ;;
  *) echo "unknown DEVICE $device (flex or tch)" >&2; exit 1;;
esac
echo "slmc on $device ($slmc), PyTorch: $("$py" -c 'import torch; print(torch.__version__)') ($py)" >&2
{
"$slmc" --threads "$threads" bench peak
for _ in $(seq "$rounds"); do
  "$slmc" --threads "$threads" --device "$device" bench "$kind"
  case $kind in
    distill) "$py" scripts/bench_train_torch.py --distill --threads "$threads" ;;
    *) "$py" "scripts/bench_${kind}_torch.py" --threads "$threads" ;;
  esac
done
} | tee /dev/stderr | python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
med = {k: statistics.median(r["tokens_per_s"] for r in rows if r["impl"] == k) for k in ("slmc", "pytorch")}
for k, v in med.items():
    n = sum(r["impl"] == k for r in rows)
    print(f"{k:8s} {v:8.0f} tokens/s (median of {n})")
ratio = med["slmc"] / med["pytorch"]
print(f"ratio slmc/pytorch = {ratio:.2f}x")
# Fraction of the FMA peak of the machine, measured in the same run (`slmc bench peak`: independent
# AVX-512 multiply-adds on every thread, at whatever clock the cores sustain).
flops = next(r["flops_per_token"] for r in rows if r["impl"] == "slmc")
peak = next(r for r in rows if r["impl"] == "peak")
g, t, isa = peak["gflops"], peak["threads"], peak["isa"]
for k, v in med.items():
    print(f"{k:8s} {v * flops / 1e9:6.1f} GFLOP/s of matrix products = {v * flops / 1e9 / g:.0%} of the "
          f"measured FMA peak ({g:.0f} GFLOP/s, {t} threads, {isa})")
'
