#!/usr/bin/env bash
# The whole GPU check in one command, for a lent GPU machine (a session has ~15 minutes of one,
# start included): build btx against PyTorch's CUDA LibTorch, run the GPU tests (which must run,
# not skip), the GPU figures (bench/gpu_bench.cpp: dense MFU, MoE / dense, btx / python,
# generation), then the unit tests. Every step runs under its own time limit and writes its log to
# OUT/<step>.log, so a late failure keeps the earlier results; OUT/gpu_check.json gathers the
# steps' status and every figure.
#
#   scripts/gpu_check.sh --out DIR            # on the GPU machine (carry .gpu-deps)
#   scripts/gpu_check.sh --dry --out DIR      # here: the same steps with the CUDA parts skipped:
#                                             # the CPU build in build/, gpu tests that skip,
#                                             # the figures at tiny size on the CPU
# Options: --deps .gpu-deps (the Debian packages scripts/gpu_build.sh --fetch downloads; the
# dry run fetches them when missing and checks they fit the 64 MiB a device call carries),
# --build build-gpu, --jobs N (default: the cores), --peak-tflops 989 (bf16 dense peak of an
# H200, nominal: MFU's denominator), --limits "deps=60 build=330 gpu_tests=90 bench=150
# build_unit=150 unit=120" (seconds; any subset), --budget 560 (seconds for the whole check: a
# step gets at most what is left of it, and one with under 5 s left is skipped, so that the
# summary is written inside a device call's 600 s; a second call continues the build where the
# first one stopped, the build folder being kept on a warm machine).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

OUT=""
DRY=0
DEPS=.gpu-deps
BUILD=build-gpu
JOBS=$(nproc)
PEAK=989
BUDGET=560
declare -A LIMIT=([deps]=60 [build]=330 [gpu_tests]=90 [bench]=150 [build_unit]=150 [unit]=120)
while (($#)); do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --dry) DRY=1; shift ;;
    --deps) DEPS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --peak-tflops) PEAK=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    --limits)
      for kv in $2; do LIMIT[${kv%%=*}]=${kv#*=}; done
      shift 2 ;;
    *) echo "gpu_check: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$OUT" ] || { echo "gpu_check: --out DIR is required" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
((DRY)) && BUILD=build
steps_json="$OUT/steps.jsonl"
: > "$steps_json"
failed=0

started=$(date +%s)

# step NAME COMMAND...: runs COMMAND under NAME's time limit (at most what is left of the
# budget), its output in OUT/NAME.log.
step() {
  local name=$1
  shift
  local limit=${LIMIT[$name]:-120} t0 rc ms left
  left=$((BUDGET - ($(date +%s) - started)))
  ((limit > left)) && limit=$left
  if ((limit < 5)); then
    echo "gpu_check: $name skipped: the budget of $BUDGET s is spent"
    printf '{"step": "%s", "rc": -1, "seconds": 0, "timed_out": false, "skipped": true}\n' \
      "$name" >> "$steps_json"
    failed=1
    return 1
  fi
  t0=$(date +%s%N)
  echo "gpu_check: $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" bash -o pipefail -c "$*" > "$OUT/$name.log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '{"step": "%s", "rc": %d, "seconds": %d.%03d, "timed_out": %s}\n' "$name" "$rc" \
    $((ms / 1000)) $((ms % 1000)) \
    "$({ [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && echo true || echo false)" >> "$steps_json"
  echo "gpu_check: $name: exit $rc after $((ms / 1000)) s"
  [ $rc -eq 0 ] || failed=1
  return $rc
}

# What the device reports (nothing on the CPU).
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/device.txt" 2>&1
else
  echo "no nvidia-smi (a CPU machine)" > "$OUT/device.txt"
fi

# 1. The carried Debian packages: present and small enough to carry (64 MiB per call, all paths).
deps_cmd="[ -n \"\$(ls $DEPS/*.deb 2> /dev/null)\" ] || { echo 'no .deb files in $DEPS (scripts/gpu_build.sh --fetch)'; exit 1; }"
((DRY)) && deps_cmd="[ -n \"\$(ls $DEPS/*.deb 2> /dev/null)\" ] || scripts/gpu_build.sh --fetch --deps $DEPS; $deps_cmd"
step deps "$deps_cmd; bytes=\$(du -sb $DEPS | cut -f1); echo \"$DEPS: \$(ls $DEPS/*.deb | wc -l) packages, \$bytes bytes\"; [ \$bytes -le 67108864 ] || { echo 'more than the 64 MiB a device call carries'; exit 1; }"

# 2. Build what the check runs first: the GPU tests and the figures' program (the layers up to
# run and generate; merging, analysis, the Hub, the study, serving and the CLI come later).
core_targets="btx_gpu_tests gpu_bench"
if ((DRY)); then
  step build "cmake --build $BUILD --target $core_targets -j $JOBS"
else
  step build "scripts/gpu_build.sh --no-test --deps $DEPS --build $BUILD --jobs $JOBS --targets '$core_targets'"
fi
built=$?

# The environment the GPU build's programs run in (the unpacked packages' libraries).
if ((!DRY)); then
  export LD_LIBRARY_PATH=$root/$BUILD/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PATH=$root/$BUILD/deps/usr/bin:$PATH
fi

if [ $built -eq 0 ]; then
  # 3. The gpu-labelled tests: on the GPU they must run (a skip is a failure); dry, they skip.
  if ((DRY)); then
    step gpu_tests "cd $BUILD && ctest -L gpu --output-on-failure"
  else
    step gpu_tests "cd $BUILD && ctest -L gpu --output-on-failure | tee gpu_tests.out; ! grep -q Skipped gpu_tests.out || { echo 'gpu tests skipped on a GPU machine'; exit 1; }"
  fi
  # 4. The figures: ~125M parameters at T=1024 in bf16 on the GPU; tiny on the CPU.
  if ((DRY)); then
    bench_args="--device cpu --precision fp32 --hidden 128 --layers 2 --heads 4 --vocab 1024 --seq 128 --batch 4 --steps 3 --warmup 1 --gen-new 16 --python /usr/bin/python3"
  else
    bench_args="--device cuda --precision bf16 --hidden 768 --layers 12 --heads 12 --vocab 32768 --seq 1024 --batch 16 --steps 10 --warmup 3 --gen-new 64 --peak-tflops $PEAK --python python3"
  fi
  step bench "$BUILD/bench/gpu_bench $bench_args --json $OUT/figures.json"
fi

# 5. The unit tests, last: built now (the libraries are already), then run.
unit_targets="btx btx_util_tests btx_io_tests btx_corpus_tests btx_data_tests btx_model_tests btx_config_tests btx_train_tests btx_run_tests btx_generate_tests btx_hf_tests btx_study_tests btx_analysis_tests btx_cluster_tests btx_dist_tests btx_merge_tests btx_serve_tests"
step build_unit "cmake --build $BUILD --target $unit_targets -j $JOBS" &&
  step unit "cd $BUILD && ctest -L unit -j $JOBS --output-on-failure -E '_NOT_BUILT'"

# One JSON: the steps, the device, the figures.
python3 - "$OUT" << 'EOF'
import json, os, sys
out = sys.argv[1]
steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()]
figures = os.path.join(out, "figures.json")
summary = {"device": open(os.path.join(out, "device.txt")).read().strip(), "steps": steps,
           "figures": json.load(open(figures)) if os.path.exists(figures) else None}
json.dump(summary, open(os.path.join(out, "gpu_check.json"), "w"), indent=2)
print(json.dumps({s["step"]: s["rc"] for s in steps}))
EOF
exit $failed
