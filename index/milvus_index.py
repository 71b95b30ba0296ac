"""The VectorIndex on Milvus: Milvus Lite (a folder in the workspace) on one machine, a Milvus server past it.

One collection per kind of vector, `mmkg_<kind>` (`mmkg_images`, `mmkg_texts`, `mmkg_entities`), with two
fields: `id` (VARCHAR primary key, the node id) and `vector` (FLOAT_VECTOR, unit length), an HNSW index with
inner-product metric (the settings of FaissIndex's HNSW: M 32, efConstruction 100, ef at least 128), and
Strong consistency, so a vector is searchable as soon as `add` returns.

The URI picks the deployment, by pymilvus's own rule: a path ending in `.db` is Milvus Lite, a data folder
served by an in-process gRPC server (pure Python threads, no child process) that this module stops when the
last index on it closes; `http(s)://host:port[/database]` is a Milvus server or cluster (credentials may
ride in the URI as `user:password@`). Workspaces sharing one server keep apart by database (the URI's path).
A Lite folder is locked by the process that opens it: a second process gets a clear error, not a hang.

Behaviour as FaissIndex: vectors are L2-normalised on the way in; `add` leaves ids already present as they
are (Milvus itself would store a second row under the same key, so `add` asks first) and returns how many
were new; `search` returns inner products, best first. Ids travel inside filter expressions as escaped
string literals (pymilvus quotes them without escaping, and Lite has no expression templates).

`save()` flushes a Lite folder (memtable to segments). On a server it does nothing: an acknowledged insert
is already durable in the server's log, and servers rate-limit flushes (a flush per ingest batch would be
throttled). Every pymilvus or gRPC failure becomes a `MilvusIndexError` that names the URI.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import ConnectionConfigException, MilvusException

from mmkg.errors import MmkgError
from mmkg.index.base import IndexDimensionError, VectorIndex, rows_to_add, unit_rows

log = logging.getLogger(__name__)

ID_FIELD = "id"
VECTOR_FIELD = "vector"
COLLECTION_PREFIX = "mmkg_"
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_ID_MAX_BYTES = 65_535  # Milvus's limit for a VARCHAR
_MAX_K = 16_384  # Milvus's limit for a search's topk
_ID_BATCH = 1_000  # ids per filter expression
_QUERY_BATCH = 256  # query vectors per search request
_INSERT_BATCH = 2_000  # rows per insert request (~4 MB at 512-d)
_CONNECT_TIMEOUT_S = 10.0
# pymilvus pings every 10 s even when idle; the Lite server (gRPC defaults) allows one per 5 min and answers
# more with GOAWAY "too_many_pings", which gRPC prints to stderr. In-process, there is nothing to keep alive.
_LITE_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 600_000, "grpc.keepalive_permit_without_calls": False}


class MilvusIndexError(MmkgError):
    """Milvus cannot be reached, or refused a request (wrong URI, server down, Lite folder in use)."""


def is_lite(uri: str) -> bool:
    """Milvus Lite (a local folder) or a server: pymilvus's rule, a `.db` suffix."""
    return uri.endswith(".db")


def collection_name(kind: str) -> str:
    """`images` -> `mmkg_images`."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(f"vector index kind must be a lower-case name like 'images', got {kind!r}")
    return COLLECTION_PREFIX + kind


def id_filter(ids: Iterable[str]) -> str:
    """`id in ["a", "b\\"c"]`: a Milvus filter expression with every id as an escaped string literal."""
    return f"{ID_FIELD} in [" + ", ".join(_literal(i) for i in ids) + "]"


def _literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------- connections


class _LiteLeases:
    """This process's users of each Milvus Lite folder: pymilvus starts one in-process server per folder and
    shares it, so it is stopped only when the last user closes (or at exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}

    def acquire(self, path: str) -> None:
        with self._lock:
            if path not in self._users:
                _check_unlocked(path)
            self._users[path] = self._users.get(path, 0) + 1

    def release(self, path: str) -> None:
        with self._lock:
            left = self._users.get(path, 0) - 1
            if left > 0:
                self._users[path] = left
                return
            self._users.pop(path, None)
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(path)


_lite = _LiteLeases()


def _check_unlocked(path: str) -> None:
    """Refuse a Lite folder another process holds (Milvus Lite would only log a traceback and fail)."""
    lock = Path(path) / "LOCK"
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise MilvusIndexError(
            f"the Milvus Lite folder {path} is open in another process (a running `mmkg serve` or `mmkg ui`?); "
            "stop it first, or run a Milvus server and point MMKG_MILVUS_URI at it"
        ) from None
    finally:
        os.close(fd)


def _quiet_library_logs() -> None:
    """pymilvus logs every failed call, traceback included, on a console handler of its own, and Milvus Lite
    logs a traceback when it cannot start; mmkg raises one clear error instead. Their records go to mmkg's
    logging (where the CLI prints them only at --log-level DEBUG)."""
    level = logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.CRITICAL
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "milvus_lite"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    logging.getLogger("pymilvus").setLevel(level)
    logging.getLogger("milvus_lite").setLevel(level)


def _shutdown(client: MilvusClient, lite_path: str | None) -> None:
    with contextlib.suppress(Exception):
        client.close()
    if lite_path is not None:
        _lite.release(lite_path)


class MilvusConnection:
    """One MilvusClient for the indexes of one URI. For Milvus Lite it holds this process's lease on the
    folder's server, given back by `close()` (or when the connection is garbage, or at exit)."""

    def __init__(self, uri: str, *, timeout: float = _CONNECT_TIMEOUT_S) -> None:
        _quiet_library_logs()
        self.uri = uri
        self.lite_path = os.path.abspath(uri) if is_lite(uri) else None
        if self.lite_path is not None:
            if not Path(self.lite_path).parent.is_dir():
                raise MilvusIndexError(f"no folder {Path(self.lite_path).parent} for the Milvus Lite file {uri}")
            _lite.acquire(self.lite_path)
        try:
            with guard(uri):
                options = _LITE_GRPC_OPTIONS if self.lite_path is not None else {}
                self.client = MilvusClient(uri=self.lite_path or uri, timeout=timeout, grpc_options=options)
        except BaseException:
            if self.lite_path is not None:
                _lite.release(self.lite_path)
            raise
        self.users = 0
        self._finalizer = weakref.finalize(self, _shutdown, self.client, self.lite_path)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()


@contextlib.contextmanager
def guard(uri: str) -> Iterator[None]:
    """pymilvus and gRPC failures as one MilvusIndexError line that names the URI and what to do."""
    try:
        yield
    except ConnectionConfigException as exc:
        raise MilvusIndexError(
            f"cannot open Milvus at {uri!r}: {exc.message}; MMKG_MILVUS_URI takes a Milvus Lite path ending "
            "in .db or a server address like http://localhost:19530"
        ) from None
    except MilvusException as exc:
        if exc.code == 2 or "server unavailable" in (exc.message or ""):  # 2: pymilvus's "cannot connect"
            raise MilvusIndexError(
                f"cannot reach Milvus at {uri}: {exc.message} (is the server running? MMKG_MILVUS_URI names it)"
            ) from None
        raise MilvusIndexError(f"Milvus at {uri} refused the request: {exc.message}") from None
    except grpc.RpcError as exc:
        detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        raise MilvusIndexError(f"cannot reach Milvus at {uri}: {detail}") from None


# ---------------------------------------------------------------------- the index


class MilvusIndex(VectorIndex):
    """Nearest neighbours by inner product over unit vectors, keyed by node id, in one Milvus collection.

    `connection` is shared with the other kinds' indexes (see `open_indexes`); `close()` gives this index's
    use of it back, and the last one closes it. `ef_search` is HNSW's beam at search time (at least k).
    Not thread-safe (as FaissIndex).
    """

    def __init__(
        self,
        connection: MilvusConnection,
        kind: str,
        dim: int,
        *,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or int(dim) < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.name = kind
        """`images`, `texts`, `entities`, ..."""
        self.collection = collection_name(kind)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.uri = connection.uri
        self._conn = connection
        self._client = connection.client
        self._closed = False
        self._ensure_collection()
        connection.users += 1

    @classmethod
    def connect(cls, uri: str, kind: str, dim: int, **kwargs: Any) -> MilvusIndex:
        """An index with a connection of its own (closed by `close()`)."""
        connection = MilvusConnection(uri)
        try:
            return cls(connection, kind, dim, **kwargs)
        except BaseException:
            connection.close()
            raise

    @property
    def kind(self) -> str:
        """The search structure, as FaissIndex.kind: always `hnsw`."""
        return "hnsw"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._conn.users -= 1
            if self._conn.users <= 0:
                self._conn.close()

    # ------------------------------------------------------------------ VectorIndex

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        vecs, first = rows_to_add(ids, vectors, self.dim)
        for node_id in first:
            if len(node_id.encode("utf-8")) > _ID_MAX_BYTES:
                raise ValueError(f"id {node_id[:60]!r}... is longer than Milvus allows ({_ID_MAX_BYTES} bytes)")
        present = self.present(list(first))
        rows = [{ID_FIELD: node_id, VECTOR_FIELD: vecs[i]} for node_id, i in first.items() if node_id not in present]
        with self._guard():
            for chunk in _chunks(rows, _INSERT_BATCH):
                self._client.insert(self.collection, list(chunk))
        return len(rows)

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        q = unit_rows(queries, self.dim, "queries")
        k = min(int(k), _MAX_K)
        if k < 1:
            return [[] for _ in range(len(q))]
        params = {"metric_type": "IP", "params": {"ef": max(self.ef_search, k)}}
        out: list[list[tuple[str, float]]] = []
        with self._guard():
            for chunk in _chunks(q, _QUERY_BATCH):
                result = self._client.search(
                    self.collection,
                    data=list(chunk),
                    limit=k,
                    anns_field=VECTOR_FIELD,
                    search_params=params,
                    output_fields=[ID_FIELD],
                )
                out.extend([(str(hit[ID_FIELD]), float(hit["distance"])) for hit in hits] for hits in result)
        return out

    def get(self, ids: Sequence[str]) -> np.ndarray:
        wanted = list(dict.fromkeys(i for i in ids if isinstance(i, str)))
        found: dict[str, Any] = {}
        with self._guard():
            for chunk in _chunks(wanted, _ID_BATCH):
                rows = self._client.query(self.collection, filter=id_filter(chunk), output_fields=[VECTOR_FIELD])
                found.update((row[ID_FIELD], row[VECTOR_FIELD]) for row in rows)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for r, node_id in enumerate(ids):
            vec = found.get(node_id) if isinstance(node_id, str) else None
            if vec is None:
                raise KeyError(f"no vector for {node_id!r} in the Milvus {self.name} index")
            out[r] = vec
        return out

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` hold a vector: one request per 1,000 ids."""
        wanted = list(dict.fromkeys(i for i in ids if isinstance(i, str)))
        out: set[str] = set()
        with self._guard():
            for chunk in _chunks(wanted, _ID_BATCH):
                rows = self._client.query(self.collection, filter=id_filter(chunk), output_fields=[ID_FIELD])
                out.update(row[ID_FIELD] for row in rows)
        return out

    def remove(self, ids: Sequence[str]) -> int:
        """Forget ids (unknown ones are ignored). Returns how many were removed."""
        gone = sorted(self.present(ids))
        with self._guard():
            for chunk in _chunks(gone, _ID_BATCH):
                self._client.delete(self.collection, filter=id_filter(chunk))
        return len(gone)

    def __len__(self) -> int:
        with self._guard():
            rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and bool(self.present([node_id]))

    def ids(self) -> list[str]:
        """Every id in the index, sorted (a paged scan: for tests and tools, not hot paths)."""
        out: list[str] = []
        with self._guard():
            iterator = self._client.query_iterator(self.collection, batch_size=_ID_BATCH, output_fields=[ID_FIELD])
            try:
                while page := iterator.next():
                    out.extend(row[ID_FIELD] for row in page)
            finally:
                iterator.close()
        return sorted(out)

    def save(self) -> None:
        """Milvus Lite: flush the memtable to segments. A server: nothing (see the module note)."""
        if self._conn.lite_path is not None:
            with self._guard():
                self._client.flush(self.collection)

    # ------------------------------------------------------------------ internals

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        if self._conn.closed:
            raise MilvusIndexError(f"the Milvus {self.name} index at {self.uri} is closed")
        return guard(self.uri)

    def _ensure_collection(self) -> None:
        """Create the collection if it is missing, check an existing one fits, and load it for search."""
        with self._guard():
            if not self._client.has_collection(self.collection):
                self._create()
            else:
                self._check(self._client.describe_collection(self.collection))
                metric = self._client.describe_index(self.collection, VECTOR_FIELD).get("metric_type")
                if metric != "IP":
                    raise MilvusIndexError(
                        f"the Milvus collection {self.collection} at {self.uri} is indexed for {metric}, not inner "
                        "product (IP): drop it or use another database"
                    )
            self._client.load_collection(self.collection)

    def _create(self) -> None:
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=_ID_MAX_BYTES)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=self.dim)
        index_params = self._client.prepare_index_params()
        index_params.add_index(
            field_name=VECTOR_FIELD,
            index_type="HNSW",
            metric_type="IP",
            params={"M": self.hnsw_m, "efConstruction": self.ef_construction},
        )
        self._client.create_collection(self.collection, schema=schema, consistency_level="Strong")
        # sync=False: an empty collection's index is ready at once, and waiting asks for a server timestamp
        # (AllocTimestamp) that Milvus Lite does not implement (its gRPC server logs a traceback).
        self._client.create_index(self.collection, index_params, sync=False)
        log.info("created Milvus collection %s (%d-d, HNSW, IP) at %s", self.collection, self.dim, self.uri)

    def _check(self, info: dict[str, Any]) -> None:
        fields = {f["name"]: f for f in info.get("fields", [])}
        vector, key = fields.get(VECTOR_FIELD), fields.get(ID_FIELD)
        if vector is None or key is None or not key.get("is_primary"):
            raise MilvusIndexError(
                f"the Milvus collection {self.collection} at {self.uri} was not made by mmkg "
                f"(it lacks the {ID_FIELD!r} key or the {VECTOR_FIELD!r} field): drop it or use another database"
            )
        dim = int((vector.get("params") or {}).get("dim", 0))
        if dim != self.dim:
            raise IndexDimensionError(
                f"the Milvus collection {self.collection} at {self.uri} holds {dim}-d vectors but {self.dim}-d "
                "were asked for; the encoder changed since it was built: drop it and re-ingest"
            )


def open_indexes(uri: str, kinds: Iterable[str], dim: int, **kwargs: Any) -> list[MilvusIndex]:
    """One MilvusIndex per kind, sharing one connection (closed when the last of them closes or is gone)."""
    connection = MilvusConnection(uri)
    try:
        return [MilvusIndex(connection, kind, dim, **kwargs) for kind in kinds]
    except BaseException:
        connection.close()
        raise
