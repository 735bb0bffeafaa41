#!/usr/bin/env bash
# Screenshot of a run's report.html in headless Chromium (Debian: `apt-get install chromium`).
# The report is rendered again from the run directory first (`slmc report`), so the picture shows
# what the current code draws.
#
#   scripts/screenshot_report.sh RUN_DIR OUT.png [HEIGHT]
#   scripts/screenshot_report.sh runs/quickstart docs/report-quickstart.png
#
# The window is WIDTH (default 1200) × HEIGHT (default 3500) CSS pixels: the page down to the
# per-module errors of a quickstart run (the run at a glance, evaluations and artifacts, gates,
# training curves). Give a larger HEIGHT for more of it. CHROMIUM names the browser binary
# (default: chromium).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 1
fi
run_dir=$1
out=$2
height=${3:-3500}
width=${WIDTH:-1200}
browser=${CHROMIUM:-chromium}
command -v "$browser" >/dev/null || { echo "error: $browser not found (apt-get install chromium)" >&2; exit 1; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
slmc=${SLMC:-$repo/target/release/slmc}
if [[ ! -x $slmc ]]; then
  (cd "$repo" && cargo build --release -q -p slmc-cli)
fi
report=$("$slmc" report "$run_dir" | sed -n 's/^report //p')
report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
# Chromium refuses to run as root without --no-sandbox (containers, CI).
sandbox=()
[[ $(id -u) -eq 0 ]] && sandbox=(--no-sandbox)
"$browser" --headless "${sandbox[@]}" --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --window-size="$width,$height" --screenshot="$out" "file://$report" 2>/dev/null
[[ -s $out ]] || { echo "error: $browser wrote no screenshot" >&2; exit 1; }
echo "screenshot $out"
