#!/usr/bin/env bash
# Wall-clock of training the same 4 experts three ways on this machine, side by side:
#   --jobs 1 (one expert at a time, all cores), --jobs 2 (two at a time, cores split), and one
#   at a time as 2 data-parallel processes (Gloo on loopback). Needs a run with a finished seed.
#   bench/experts_parallel.sh RUN [STEPS]   (RUN e.g. runs/tiny after `scripts/study.sh`)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC_RUN=${1:?usage: bench/experts_parallel.sh RUN [STEPS]}
STEPS=${2:-40}
BTX=build/btx
WORK=$(mktemp -d /tmp/btx-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CORES=$(nproc)

# A copy of the run whose experts train STEPS steps (config edited before branching).
fresh() {
  local dst="$WORK/$1"
  mkdir -p "$dst"
  cp -r "$SRC_RUN/config.toml" "$SRC_RUN/tokenizer.model" "$SRC_RUN/data" "$SRC_RUN/seed" "$dst/"
  python3 - "$dst/config.toml" "$STEPS" <<'PY'
import re, sys
p, steps = sys.argv[1], sys.argv[2]
s = open(p).read()
head, sep, tail = s.partition("[experts.train]")
tail = re.sub(r"(?m)^(\s*)steps = \d+", r"\g<1>steps = " + steps, tail, count=1)
tail = re.sub(r"(?m)^(\s*)(eval_every|checkpoint_every) = \d+", r"\g<1>\2 = " + steps, tail)
open(p, "w").write(head + sep + tail)
PY
  $BTX branch --run "$dst" > /dev/null
  echo "$dst"
}

tokens_per_expert=$(python3 - "$SRC_RUN/config.toml" "$STEPS" <<'PY'
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))["experts"]["train"]
print(int(sys.argv[2]) * c.get("batch_size", 16) * c.get("grad_accum", 1) * c.get("seq_len", 256))
PY
)

time_it() {  # prints seconds
  local t0=$(date +%s.%N)
  "$@" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; exit 1; }
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)"
}

run1=$(fresh jobs1)
run2=$(fresh jobs2)
run3=$(fresh dp2)
n=$(ls -d "$run1"/experts/*/ | wc -l)
s1=$(time_it $BTX launch --run "$run1" --jobs 1)
s2=$(time_it $BTX launch --run "$run2" --jobs 2)
dp() {
  local port=$((29500 + RANDOM % 1000))
  for e in $(ls "$run3/experts" | grep -v '\.'); do
    for r in 0 1; do
      MASTER_ADDR=127.0.0.1 MASTER_PORT=$port RANK=$r WORLD_SIZE=2 OMP_NUM_THREADS=1 \
        OPENBLAS_NUM_THREADS=$((CORES / 2)) \
        $BTX train --run "$run3" --expert "$e" --threads 1 &
    done
    wait
    port=$((port + 1))
  done
}
s3=$(time_it dp)
total=$((n * tokens_per_expert))
echo "$n experts x $STEPS steps ($tokens_per_expert tokens each), $CORES cores"
echo "| setting | wall s | tokens/s |"
echo "|---|---:|---:|"
row() { python3 -c "import sys; print(f'| {sys.argv[1]} | {float(sys.argv[2]):.1f} | {int(sys.argv[3]) / float(sys.argv[2]):.0f} |')" "$@"; }
row "launch --jobs 1 ($CORES BLAS threads)" "$s1" "$total"
row "launch --jobs 2 ($((CORES / 2)) BLAS thread(s) each)" "$s2" "$total"
row "data parallel, 2 processes ($((CORES / 2)) BLAS thread(s) each)" "$s3" "$total"
