#!/usr/bin/env bash
# Peak memory (max RSS) and wall time of a GPTQ quantize stage on a ~100M-parameter Llama
# (hidden 1024, 8 layers, MLP 2816, vocab 4096: 111.5M parameters, random weights drawn by slmc
# itself, so no download), 128 calibration windows x 256 tokens from the shipped corpus.
#
#   scripts/quant_memory.sh            # prints `slmc check`'s estimate, then the measured peak
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -q -p slmc-cli
OUT="${OUT:-runs/quant-memory}"
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
kind = "quantize"
method = "gptq"
bits = 4
group-size = 128
calibration-samples = 128
TOML
target/release/slmc check "$OUT/recipe.toml" | grep -E "model|quantize|peak"
/usr/bin/time -v target/release/slmc run "$OUT/recipe.toml" --fresh 2> "$OUT/time.txt" >/dev/null || { cat "$OUT/time.txt"; exit 1; }
grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$OUT/time.txt"
# done.json: the stage's summary and peak_rss_bytes (VmHWM when quantization ended, before the
# stage saved its f32 model, which the max RSS above includes).
cat "$OUT"/run/stages/0-quantize/done.json
