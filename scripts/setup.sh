#!/usr/bin/env bash
# Set up mmkg: a virtual environment keyed by the lock file, cached outside the checkout and reused
# (torch alone is several GB), linked here as .venv, with this checkout installed into it (editable).
set -euo pipefail
cd "$(dirname "$0")/.."

cache_root="${MMKG_VENV_CACHE:-$HOME/.cache/mmkg}"
# Keyed by the lock file alone: it pins every dependency, and pyproject.toml changes (package folders,
# tool settings) only need the editable install below, not a new multi-GB environment.
key=$(sha256sum requirements.lock | cut -c1-16)
venv="$cache_root/venv-$key"

if [ ! -f "$venv/.complete" ]; then
  echo "setup: building environment $venv (first time for this lock file; a few minutes)" >&2
  mkdir -p "$cache_root"
  rm -rf "$venv"
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet --progress-bar off -r requirements.lock
  touch "$venv/.complete"
  # Keep only the three newest environments.
  ls -1dt "$cache_root"/venv-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
fi
ln -sfn "$venv" .venv
# Editable install of this checkout: seconds, and points the cached venv at this tree.
log=$(mktemp)
if ! .venv/bin/pip install --quiet --no-deps --no-build-isolation -e . >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
echo "setup: ready (.venv -> $venv)" >&2
