"""The VectorIndex on FAISS: exact search while small, HNSW once it grows, persisted crash-safely.

Vectors are L2-normalised on the way in, so inner product is cosine similarity. Row r of the FAISS index
holds the vector of `ids[r]`; a removed id leaves a tombstone (None) that searches skip with an id
selector, until tombstones pass a quarter of the rows and the index is rebuilt without them.

On disk, in one folder:

- `index.<g>.faiss` — the FAISS index of generation g (`faiss.write_index`);
- `ids.<g>.json` — the string id of every row, null for a tombstone;
- `manifest.json` — `{"format": "mmkg-faiss-index", "version": 1, "dim", "kind", "generation",
  "index_file", "index_bytes", "ids_file", "ids_bytes", "ids_sha256", "rows", "count"}`.

`save()` writes and fsyncs a new generation's two files, then replaces the manifest atomically, then
deletes older generations: a crash at any point leaves a manifest naming a complete pair (both or
neither). Loading checks sizes, the id list's checksum and the row counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from mmkg.errors import MmkgError
from mmkg.index.base import IndexDimensionError, VectorIndex, rows_to_add, unit_rows
from mmkg.workspace import atomic_write_bytes, atomic_write_json, fsync_path

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_FORMAT = "mmkg-faiss-index"
_VERSION = 1
_REBUILD_DEAD_FRACTION = 0.25
_SMALL_BATCH = 32  # queries per search below which one thread is used

_threads_set = False
_faiss: Any = faiss  # the bundled type stubs lack the search-parameter classes


class IndexCorruptError(MmkgError):
    """The index folder's files do not agree with its manifest."""


def configure_threads() -> int:
    """Let FAISS use the cores this process may run on, not every core in the box (OpenMP's own maximum
    already honours OMP_NUM_THREADS)."""
    global _threads_set
    n = min(faiss.omp_get_max_threads(), len(os.sched_getaffinity(0)))
    if not _threads_set:
        faiss.omp_set_num_threads(n)
        _threads_set = True
    return n


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """A few queries run faster on one thread: an OpenMP team costs more than it saves, and on a
    busy machine (cores shared with other processes) its barriers made single queries ~100x slower."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class FaissIndex(VectorIndex):
    """Nearest neighbours by inner product over unit vectors, keyed by node id.

    Exact (IndexFlatIP) up to `exact_max` vectors; when an add takes it past that, the index is rebuilt
    as HNSW (IndexHNSWFlat, inner product) and stays HNSW from then on (until a rebuild finds it small).
    Not thread-safe.
    """

    def __init__(
        self,
        dim: int,
        exact_max: int = 100_000,
        folder: Path | None = None,
        *,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        configure_threads()
        self.dim = dim
        self.exact_max = exact_max
        self.folder = None if folder is None else Path(folder)
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self._generation = 0
        self._dirty = False
        self._index: Any = None
        self._ids: list[str | None] = []  # row -> id, None where removed
        self._pos: dict[str, int] = {}  # live id -> row
        self._selector: tuple[Any, Any] | None = None  # cached "not a tombstone" selector
        self._build([], np.zeros((0, dim), dtype=np.float32))

    @classmethod
    def open(
        cls,
        folder: Path,
        dim: int,
        exact_max: int = 100_000,
        *,
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
    ) -> FaissIndex:
        """The index saved in `folder`, or a new empty one that will be saved there."""
        index = cls(dim, exact_max, folder, hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        manifest_path = Path(folder) / MANIFEST
        if manifest_path.exists():
            index._load(manifest_path)
        return index

    # ------------------------------------------------------------------ VectorIndex

    @property
    def kind(self) -> str:
        """`flat` (exact) or `hnsw` (approximate)."""
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "flat"

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        vecs, first = rows_to_add(ids, vectors, self.dim)
        keep = [i for node_id, i in first.items() if node_id not in self._pos]
        if not keep:
            return 0
        new_ids = [ids[i] for i in keep]
        new_vecs = vecs[keep]
        if self.kind == "flat" and len(self._pos) + len(new_ids) > self.exact_max:
            rows, live_ids = self._live()
            log.info("vector index passes %d vectors: switching from exact to HNSW", self.exact_max)
            self._build(live_ids + new_ids, np.vstack([self._vectors(rows), new_vecs]))
        else:
            start = len(self._ids)
            self._index.add(new_vecs)
            self._ids.extend(new_ids)
            self._pos.update((node_id, start + j) for j, node_id in enumerate(new_ids))
        self._dirty = True
        return len(new_ids)

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        q = unit_rows(queries, self.dim, "queries")
        k = min(int(k), len(self._pos))
        if k < 1:
            return [[] for _ in range(len(q))]
        with _one_thread() if len(q) < _SMALL_BATCH else contextlib.nullcontext():
            scores, rows = self._index.search(q, k, params=self._search_params(k))
        out: list[list[tuple[str, float]]] = []
        for score_row, label_row in zip(scores, rows, strict=True):
            hits = []
            for score, row in zip(score_row.tolist(), label_row.tolist(), strict=True):
                node_id = self._ids[row] if row >= 0 else None
                if node_id is not None:
                    hits.append((node_id, float(score)))
            out.append(hits)
        return out

    def get(self, ids: Sequence[str]) -> np.ndarray:
        rows = []
        for node_id in ids:
            row = self._pos.get(node_id)
            if row is None:
                raise KeyError(f"no vector for {node_id!r} in the index")
            rows.append(row)
        return self._vectors(rows)

    def remove(self, ids: Sequence[str]) -> int:
        """Forget ids (unknown ones are ignored). Returns how many were removed."""
        removed = 0
        for node_id in dict.fromkeys(ids):
            row = self._pos.pop(node_id, None)
            if row is not None:
                self._ids[row] = None
                removed += 1
        if removed:
            self._dirty = True
            self._selector = None
            if len(self._ids) - len(self._pos) > _REBUILD_DEAD_FRACTION * len(self._ids):
                rows, live_ids = self._live()
                self._build(live_ids, self._vectors(rows))
        return removed

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._pos

    def ids(self) -> list[str]:
        """Every id in the index (row order)."""
        return [i for i in self._ids if i is not None]

    def save(self) -> None:
        """Write a new generation, point the manifest at it, then delete the old one."""
        if self.folder is None:
            raise MmkgError("this index has no folder to save to (create it with FaissIndex.open)")
        if not self._dirty and (self.folder / MANIFEST).exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        gen = self._generation + 1
        index_file, ids_file = f"index.{gen}.faiss", f"ids.{gen}.json"
        faiss.write_index(self._index, str(self.folder / index_file))
        fsync_path(self.folder / index_file)
        ids_bytes = json.dumps(self._ids, ensure_ascii=True).encode("ascii")
        atomic_write_bytes(self.folder / ids_file, ids_bytes)  # also fsyncs the folder, for index_file too
        manifest = {
            "format": _FORMAT,
            "version": _VERSION,
            "dim": self.dim,
            "kind": self.kind,
            "generation": gen,
            "index_file": index_file,
            "index_bytes": (self.folder / index_file).stat().st_size,
            "ids_file": ids_file,
            "ids_bytes": len(ids_bytes),
            "ids_sha256": hashlib.sha256(ids_bytes).hexdigest(),
            "rows": len(self._ids),
            "count": len(self._pos),
        }
        atomic_write_json(self.folder / MANIFEST, manifest)
        self._generation = gen
        self._dirty = False
        self._remove_other_generations()

    # ------------------------------------------------------------------ internals

    def _new_index(self, n: int) -> faiss.Index:
        if n <= self.exact_max:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def _build(self, ids: list[str], vectors: np.ndarray) -> None:
        """A fresh index over exactly these rows, of the kind their number calls for."""
        self._index = self._new_index(len(ids))
        if len(ids):
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._ids = list(ids)
        self._pos = {node_id: row for row, node_id in enumerate(ids)}
        self._selector = None

    def _live(self) -> tuple[list[int], list[str]]:
        """Rows still in use, and their ids."""
        pairs = [(row, node_id) for row, node_id in enumerate(self._ids) if node_id is not None]
        return [row for row, _ in pairs], [node_id for _, node_id in pairs]

    def _vectors(self, rows: Sequence[int]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._index.reconstruct_batch(np.asarray(rows, dtype=np.int64)), dtype=np.float32)

    def _search_params(self, k: int) -> Any:
        """Skip tombstones inside the search (so k live hits come back), and widen HNSW's beam to k."""
        sel = None
        if len(self._ids) > len(self._pos):
            if self._selector is None:
                dead = np.asarray([r for r, node_id in enumerate(self._ids) if node_id is None], dtype=np.int64)
                batch = faiss.IDSelectorBatch(dead)
                self._selector = (batch, faiss.IDSelectorNot(batch))  # keep `batch` alive beside its user
            sel = self._selector[1]
        if self.kind == "hnsw":
            params = _faiss.SearchParametersHNSW(efSearch=max(self.ef_search, k))
            if sel is not None:
                params.sel = sel
            return params
        return None if sel is None else _faiss.SearchParameters(sel=sel)

    def _load(self, manifest_path: Path) -> None:
        folder = manifest_path.parent
        try:
            manifest = json.loads(manifest_path.read_text("utf-8"))
        except ValueError as exc:
            raise IndexCorruptError(f"{manifest_path} is not valid JSON: {exc}") from exc
        if manifest.get("format") != _FORMAT or manifest.get("version") != _VERSION:
            raise IndexCorruptError(f"{manifest_path} is not an mmkg FAISS index manifest (version {_VERSION})")
        if manifest["dim"] != self.dim:
            raise IndexDimensionError(
                f"the index in {folder} holds {manifest['dim']}-d vectors but {self.dim}-d were asked for; "
                "the encoder changed since it was built: delete the folder and re-index"
            )
        index_path, ids_path = folder / manifest["index_file"], folder / manifest["ids_file"]
        for path, size in ((index_path, manifest["index_bytes"]), (ids_path, manifest["ids_bytes"])):
            if not path.exists() or path.stat().st_size != size:
                raise IndexCorruptError(f"{path} is missing or not the size {manifest_path} records")
        ids_bytes = ids_path.read_bytes()
        if hashlib.sha256(ids_bytes).hexdigest() != manifest["ids_sha256"]:
            raise IndexCorruptError(f"{ids_path} does not match the checksum {manifest_path} records")
        index = faiss.read_index(str(index_path))
        ids: list[str | None] = json.loads(ids_bytes)
        if index.ntotal != len(ids) or len(ids) != manifest["rows"] or index.d != self.dim:
            raise IndexCorruptError(f"{index_path} and {ids_path} disagree ({index.ntotal} vectors, {len(ids)} ids)")
        if isinstance(index, faiss.IndexHNSWFlat):
            index.hnsw.efSearch = self.ef_search
        self._index = index
        self._ids = ids
        self._pos = {node_id: row for row, node_id in enumerate(ids) if node_id is not None}
        self._selector = None
        self._generation = int(manifest["generation"])
        self._dirty = False

    def _remove_other_generations(self) -> None:
        assert self.folder is not None
        keep = {f"index.{self._generation}.faiss", f"ids.{self._generation}.json"}
        for path in [*self.folder.glob("index.*.faiss"), *self.folder.glob("ids.*.json")]:
            if path.name not in keep:
                path.unlink(missing_ok=True)
