"""FAISS against Milvus Lite behind the VectorIndex seam: what each costs to build and to ask, and what it finds.

For N synthetic unit vectors (default 100,000 at dim 512: the Gaussian mixture of index_recall.py, N/100
clusters of Zipf-like sizes, fixed seed) it builds, one after the other:

- `faiss (open)`: FaissIndex as `FaissIndex.open` builds it at N with the default `exact_index_max`
  (100,000): exact IndexFlatIP up to that many vectors, HNSW above;
- `faiss hnsw`: FaissIndex forced to HNSW (M 32, efConstruction 100, efSearch 128), the like-for-like
  approximate index;
- `milvus lite`: MilvusIndex on a Milvus Lite folder (HNSW, M 32, efConstruction 100, ef 128, inner product),
  as `MMKG_INDEX=milvus` opens it;

and prints a plain-text table of:

- build s: wall-clock seconds of `add` (ids and vectors in one call, normalisation, id bookkeeping, and for
  Milvus the presence check and gRPC inserts) plus `save()` (for Milvus Lite the flush that builds HNSW);
- p50 / p95 ms: single-query latency of `search(one query, k=10)`, one call at a time after 20 warm-up calls
  (for Milvus a gRPC round trip to the in-process Lite server);
- recall@10: the share of the exact top 10 (brute force over all N) found, over held-out queries.

Run: .venv/bin/python benchmarks/index_backends.py [--n 100000] [--dim 512] [--queries 500] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import milvus_lite
import numpy as np
import pymilvus
from index_recall import K, cpu_model, dataset, latencies_ms  # the sibling benchmark's data and timing

from mmkg.index.base import VectorIndex
from mmkg.index.faiss_index import FaissIndex, configure_threads
from mmkg.index.milvus_index import MilvusIndex


def exact_top(data: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    """Brute-force top K rows per query, in blocks (the truth every backend is scored against)."""
    out: list[set[int]] = []
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ data.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        out.extend(set(row.tolist()) for row in top)
    return out


def measure(
    name: str, make: Callable[[], VectorIndex], data: np.ndarray, queries: np.ndarray, truth: list[set[int]]
) -> None:
    ids = [f"v{i}" for i in range(len(data))]
    index = make()
    start = time.perf_counter()
    index.add(ids, data)
    index.save()
    build = time.perf_counter() - start
    found = [{int(i[1:]) for i, _ in row} for row in index.search(queries, K)]
    recall = float(np.mean([len(t & f) / K for t, f in zip(truth, found, strict=True)]))
    p50, p95 = latencies_ms(index, queries)
    kind = getattr(index, "kind", "?")
    print(f"{name:<13} {kind:<6} {len(index):>8} {build:>8.1f} {p50:>8.3f} {p95:>8.3f} {recall:>10.3f}", flush=True)
    close = getattr(index, "close", None)
    if close is not None:
        close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exact-index-max", type=int, default=100_000, help="as the setting of that name")
    args = parser.parse_args()

    threads = configure_threads()
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores available (os.cpu_count {os.cpu_count()})")
    print(
        f"faiss {faiss.__version__} ({threads} OpenMP threads for builds, 1 for single queries); pymilvus "
        f"{pymilvus.__version__}, milvus-lite {milvus_lite.__version__} (in-process gRPC server); python "
        f"{platform.python_version()}"
    )
    print(
        f"data: {args.n} x {args.dim} clustered unit vectors (N/100 clusters, Zipf-like sizes), seed {args.seed}; "
        f"{args.queries} held-out queries, k={K}; truth by brute force"
    )
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())} (other work shares these cores)")
    data, queries = dataset(args.n, args.queries, args.seed, dim=args.dim)
    truth = exact_top(data, queries)
    print()
    header = f"{'index':<13} {'kind':<6} {'vectors':>8} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="mmkg-index-backends-") as tmp:
        root = Path(tmp)
        measure(
            "faiss (open)",
            lambda: FaissIndex.open(root / "faiss", args.dim, args.exact_index_max),
            data,
            queries,
            truth,
        )
        measure("faiss hnsw", lambda: FaissIndex.open(root / "hnsw", args.dim, exact_max=0), data, queries, truth)
        measure(
            "milvus lite",
            lambda: MilvusIndex.connect(str(root / "milvus.db"), "images", args.dim),
            data,
            queries,
            truth,
        )
    print()
    print(f"load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
