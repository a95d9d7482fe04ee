#!/usr/bin/env bash
# The README's main command: install what is needed, build, and run the whole study with
# `btx run`: the real corpus from Debian's packages, tokenizer, seed, one expert per domain,
# every combination of [study] (averages, BTM ensembles, the dense baselines, BTX's MoE, sparse
# upcycling, tag and hash routing, SMEAR, BTM's random split), evaluation, routing analysis, the
# results table and report.html. Re-running skips finished stages and continues the one that
# was interrupted.
#   scripts/study.sh                       the tiny preset (configs/tiny.toml) into runs/tiny
#   scripts/study.sh configs/small.toml    another config (into runs/<its name>)
#   any `btx run` option may follow: --run DIR, --force, --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh btx  # the study runs only the btx program
exec build/btx run "$@"
