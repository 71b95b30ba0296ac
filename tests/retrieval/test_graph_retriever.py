"""Graph retrieval on a small real graph: expansion bounds, fusion, filters, valid explanation paths."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image

from mmkg.encoders.base import Encoder, l2_normalize
from mmkg.errors import UserInputError
from mmkg.gnn.pairs import PairGraph
from mmkg.gnn.refine import TrainedGnn
from mmkg.gnn.train import Trainer
from mmkg.retrieval.expansion import GraphIndex
from mmkg.retrieval.explain import check_path
from mmkg.retrieval.graph_retriever import GraphRetriever
from mmkg.retrieval.search import Query
from mmkg.settings import Settings


def _tiny_world() -> Any:
    name = "mmkg_tests_tiny_world"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "gnn" / "tiny_world.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    w = _tiny_world().build_world(tmp_path / "graph")
    yield w
    w.store.close()


class WordEncoder(Encoder):
    """Texts: the mean of the entity vectors of the words they contain. Images: a fixed vector."""

    name = "words"

    def __init__(self, world: Any) -> None:
        self.dim = 16
        self.words = {e[4:]: world.vectors.entities.get([e])[0] for e in world.entities if ":" not in e[4:]}
        self.image_vec = world.vectors.images.get([world.images[0]])[0]

    def encode_texts(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        rows = []
        for t in texts:
            hits = [v for w, v in self.words.items() if w in t.lower()]
            rows.append(np.mean(hits, axis=0) if hits else np.ones(self.dim))
        return l2_normalize(np.stack(rows))

    def encode_images(self, images: Sequence[Image.Image], progress: bool = False) -> np.ndarray:
        return l2_normalize(np.stack([self.image_vec for _ in images]))


_TRAINED: dict[str, TrainedGnn] = {}


def _trained(world: Any, tmp_path: Path) -> TrainedGnn:
    """A refiner trained for a few epochs on the world itself (contrastive + link prediction); the
    worlds are identical (seeded), so one training serves every test of this module."""
    if "model" in _TRAINED:
        return _TRAINED["model"]
    pairs = PairGraph(Settings(home=tmp_path), world.store, world.vectors, world.images, world.texts,
                      np.asarray(world.owner), [])
    model, _ = Trainer(pairs, None, {"hidden": 32, "epochs": 8, "batch_size": 8, "fanouts": [4, 3]}).fit(False)
    fusion = {"text.w_graph": 0.2, "text.entity_share": 0.5, "text.seeds": 4,
              "image.w_graph": 0.2, "image.entity_share": 0.5, "image.seeds": 4}
    _TRAINED["model"] = TrainedGnn(model.eval(), "words", fusion=fusion)
    return _TRAINED["model"]


def _retriever(world: Any, tmp_path: Path, mode: str = "full") -> GraphRetriever:
    settings = Settings(home=tmp_path / "ws")
    return GraphRetriever(settings, world.store, world.vectors, WordEncoder(world), _trained(world, tmp_path),
                          mode=mode)  # type: ignore[arg-type]


def _hops(world: Any, starts: Sequence[str]) -> dict[str, int]:
    dist = {s: 0 for s in starts}
    frontier = list(starts)
    for d in (1, 2):
        nxt = []
        for u in frontier:
            for _, other in world.store.neighbors(u):
                if other.id not in dist:
                    dist[other.id] = d
                    nxt.append(other.id)
        frontier = nxt
    return dist


def test_expansion_is_bounded_by_two_hops_and_fanout(world):
    g = GraphIndex.from_store(world.store, max_fanout=3)
    assert np.diff(g.transition.indptr).max() <= 3  # capped fan-out
    np.testing.assert_allclose(np.asarray(g.transition.sum(axis=1)).ravel()[np.diff(g.transition.indptr) > 0], 1,
                               rtol=1e-5)
    start_ids = ["ent:dog", world.images[0]]
    start = sp.csr_matrix(([0.5, 0.5], ([0, 0], g.rows(start_ids))), shape=(1, len(g)))
    mass = g.expand(start, hops=2).mass
    dist = _hops(world, start_ids)
    reached = [g.ids[j] for j in mass.indices]
    assert reached and all(r in dist and dist[r] <= 2 for r in reached)
    assert float(mass.sum()) <= 1.5 + 1e-6  # one step's mass plus half the next
    one = g.expand(start, hops=1).mass
    assert all(dist[g.ids[j]] <= 1 for j in one.indices)
    with pytest.raises(ValueError):
        g.expand(start, hops=3)


@pytest.mark.parametrize("mode", ["encoder", "gnn", "full"])
def test_search_each_mode_ranks_the_right_topic_first(world, tmp_path, mode):
    r = _retriever(world, tmp_path, mode)
    hits = r.search(Query(text="a dog playing with a ball on the grass"), k=5, target="images")
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].id.startswith("img:dog") and sum(h.id.startswith("img:dog") for h in hits) >= 3
    texts = r.search(Query(text="sea and sand at the beach"), k=3, target="texts")
    assert all(h.kind == "text" for h in texts) and texts[0].id.startswith("txt:beach")


def test_explanations_are_real_paths(world, tmp_path):
    r = _retriever(world, tmp_path)
    hits = r.search(Query(text="a dog with a ball"), k=6)
    assert any(h.explanation.paths for h in hits)
    for hit in hits:
        for path in hit.explanation.paths:
            assert path[0].label == "Query" and path[-1].id == hit.id
            assert check_path(world.store, path), path
        assert hit.explanation.lines()  # readable
    top = hits[0].explanation
    assert any(step.label == "Entity" for path in top.paths for step in path)
    one = r.explain(Query(text="a dog with a ball"), world.images[1])
    assert one.paths and all(check_path(world.store, p) for p in one.paths)
    assert "dog" in " ".join(one.lines()) or "ball" in " ".join(one.lines())
    with pytest.raises(UserInputError):
        r.explain(Query(text="dog"), "img:nope")


def test_filters_by_attribute_and_entity(world, tmp_path):
    r = _retriever(world, tmp_path)
    hits = r.search(Query(text="a dog"), k=20, where={"colour": "white"})
    assert hits and all(int(h.id[-1]) % 2 == 0 for h in hits)  # only the white ones (even numbers)
    assert {h.id for h in hits} == {i for i in world.images if int(i[-1]) % 2 == 0}
    beach = r.search(Query(text="a dog"), k=20, where={"entity": "sea"})
    linked = {e.src for e in world.store.iter_edges("DEPICTS") if e.dst == "ent:sea"}
    assert beach and {h.id for h in beach} <= linked
    with pytest.raises(UserInputError, match="colour"):
        r.search(Query(text="a dog"), where={"colour": "purple"})


def test_state_cache_is_reused_and_invalidated(world, tmp_path):
    r = _retriever(world, tmp_path)
    first = r.search(Query(text="a dog"), k=3)
    again = _retriever(world, tmp_path)
    assert [h.id for h in again.search(Query(text="a dog"), k=3)] == [h.id for h in first]
    from mmkg.graph.schema import Edge, Label, Node, Rel

    vec = world.vectors.images.get([world.images[0]])
    world.vectors.images.add(["img:newdog"], vec)
    world.store.upsert_nodes([Node("img:newdog", Label.IMAGE, {"path": "/data/newdog.jpg"})])
    world.store.upsert_edges([Edge("img:newdog", "ent:dog", Rel.DEPICTS, {"score": 0.9})])
    fresh = _retriever(world, tmp_path)
    assert "img:newdog" in fresh.state.ids["Image"]  # the new node was refined (inductively, no retraining)


@pytest.mark.parametrize("kind,target", [("text", "Image"), ("text", "Text"), ("image", "Image")])
def test_search_scores_equal_the_batch_scores_that_eval_reports(world, tmp_path, kind, target):
    """One query through `GraphRanker.rank` (search) and through the batched `fuse` (eval, tuning) gives
    the same top results and scores, with every fusion term switched on."""
    from mmkg.retrieval.fusion import FusionParams, fuse
    from mmkg.retrieval.graph_retriever import GraphRanker, query_signals

    base = _trained(world, tmp_path)
    weights = FusionParams(w_encoder=0.3, w_graph=0.2, entity_share=0.5, seeds=4, w_hub=0.5, w_echo_query=0.6,
                           w_echo_target=0.3, w_entity=0.4, max_reached=5).to_json()
    trained = TrainedGnn(base.model, "words", fusion={f"{kind}.{k}": v for k, v in weights.items()})
    state = _retriever(world, tmp_path).state
    ranker = GraphRanker(state, trained, "full")
    if kind == "text":
        q_enc = WordEncoder(world).encode_texts(["a dog playing with a ball"])[0]
        ents = [("ent:dog", 1.0), ("ent:ball", 1.0)]
    else:
        q_enc = world.vectors.images.get([world.images[2]])[0]
        ents = [("ent:dog", 0.4)]
    q_ref = ranker.refine(q_enc, kind, [e for e, _ in ents])
    assert q_ref is not None
    ranked, _ = ranker.rank(q_enc, q_ref, ents, target, 3, None, kind)
    offset = 0 if target == "Image" else len(state.ids["Image"])
    rows = np.arange(len(state.ids[target]))
    signals = query_signals(state, rows, target, kind, q_ref[None], q_enc[None], entities=[ents])
    batch = fuse(state.graph, rows + offset, signals, [ents], FusionParams.from_json(weights))[0]
    top = np.argsort(-batch, kind="stable")[:3]
    assert [i for i, _ in ranked] == [state.ids[target][j] for j in top]
    np.testing.assert_allclose([s for _, s in ranked], batch[top], rtol=1e-5, atol=1e-6)
