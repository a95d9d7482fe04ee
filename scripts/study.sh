#!/usr/bin/env bash
# The README's main command: install what is needed, build, make the real corpus from Debian's
# packages, and run the study at tiny size on the CPU: tokenizer, seed, one expert per domain.
# Re-running continues where it stopped.
#   BTX_CONFIG  run config (default configs/tiny.toml)    BTX_RUN  run folder (default runs/tiny)
#   BTX_JOBS    experts trained at once (default 2: measured fastest on 2 cores, see
#               docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${BTX_CONFIG:-configs/tiny.toml}"
RUN="${BTX_RUN:-runs/tiny}"
scripts/setup.sh
# The domains the config trains on and evaluates on, from the config itself.
DOMAINS=$(python3 - "$CONFIG" <<'PY'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb")).get("corpus", {})
print(",".join(c.get("domains", []) + c.get("novel", [])))
PY
)
CORPUS=$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb")).get("corpus",{}).get("dir","corpora/debian"))' "$CONFIG")
build/btx corpus build --out "$CORPUS" ${DOMAINS:+--domains "$DOMAINS"}
build/btx seed --config "$CONFIG" --run "$RUN" --resume
build/btx branch --run "$RUN"
build/btx launch --run "$RUN" --jobs "${BTX_JOBS:-2}"
build/btx status --run "$RUN"
