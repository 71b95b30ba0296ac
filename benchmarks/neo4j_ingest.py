"""Neo4j write rate (nodes + edges per second) for a graph shaped like the 5,000-product fashion catalog.

    .venv/bin/python benchmarks/neo4j_ingest.py [--records 5000] [--batch-sizes 100,500,1000,5000] [--uri URI]

The graph is synthetic but catalog-shaped: per product one Record, one Image and one Text (HAS x2,
DESCRIBES), the text MENTIONS 5 entities and the image DEPICTS 5 (scored), drawn Zipf-like from a pool
of 2,000 entities (a few colours and article types are very common, most names rare); CO_OCCURS
counts the pairs among each text's mentions. So 17,000 nodes and about 92,000 edges.

How measured: for each batch size, the database is wiped (constraints kept), a Neo4jGraphStore with
that `batch_size` is opened, and the wall time of `upsert_nodes(all nodes)` then `upsert_edges(all
edges)` is taken (validation read, UNWIND/MERGE transactions, commit). Then the same write is run
again on the now-full graph ("rewrite": every MERGE matches, what a re-ingest costs). A warm-up write
of a small graph comes first and is not reported. Without --uri,
the local server is started with `mmkg.graph.neo4j_server.start()` in a temporary workspace on a free
port and stopped at the end, and its start-up time is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from neo4j import GraphDatabase

from mmkg.graph import neo4j_server
from mmkg.graph.neo4j_store import Neo4jGraphStore
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.settings import Settings


def catalog(records: int, n_entities: int = 2000, seed: int = 0) -> tuple[list[Node], list[Edge]]:
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(n_entities)]  # Zipf-like popularity
    names = [f"ent:e{j}" for j in range(n_entities)]
    nodes: list[Node] = [Node(name, Label.ENTITY, {"name": name[4:]}) for name in names]
    edges: list[Edge] = []
    pairs: Counter[tuple[str, str]] = Counter()

    def pick(k: int) -> list[str]:
        chosen: set[str] = set()
        while len(chosen) < k:
            chosen.add(rng.choices(names, weights)[0])
        return sorted(chosen)

    for i in range(records):
        rec, img, txt = f"rec:fashion:{i}", f"img:{i:020d}", f"txt:{i:020d}"
        nodes += [
            Node(rec, Label.RECORD, {"source": "fashion", "source_id": str(i), "gender": rng.choice(["Men", "Women"])}),
            Node(img, Label.IMAGE, {"path": f"images/{i}.jpg", "width": 1080, "height": 1440}),
            Node(txt, Label.TEXT, {"text": f"Product {i} display name", "kind": "productDisplayName"}),
        ]
        edges += [Edge(rec, img, Rel.HAS), Edge(rec, txt, Rel.HAS), Edge(txt, img, Rel.DESCRIBES)]
        mentions = pick(5)
        edges += [Edge(txt, e, Rel.MENTIONS) for e in mentions]
        edges += [Edge(img, e, Rel.DEPICTS, {"score": round(rng.uniform(0.2, 0.9), 3)}) for e in pick(5)]
        for a_i, a in enumerate(mentions):
            for b in mentions[a_i + 1 :]:
                pairs[(a, b)] += 1
    edges += [Edge(a, b, Rel.CO_OCCURS, {"count": c}) for (a, b), c in sorted(pairs.items())]
    return nodes, edges


def wipe(uri: str, user: str, password: str) -> None:
    with GraphDatabase.driver(uri, auth=(user, password)) as driver, driver.session() as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()


def timed_write(store: Neo4jGraphStore, nodes: list[Node], edges: list[Edge]) -> float:
    t0 = time.perf_counter()
    store.upsert_nodes(nodes)
    store.upsert_edges(edges)
    store.commit()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--batch-sizes", default="100,500,1000,5000")
    parser.add_argument("--uri", help="an existing server (with --user/--password); default: start a local one")
    parser.add_argument("--user", default=os.environ.get("NEO4J_USER", "neo4j"))
    parser.add_argument("--password", default=os.environ.get("NEO4J_PASSWORD"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",")]

    nodes, edges = catalog(args.records)
    by_rel = Counter(e.type.value for e in edges)
    print(f"graph: {len(nodes)} nodes, {len(edges)} edges ({dict(by_rel)})")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}")

    with tempfile.TemporaryDirectory(prefix="mmkg-neo4j-bench-") as tmp:
        settings = Settings(home=Path(tmp))
        with contextlib.ExitStack() as stack:
            if args.uri:
                uri, user, password = args.uri, args.user, args.password
            else:
                t0 = time.perf_counter()
                uri, user, password = stack.enter_context(neo4j_server.scratch(settings))
                took = time.perf_counter() - t0
                print(f"local server: start() took {took:.1f} s (fresh data dir, jar already built)")
            # Warm-up (not reported): the server's JIT and query caches, so the first size is not penalised.
            warm_nodes, warm_edges = catalog(500, seed=1)
            wipe(uri, user, password)
            with Neo4jGraphStore(uri, user, password, batch_size=1000) as store:
                timed_write(store, warm_nodes, warm_edges)
            results = []
            header = ("batch", "fresh s", "items/s", "nodes/s", "edges/s", "rewrite s", "items/s")
            print(" ".join(f"{h:>{w}}" for h, w in zip(header, (6, 8, 9, 9, 9, 10, 9), strict=True)))
            for size in sizes:
                wipe(uri, user, password)
                with Neo4jGraphStore(uri, user, password, batch_size=size) as store:
                    t_nodes0 = time.perf_counter()
                    store.upsert_nodes(nodes)
                    t_nodes = time.perf_counter() - t_nodes0
                    t_edges0 = time.perf_counter()
                    store.upsert_edges(edges)
                    store.commit()
                    t_edges = time.perf_counter() - t_edges0
                    fresh = t_nodes + t_edges
                    rewrite = timed_write(store, nodes, edges)
                    got_nodes, got_edges = store.counts()
                assert sum(got_nodes.values()) == len(nodes) and sum(got_edges.values()) == len(edges)
                items = len(nodes) + len(edges)
                results.append((items / fresh, size))
                print(
                    f"{size:>6} {fresh:>8.1f} {items / fresh:>9.0f} {len(nodes) / t_nodes:>9.0f} "
                    f"{len(edges) / t_edges:>9.0f} {rewrite:>10.1f} {items / rewrite:>9.0f}"
                )
            best_rate, best_size = max(results)
            print(f"best: batch {best_size}, {best_rate:.0f} nodes+edges/s on a fresh graph")


if __name__ == "__main__":
    main()
