"""Heterogeneous neighbour sampling in plain torch/numpy.

PyG's `NeighborLoader` needs `pyg-lib` or `torch-sparse`, compiled extras this environment does not
have, so this module does the same job: from seed nodes, take at most `fanouts[h]` incoming
neighbours per relation at hop `h` (all of them when a node has fewer), and return the sampled
subgraph as a `HeteroData` whose first rows of each node type are the seeds, in order. A model with
`len(fanouts)` layers computes the seeds' outputs on it exactly as on the sampled neighbourhood.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmkg.gnn.data import EdgeType, NodeType


@dataclass
class _CSR:
    rowptr: np.ndarray  # over destination nodes
    col: np.ndarray  # source node of each incoming edge
    weight: np.ndarray


@dataclass
class SampledBatch:
    data: HeteroData
    n_id: dict[NodeType, torch.Tensor]
    """Global row of each local node, per type; seeds first."""
    num_seeds: dict[NodeType, int]
    within: list[dict[NodeType, int]] = field(default_factory=list)
    """`within[h][t]`: how many `t` nodes lie at most h hops from the seeds (a prefix of the rows)."""

    def layer_limits(self, layers: int) -> list[dict[NodeType, int]]:
        """For a model of `layers` layers, the rows each layer must compute (layer i: hop <= layers-1-i);
        everything past them only feeds messages, so trimming them gives the seeds the same outputs."""
        return [self.within[min(layers - 1 - i, len(self.within) - 1)] for i in range(layers)]


class HeteroNeighborSampler:
    """Uniform neighbour sampling over every relation of a HeteroData, hop by hop."""

    def __init__(
        self,
        data: HeteroData,
        fanouts: Sequence[int],
        edge_types: Sequence[EdgeType] | None = None,
        seed: int = 0,
    ) -> None:
        self.data = data
        self.fanouts = list(fanouts)
        self.rng = np.random.default_rng(seed)
        self.node_types: list[NodeType] = list(data.node_types)
        self.num_nodes = {nt: int(data[nt].num_nodes or 0) for nt in self.node_types}
        self.edge_types = [et for et in (edge_types or data.edge_types) if data[et].edge_index.shape[1] > 0]
        self.csr: dict[EdgeType, _CSR] = {}
        for et in self.edge_types:
            ei = data[et].edge_index.numpy()
            w = data[et].edge_weight.numpy() if "edge_weight" in data[et] else np.ones(ei.shape[1], np.float32)
            order = np.argsort(ei[1], kind="stable")
            dst_sorted = ei[1][order]
            n_dst = self.num_nodes[et[2]]
            rowptr = np.zeros(n_dst + 1, dtype=np.int64)
            np.add.at(rowptr, dst_sorted + 1, 1)
            rowptr = np.cumsum(rowptr)
            self.csr[et] = _CSR(rowptr, ei[0][order].astype(np.int64), w[order].astype(np.float32))
        self._local = {nt: np.full(self.num_nodes[nt], -1, dtype=np.int64) for nt in self.node_types}

    def _sample_in(self, csr: _CSR, dst: np.ndarray, fanout: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Incoming (src, dst, weight) of each node in `dst`: all when deg <= fanout, else `fanout` at random."""
        start, end = csr.rowptr[dst], csr.rowptr[dst + 1]
        deg = end - start
        small = deg <= fanout if fanout >= 0 else np.ones_like(deg, dtype=bool)
        srcs, dsts, ws = [], [], []
        if small.any():
            d_s, st_s, dg_s = dst[small], start[small], deg[small]
            total = int(dg_s.sum())
            if total:
                rep = np.repeat(np.arange(len(d_s)), dg_s)
                within = np.arange(total) - np.repeat(np.cumsum(dg_s) - dg_s, dg_s)
                pos = st_s[rep] + within
                srcs.append(csr.col[pos])
                dsts.append(d_s[rep])
                ws.append(csr.weight[pos])
        big = ~small
        if big.any():
            # Hub nodes: `fanout` uniform draws each (with replacement, duplicates dropped later), in
            # O(fanout) per node whatever its degree.
            d_b, st_b, dg_b = dst[big], start[big], deg[big]
            pick = st_b[:, None] + (self.rng.random((len(d_b), fanout)) * dg_b[:, None]).astype(np.int64)
            srcs.append(csr.col[pick.ravel()])
            dsts.append(np.repeat(d_b, fanout))
            ws.append(csr.weight[pick.ravel()])
        if not srcs:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, np.empty(0, dtype=np.float32)
        return np.concatenate(srcs), np.concatenate(dsts), np.concatenate(ws)

    def sample(self, seeds: Mapping[NodeType, Sequence[int] | np.ndarray | torch.Tensor]) -> SampledBatch:
        nodes: dict[NodeType, list[np.ndarray]] = {nt: [] for nt in self.node_types}
        count = dict.fromkeys(self.node_types, 0)
        frontier: dict[NodeType, np.ndarray] = {}
        num_seeds: dict[NodeType, int] = {}
        for nt in self.node_types:
            s = np.asarray(seeds.get(nt, []), dtype=np.int64)
            if len(np.unique(s)) != len(s):
                raise ValueError(f"seed rows of {nt} must be distinct")
            self._local[nt][s] = np.arange(len(s))
            nodes[nt].append(s)
            count[nt] = len(s)
            num_seeds[nt] = len(s)
            frontier[nt] = s
        edges: dict[EdgeType, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {et: [] for et in self.edge_types}
        try:
            within = [dict(count)]
            for fanout in self.fanouts:
                new: dict[NodeType, list[np.ndarray]] = {nt: [] for nt in self.node_types}
                for et in self.edge_types:
                    src_t, _, dst_t = et
                    if len(frontier.get(dst_t, ())) == 0:
                        continue
                    src, dst, w = self._sample_in(self.csr[et], frontier[dst_t], fanout)
                    if len(src) == 0:
                        continue
                    edges[et].append((src, dst, w))
                    new[src_t].append(src)
                for nt in self.node_types:
                    if not new[nt]:
                        frontier[nt] = np.empty(0, dtype=np.int64)
                        continue
                    cand = np.unique(np.concatenate(new[nt]))
                    cand = cand[self._local[nt][cand] < 0]
                    self._local[nt][cand] = count[nt] + np.arange(len(cand))
                    count[nt] += len(cand)
                    nodes[nt].append(cand)
                    frontier[nt] = cand
                within.append(dict(count))
            out = HeteroData()
            n_id: dict[NodeType, torch.Tensor] = {}
            for nt in self.node_types:
                ids = np.concatenate(nodes[nt]) if nodes[nt] else np.empty(0, dtype=np.int64)
                n_id[nt] = torch.from_numpy(ids)
                out[nt].x = self.data[nt].x[n_id[nt]]
                out[nt].n_id = n_id[nt]
            for et in self.edge_types:
                src_t, _, dst_t = et
                if edges[et]:
                    src = np.concatenate([e[0] for e in edges[et]])
                    dst = np.concatenate([e[1] for e in edges[et]])
                    w = np.concatenate([e[2] for e in edges[et]])
                    key = np.unique(np.stack([self._local[src_t][src], self._local[dst_t][dst]]), axis=1,
                                    return_index=True)
                    ei = torch.from_numpy(key[0])
                    ew = torch.from_numpy(w[key[1]])
                else:
                    ei = torch.empty((2, 0), dtype=torch.long)
                    ew = torch.empty(0, dtype=torch.float32)
                out[et].edge_index = ei
                out[et].edge_weight = ew
        finally:
            for nt in self.node_types:
                for arr in nodes[nt]:
                    self._local[nt][arr] = -1
        return SampledBatch(out, n_id, num_seeds, within)
