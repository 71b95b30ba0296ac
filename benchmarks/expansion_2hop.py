"""2-hop expansion from 20 seeds, Neo4j vs the embedded store, on a graph shaped like the fashion catalog.

    .venv/bin/python benchmarks/expansion_2hop.py [--records 5000] [--reps 50] [--fanouts 8,32] [--uri URI]

The graph: built from the catalog's own products.csv (MMKG_DATA/fashion, default ../shared/data) the
way the ingest pipeline shapes it, without images or models: per product one Record, one Image and
one Text (its display name), HAS x2 and DESCRIBES; attribute entities `<column>:<value>` (gender,
masterCategory, subCategory, articleType, baseColour, season, year, usage) DEPICTed by the image
(score 1.0); word entities (display-name words found in at least two names) MENTIONed by the text;
5 zero-shot-style tags per image (DEPICTS to word entities, half from its own name, half by
popularity, score 0.2-0.9); CO_OCCURS between a record's entities (at most 30), with count and PMI.
Without the CSV, a synthetic Zipf-shaped catalog of the same size (benchmarks/neo4j_ingest.py).

Timed: `store.subgraph(seeds, hops=2, max_fanout=F)` (every edge type) from 20 seeds, 10 images and
10 texts drawn at random (a different draw per repetition, the same draws for both stores), wall time
per call after 3 warm-up calls; p50/p95 over the repetitions. Both stores answer the same (nodes and
edges compared on every call). The memory store is opened from its folder, as `mmkg search` does;
Neo4j is reached over Bolt on the same machine. Without --uri (or NEO4J_URI) the local server is
started with `mmkg.graph.neo4j_server.start()` in a temporary workspace and stopped at the end; a
server of your own is wiped first (every node), so point it only at a scratch database.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from itertools import combinations
from pathlib import Path

from neo4j import GraphDatabase

from mmkg.graph import neo4j_server
from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.neo4j_store import Neo4jGraphStore
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.settings import Settings

ATTRIBUTES = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage")
MAX_COOCCURRING = 30
SEEDS = 20
_WORD = re.compile(r"[a-z]+")


def fashion_graph(csv_path: Path, records: int, seed: int = 0) -> tuple[list[Node], list[Edge]]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = [row for _, row in zip(range(records), csv.DictReader(fh), strict=False)]
    rng = random.Random(seed)
    words_of = [sorted(set(_WORD.findall(row["productDisplayName"].lower()))) for row in rows]
    word_count = Counter(w for words in words_of for w in words)
    vocab = sorted(w for w, c in word_count.items() if c >= 2)
    popular = [f"ent:{w}" for w in vocab]
    weights = [word_count[w] for w in vocab]

    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    record_entities: list[list[str]] = []
    for row, words in zip(rows, words_of, strict=True):
        pid = row["id"]
        rec, img, txt = f"rec:fashion:{pid}", f"img:{int(pid):020d}", f"txt:{int(pid):020d}"
        attrs = [f"ent:{a}:{row[a].strip().lower()}" for a in ATTRIBUTES if row.get(a, "").strip()]
        mentioned = [f"ent:{w}" for w in words if word_count[w] >= 2]
        for eid in attrs:
            nodes[eid] = Node(eid, Label.ENTITY, {"name": eid[4:], "kind": "attribute"})
        for eid in mentioned:
            nodes[eid] = Node(eid, Label.ENTITY, {"name": eid[4:], "kind": "concept"})
        nodes[img] = Node(img, Label.IMAGE, {"path": row["image"], "width": 1080, "height": 1440, "record": rec})
        nodes[txt] = Node(
            txt, Label.TEXT, {"text": row["productDisplayName"], "kind": "productDisplayName", "record": rec}
        )
        edges += [Edge(rec, img, Rel.HAS), Edge(rec, txt, Rel.HAS), Edge(txt, img, Rel.DESCRIBES)]
        edges += [Edge(txt, e, Rel.MENTIONS, {"source": "text"}) for e in mentioned]
        edges += [Edge(img, e, Rel.DEPICTS, {"score": 1.0, "source": "attribute"}) for e in attrs]
        tags = set(rng.sample(mentioned, min(len(mentioned), 3)))
        while len(tags) < 5:
            tags.add(rng.choices(popular, weights)[0])
        edges += [
            Edge(img, e, Rel.DEPICTS, {"score": round(rng.uniform(0.2, 0.9), 4), "source": "tag"})
            for e in sorted(tags)
            if e not in attrs
        ]
        for e in tags:
            nodes.setdefault(e, Node(e, Label.ENTITY, {"name": e[4:], "kind": "concept"}))
        ents = list(dict.fromkeys(attrs + mentioned))
        record_entities.append(ents)
        nodes[rec] = Node(
            rec, Label.RECORD, {"source": "fashion", "source_id": pid, "complete": True, "entities": ents}
        )
    pairs: Counter[tuple[str, str]] = Counter()
    singles: Counter[str] = Counter()
    for ents in record_entities:
        unique = sorted(set(ents[:MAX_COOCCURRING]))
        singles.update(unique)
        pairs.update(combinations(unique, 2))
    n = len(record_entities)
    edges += [
        Edge(a, b, Rel.CO_OCCURS, {"count": c, "pmi": round(math.log(c * n / (singles[a] * singles[b])), 4)})
        for (a, b), c in sorted(pairs.items())
    ]
    return list(nodes.values()), edges


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def load(store: GraphStore, nodes: list[Node], edges: list[Edge]) -> float:
    t0 = time.perf_counter()
    store.upsert_nodes(nodes)
    for i in range(0, len(edges), 20_000):
        store.upsert_edges(edges[i : i + 20_000])
    store.commit()
    return time.perf_counter() - t0


def signature(sub: object) -> tuple[frozenset[str], frozenset[tuple[str, str, str]]]:
    return (
        frozenset(n.id for n in sub.nodes),  # type: ignore[attr-defined]
        frozenset((e.src, e.dst, e.type.value) for e in sub.edges),  # type: ignore[attr-defined]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("MMKG_DATA", "../shared/data") + "/fashion")
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--fanouts", default="8,32")
    parser.add_argument("--uri", default=os.environ.get("NEO4J_URI"), help="a scratch server (default: start one)")
    parser.add_argument("--user", default=os.environ.get("NEO4J_USER", "neo4j"))
    parser.add_argument("--password", default=os.environ.get("NEO4J_PASSWORD"))
    args = parser.parse_args()
    fanouts = [int(f) for f in args.fanouts.split(",")]

    la = os.getloadavg()
    print(
        f"machine: {platform.platform()}, {len(os.sched_getaffinity(0))} cores usable ({os.cpu_count()} in the box,"
        f" shared with other work), load average at start {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f} (1/5/15 min);"
        f" python {platform.python_version()}"
    )
    csv_path = Path(args.data) / "products.csv"
    if csv_path.is_file():
        nodes, edges = fashion_graph(csv_path, args.records)
        origin = f"from {csv_path} (first {args.records} products)"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from neo4j_ingest import catalog  # the ingest benchmark's synthetic catalog

        nodes, edges = catalog(args.records)
        origin = f"synthetic Zipf catalog ({csv_path} not found)"
    by_label = Counter(n.label.value for n in nodes)
    by_rel = Counter(e.type.value for e in edges)
    print(f"graph {origin}: {len(nodes)} nodes {dict(sorted(by_label.items()))},")
    print(f"  {len(edges)} edges {dict(sorted(by_rel.items()))}")
    degree: Counter[str] = Counter()
    for e in edges:
        degree[e.src] += 1
        degree[e.dst] += 1
    ent_deg = sorted((degree[n.id] for n in nodes if n.label is Label.ENTITY), reverse=True)
    print(f"entity degree: max {ent_deg[0]}, median {statistics.median(ent_deg):.0f}, top-5 {ent_deg[:5]}")

    rng = random.Random(1)
    images = [n.id for n in nodes if n.label is Label.IMAGE]
    texts = [n.id for n in nodes if n.label is Label.TEXT]
    draws = [rng.sample(images, SEEDS // 2) + rng.sample(texts, SEEDS // 2) for _ in range(args.reps + 3)]

    with tempfile.TemporaryDirectory(prefix="mmkg-expansion-bench-") as tmp:
        settings = Settings.load(home=Path(tmp) / "ws")
        with contextlib.ExitStack() as stack:
            if args.uri:
                if not args.password:
                    parser.error("--uri needs --password (or NEO4J_PASSWORD)")
                uri, user, password = args.uri, args.user, args.password
                print(f"neo4j: {uri} (given; wiped)")
            else:
                t0 = time.perf_counter()
                uri, user, password = stack.enter_context(neo4j_server.scratch(settings))
                print(f"neo4j: {neo4j_server.scratch_label(settings)}, started in {time.perf_counter() - t0:.1f} s")
            with GraphDatabase.driver(uri, auth=(user, password)) as driver, driver.session() as session:
                session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()
            mem_dir = Path(tmp) / "graph"
            with MemoryGraphStore(mem_dir) as mem:
                t_mem = load(mem, nodes, edges)
            with Neo4jGraphStore(uri, user, password) as neo:
                t_neo = load(neo, nodes, edges)
            items = len(nodes) + len(edges)
            print(f"loaded: memory {t_mem:.1f} s, neo4j {t_neo:.1f} s ({items / t_neo:.0f} nodes+edges/s)")

            results = []
            with MemoryGraphStore(mem_dir, read_only=True) as mem, Neo4jGraphStore(uri, user, password) as neo:
                assert mem.counts() == neo.counts()
                for fanout in fanouts:
                    times: dict[str, list[float]] = {"memory": [], "neo4j": []}
                    sizes: list[tuple[int, int]] = []
                    mismatches = 0
                    for rep, seeds in enumerate(draws):
                        subs = {}
                        for name, store in (("memory", mem), ("neo4j", neo)):
                            t0 = time.perf_counter()
                            subs[name] = store.subgraph(seeds, hops=2, max_fanout=fanout)
                            if rep >= 3:
                                times[name].append(time.perf_counter() - t0)
                        if rep >= 3:
                            sizes.append((len(subs["memory"].nodes), len(subs["memory"].edges)))
                            mismatches += signature(subs["memory"]) != signature(subs["neo4j"])
                    results.append((fanout, times, sizes, mismatches))

    print()
    print(f"2-hop expansion from {SEEDS} seeds (10 images + 10 texts), {args.reps} repetitions, all edge types")
    print(f"{'fanout':>6} {'store':<7} {'p50 ms':>8} {'p95 ms':>8} {'nodes':>7} {'edges':>7}  same result")
    for fanout, times, sizes, mismatches in results:
        n_nodes = statistics.median(s[0] for s in sizes)
        n_edges = statistics.median(s[1] for s in sizes)
        for name in ("memory", "neo4j"):
            p50, p95 = percentiles(times[name])
            same = f"{len(sizes) - mismatches}/{len(sizes)}" if name == "neo4j" else ""
            ms = f"{p50 * 1000:>8.1f} {p95 * 1000:>8.1f}"
            print(f"{fanout:>6} {name:<7} {ms} {n_nodes:>7.0f} {n_edges:>7.0f}  {same}")
    end = os.getloadavg()
    print(f"(nodes, edges: median subgraph size) load average at end {end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f}")


if __name__ == "__main__":
    main()
