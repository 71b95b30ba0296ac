"""How much the approximate vector index gives up against exact search, and what it buys.

For N synthetic unit vectors (dim 256, a Gaussian mixture with clusters of uneven size, like embeddings
of a catalogue: many near-duplicates of popular things, a long tail), it builds FaissIndex twice — exact
(IndexFlatIP) and approximate (HNSW, the index's own defaults) — and prints a plain-text table of:

- recall@10: the share of the exact top 10 that the approximate top 10 finds, over held-out queries;
- build: wall-clock seconds of one `FaissIndex.add` of all N vectors (normalisation and id map included);
- p50 / p95: single-query latency in ms, `FaissIndex.search(one query, k=10)` timed with
  `time.perf_counter` one call at a time after 20 warm-up calls.

Run: .venv/bin/python benchmarks/index_recall.py [--sizes 10000 100000] [--queries 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import faiss
import numpy as np

from mmkg.index.base import VectorIndex
from mmkg.index.faiss_index import FaissIndex, configure_threads

DIM = 256
K = 10


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Points around centres picked by weight; noise puts a point at cosine ~0.7 to its centre."""
    picks = rng.choice(len(centres), size=n, p=weights)
    x = centres[picks] + rng.standard_normal((n, centres.shape[1]), dtype=np.float32) / np.sqrt(centres.shape[1])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def dataset(n: int, n_queries: int, seed: int, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_clusters = max(50, n // 100)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8  # uneven cluster sizes
    weights /= weights.sum()
    return clustered(rng, n, centres, weights), clustered(rng, n_queries, centres, weights)


def latencies_ms(index: VectorIndex, queries: np.ndarray) -> tuple[float, float]:
    for q in queries[:20]:
        index.search(q[None, :], K)
    times = []
    for q in queries:
        start = time.perf_counter()
        index.search(q[None, :], K)
        times.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return float(p50), float(p95)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    threads = configure_threads()
    probe = FaissIndex(DIM)
    print(f"machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores available (os.cpu_count {os.cpu_count()})")
    print(
        f"faiss {faiss.__version__}, {threads} OpenMP threads for builds and batches, 1 for single queries; "
        f"numpy {np.__version__}; python {platform.python_version()}"
    )
    print(
        f"data: dim {DIM}, clustered unit vectors (N/100 clusters, Zipf-like sizes), seed {args.seed}; "
        f"{args.queries} held-out queries, k={K}"
    )
    print(f"HNSW: M={probe.hnsw_m}, efConstruction={probe.ef_construction}, efSearch={probe.ef_search}")
    print(f"load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())} (other work shares these cores)")
    print()
    header = f"{'N':>8}  {'index':<6} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        data, queries = dataset(n, args.queries, args.seed)
        ids = [f"v{i}" for i in range(n)]
        exact = FaissIndex(DIM, exact_max=n)
        start = time.perf_counter()
        exact.add(ids, data)
        exact_build = time.perf_counter() - start
        approx = FaissIndex(DIM, exact_max=0)
        start = time.perf_counter()
        approx.add(ids, data)
        approx_build = time.perf_counter() - start
        assert exact.kind == "flat" and approx.kind == "hnsw"

        truth = [{i for i, _ in row} for row in exact.search(queries, K)]
        found = [{i for i, _ in row} for row in approx.search(queries, K)]
        recall = float(np.mean([len(t & f) / K for t, f in zip(truth, found, strict=True)]))
        e50, e95 = latencies_ms(exact, queries)
        a50, a95 = latencies_ms(approx, queries)
        print(f"{n:>8}  {'exact':<6} {exact_build:>8.2f} {e50:>8.3f} {e95:>8.3f} {'1.000':>10}", flush=True)
        print(f"{n:>8}  {'hnsw':<6} {approx_build:>8.2f} {a50:>8.3f} {a95:>8.3f} {recall:>10.3f}", flush=True)
    print()
    print(f"load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
