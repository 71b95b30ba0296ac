"""A workspace opened for work: settings, encoder, graph store and vector indexes, opened together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mmkg.encoders.base import Encoder
from mmkg.graph.store import GraphStore
from mmkg.index.vectors import Vectors
from mmkg.settings import Settings
from mmkg.workspace import Workspace


@dataclass
class Collection:
    settings: Settings
    encoder: Encoder
    store: GraphStore
    vectors: Vectors


@contextmanager
def open_collection(
    settings: Settings, read_only: bool = False, encoder: Encoder | None = None
) -> Iterator[Collection]:
    """`read_only`: for searching; the embedded store is then opened without the writer's lock (an ingest
    may hold it). The graph is read before the vectors: a writer saves vectors before it commits the
    graph, so every node read has its vector (a node deleted meanwhile may leave a vector: never a hit).
    `encoder`: one already loaded (a server reopening the collection after a write)."""
    from mmkg.encoders.factory import create_encoder
    from mmkg.graph.factory import open_store

    Workspace(settings.home).ensure()
    encoder = encoder or create_encoder(settings)
    store = open_store(settings, read_only=read_only)
    try:
        vectors = Vectors.open(settings, encoder.dim, encoder.fingerprint)
    except BaseException:
        store.close()
        raise
    try:
        yield Collection(settings, encoder, store, vectors)
    finally:
        vectors.close()
        store.close()
