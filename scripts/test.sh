#!/usr/bin/env bash
# The whole test suite, Neo4j tests included: the suite starts the local Neo4j server itself with the
# project's own `mmkg neo4j start` code (built with Maven on first use, cached in ~/.m2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
command -v mvn >/dev/null && command -v java >/dev/null || { echo "test: Java 17 and Maven are needed for the Neo4j tests" >&2; exit 1; }
bash scripts/install_browser.sh  # Debian chromium for the explorer's browser tests
.venv/bin/ruff check .
.venv/bin/python scripts/lint_imports.py --no-logo  # import-linter over the installed layout
exec .venv/bin/python -m pytest "$@"
