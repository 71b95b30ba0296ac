"""Ingest throughput and search latency on the fashion catalog, in a fresh temporary workspace.

    .venv/bin/python benchmarks/fashion_ingest_search.py [--limit N] [--queries Q]

Uses the encoder trained in MMKG_HOME (default ./.mmkg); prints images/s for the whole ingest
(decode, encode, entities, graph and index writes, tagging) and p50/p95 latency of single
queries through the same code `mmkg search` runs (the record ranking engine), with the encoder already
loaded, in its three modes: `encoder`, `gnn` and `full`.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from mmkg.encoders.factory import create_encoder
from mmkg.graph.memory import MemoryGraphStore
from mmkg.index.vectors import Vectors
from mmkg.ingest.detect import open_source
from mmkg.ingest.images import load_image
from mmkg.ingest.pipeline import Ingestor
from mmkg.retrieval.record_search import RecordRetriever
from mmkg.retrieval.records import RecordTable
from mmkg.retrieval.search import Query
from mmkg.settings import Settings
from mmkg.workspace import Workspace


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("MMKG_DATA", "../shared/data") + "/fashion")
    parser.add_argument("--limit", type=int, default=None, help="first N products (default all)")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()

    settings = Settings.load()
    encoder = create_encoder(settings)
    source = open_source(Path(args.data))
    with open(Path(args.data) / "products.csv", newline="", encoding="utf-8") as fh:
        names = [row["productDisplayName"] for row in csv.DictReader(fh) if row.get("productDisplayName")]
    rng = random.Random(0)

    with tempfile.TemporaryDirectory(prefix="mmkg-bench-") as tmp:
        ws = settings.replace(home=Path(tmp))
        Workspace(ws.home).ensure()
        vectors = Vectors.open(ws, encoder.dim, encoder.fingerprint)
        with MemoryGraphStore(Workspace(ws.home).graph_dir) as store:
            records = source.records()
            if args.limit:
                records = (r for i, r in enumerate(source.records()) if i < args.limit)
            start = time.perf_counter()
            report = Ingestor(ws, store, vectors, encoder).run(records, source.name, total=args.limit, progress=False)
            ingest_s = time.perf_counter() - start
            nodes, edges = store.counts()

            text_queries = rng.sample(names, min(args.queries, len(names)))
            image_paths = sorted((Path(args.data) / "images").glob("*.jpg"))
            image_queries = [
                load_image(p)[0] for p in rng.sample(image_paths, min(args.queries // 2, len(image_paths)))
            ]
            t0 = time.perf_counter()
            table = RecordTable.build(store, vectors)
            state_s = time.perf_counter() - t0
            retrievers = {mode: RecordRetriever(ws, store, vectors, encoder, mode=mode, table=table)
                          for mode in ("encoder", "gnn", "full")}
            timings: dict[str, dict[str, list[float]]] = {}
            for mode, retriever in retrievers.items():
                retriever.search(Query(text="warm-up"), k=10)
                timings[mode] = {"text->image": [], "text->text": [], "image->image": [], "image->text": []}
                for q in text_queries:
                    for target, key in (("images", "text->image"), ("texts", "text->text")):
                        t0 = time.perf_counter()
                        retriever.search(Query(text=q), k=10, target=target)  # type: ignore[arg-type]
                        timings[mode][key].append((time.perf_counter() - t0) * 1000)
                for img in image_queries:
                    for target, key in (("images", "image->image"), ("texts", "image->text")):
                        t0 = time.perf_counter()
                        retriever.search(Query(image=img), k=10, target=target)  # type: ignore[arg-type]
                        timings[mode][key].append((time.perf_counter() - t0) * 1000)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, CPU only")
    print(f"encoder: {encoder.fingerprint}; store: memory; collection: {args.data}")
    print(
        f"ingest: {report.ingested} records, {report.new_images} images, {report.new_texts} texts, "
        f"{report.new_entities} entities, {len(report.skipped)} skipped, in {ingest_s:.1f} s "
        f"= {report.new_images / ingest_s:.1f} images/s (end to end, cold feature cache unless run before)"
    )
    print("graph: " + ", ".join(f"{k} {v}" for k, v in {**nodes, **edges}.items()))
    print(f"record table (records, their images, texts, entities, BM25 index) built in {state_s:.1f} s")
    print("search latency, single query, k=10, encoder loaded, includes query encoding and explanation:")
    for mode, by_key in timings.items():
        for key, samples in by_key.items():
            p50, p95 = percentiles(samples)
            print(f"  {mode:8s} {key:13s} n={len(samples):4d}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms")


if __name__ == "__main__":
    main()
