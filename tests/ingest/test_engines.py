"""The ingest engines agree: one encoding thread or two, and Ray Data on a local Ray, give the same graph,
the same counts, the same report and the same top-10; a corrupt image is reported, never fatal; a re-run
changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mmkg.cli import main
from mmkg.errors import UserInputError
from mmkg.index.faiss_index import FaissIndex
from mmkg.ingest.ray_engine import RayEngine
from mmkg.settings import Settings

QUERY = "blue shirt for men"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def ingest(capsys: pytest.CaptureFixture[str], home: Path, catalog: Path, *flags: str) -> dict[str, Any]:
    report = run_json(capsys, "ingest", str(catalog), "--home", str(home), "--quiet", *flags)
    report.pop("seconds")
    return report


def state(capsys: pytest.CaptureFixture[str], home: Path) -> tuple[Any, list[str]]:
    stats = run_json(capsys, "stats", "--home", str(home))
    hits = run_json(capsys, "search", QUERY, "--home", str(home), "-k", "10")["results"]
    return stats, [h["id"] for h in hits]


def vectors(home: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for kind in ("images", "texts", "entities"):
        folder = home / "index" / kind
        index = FaissIndex.open(folder, json.loads((folder / "manifest.json").read_text())["dim"])
        held = sorted(index.ids())
        out[kind] = dict(zip(held, index.get(held), strict=True))
    return out


def same_vectors(a: Path, b: Path) -> None:
    va, vb = vectors(a), vectors(b)
    for kind in va:
        assert va[kind].keys() == vb[kind].keys(), kind
        for node_id, vec in va[kind].items():
            np.testing.assert_allclose(vec, vb[kind][node_id], atol=1e-5)


@pytest.fixture
def catalog(home: Path, fashion_subset: Any) -> Path:
    """Twelve products, one of whose images is corrupt."""
    folder = fashion_subset(home.parent / "fashion", 12)
    broken = sorted((folder / "images").glob("*.jpg"))[3]
    broken.write_bytes(broken.read_bytes()[:200])
    return folder


def twin(home: Path, name: str) -> Path:
    """Another fresh workspace with the same trained model."""
    other = home.parent / name
    shutil.copytree(home / "models", other / "models")
    if (home / "cache").exists():
        shutil.copytree(home / "cache", other / "cache")
    return other


def test_one_or_two_encoding_threads_give_the_same_collection(
    capsys: pytest.CaptureFixture[str], home: Path, catalog: Path
) -> None:
    one = ingest(capsys, home, catalog, "--workers", "1")
    other = twin(home, "two-threads")
    assert ingest(capsys, other, catalog, "--workers", "2") == one
    assert state(capsys, other) == state(capsys, home)
    same_vectors(home, other)


def test_ray_engine_gives_what_the_local_engine_gives(
    capsys: pytest.CaptureFixture[str], home: Path, catalog: Path
) -> None:
    local = ingest(capsys, home, catalog)
    assert local["ingested"] == 12 and local["new_images"] == 11
    assert [s["reason"].startswith("corrupt image") for s in local["skipped"]] == [True]

    on_ray = twin(home, "ray")
    assert ingest(capsys, on_ray, catalog, "--engine", "ray", "--workers", "2") == local
    assert state(capsys, on_ray) == state(capsys, home)
    same_vectors(home, on_ray)

    again = ingest(capsys, on_ray, catalog, "--engine", "ray", "--workers", "2")
    assert (again["ingested"], again["already_present"], again["new_images"]) == (0, 12, 0)
    assert state(capsys, on_ray) == state(capsys, home)


def test_coco_on_ray_into_milvus_matches_the_local_engine_into_faiss(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path, shared_data: Path
) -> None:
    """The scale-out issue's done-when: the same `stats --json` and the same top-10 for a text query."""
    coco = shared_data / "coco-mini"
    local = ingest(capsys, home, coco)
    assert local["ingested"] > 0 and not local["skipped"]
    scaled = twin(home, "ray-milvus")
    monkeypatch.setenv("MMKG_INDEX", "milvus")
    assert ingest(capsys, scaled, coco, "--engine", "ray", "--workers", "2") == local
    assert (scaled / "index" / "milvus.db").exists()
    on_milvus = run_json(capsys, "stats", "--home", str(scaled))
    top = top10(capsys, scaled, "a dog on a couch")
    monkeypatch.delenv("MMKG_INDEX")
    assert on_milvus == run_json(capsys, "stats", "--home", str(home))
    assert top == top10(capsys, home, "a dog on a couch")


def top10(capsys: pytest.CaptureFixture[str], home: Path, query: str) -> list[str]:
    return [h["id"] for h in run_json(capsys, "search", query, "--home", str(home), "-k", "10")["results"]]


def test_a_ray_that_does_not_start_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On two busy cores a local Ray once timed out starting, with a bare `Exception` that the CLI reported as an
    internal error. Ray's start is replaced here by that failure (making Ray time out for real takes minutes)."""
    import ray

    def timed_out(*args: Any, **kwargs: Any) -> None:
        raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "init", timed_out)
    engine = RayEngine(Settings.load(home=tmp_path))
    with pytest.raises(UserInputError, match="cannot start the Ray ingest engine on a local Ray: The current node"):
        engine.__enter__()
