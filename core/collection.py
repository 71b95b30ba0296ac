"""A workspace opened for work: settings, encoder, graph store and vector indexes, opened together."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mmkg.encoders.base import Encoder
from mmkg.encoders.factory import create_encoder
from mmkg.graph.factory import open_store
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
    Workspace(settings.home).ensure()
    encoder = encoder or create_encoder(settings)
    store = open_store(settings, read_only=read_only)
    try:
        collection = collection_on(store, settings, encoder)
    except BaseException:
        store.close()
        raise
    try:
        yield collection
    finally:
        collection.vectors.close()
        store.close()


def collection_on(store: GraphStore, settings: Settings, encoder: Encoder | None = None) -> Collection:
    """A collection over a graph store already open (the explorer opens its store first, for the overview): the
    encoder (`encoder`, or the configured one, loaded once per process) and the vector indexes that match it."""
    encoder = encoder or create_encoder(settings)
    return Collection(settings, encoder, store, Vectors.open(settings, encoder.dim, encoder.fingerprint))
