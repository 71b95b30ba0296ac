"""Issue 13's measured scaling in one run: ingest throughput by engine, then the vector index backends.

    MMKG_HOME=<workspace with a trained lit model> .venv/bin/python benchmarks/scaling.py [--limit 1000] [--n 100000]

Runs `ingest_scaling.py` (the local engine with one and with one-per-core encoding threads, Ray Data with 1 and
2 actors, each into a fresh workspace, over the same first `--limit` fashion products) and then
`index_backends.py` (FAISS exact and HNSW against Milvus Lite at `--n` vectors: build, p50/p95, recall@10), one
after the other on the same machine, so the figures share one load. Each part's own docstring says how it
measures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> int:
    print(f"== {script} {' '.join(args)}  ({time.strftime('%H:%M:%S')})", flush=True)
    return subprocess.call([sys.executable, str(HERE / script), *args])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="fashion products ingested by each engine")
    parser.add_argument("--n", type=int, default=100_000, help="vectors in each index")
    args = parser.parse_args()
    codes = [run("ingest_scaling.py", "--limit", str(args.limit)), run("index_backends.py", "--n", str(args.n))]
    sys.exit(max(codes))


if __name__ == "__main__":
    main()
