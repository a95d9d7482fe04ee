#!/usr/bin/env bash
# Fuzzes btx's readers of outside input with libFuzzer and AddressSanitizer (Debian's clang):
#   scripts/fuzz.sh SECONDS [TARGET ...]
# Targets (fuzz/*_fuzz.cpp): safetensors, model_config, run_config, tokenizer, tokenizer_json,
# jinja, completions, import, utf8; all by default, each run for SECONDS from a seed corpus of real
# files (fuzz/corpus/, configs/*.toml).
# The code under test is compiled with clang and instrumented; the rest of btx is linked from the
# Release build in build/ (scripts/setup.sh makes it). Findings (crashes, hangs, sanitizer
# reports, an exception other than btx's own error) are written to build/fuzz/findings/ and make
# the script exit 1. Needs: clang (apt-get install clang).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET ...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors model_config run_config tokenizer tokenizer_json jinja
                                     completions import utf8)
if ! command -v clang++ > /dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a > /dev/null 2>&1; then
  echo "btx fuzz: clang++ with libFuzzer not found (apt-get install clang libclang-rt-14-dev)" >&2
  [ -n "${CI:-}" ] && exit 1
  exit 77  # skipped (ctest SKIP_RETURN_CODE) outside CI
fi
[ -f build/build.ninja ] || { echo "btx fuzz: no build/ (run scripts/setup.sh first)" >&2; exit 1; }

# The sources each target instruments (the readers under test); the rest links from build/.
declare -A sources=(
  [safetensors]="src/btx/io/safetensors.cpp"
  [model_config]="src/btx/model/config.cpp src/btx/util/fs.cpp"
  [run_config]="src/btx/config/run_config.cpp src/btx/config/toml_reader.cpp src/btx/model/config.cpp"
  [tokenizer]="src/btx/data/tokenizer.cpp src/btx/data/tokenizer_load.cpp"
  [tokenizer_json]="src/btx/data/hf_tokenizer.cpp src/btx/data/hf_encode.cpp src/btx/data/tokenizer.cpp src/btx/data/tokenizer_load.cpp src/btx/util/fs.cpp"
  [jinja]="src/btx/data/jinja_lex.cpp src/btx/data/jinja_parse.cpp src/btx/data/jinja_expr.cpp src/btx/data/jinja_eval.cpp src/btx/data/jinja_value.cpp src/btx/data/jinja_builtins.cpp"
  [completions]="src/btx/serve/completions.cpp src/btx/data/chat_template.cpp"
  [import]="src/btx/hf/hf.cpp src/btx/model/config.cpp"
  [utf8]="src/btx/util/utf8.cpp"
)
out=build/fuzz
mkdir -p "$out/obj" "$out/findings"
cmake --build build --target btx > /dev/null
# The libraries btx links, in its link order (build.ninja's LINK_LIBRARIES of the btx target).
libs=$(awk '/^build btx:/ {found = 1} found && /LINK_LIBRARIES/ {sub(/^ *LINK_LIBRARIES = /, ""); print; exit}' build/build.ninja \
  | sed -E 's#(^| )(libbtx_[a-z]+\.a)#\1build/\2#g; s#"##g')
flags=(-std=gnu++17 -O1 -g -fno-omit-frame-pointer -D_GLIBCXX_USE_CXX11_ABI=1 -DFMT_SHARED
       -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL -DSPDLOG_SHARED_LIB -DTOML_HEADER_ONLY=0
       -DTOML_SHARED_LIB=1 -Isrc -Ifuzz -isystem /usr/include/torch/csrc/api/include)
jobs=${BTX_BUILD_JOBS:-$(nproc)}

# source -> object, instrumented for coverage and checked by ASan; compiled again when the source
# or any header it includes (clang's dependency file) is newer than the object: an object built
# against an older header would read structs of another layout.
compile() {
  local src=$1 obj="$out/obj/$(echo "$1" | tr / _).o"
  local dep="${obj%.o}.d" stale=1 f
  if [ -f "$obj" ] && [ -f "$dep" ]; then
    stale=0
    for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
      if [ "$f" -nt "$obj" ]; then
        stale=1
        break
      fi
    done
  fi
  if [ "$stale" = 1 ]; then
    clang++ "${flags[@]}" -fsanitize=fuzzer-no-link,address -MMD -MF "$dep" -c "$src" -o "$obj"
  fi
}
export -f compile
export out
all_sources=$(for t in "${targets[@]}"; do echo "${sources[$t]:?unknown target $t}" "fuzz/${t}_fuzz.cpp"; done | tr ' ' '\n' | sort -u)
echo "btx fuzz: compiling $(echo "$all_sources" | wc -l) sources with clang"
# shellcheck disable=SC2016
printf '%s\n' $all_sources | FLAGS="${flags[*]}" xargs -P "$jobs" -I{} bash -c 'flags=($FLAGS); compile {}'

# libtorch and friends leak at exit and are not instrumented: leaks and ODR reports off.
export ASAN_OPTIONS=detect_leaks=0:detect_odr_violation=0:alloc_dealloc_mismatch=0
export BTX_FUZZ_TOKENIZER=$root/fuzz/corpus/tokenizer/bpe400.model
status=0
printf '%-14s %8s %10s %8s %s\n' target seconds runs corpus result
for t in "${targets[@]}"; do
  objs=()
  for s in ${sources[$t]} "fuzz/${t}_fuzz.cpp"; do objs+=("$out/obj/$(echo "$s" | tr / _).o"); done
  # shellcheck disable=SC2086
  clang++ -fsanitize=fuzzer,address "${objs[@]}" $libs -o "$out/${t}_fuzz"
  corpus="$out/corpus/$t"
  mkdir -p "$corpus"
  seeds=("$root/fuzz/corpus/$t")
  [ "$t" = run_config ] && seeds+=("$root/configs")  # the presets are real run configs
  log="$out/$t.log"
  set +e
  (cd "$out/findings" && "$root/$out/${t}_fuzz" -max_total_time="$seconds" -timeout=10 \
     -rss_limit_mb=4096 -print_final_stats=1 "$root/$corpus" "${seeds[@]}") > "$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  size=$(find "$corpus" -type f | wc -l)
  if [ $rc -eq 0 ]; then
    result="no finding"
  else
    result="FINDING (exit $rc): $(grep -m1 -E 'ERROR|SUMMARY|terminate|deadly|timeout' "$log" || tail -1 "$log") -- see $log"
    status=1
  fi
  printf '%-14s %8s %10s %8s %s\n' "$t" "$seconds" "$runs" "$size" "$result"
done
exit $status
