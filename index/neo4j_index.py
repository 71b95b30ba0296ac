"""The VectorIndex on Neo4j's own vector index: vectors live on the graph nodes, in the server.

Layout, for an index of kind `<kind>` (`images`, `texts`, `entities`, or any lower-case name):

- the vector of node `id` is the property `mmkg_vec_<kind>` (a list of floats, unit length) on the node
  `(:MmkgNode {id})` that the graph store wrote, which also gets the label `MmkgVec<Kind>`;
- a vector index `mmkg_vec_<kind>` on `(:MmkgVec<Kind>).mmkg_vec_<kind>`, cosine similarity, created
  on first use (`CREATE VECTOR INDEX ... IF NOT EXISTS`, then awaited ONLINE) and queried with
  `db.index.vector.queryNodes`.

The dedicated label (rather than `Image`) keeps kinds apart (one node could carry vectors of two
kinds) and makes `len()` a count-store lookup. Vectors are written only onto nodes that exist: the
ingest pipeline writes the graph before the vectors, so an unknown id is a caller's bug, reported by
`VectorNodeMissingError` before anything is written.

Behaviour as FaissIndex: vectors are L2-normalised on the way in; `add` leaves ids already present
as they are (it never overwrites a vector) and returns how many were new; `search` returns inner
products of unit vectors (cosine), best first. Neo4j reports cosine as (1 + cos) / 2; it is mapped
back with 2s - 1. Neo4j's HNSW search uses k itself as its beam (ef), which gives poor recall at
k = 10, so a search asks for max(k, ef_search) neighbours and keeps the best k. The index is created
without quantization (Neo4j's default since 5.23 is on), so the scores are exact float32 cosines; an
index found quantized (created elsewhere) is re-scored exactly with `vector.similarity.cosine`.

Visibility: a vector written by `add` is searchable as soon as `add` returns (each batch is its own
committed transaction; Neo4j 5.26 applies vector-index updates at commit, and only changes made
*inside* the querying transaction are invisible to it). `save()` has nothing to do: the server holds
the vectors durably. `remove()` drops the property and the label.

Cypher text is built only from the validated kind and the validated dimension; every value (ids,
vectors, k, the index name) travels as a parameter.

Note: the vector is an ordinary node property, so `properties(n)` (what Neo4jGraphStore returns as
`Node.props`) includes it unless the store leaves out keys starting with `VECTOR_PROPERTY_PREFIX`.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from neo4j import Driver, ManagedTransaction
from neo4j.exceptions import ClientError

from mmkg.errors import MmkgError
from mmkg.graph.neo4j_client import Neo4jClient, chunks, open_driver
from mmkg.graph.neo4j_store import BASE, VECTOR_PREFIX
from mmkg.index.base import IndexDimensionError, VectorIndex, rows_to_add, unit_rows

log = logging.getLogger(__name__)

VECTOR_PROPERTY_PREFIX = VECTOR_PREFIX
"""Every vector property's name starts with this; the store leaves such keys out of Node.props."""
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_MAX_DIM = 4096  # Neo4j 5.26's limit for vector.dimensions
_QUERY_BATCH = 64  # queries per round trip
_ID_BATCH = 10_000  # ids per existence check / lookup
_AWAIT_S = 300


class VectorNodeMissingError(MmkgError, ValueError):
    """A vector was given for a node id that the graph does not hold (write the graph nodes first)."""


class Neo4jIndexError(MmkgError):
    """The Neo4j vector index is not what this index expects (wrong label or property, failed)."""


def names(kind: str) -> tuple[str, str, str]:
    """(label, property, index name) for a kind: `images` -> (`MmkgVecImages`, `mmkg_vec_images`, same)."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(f"vector index kind must be a lower-case name like 'images', got {kind!r}")
    label = "MmkgVec" + "".join(part.capitalize() for part in kind.split("_"))
    prop = VECTOR_PROPERTY_PREFIX + kind
    return label, prop, prop


class Neo4jVectorIndex(Neo4jClient, VectorIndex):
    """Nearest neighbours by inner product over unit vectors stored on graph nodes in Neo4j.

    `driver` is used, not owned (use `connect` for an index that owns and closes its driver).
    `ef_search` is the number of neighbours asked of Neo4j's HNSW per query (at least k); `hnsw_m`,
    `ef_construction` and `quantization` apply only when the Neo4j index is created.
    """

    def __init__(
        self,
        driver: Driver,
        kind: str,
        dim: int,
        *,
        database: str = "neo4j",
        batch_size: int = 1000,
        ef_search: int = 100,
        hnsw_m: int = 16,
        ef_construction: int = 100,
        quantization: bool = False,
        uri: str = "",
        user: str = "",
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or not 1 <= int(dim) <= _MAX_DIM:
            raise ValueError(f"dim must be an integer from 1 to {_MAX_DIM}, got {dim!r}")
        for name, value in (("batch_size", batch_size), ("ef_search", ef_search), ("hnsw_m", hnsw_m)):
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        self.dim = int(dim)
        self.name = kind
        """`images`, `texts`, `entities`, ..."""
        self.label, self.prop, self.index_name = names(kind)
        self.database = database
        self.batch_size = int(batch_size)
        self.ef_search = int(ef_search)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.uri = uri
        self.user = user
        self._driver = driver
        self.what = f"the Neo4j {kind} vector index"
        self.purpose = f" for the {kind} vectors"
        self._owned = False
        self._closed = False
        self._shared: object | None = None  # keeps a shared driver alive while this index is (open_indexes)
        self.quantized = False
        self._ensure_index(quantization)

    @property
    def kind(self) -> str:
        """The search structure, as FaissIndex.kind: always `hnsw` (Neo4j's vector index)."""
        return "hnsw"

    @classmethod
    def connect(cls, uri: str, user: str, password: str, kind: str, dim: int, **kwargs: Any) -> Neo4jVectorIndex:
        """An index with a driver of its own (closed by `close()`)."""
        driver = open_driver(uri, user, password)
        try:
            index = cls(driver, kind, dim, uri=uri, user=user, **kwargs)
        except BaseException:
            driver.close()
            raise
        index._owned = True
        return index

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owned:
                self._driver.close()

    # ------------------------------------------------------------------ VectorIndex

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        vecs, first = rows_to_add(ids, vectors, self.dim)
        if not first:
            return 0
        present = self._existing(list(first))
        missing = [node_id for node_id in first if node_id not in present]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise VectorNodeMissingError(
                f"{len(missing)} of {len(first)} ids have no node in the graph ({shown}); "
                f"the {self.name} vectors were not written: write the graph nodes first"
            )
        rows = [{"id": node_id, "v": vecs[i].tolist()} for node_id, i in first.items()]
        # Ids already holding a vector keep it (as FaissIndex): only nodes without the label are written.
        cypher = (
            f"UNWIND $rows AS row MATCH (n:{BASE} {{id: row.id}}) WHERE NOT n:{self.label} "
            f"SET n:{self.label}, n.{self.prop} = row.v RETURN count(n) AS added"
        )
        added = 0
        for chunk in chunks(rows, self.batch_size):

            def work(tx: ManagedTransaction, chunk: Sequence[dict[str, Any]] = chunk) -> int:
                record = tx.run(cypher, rows=list(chunk)).single()
                return int(record["added"]) if record else 0

            added += self._write(work)
        return added

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        q = unit_rows(queries, self.dim, "queries")
        k = int(k)
        if k < 1:
            return [[] for _ in range(len(q))]
        fetch = max(k, self.ef_search)
        # A quantized index's scores are approximate: then the candidates are scored exactly.
        score = f"vector.similarity.cosine(node.{self.prop}, $qs[i])" if self.quantized else "score"
        cypher = (
            "UNWIND range(0, size($qs) - 1) AS i "
            "CALL db.index.vector.queryNodes($index, $fetch, $qs[i]) YIELD node, score "
            f"WITH i, node.id AS id, {score} AS s ORDER BY i, s DESC "
            "RETURN i, collect([id, s])[..$k] AS hits ORDER BY i"
        )
        out: list[list[tuple[str, float]]] = [[] for _ in range(len(q))]
        for start in range(0, len(q), _QUERY_BATCH):
            chunk = q[start : start + _QUERY_BATCH].tolist()
            for row in self._query(cypher, index=self.index_name, fetch=fetch, k=k, qs=chunk):
                out[start + int(row["i"])] = [(str(nid), 2.0 * float(s) - 1.0) for nid, s in row["hits"]]
        return out

    def get(self, ids: Sequence[str]) -> np.ndarray:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, list[float]] = {}
        for chunk in chunks(wanted, _ID_BATCH):
            rows = self._query(
                f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) WHERE n:{self.label} "
                f"RETURN n.id AS id, n.{self.prop} AS v",
                ids=list(chunk),
            )
            found.update((row["id"], row["v"]) for row in rows)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for r, node_id in enumerate(ids):
            vec = found.get(node_id)
            if vec is None:
                raise KeyError(f"no vector for {node_id!r} in the {self.name} index")
            out[r] = vec
        return out

    def remove(self, ids: Sequence[str]) -> int:
        """Forget ids (unknown ones, and nodes without a vector, are ignored). Returns how many were removed."""
        wanted = [i for i in dict.fromkeys(ids) if isinstance(i, str)]
        removed = 0
        cypher = (
            f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) WHERE n:{self.label} "
            f"REMOVE n:{self.label}, n.{self.prop} RETURN count(n) AS removed"
        )
        for chunk in chunks(wanted, self.batch_size):

            def work(tx: ManagedTransaction, chunk: Sequence[str] = chunk) -> int:
                record = tx.run(cypher, ids=list(chunk)).single()
                return int(record["removed"]) if record else 0

            removed += self._write(work)
        return removed

    def __len__(self) -> int:
        (row,) = self._query(f"MATCH (n:{self.label}) RETURN count(n) AS n")
        return int(row["n"])

    def __contains__(self, node_id: object) -> bool:
        if not isinstance(node_id, str):
            return False
        rows = self._query(f"MATCH (n:{BASE} {{id: $id}}) WHERE n:{self.label} RETURN count(n) AS n", id=node_id)
        return bool(rows and rows[0]["n"])

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` hold a vector of this kind: one round trip per 10,000 ids, where `in` costs one each."""
        out: set[str] = set()
        for chunk in chunks(list(dict.fromkeys(i for i in ids if isinstance(i, str))), _ID_BATCH):
            rows = self._query(
                f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) WHERE n:{self.label} RETURN n.id AS id", ids=list(chunk)
            )
            out.update(row["id"] for row in rows)
        return out

    def ids(self) -> list[str]:
        """Every id holding a vector of this kind, in id order."""
        return [row["id"] for row in self._query(f"MATCH (n:{self.label}) RETURN n.id AS id ORDER BY id")]

    def save(self) -> None:
        """Nothing to do: every add and remove is already committed in the server."""

    # ------------------------------------------------------------------ internals

    def _existing(self, ids: list[str]) -> set[str]:
        out: set[str] = set()
        for chunk in chunks(ids, _ID_BATCH):
            rows = self._query(f"UNWIND $ids AS id MATCH (n:{BASE} {{id: id}}) RETURN n.id AS id", ids=list(chunk))
            out.update(row["id"] for row in rows)
        return out

    def _describe(self) -> dict[str, Any] | None:
        rows = self._query(
            "SHOW VECTOR INDEXES YIELD name, state, labelsOrTypes, properties, options WHERE name = $name "
            "RETURN name, state, labelsOrTypes, properties, options",
            name=self.index_name,
        )
        return rows[0] if rows else None

    def _ensure_index(self, quantization: bool) -> None:
        """Create the Neo4j vector index if it is missing, wait until it is ONLINE, and check it fits."""
        info = self._describe()
        if info is None:
            # The dimension and HNSW settings are validated ints and pasted; the rest are constants.
            cypher = (
                f"CREATE VECTOR INDEX {self.index_name} IF NOT EXISTS FOR (n:{self.label}) ON n.{self.prop} "
                f"OPTIONS {{indexConfig: {{`vector.dimensions`: {self.dim}, `vector.similarity_function`: 'cosine', "
                f"`vector.quantization.enabled`: {'true' if quantization else 'false'}, "
                f"`vector.hnsw.m`: {self.hnsw_m}, `vector.hnsw.ef_construction`: {self.ef_construction}}}}}"
            )
            with self._guard(), self._driver.session(database=self.database) as session:
                try:
                    session.run(cypher).consume()
                except ClientError as exc:  # another process created it at the same moment
                    if "EquivalentSchemaRuleAlreadyExists" not in (exc.code or ""):
                        raise
            info = self._describe()
            if info is None:
                raise Neo4jIndexError(f"Neo4j did not create the vector index {self.index_name}")
        if info["labelsOrTypes"] != [self.label] or info["properties"] != [self.prop]:
            raise Neo4jIndexError(
                f"the Neo4j index {self.index_name} is on {info['labelsOrTypes']}.{info['properties']}, "
                f"not {self.label}.{self.prop}: drop it (DROP INDEX {self.index_name})"
            )
        config = (info.get("options") or {}).get("indexConfig") or {}
        dims = config.get("vector.dimensions")
        if dims != self.dim:
            raise IndexDimensionError(
                f"the Neo4j vector index {self.index_name} holds {dims}-d vectors but {self.dim}-d were asked for; "
                f"the encoder changed since it was built: drop it (DROP INDEX {self.index_name}) and re-ingest"
            )
        if str(config.get("vector.similarity_function", "")).lower() != "cosine":
            raise Neo4jIndexError(f"the Neo4j vector index {self.index_name} does not use cosine similarity")
        self.quantized = bool(config.get("vector.quantization.enabled", False))
        if info["state"] != "ONLINE":
            with self._guard(), self._driver.session(database=self.database) as session:
                session.run("CALL db.awaitIndex($name, $timeout)", name=self.index_name, timeout=_AWAIT_S).consume()
            info = self._describe()
            if info is None or info["state"] != "ONLINE":
                state = None if info is None else info["state"]
                raise Neo4jIndexError(f"the Neo4j vector index {self.index_name} is {state}, not ONLINE")


class _SharedDriver:
    """One driver for several indexes; closed when the last of them is gone (or at exit)."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        weakref.finalize(self, driver.close)


def open_indexes(
    uri: str, user: str, password: str, kinds: Iterable[str], dim: int, **kwargs: Any
) -> list[Neo4jVectorIndex]:
    """One Neo4jVectorIndex per kind, sharing one driver (closed once none of them is referenced)."""
    shared = _SharedDriver(open_driver(uri, user, password))
    indexes = [Neo4jVectorIndex(shared.driver, kind, dim, uri=uri, user=user, **kwargs) for kind in kinds]
    for index in indexes:
        index._shared = shared
    return indexes
