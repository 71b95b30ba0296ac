"""A small real collection for the API's tests: the suite's trained heads (tests/conftest.py) and the
first fashion products, ingested once per session; each test gets its own copy of that workspace."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

N_PRODUCTS = 20


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory, trained_home: Path, fashion_subset: Any) -> Path:
    from mmkg.cli import main

    base = tmp_path_factory.mktemp("served")
    home = base / "home"
    shutil.copytree(trained_home, home)
    catalog = fashion_subset(base / "root" / "fashion", N_PRODUCTS)
    assert main(["ingest", str(catalog), "--home", str(home), "--quiet", "--json"]) == 0
    return home


@pytest.fixture
def api_home(tmp_path: Path, served_home: Path) -> Path:
    """A private copy of the served workspace (the catalog it came from stays shared, read-only)."""
    target = tmp_path / "home"
    shutil.copytree(served_home, target)
    return target


@pytest.fixture
def catalog_dir(served_home: Path) -> Path:
    return served_home.parent / "root" / "fashion"
