"""FaissIndex: its files on disk (generations, crash safety, corruption) and the exact -> HNSW switch.

The VectorIndex contract (add, search, get, remove, validation, reopen) runs on FAISS and Milvus Lite alike
in test_index_contract.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmkg.index.faiss_index import MANIFEST, FaissIndex, IndexCorruptError

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int = DIM, clusters: int = 20) -> np.ndarray:
    centres = unit(rng, clusters, dim)
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_force(vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int) -> list[list[str]]:
    scores = queries @ vectors.T
    return [[ids[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)












def test_persistence_round_trip(rng: np.random.Generator, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    index = FaissIndex.open(folder, DIM, exact_max=1000)
    vecs = unit(rng, 40)
    ids = [f"i{n}" for n in range(40)]
    index.add(ids, vecs)
    index.remove(["i3"])
    index.save()
    queries = unit(rng, 5)
    expected = index.search(queries, k=7)
    again = FaissIndex.open(folder, DIM, exact_max=1000)
    assert len(again) == 39 and "i3" not in again
    assert again.ids() == index.ids()
    np.testing.assert_allclose(again.get(ids[4:9]), vecs[4:9], atol=1e-6)
    got = again.search(queries, k=7)
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in expected]
    assert sorted(p.name for p in folder.iterdir()) == ["ids.1.json", "index.1.faiss", MANIFEST]
    again.add(["new"], unit(rng, 1))
    again.save()
    assert sorted(p.name for p in folder.iterdir()) == ["ids.2.json", "index.2.faiss", MANIFEST]
    assert "new" in FaissIndex.open(folder, DIM)


def test_an_unfinished_save_leaves_the_last_one(rng: np.random.Generator, tmp_path: Path) -> None:
    """A crash after writing a new generation's files but before the manifest: the old pair still loads."""
    folder = tmp_path / "index"
    index = FaissIndex.open(folder, DIM)
    index.add(["a", "b"], unit(rng, 2))
    index.save()
    (folder / "index.2.faiss").write_bytes(b"half written")
    (folder / "ids.2.json").write_text('["a", "b", "c"')
    again = FaissIndex.open(folder, DIM)
    assert sorted(again.ids()) == ["a", "b"]
    again.add(["c"], unit(rng, 1))
    again.save()  # the new generation replaces the leftovers
    assert sorted(FaissIndex.open(folder, DIM).ids()) == ["a", "b", "c"]


def test_a_manifest_that_disagrees_with_its_files_is_an_error(rng: np.random.Generator, tmp_path: Path) -> None:
    folder = tmp_path / "index"
    index = FaissIndex.open(folder, DIM)
    index.add(["a", "b"], unit(rng, 2))
    index.save()
    ids_file, index_file = folder / "ids.1.json", folder / "index.1.faiss"
    good_ids, good_index = ids_file.read_bytes(), index_file.read_bytes()
    ids_file.write_text('["a", "c"]')  # same size, other ids
    with pytest.raises(IndexCorruptError, match="checksum"):
        FaissIndex.open(folder, DIM)
    ids_file.write_bytes(good_ids)
    index_file.write_bytes(good_index[:-10])
    with pytest.raises(IndexCorruptError, match="size"):
        FaissIndex.open(folder, DIM)
    index_file.write_bytes(good_index)
    assert len(FaissIndex.open(folder, DIM)) == 2


def test_exact_switches_to_hnsw_and_keeps_results(rng: np.random.Generator, tmp_path: Path) -> None:
    vecs = clustered(rng, 3000)
    ids = [f"v{n}" for n in range(3000)]
    queries = clustered(np.random.default_rng(1), 100)
    index = FaissIndex.open(tmp_path / "index", DIM, exact_max=1000)
    index.add(ids[:1000], vecs[:1000])
    assert index.kind == "flat"
    exact_before = index.search(queries, k=10)
    assert [[i for i, _ in row] for row in exact_before] == brute_force(vecs[:1000], ids[:1000], queries, 10)
    index.add(ids[1000:], vecs[1000:])  # crosses the threshold
    assert index.kind == "hnsw" and len(index) == 3000
    np.testing.assert_allclose(index.get(ids[:5] + ids[-5:]), vecs[:5].tolist() + vecs[-5:].tolist(), atol=1e-6)
    truth = brute_force(vecs, ids, queries, 10)
    got = [[i for i, _ in row] for row in index.search(queries, k=10)]
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.95
    # removal under HNSW: tombstones are skipped, results stay full
    gone = [row[0] for row in truth[:20]]
    index.remove(gone)
    got = index.search(queries[:20], k=10)
    assert all(len(row) == 10 and not set(i for i, _ in row) & set(gone) for row in got)
    index.save()
    reloaded = FaissIndex.open(tmp_path / "index", DIM, exact_max=1000)
    assert reloaded.kind == "hnsw" and len(reloaded) == 3000 - len(set(gone))
    assert reloaded.search(queries[:20], k=10) == got
    manifest = json.loads((tmp_path / "index" / MANIFEST).read_text())
    assert manifest["kind"] == "hnsw" and manifest["count"] == len(reloaded)


def test_many_removals_rebuild_the_index(rng: np.random.Generator) -> None:
    index = FaissIndex(DIM, exact_max=100)
    vecs = unit(rng, 300)
    ids = [f"v{n}" for n in range(300)]
    index.add(ids, vecs)
    assert index.kind == "hnsw"
    index.remove(ids[:250])  # the rebuild finds 50 left: exact again
    assert index.kind == "flat" and len(index) == 50
    assert [i for i, _ in index.search(vecs[260], k=1)[0]] == ["v260"]
    np.testing.assert_allclose(index.get(ids[250:]), vecs[250:], atol=1e-6)
