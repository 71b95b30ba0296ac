"""The `world` fixture: a small real graph (tests/gnn/tiny_world.py) for the GNN and graph-retrieval tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def load_tiny_world() -> Any:
    name = "mmkg_tests_tiny_world"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("tiny_world.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    w = load_tiny_world().build_world(tmp_path / "graph")
    yield w
    w.store.close()
