"""A crash-safe on-disk cache of frozen-tower features, so re-training heads never re-encodes.

Layout: ``<cache_dir>/features/<namespace>/chunk-*.npz``, where the namespace names the feature
exactly (backbone, preprocessing, pooling, and the view: ``plain``, ``hflip`` or ``text``). Each
chunk holds ``keys`` (64-character sha256 hex strings: the image file's bytes, or a text's UTF-8)
and ``features`` (float32 rows), and is written with write-then-rename plus fsync, so a killed
process leaves whole chunks only: at most the chunk being written is lost and recomputed.
Several processes may append at once (chunk names are unique). Many small chunks are merged into
one from time to time (`compact`), again by writing the merged chunk before deleting its parts.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmkg.workspace import atomic_write_bytes

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
COMPACT_AFTER = 32
"""Merge a namespace's chunks into one when it has more than this many."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FeatureCache:
    """Features of one namespace (one feature kind and view), keyed by content hash."""

    def __init__(self, cache_dir: Path, namespace: str, dim: int) -> None:
        self.namespace = namespace
        self.dim = dim
        self.dir = Path(cache_dir) / "features" / _SAFE.sub("_", namespace)
        self._index: dict[str, tuple[int, int]] | None = None  # key -> (block, row)
        self._blocks: list[np.ndarray] = []
        self._files: list[Path] = []
        self.hits = 0
        self.misses = 0

    # -- reading ---------------------------------------------------------------------------------
    def _load(self) -> dict[str, tuple[int, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[int, int]] = {}
        self._blocks, self._files = [], []
        if self.dir.is_dir():
            for path in sorted(self.dir.glob("chunk-*.npz")):
                self._read_chunk(path, index)
        self._index = index
        return index

    def _read_chunk(self, path: Path, index: dict[str, tuple[int, int]]) -> None:
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = z["keys"]
                feats = np.asarray(z["features"], dtype=np.float32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            log.warning("feature cache: skipping unreadable chunk %s (%s)", path, exc)
            return
        if feats.ndim != 2 or feats.shape[1] != self.dim or len(keys) != feats.shape[0]:
            log.warning("feature cache: skipping chunk %s with shape %s (want dim %d)", path, feats.shape, self.dim)
            return
        block = len(self._blocks)
        self._blocks.append(feats)
        self._files.append(path)
        for row, key in enumerate(keys.tolist()):
            index[str(key)] = (block, row)

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(features, found): rows for the keys found, zeros elsewhere; `found` is a boolean mask."""
        index = self._load()
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        for i, key in enumerate(keys):
            loc = index.get(key)
            if loc is not None:
                out[i] = self._blocks[loc[0]][loc[1]]
                found[i] = True
        n_found = int(found.sum())
        self.hits += n_found
        self.misses += len(keys) - n_found
        return out, found

    # -- writing ---------------------------------------------------------------------------------
    def put(self, keys: Sequence[str], features: np.ndarray) -> None:
        """Append one chunk (atomically). Keys already cached are written again harmlessly."""
        feats = np.ascontiguousarray(features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape != (len(keys), self.dim):
            raise ValueError(f"features of shape {feats.shape} for {len(keys)} keys of dim {self.dim}")
        if not keys:
            return
        path = self.dir / f"chunk-{uuid.uuid4().hex}.npz"
        self._write(path, list(keys), feats)
        index = self._load()
        block = len(self._blocks)
        self._blocks.append(feats)
        self._files.append(path)
        for row, key in enumerate(keys):
            index[key] = (block, row)

    def _write(self, path: Path, keys: list[str], feats: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys, dtype="U64"), features=feats)
        atomic_write_bytes(path, buf.getvalue())

    def compact(self, force: bool = False) -> None:
        """Merge all chunks into one when there are many (or when forced)."""
        index = self._load()
        if len(self._files) <= (1 if force else COMPACT_AFTER):
            return
        keys = list(index)
        feats = np.stack([self._blocks[b][r] for b, r in (index[k] for k in keys)]) if keys else None
        old = list(self._files)
        if feats is None:
            return
        path = self.dir / f"chunk-{uuid.uuid4().hex}.npz"
        self._write(path, keys, feats)
        for f in old:
            f.unlink(missing_ok=True)
        self._blocks = [feats]
        self._files = [path]
        self._index = {k: (0, i) for i, k in enumerate(keys)}
        log.info("feature cache %s: merged %d chunks into one (%d rows)", self.namespace, len(old), len(keys))
