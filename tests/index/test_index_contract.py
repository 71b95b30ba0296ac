"""The VectorIndex contract, run against every backend that works on one machine: FAISS and Milvus Lite.

Each test gets an `Backend` that opens an index in a folder of its own and reopens it from there (persistence
across reopen); Milvus Lite indexes are closed at the end and the Lite folder's lock must then be free (its
in-process server stopped). Backend-specific behaviour lives in test_faiss_index.py and test_milvus_index.py;
the Neo4j backend, which needs graph nodes first, has its own contract tests in test_neo4j_index.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mmkg.index.base import IndexDimensionError, VectorIndex
from mmkg.index.faiss_index import FaissIndex
from mmkg.index.milvus_index import MilvusIndex

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int) -> list[list[str]]:
    scores = queries @ vectors.T
    return [[ids[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


class Backend:
    """Opens indexes of one backend kind under `root`; `open()` again on the same name is a reopen."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.opened: list[MilvusIndex] = []

    def open(self, dim: int = DIM, name: str = "images") -> VectorIndex:
        if self.name == "faiss":
            return FaissIndex.open(self.root / name, dim)
        index = MilvusIndex.connect(str(self.root / "milvus.db"), name, dim)
        self.opened.append(index)
        return index

    def close(self, index: VectorIndex) -> None:
        """What a process does before it ends: save, and let go of the index."""
        index.save()
        if isinstance(index, MilvusIndex):
            index.close()

    def close_all(self) -> None:
        for index in self.opened:
            index.close()


@pytest.fixture(params=["faiss", "milvus"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, lock_is_free: Callable[[Path], bool]) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path)
    yield b
    b.close_all()
    if b.name == "milvus" and (tmp_path / "milvus.db").exists():
        assert lock_is_free(tmp_path / "milvus.db"), "the Milvus Lite server outlived its indexes"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_add_search_get_remove(backend: Backend, rng: np.random.Generator) -> None:
    index = backend.open()
    vecs = unit(rng, 50)
    ids = [f"img:{i}" for i in range(50)]
    assert index.add(ids, vecs) == 50
    assert len(index) == 50 and "img:3" in index and "img:99" not in index
    hits = index.search(vecs[:3], k=5)
    assert [h[0][0] for h in hits] == ["img:0", "img:1", "img:2"]
    assert all(h[0][1] == pytest.approx(1.0, abs=1e-5) for h in hits)
    assert all(len(h) == 5 and [s for _, s in h] == sorted((s for _, s in h), reverse=True) for h in hits)
    assert [i for i, _ in hits[1]] == brute_force(vecs, ids, vecs[1:2], 5)[0]
    np.testing.assert_allclose(index.get(["img:7", "img:2"]), vecs[[7, 2]], atol=1e-6)
    with pytest.raises(KeyError, match="img:99"):
        index.get(["img:99"])
    assert index.present(["img:4", "img:99", "img:4"]) == {"img:4"}
    assert index.remove(["img:0", "img:0", "nope"]) == 1
    assert "img:0" not in index and len(index) == 49
    assert all(i != "img:0" for i, _ in index.search(vecs[0], k=49)[0])
    assert len(index.search(vecs[0], k=100)[0]) == 49
    assert index.add(["img:0"], vecs[:1]) == 1  # back again after removal
    assert index.search(vecs[0], k=1)[0][0][0] == "img:0"


def test_add_is_idempotent(backend: Backend, rng: np.random.Generator) -> None:
    index = backend.open()
    vecs = unit(rng, 10)
    ids = [f"t:{i}" for i in range(10)]
    assert index.add(ids[:6], vecs[:6]) == 6
    assert index.add(ids, vecs) == 4  # only the new ones
    assert index.add(ids, unit(rng, 10)) == 0  # existing ids keep their vectors
    np.testing.assert_allclose(index.get(ids), vecs, atol=1e-6)
    assert index.add(["dup", "dup"], unit(rng, 2)) == 1
    assert len(index) == 11


def test_vectors_are_normalised_and_validated(backend: Backend, rng: np.random.Generator) -> None:
    index = backend.open()
    raw = 3.0 * unit(rng, 4)
    index.add(list("abcd"), raw.astype(np.float64))
    np.testing.assert_allclose(np.linalg.norm(index.get(list("abcd")), axis=1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="zero"):
        index.add(["z"], np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="NaN"):
        index.add(["n"], np.full((1, DIM), np.nan))
    with pytest.raises(ValueError, match="2 ids but 1 vectors"):
        index.add(["x", "y"], unit(rng, 1))
    with pytest.raises(ValueError, match="strings"):
        index.add([7], unit(rng, 1))  # type: ignore[list-item]
    assert len(index) == 4


def test_wrong_dimension_is_a_clear_error(backend: Backend, rng: np.random.Generator) -> None:
    index = backend.open()
    with pytest.raises(IndexDimensionError, match=f"{DIM}-d"):
        index.add(["a"], unit(rng, 1, DIM + 1))
    with pytest.raises(ValueError, match=f"{DIM}-d"):
        index.search(unit(rng, 1, 8), k=3)
    index.add(["a"], unit(rng, 1))
    backend.close(index)
    with pytest.raises(IndexDimensionError, match="encoder changed"):
        backend.open(DIM * 2)


def test_empty_index(backend: Backend, rng: np.random.Generator) -> None:
    index = backend.open()
    assert len(index) == 0 and "x" not in index
    assert index.search(unit(rng, 2), k=5) == [[], []]
    assert index.search(unit(rng, 1), k=0) == [[]]
    assert index.get([]).shape == (0, DIM)
    assert index.present([]) == set()
    assert index.remove(["x"]) == 0


def test_ids_that_need_escaping(backend: Backend, rng: np.random.Generator) -> None:
    """Entity ids are names: quotes, backslashes, brackets and other scripts must round-trip."""
    ids = ["ent:o'neill", 'ent:"the" band', "ent:back\\slash", "ent:a], 'b", "ent:中文 ünï", "ent:tab\there"]
    vecs = unit(rng, len(ids))
    index = backend.open()
    assert index.add(ids, vecs) == len(ids)
    assert index.present([*ids, "ent:o"]) == set(ids)
    np.testing.assert_allclose(index.get(ids[::-1]), vecs[::-1], atol=1e-6)
    assert [row[0][0] for row in index.search(vecs, k=1)] == ids
    assert index.remove(ids[:3]) == 3
    assert index.present(ids) == set(ids[3:])


def test_persistence_across_reopen(backend: Backend, rng: np.random.Generator) -> None:
    index = backend.open()
    vecs = unit(rng, 40)
    ids = [f"i{n}" for n in range(40)]
    index.add(ids, vecs)
    index.remove(["i3"])
    queries = unit(rng, 5)
    expected = index.search(queries, k=7)
    backend.close(index)
    again = backend.open()
    assert len(again) == 39 and "i3" not in again
    assert sorted(again.ids()) == sorted(set(ids) - {"i3"})  # type: ignore[attr-defined]
    np.testing.assert_allclose(again.get(ids[4:9]), vecs[4:9], atol=1e-6)
    got = again.search(queries, k=7)
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in expected]
    again.add(["new"], unit(rng, 1))
    backend.close(again)
    assert "new" in backend.open()


def test_kinds_are_kept_apart(backend: Backend, rng: np.random.Generator) -> None:
    images, texts = backend.open(name="images"), backend.open(name="texts")
    v = unit(rng, 2)
    images.add(["img:1"], v[:1])
    texts.add(["txt:1"], v[1:])
    assert "img:1" in images and "img:1" not in texts and len(texts) == 1
    assert texts.search(v[0], k=5)[0][0][0] == "txt:1"


def test_search_agrees_with_exact_search(backend: Backend) -> None:
    """A few thousand clustered vectors: the top 10 match brute force (HNSW at these sizes is near exact)."""
    rng = np.random.default_rng(3)
    centres = unit(rng, 20)
    vecs = centres[rng.integers(0, 20, 3000)] + 0.35 * rng.standard_normal((3000, DIM)).astype(np.float32) / 4
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"v{n}" for n in range(3000)]
    queries = unit(np.random.default_rng(4), 50)
    index = backend.open()
    index.add(ids, vecs)
    index.save()
    truth = brute_force(vecs, ids, queries, 10)
    got = [[i for i, _ in row] for row in index.search(queries, k=10)]
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth, strict=True)])
    assert recall >= 0.95
    for row, q in zip(index.search(queries[:5], k=10), queries[:5], strict=True):
        exact = {node_id: float(vecs[int(node_id[1:])] @ q) for node_id, _ in row}
        assert all(score == pytest.approx(exact[node_id], abs=1e-5) for node_id, score in row)
