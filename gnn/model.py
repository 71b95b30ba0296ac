"""The graph refiner: heterogeneous message passing that nudges encoder vectors by their neighbourhood.

    h0      = ReLU(W_type x)                                  per node type
    h(l+1)  = LayerNorm(h(l) + ReLU(sum_r Conv_r(h(l)_src, h(l)_dst)))   HeteroConv over every relation
    refined = normalize(x + gate_type * W_out h(L))           residual: starts as the identity

`W_out` starts at zero and `gate` small, so an untrained model returns the encoder's vectors and
training moves them only as far as the contrastive and link-prediction losses pay for. Every
relation in `EDGE_TYPES` always takes part (empty where a graph has none of it), so the same
weights serve a training batch, a whole collection and a single query attached to its entities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from mmkg.gnn.data import EDGE_TYPES, NODE_TYPES, EdgeType, NodeType
from torch import Tensor, nn
from torch_geometric.nn import GATConv, HeteroConv, SAGEConv


@dataclass
class GnnConfig:
    dim: int
    hidden: int = 256
    layers: int = 2
    conv: str = "sage"
    """`sage` (mean aggregation) or `gat` (attention over neighbours)."""
    dropout: float = 0.1
    gate_init: float = 0.5
    edge_types: list[list[str]] = field(default_factory=lambda: [list(et) for et in EDGE_TYPES])

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> GnnConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})


def _key(et: EdgeType) -> str:
    return "__".join(et)


class GraphRefiner(nn.Module):
    """Residual heterogeneous GNN over Image, Text, Entity and Record nodes."""

    def __init__(self, config: GnnConfig) -> None:
        super().__init__()
        self.config = config
        self.node_types: list[NodeType] = list(NODE_TYPES)
        self.edge_types: list[EdgeType] = [tuple(et) for et in config.edge_types]  # type: ignore[misc]
        h = config.hidden
        self.inp = nn.ModuleDict({nt: nn.Linear(config.dim, h) for nt in self.node_types})
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(config.layers):
            convs: dict[EdgeType, nn.Module] = {}
            for et in self.edge_types:
                if config.conv == "gat":
                    convs[et] = GATConv((h, h), h, heads=1, add_self_loops=False)
                elif config.conv == "sage":
                    convs[et] = SAGEConv((h, h), h, aggr="mean")
                else:
                    raise ValueError(f"unknown conv {config.conv!r}: choose sage or gat")
            self.convs.append(HeteroConv(convs, aggr="sum"))
            self.norms.append(nn.ModuleDict({nt: nn.LayerNorm(h) for nt in self.node_types}))
        self.out = nn.ModuleDict({nt: nn.Linear(h, config.dim) for nt in self.node_types})
        for lin in self.out.values():
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.gate = nn.ParameterDict(
            {nt: nn.Parameter(torch.tensor(float(config.gate_init))) for nt in self.node_types}
        )
        self.logit_scale = nn.Parameter(torch.tensor(3.0))  # exp(3) ~ 20: temperature 0.05

    # --- the three stages, exposed so a query can be refined layer by layer -----------------

    def embed(self, x_dict: Mapping[NodeType, Tensor]) -> dict[NodeType, Tensor]:
        return {nt: F.relu(self.inp[nt](x)) for nt, x in x_dict.items()}

    def layer(
        self, i: int, h_dict: Mapping[NodeType, Tensor], edge_index_dict: Mapping[EdgeType, Tensor]
    ) -> dict[NodeType, Tensor]:
        hd = self._complete(h_dict)
        ei = {et: edge_index_dict.get(et, _EMPTY) for et in self.edge_types}
        msg = self.convs[i](hd, ei)
        out: dict[NodeType, Tensor] = {}
        for nt, h in h_dict.items():
            m = msg.get(nt)
            z = h + F.relu(m) if m is not None else h
            z = self.norms[i][nt](z)
            out[nt] = F.dropout(z, p=self.config.dropout, training=self.training)
        return out

    def head(self, x_dict: Mapping[NodeType, Tensor], h_dict: Mapping[NodeType, Tensor]) -> dict[NodeType, Tensor]:
        return {nt: F.normalize(x + self.gate[nt] * self.out[nt](h_dict[nt]), dim=-1) for nt, x in x_dict.items()}

    def forward(
        self, x_dict: Mapping[NodeType, Tensor], edge_index_dict: Mapping[EdgeType, Tensor]
    ) -> dict[NodeType, Tensor]:
        h = self.embed(x_dict)
        for i in range(self.config.layers):
            h = self.layer(i, h, edge_index_dict)
        return self.head(x_dict, h)

    def states(
        self, x_dict: Mapping[NodeType, Tensor], edge_index_dict: Mapping[EdgeType, Tensor]
    ) -> tuple[list[dict[NodeType, Tensor]], dict[NodeType, Tensor]]:
        """Every layer's hidden states (h0..hL) and the refined vectors: what inductive refinement reuses."""
        hs = [self.embed(x_dict)]
        for i in range(self.config.layers):
            hs.append(self.layer(i, hs[-1], edge_index_dict))
        return hs, self.head(x_dict, hs[-1])

    def _complete(self, h_dict: Mapping[NodeType, Tensor]) -> dict[NodeType, Tensor]:
        """Every node type present (empty where absent), as HeteroConv needs for every relation."""
        any_h = next(iter(h_dict.values()))
        return {
            nt: h_dict[nt] if nt in h_dict else any_h.new_zeros((0, self.config.hidden)) for nt in self.node_types
        }

    @torch.no_grad()
    def refine_attached(
        self,
        x: Tensor,
        node_type: NodeType,
        neighbours: Sequence[tuple[EdgeType, NodeType, Tensor]],
        cached: Sequence[Mapping[NodeType, Tensor]],
    ) -> Tensor:
        """Refine new nodes that are not in the graph, attached to existing ones (inductive).

        `x`: (n, dim) encoder vectors of the new nodes, all of `node_type`. `neighbours`: for each
        relation that points *into* the new nodes, `(edge_type, src_type, edge_index)` where
        `edge_index[0]` are rows of existing `src_type` nodes and `edge_index[1]` rows of `x`.
        `cached`: the graph's hidden states h0..h(L-1) from `states()`. The new nodes see their
        neighbours' states as computed on the graph without them (the usual inductive approximation).
        """
        was = self.training
        self.eval()
        try:
            h_new = self.embed({node_type: x})[node_type]
            for i in range(self.config.layers):
                h_dict: dict[NodeType, Tensor] = {}
                ei: dict[EdgeType, Tensor] = {}
                offsets: dict[NodeType, int] = {}
                parts: dict[NodeType, list[Tensor]] = {}
                for et, src_type, edge_index in neighbours:
                    if et[2] != node_type:
                        raise ValueError(f"relation {et} does not point into {node_type}")
                    uniq, inv = torch.unique(edge_index[0], return_inverse=True)
                    base = offsets.get(src_type, 0)
                    if src_type == node_type:
                        raise ValueError("new nodes attach to existing nodes of another type")
                    parts.setdefault(src_type, []).append(cached[i][src_type][uniq])
                    offsets[src_type] = base + len(uniq)
                    ei[et] = torch.stack([inv + base, edge_index[1]])
                for st, ps in parts.items():
                    h_dict[st] = torch.cat(ps)
                h_dict[node_type] = h_new
                h_new = self.layer(i, h_dict, ei)[node_type]
            return self.head({node_type: x}, {node_type: h_new})[node_type]
        finally:
            self.train(was)


_EMPTY = torch.empty((2, 0), dtype=torch.long)
