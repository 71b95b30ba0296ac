"""Inductive refinement of one search query in plain numpy, for the latency of `mmkg search`.

`GraphRefiner.refine_attached` runs a query through the torch modules: a few dozen tiny tensor
operations whose dispatch costs milliseconds. For the SAGE refiner the same arithmetic collapses,
per layer, into two matrix-vector products: the relations that carry no edge into the query still
add their `lin_l` bias and `lin_r(h)`, so their root weights and biases are summed once here.
`QueryRefiner.compile` returns None for models it cannot mirror (GAT); the torch path serves those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.nn import SAGEConv

from mmkg.gnn.data import EdgeType, NodeType
from mmkg.gnn.model import GraphRefiner


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


@dataclass(frozen=True)
class _Layer:
    w_neigh: np.ndarray  # lin_l of the relation the query is attached by: (hidden, hidden)
    w_root: np.ndarray  # sum of lin_r over every relation into the query's type
    bias: np.ndarray  # sum of lin_l biases over those relations
    ln_weight: np.ndarray
    ln_bias: np.ndarray
    ln_eps: float


@dataclass(frozen=True)
class QueryRefiner:
    """The refiner's weights for queries of one node type attached by one relation."""

    node_type: NodeType
    relation: EdgeType
    w_in: np.ndarray
    b_in: np.ndarray
    layers: tuple[_Layer, ...]
    w_out: np.ndarray
    b_out: np.ndarray
    gate: float

    @classmethod
    def compile(cls, model: GraphRefiner, node_type: NodeType, relation: EdgeType) -> QueryRefiner | None:
        if relation[2] != node_type:
            raise ValueError(f"relation {relation} does not point into {node_type}")
        layers = []
        for i in range(model.config.layers):
            convs = {et: conv for et, conv in model.convs[i].convs.items() if et[2] == node_type}  # type: ignore[union-attr]
            if relation not in convs or not all(isinstance(c, SAGEConv) for c in convs.values()):
                return None
            if any(c.normalize or not c.root_weight or c.lin_l.bias is None or c.lin_r.bias is not None
                   for c in convs.values()):
                return None
            norm = model.norms[i][node_type]  # type: ignore[index]
            layers.append(
                _Layer(
                    w_neigh=_np(convs[relation].lin_l.weight),
                    w_root=np.sum([_np(c.lin_r.weight) for c in convs.values()], axis=0),
                    bias=np.sum([_np(c.lin_l.bias) for c in convs.values()], axis=0),
                    ln_weight=_np(norm.weight),
                    ln_bias=_np(norm.bias),
                    ln_eps=float(norm.eps),
                )
            )
        inp, out = model.inp[node_type], model.out[node_type]
        return cls(
            node_type=node_type,
            relation=relation,
            w_in=_np(inp.weight),
            b_in=_np(inp.bias),
            layers=tuple(layers),
            w_out=_np(out.weight),
            b_out=_np(out.bias),
            gate=float(model.gate[node_type].detach()),
        )

    def refine(self, x: np.ndarray, neighbours: Sequence[int], states: Sequence[Mapping[str, np.ndarray]],
               src_type: NodeType) -> np.ndarray:
        """The refined unit vector of one query with encoder vector `x`, attached to the `src_type` rows
        `neighbours` (distinct), whose hidden states per layer are `states[i][src_type]`."""
        h = np.maximum(self.w_in @ x + self.b_in, 0.0)
        for i, layer in enumerate(self.layers):
            msg = layer.w_root @ h + layer.bias
            if len(neighbours):
                msg += layer.w_neigh @ states[i][src_type][list(neighbours)].mean(axis=0)
            z = h + np.maximum(msg, 0.0)
            z = (z - z.mean()) / np.sqrt(z.var() + layer.ln_eps)
            h = z * layer.ln_weight + layer.ln_bias
        v = x + self.gate * (self.w_out @ h + self.b_out)
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
