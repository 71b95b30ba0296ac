"""The same collection through the CLI into both stores: equal counts, the same top-10, the same explanations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mmkg.cli import main

pytestmark = pytest.mark.neo4j


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_memory_and_neo4j_agree(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    tmp_path: Path,
    fashion_subset: Any,
    neo4j_server: Any,
    neo4j_store: Any,  # wipes the test database first
) -> None:
    catalog = fashion_subset(tmp_path / "fashion", 25)
    neo_home = tmp_path / "neo-home"
    shutil.copytree(home / "models", neo_home / "models")
    monkeypatch.setenv("NEO4J_URI", neo4j_server.uri)
    monkeypatch.setenv("NEO4J_USER", neo4j_server.user)
    monkeypatch.setenv("NEO4J_PASSWORD", neo4j_server.password)

    stores = {"memory": home, "neo4j": neo_home}
    reports = {
        s: run_json(capsys, "ingest", str(catalog), "--home", str(h), "--store", s, "--quiet")
        for s, h in stores.items()
    }
    assert reports["memory"]["ingested"] == reports["neo4j"]["ingested"] == 25
    stats = {s: run_json(capsys, "stats", "--home", str(h), "--store", s) for s, h in stores.items()}
    assert stats["memory"] == stats["neo4j"]

    image = next(catalog.glob("images/*.jpg"))
    for query in (["white sports shoes for men"], ["black watch", "--target", "texts"], ["--image", str(image)]):
        results = {
            s: run_json(capsys, "search", *query, "-k", "10", "--home", str(h), "--store", s)["results"]
            for s, h in stores.items()
        }
        assert [r["id"] for r in results["memory"]] == [r["id"] for r in results["neo4j"]]
        assert [r["explanation"]["shared_entities"] for r in results["memory"]] == [
            r["explanation"]["shared_entities"] for r in results["neo4j"]
        ]
