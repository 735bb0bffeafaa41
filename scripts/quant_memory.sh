#!/usr/bin/env bash
# Peak memory (max RSS) and wall time of a GPTQ quantize stage, or of a SparseGPT prune stage, on a
# ~100M-parameter Llama (hidden 1024, 8 layers, MLP 2816, vocab 4096: 111.5M parameters, random
# weights drawn by slmc itself, so no download), 128 calibration windows x 256 tokens from the
# shipped corpus.
#
#   scripts/quant_memory.sh              # GPTQ 4-bit g128: `slmc check`'s estimate, then the measured peak
#   scripts/quant_memory.sh sparsegpt    # the same for SparseGPT 50 % unstructured
#   scripts/quant_memory.sh wanda        # the same for Wanda 50 % unstructured
#
# OUT (default runs/quant-memory, runs/quant-memory-sparsegpt) holds the recipe and the run;
# SLMC names a prebuilt binary (default: cargo build --release, then target/release/slmc).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
METHOD="${1:-gptq}"
case "$METHOD" in
  gptq)
    KIND=quantize
    STAGE=$'kind = "quantize"\nmethod = "gptq"\nbits = 4\ngroup-size = 128'
    OUT="${OUT:-runs/quant-memory}" ;;
  sparsegpt|wanda)
    KIND=prune
    STAGE=$'kind = "prune"\nmethod = "'"$METHOD"$'"\nsparsity = 0.5'
    OUT="${OUT:-runs/quant-memory-$METHOD}" ;;
  *) echo "usage: $0 [gptq|sparsegpt|wanda]" >&2; exit 1 ;;
esac
if [ -z "${SLMC:-}" ]; then
  cargo build --release -q -p slmc-cli
  SLMC=target/release/slmc
fi
mkdir -p "$OUT"
cat > "$OUT/recipe.toml" <<TOML
name = "quant-memory"
run-dir = "$OUT/run"
[model]
tokenizer = "data/tokenizer/tokenizer.json"
config = { model_type = "llama", hidden_size = 1024, intermediate_size = 2816, num_hidden_layers = 8, num_attention_heads = 16, num_key_value_heads = 16, vocab_size = 4096, max_position_embeddings = 512, tie_word_embeddings = false }
[data]
train = { path = "data/corpus/train.parquet", text-column = "text" }
seq-len = 256
[[stage]]
$STAGE
calibration-samples = 128
TOML
"$SLMC" check "$OUT/recipe.toml" | grep -E "model|$KIND|peak"
/usr/bin/time -v "$SLMC" run "$OUT/recipe.toml" --fresh 2> "$OUT/time.txt" >/dev/null || { cat "$OUT/time.txt"; exit 1; }
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$OUT/time.txt"
# done.json: the stage's summary and peak_rss_bytes (VmHWM when the stage's solving ended, before
# it saved its f32 model, which the max RSS above includes).
cat "$OUT/run/stages/0-$KIND/done.json"
