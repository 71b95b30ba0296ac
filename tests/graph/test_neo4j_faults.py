"""Neo4j-only faults: bad credentials, no server, a server killed mid-write, hostile strings."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from neo4j import GraphDatabase

from mmkg.errors import StoreUnavailableError
from mmkg.graph import neo4j_server as server_mod
from mmkg.graph.neo4j_store import BASE, Neo4jGraphStore
from mmkg.graph.schema import Edge, Label, Node, Rel

pytestmark = pytest.mark.neo4j

CYPHER = '"}) MATCH (n) DETACH DELETE n //'
ODD_ENTITY = "`a`:b"




def raw(server: Any, cypher: str, **params: Any) -> list[dict[str, Any]]:
    """A query straight through the driver, to see what the store really wrote."""
    with GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver:
        records, _, _ = driver.execute_query(cypher, params)
        return [r.data() for r in records]


def test_wrong_password_is_one_clear_line(neo4j_server: Any) -> None:
    with pytest.raises(StoreUnavailableError) as info:
        Neo4jGraphStore(neo4j_server.uri, neo4j_server.user, neo4j_server.password + "-wrong")
    assert str(info.value) == f"Neo4j rejected the credentials for user {neo4j_server.user}"


def test_unknown_user_is_one_clear_line(neo4j_server: Any) -> None:
    with pytest.raises(StoreUnavailableError, match="^Neo4j rejected the credentials for user nobody$"):
        Neo4jGraphStore(neo4j_server.uri, "nobody", "x")


def test_closed_port_is_one_clear_line() -> None:
    port = server_mod.free_port()  # bound and released: nothing listens there now
    uri = f"bolt://127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        Neo4jGraphStore(uri, "neo4j", "whatever")
    assert str(info.value) == (
        f"cannot reach Neo4j at {uri}: connection refused — start it with `mmkg neo4j start` or set NEO4J_URI"
    )
    assert time.monotonic() - t0 < 30


def test_bad_uri_is_one_clear_line() -> None:
    with pytest.raises(StoreUnavailableError, match="^invalid Neo4j URI 'http://x:1'"):
        Neo4jGraphStore("http://x:1", "neo4j", "x")


# ------------------------------------------------------------------ killed in the middle of a write


def catalog(records: int, entities: int) -> tuple[list[Node], list[Edge]]:
    """A product-catalog-shaped graph: each record holds an image and a text, which link to 5 entities each."""
    nodes: list[Node] = [Node(f"ent:e{j}", Label.ENTITY, {"name": f"e{j}"}) for j in range(entities)]
    edges: list[Edge] = []
    for i in range(records):
        nodes += [
            Node(f"rec:{i}", Label.RECORD, {"source": "test", "n": i}),
            Node(f"img:{i}", Label.IMAGE, {"path": f"images/{i}.jpg"}),
            Node(f"txt:{i}", Label.TEXT, {"text": f"product {i}", "kind": "title"}),
        ]
        edges += [
            Edge(f"rec:{i}", f"img:{i}", Rel.HAS),
            Edge(f"rec:{i}", f"txt:{i}", Rel.HAS),
            Edge(f"txt:{i}", f"img:{i}", Rel.DESCRIBES),
        ]
        for k in range(5):
            edges.append(Edge(f"txt:{i}", f"ent:e{(i * 7 + k) % entities}", Rel.MENTIONS))
            edges.append(Edge(f"img:{i}", f"ent:e{(i * 11 + 3 * k) % entities}", Rel.DEPICTS, {"score": k / 10}))
    return nodes, edges


def test_server_killed_mid_write_then_rerun_gives_a_complete_graph_without_duplicates(
    neo4j_server: Any, neo4j_store_factory: Callable[[], Neo4jGraphStore]
) -> None:
    if neo4j_server.settings is None or neo4j_server.port is None:
        pytest.skip("needs the server this session started (MMKG_TEST_NEO4J_URI points elsewhere)")
    settings, port = neo4j_server.settings, neo4j_server.port
    neo4j_store_factory()  # wipes the database
    nodes, edges = catalog(records=600, entities=100)
    n_nodes, n_edges = len(nodes), len(edges)

    def write(store: Neo4jGraphStore) -> None:
        store.upsert_nodes(nodes)
        store.upsert_edges(edges)
        store.commit()

    store = Neo4jGraphStore(
        neo4j_server.uri, neo4j_server.user, neo4j_server.password, batch_size=100, max_retry_time=2.0
    )
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            write(store)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    pid = int(neo4j_server_status(settings)["pid"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once some edge batches are in, well before the end
        done = raw(neo4j_server, "MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"]
        if done > 0:
            break
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=120)
    store.close()
    assert not thread.is_alive()
    assert failure, "the write finished before the server was killed; make the graph bigger"
    assert isinstance(failure[0], StoreUnavailableError), repr(failure[0])
    assert "\n" not in str(failure[0]) and f"cannot reach Neo4j at {neo4j_server.uri}" in str(failure[0])

    info = server_mod.start(settings, port=port)  # recovery of the killed store happens here
    assert info.pid != pid
    partial_edges = raw(neo4j_server, "MATCH ()-[r]->() RETURN count(r) AS n")[0]["n"]
    assert 0 < partial_edges < n_edges  # it really was cut off in the middle

    rerun = neo4j_store_factory()  # a new store on the same (restarted) database
    write(rerun)
    node_counts, edge_counts = rerun.counts()
    assert sum(node_counts.values()) == n_nodes
    assert edge_counts == {
        "HAS": 1200,
        "DESCRIBES": 600,
        "MENTIONS": sum(1 for e in edges if e.type is Rel.MENTIONS),
        "DEPICTS": sum(1 for e in edges if e.type is Rel.DEPICTS),
        "CO_OCCURS": 0,
    }
    assert sum(edge_counts.values()) == len({e.key for e in edges}) == n_edges
    # Uniqueness, looked at directly: one node per id, one edge per (src, dst, type).
    assert raw(neo4j_server, "MATCH (n) RETURN count(n) AS n, count(DISTINCT n.id) AS ids")[0] == {
        "n": n_nodes,
        "ids": n_nodes,
    }
    dupes = raw(
        neo4j_server,
        "MATCH (a)-[r]->(b) WITH a, b, type(r) AS t, count(r) AS c WHERE c > 1 RETURN count(*) AS n",
    )
    assert dupes == [{"n": 0}]


def neo4j_server_status(settings: Any) -> dict[str, Any]:
    status = server_mod.status(settings)
    assert status["running"], status
    return status


# ------------------------------------------------------------------ hostile strings


def test_injection_strings_are_stored_verbatim_and_change_nothing_else(
    neo4j_store: Neo4jGraphStore, neo4j_server: Any
) -> None:
    store = neo4j_store
    store.upsert_nodes(
        [Node("rec:1", Label.RECORD), Node("img:1", Label.IMAGE, {"w": 3}), Node("ent:dog", Label.ENTITY)]
    )
    store.upsert_edges([Edge("rec:1", "img:1", Rel.HAS), Edge("img:1", "ent:dog", Rel.DEPICTS, {"score": 0.5})])
    before_nodes = raw(neo4j_server, "MATCH (n) RETURN n.id AS id, labels(n) AS l, properties(n) AS p ORDER BY id")
    before_edges = raw(neo4j_server, "MATCH (a)-[r]->(b) RETURN a.id AS a, type(r) AS t, b.id AS b ORDER BY a, t, b")

    caption = Node("txt:1", Label.TEXT, {"text": CYPHER, CYPHER: "key too"})
    odd = Node(ODD_ENTITY, Label.ENTITY, {"name": ODD_ENTITY, "aliases": [CYPHER, ODD_ENTITY]})
    store.upsert_nodes([caption, odd])
    store.upsert_edges([Edge("txt:1", ODD_ENTITY, Rel.MENTIONS, {"span": CYPHER})])
    # Labels and types come only from the enums: a hostile one is refused before anything is sent.
    with pytest.raises(ValueError):
        store.upsert_nodes([Node("x", f"Image`) {CYPHER}", {})])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.upsert_edges([Edge("rec:1", "img:1", f"HAS]->() {CYPHER}")])  # type: ignore[arg-type]

    got = raw(
        neo4j_server,
        "MATCH (n) WHERE n.id IN $ids RETURN n.id AS id, properties(n) AS p ORDER BY id",
        ids=["txt:1", ODD_ENTITY],
    )
    assert got == [
        {"id": ODD_ENTITY, "p": {"id": ODD_ENTITY, "name": ODD_ENTITY, "aliases": [CYPHER, ODD_ENTITY]}},
        {"id": "txt:1", "p": {"id": "txt:1", "text": CYPHER, CYPHER: "key too"}},
    ]
    assert store.get_nodes(["txt:1"])["txt:1"].props == {"text": CYPHER, CYPHER: "key too"}
    (edge, other) = store.neighbors("txt:1", rels=[Rel.MENTIONS])[0]
    assert other.id == ODD_ENTITY and edge.props == {"span": CYPHER}
    # Everything that was there is still there, unchanged; nothing but the new nodes and edge was added.
    after_nodes = raw(
        neo4j_server,
        "MATCH (n) WHERE NOT n.id IN $new RETURN n.id AS id, labels(n) AS l, properties(n) AS p ORDER BY id",
        new=["txt:1", ODD_ENTITY],
    )
    assert after_nodes == before_nodes
    after_edges = raw(neo4j_server, "MATCH (a)-[r]->(b) RETURN a.id AS a, type(r) AS t, b.id AS b ORDER BY a, t, b")
    assert sorted(after_edges, key=str) == sorted(
        [*before_edges, {"a": "txt:1", "t": "MENTIONS", "b": ODD_ENTITY}], key=str
    )
    labels = {r["label"] for r in raw(neo4j_server, "CALL db.labels() YIELD label RETURN label")}
    types = {r["t"] for r in raw(neo4j_server, "CALL db.relationshipTypes() YIELD relationshipType AS t RETURN t")}
    assert labels <= {BASE, *(label.value for label in Label)}
    assert types <= {rel.value for rel in Rel}
