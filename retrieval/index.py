"""The VectorIndex seam: string ids and unit vectors in, nearest neighbours by inner product out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


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
