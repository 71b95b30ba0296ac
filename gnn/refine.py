"""A trained refiner applied to a collection: saved and loaded weights, whole-graph inference, and
inductive refinement of nodes the graph does not hold (queries, new items).

`RefinedGraph` keeps the graph's per-layer hidden states, so refining a query costs one tiny message
passing step per layer over the entities it is attached to, not a pass over the graph.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmkg.encoders.base import Encoder
from mmkg.errors import ModelNotReadyError
from mmkg.gnn.data import GraphData, NodeType, build_hetero
from mmkg.gnn.model import GnnConfig, GraphRefiner
from mmkg.graph.schema import Label, Rel
from mmkg.graph.store import GraphStore
from mmkg.retrieval.vectors import Vectors
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
META_FILE = "gnn.json"

IMAGE, TEXT, ENTITY, RECORD = Label.IMAGE.value, Label.TEXT.value, Label.ENTITY.value, Label.RECORD.value
REV_MENTIONS = (ENTITY, f"rev_{Rel.MENTIONS.value}", TEXT)
REV_DEPICTS = (ENTITY, f"rev_{Rel.DEPICTS.value}", IMAGE)


def gnn_dir(settings: Settings) -> Path:
    return Workspace(settings.home).models_dir / "gnn"


@dataclass
class TrainedGnn:
    """A refiner with what it was trained for: the encoder fingerprint and the tuned fusion weights."""

    model: GraphRefiner
    encoder: str
    fusion: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256(self.encoder.encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().numpy().tobytes()[:4096])
        return h.hexdigest()[:16]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        import io

        buf = io.BytesIO()
        torch.save(self.model.state_dict(), buf)
        atomic_write_bytes(folder / MODEL_FILE, buf.getvalue())
        atomic_write_json(
            folder / META_FILE,
            {
                "config": self.model.config.to_json(),
                "encoder": self.encoder,
                "fusion": self.fusion,
                "summary": self.summary,
            },
        )

    @classmethod
    def load(cls, folder: Path) -> TrainedGnn:
        meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
        if not meta_path.is_file() or not model_path.is_file():
            raise ModelNotReadyError(
                f"no trained GNN in {folder}: run `mmkg train gnn --data ../shared/data/flickr8k/train` first"
            )
        meta = json.loads(meta_path.read_text())
        model = GraphRefiner(GnnConfig.from_json(meta["config"]))
        model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
        model.eval()
        return cls(model=model, encoder=str(meta["encoder"]), fusion=dict(meta.get("fusion", {})),
                   summary=dict(meta.get("summary", {})))


def load_gnn(settings: Settings, encoder: Encoder, required: bool = True) -> TrainedGnn | None:
    """The workspace's trained GNN; refuses one trained on another encoder's vectors."""
    folder = gnn_dir(settings)
    if not (folder / META_FILE).is_file() and not required:
        return None
    trained = TrainedGnn.load(folder)
    if trained.encoder != encoder.fingerprint:
        raise ModelNotReadyError(
            f"the GNN in {folder} was trained on vectors of encoder {trained.encoder!r}, not the current "
            f"{encoder.fingerprint!r}: run `mmkg train gnn --data DIR` again"
        )
    return trained


@dataclass
class RefinedGraph:
    """Whole-graph inference results for one collection."""

    graph: GraphData
    states: list[dict[NodeType, torch.Tensor]]
    refined: dict[NodeType, np.ndarray]
    trained: TrainedGnn

    @classmethod
    def compute(cls, trained: TrainedGnn, graph: GraphData) -> RefinedGraph:
        model = trained.model
        model.eval()
        with torch.no_grad():
            rows = model.vocab_rows(graph.ids[ENTITY]) if model.memory is not None else None
            hs, out = model.states(graph.data.x_dict, graph.data.edge_index_dict, rows)
        refined = {nt: np.ascontiguousarray(v.numpy(), dtype=np.float32) for nt, v in out.items()}
        # A node without an encoder vector (rare) keeps a zero refined vector rather than a guess.
        for nt, present in graph.has_vector.items():
            if nt in refined and len(present) and not present.all():
                refined[nt][~present] = 0.0
        return cls(graph=graph, states=hs[:-1], refined=refined, trained=trained)

    @classmethod
    def from_store(cls, trained: TrainedGnn, store: GraphStore, vectors: Vectors) -> RefinedGraph:
        return cls.compute(trained, build_hetero(store, vectors))

    def vector(self, node_type: NodeType, node_ids: Sequence[str]) -> np.ndarray:
        return self.refined[node_type][self.graph.rows(node_type, node_ids)]

    def refine_queries(
        self,
        vectors: np.ndarray,
        kind: str,
        entities: Sequence[Sequence[str]],
    ) -> np.ndarray:
        """Refine queries (or new items) attached to existing entities.

        `kind` is `text` (the query MENTIONS its entities) or `image` (it DEPICTS them); `entities[i]`
        are the entity ids query i is attached to (unknown ids are ignored). Rows of `vectors` are
        encoder vectors; the result is one refined unit vector per row.
        """
        return refine_attached_queries(self.trained.model, self.states, self.graph.index[ENTITY], vectors, kind,
                                       entities)


def refine_attached_queries(
    model: GraphRefiner,
    states: Sequence[dict[NodeType, torch.Tensor]],
    entity_index: dict[str, int],
    vectors: np.ndarray,
    kind: str,
    entities: Sequence[Sequence[str]],
) -> np.ndarray:
    """See `RefinedGraph.refine_queries`; usable with cached states alone."""
    if kind not in ("text", "image"):
        raise ValueError(f"kind must be text or image, not {kind!r}")
    if len(vectors) == 0:
        return np.zeros((0, model.config.dim), dtype=np.float32)
    src: list[int] = []
    dst: list[int] = []
    for i, ents in enumerate(entities):
        for eid in dict.fromkeys(ents):
            row = entity_index.get(eid)
            if row is not None:
                src.append(row)
                dst.append(i)
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    et = REV_MENTIONS if kind == "text" else REV_DEPICTS
    nt = TEXT if kind == "text" else IMAGE
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    with _threads(1 if len(vectors) <= FEW_QUERIES else torch.get_num_threads()):
        out = model.refine_attached(x, nt, [(et, ENTITY, edge_index)], states)
    return np.ascontiguousarray(out.numpy(), dtype=np.float32)


FEW_QUERIES = 16
"""Up to this many queries are refined on one thread: their tensors are tiny, and a second thread
only adds hand-off latency (the p95 of one query fell from 100 ms to 5 ms on a busy 2-core machine)."""


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)
