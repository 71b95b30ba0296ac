"""MilvusIndex beyond the shared contract: settings, clear errors, the Lite server's lifecycle, and a real
collection searched the same with Milvus as with FAISS."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymilvus import DataType, MilvusClient

from mmkg.cli import main
from mmkg.errors import MmkgError, UserInputError
from mmkg.index.faiss_index import FaissIndex
from mmkg.index.milvus_index import MilvusIndex, MilvusIndexError, id_filter, open_indexes
from mmkg.index.vectors import Vectors
from mmkg.settings import Settings

DIM = 8


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_index_setting_picks_milvus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, lock_is_free: Callable[[Path], bool]
) -> None:
    monkeypatch.setenv("MMKG_INDEX", "milvus")
    settings = Settings.load(home=tmp_path / "home")
    assert settings.seed_source == "milvus" and settings.milvus_uri is None
    vectors = Vectors.open(settings, DIM, "test-encoder")
    try:
        assert all(isinstance(index, MilvusIndex) for index in vectors)
        assert [index.name for index in vectors] == ["images", "texts", "entities"]  # type: ignore[attr-defined]
        assert {index.uri for index in vectors} == {str(tmp_path / "home" / "index" / "milvus.db")}  # type: ignore[attr-defined]
    finally:
        vectors.close()
    assert lock_is_free(tmp_path / "home" / "index" / "milvus.db")

    monkeypatch.setenv("MMKG_MILVUS_URI", str(tmp_path / "elsewhere.db"))
    vectors = Vectors.open(Settings.load(home=tmp_path / "home"), DIM, "test-encoder")
    vectors.close()
    assert (tmp_path / "elsewhere.db" / "LOCK").exists()

    monkeypatch.delenv("MMKG_INDEX")
    monkeypatch.setenv("MMKG_SEED_SOURCE", "milvus")  # the setting's own name still works
    assert Settings.load().seed_source == "milvus"
    monkeypatch.setenv("MMKG_INDEX", "faiss")  # the newer name wins when both are set
    assert Settings.load().seed_source == "faiss"
    assert all(isinstance(i, FaissIndex) for i in Vectors.open(Settings.load(home=tmp_path / "h2"), DIM, "e"))
    monkeypatch.setenv("MMKG_INDEX", "qdrant")
    with pytest.raises(UserInputError, match="faiss, milvus, neo4j"):
        Settings.load()


def test_a_workspace_keeps_the_backend_it_was_made_with(tmp_path: Path) -> None:
    """Opening FAISS-made vectors with MMKG_INDEX=milvus would find none (every search empty): refused."""
    home = tmp_path / "home"
    Vectors.open(Settings(home=home), DIM, "enc").save()
    with pytest.raises(UserInputError, match="in the faiss index, not milvus .*MMKG_INDEX=faiss"):
        Vectors.open(Settings(home=home, seed_source="milvus"), DIM, "enc")
    manifest = home / "index" / "encoder.json"
    manifest.write_text(json.dumps({"encoder": "enc", "dim": DIM}))  # written before the backend was recorded
    Vectors.open(Settings(home=home, seed_source="milvus"), DIM, "enc").close()
    assert json.loads(manifest.read_text())["index"] == "milvus"
    with pytest.raises(UserInputError, match="in the milvus index, not faiss"):
        Vectors.open(Settings(home=home), DIM, "enc")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://127.0.0.1:1", "cannot reach Milvus at http://127.0.0.1:1"),
        ("ftp://example.org/x", "is not|illegal"),
        ("/no/such/folder/milvus.db", "no folder /no/such/folder"),
    ],
)
def test_an_unreachable_or_wrong_uri_is_one_clear_error(
    uri: str, message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    start = time.monotonic()
    with pytest.raises(MilvusIndexError, match=message) as caught:
        MilvusIndex.connect(uri, "images", DIM)
    assert isinstance(caught.value, MmkgError) and caught.value.__cause__ is None
    assert time.monotonic() - start < 15
    _, err = capfd.readouterr()
    assert "Traceback" not in err and "MilvusException" not in err  # pymilvus's own logging stays quiet


def test_the_cli_reports_a_down_server_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    monkeypatch.setenv("MMKG_INDEX", "milvus")
    monkeypatch.setenv("MMKG_MILVUS_URI", "http://127.0.0.1:1")
    code = main(["search", "a dog", "--home", str(home)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("mmkg: error: cannot reach Milvus at http://127.0.0.1:1") and err.count("\n") == 1


def test_a_server_that_goes_away_is_a_clear_error(tmp_path: Path, rng: np.random.Generator) -> None:
    from milvus_lite.server_manager import server_manager_instance

    path = str(tmp_path / "milvus.db")
    index = MilvusIndex.connect(path, "images", DIM)
    index.add(["a"], unit(rng, 1))
    server_manager_instance.release_server(path)  # the server stops under the open index
    try:
        with pytest.raises(MilvusIndexError, match="cannot reach Milvus"):
            index.search(unit(rng, 1), 3)
    finally:
        index.close()


def test_the_lite_server_runs_in_process_and_stops_with_its_last_index(
    tmp_path: Path, rng: np.random.Generator, proc_tree: Any, lock_is_free: Callable[[Path], bool]
) -> None:
    import os

    folder = tmp_path / "milvus.db"
    children = proc_tree.descendants(os.getpid())
    images, texts = open_indexes(str(folder), ["images", "texts"], DIM)
    other = MilvusIndex.connect(str(folder), "entities", DIM)  # a second connection in the same process
    assert proc_tree.descendants(os.getpid()) == children  # no child process to leave behind
    images.add(["a"], unit(rng, 1))
    images.close()
    assert texts.add(["t"], unit(rng, 1)) == 1 and len(other) == 0  # the others still work
    texts.close()
    assert not lock_is_free(folder) and "a" not in other
    other.close()
    assert lock_is_free(folder)
    with pytest.raises(MilvusIndexError, match="closed"):
        len(images)
    again = MilvusIndex.connect(str(folder), "images", DIM)
    assert "a" in again
    again.close()
    assert lock_is_free(folder)


def test_a_lite_folder_held_by_another_process_is_refused_clearly(
    tmp_path: Path, lock_is_free: Callable[[Path], bool]
) -> None:
    folder = tmp_path / "milvus.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys
                from mmkg.index.milvus_index import MilvusIndex
                index = MilvusIndex.connect({str(folder)!r}, "images", {DIM})
                print("open", flush=True)
                sys.stdin.read()
                index.close()
            """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(MilvusIndexError, match="open in another process"):
            MilvusIndex.connect(str(folder), "images", DIM)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0 and lock_is_free(folder)
    MilvusIndex.connect(str(folder), "images", DIM).close()  # free again once the holder is gone


def test_a_foreign_collection_is_not_taken_over(tmp_path: Path) -> None:
    path = str(tmp_path / "milvus.db")
    client = MilvusClient(path)
    schema = MilvusClient.create_schema(auto_id=True)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection("mmkg_images", schema=schema)
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(path)  # a plain client does not stop the Lite server it started
    with pytest.raises(MilvusIndexError, match="not made by mmkg"):
        MilvusIndex.connect(path, "images", DIM)


def test_id_filter_escapes_every_id() -> None:
    assert id_filter(['a"b', "c\\d", "e'f", "g\nh"]) == 'id in ["a\\"b", "c\\\\d", "e\'f", "g\\nh"]'


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_a_collection_ingested_with_milvus_searches_as_with_faiss(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    home: Path,
    fashion_subset: Any,
    tmp_path: Path,
    lock_is_free: Callable[[Path], bool],
) -> None:
    catalog = fashion_subset(tmp_path / "fashion", 30)
    faiss_home = tmp_path / "faiss-home"
    shutil.copytree(home, faiss_home)

    def cli(*args: str) -> dict[str, Any]:
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    queries = [
        ("search", "white sports shoes for men", "-k", "10"),
        ("search", "a red dress", "-k", "10", "--target", "texts"),
        ("search", "--image", str(next(catalog.glob("images/*.jpg"))), "-k", "10"),
    ]
    faiss_report = cli("ingest", str(catalog), "--home", str(faiss_home), "--quiet")
    faiss_stats = cli("stats", "--home", str(faiss_home))
    faiss_hits = [cli(*q, "--home", str(faiss_home))["results"] for q in queries]

    monkeypatch.setenv("MMKG_INDEX", "milvus")
    report = cli("ingest", str(catalog), "--home", str(home), "--quiet")
    assert {k: v for k, v in report.items() if "second" not in k} == {
        k: v for k, v in faiss_report.items() if "second" not in k
    }
    assert cli("stats", "--home", str(home)) == faiss_stats
    assert (home / "index" / "milvus.db").is_dir() and not (home / "index" / "images").exists()
    for query, want in zip(queries, faiss_hits, strict=True):
        got = cli(*query, "--home", str(home))["results"]
        assert [h["id"] for h in got] == [h["id"] for h in want] and len(got) == 10
        assert [h["score"] for h in got] == pytest.approx([h["score"] for h in want], abs=1e-3)
    again = cli("ingest", str(catalog), "--home", str(home), "--quiet")
    assert again["ingested"] == 0 and again["already_present"] == 30
    assert lock_is_free(home / "index" / "milvus.db")  # each command gave the Lite folder back
