#!/usr/bin/env bash
# The README's test command: install what is needed, build in Release, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# chromium renders the HTML report in the e2e test (headless, no network); curl is the HTTP
# client that drives `btx serve` in its e2e test; clang and its libFuzzer runtime build the fuzz
# targets (scripts/fuzz.sh); python3-jinja2 is the real Jinja the chat-template engine is tested
# against.
BTX_EXTRA_PACKAGES="chromium curl clang libclang-rt-14-dev python3-jinja2" scripts/setup.sh
# The real third-party software the interop tests drive (tests/node/package.json, versions
# pinned by its package-lock.json): llama.cpp through node-llama-cpp's prebuilt binaries,
# Hugging Face's tokenizer and Jinja, the official OpenAI client. Needs Node.js 20 or newer.
if ! command -v npm > /dev/null; then
  echo "btx test: npm not found; install Node.js 20+ with npm (the interop tests need it)" >&2
  exit 1
fi
npm ci --prefix tests/node --omit=optional --no-audit --no-fund --loglevel=error
cd build
ctest --output-on-failure --timeout 900 "$@"
