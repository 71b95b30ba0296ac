"""The embedded default GraphStore: an in-process networkx graph, persisted crash-safely in a folder.

On disk (all JSON, never pickle), inside the store's folder:

- `snapshot.jsonl`: the whole graph as of write-ahead-log sequence number `seq`. Line 1 is a header
  (`{"format": "mmkg-graph-snapshot", "version": 1, "seq": S, "nodes": n, "edges": m}`), then chunks
  `{"n": [[id, label, props], ...]}` and `{"e": [[src, dst, type, props], ...]}`, then `{"end": true}`.
  Replaced atomically (temp file, fsync, rename, fsync of the folder), so it is always whole.
- `wal.jsonl`: one line per `commit()`, `{"seq": s, "ops": [...]}`, appended and fsync'd. Ops are
  `["N", id, label, props]` (merge node props), `["E", src, dst, type, props]` (replace edge props),
  `["D", id]` (remove a node and its edges), `["R", src, dst, type]` (remove one edge). On load,
  lines with `seq <= S` are already in the snapshot and skipped; a torn last line (a crash mid-append)
  is dropped and cut off the file.
- `lock`: held with `flock` by the one process that may write; it holds that process's pid.

Commit cost is the size of the batch (one appended line); when the log outgrows both a floor and the
snapshot, the graph is compacted into a new snapshot, so the total cost stays linear in what was written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import networkx as nx

from mmkg.errors import MmkgError
from mmkg.graph.schema import EDGE_ENDPOINTS, Edge, Label, Node, Props, Rel, Subgraph, check_props, edge_weight
from mmkg.graph.schema import Path as GPath
from mmkg.graph.store import Direction, GraphStore
from mmkg.workspace import fsync_path

log = logging.getLogger(__name__)

SNAPSHOT = "snapshot.jsonl"
WAL = "wal.jsonl"
LOCK = "lock"
_FORMAT = "mmkg-graph-snapshot"
_VERSION = 1
_CHUNK = 10_000
# Inside the store, edge types and count keys are plain strings: hashing an enum member runs
# Python code, which at a million edges is most of the cost of loading.
_REL: dict[str, Rel] = {r.value: r for r in Rel}
_LABEL: dict[str, Label] = {label.value: label for label in Label}


class StoreLockedError(MmkgError):
    """Another process has this store open for writing; two writers would corrupt it."""


class StoreCorruptError(MmkgError):
    """The files on disk are damaged beyond a torn last log line (which is repaired silently)."""


def _same(a: Any, b: Any) -> bool:
    """Equality that tells 1, 1.0 and True apart, so a changed type is a change."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _copy_props(props: Props) -> Props:
    """What callers get: their own dict and lists, so mutating a result cannot touch the store."""
    return {k: list(v) if isinstance(v, list) else v for k, v in props.items()}


def _dumps(obj: Any) -> str:
    # ASCII escapes keep any string (lone surrogates included) encodable and every record one line.
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))


class MemoryGraphStore(GraphStore):
    """The GraphStore on networkx, kept in memory and persisted in `path` (a workspace folder).

    One process writes (a lock file enforces it); `read_only=True` opens without the lock to look at
    what has been committed, e.g. from the UI while an ingest runs. Not thread-safe.
    """

    def __init__(self, path: Path, *, read_only: bool = False, compact_min_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.compact_min_bytes = compact_min_bytes
        self._g = nx.DiGraph()
        # Hot paths use the adjacency dicts directly: node -> neighbour -> {type: props}, the same
        # dict shared by both directions, so an ordered pair holds each edge type at most once.
        # Edge types are keyed by their string value (see _REL).
        self._succ: dict[str, dict[str, dict[str, Props]]] = self._g._succ
        self._pred: dict[str, dict[str, dict[str, Props]]] = self._g._pred
        self._attrs: dict[str, dict[str, Any]] = self._g._node
        self._label_counts: Counter[str] = Counter()
        self._rel_counts: Counter[str] = Counter()
        self._pending: list[list[Any]] = []
        self._seq = 0
        self._wal_fd: int | None = None
        self._wal_size = 0
        self._snapshot_size = 0
        self._lock_fd: int | None = None
        self._snapshot_ident: tuple[int, int, int] | None = None
        self._closed = False
        if read_only:
            self._load_consistent()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._acquire_lock()
            try:
                self._remove_temp_files()
                self._load(repair=True)
                self._open_wal()
            except BaseException:
                self._release_lock()
                raise

    # ------------------------------------------------------------------ writes

    def upsert_nodes(self, nodes: Sequence[Node]) -> None:
        self._check_writable()
        checked: list[tuple[str, Label, Props]] = []
        batch_labels: dict[str, Label] = {}
        for node in nodes:
            if not isinstance(node.id, str) or not node.id:
                raise ValueError(f"node id must be a non-empty string, got {node.id!r}")
            label = Label(node.label)
            known = batch_labels.get(node.id) or (self._attrs[node.id]["label"] if node.id in self._attrs else None)
            if known is not None and known is not label:
                raise ValueError(f"node {node.id!r} is a {known}; it cannot be upserted as a {label}")
            batch_labels[node.id] = label
            checked.append((node.id, label, check_props(node.props, node)))
        for node_id, label, props in checked:
            attrs = self._attrs.get(node_id)
            if attrs is not None and all(k in attrs["props"] and _same(attrs["props"][k], v) for k, v in props.items()):
                continue  # nothing new: leave the log alone
            self._apply_node(node_id, label, props)
            self._pending.append(["N", node_id, label.value, props])

    def upsert_edges(self, edges: Sequence[Edge]) -> None:
        self._check_writable()
        checked: list[tuple[str, str, str, Props]] = []
        for edge in edges:
            rel = edge.type if type(edge.type) is Rel else Rel(edge.type)
            src, dst = edge.src, edge.dst
            src_attrs, dst_attrs = self._attrs.get(src), self._attrs.get(dst)
            if src_attrs is None or dst_attrs is None:
                missing = src if src_attrs is None else dst
                raise ValueError(f"cannot write {rel} edge {src!r} -> {dst!r}: node {missing!r} does not exist")
            allowed_src, allowed_dst = EDGE_ENDPOINTS[rel]
            if src_attrs["label"] not in allowed_src or dst_attrs["label"] not in allowed_dst:
                raise ValueError(
                    f"cannot write {rel} edge {src!r} -> {dst!r}: it joins {src_attrs['label']} -> "
                    f"{dst_attrs['label']}, but {rel} joins {'|'.join(sorted(allowed_src))} -> "
                    f"{'|'.join(sorted(allowed_dst))}"
                )
            if rel is Rel.CO_OCCURS:
                if src == dst:
                    raise ValueError(
                        f"cannot write {rel} edge {src!r} -> {dst!r}: an entity does not co-occur with itself"
                    )
                if src > dst:  # stored once per unordered pair, src < dst
                    src, dst = dst, src
            props = check_props(edge.props, edge)
            checked.append((src, dst, rel._value_, props))
        for src, dst, rel_s, props in checked:
            current = self._succ[src].get(dst, {}).get(rel_s)
            if (
                current is not None
                and current.keys() == props.keys()
                and all(_same(current[k], props[k]) for k in props)
            ):
                continue
            self._apply_edge(src, dst, rel_s, props)
            self._pending.append(["E", src, dst, rel_s, props])

    def delete_record(self, record_id: str) -> int:
        self._check_writable()
        attrs = self._attrs.get(record_id)
        if attrs is None or attrs["label"] is not Label.RECORD:
            return 0
        removed = [record_id]
        entities: set[str] = set()
        for child, rels in list(self._succ[record_id].items()):
            if "HAS" not in rels:
                continue
            held_elsewhere = any(u != record_id and "HAS" in d for u, d in self._pred[child].items())
            if held_elsewhere:
                continue
            removed.append(child)
            for other in (*self._succ[child], *self._pred[child]):
                if self._attrs[other]["label"] is Label.ENTITY:
                    entities.add(other)
        for node_id in removed:
            self._apply_delete(node_id)
        for entity in sorted(entities):
            if not self._succ[entity] and not self._pred[entity]:
                self._apply_delete(entity)
                removed.append(entity)
        self._pending.extend(["D", node_id] for node_id in removed)
        return len(removed)

    def delete_edges(self, keys: Sequence[tuple[str, str, Rel]]) -> int:
        self._check_writable()
        removed = 0
        for src, dst, rel in keys:
            rel_s = Rel(rel).value
            if rel_s == "CO_OCCURS" and src > dst:
                src, dst = dst, src
            d = self._succ.get(src, {}).get(dst)
            if d is None or rel_s not in d:
                continue
            self._apply_remove_edge(src, dst, rel_s)
            self._pending.append(["R", src, dst, rel_s])
            removed += 1
        return removed

    def delete_isolated(self, ids: Sequence[str]) -> list[str]:
        self._check_writable()
        gone = [i for i in dict.fromkeys(ids) if i in self._attrs and not self._succ[i] and not self._pred[i]]
        for node_id in gone:
            self._apply_delete(node_id)
        self._pending.extend(["D", node_id] for node_id in gone)
        return gone

    def commit(self) -> None:
        """Append what was written since the last commit to the log as one fsync'd line."""
        if not self._pending or self.read_only or self._closed:
            return
        assert self._wal_fd is not None
        line = (_dumps({"seq": self._seq + 1, "ops": self._pending}) + "\n").encode("ascii")
        try:
            view = memoryview(line)
            while view:
                written = os.write(self._wal_fd, view)
                view = view[written:]
            os.fsync(self._wal_fd)
        except BaseException:
            # Cut a partial line off so the next commit does not glue onto it; the writes stay pending.
            with contextlib.suppress(OSError):
                os.ftruncate(self._wal_fd, self._wal_size)
            raise
        self._seq += 1
        self._wal_size += len(line)
        self._pending = []
        if self._wal_size > max(self.compact_min_bytes, self._snapshot_size):
            self.compact()

    def compact(self) -> None:
        """Fold the log into a new snapshot (atomically), then empty the log."""
        self._check_writable()
        self.commit()
        assert self._wal_fd is not None
        self._write_snapshot()
        # A crash here leaves log lines with seq <= the snapshot's: they are skipped on load.
        os.ftruncate(self._wal_fd, 0)
        os.fsync(self._wal_fd)
        self._wal_size = 0
        log.info("compacted graph store %s at seq %d", self.path, self._seq)

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self.read_only:
                self.commit()
        finally:
            self._closed = True
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            self._release_lock()

    # ------------------------------------------------------------------ reads

    def get_nodes(self, ids: Sequence[str]) -> dict[str, Node]:
        return {i: self._node(i) for i in ids if i in self._attrs}

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._attrs}

    def neighbors(
        self, node_id: str, rels: Iterable[Rel] | None = None, direction: Direction = "both"
    ) -> list[tuple[Edge, Node]]:
        """Outgoing then incoming edges, each in order of the other node's id (as the Neo4j backend)."""
        if direction not in ("out", "in", "both"):
            raise ValueError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
        if node_id not in self._attrs:
            return []
        wanted = None if rels is None else {Rel(r).value for r in rels}
        out: list[tuple[Edge, Node]] = []
        if direction in ("out", "both"):
            for other, d in sorted(self._succ[node_id].items()):
                for rel, props in sorted(d.items()):
                    if wanted is None or rel in wanted:
                        out.append((Edge(node_id, other, _REL[rel], _copy_props(props)), self._node(other)))
        if direction in ("in", "both"):
            for other, d in sorted(self._pred[node_id].items()):
                for rel, props in sorted(d.items()):
                    if wanted is None or rel in wanted:
                        out.append((Edge(other, node_id, _REL[rel], _copy_props(props)), self._node(other)))
        return out

    def subgraph(
        self, seeds: Sequence[str], hops: int = 2, rels: Iterable[Rel] | None = None, max_fanout: int | None = None
    ) -> Subgraph:
        wanted = None if rels is None else {Rel(r).value for r in rels}
        order = list(dict.fromkeys(s for s in seeds if s in self._attrs))
        seen = set(order)
        frontier = list(order)
        for _ in range(max(hops, 0)):
            nxt: list[str] = []
            for u in frontier:
                for v in self._adjacent(u, wanted, max_fanout):
                    if v not in seen:
                        seen.add(v)
                        nxt.append(v)
                        order.append(v)
            frontier = nxt
        edges = [
            Edge(u, v, _REL[rel], _copy_props(props))
            for u in order
            for v, d in self._succ[u].items()
            if v in seen
            for rel, props in d.items()
            if wanted is None or rel in wanted
        ]
        edges.sort(key=lambda e: (e.src, e.dst, e.type))
        return Subgraph(nodes=tuple(self._node(n) for n in order), edges=tuple(edges))

    def shortest_paths(self, src: str, dst: str, max_hops: int = 4, limit: int = 3) -> list[GPath]:
        if limit < 1 or src not in self._attrs or dst not in self._attrs:
            return []
        if src == dst:
            return [GPath(nodes=(self._node(src),), edges=())]
        # Enough candidates to choose from, then the same stable order as the Neo4j backend.
        cap = max(limit * 50, 1000)
        paths: list[GPath] = []
        for node_path in self._shortest_node_paths(src, dst, max_hops, cap):
            hops = [self._edges_between(a, b) for a, b in zip(node_path, node_path[1:], strict=False)]
            nodes = tuple(self._node(n) for n in node_path)
            paths.extend(GPath(nodes=nodes, edges=tuple(combo)) for combo in product(*hops))
            if len(paths) >= cap:
                break
        paths.sort(key=lambda p: ([n.id for n in p.nodes], [(e.src, e.dst, e.type.value) for e in p.edges]))
        return paths[:limit]

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        return (
            {label.value: self._label_counts[label.value] for label in Label},
            {rel.value: self._rel_counts[rel.value] for rel in Rel},
        )

    def iter_nodes(self, label: Label) -> Iterator[Node]:
        """Nodes of one label; safe against writes made while iterating (they may or may not be seen)."""
        label = Label(label)
        for node_id in list(self._attrs):
            attrs = self._attrs.get(node_id)
            if attrs is not None and attrs["label"] is label:
                yield self._node(node_id)

    def iter_edges(self, rel: Rel) -> Iterator[Edge]:
        """Edges of one type; safe against writes made while iterating (they may or may not be seen)."""
        rel = Rel(rel)
        key = rel.value
        for u in list(self._succ):
            nbrs = self._succ.get(u)
            if nbrs is None:
                continue
            for v, d in list(nbrs.items()):
                props = d.get(key)
                if props is not None:
                    yield Edge(u, v, rel, _copy_props(props))

    @property
    def graph(self) -> nx.DiGraph:
        """The live networkx graph, to read, never write: node attrs `label` (a Label) and `props`;
        edge data maps each edge type's name (a str, e.g. "DEPICTS") to that edge's props."""
        return self._g

    # ------------------------------------------------------------------ internals: graph

    def _node(self, node_id: str) -> Node:
        attrs = self._attrs[node_id]
        return Node(node_id, attrs["label"], _copy_props(attrs["props"]))

    def _apply_node(self, node_id: str, label: Label, props: Props) -> None:
        attrs = self._attrs.get(node_id)
        if attrs is None:
            self._g.add_node(node_id, label=label, props=props)
            self._label_counts[label.value] += 1
        else:
            attrs["props"] = {**attrs["props"], **props}  # never mutate a dict a log op may share

    def _apply_edge(self, src: str, dst: str, rel: str, props: Props) -> None:
        d = self._succ[src].get(dst)
        if d is None:
            d = {}
            self._succ[src][dst] = d
            self._pred[dst][src] = d
        if rel not in d:
            self._rel_counts[rel] += 1
        d[rel] = props

    def _apply_delete(self, node_id: str) -> None:
        attrs = self._attrs.get(node_id)
        if attrs is None:
            return
        for d in (*self._succ[node_id].values(), *self._pred[node_id].values()):
            for rel in d:
                self._rel_counts[rel] -= 1
        self._label_counts[attrs["label"].value] -= 1
        self._g.remove_node(node_id)

    def _apply_remove_edge(self, src: str, dst: str, rel: str) -> None:
        d = self._succ.get(src, {}).get(dst)
        if d is None or rel not in d:
            return
        del d[rel]
        self._rel_counts[rel] -= 1
        if not d:  # no type left between the pair: drop the adjacency entry both ways
            del self._succ[src][dst]
            del self._pred[dst][src]

    def _adjacent(self, u: str, wanted: set[str] | None, max_fanout: int | None) -> list[str]:
        """Neighbours of u over wanted edge types, heaviest first when capped to max_fanout."""
        best: dict[str, float] = {}
        for adjacency in (self._succ[u], self._pred[u]):
            for v, d in adjacency.items():
                for rel, props in d.items():
                    if wanted is None or rel in wanted:
                        w = edge_weight(rel, props)
                        if w > best.get(v, float("-inf")):
                            best[v] = w
        if max_fanout is None or len(best) <= max_fanout:
            return list(best)
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))
        return [v for v, _ in ranked[: max(max_fanout, 0)]]

    def _edges_between(self, a: str, b: str) -> list[Edge]:
        forward = [Edge(a, b, _REL[rel], _copy_props(p)) for rel, p in sorted(self._succ[a].get(b, {}).items())]
        backward = [Edge(b, a, _REL[rel], _copy_props(p)) for rel, p in sorted(self._succ[b].get(a, {}).items())]
        return forward + backward

    def _shortest_node_paths(self, src: str, dst: str, max_hops: int, limit: int) -> list[list[str]]:
        """All shortest undirected node paths (up to `limit`), by bidirectional BFS.

        Each side records, per node, every neighbour one layer closer to its root; after a whole layer
        is added, the nodes both sides know are exactly the midpoints of the shortest paths.
        """
        # Per side: node -> its neighbours one step closer to that side's root.
        parents: tuple[dict[str, list[str]], dict[str, list[str]]] = ({src: []}, {dst: []})
        frontiers: tuple[list[str], list[str]] = ([src], [dst])
        depths = [0, 0]
        meet: list[str] = []
        while not meet and depths[0] + depths[1] < max_hops and frontiers[0] and frontiers[1]:
            side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
            mine, theirs = parents[side], parents[1 - side]
            layer: dict[str, list[str]] = {}
            for u in frontiers[side]:
                for v in (*self._succ[u], *self._pred[u]):
                    if v in mine:
                        continue
                    layer.setdefault(v, []).append(u)
            mine.update(layer)
            depths[side] += 1
            frontiers = (list(layer), frontiers[1]) if side == 0 else (frontiers[0], list(layer))
            meet = sorted(v for v in layer if v in theirs)

        def walks(node: str, side: int) -> Iterator[list[str]]:
            """Paths from node back to that side's root, node first."""
            ups = parents[side][node]
            if not ups:
                yield [node]
                return
            for up in sorted(set(ups)):
                for rest in walks(up, side):
                    yield [node, *rest]

        found: list[list[str]] = []
        for m in meet:
            for head in walks(m, 0):
                for tail in walks(m, 1):
                    found.append([*reversed(head), *tail[1:]])
                    if len(found) >= limit:
                        return found
        return found

    # ------------------------------------------------------------------ internals: persistence

    def _check_writable(self) -> None:
        if self._closed:
            raise MmkgError(f"graph store {self.path} is closed")
        if self.read_only:
            raise MmkgError(f"graph store {self.path} was opened read-only")

    def _acquire_lock(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StoreLockedError(
                    f"graph store {self.path} is open for writing elsewhere (pid {holder}); "
                    "close that process first, or open read-only"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_temp_files(self) -> None:
        """Leftovers of a snapshot write that a crash interrupted before its rename."""
        for tmp in self.path.glob(f".{SNAPSHOT}.*.tmp"):
            log.warning("removing unfinished snapshot %s", tmp)
            tmp.unlink(missing_ok=True)

    def _open_wal(self) -> None:
        wal = self.path / WAL
        existed = wal.exists()
        self._wal_fd = os.open(wal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if not existed:
            fsync_path(self.path)

    def _reset(self) -> None:
        self._g.clear()
        self._label_counts.clear()
        self._rel_counts.clear()
        self._seq = 0

    def _load_consistent(self) -> None:
        """Read-only load, retried if a writer compacts between our reads of snapshot and log."""
        for _ in range(5):
            self._reset()
            if self._load(repair=False):
                return
            log.info("graph store %s changed while loading; reading again", self.path)
        raise StoreCorruptError(f"graph store {self.path} kept changing while being read; try again")

    def _load(self, repair: bool) -> bool:
        """Snapshot, then the log after it. False when the log does not follow on from the snapshot."""
        gc_was_enabled = gc.isenabled()
        gc.disable()  # millions of small dicts: the cyclic collector only slows loading down
        try:
            self._load_snapshot()
            if not self._replay_wal(repair):
                return False
            if not repair:  # a reader: did a writer replace the snapshot while we read the log?
                try:
                    now: tuple[int, int, int] | None = self._ident(os.stat(self.path / SNAPSHOT))
                except FileNotFoundError:
                    now = None
                return now == self._snapshot_ident
            return True
        finally:
            if gc_was_enabled:
                gc.enable()

    def _load_snapshot(self) -> None:
        snap = self.path / SNAPSHOT
        self._snapshot_ident = None
        if not snap.exists():
            self._snapshot_size = 0
            return
        n_nodes = n_edges = 0
        ended = False
        with open(snap, "rb") as fh:
            self._snapshot_ident = self._ident(os.fstat(fh.fileno()))
            try:
                header = json.loads(fh.readline())
            except ValueError:
                header = None
            if not isinstance(header, dict) or header.get("format") != _FORMAT:
                raise StoreCorruptError(f"{snap} is not an mmkg graph snapshot")
            if header.get("version") != _VERSION:
                raise StoreCorruptError(f"{snap} has format version {header.get('version')}, expected {_VERSION}")
            for raw in fh:
                try:
                    chunk = json.loads(raw)
                except ValueError as exc:
                    raise StoreCorruptError(f"{snap} is damaged: {exc}") from exc
                if "n" in chunk:
                    add_node = self._g.add_node
                    for node_id, label, props in chunk["n"]:
                        add_node(sys.intern(node_id), label=_LABEL[label], props=props)
                        self._label_counts[label] += 1
                    n_nodes += len(chunk["n"])
                elif "e" in chunk:
                    apply_edge, intern = self._apply_edge, sys.intern  # one copy of each id in memory
                    for src, dst, rel, props in chunk["e"]:
                        apply_edge(intern(src), intern(dst), rel, props)
                    n_edges += len(chunk["e"])
                elif chunk.get("end"):
                    ended = True
            self._snapshot_size = fh.tell()
        if not ended or (n_nodes, n_edges) != (header.get("nodes"), header.get("edges")):
            raise StoreCorruptError(f"{snap} is incomplete ({n_nodes} nodes, {n_edges} edges read)")
        self._seq = int(header["seq"])

    def _replay_wal(self, repair: bool) -> bool:
        wal = self.path / WAL
        if not wal.exists():
            self._wal_size = 0
            return True
        data = wal.read_bytes()
        good = 0  # offset just past the last good line
        pos = 0
        torn: str | None = None
        while pos < len(data):
            end = data.find(b"\n", pos)
            line = data[pos:] if end < 0 else data[pos:end]
            try:
                if end < 0:
                    raise ValueError("no line end")
                record = json.loads(line)
                seq, ops = int(record["seq"]), record["ops"]
            except (ValueError, KeyError, TypeError) as exc:
                rest = b"" if end < 0 else data[end + 1 :]
                if rest.strip(b"\0\n\r\t "):
                    raise StoreCorruptError(f"{wal} is damaged at byte {pos}: {exc}") from exc
                torn = str(exc)
                break
            if seq > self._seq:
                if seq != self._seq + 1:
                    if not repair:
                        return False  # a writer compacted after we read the snapshot
                    raise StoreCorruptError(f"{wal} skips from seq {self._seq} to {seq}")
                self._replay(ops)
                self._seq = seq
            pos = good = end + 1
        if torn is not None:
            log.warning(
                "graph store %s: dropping a torn last log line (%d bytes): %s", self.path, len(data) - good, torn
            )
            if repair:
                with open(wal, "r+b") as fh:
                    fh.truncate(good)
                    fh.flush()
                    os.fsync(fh.fileno())
        self._wal_size = good
        return True

    @staticmethod
    def _ident(st: os.stat_result) -> tuple[int, int, int]:
        return (st.st_dev, st.st_ino, st.st_mtime_ns)

    def _replay(self, ops: list[list[Any]]) -> None:
        for op in ops:
            kind = op[0]
            if kind == "N":
                self._apply_node(op[1], _LABEL[op[2]], op[3])
            elif kind == "E" and op[3] in _REL:
                self._apply_edge(op[1], op[2], op[3], op[4])
            elif kind == "D":
                self._apply_delete(op[1])
            elif kind == "R" and op[3] in _REL:
                self._apply_remove_edge(op[1], op[2], op[3])
            else:
                raise StoreCorruptError(f"unknown log operation {kind!r} in {self.path / WAL}")

    def _snapshot_lines(self) -> Iterator[str]:
        n_edges = sum(self._rel_counts.values())
        yield _dumps(
            {"format": _FORMAT, "version": _VERSION, "seq": self._seq, "nodes": len(self._attrs), "edges": n_edges}
        )
        chunk: list[Any] = []
        for node_id, attrs in self._attrs.items():
            chunk.append([node_id, attrs["label"].value, attrs["props"]])
            if len(chunk) >= _CHUNK:
                yield _dumps({"n": chunk})
                chunk = []
        if chunk:
            yield _dumps({"n": chunk})
        chunk = []
        for u, nbrs in self._succ.items():
            for v, d in nbrs.items():
                for rel, props in d.items():
                    chunk.append([u, v, rel, props])
                    if len(chunk) >= _CHUNK:
                        yield _dumps({"e": chunk})
                        chunk = []
        if chunk:
            yield _dumps({"e": chunk})
        yield _dumps({"end": True})

    def _write_snapshot(self) -> None:
        """Stream the graph to a temp file, fsync, rename over the snapshot, fsync the folder."""
        target = self.path / SNAPSHOT
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{SNAPSHOT}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="ascii", newline="\n") as fh:
                for line in self._snapshot_lines():
                    fh.write(line)
                    fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
                size = fh.tell()
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_path(self.path)
        self._snapshot_size = size
