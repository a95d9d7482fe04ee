#!/usr/bin/env bash
# `btx serve` under hostile connections, side by side in one run: N connections (default 100,
# node bench/trickle.mjs)
# that send a request line and then one header line every 200 ms, never finishing their headers,
# while /health is timed with curl (a few times, 1 s apart). Two servers of the same model:
#   before: --http-threads 64 --header-timeout 0 (the old defaults: no deadline)
#   after:  the defaults (--http-threads 256, --header-timeout 10)
# and a third with --http-threads 16 --header-timeout 2, where the trickling connections outnumber
# the threads and only the deadline frees them. (Debian's cpp-httplib accepts a connection only
# when a thread is free: the others wait in the kernel's backlog, /health among them.) Prints a
# markdown table.
#   bench/serve_hostile.sh [--model runs/tiny/seed] [--connections 100] [--seconds 15]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=runs/tiny/seed
CONNECTIONS=100
SECONDS_TOTAL=15
while (($#)); do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --seconds) SECONDS_TOTAL=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
BTX=build/btx
[ -x "$BTX" ] || { echo "build/btx not found: build first" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT

start_server() {  # name, extra args... -> port
  local name=$1
  shift
  "$BTX" serve --model "$MODEL" --port 0 "$@" > "$work/$name.log" 2>&1 &
  echo $! > "$work/$name.pid"
  for _ in $(seq 300); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/$name.log" | head -1 | sed 's/.*://' || true)
    [ -n "$port" ] && { echo "$port"; return; }
    sleep 0.1
  done
  echo "server $name did not start: $(cat "$work/$name.log")" >&2
  exit 1
}

trickle() {  # port: CONNECTIONS connections trickling header lines for SECONDS_TOTAL (node)
  node bench/trickle.mjs "$1" "$CONNECTIONS" "$SECONDS_TOTAL"
}

echo "| server | threads | header timeout | /health times (s), ${CONNECTIONS} trickling connections | closed by the deadline |"
echo "|---|---|---|---|---|"
for spec in "before|64|0" "after|256|10" "few-threads|16|2"; do
  IFS='|' read -r name threads timeout <<< "$spec"
  port=$(start_server "$name" --http-threads "$threads" --header-timeout "$timeout")
  trickle "$port" &
  tpid=$!
  sleep 1
  times=()
  for _ in 1 2 3 4 5; do
    if t=$(curl -s -o /dev/null -m 5 -w '%{time_total}' "http://127.0.0.1:$port/health"); then
      times+=("$(printf '%.3f' "$t")")
    else
      times+=("timeout(5)")
    fi
    sleep 1
  done
  closed=$(curl -s -m 30 "http://127.0.0.1:$port/health" | grep -o '"idle_connections_closed":[0-9]*' | sed 's/.*://' || echo "?")
  kill "$tpid" 2> /dev/null || true
  wait "$tpid" 2> /dev/null || true
  kill "$(cat "$work/$name.pid")" 2> /dev/null || true
  echo "| $name | $threads | $timeout | ${times[*]} | ${closed:-0} |"
done
