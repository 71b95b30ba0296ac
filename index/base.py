"""The VectorIndex seam: string ids and unit vectors in, nearest neighbours by inner product out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from mmkg.errors import UserInputError


class IndexDimensionError(UserInputError, ValueError):
    """Vectors of the wrong width: usually the encoder changed since the index was built."""


def unit_rows(vectors: np.ndarray, dim: int, what: str) -> np.ndarray:
    """A C-contiguous float32 (n, dim) copy with unit rows (a single vector is one row); what every
    index checks before it stores or searches."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise IndexDimensionError(f"{what} have shape {np.shape(vectors)}, but this index holds {dim}-d vectors")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinity")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} contain a zero vector, which has no direction to compare")
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


def rows_to_add(ids: Sequence[str], vectors: np.ndarray, dim: int) -> tuple[np.ndarray, dict[str, int]]:
    """The unit rows of `vectors` and each distinct id's first row, in order: what every backend's `add`
    checks before it looks up which ids it holds already."""
    vecs = unit_rows(vectors, dim, "vectors")
    if len(ids) != len(vecs):
        raise ValueError(f"{len(ids)} ids but {len(vecs)} vectors")
    first: dict[str, int] = {}
    for i, node_id in enumerate(ids):
        if not isinstance(node_id, str):
            raise ValueError(f"ids must be strings, got {node_id!r}")
        first.setdefault(node_id, i)
    return vecs, first


class VectorIndex(ABC):
    """A persistent nearest-neighbour index over unit vectors, keyed by node id."""

    dim: int

    @abstractmethod
    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Add vectors; ids already present are left as they are. Returns how many were new."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """For each query row, up to k (id, inner product) pairs, best first."""

    @abstractmethod
    def get(self, ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of `ids`, in order (KeyError for an unknown id)."""

    def present(self, ids: Sequence[str]) -> set[str]:
        """The ids among `ids` that hold a vector: one call (one round trip for a remote backend)."""
        return {i for i in ids if i in self}

    @abstractmethod
    def remove(self, ids: Sequence[str]) -> int: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, node_id: object) -> bool: ...

    @abstractmethod
    def save(self) -> None:
        """Persist crash-safely (index and id map together)."""
