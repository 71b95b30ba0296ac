"""A small real graph, built through the GraphStore API, with encoder-like vectors in numpy indexes.

Two "worlds" (dogs and beaches) of images, captions and entities, so tests can check that refinement
and expansion follow the structure: a caption that mentions `dog` should come out nearer dog images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.retrieval.index import VectorIndex
from mmkg.retrieval.vectors import Vectors

DIM = 16


class NumpyIndex(VectorIndex):
    """Exact inner-product search over a dict: a stand-in VectorIndex for unit tests."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vecs: dict[str, np.ndarray] = {}

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        new = 0
        for i, v in zip(ids, vectors, strict=True):
            if i not in self._vecs:
                self._vecs[i] = np.asarray(v, dtype=np.float32)
                new += 1
        return new

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        if not self._vecs:
            return [[] for _ in queries]
        keys = list(self._vecs)
        mat = np.stack([self._vecs[k_] for k_ in keys])
        sims = np.asarray(queries, dtype=np.float32) @ mat.T
        out = []
        for row in sims:
            top = np.argsort(-row)[:k]
            out.append([(keys[j], float(row[j])) for j in top])
        return out

    def get(self, ids: Sequence[str]) -> np.ndarray:
        return np.stack([self._vecs[i] for i in ids]) if ids else np.zeros((0, self.dim), np.float32)

    def remove(self, ids: Sequence[str]) -> int:
        return sum(self._vecs.pop(i, None) is not None for i in ids)

    def __len__(self) -> int:
        return len(self._vecs)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._vecs

    def save(self) -> None:
        pass


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class TinyWorld:
    store: MemoryGraphStore
    vectors: Vectors
    images: list[str]
    texts: list[str]
    owner: list[int]
    entities: list[str]


def build_world(path: Path, n_per_topic: int = 6, seed: int = 0) -> TinyWorld:
    rng = np.random.default_rng(seed)
    store = MemoryGraphStore(path)
    vectors = Vectors(NumpyIndex(DIM), NumpyIndex(DIM), NumpyIndex(DIM))
    topics = {"dog": ["dog", "grass", "ball"], "beach": ["beach", "sea", "sand"]}
    centre = {t: unit(rng.normal(size=DIM)) for t in topics}
    ent_vec = {e: unit(centre[t] + 0.5 * rng.normal(size=DIM)) for t, es in topics.items() for e in es}
    nodes: list[Node] = []
    edges: list[Edge] = []
    images, texts, owner = [], [], []
    for eid_name, v in ent_vec.items():
        eid = f"ent:{eid_name}"
        nodes.append(Node(eid, Label.ENTITY, {"name": eid_name, "kind": "noun"}))
        vectors.entities.add([eid], v[None])
    nodes.append(Node("ent:colour:white", Label.ENTITY, {"name": "colour:white", "kind": "attribute"}))
    vectors.entities.add(["ent:colour:white"], unit(rng.normal(size=DIM))[None])
    for t, ents in topics.items():
        for i in range(n_per_topic):
            iid, tid, rid, rtid = f"img:{t}{i}", f"txt:{t}{i}", f"rec:test:{t}{i}#image", f"rec:test:{t}{i}#caption"
            iv = unit(centre[t] + 0.9 * rng.normal(size=DIM))
            tv = unit(centre[t] + 0.9 * rng.normal(size=DIM))
            nodes += [
                Node(rid, Label.RECORD, {"source": "test", "source_id": f"{t}{i}", "attributes": (
                    ["colour:white"] if i % 2 == 0 else []), "complete": True}),
                Node(rtid, Label.RECORD,
                     {"source": "test", "source_id": f"{t}{i}c", "attributes": [], "complete": True}),
                Node(iid, Label.IMAGE, {"path": f"/data/{t}{i}.jpg", "record": rid}),
                Node(tid, Label.TEXT, {"text": f"a photo of a {t} number {i}", "kind": "caption", "record": rtid}),
            ]
            edges += [Edge(rid, iid, Rel.HAS), Edge(rtid, tid, Rel.HAS)]
            for j, e in enumerate(ents):
                if (i + j) % 3 != 2:
                    edges.append(Edge(iid, f"ent:{e}", Rel.DEPICTS, {"score": 0.3 + 0.1 * j, "source": "tag"}))
                if (i + j) % 3 != 1:
                    edges.append(Edge(tid, f"ent:{e}", Rel.MENTIONS, {"source": "text"}))
            if i % 2 == 0:
                edges.append(Edge(iid, "ent:colour:white", Rel.DEPICTS, {"score": 1.0, "source": "attribute"}))
            vectors.images.add([iid], iv[None])
            vectors.texts.add([tid], tv[None])
            images.append(iid)
            texts.append(tid)
            owner.append(len(images) - 1)
    edges += [
        Edge("ent:ball", "ent:dog", Rel.CO_OCCURS, {"count": 5, "pmi": 1.2}),
        Edge("ent:grass", "ent:dog", Rel.CO_OCCURS, {"count": 4, "pmi": 0.8}),
        Edge("ent:beach", "ent:sea", Rel.CO_OCCURS, {"count": 6, "pmi": 1.5}),
    ]
    store.upsert_nodes(nodes)
    store.upsert_edges(edges)
    store.commit()
    return TinyWorld(store, vectors, images, texts, owner, [n.id for n in nodes if n.label == Label.ENTITY])


