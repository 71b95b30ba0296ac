#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/ui, marker `browser`), if it is missing.
# Idempotent: does nothing when /usr/bin/chromium (or $MMKG_CHROMIUM) already runs.
# Playwright's own browser download cannot work on these machines; the tests drive this Chromium
# through the Python `playwright` package with `executable_path`.
set -euo pipefail

chromium="${MMKG_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ] && "$chromium" --version >/dev/null 2>&1; then
  echo "install_browser: $("$chromium" --version) at $chromium" >&2
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install_browser: $chromium is missing and apt-get is not available; install Chromium and set MMKG_CHROMIUM" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_browser: need root (or sudo) to apt-get install chromium" >&2; exit 1; }
  sudo="sudo"
fi
echo "install_browser: installing Debian chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
"$chromium" --version >&2
