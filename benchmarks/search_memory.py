"""Memory of each in-process structure search holds, measured on an ingested workspace (for docs/scaling.md).

    MMKG_HOME=<an ingested workspace> .venv/bin/python benchmarks/search_memory.py

Python-side structures (the embedded graph, the record table, BM25, the graph-refined vectors) are measured
with tracemalloc (numpy and scipy arrays included); the FAISS indexes live in C++ memory, so their size is
their serialised size on disk, which is what they occupy once loaded. Each figure is also divided by what
it grows with (nodes, edges, records, vectors), the figures docs/scaling.md extrapolates from.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmkg.encoders.factory import create_encoder
from mmkg.graph.memory import MemoryGraphStore
from mmkg.index.vectors import Vectors
from mmkg.retrieval.lexical import Bm25Index
from mmkg.retrieval.record_search import RecordRetriever
from mmkg.retrieval.records import RecordTable, _documents
from mmkg.retrieval.search import Query
from mmkg.settings import Settings
from mmkg.workspace import Workspace


def traced(build: Callable[[], Any]) -> tuple[Any, int]:
    """What `build` returns and the bytes it left allocated."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    out = build()
    gc.collect()
    return out, tracemalloc.get_traced_memory()[0] - before


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def row(name: str, size: int, per: str, count: int) -> None:
    unit = size / max(count, 1)
    print(f"  {name:34s} {size / 2**20:9.1f} MiB   {unit:10.0f} B per {per} ({count:,})")


def main() -> None:
    settings = Settings.load()
    ws = Workspace(settings.home)
    encoder = create_encoder(settings)
    tracemalloc.start()
    store, graph_bytes = traced(lambda: MemoryGraphStore(ws.graph_dir, read_only=True))
    nodes, edges = store.counts()
    n_nodes, n_edges = sum(nodes.values()), sum(edges.values())
    vectors = Vectors.open(settings, encoder.dim, encoder.fingerprint)
    table, table_bytes = traced(lambda: RecordTable.build(store, vectors))
    documents = _documents(table.rec_text, table.text_strings, table.attributes)
    _, bm25_bytes = traced(lambda: Bm25Index(documents))
    encoder.encode_texts(["warm-up"])  # the query towers, loaded before measuring (torch memory is not traced)

    def first_search() -> RecordRetriever:
        retriever = RecordRetriever(settings, store, vectors, encoder, mode="gnn", table=table)
        retriever.search(Query(text="navy blue shirt"), k=10)  # computes and caches the refined vectors
        return retriever

    _, refined_bytes = traced(first_search)
    tracemalloc.stop()

    print(f"workspace {settings.home}: nodes {nodes}, edges {edges}, encoder dim {encoder.dim}")
    print("in-process structures search holds:")
    row("graph store (networkx, embedded)", graph_bytes, "node+edge", n_nodes + n_edges)
    row("  the same per edge", graph_bytes, "edge", n_edges)
    row("record table (incl. BM25)", table_bytes, "record", len(table))
    row("  of which BM25 (bm25s)", bm25_bytes, "record", len(table))
    row("ranker + refined vectors (gnn)", refined_bytes, "record+entity", len(table) + len(table.entity_ids))
    for kind in ("images", "texts", "entities"):
        index = getattr(vectors, kind)
        row(f"FAISS {kind} ({getattr(index, 'kind', '?')})", folder_bytes(ws.index_dir / kind), "vector", len(index))
    store.close()


if __name__ == "__main__":
    main()
