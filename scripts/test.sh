#!/usr/bin/env bash
# The README's test command: install what is needed, build in Release, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# chromium renders the HTML report in the e2e test (headless, no network).
BTX_EXTRA_PACKAGES="chromium" scripts/setup.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
