#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/ui, marker `browser`), if it is missing, and a
# CJK font (WenQuanYi Zen Hei) so that Chinese, Japanese and Korean text renders as glyphs, not boxes.
# Idempotent: does nothing when /usr/bin/chromium (or $MMKG_CHROMIUM) already runs and a CJK font is there.
# Playwright's own browser download cannot work on these machines; the tests drive this Chromium
# through the Python `playwright` package with `executable_path`.
set -euo pipefail

chromium="${MMKG_CHROMIUM:-/usr/bin/chromium}"
packages=()
if [ -x "$chromium" ] && "$chromium" --version >/dev/null 2>&1; then
  echo "install_browser: $("$chromium" --version) at $chromium" >&2
else
  packages+=(chromium fonts-dejavu-core)
fi
if ! { command -v fc-list >/dev/null && [ -n "$(fc-list :lang=zh family 2>/dev/null)" ]; }; then
  packages+=(fonts-wqy-zenhei)
fi
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install_browser: ${packages[*]} missing and apt-get is not available; install Chromium (set MMKG_CHROMIUM) and a CJK font" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install_browser: need root (or sudo) to apt-get install chromium" >&2; exit 1; }
  sudo="sudo"
fi
echo "install_browser: installing ${packages[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
"$chromium" --version >&2
