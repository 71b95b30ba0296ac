"""The Encoder seam: images or texts in, L2-normalised float32 rows out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image


class Encoder(ABC):
    """One embedding space for images and texts.

    Implementations batch internally (`batch_size`), show a progress bar on large inputs,
    and always return an array of shape (n, dim), float32, rows of unit length.
    """

    name: str
    dim: int

    @property
    def fingerprint(self) -> str:
        """Identifies the exact weights: vectors from different fingerprints must not share an index."""
        return self.name

    @abstractmethod
    def encode_images(self, images: Sequence[Image.Image], progress: bool = False) -> np.ndarray: ...

    @abstractmethod
    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
