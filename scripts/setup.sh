#!/usr/bin/env bash
# Installs btx's build dependencies from Debian (sudo when not root) and builds it in Release
# into build/. Safe to re-run: installs only what is missing, rebuilds only what changed.
#   scripts/setup.sh            every target (the btx program, the tests, the benchmarks)
#   scripts/setup.sh btx        only the targets named
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-pthread python3-torch
  sentencepiece nlohmann-json3-dev libtomlplusplus-dev libcli11-dev
  libspdlog-dev libfmt-dev libssl-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev libgloo-dev
  libjs-chart.js libcpp-httplib-dev libonig-dev libutf8proc-dev
)
# The report's browser test also needs a browser: scripts/test.sh adds chromium.
PACKAGES+=(${BTX_EXTRA_PACKAGES:-})

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "btx setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

JOBS="${BTX_BUILD_JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$JOBS" ${1:+--target "$@"}
