"""The `store` fixture runs every contract test against each GraphStore backend.

`open_store` opens a handle on one store per test (empty at the start of the test); calling it again
opens a new handle on the same data, which is how `reopen` checks durability. Backends:

- memory: `MemoryGraphStore(tmp_path / "graph")`.
- neo4j (marked `neo4j`, so `-m "not neo4j"` deselects it at collection): `neo4j_store_factory` from
  tests/conftest.py, which opens a new store on the same database (wiped once per test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mmkg.graph.store import GraphStore

StoreOpener = Callable[[], GraphStore]


@pytest.fixture(params=["memory", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    if request.param == "neo4j":
        yield request.getfixturevalue("neo4j_store_factory")  # it closes what it opened
        return
    from mmkg.graph.memory import MemoryGraphStore

    opened: list[GraphStore] = []

    def open_memory() -> GraphStore:
        s = MemoryGraphStore(tmp_path / "graph")
        opened.append(s)
        return s

    yield open_memory
    for s in opened:
        s.close()  # close() is idempotent


@pytest.fixture
def store(open_store: StoreOpener) -> GraphStore:
    return open_store()


@pytest.fixture
def reopen(open_store: StoreOpener) -> Callable[[GraphStore], GraphStore]:
    """Close a store and open it again on the same data: what survives is what was durable."""

    def _reopen(old: GraphStore) -> GraphStore:
        old.close()
        return open_store()

    return _reopen
