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
from torch import Tensor, nn
from torch_geometric.nn import GATConv, HeteroConv, SAGEConv

from mmkg.gnn.data import EDGE_TYPES, NODE_TYPES, EdgeType, NodeType

ENTITY_TYPE = "Entity"


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
    entity_vocab: list[str] = field(default_factory=list)
    """Entity ids with a learned memory vector (added to their encoder vector); empty: no memory.
    Entities are named (`ent:dog`), so what training learned about `dog` applies to any graph."""

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
            assert isinstance(lin, nn.Linear)
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.gate = nn.ParameterDict(
            {nt: nn.Parameter(torch.tensor(float(config.gate_init))) for nt in self.node_types}
        )
        self.logit_scale = nn.Parameter(torch.tensor(3.0))  # exp(3) ~ 20: temperature 0.05
        self.vocab = {eid: i for i, eid in enumerate(config.entity_vocab)}
        self.memory = nn.Embedding(len(config.entity_vocab), config.dim) if config.entity_vocab else None
        if self.memory is not None:
            nn.init.zeros_(self.memory.weight)

    def vocab_rows(self, entity_ids: Sequence[str]) -> Tensor:
        """Memory rows of entities (-1 where an entity has none)."""
        return torch.tensor([self.vocab.get(e, -1) for e in entity_ids], dtype=torch.long)

    def with_memory(self, x_dict: Mapping[NodeType, Tensor], entity_rows: Tensor | None) -> dict[NodeType, Tensor]:
        """Entity features plus their memory vectors (no change without a memory or rows)."""
        out = dict(x_dict)
        if self.memory is None or entity_rows is None or ENTITY_TYPE not in out:
            return out
        known = (entity_rows >= 0).unsqueeze(-1).to(out[ENTITY_TYPE].dtype)
        out[ENTITY_TYPE] = out[ENTITY_TYPE] + known * self.memory(entity_rows.clamp(min=0))
        return out

    # --- the three stages, exposed so a query can be refined layer by layer -----------------

    def embed(self, x_dict: Mapping[NodeType, Tensor]) -> dict[NodeType, Tensor]:
        return {nt: F.relu(self.inp[nt](x)) for nt, x in x_dict.items()}

    def layer(
        self,
        i: int,
        h_dict: Mapping[NodeType, Tensor],
        edge_index_dict: Mapping[EdgeType, Tensor],
        dst_types: Sequence[NodeType] | None = None,
        limit: Mapping[NodeType, int] | None = None,
    ) -> dict[NodeType, Tensor]:
        """One round of message passing: HeteroConv's sum over relations, computed only for the node
        types in `h_dict` (or `dst_types`); every relation takes part, empty where it has no edges.

        `limit[t]`: compute only the first rows of type t (a sampled batch's nodes near the seeds);
        the result for type t then has that many rows."""
        hd = self._complete(h_dict)
        wanted = set(h_dict) if dst_types is None else set(dst_types) & set(h_dict)
        if limit is not None:
            wanted = {nt for nt in wanted if limit.get(nt, 0) > 0}
        msg: dict[NodeType, Tensor] = {}
        hetero: Any = self.convs[i]
        norms: Any = self.norms[i]
        for et, conv in hetero.convs.items():
            src, _, dst = et
            if dst not in wanted:
                continue
            ei = edge_index_dict.get(et, _EMPTY)
            x_dst = hd[dst]
            if limit is not None and limit[dst] < x_dst.shape[0]:
                x_dst = x_dst[: limit[dst]]
                ei = ei[:, ei[1] < limit[dst]]
            if isinstance(conv, SAGEConv):
                m = _sage(conv, hd[src], x_dst, ei)
            elif src == dst and x_dst.shape[0] == hd[src].shape[0]:
                m = conv(hd[src], ei)
            else:
                m = conv((hd[src], x_dst), ei)
            msg[dst] = m if dst not in msg else msg[dst] + m
        out: dict[NodeType, Tensor] = {}
        for nt in wanted:
            h = h_dict[nt] if limit is None else h_dict[nt][: limit[nt]]
            agg = msg.get(nt)
            z = h + F.relu(agg) if agg is not None else h
            z = norms[nt](z)
            out[nt] = F.dropout(z, p=self.config.dropout, training=self.training)
        return out

    def head(self, x_dict: Mapping[NodeType, Tensor], h_dict: Mapping[NodeType, Tensor]) -> dict[NodeType, Tensor]:
        return {nt: F.normalize(x + self.gate[nt] * self.out[nt](h_dict[nt]), dim=-1) for nt, x in x_dict.items()}

    def forward(
        self,
        x_dict: Mapping[NodeType, Tensor],
        edge_index_dict: Mapping[EdgeType, Tensor],
        entity_rows: Tensor | None = None,
        limits: Sequence[Mapping[NodeType, int]] | None = None,
    ) -> dict[NodeType, Tensor]:
        """Refined vectors. `limits` (from `SampledBatch.layer_limits`) trims each layer to the rows
        that still matter, and the result then holds only the seeds' rows (and those within reach)."""
        x_dict = self.with_memory(x_dict, entity_rows)
        h = self.embed(x_dict)
        for i in range(self.config.layers):
            h = self.layer(i, h, edge_index_dict, limit=limits[i] if limits is not None else None)
        return self.head({nt: x_dict[nt][: h[nt].shape[0]] for nt in h}, h)

    def states(
        self,
        x_dict: Mapping[NodeType, Tensor],
        edge_index_dict: Mapping[EdgeType, Tensor],
        entity_rows: Tensor | None = None,
    ) -> tuple[list[dict[NodeType, Tensor]], dict[NodeType, Tensor]]:
        """Every layer's hidden states (h0..hL) and the refined vectors: what inductive refinement reuses."""
        x_dict = self.with_memory(x_dict, entity_rows)
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
        if was:
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
                h_new = self.layer(i, h_dict, ei, dst_types=[node_type])[node_type]
            return self.head({node_type: x}, {node_type: h_new})[node_type]
        finally:
            if was:
                self.train(was)


_EMPTY = torch.empty((2, 0), dtype=torch.long)


def _sage(conv: SAGEConv, x_src: Tensor, x_dst: Tensor, edge_index: Tensor) -> Tensor:
    """`SAGEConv((x_src, x_dst), edge_index)` with mean aggregation, without the generic propagate
    machinery (a large share of the cost on small graphs such as a single query's): the same result."""
    n_dst = x_dst.shape[0]
    if edge_index.shape[1] == 0:
        agg = x_dst.new_zeros((n_dst, x_src.shape[1]))
    else:
        agg = x_dst.new_zeros((n_dst, x_src.shape[1])).index_add_(0, edge_index[1], x_src[edge_index[0]])
        count = torch.bincount(edge_index[1], minlength=n_dst).clamp_(min=1).to(agg.dtype)
        agg = agg / count[:, None]
    out = conv.lin_l(agg)
    if conv.root_weight:
        out = out + conv.lin_r(x_dst)
    if conv.normalize:
        out = F.normalize(out, p=2.0, dim=-1)
    return out
