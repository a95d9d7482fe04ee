#!/usr/bin/env bash
# `btx serve` under hostile clients, side by side in one run. Three parts (--parts, default all):
#
# trickle: N connections (default 100, node bench/trickle.mjs) that send a request line and then
# one header line every 200 ms, never finishing their headers, while /health is timed with curl (a
# few times, 1 s apart). Three servers of the same model:
#   before: --http-threads 64 --header-timeout 0 (the old defaults: no deadline)
#   after:  the defaults (--http-threads 256, --header-timeout 10)
# and a third with --http-threads 16 --header-timeout 2, where the trickling connections outnumber
# the threads and only the deadline frees them. (Debian's cpp-httplib accepts a connection only
# when a thread is free: the others wait in the kernel's backlog, /health among them.)
#
# churn: 200 streaming requests (max_tokens 128) from 1 and from 8 parallel clients, each closed
# right after its status line (a chat UI's "stop"; node bench/churn.mjs), beside one live client
# sending whole 8-token completions back to back; then a flood of live streams (64 clients that
# read their answers) that must still get 503. The leaving clients' rounds --rounds times (5),
# 0.2 s apart; the flood once. Default server settings (--queue 16 --batch 8).
#
# framing: malformed and oversized requests, each on its own connection (node bench/framing.mjs):
# the time to the answer's first byte and to the close.
#
# With --btx-before PATH (another build of btx, e.g. the commit before a change) the churn and
# framing parts run against both binaries, one after the other in the same run. Prints markdown.
#   bench/serve_hostile.sh [--model runs/tiny/seed] [--connections 100] [--seconds 15]
#                          [--parts trickle,churn,framing] [--btx-before PATH] [--rounds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=runs/tiny/seed
CONNECTIONS=100
SECONDS_TOTAL=15
PARTS=trickle,churn,framing
BEFORE=
ROUNDS=5
while (($#)); do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --seconds) SECONDS_TOTAL=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --btx-before) BEFORE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
BTX=build/btx
[ -x "$BTX" ] || { echo "build/btx not found: build first" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; rm -rf "$work"' EXIT

start_server() {  # name, extra args... -> port (BIN: the binary, default build/btx)
  local name=$1
  shift
  "${BIN:-$BTX}" serve --model "$MODEL" --port 0 "$@" > "$work/$name.log" 2>&1 &
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

stop_server() {  # name
  kill "$(cat "$work/$1.pid")" 2> /dev/null || true
  wait "$(cat "$work/$1.pid")" 2> /dev/null || true
}

has_part() { [[ ",$PARTS," == *",$1,"* ]]; }

binaries=("after|$BTX")
[ -n "$BEFORE" ] && binaries=("before|$BEFORE" "${binaries[@]}")

if has_part trickle; then
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
    stop_server "$name"
    echo "| $name | $threads | $timeout | ${times[*]} | ${closed:-0} |"
  done
  echo
fi

if has_part churn; then
  echo "| binary | churning requests | clients | client | 200 | 503 | live client: statuses; p50 / p99 ms | seconds |"
  echo "|---|---|---|---|---|---|---|---|"
  for b in "${binaries[@]}"; do
    IFS='|' read -r name bin <<< "$b"
    port=$(BIN=$bin start_server "churn-$name")
    for spec in "200|1|leave|$ROUNDS" "200|8|leave|$ROUNDS" "200|64|stay|1"; do
      IFS='|' read -r n clients mode rounds <<< "$spec"
      j=$(node bench/churn.mjs "$port" "$n" "$clients" "$mode" "$rounds")
      row=$(node -e '
        const j = JSON.parse(process.argv[1]);
        const live = Object.entries(j.live).map(([k, v]) => `${v} x ${k}`).join(", ");
        console.log([j.churn[200], j.churn[503], `${live}; ${j.live_p50_ms} / ${j.live_p99_ms}`,
                     j.seconds].join(" | "));' "$j")
      what=$([ "$mode" = leave ] && echo "leaves after the status line" || echo "reads to the end")
      echo "| $name | $rounds x $n | $clients | $what | $row |"
    done
    stop_server "churn-$name"
  done
  echo
fi

if has_part framing; then
  echo "| binary | request | status | first byte (ms) | closed (ms) | message |"
  echo "|---|---|---|---|---|---|"
  for b in "${binaries[@]}"; do
    IFS='|' read -r name bin <<< "$b"
    port=$(BIN=$bin start_server "framing-$name")
    node bench/framing.mjs "$port" | node -e '
      const name = process.argv[1];
      const lines = require("fs").readFileSync(0, "utf8").trim().split("\n");
      for (const l of lines) {
        const j = JSON.parse(l);
        const msg = j.message.length > 70 ? j.message.slice(0, 67) + "..." : j.message;
        console.log(`| ${name} | ${j.case} | ${j.status || "none (reset)"} | ${j.first_byte_ms ?? "-"} | ${j.closed_ms} | ${msg.replace(/\|/g, "/")} |`);
      }' "$name"
    stop_server "framing-$name"
  done
fi
