"""A workspace opened for work: settings, encoder, graph store and vector indexes, opened together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mmkg.encoders.base import Encoder
from mmkg.graph.store import GraphStore
from mmkg.retrieval.vectors import Vectors
from mmkg.settings import Settings
from mmkg.workspace import Workspace


@dataclass
class Collection:
    settings: Settings
    encoder: Encoder
    store: GraphStore
    vectors: Vectors


@contextmanager
def open_collection(settings: Settings) -> Iterator[Collection]:
    from mmkg.encoders.factory import create_encoder
    from mmkg.graph.factory import open_store

    Workspace(settings.home).ensure()
    encoder = create_encoder(settings)
    vectors = Vectors.open(settings, encoder.dim, encoder.fingerprint)
    store = open_store(settings)
    try:
        yield Collection(settings, encoder, store, vectors)
    finally:
        store.close()
