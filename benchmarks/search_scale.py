"""Search latency at 100k records, on the `memory` and `neo4j` stores: p50/p95 of one search by stage, the
candidate ranking's overlap@10 with the exact one, and the resident size of the record table and indexes.

How the 100k workspace is built (encoding 100k real images would take hours on this machine): from a
workspace holding a real ingested catalog (`--source`, e.g. the 5,000 fashion products), every record is
copied, with its image and text, its HAS, DEPICTS (attributes and zero-shot tags), MENTIONS and DESCRIBES
edges, until there are `--records` records. Copy 0 is the catalog itself; copy c > 0 gets ids suffixed
`~c` (`rec:fashion:10000~3`, `img:...~3`, `txt:...~3`, source id `10000-3`), the same texts, attributes
and entities (the entity nodes are shared, as in a real catalog where many products are white sports
shoes), and image and text vectors that are the real ones plus Gaussian noise (`--noise` per dimension,
0.02: cosine about 0.91 to the original, a near-variant), re-normalised. Everything is written through
the normal APIs: `GraphStore.upsert_nodes/upsert_edges/commit` and `VectorIndex.add/save`; the entity
vectors and the tag calibration are copied as they are. The record table, search's own structure, is then
built from the store as `mmkg search` builds it (`open_table`), and cached in the workspace.

A search is timed as `mmkg search` and the API run it (`RecordRetriever.search`, all signals, graph
expansion and explanations included): query encoding and linking (`prepare`) are timed apart from the
rest (`ranked`), which is broken down into sparse signals (BM25, attributes), dense signals (nearest rows
and exact scores of the candidates), graph expansion, fusion, and hits with their explanations. Store
round trips per search are counted. Overlap@10 compares the candidate ranking with the exact one
(`RecordRanker.score`, every record scored) on the 100k workspace and, forced, on the source catalog.

    .venv/bin/python benchmarks/search_scale.py --source WS_WITH_FASHION --home /tmp/ws100k --store memory
    .venv/bin/python benchmarks/search_scale.py --source WS_WITH_FASHION --home /tmp/ws100k-neo --store neo4j

The source workspace's trained encoder (`models/`) is copied into `--home`. With `--store neo4j` the
workspace's own local Neo4j server is started (and stopped at the end unless it was already running).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mmkg.collection import open_collection
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.retrieval.ranker import RecordRanker
from mmkg.retrieval.record_search import RecordRetriever, open_table
from mmkg.retrieval.search import Query
from mmkg.settings import Settings
from mmkg.workspace import Workspace

TEXT_QUERIES = [
    "white sports shoes for men", "blue denim jeans", "a red dress for women", "black leather handbag",
    "casual cotton t-shirt", "analog watch with a steel strap", "summer skirt", "formal shirt for office",
    "black tshirt for men", "women's pink top", "grey track pants", "brown leather belt", "kids shorts",
    "navy blue polo shirt", "sunglasses for women", "running shoes", "green kurta", "men's formal shoes",
    "silver watch for women", "yellow casual sandals", "backpack for travel", "purple scarf",
    "striped shirt", "white heels for party",
]
BATCH = 2000


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1000 * statistics.median(seconds), 1), "p95_ms": round(1000 * pct(seconds, 0.95), 1)}


# --- building the workspace ----------------------------------------------------------------------


def build(source: Settings, target: Settings, n_records: int, noise: float) -> dict[str, Any]:
    """Copy the source catalog into `target` until it holds `n_records` records (see the module docstring)."""
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    with open_collection(source, read_only=True) as src:
        s = src.store
        records = sorted((n for n in s.iter_nodes(Label.RECORD) if n.props.get("complete")), key=lambda n: n.id)
        out_edges: dict[str, list[Edge]] = defaultdict(list)
        for rel in (Rel.HAS, Rel.DEPICTS, Rel.MENTIONS, Rel.DESCRIBES):
            for e in s.iter_edges(rel):
                out_edges[e.src].append(e)
        members = {r.id: [e.dst for e in out_edges[r.id] if e.type is Rel.HAS] for r in records}
        member_nodes = s.get_nodes(sorted({m for ms in members.values() for m in ms}))
        entities = list(s.iter_nodes(Label.ENTITY))
        co_occurs = list(s.iter_edges(Rel.CO_OCCURS))
        image_ids = sorted(i for i in member_nodes if i.startswith("img:") and i in src.vectors.images)
        text_ids = sorted(i for i in member_nodes if i.startswith("txt:") and i in src.vectors.texts)
        vec = {**dict(zip(image_ids, src.vectors.images.get(image_ids), strict=True)),
               **dict(zip(text_ids, src.vectors.texts.get(text_ids), strict=True))}
        ent_ids = sorted(e.id for e in entities if e.id in src.vectors.entities)
        ent_vecs = src.vectors.entities.get(ent_ids)
    for name in ("tag_calibration.json",):
        if (Path(source.home) / name).is_file():
            shutil.copy(Path(source.home) / name, Path(target.home) / name)

    written = 0
    with open_collection(target) as dst:
        dst.store.upsert_nodes(entities)
        dst.store.upsert_edges(co_occurs)
        dst.vectors.entities.add(ent_ids, ent_vecs)
        copy = 0
        while written < n_records:
            for lo in range(0, len(records), BATCH):
                chunk = records[lo : lo + BATCH][: n_records - written]
                if not chunk:
                    break
                _write_copy(dst.store, dst.vectors, chunk, copy, members, member_nodes, out_edges, vec, noise, rng)
                written += len(chunk)
            copy += 1
        dst.vectors.save()
    Workspace(Path(target.home)).bump_revision()
    return {"records": written, "copies": copy, "source_records": len(records),
            "build_seconds": round(time.perf_counter() - started, 1)}


def _write_copy(store: GraphStore, vectors: Any, chunk: list[Node], copy: int, members: dict[str, list[str]],
                member_nodes: dict[str, Node], out_edges: dict[str, list[Edge]], vec: dict[str, np.ndarray],
                noise: float, rng: np.random.Generator) -> None:
    """One batch of records of copy number `copy`: nodes, edges and (perturbed) vectors."""
    def rename(node_id: str) -> str:
        return node_id if copy == 0 or node_id.startswith("ent:") else f"{node_id}~{copy}"

    nodes: list[Node] = []
    edges: list[Edge] = []
    new_vecs: dict[str, list[tuple[str, np.ndarray]]] = {"img": [], "txt": []}
    for rec in chunk:
        for m in members[rec.id]:
            node = member_nodes[m]
            nodes.append(Node(rename(m), node.label, {**node.props, "record": rename(str(node.props.get("record")))}))
            edges += [Edge(rename(e.src), rename(e.dst), e.type, e.props) for e in out_edges[m]]
            if m in vec:
                v = vec[m] if copy == 0 else vec[m] + rng.normal(0.0, noise, vec[m].shape).astype(np.float32)
                new_vecs[m[:3]].append((rename(m), v / np.linalg.norm(v)))
        edges += [Edge(rename(e.src), rename(e.dst), e.type, e.props) for e in out_edges[rec.id]]
    for kind, index in (("img", vectors.images), ("txt", vectors.texts)):  # vectors first, as ingest saves them
        if new_vecs[kind]:
            index.add([i for i, _ in new_vecs[kind]], np.stack([v for _, v in new_vecs[kind]]).astype(np.float32))
    sid = (lambda r: r.props.get("source_id")) if copy == 0 else (lambda r: f"{r.props.get('source_id')}-{copy}")
    store.upsert_nodes(nodes + [Node(rename(r.id), Label.RECORD, {**r.props, "source_id": sid(r)}) for r in chunk])
    store.upsert_edges(edges)
    store.commit()


# --- measuring --------------------------------------------------------------------------------------


class CountingStore:
    """Counts the calls that reach the graph store (each one a round trip on Neo4j)."""

    def __init__(self, store: GraphStore) -> None:
        self.calls = 0
        for name in ("get_nodes", "existing_ids", "neighbors", "subgraph", "shortest_paths"):
            original = getattr(store, name)

            def counted(*args: Any, _f: Any = original, **kwargs: Any) -> Any:
                self.calls += 1
                return _f(*args, **kwargs)

            setattr(store, name, counted)


def overlap_at_10(ranker: RecordRanker, retriever: RecordRetriever, queries: list[Query]) -> dict[str, float]:
    """Mean share of the exact top 10 (every record scored) that the candidate ranking also puts in its top 10;
    and the share of its top 10 that score, exactly, at least the exact 10th best less 1e-3 (copies of a record
    tie to within float rounding, so two equally good lists can differ)."""
    rows = retriever.candidates("images", None)
    shares = []
    as_good = []
    for query in queries:
        qs, _ = retriever.prepare(query)
        w = retriever.weights(qs.kind, "images")
        exact = ranker.score(qs, w).fused[0][rows]
        fast = ranker.search_scores(qs, w, within=rows).fused[0][rows]
        top_exact = set(rows[np.argsort(-exact, kind="stable")[:10]])
        top_fast = set(rows[np.argsort(-fast, kind="stable")[:10]])
        shares.append(len(top_exact & top_fast) / 10)
        tenth = np.sort(exact)[-10]
        exact_by_row = dict(zip(rows.tolist(), exact.tolist(), strict=True))
        as_good.append(sum(exact_by_row[r] >= tenth - 1e-3 for r in top_fast) / 10)
    return {"overlap": round(float(np.mean(shares)), 4), "as_good": round(float(np.mean(as_good)), 4)}


def measure(settings: Settings, queries: list[Query], repeats: int, k: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rss0 = rss_mb()
    with open_collection(settings, read_only=True) as col:
        counter = CountingStore(col.store)
        rss_open = rss_mb()
        t0 = time.perf_counter()
        table = open_table(settings, col.store, col.vectors, col.encoder)
        out["table_open_s"] = round(time.perf_counter() - t0, 1)
        rss_table = rss_mb()
        t0 = time.perf_counter()
        retriever = RecordRetriever(settings, col.store, col.vectors, col.encoder, table=table)
        out["retriever_ready_s"] = round(time.perf_counter() - t0, 1)
        rss_ready = rss_mb()
        pkl = Workspace(Path(settings.home)).index_dir / "records.pkl"
        out["memory_mb"] = {"process_after_open": round(rss_open - rss0), "record_table": round(rss_table - rss_open),
                            "ranker_and_candidate_indexes": round(rss_ready - rss_table),
                            "process_total": round(rss_ready), "records_pkl_file": round(pkl.stat().st_size / 2**20),
                            "vector_index_files": round(sum(f.stat().st_size for f in pkl.parent.rglob("*")
                                                            if f.is_file() and f != pkl) / 2**20),
                            "peak_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
        out["records"] = len(table)
        prepared = []
        for q in queries:  # warm-up, and the prepared queries for timing the rest alone
            prepared.append(retriever.prepare(q))
            retriever.search(q, k=k)
        encode: list[float] = []
        total: list[float] = []
        stages: dict[str, list[float]] = defaultdict(list)
        calls: list[int] = []
        for _ in range(repeats):
            for q, (qs, ents) in zip(queries, prepared, strict=True):
                before = counter.calls
                t0 = time.perf_counter()
                retriever.prepare(q)
                encode.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                hits = retriever.ranked(qs, ents, k, "images")
                took = time.perf_counter() - t0
                assert len(hits) == k
                total.append(took)
                calls.append(counter.calls - before)
                timed = dict(retriever.ranker.timings)
                for name, secs in timed.items():
                    stages[name].append(secs)
                stages["hits_and_explanations"].append(took - sum(timed.values()))
        out["search"] = summary(total)
        out["query_encoding_and_linking"] = summary(encode)
        out["stages"] = {name: summary(v) for name, v in stages.items()} if len(table) > retriever.ranker.exact_max \
            else "every record scored exactly (collection within exact_max)"
        out["store_round_trips_per_search"] = {"max": max(calls), "mean": round(float(np.mean(calls)), 2),
                                               "during_prepare_only": True}
        out["queries"] = len(queries) * repeats
        out["overlap_at_10_vs_exact"] = overlap_at_10(retriever.ranker, retriever, queries)
    return out


def source_overlap(source: Settings, queries: list[Query]) -> dict[str, float]:
    """Overlap@10 of the candidate ranking (forced) with the exact one on the source catalog itself."""
    with open_collection(source, read_only=True) as col:
        table = open_table(source, col.store, col.vectors, col.encoder, cache=False)  # nothing written to the source
        retriever = RecordRetriever(source, col.store, col.vectors, col.encoder, table=table)
        forced = RecordRanker(retriever.table, retriever.ranker.config, exact_max=0)
        for kind in ("text", "image"):
            forced.prepare_search(retriever.weights(kind, "images"))
        return overlap_at_10(forced, retriever, queries)


def image_queries(settings: Settings, n: int) -> list[Query]:
    from PIL import Image

    with open_collection(settings, read_only=True) as col:
        paths = [str(node.props.get("path", "")) for node in col.store.iter_nodes(Label.IMAGE)]
    found = sorted(p for p in paths if p and Path(p).is_file())[:: 97][:n]
    return [Query(image=Image.open(p).convert("RGB")) for p in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="workspace with an ingested catalog and a trained encoder")
    parser.add_argument("--home", required=True, help="the workspace to build (reused when it already holds it)")
    parser.add_argument("--store", default="memory", choices=["memory", "neo4j"])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--noise", type=float, default=0.02)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the query set")
    parser.add_argument("--image-queries", type=int, default=8)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--no-source-overlap", action="store_true")
    parser.add_argument("--build-only", action="store_true", help="build the workspace and its record table, then stop")
    args = parser.parse_args()

    source = Settings.load(home=Path(args.source), store=os.environ.get("MMKG_STORE", "memory"))
    target = Settings.load(home=Path(args.home), store=args.store)
    Workspace(Path(target.home)).ensure()
    if not any((Path(target.home) / "models").glob("*/config.json")):  # the trained encoder heads
        shutil.copytree(Path(source.home) / "models", Path(target.home) / "models", dirs_exist_ok=True)
    started_server = False
    if args.store == "neo4j":
        from mmkg.graph import neo4j_server

        if neo4j_server.status(target).get("running") is not True:
            neo4j_server.start(target, port=neo4j_server.free_port())
            started_server = True
    try:
        report: dict[str, Any] = {"store": args.store, "home": str(Path(args.home).resolve())}
        with open_collection(target, read_only=True) as col:
            have = col.store.counts()[0].get("Record", 0)
        if have < args.records:
            report["build"] = build(source, target, args.records, args.noise)
            print("built:", json.dumps(report["build"]), flush=True)
        if args.build_only:
            with open_collection(target, read_only=True) as col:
                t0 = time.perf_counter()
                open_table(target, col.store, col.vectors, col.encoder)
                print("record table built in", round(time.perf_counter() - t0, 1), "s", flush=True)
            return
        queries = [Query(text=t) for t in TEXT_QUERIES] + image_queries(source, args.image_queries)
        report.update(measure(target, queries, args.repeats, args.k))
        if not args.no_source_overlap:
            report["source_overlap_at_10_forced_candidates"] = source_overlap(source, queries)
        print(json.dumps(report, indent=1))
    finally:
        if started_server:
            from mmkg.graph import neo4j_server

            neo4j_server.stop(target)


if __name__ == "__main__":
    main()
