"""What the explorer reads from: the workspace's graph store and a retriever, opened once per server.

The graph store is opened read-only where the backend allows it (the embedded store), so `mmkg ingest`
can keep writing while the explorer is open; the encoder and vector indexes are loaded on the first
search, so the overview of a collection shows even before an encoder is trained.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from mmkg.graph.store import GraphStore
from mmkg.retrieval.search import Hit, Query, Retriever
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

DENSE = "dense"
"""The dense retriever (encoder neighbours, shared-entity explanations): used where graph retrieval is absent."""
GRAPH_MODES = ("full", "gnn", "encoder")
"""The ranking engine's modes, best first (retrieval/record_search.py)."""


def open_read_store(settings: Settings) -> GraphStore:
    """The configured store, read-only for the embedded backend (an ingest may hold the writer's lock)."""
    if settings.store == "memory":
        from mmkg.graph.memory import MemoryGraphStore

        return MemoryGraphStore(Workspace(settings.home).graph_dir, read_only=True)
    from mmkg.graph.factory import open_store

    return open_store(settings)


def available_modes(settings: Settings) -> list[str]:
    """Retrieval modes, the default first: the one ranking engine's (`mmkg search --mode`), none needing training."""
    return list(GRAPH_MODES)


class Backend:
    """One workspace, opened lazily; safe to share between the explorer's sessions (searches are serialised)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: GraphStore | None = None,
        retrievers: dict[str, Retriever] | None = None,
        store_opener: Callable[[Settings], GraphStore] = open_read_store,
    ) -> None:
        self.settings = settings
        self._store = store
        self._retrievers: dict[str, Retriever] = dict(retrievers or {})
        self._given_modes = list(retrievers) if retrievers else None
        """Modes of retrievers handed in (tests); else every mode of the ranking engine, whichever were built."""
        self._store_opener = store_opener
        self._lock = threading.RLock()
        self._parts: tuple[object, object] | None = None

    # --- what is shown in the sidebar ----------------------------------------------------

    @property
    def home(self) -> Path:
        return Path(self.settings.home).resolve()

    def describe_store(self) -> str:
        if self.settings.store == "neo4j":
            return f"neo4j at {self.settings.neo4j_uri}"
        return f"memory (embedded) at {Workspace(self.home).graph_dir}"

    def modes(self) -> list[str]:
        return self._given_modes or available_modes(self.settings)

    # --- the store -----------------------------------------------------------------------

    @property
    def store(self) -> GraphStore:
        """The graph store, opened on first use (raises StoreUnavailableError when it cannot be reached)."""
        with self._lock:
            if self._store is None:
                self._store = self._store_opener(self.settings)
            return self._store

    # --- searching -----------------------------------------------------------------------

    def retriever(self, mode: str) -> Retriever:
        with self._lock:
            if mode not in self._retrievers:
                self._retrievers[mode] = self._make_retriever(mode)
            return self._retrievers[mode]

    def _make_retriever(self, mode: str) -> Retriever:
        from mmkg.retrieval.record_search import RecordRetriever  # torch: loaded once the page shows

        encoder, vectors = self._encoder_and_vectors()
        return RecordRetriever(self.settings, self.store, vectors, encoder, mode=mode)  # type: ignore[arg-type]

    def _encoder_and_vectors(self) -> tuple[object, object]:
        if self._parts is None:
            from mmkg.encoders.factory import create_encoder
            from mmkg.index.vectors import Vectors

            encoder = create_encoder(self.settings)
            vectors = Vectors.open(self.settings, encoder.dim, encoder.fingerprint)
            self._parts = (encoder, vectors)
        return self._parts

    def search(self, query: Query, k: int, target: str, mode: str) -> list[Hit]:
        with self._lock:
            retriever = self.retriever(mode if mode in self.modes() else self.modes()[0])
            return retriever.search(query, k=k, target=target)  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                try:
                    self._store.close()
                except Exception:  # pragma: no cover - closing is best effort
                    log.debug("closing the store failed", exc_info=True)
                self._store = None
