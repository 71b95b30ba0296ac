"""Open the configured graph store: callers never name a backend class."""

from __future__ import annotations

from mmkg.graph.neo4j_server import connection_settings
from mmkg.graph.store import GraphStore
from mmkg.settings import Settings
from mmkg.workspace import Workspace


def open_store(settings: Settings, read_only: bool = False) -> GraphStore:
    """The configured store. `read_only`: the embedded store opens without the writer's lock, on what was
    committed, so searches keep answering while an ingest or a delete writes (Neo4j serves both anyway)."""
    if settings.store == "neo4j":
        from mmkg.graph.neo4j_store import Neo4jGraphStore  # the neo4j driver: loaded only for this backend

        uri, user, password = connection_settings(settings)
        return Neo4jGraphStore(uri, user, password)
    from mmkg.graph.memory import MemoryGraphStore  # networkx: loaded only for this backend

    return MemoryGraphStore(Workspace(settings.home).graph_dir, read_only=read_only)
