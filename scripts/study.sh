#!/usr/bin/env bash
# The README's main command: install what is needed, build, make the real corpus from Debian's
# packages, and run the study at tiny size on the CPU: tokenizer, seed, one expert per domain,
# the routing-free combinations (average, weighted average, BTM ensemble), the compute-matched
# dense baseline, BTX's MoE with its learned router and its baselines (sparse upcycling, tag and
# hash routing), SMEAR, all evaluated on the same data, ending with the results table.
# Re-running continues where it stopped (finished merges are skipped).
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
build/btx merge --run "$RUN" --method average
build/btx merge --run "$RUN" --method weighted-average --target each
build/btx merge --run "$RUN" --method ensemble --top-k 1 --name ensemble-top1
build/btx merge --run "$RUN" --method ensemble --top-k 2 --name ensemble-top2
build/btx merge --run "$RUN" --method ensemble --name ensemble-all
build/btx merge --run "$RUN" --method dense --resume
# Learned routing (BTX) and its baselines, each finetuned on the mixture with the [finetune]
# budget; dense-ft is the dense model given the same extra tokens.
build/btx merge --run "$RUN" --method dense --match experts+finetune --name dense-ft --resume
moe() {  # name, then the merge's options
  local name=$1
  shift
  build/btx merge --run "$RUN" --name "$name" "$@"
  build/btx finetune --run "$RUN" --model "merged/$name" --resume
}
moe btx --method btx
moe btx-top1 --method btx --top-k 1
moe upcycle --method upcycle
moe tag --method tag
moe hash --method hash
moe smear --method smear
MODELS=seed,merged/dense,merged/dense-ft,merged/average,merged/weighted-average
MODELS+=,merged/ensemble-top1,merged/ensemble-top2,merged/ensemble-all
MODELS+=,merged/btx,merged/btx-top1,merged/upcycle,merged/tag,merged/hash,merged/smear
build/btx eval --run "$RUN" --model "$MODELS" > /dev/null
build/btx routing --run "$RUN" --model merged/btx --layer 2
# The table (also results.md / results.json in the run folder), best per column in bold.
build/btx results --run "$RUN" --model "$MODELS"
