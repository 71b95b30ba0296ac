"""Neo4jVectorIndex: the VectorIndex contract on Neo4j's vector index, against the session's server.

Each test writes its graph nodes through Neo4jGraphStore (the database starts empty) and uses a vector
index kind of its own, dropped at the end, so dimensions never clash between tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mmkg.graph.neo4j_store import Neo4jGraphStore
from mmkg.graph.schema import Label, Node
from mmkg.index.base import IndexDimensionError
from mmkg.index.faiss_index import FaissIndex
from mmkg.index.neo4j_index import Neo4jVectorIndex, VectorNodeMissingError, names
from mmkg.settings import Settings

pytestmark = pytest.mark.neo4j

DIM = 16
_kinds = itertools.count()

IndexFactory = Callable[..., Neo4jVectorIndex]


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    scores = queries @ vectors.T
    return [[(ids[j], float(row[j])) for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


def write_nodes(store: Neo4jGraphStore, ids: list[str], label: Label = Label.IMAGE) -> None:
    store.upsert_nodes([Node(i, label, {"path": f"{i}.jpg"}) for i in ids])


def drop_index(server: object, kind: str) -> None:
    from neo4j import GraphDatabase

    index_name = names(kind)[2]
    with (
        GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver,  # type: ignore[attr-defined]
        driver.session() as session,
    ):
        session.run("DROP INDEX $name IF EXISTS", name=index_name).consume()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def make_index(neo4j_server: object, neo4j_store: Neo4jGraphStore) -> Iterator[IndexFactory]:
    """`make_index(dim=DIM, kind=None, **kw)`: a Neo4jVectorIndex on the (empty) test database."""
    opened: list[Neo4jVectorIndex] = []
    kinds: set[str] = set()

    def make(dim: int = DIM, kind: str | None = None, **kwargs: object) -> Neo4jVectorIndex:
        kind = kind or f"test_{next(_kinds)}"
        index = Neo4jVectorIndex.connect(
            neo4j_server.uri,  # type: ignore[attr-defined]
            neo4j_server.user,  # type: ignore[attr-defined]
            neo4j_server.password,  # type: ignore[attr-defined]
            kind,
            dim,
            **kwargs,
        )
        opened.append(index)
        kinds.add(kind)
        return index

    yield make
    for index in opened:
        index.close()
    for kind in kinds:
        drop_index(neo4j_server, kind)


def test_add_search_get_remove(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    ids = [f"img:{i}" for i in range(50)]
    write_nodes(neo4j_store, ids)
    index = make_index()
    assert len(index) == 0 and index.kind == "hnsw"
    vecs = unit(rng, 50)
    assert index.add(ids, vecs) == 50
    assert len(index) == 50
    assert "img:7" in index and "img:99" not in index and 7 not in index
    assert index.present(["img:7", "img:99", "img:8", "img:7"]) == {"img:7", "img:8"}

    hits = index.search(vecs[:3], 5)
    assert [h[0][0] for h in hits] == ["img:0", "img:1", "img:2"]
    assert all(abs(h[0][1] - 1.0) < 1e-5 for h in hits)
    assert all(len(h) == 5 for h in hits)
    assert index.search(vecs[0], 0) == [[]]
    assert len(index.search(vecs[0], 500)[0]) == 50  # k beyond the size: every vector, once

    got = index.get(["img:3", "img:1", "img:3"])
    np.testing.assert_allclose(got, vecs[[3, 1, 3]], atol=1e-6)
    with pytest.raises(KeyError):
        index.get(["img:1", "img:99"])

    assert index.remove(["img:1", "img:1", "img:99"]) == 1
    assert len(index) == 49 and "img:1" not in index
    assert all(node_id != "img:1" for node_id, _ in index.search(vecs[1], 49)[0])
    with pytest.raises(KeyError):
        index.get(["img:1"])
    assert index.remove(["img:1"]) == 0
    # the node itself stays in the graph, without its vector
    assert "img:1" in neo4j_store.get_nodes(["img:1"])
    assert index.add(["img:1"], vecs[1]) == 1  # and can take a vector again
    assert index.search(vecs[1], 1)[0][0][0] == "img:1"
    index.save()  # nothing to do, but callable
    assert sorted(index.ids()) == sorted(ids)


def test_vectors_are_normalised_and_scores_are_inner_products(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    ids = [f"img:{i}" for i in range(200)]
    write_nodes(neo4j_store, ids)
    index = make_index()
    raw = unit(rng, 200) * rng.uniform(0.1, 10.0, size=(200, 1)).astype(np.float32)  # not unit length
    index.add(ids, raw)
    vecs = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(index.get(ids[:5]), vecs[:5], atol=1e-6)
    queries = unit(rng, 20)
    expected = brute_force(vecs, ids, queries, 10)
    for got, want in zip(index.search(queries * 3.0, 10), expected, strict=True):
        assert [i for i, _ in got] == [i for i, _ in want] or _same_up_to_ties(got, want)
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def _same_up_to_ties(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> bool:
    return all(abs(a[1] - b[1]) < 1e-6 for a, b in zip(got, want, strict=True))


def test_quantized_index_is_rescored_exactly(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    """An index created with quantization (Neo4j's own default) gives approximate scores: they are recomputed."""
    ids = [f"img:{i}" for i in range(100)]
    write_nodes(neo4j_store, ids)
    index = make_index(quantization=True)
    assert index.quantized
    vecs = unit(rng, 100)
    index.add(ids, vecs)
    queries = unit(rng, 10)
    for got, want in zip(index.search(queries, 5), brute_force(vecs, ids, queries, 5), strict=True):
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_add_is_idempotent_and_keeps_existing_vectors(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    ids = [f"txt:{i}" for i in range(30)]
    write_nodes(neo4j_store, ids, Label.TEXT)
    index = make_index()
    vecs = unit(rng, 30)
    assert index.add(ids[:20], vecs[:20]) == 20
    assert index.add(ids[:20], vecs[:20]) == 0
    other = unit(rng, 30)
    assert index.add(ids, other) == 10  # only the 10 new ids; the first 20 keep their vectors
    np.testing.assert_allclose(index.get(ids[:20]), vecs[:20], atol=1e-6)
    np.testing.assert_allclose(index.get(ids[20:]), other[20:], atol=1e-6)
    assert index.add(["txt:0", "txt:0"], other[:2]) == 0
    assert index.add([], np.zeros((0, DIM), dtype=np.float32)) == 0
    # a duplicate id within one call: the first vector wins, as in FaissIndex
    write_nodes(neo4j_store, ["txt:dup"], Label.TEXT)
    assert index.add(["txt:dup", "txt:dup"], other[:2]) == 1
    np.testing.assert_allclose(index.get(["txt:dup"])[0], other[0], atol=1e-6)
    assert len(index) == 31
    # re-opening the index finds the same vectors in the server
    again = make_index(kind=index.name)
    assert len(again) == 31
    np.testing.assert_allclose(again.get(ids[:3]), vecs[:3], atol=1e-6)


def test_search_right_after_add_sees_the_new_vectors(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    index = make_index()
    for batch in range(8):
        ids = [f"img:{batch}:{i}" for i in range(40)]
        write_nodes(neo4j_store, ids)
        vecs = unit(rng, 40)
        assert index.add(ids, vecs) == 40
        assert len(index) == 40 * (batch + 1)
        hits = index.search(vecs, 1)  # immediately, in a new transaction
        assert [h[0][0] for h in hits] == ids
        assert all(abs(h[0][1] - 1.0) < 1e-5 for h in hits)


def test_ids_without_a_graph_node_are_refused_and_nothing_is_written(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    write_nodes(neo4j_store, ["img:a", "img:b"])
    index = make_index()
    with pytest.raises(VectorNodeMissingError, match="'img:ghost'"):
        index.add(["img:a", "img:ghost", "img:b"], unit(rng, 3))
    assert len(index) == 0
    assert neo4j_store.existing_ids(["img:ghost"]) == set()  # no node was made up either


def test_wrong_dimension_and_bad_input_are_clear_errors(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    write_nodes(neo4j_store, ["img:a", "img:b"])
    index = make_index()
    with pytest.raises(IndexDimensionError, match="16-d"):
        index.add(["img:a"], unit(rng, 1, dim=DIM + 1))
    with pytest.raises(IndexDimensionError, match="16-d"):
        index.search(unit(rng, 2, dim=8), 3)
    with pytest.raises(ValueError, match="2 ids but 1 vectors"):
        index.add(["img:a", "img:b"], unit(rng, 1))
    with pytest.raises(ValueError, match="zero vector"):
        index.add(["img:a"], np.zeros((1, DIM), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, DIM), np.nan, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="strings"):
        index.add([1], unit(rng, 1))  # type: ignore[list-item]
    assert len(index) == 0
    # the Neo4j index already exists with 16 dimensions: asking for 32 is the encoder-changed error
    with pytest.raises(IndexDimensionError, match="holds 16-d vectors but 32-d"):
        make_index(dim=32, kind=index.name)
    with pytest.raises(ValueError, match="kind"):
        make_index(kind="Images) DETACH DELETE n //")


def test_top10_parity_with_faiss(
    make_index: IndexFactory, neo4j_store: Neo4jGraphStore, rng: np.random.Generator
) -> None:
    n, dim = 500, 32
    ids = [f"img:{i}" for i in range(n)]
    write_nodes(neo4j_store, ids)
    vecs = unit(rng, n, dim)
    neo = make_index(dim=dim)
    faiss_index = FaissIndex(dim)
    assert neo.add(ids, vecs) == n
    assert faiss_index.add(ids, vecs) == n
    queries = unit(rng, 50, dim)
    got, want = neo.search(queries, 10), faiss_index.search(queries, 10)
    overlap = [len({i for i, _ in a} & {i for i, _ in b}) / 10 for a, b in zip(got, want, strict=True)]
    assert float(np.mean(overlap)) >= 0.9
    # where both return an id, they give it the same score
    for a, b in zip(got, want, strict=True):
        scores = dict(b)
        for node_id, score in a:
            if node_id in scores:
                assert abs(score - scores[node_id]) < 1e-5


def test_vectors_open_returns_neo4j_indexes_with_seed_source_neo4j(
    neo4j_server: object, neo4j_store: Neo4jGraphStore, tmp_path: Path, rng: np.random.Generator
) -> None:
    from mmkg.index.vectors import Vectors

    settings = Settings(
        home=tmp_path / "home",
        store="neo4j",
        seed_source="neo4j",
        neo4j_uri=neo4j_server.uri,  # type: ignore[attr-defined]
        neo4j_user=neo4j_server.user,  # type: ignore[attr-defined]
        neo4j_password=neo4j_server.password,  # type: ignore[attr-defined]
    )
    try:
        vectors = Vectors.open(settings, 24, "test-encoder")
        assert all(isinstance(index, Neo4jVectorIndex) for index in vectors)
        assert [index.name for index in vectors] == ["images", "texts", "entities"]
        write_nodes(neo4j_store, ["img:1"])
        neo4j_store.upsert_nodes([Node("ent:red", Label.ENTITY, {"name": "red"})])
        v = unit(rng, 2, 24)
        assert vectors.images.add(["img:1"], v[:1]) == 1
        assert vectors.entities.add(["ent:red"], v[1:]) == 1
        vectors.save()
        assert len(vectors.images) == 1 and len(vectors.texts) == 0 and len(vectors.entities) == 1
        assert vectors.images.search(v[0], 5)[0][0][0] == "img:1"
        assert vectors.entities.search(v[0], 5)[0][0][0] == "ent:red"  # kinds are kept apart
        assert "img:1" not in vectors.entities
        del vectors
        # the FAISS path is unchanged for the default seed source
        plain = Vectors.open(Settings(home=tmp_path / "home2"), 24, "test-encoder")
        assert all(isinstance(index, FaissIndex) for index in plain)
    finally:
        for kind in ("images", "texts", "entities"):
            drop_index(neo4j_server, kind)
