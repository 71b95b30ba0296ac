"""A PyTorch Geometric `HeteroData` built from any GraphStore and the workspace's encoder vectors.

Node types are the store's labels (Image, Text, Entity, Record); features are the encoder vectors
(a Record's is the mean of its images' and texts'). Every stored edge type becomes a relation and
gets its reverse (`rev_DEPICTS`: Entity -> Image, ...), so messages flow both ways; CO_OCCURS, an
undirected relation stored once, is added in both directions under its own name. Edge weights
(`DEPICTS.score`, positive `CO_OCCURS.pmi`, 1 elsewhere) travel as `edge_weight`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmkg.graph.schema import EDGE_ENDPOINTS, Edge, Label, Rel
from mmkg.graph.store import GraphStore
from mmkg.retrieval.index import VectorIndex
from mmkg.retrieval.vectors import Vectors

log = logging.getLogger(__name__)

NodeType = str
EdgeType = tuple[str, str, str]

NODE_TYPES: tuple[NodeType, ...] = (Label.IMAGE.value, Label.TEXT.value, Label.ENTITY.value, Label.RECORD.value)


def _forward_edge_types() -> list[EdgeType]:
    out: list[EdgeType] = []
    for rel, (srcs, dsts) in EDGE_ENDPOINTS.items():
        for s in sorted(srcs):
            for d in sorted(dsts):
                out.append((s.value, rel.value, d.value))
    return out


FORWARD_EDGE_TYPES: tuple[EdgeType, ...] = tuple(_forward_edge_types())


def reverse_type(et: EdgeType) -> EdgeType:
    s, r, d = et
    if r == Rel.CO_OCCURS.value:
        return et
    return (d, r[4:], s) if r.startswith("rev_") else (d, f"rev_{r}", s)


EDGE_TYPES: tuple[EdgeType, ...] = tuple(
    dict.fromkeys([*FORWARD_EDGE_TYPES, *(reverse_type(et) for et in FORWARD_EDGE_TYPES)])
)
"""Every relation the model knows, forward and reverse; a graph may hold none of some of them."""


def edge_weight(edge: Edge) -> float:
    """The weight a relation carries into the graph (the same one graph expansion walks by)."""
    from mmkg.retrieval.expansion import walk_weight

    return walk_weight(edge.type, edge.props)


@dataclass
class GraphData:
    """A HeteroData and the mapping between store ids and per-type row numbers."""

    data: HeteroData
    ids: dict[NodeType, list[str]]
    index: dict[NodeType, dict[str, int]] = field(default_factory=dict)
    has_vector: dict[NodeType, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {nt: {nid: i for i, nid in enumerate(v)} for nt, v in self.ids.items()}

    @property
    def dim(self) -> int:
        return int(self.data[Label.IMAGE.value].x.shape[1])

    def num_nodes(self, node_type: NodeType) -> int:
        return len(self.ids.get(node_type, []))

    def rows(self, node_type: NodeType, node_ids: Sequence[str]) -> list[int]:
        idx = self.index[node_type]
        return [idx[n] for n in node_ids]


def _vectors_for(index: VectorIndex, node_ids: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.zeros((len(node_ids), dim), dtype=np.float32)
    present = np.array([nid in index for nid in node_ids], dtype=bool)
    if present.any():
        rows = np.flatnonzero(present)
        for start in range(0, len(rows), 20_000):
            chunk = rows[start : start + 20_000]
            x[chunk] = index.get([node_ids[i] for i in chunk])
    return x, present


def build_hetero(
    store: GraphStore,
    vectors: Vectors,
    rels: Iterable[Rel] | None = None,
    dim: int | None = None,
) -> GraphData:
    """Read every node and edge of `store` (through the GraphStore API only) into a HeteroData.

    Nodes without a vector (an entity added without one) get a zero feature; `has_vector` says which.
    """
    dim = dim or vectors.images.dim
    ids: dict[NodeType, list[str]] = {nt: [n.id for n in store.iter_nodes(Label(nt))] for nt in NODE_TYPES}
    data = HeteroData()
    has_vector: dict[NodeType, np.ndarray] = {}
    source = {Label.IMAGE.value: vectors.images, Label.TEXT.value: vectors.texts, Label.ENTITY.value: vectors.entities}
    for nt, index in source.items():
        x, present = _vectors_for(index, ids[nt], dim)
        data[nt].x = torch.from_numpy(x)
        has_vector[nt] = present
    pos = {nt: {nid: i for i, nid in enumerate(v)} for nt, v in ids.items()}

    wanted = set(rels) if rels is not None else set(Rel)
    buckets: dict[EdgeType, tuple[list[int], list[int], list[float]]] = {}
    for rel in Rel:
        if rel not in wanted:
            continue
        for edge in store.iter_edges(rel):
            st, dt = _type_of(pos, edge.src), _type_of(pos, edge.dst)
            if st is None or dt is None:
                continue
            b = buckets.setdefault((st, rel.value, dt), ([], [], []))
            b[0].append(pos[st][edge.src])
            b[1].append(pos[dt][edge.dst])
            b[2].append(edge_weight(edge))

    # Record features: the mean of what it holds.
    rec_x = np.zeros((len(ids[Label.RECORD.value]), dim), dtype=np.float32)
    counts = np.zeros(len(rec_x), dtype=np.float32)
    for member in (Label.IMAGE.value, Label.TEXT.value):
        has = buckets.get((Label.RECORD.value, Rel.HAS.value, member))
        if has and has[0]:
            rows = np.asarray(has[0])
            np.add.at(rec_x, rows, data[member].x.numpy()[np.asarray(has[1])])
            np.add.at(counts, rows, 1.0)
    rec_x /= np.maximum(counts, 1.0)[:, None]
    norms = np.linalg.norm(rec_x, axis=1, keepdims=True)
    rec_x = rec_x / np.maximum(norms, 1e-12)
    data[Label.RECORD.value].x = torch.from_numpy(rec_x.astype(np.float32))
    has_vector[Label.RECORD.value] = counts > 0

    for et in EDGE_TYPES:
        data[et].edge_index = torch.empty((2, 0), dtype=torch.long)
        data[et].edge_weight = torch.empty((0,), dtype=torch.float32)
    for et, (src, dst, w) in buckets.items():
        ei = torch.tensor([src, dst], dtype=torch.long)
        ew = torch.tensor(w, dtype=torch.float32)
        rev = reverse_type(et)
        if rev == et:  # CO_OCCURS: both directions under one name
            ei = torch.cat([ei, ei.flip(0)], dim=1)
            ew = torch.cat([ew, ew])
            data[et].edge_index, data[et].edge_weight = ei, ew
        else:
            data[et].edge_index, data[et].edge_weight = ei, ew
            data[rev].edge_index, data[rev].edge_weight = ei.flip(0).contiguous(), ew.clone()
    n_edges = sum(int(data[et].edge_index.shape[1]) for et in EDGE_TYPES)
    log.info("hetero graph: %s nodes, %d directed edges", {nt: len(v) for nt, v in ids.items()}, n_edges)
    return GraphData(data=data, ids=ids, index=pos, has_vector=has_vector)


def _type_of(pos: dict[NodeType, dict[str, int]], node_id: str) -> NodeType | None:
    prefix = node_id[:4]
    guess = {
        "img:": Label.IMAGE.value, "txt:": Label.TEXT.value, "ent:": Label.ENTITY.value, "rec:": Label.RECORD.value
    }
    nt = guess.get(prefix)
    if nt is not None and node_id in pos[nt]:
        return nt
    for t, p in pos.items():
        if node_id in p:
            return t
    return None
