"""Graph expansion: bounded weighted walks from a query's seeds and entities.

A `GraphIndex` is a read-only snapshot of the store as a sparse transition matrix (CSR, one row per
node): each node keeps at most `max_fanout` neighbours (edges taken in both directions, highest
weight first, so a hub entity does not spread its mass over the whole collection), and the walk
moves to a neighbour with probability proportional to the edge weight. Expansion spreads a start
distribution (the query's entities and its nearest seeds) over at most two steps and keeps, between
steps, only the `beam` heaviest nodes of each query: a truncated personalised PageRank whose cost is
bounded by `beam * max_fanout` per query whatever the size of the graph.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mmkg.graph.schema import Label, Rel
from mmkg.graph.store import GraphStore

log = logging.getLogger(__name__)

LABELS: tuple[Label, ...] = (Label.IMAGE, Label.TEXT, Label.ENTITY, Label.RECORD)
LABEL_CODE = {lab: i for i, lab in enumerate(LABELS)}
MAX_HOPS = 2


def walk_weight(rel: Rel, props: dict[str, object]) -> float:
    """How readily a walk crosses an edge: tag confidence for DEPICTS, positive PMI for CO_OCCURS."""
    if rel == Rel.DEPICTS:
        score = props.get("score", 1.0)
        return float(score) if isinstance(score, int | float) else 1.0
    if rel == Rel.CO_OCCURS:
        pmi = props.get("pmi", 0.0)
        return 0.5 * max(float(pmi) if isinstance(pmi, int | float) else 0.0, 0.0) + 0.05
    return 1.0


@dataclass
class Expansion:
    """Graph scores of one batch of queries: a sparse (queries x nodes) matrix of walk mass."""

    mass: sp.csr_matrix

    def row(self, i: int) -> dict[int, float]:
        r = self.mass.getrow(i)
        return dict(zip(r.indices.tolist(), r.data.tolist(), strict=True))


class GraphIndex:
    """Node ids, labels and a fan-out-capped transition matrix, built once from a GraphStore."""

    def __init__(self, ids: list[str], labels: np.ndarray, transition: sp.csr_matrix, max_fanout: int) -> None:
        self.ids = ids
        self.pos = {nid: i for i, nid in enumerate(ids)}
        self.labels = labels
        self.transition = transition
        self.max_fanout = max_fanout

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_store(cls, store: GraphStore, max_fanout: int = 64, rels: Iterable[Rel] | None = None) -> GraphIndex:
        ids: list[str] = []
        labels: list[int] = []
        for lab in LABELS:
            for node in store.iter_nodes(lab):
                ids.append(node.id)
                labels.append(LABEL_CODE[lab])
        pos = {nid: i for i, nid in enumerate(ids)}
        src: list[int] = []
        dst: list[int] = []
        w: list[float] = []
        for rel in rels or Rel:
            for e in store.iter_edges(rel):
                a, b = pos.get(e.src), pos.get(e.dst)
                if a is None or b is None:
                    continue
                weight = walk_weight(rel, e.props)
                src += [a, b]
                dst += [b, a]
                w += [weight, weight]
        return cls.from_edges(
            ids,
            np.asarray(labels, dtype=np.int8),
            np.asarray(src),
            np.asarray(dst),
            np.asarray(w, dtype=np.float32),
            max_fanout,
        )

    @classmethod
    def from_edges(
        cls,
        ids: list[str],
        labels: np.ndarray,
        src: np.ndarray,
        dst: np.ndarray,
        weight: np.ndarray,
        max_fanout: int = 64,
    ) -> GraphIndex:
        """From directed (src, dst, weight) arrays (give both directions for an undirected walk)."""
        n = len(ids)
        if len(src) == 0:
            return cls(ids, labels, sp.csr_matrix((n, n), dtype=np.float32), max_fanout)
        adj = sp.coo_matrix(
            (weight.astype(np.float32), (src.astype(np.int64), dst.astype(np.int64))), shape=(n, n)
        ).tocsr()
        adj.sum_duplicates()
        adj = _cap_rows(adj, max_fanout)
        deg = np.asarray(adj.sum(axis=1)).ravel()
        inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1e-12), 0.0).astype(np.float32)
        transition = sp.diags(inv) @ adj
        return cls(ids, labels, transition.tocsr().astype(np.float32), max_fanout)

    def rows(self, node_ids: Sequence[str]) -> np.ndarray:
        return np.asarray([self.pos[n] for n in node_ids if n in self.pos], dtype=np.int64)

    def expand(
        self,
        starts: sp.csr_matrix,
        hops: int = MAX_HOPS,
        beam: int = 256,
        decay: float = 0.5,
    ) -> Expansion:
        """Spread each row of `starts` (queries x nodes, non-negative) over up to `hops` (<= 2) steps.

        Returns the mass each node receives after the first step plus `decay` times the mass after the
        second: nodes a query reaches directly count more than nodes two steps away. Between steps
        only the `beam` heaviest nodes of each row move on.
        """
        if hops < 1 or hops > MAX_HOPS:
            raise ValueError(f"expansion takes 1 or {MAX_HOPS} hops, not {hops}")
        starts = starts.tocsr().astype(np.float32)
        if starts.shape[0] == 1:  # one search query: plain numpy, no sparse-matrix overheads
            cols, vals = self.expand_one(starts.indices, starts.data, hops, beam, decay)
            return Expansion(sp.csr_matrix((vals, cols, np.array([0, len(cols)])), shape=(1, len(self))))
        return Expansion(self._expand_sparse(starts, hops, beam, decay))

    def _expand_sparse(self, p: sp.csr_matrix, hops: int, beam: int, decay: float) -> sp.csr_matrix:
        total = sp.csr_matrix(p.shape, dtype=np.float32)
        factor = 1.0
        for _ in range(hops):
            p = _top_per_row(p, beam) @ self.transition
            total = total + factor * p
            factor *= decay
        return total.tocsr()

    def expand_one(
        self, cols: np.ndarray, vals: np.ndarray, hops: int = MAX_HOPS, beam: int = 256, decay: float = 0.5
    ) -> tuple[np.ndarray, np.ndarray]:
        """`expand` for one query given as (node rows, mass): the reached (rows, mass), rows ascending.
        Gathers the active nodes' transition rows and sums them, with no sparse matrices."""
        if hops < 1 or hops > MAX_HOPS:
            raise ValueError(f"expansion takes 1 or {MAX_HOPS} hops, not {hops}")
        t = self.transition
        cols, vals = np.asarray(cols, np.int64), np.asarray(vals, np.float32)
        reached_c: list[np.ndarray] = []
        reached_v: list[np.ndarray] = []
        factor = 1.0
        for _ in range(hops):
            if len(cols) > beam > 0:  # the beam heaviest (ties: the lower node first)
                keep = np.lexsort((cols, -vals))[:beam]
                cols, vals = cols[keep], vals[keep]
            lo = t.indptr[cols]
            lens = t.indptr[cols + 1] - lo
            idx = np.repeat(lo - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
            cols, inv = np.unique(t.indices[idx], return_inverse=True)
            vals = np.bincount(inv, weights=t.data[idx] * np.repeat(vals, lens)).astype(np.float32)
            reached_c.append(cols)
            reached_v.append(factor * vals)
            factor *= decay
        if len(reached_c) == 1:
            return reached_c[0], reached_v[0]
        all_c, inv = np.unique(np.concatenate(reached_c), return_inverse=True)
        return all_c, np.bincount(inv, weights=np.concatenate(reached_v)).astype(np.float32)


def _cap_rows(adj: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the k largest entries of each row (ties: the lower column first)."""
    if k <= 0:
        return adj
    counts = np.diff(adj.indptr)
    if counts.max(initial=0) <= k:
        return adj
    keep = np.ones(adj.nnz, dtype=bool)
    for row in np.flatnonzero(counts > k):
        lo, hi = adj.indptr[row], adj.indptr[row + 1]
        order = np.lexsort((adj.indices[lo:hi], -adj.data[lo:hi]))
        drop = order[k:]
        keep[lo + drop] = False
    rows = np.repeat(np.arange(adj.shape[0]), counts)
    out = sp.csr_matrix((adj.data[keep], (rows[keep], adj.indices[keep])), shape=adj.shape)
    return out


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    if k <= 0:
        return m
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= k:
        return m
    return _cap_rows(m, k)
