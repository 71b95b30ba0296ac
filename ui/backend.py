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

from mmkg.collection import Collection, collection_on
from mmkg.graph.factory import open_store
from mmkg.graph.neo4j_server import server_uri
from mmkg.graph.store import GraphStore
from mmkg.retrieval.search import Hit, Query, Retriever
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

DENSE = "dense"
"""The dense retriever (encoder neighbours, shared-entity explanations): used where graph retrieval is absent."""
GRAPH_MODES = ("full", "gnn", "encoder")
"""The ranking engine's modes, best first (retrieval/record_search.py)."""
WARM_UP_QUERY = "photo"


def open_read_store(settings: Settings) -> GraphStore:
    """The configured store, read-only where the backend allows it (an ingest may hold the writer's lock)."""
    return open_store(settings, read_only=True)


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
        self._collection: Collection | None = None

    # --- what is shown in the sidebar ----------------------------------------------------

    @property
    def home(self) -> Path:
        return Path(self.settings.home).resolve()

    def describe_store(self) -> str:
        if self.settings.store == "neo4j":
            return f"neo4j at {server_uri(self.settings)}"
        return f"memory (embedded) at {Workspace(self.home).graph_dir}"

    def modes(self) -> list[str]:
        return self._given_modes or available_modes(self.settings)

    # --- the store -----------------------------------------------------------------------

    @property
    def store(self) -> GraphStore:
        """The graph store, opened on first use (raises StoreUnavailableError when it cannot be reached). Once
        open it is read without the lock, so a page never waits behind a search: the warm-up holds the lock
        while it loads the encoders, and the explorer's first page (it asks the store whether it is empty) had
        waited over a minute for it on 2 busy cores. The stores serve concurrent reads (the memory store reads
        safely against writes, Neo4j opens a session per call)."""
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._store_opener(self.settings)
                store = self._store
        return store

    # --- searching -----------------------------------------------------------------------

    def retriever(self, mode: str) -> Retriever:
        with self._lock:
            if mode not in self._retrievers:
                self._retrievers[mode] = self._make_retriever(mode)
            return self._retrievers[mode]

    def _make_retriever(self, mode: str) -> Retriever:
        from mmkg.retrieval.record_search import RecordRetriever  # torch: loaded once the page shows

        col = self.collection()
        return RecordRetriever(col.settings, col.store, col.vectors, col.encoder, mode=mode)  # type: ignore[arg-type]

    def collection(self) -> Collection:
        """The store with the encoder and vector indexes, opened on the first search (the encoder may not be
        trained yet while the overview already shows)."""
        with self._lock:
            if self._collection is None:
                self._collection = collection_on(self.store, self.settings)
            return self._collection

    def search(self, query: Query, k: int, target: str, mode: str) -> tuple[list[Hit], list[str], bool]:
        """The hits, the query's words that no record states, and whether the query photo is unlike every photo
        of the collection."""
        with self._lock:
            retriever = self.retriever(mode if mode in self.modes() else self.modes()[0])
            hits = retriever.search(query, k=k, target=target)  # type: ignore[arg-type]
            return hits, retriever.unmatched_words(query), retriever.unlike_collection(query)

    def warm_up(self) -> None:
        """One text search now, so that a user's first search does not wait for what it loads once: the ranking
        engine, the text encoder and the entity parser (MedPix workspace: 8.7 s cold, 0.16 s warmed up). A
        failure here is the first real search's to report."""
        try:
            _ = self.store  # opened first: the page reads it while the search loads the encoders
            self.search(Query(text=WARM_UP_QUERY), k=1, target="images", mode=self.modes()[0])
        except Exception:
            log.debug("warming up the explorer's search failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            if self._collection is not None:
                try:
                    self._collection.vectors.close()
                except Exception:  # pragma: no cover - closing is best effort
                    log.debug("closing the vector indexes failed", exc_info=True)
                self._collection = None
            if self._store is not None:
                try:
                    self._store.close()
                except Exception:  # pragma: no cover - closing is best effort
                    log.debug("closing the store failed", exc_info=True)
                self._store = None
