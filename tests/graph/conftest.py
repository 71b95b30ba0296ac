"""The `store` fixture runs every contract test against each GraphStore backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmkg.graph.store import GraphStore


@pytest.fixture(params=["memory", "neo4j"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    if request.param == "memory":
        from mmkg.graph.memory import MemoryGraphStore

        s: GraphStore = MemoryGraphStore(tmp_path / "graph")
    else:
        request.applymarker(pytest.mark.neo4j)
        s = request.getfixturevalue("neo4j_store")  # tests/conftest.py: a clean database on the local server
    yield s
    s.close()
