#!/usr/bin/env bash
# The README's test command: install what is needed, build in Release, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# chromium renders the HTML report in the e2e test (headless, no network); curl is the HTTP
# client that drives `btx serve` in its e2e test.
BTX_EXTRA_PACKAGES="chromium curl" scripts/setup.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
