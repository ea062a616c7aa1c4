#!/usr/bin/env bash
# Installs the headless browser of tests/test_site.py: Debian's chromium and its matching
# chromedriver (the test drives this system binary; Selenium downloads nothing), plus a Korean font
# so KorMedMCQA questions render as text, not boxes, in screenshots. Idempotent: does nothing when a
# browser and a chromedriver the test finds are already there (e.g. a CI image's Chrome).
set -euo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
browser="${MEDBENCH_CHROMIUM:-}"
for candidate in chromium chromium-browser google-chrome; do
  if [ -z "$browser" ] && have "$candidate"; then browser=$candidate; fi
done
driver="${MEDBENCH_CHROMEDRIVER:-}"
if [ -z "$driver" ] && have chromedriver; then driver=chromedriver; fi
if [ -z "$driver" ] && [ -x "${CHROMEWEBDRIVER:-/nonexistent}/chromedriver" ]; then driver=$CHROMEWEBDRIVER/chromedriver; fi
if [ -n "$browser" ] && [ -n "$driver" ]; then
  echo "install-browser: using $browser and $driver"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver fonts-nanum
