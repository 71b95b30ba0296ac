"""Seed search on Neo4j's vector index against FAISS: recall@10 and single-query latency, same data.

    .venv/bin/python benchmarks/neo4j_vector_seeds.py [--sizes 10000,50000] [--queries 200] [--uri URI]

Data: synthetic clustered unit vectors, dim 256 (200 cluster centres, each vector its centre plus
Gaussian noise, then normalised; numpy seed 0); queries are 200 fresh vectors drawn the same way.
For each size the vectors go through the real write path: one Image node per vector written with
Neo4jGraphStore (ids `vbench:<i>`), then `Neo4jVectorIndex.add` (kind `bench`: label MmkgVecBench,
property and index `mmkg_vec_bench`, cosine, no quantization, HNSW m=16, ef_construction=100).

Compared, all through the VectorIndex API (`index.search(query, 10)`, one query per call):
* `faiss exact`  FaissIndex, exact (IndexFlatIP), the workspace default up to 100k vectors;
* `faiss hnsw`   FaissIndex forced to HNSW (M=32, efConstruction=100, efSearch=128: the project's settings);
* `neo4j k=10`   db.index.vector.queryNodes asked for exactly k (what a plain call does: Lucene's beam is k);
* `neo4j ef=100` the same index asked for max(k, 100) and cut to k (Neo4jVectorIndex's default).
Recall@10 is against the exact top-10 (numpy brute force). Latency: after 20 warm-up queries, the
wall time of each of the 200 queries, p50 and p95 (in ms); for Neo4j that includes the Bolt round
trip to a server on the same machine. Neo4j's index is queried right after the writes returned.

Without --uri (or NEO4J_URI) the local server is started with `mmkg.graph.neo4j_server.start()` in a
temporary workspace on a free port and stopped at the end. With a server of your own, only nodes with
ids `vbench:*` and the index `mmkg_vec_bench` are touched, and both are removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from neo4j import GraphDatabase

from mmkg.graph import neo4j_server
from mmkg.graph.neo4j_store import Neo4jGraphStore
from mmkg.graph.schema import Label, Node
from mmkg.index.base import VectorIndex
from mmkg.index.faiss_index import FaissIndex
from mmkg.index.neo4j_index import Neo4jVectorIndex, names
from mmkg.settings import Settings

DIM = 256
K = 10
KIND = "bench"
PREFIX = "vbench:"


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray, noise: float = 0.6) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + noise * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(
        DIM
    )
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed_search(index: VectorIndex, queries: np.ndarray, warmup: int = 20) -> tuple[list[list[str]], list[float]]:
    for q in queries[:warmup]:
        index.search(q, K)
    hits, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        row = index.search(q, K)[0]
        times.append(time.perf_counter() - t0)
        hits.append([node_id for node_id, _ in row])
    return hits, times


def recall(hits: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(h) & set(t)) / len(t) for h, t in zip(hits, truth, strict=True)]))


def clean(uri: str, user: str, password: str) -> None:
    """Remove what this benchmark wrote (its nodes, its index); nothing else."""
    with GraphDatabase.driver(uri, auth=(user, password)) as driver, driver.session() as session:
        session.run(
            "MATCH (n:MmkgNode) WHERE n.id STARTS WITH $prefix "
            "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS",
            prefix=PREFIX,
        ).consume()
        session.run("DROP INDEX $name IF EXISTS", name=names(KIND)[2]).consume()


def run_size(
    n: int, queries: np.ndarray, centres: np.ndarray, conn: tuple[str, str, str], seed: int
) -> list[tuple[str, float, float, float, str]]:
    uri, user, password = conn
    rng = np.random.default_rng(seed)
    vecs = clustered(rng, n, centres)
    ids = [f"{PREFIX}{i}" for i in range(n)]
    exact_scores = queries @ vecs.T
    truth = [[ids[j] for j in np.argsort(-row, kind="stable")[:K]] for row in exact_scores]

    clean(uri, user, password)
    t0 = time.perf_counter()
    with Neo4jGraphStore(uri, user, password) as store:
        store.upsert_nodes([Node(i, Label.IMAGE, {"path": f"images/{i[len(PREFIX) :]}.jpg"}) for i in ids])
    t_nodes = time.perf_counter() - t0
    neo = Neo4jVectorIndex.connect(uri, user, password, KIND, DIM, ef_search=K)
    t0 = time.perf_counter()
    assert neo.add(ids, vecs) == n
    t_vecs = time.perf_counter() - t0
    print(f"  {n}: graph nodes written in {t_nodes:.1f} s; vectors in {t_vecs:.1f} s ({n / t_vecs:.0f}/s)")

    rows: list[tuple[str, float, float, float, str]] = []
    exact = FaissIndex(DIM)
    exact.add(ids, vecs)
    hnsw = FaissIndex(DIM, exact_max=0)  # HNSW from the first vector
    t0 = time.perf_counter()
    hnsw.add(ids, vecs)
    t_build = time.perf_counter() - t0
    assert exact.kind == "flat" and hnsw.kind == "hnsw"
    for name, index, note in (
        ("faiss exact", exact, ""),
        ("faiss hnsw", hnsw, f"build {t_build:.1f} s"),
        ("neo4j k=10", neo, f"write {t_vecs:.1f} s"),
    ):
        hits, times = timed_search(index, queries)
        p50, p95 = percentiles(times)
        rows.append((name, recall(hits, truth), p50 * 1000, p95 * 1000, note))
    neo.ef_search = 100
    hits, times = timed_search(neo, queries)
    p50, p95 = percentiles(times)
    rows.append(("neo4j ef=100", recall(hits, truth), p50 * 1000, p95 * 1000, ""))
    neo.close()
    clean(uri, user, password)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--uri", default=os.environ.get("NEO4J_URI"), help="a server of your own (default: start one)")
    parser.add_argument("--user", default=os.environ.get("NEO4J_USER", "neo4j"))
    parser.add_argument("--password", default=os.environ.get("NEO4J_PASSWORD"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    load = os.getloadavg()
    cores = len(os.sched_getaffinity(0))
    print(
        f"machine: {platform.platform()}, {cores} cores usable ({os.cpu_count()} in the box, shared with other"
        f" work), load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)"
    )
    print(f"python {platform.python_version()}, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads)")
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = clustered(rng, args.queries, centres)

    with tempfile.TemporaryDirectory(prefix="mmkg-vector-bench-") as tmp:
        settings = Settings.load(home=Path(tmp))
        with contextlib.ExitStack() as stack:
            if args.uri:
                if not args.password:
                    parser.error("--uri needs --password (or NEO4J_PASSWORD)")
                conn = (args.uri, args.user, args.password)
                print(f"neo4j: {args.uri} (given)")
            else:
                t0 = time.perf_counter()
                conn = tuple(stack.enter_context(neo4j_server.scratch(settings)))  # type: ignore[assignment]
                print(f"neo4j: {neo4j_server.scratch_label(settings)}, started in {time.perf_counter() - t0:.1f} s")
            print(f"data: clustered unit vectors, dim {DIM}, 200 centres, seed 0; {args.queries} queries; k={K}")
            results = []
            for n in sizes:
                results.append((n, run_size(n, queries, centres, conn, seed=n)))

    print()
    print(f"{'vectors':>8} {'index':<13} {'recall@10':>9} {'p50 ms':>7} {'p95 ms':>7}  note")
    for n, rows in results:
        for name, rec, p50, p95, note in rows:
            print(f"{n:>8} {name:<13} {rec:>9.3f} {p50:>7.2f} {p95:>7.2f}  {note}")
    end = os.getloadavg()
    print(f"load average at end {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f}")


if __name__ == "__main__":
    main()
