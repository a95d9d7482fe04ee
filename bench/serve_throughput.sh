#!/usr/bin/env bash
# Throughput of `btx serve` under concurrent requests from a real load tool (hey, from Debian)
# on loopback: for each model and each --batch (1: one request at a time; N: continuous
# batching), `hey -n REQUESTS -c C` at each concurrency C, the same greedy request (a fixed
# prompt, max_tokens NEW). Tokens/s are the server's own count (/health generated_tokens) over
# hey's wall time. Then a flood: concurrency 64 against a queue of 4 (503s expected), with a
# health check timed during it. Prints a markdown table.
#   bench/serve_throughput.sh [--models "runs/tiny/seed runs/tiny/merged/btx"] [--batches "1 8"]
#                             [--concurrency "1 4 16"] [--requests 64] [--new 64]
#                             [--prefills "0"]   (--prefill-rows values tried with batches > 1)
# The default models come from the tiny study (scripts/study.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS="runs/tiny/seed runs/tiny/merged/btx"
BATCHES="1 8"
CONCURRENCY="1 4 16"
REQUESTS=64
NEW=64
PREFILLS="0"
while (($#)); do
  case "$1" in
    --models) MODELS=$2; shift 2 ;;
    --batches) BATCHES=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --new) NEW=$2; shift 2 ;;
    --prefills) PREFILLS=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
for tool in hey curl; do
  command -v $tool > /dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 1; }
done
for m in $MODELS; do
  [ -d "$m" ] || { echo "model folder $m does not exist (run scripts/study.sh, or pass --models)" >&2; exit 1; }
done
BTX=build/btx
WORK=$(mktemp -d /tmp/btx-serve-bench-XXXXXX)
PID=""
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
BODY=$(printf '{"prompt": "def main(args):", "max_tokens": %d, "temperature": 0}' "$NEW")

# Starts `btx serve` on a free port with the given extra arguments; sets PID and URL.
start() {
  local model=$1; shift
  $BTX serve --model "$model" --port 0 "$@" > "$WORK/serve.log" 2>&1 &
  PID=$!
  for _ in $(seq 300); do
    URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/serve.log" | head -1 || true)
    [ -n "$URL" ] && return 0
    sleep 0.1
  done
  echo "btx serve did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1
}
stop() { kill $PID; wait $PID 2>/dev/null || true; PID=""; }
tokens() { curl -s "$URL/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["generated_tokens"])'; }
# hey's per-request CSV -> "requests/s p50 p99 ok busy wall" (wall: first start to last end)
summary() {
  python3 -c '
import csv, sys
rows = list(csv.DictReader(sys.stdin))
t = sorted(float(r["response-time"]) for r in rows)
wall = max(float(r["offset"]) + float(r["response-time"]) for r in rows)
pct = lambda q: t[min(len(t) - 1, int(q * len(t)))]
ok = sum(r["status-code"] == "200" for r in rows)
busy = sum(r["status-code"] == "503" for r in rows)
print(f"{len(rows) / wall:.1f} {pct(0.5):.3f} {pct(0.99):.3f} {ok} {busy} {wall:.3f}")'
}

echo "| model | batch | prefill rows | concurrency | requests/s | tokens/s | p50 latency (s) | p99 latency (s) | 200 | 503 |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for model in $MODELS; do
  name=$(basename "$model")
  for batch in $BATCHES; do
    prefills=$PREFILLS
    [ "$batch" = 1 ] && prefills=1
    for prefill in $prefills; do
      start "$model" --batch "$batch" --queue 64 --prefill-rows "$prefill"
      shown=$prefill
      [ "$prefill" = 0 ] && shown=$batch
      for c in $CONCURRENCY; do
        before=$(tokens)
        read -r rps p50 p99 ok busy wall < <(hey -n "$REQUESTS" -c "$c" -o csv -m POST \
          -T application/json -d "$BODY" "$URL/v1/completions" | summary)
        after=$(tokens)
        tps=$(python3 -c "print(round(($after - $before) / $wall))")
        echo "| $name | $batch | $shown | $c | $rps | $tps | $p50 | $p99 | $ok | $busy |"
      done
      stop
    done
  done
done

# The flood: 64 concurrent clients against a queue of 4; a health check made during it.
model=$(echo $MODELS | awk '{print $NF}')
batch=$(echo $BATCHES | awk '{print $NF}')
start "$model" --batch "$batch" --queue 4
hey -n 256 -c 64 -o csv -m POST -T application/json -d "$BODY" "$URL/v1/completions" \
  > "$WORK/flood.csv" &
HEY=$!
sleep 1
health=$(curl -s -o /dev/null -w '%{http_code} in %{time_total} s' "$URL/health")
wait $HEY
read -r rps p50 p99 ok busy wall < <(summary < "$WORK/flood.csv")
stop
echo
echo "Flood ($(basename "$model"), batch $batch, queue 4, 256 requests from 64 clients): $ok answered 200, $busy answered 503, $rps requests/s; a health check during it: $health."
