"""The `neo4j` GraphStore backend: the same contract as the embedded store, over the Bolt driver.

Layout in Neo4j: every node carries the label `MmkgNode` (unique `id`, the key every lookup goes
through) plus its schema label (also unique on `id`, used to list one label in id order). An edge is
`(a)-[:TYPE]->(b)`; CO_OCCURS is stored once per pair with src < dst.

Cypher text is built only from the Label and Rel enums and from validated integers (the hop bound of a
variable-length pattern cannot be a parameter); every value travels as a parameter.

Property values: what the embedded store accepts (str, int, float, bool and lists of them) is returned
unchanged. Neo4j stores only homogeneous lists of one type, 64-bit integers and valid UTF-8, so a value
it cannot hold as it is (a list mixing types such as [1, 2.5] or [True, 1], a huge int, a string with a
lone surrogate) is stored JSON-encoded under the key `__json__<key>` and decoded on the way out; a
node property named `id` is stored the same way, so it cannot clobber the node's key. Maps are refused
with ValueError, exactly as the embedded store refuses them.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from neo4j import Driver, ManagedTransaction

from mmkg.errors import MmkgError
from mmkg.graph.neo4j_client import Neo4jClient, chunks, open_driver
from mmkg.graph.schema import EDGE_ENDPOINTS, WEIGHT_PROPERTY, Edge, Label, Node, Props, Rel, Subgraph, check_props
from mmkg.graph.schema import Path as GPath
from mmkg.graph.store import Direction, GraphStore

log = logging.getLogger(__name__)

BASE = "MmkgNode"
JSON_PREFIX = "__json__"
_INT64 = (-(2**63), 2**63 - 1)
_PAGE = 2000
_ALL = 2**31 - 1  # "no cap" for list slices in Cypher (which take 32-bit bounds)


# Edge weight for fan-out ranking, the schema's rule (`WEIGHT_PROPERTY`; any other edge weighs 1).
_WEIGHT = (
    "CASE type(r) " + " ".join(f"WHEN '{rel}' THEN r.{key}" for rel, key in WEIGHT_PROPERTY.items()) + " ELSE 1.0 END",
    # then: numbers as floats, booleans as 0/1, anything else (missing, text, list) as 1
    "CASE WHEN w0 IS :: INTEGER | FLOAT THEN toFloat(w0) WHEN w0 IS :: BOOLEAN "
    "THEN CASE WHEN w0 THEN 1.0 ELSE 0.0 END ELSE 1.0 END",
)


# --- property encoding -------------------------------------------------------------------------


def _native_scalar(v: Any) -> bool:
    """Can Neo4j store this scalar and give back the same Python value?"""
    if isinstance(v, bool | float):
        return True
    if isinstance(v, int):
        return _INT64[0] <= v <= _INT64[1]
    if isinstance(v, str):
        if v.isascii():
            return True
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return False


def _native(v: Any) -> bool:
    if isinstance(v, list):
        if not v:
            return True
        kind = type(v[0])
        return all(type(x) is kind for x in v) and all(_native_scalar(x) for x in v)
    return _native_scalar(v)


def _json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=True, allow_nan=True)


def _encode(props: Props, *, merge: bool, reserved: frozenset[str]) -> dict[str, Any]:
    """Props as Neo4j will hold them. With `merge`, the other form of each key is set to null, so that
    `SET n += map` removes a stale encoded (or plain) copy when a value changes form."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        plain_ok = key not in reserved and not key.startswith(JSON_PREFIX)
        if plain_ok and _native(value):
            out[key] = value
            if merge:
                out[JSON_PREFIX + key] = None
        else:
            out[JSON_PREFIX + key] = _json(value)
            if merge and plain_ok:
                out[key] = None
    return out


VECTOR_PREFIX = "mmkg_vec_"
"""Vectors a Neo4j vector index keeps on nodes (index/neo4j_index.py): never part of `Node.props`."""


def _node_props(var: str) -> str:
    """Cypher for a node's properties without its stored vectors, as [key, value] pairs (read server side:
    shipping 256 floats per node to drop them here made node reads ~9x slower)."""
    return f"[k IN keys({var}) WHERE NOT k STARTS WITH '{VECTOR_PREFIX}' | [k, {var}[k]]]"


def _decode(stored: dict[str, Any], *, skip: str | None = None) -> Props:
    out: Props = {}
    for key, value in stored.items():
        if key == skip:
            continue
        if key.startswith(JSON_PREFIX):
            out[key[len(JSON_PREFIX) :]] = json.loads(value)
        else:
            out[key] = list(value) if isinstance(value, list) else value
    return out


_NODE_RESERVED = frozenset({"id"})
_EDGE_RESERVED: frozenset[str] = frozenset()


def _rel_filter(rels: Iterable[Rel] | None) -> str:
    """`:A|B` for a pattern (from the enum only), or '' for every type."""
    if rels is None:
        return ""
    wanted = sorted({Rel(r).value for r in rels})
    if not wanted:
        return ":__none__"  # an empty filter matches nothing, as in the embedded store
    return ":" + "|".join(wanted)


# --- the store ---------------------------------------------------------------------------------


class Neo4jGraphStore(Neo4jClient, GraphStore):
    """GraphStore on a Neo4j 5 server. Every write is committed in its own transaction(s) of at most
    `batch_size` rows, so `commit()` has nothing left to do; a write re-run after a crash is idempotent."""

    def __init__(
        self,
        uri: str,
        user: str,
        password: str,
        database: str = "neo4j",
        *,
        batch_size: int = 5000,
        connection_timeout: float = 5.0,
        max_retry_time: float = 15.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.uri = uri
        self.user = user
        self.database = database
        self.batch_size = batch_size
        self._closed = False
        self.what = f"Neo4j graph store at {uri}"
        self._driver: Driver = open_driver(uri, user, password, connection_timeout, max_retry_time)
        try:
            with self._guard():
                self._driver.verify_connectivity()
                self._ensure_schema()
        except BaseException:
            self._driver.close()
            raise

    # ------------------------------------------------------------------ plumbing

    def _write_rows(self, cypher: str, rows: list[dict[str, Any]]) -> None:
        """`UNWIND $rows` in transactions of `batch_size` rows (each retried on transient errors)."""
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]

            def work(tx: ManagedTransaction, chunk: list[dict[str, Any]] = chunk) -> None:
                tx.run(cypher, rows=chunk).consume()

            self._write(work)

    def _ensure_schema(self) -> None:
        """Uniqueness constraints (each backed by an index) on `id`: for the base label and each label."""
        wanted = {"mmkg_node_id": BASE, **{f"mmkg_{label.value.lower()}_id": label.value for label in Label}}
        with self._driver.session(database=self.database) as session:
            present = {r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name")}
            missing = {name: label for name, label in wanted.items() if name not in present}
            for name, label in missing.items():
                session.run(f"CREATE CONSTRAINT {name} IF NOT EXISTS FOR (n:{label}) REQUIRE n.id IS UNIQUE").consume()
            if missing:
                session.run("CALL db.awaitIndexes(300)").consume()

    # ------------------------------------------------------------------ writes

    def upsert_nodes(self, nodes: Sequence[Node]) -> None:
        self._check_open()
        batch_labels: dict[str, Label] = {}
        checked: list[tuple[str, Label, Props]] = []
        for node in nodes:
            if not isinstance(node.id, str) or not node.id:
                raise ValueError(f"node id must be a non-empty string, got {node.id!r}")
            label = Label(node.label)
            known = batch_labels.get(node.id)
            if known is not None and known is not label:
                raise ValueError(f"node {node.id!r} is a {known}; it cannot be upserted as a {label}")
            batch_labels[node.id] = label
            checked.append((node.id, label, check_props(node.props, node)))
        if not checked:
            return
        stored = self._labels_of(list(batch_labels))
        for node_id, label in batch_labels.items():
            known = stored.get(node_id)
            if known is not None and known is not label:
                raise ValueError(f"node {node_id!r} is a {known}; it cannot be upserted as a {label}")
        by_label: dict[Label, list[dict[str, Any]]] = {}
        for node_id, label, props in checked:
            by_label.setdefault(label, []).append(
                {"id": node_id, "props": _encode(props, merge=True, reserved=_NODE_RESERVED)}
            )
        for label, rows in by_label.items():
            # ON CREATE/ON MATCH rather than a trailing SET: the planner then needs no Eager (a full
            # buffering of the batch) to keep the id lookup and the property write apart.
            cypher = (
                f"UNWIND $rows AS row MERGE (n:{BASE} {{id: row.id}}) "
                f"ON CREATE SET n:{label.value}, n += row.props ON MATCH SET n += row.props"
            )
            self._write_rows(cypher, rows)

    def upsert_edges(self, edges: Sequence[Edge]) -> None:
        self._check_open()
        if not edges:
            return
        labels = self._labels_of(list({end for e in edges for end in (e.src, e.dst)}))
        by_rel: dict[Rel, list[dict[str, Any]]] = {}
        for edge in edges:
            rel = Rel(edge.type)
            src, dst = edge.src, edge.dst
            name = f"{rel} edge {src!r} -> {dst!r}"
            for end in (src, dst):
                if end not in labels:
                    raise ValueError(f"cannot write {name}: node {end!r} does not exist")
            allowed_src, allowed_dst = EDGE_ENDPOINTS[rel]
            if labels[src] not in allowed_src or labels[dst] not in allowed_dst:
                raise ValueError(
                    f"cannot write {name}: it joins {labels[src]} -> {labels[dst]}, but {rel} joins "
                    f"{'|'.join(sorted(allowed_src))} -> {'|'.join(sorted(allowed_dst))}"
                )
            if rel is Rel.CO_OCCURS:
                if src == dst:
                    raise ValueError(f"cannot write {name}: an entity does not co-occur with itself")
                if src > dst:
                    src, dst = dst, src
            props = _encode(check_props(edge.props, name), merge=False, reserved=_EDGE_RESERVED)
            by_rel.setdefault(rel, []).append({"src": src, "dst": dst, "props": props})
        for rel, rows in by_rel.items():
            cypher = (
                f"UNWIND $rows AS row MATCH (a:{BASE} {{id: row.src}}) MATCH (b:{BASE} {{id: row.dst}}) "
                f"MERGE (a)-[r:{rel.value}]->(b) SET r = row.props"
            )
            self._write_rows(cypher, rows)

    def delete_record(self, record_id: str) -> int:
        """Same rule as the embedded store, in one transaction: the record, its images and texts that no
        other record HAS, then the entities those touched that are left with no edge at all."""
        self._check_open()

        def work(tx: ManagedTransaction) -> int:
            found = tx.run(
                f"MATCH (r:{BASE} {{id: $id}}) WHERE r:{Label.RECORD.value} "
                f"OPTIONAL MATCH (r)-[:{Rel.HAS.value}]->(c) "
                f"WHERE NOT EXISTS {{ MATCH (o)-[:{Rel.HAS.value}]->(c) WHERE o <> r }} "
                f"RETURN r.id AS rid, collect(DISTINCT c.id) AS children",
                id=record_id,
            ).single()
            if found is None:
                return 0
            children: list[str] = found["children"]
            entities = tx.run(
                f"UNWIND $ids AS cid MATCH (c:{BASE} {{id: cid}})--(e:{Label.ENTITY.value}) "
                "RETURN collect(DISTINCT e.id) AS ids",
                ids=children,
            ).single()
            entity_ids: list[str] = entities["ids"] if entities else []
            doomed = [record_id, *children]
            tx.run(f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) DETACH DELETE n", ids=doomed).consume()
            orphans = tx.run(
                f"UNWIND $ids AS id MATCH (e:{BASE} {{id: id}}) WHERE NOT (e)--() DELETE e RETURN count(e) AS n",
                ids=entity_ids,
            ).single()
            return len(doomed) + (int(orphans["n"]) if orphans else 0)

        return self._write(work)

    def delete_edges(self, keys: Sequence[tuple[str, str, Rel]]) -> int:
        self._check_open()
        by_rel: dict[Rel, dict[tuple[str, str], dict[str, str]]] = {}
        for src, dst, rel in keys:
            rel = Rel(rel)
            if rel is Rel.CO_OCCURS and src > dst:
                src, dst = dst, src
            by_rel.setdefault(rel, {})[(src, dst)] = {"src": src, "dst": dst}  # a key given twice counts once
        removed = 0
        for rel, unique in by_rel.items():
            cypher = (
                f"UNWIND $rows AS row MATCH (a:{BASE} {{id: row.src}})-[r:{rel.value}]->(b:{BASE} {{id: row.dst}}) "
                "DELETE r RETURN count(r) AS n"
            )
            for chunk in chunks(list(unique.values()), 5000):

                def work(tx: ManagedTransaction, chunk: Sequence[dict[str, str]] = chunk, cypher: str = cypher) -> int:
                    record = tx.run(cypher, rows=list(chunk)).single()
                    return int(record["n"]) if record else 0

                removed += self._write(work)
        return removed

    def delete_isolated(self, ids: Sequence[str]) -> list[str]:
        self._check_open()
        gone: list[str] = []
        for chunk in chunks(list(dict.fromkeys(ids)), 5000):

            def work(tx: ManagedTransaction, chunk: Sequence[str] = chunk) -> list[str]:
                rows = tx.run(
                    f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) WHERE NOT (n)--() "
                    "WITH n, n.id AS nid DELETE n RETURN nid",
                    ids=list(chunk),
                )
                return [r["nid"] for r in rows]

            gone += self._write(work)
        return gone

    def commit(self) -> None:
        """Nothing pending: each upsert has already committed its own transactions."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._driver.close()

    # ------------------------------------------------------------------ reads

    def _labels_of(self, ids: list[str]) -> dict[str, Label]:
        out: dict[str, Label] = {}
        for chunk in chunks(ids, 10_000):
            rows = self._query(
                f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) RETURN n.id AS id, labels(n) AS labels", ids=list(chunk)
            )
            for row in rows:
                out[row["id"]] = _label(row["labels"])
        return out

    def get_nodes(self, ids: Sequence[str]) -> dict[str, Node]:
        found: dict[str, Node] = {}
        wanted = list(dict.fromkeys(ids))
        for chunk in chunks(wanted, 10_000):
            rows = self._query(
                f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) RETURN n.id AS id, labels(n) AS labels, "
                f"{_node_props('n')} AS props",
                ids=list(chunk),
            )
            for row in rows:
                found[row["id"]] = _node(row)
        return {i: found[i] for i in ids if i in found}

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(ids)), 10_000):
            rows = self._query(f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) RETURN n.id AS id", ids=list(chunk))
            out.update(row["id"] for row in rows)
        return out

    def neighbors(
        self, node_id: str, rels: Iterable[Rel] | None = None, direction: Direction = "both"
    ) -> list[tuple[Edge, Node]]:
        if direction not in ("out", "in", "both"):
            raise ValueError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
        types = _rel_filter(rels)
        out: list[tuple[Edge, Node]] = []
        parts = []
        if direction in ("out", "both"):
            parts.append((f"MATCH (n:{BASE} {{id: $id}})-[r{types}]->(m)", True))
        if direction in ("in", "both"):
            parts.append((f"MATCH (n:{BASE} {{id: $id}})<-[r{types}]-(m)", False))
        for pattern, outgoing in parts:
            rows = self._query(
                pattern + " RETURN type(r) AS type, properties(r) AS rprops, m.id AS id, labels(m) AS labels, "
                f"{_node_props('m')} AS props ORDER BY m.id, type(r)",
                id=node_id,
            )
            for row in rows:
                other = _node(row)
                src, dst = (node_id, other.id) if outgoing else (other.id, node_id)
                out.append((Edge(src, dst, Rel(row["type"]), _decode(row["rprops"])), other))
        return out

    def subgraph(
        self, seeds: Sequence[str], hops: int = 2, rels: Iterable[Rel] | None = None, max_fanout: int | None = None
    ) -> Subgraph:
        """Breadth-first from the seeds, one query per hop; the fan-out cap is applied in the server
        (heaviest neighbours first, ties by id), so a hub entity's neighbours never cross the wire."""
        types = _rel_filter(rels)
        present = self.existing_ids(list(seeds))
        order = [s for s in dict.fromkeys(seeds) if s in present]
        seen = set(order)
        frontier = order
        cap = _ALL if max_fanout is None else max(int(max_fanout), 0)
        for _ in range(max(int(hops), 0)):
            if not frontier:
                break
            rows = self._query(
                f"UNWIND range(0, size($frontier) - 1) AS i "
                f"MATCH (u:{BASE} {{id: $frontier[i]}})-[r{types}]-(v) "
                f"WITH i, v.id AS vid, {_WEIGHT[0]} AS w0 "
                f"WITH i, vid, max({_WEIGHT[1]}) AS w ORDER BY i, w DESC, vid "
                "WITH i, collect(vid)[..$cap] AS nbrs RETURN i, nbrs ORDER BY i",
                frontier=frontier,
                cap=cap,
            )
            nxt: list[str] = []
            for row in rows:
                for v in row["nbrs"]:
                    if v not in seen:
                        seen.add(v)
                        nxt.append(v)
                        order.append(v)
            frontier = nxt
        nodes = self.get_nodes(order)
        edges: list[Edge] = []
        ids = list(seen)
        for chunk in chunks(ids, 10_000):
            rows = self._query(
                f"UNWIND $chunk AS uid MATCH (u:{BASE} {{id: uid}})-[r{types}]->(v:{BASE}) WHERE v.id IN $all "
                "RETURN u.id AS src, v.id AS dst, type(r) AS type, properties(r) AS props",
                chunk=list(chunk),
                all=ids,
            )
            edges.extend(Edge(r["src"], r["dst"], Rel(r["type"]), _decode(r["props"])) for r in rows)
        edges.sort(key=lambda e: (e.src, e.dst, e.type))
        return Subgraph(nodes=tuple(nodes[n] for n in order if n in nodes), edges=tuple(edges))

    def shortest_paths(self, src: str, dst: str, max_hops: int = 4, limit: int = 3) -> list[GPath]:
        """All shortest paths (Neo4j's allShortestPaths, edges either way), up to `limit`, in a stable order.

        The hop bound is pasted into the pattern as a validated int: Cypher takes no parameter there.
        """
        limit = int(limit)
        max_hops = int(max_hops)
        if limit < 1:
            return []
        ends = self.get_nodes([src, dst])
        if src not in ends or dst not in ends:
            return []
        if src == dst:
            return [GPath(nodes=(ends[src],), edges=())]
        if max_hops < 1:
            return []
        rows = self._query(
            f"MATCH (a:{BASE} {{id: $src}}), (b:{BASE} {{id: $dst}}) "
            f"MATCH p = allShortestPaths((a)-[*..{max_hops}]-(b)) "
            f"RETURN [n IN nodes(p) | {{id: n.id, labels: labels(n), props: {_node_props('n')}}}] AS nodes, "
            "[r IN relationships(p) | {src: startNode(r).id, dst: endNode(r).id, type: type(r), props: properties(r)}] "
            "AS edges LIMIT $cap",
            src=src,
            dst=dst,
            cap=max(limit * 50, 1000),
        )
        paths = [
            GPath(
                nodes=tuple(_node(n) for n in row["nodes"]),
                edges=tuple(Edge(e["src"], e["dst"], Rel(e["type"]), _decode(e["props"])) for e in row["edges"]),
            )
            for row in rows
        ]
        paths.sort(key=lambda p: ([n.id for n in p.nodes], [(e.src, e.dst, e.type.value) for e in p.edges]))
        return paths[:limit]

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """One round trip; each count is a count-store lookup, not a scan."""
        parts = [f"CALL () {{ MATCH (n:{label.value}) RETURN count(n) AS n{i} }}" for i, label in enumerate(Label)]
        parts += [f"CALL () {{ MATCH ()-[r:{rel.value}]->() RETURN count(r) AS r{i} }}" for i, rel in enumerate(Rel)]
        names = [f"n{i}" for i in range(len(Label))] + [f"r{i}" for i in range(len(Rel))]
        (row,) = self._query(" ".join(parts) + " RETURN " + ", ".join(names))
        nodes = {label.value: int(row[f"n{i}"]) for i, label in enumerate(Label)}
        edges = {rel.value: int(row[f"r{i}"]) for i, rel in enumerate(Rel)}
        return nodes, edges

    def iter_nodes(self, label: Label) -> Iterator[Node]:
        """Nodes of one label in id order, fetched in pages (keyset on id, so each page is an index seek)."""
        label = Label(label)
        after = ""  # ids are non-empty, so every id sorts after ""
        while True:
            rows = self._query(
                f"MATCH (n:{label.value}) WHERE n.id > $after "
                f"RETURN n.id AS id, labels(n) AS labels, {_node_props('n')} AS props ORDER BY n.id LIMIT $page",
                after=after,
                page=_PAGE,
            )
            for row in rows:
                yield _node(row)
            if len(rows) < _PAGE:
                return
            after = rows[-1]["id"]

    def iter_edges(self, rel: Rel) -> Iterator[Edge]:
        """Edges of one type, paged by source node (in id order over the source label)."""
        rel = Rel(rel)
        src_labels = sorted(label.value for label in EDGE_ENDPOINTS[rel][0])
        for src_label in src_labels:
            after = ""
            while True:
                rows = self._query(
                    f"MATCH (a:{src_label}) WHERE a.id > $after WITH a ORDER BY a.id LIMIT $page "
                    f"OPTIONAL MATCH (a)-[r:{rel.value}]->(b) "
                    "WITH a, collect(CASE WHEN r IS NULL THEN null ELSE {dst: b.id, props: properties(r)} END) AS out "
                    "RETURN a.id AS src, out ORDER BY src",
                    after=after,
                    page=_PAGE,
                )
                for row in rows:
                    for e in row["out"]:
                        yield Edge(row["src"], e["dst"], rel, _decode(e["props"]))
                if len(rows) < _PAGE:
                    break
                after = rows[-1]["src"]


def _label(labels: list[str]) -> Label:
    for name in labels:
        if name != BASE:
            with contextlib.suppress(ValueError):
                return Label(name)
    raise MmkgError(f"a Neo4j node has no mmkg label (labels: {labels})")


def _node(row: dict[str, Any]) -> Node:
    return Node(row["id"], _label(row["labels"]), _decode(dict(row["props"]), skip="id"))
