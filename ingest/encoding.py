"""Encoder work side by side on a few threads: image batches, texts, and decoding, at once.

On a machine with few cores, k batches each on one intra-op thread beat one batch on k threads (the
threads of one op wait on each other at every layer; measured in benchmarks/ingest_scaling.py), and torch
releases the GIL inside its ops. Image features do not depend on how the images are batched, so the
vectors are the same as one `encode_images` call gives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from mmkg.encoders.base import Encoder

T = TypeVar("T")
R = TypeVar("R")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` for the block (process-wide), then restored."""
    import torch  # torch and the lit backend load with the encoder, not when ingest's modules are imported

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Pending:
    """Vectors being computed in pieces: `result()` waits and stacks them in input order."""

    def __init__(self, parts: list[Future[np.ndarray]], finish: Callable[[np.ndarray], np.ndarray], dim: int):
        self.parts = parts
        self.finish = finish
        self.dim = dim

    def result(self) -> np.ndarray:
        if not self.parts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.finish(np.concatenate([p.result() for p in self.parts]))


class EncodePool:
    """`workers` threads that run encoder work; with more than one, torch runs each op on one thread."""

    def __init__(self, encoder: Encoder, workers: int) -> None:
        self.encoder = encoder
        self.workers = max(1, workers)
        self._executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> EncodePool:
        self._stack = torch_threads(1) if self.workers > 1 else None
        if self._stack is not None:
            self._stack.__enter__()
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="mmkg-encode")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._executor is not None
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None
        if self._stack is not None:
            self._stack.__exit__(None, None, None)

    def submit(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        assert self._executor is not None, "EncodePool used outside its `with` block"
        return self._executor.submit(fn, *args)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` of each item, spread over the threads, in order."""
        if self.workers == 1 or len(items) < 2:
            return [fn(item) for item in items]
        step = -(-len(items) // self.workers)
        chunks = [items[i : i + step] for i in range(0, len(items), step)]
        futures = [self.submit(lambda chunk: [fn(x) for x in chunk], chunk) for chunk in chunks]
        return [r for f in futures for r in f.result()]

    def images(self, images: Sequence[Image.Image]) -> Pending:
        """Image vectors, the frozen tower's batches spread over the threads (lit), else in one call."""
        from mmkg.encoders.lit import LitEncoder  # torch: see torch_threads

        enc = self.encoder
        if not images:
            return Pending([], lambda x: x, enc.dim)
        if not isinstance(enc, LitEncoder) or self.workers == 1:
            return Pending([self.submit(enc.encode_images, list(images))], lambda x: x, enc.dim)
        size = min(enc.batch_size, -(-len(images) // self.workers))
        parts = [self.submit(enc.batch_image_features, list(images[i : i + size]))
                 for i in range(0, len(images), size)]
        return Pending(parts, enc.project_image_features, enc.dim)

    def texts(self, texts: Sequence[str]) -> Pending:
        if not texts:
            return Pending([], lambda x: x, self.encoder.dim)
        self._load_text_towers(texts)
        return Pending([self.submit(self.encoder.encode_texts, list(texts))], lambda x: x, self.encoder.dim)

    def _load_text_towers(self, texts: Sequence[str]) -> None:
        """Load the towers these texts need here, on the calling thread: a first load imports modules, and
        transformers' lazy imports fail when another thread is inside torch meanwhile."""
        from mmkg.encoders.lit import LitEncoder, text_towers  # torch: see torch_threads

        enc = self.encoder
        if isinstance(enc, LitEncoder):
            for head in {head for text in texts for head in text_towers(text, enc.routing)}:
                enc.text_features(head, [])
