"""What makes one search fast on a large collection: dense signals scored only over a candidate set.

`RecordRanker.score` computes every signal for every record, which at 100k records means about six passes
over 200 MB vector matrices per query. A single search needs far less:

* the z-score of a dense signal (`text`, `image`, `gnn`, `graph_image`, `graph_text`) needs only its mean and
  standard deviation over the collection, and for a record whose signal is one dot product `q . x` (one
  image, one text, one refined vector) these follow exactly from the first and second moments of the rows:
  mean `q . mu`, second moment `q' S q` (`DenseSignal`); records with several items are scored exactly;
* the records that can reach the top are those near the query in some signal: the nearest rows of each
  dense matrix (an HNSW graph, `faiss.IndexHNSWFlat`, inner product) and the best rows of the sparse
  signals (`lexical`, `attribute`, `graph_entity`), which are computed exactly over every record.

So a record that is a candidate gets exactly the score `RecordRanker.score` gives it (up to float rounding:
moments in float64), and a record outside the candidates is not ranked. The approximation is therefore in
which records are candidates; benchmarks/search_scale.py measures overlap@10 against the exact ranking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import faiss
import numpy as np
import scipy.sparse as sp

PER_SIGNAL = 200
"""Candidates taken from each signal's best rows."""
HNSW_M = 16
"""Links per node of the HNSW graphs (at 100k x 512: about 35 s to build, 1 ms a search)."""
EF_SEARCH = 256
"""HNSW search breadth: recall of the 200 nearest about 0.95 at 100k."""


@dataclass
class DenseSignal:
    """One dense signal `max over a record's items of q . item` (one item: `q . row`), with what scores it
    over candidates: the single-item rows (their moments and an HNSW index) and the records with more items."""

    member: sp.csr_matrix
    """Records x items (which items a record's score is the best of)."""
    items: np.ndarray
    rows: np.ndarray
    """The records with exactly one item ..."""
    row_items: np.ndarray
    """... and that item (an index into `items`)."""
    multi: np.ndarray
    """Records with several items: scored exactly, every query."""
    present: int
    mean: np.ndarray
    second: np.ndarray
    index: faiss.Index | None = field(default=None, repr=False)
    same_as: DenseSignal | None = field(default=None, repr=False)
    """A signal over the same rows and vectors, whose index this one shares (a record's one image is its mean
    image vector: `image` and `graph_image` then search one index)."""

    @classmethod
    def build(cls, member: sp.csr_matrix, items: np.ndarray, like: DenseSignal | None = None) -> DenseSignal:
        """The signal of `member` over `items`; one that holds the same single-item rows with the same vectors as
        `like` shares its moments and index (a record's one image is its mean image vector)."""
        counts = np.diff(member.indptr)
        rows = np.flatnonzero(counts == 1)
        row_items = member.indices[member.indptr[rows]]
        multi = np.flatnonzero(counts > 1)
        present = int((counts > 0).sum())
        if (like is not None and len(multi) == 0 and len(like.multi) == 0 and np.array_equal(rows, like.rows)
                and np.allclose(items[row_items], like.items[like.row_items], atol=1e-5)):
            return cls(member, items, rows, row_items, multi, present, like.mean, like.second, same_as=like)
        dim = items.shape[1]
        total, second = np.zeros(dim), np.zeros((dim, dim))
        for lo in range(0, len(rows), 16384):  # in float64, a slice at a time
            x = np.asarray(items[row_items[lo : lo + 16384]], dtype=np.float64)
            total += x.sum(axis=0)
            second += x.T @ x
        n = max(len(rows), 1)
        return cls(member, items, rows, row_items, multi, present, total / n, second / n)

    def ensure_index(self) -> None:
        """The HNSW index over the single-item rows (built on first use: about 35 s at 100k)."""
        if self.index is not None or len(self.rows) == 0:
            return
        if self.same_as is not None:
            self.same_as.ensure_index()
            self.index = self.same_as.index
            return
        x = np.ascontiguousarray(self.items[self.row_items], dtype=np.float32)
        index = faiss.IndexHNSWFlat(x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.add(x)
        index.hnsw.efSearch = EF_SEARCH
        self.index = index

    def moments(self, q: np.ndarray) -> tuple[float, float]:
        """(mean, std) of the signal over every record that has it, for query vector `q`."""
        if self.present == 0:
            return 0.0, 0.0
        q64 = np.asarray(q, dtype=np.float64)
        n1 = len(self.rows)
        total = n1 * float(q64 @ self.mean)
        total_sq = n1 * float(q64 @ self.second @ q64)
        if len(self.multi):
            extra = self.raw(q, self.multi).astype(np.float64)
            total += float(extra.sum())
            total_sq += float((extra**2).sum())
        mean = total / self.present
        return mean, math.sqrt(max(total_sq / self.present - mean * mean, 0.0))

    def nearest(self, q: np.ndarray, n: int) -> np.ndarray:
        """Records likely among the `n` best for `q`: the HNSW index's best single-item rows, the best multi-item
        ones."""
        out = []
        if len(self.rows):
            self.ensure_index()
            assert self.index is not None
            _, found = self.index.search(np.ascontiguousarray(q.reshape(1, -1), dtype=np.float32), n)
            out.append(self.rows[found[0][found[0] >= 0]])
        if len(self.multi):
            raw = self.raw(q, self.multi)
            out.append(self.multi[np.argsort(-raw)[:n]])
        return np.concatenate(out) if out else np.empty(0, np.int64)

    def raw(self, q: np.ndarray, records: np.ndarray) -> np.ndarray:
        """The signal's raw value for `records` (NaN where a record has no item), as `segment_max` gives it."""
        sub = self.member[records]
        out = np.full(len(records), np.nan, np.float32)
        if sub.nnz == 0:
            return out
        sims = np.asarray(self.items[sub.indices] @ np.asarray(q, dtype=np.float32), dtype=np.float32)
        has = np.diff(sub.indptr) > 0
        out[has] = np.maximum.reduceat(sims, sub.indptr[:-1][has])
        return out


def standardise_rows(raw: np.ndarray, mean: float, std: float) -> np.ndarray:
    """z-scores of some records given the collection's mean and std, as `_standardise` computes them."""
    if std <= 1e-6:
        return np.zeros(len(raw), np.float32)
    z = (raw.astype(np.float64) - mean) / max(std, 1e-6)
    return np.where(np.isnan(raw), 0.0, z).astype(np.float32)


def best_rows(values: np.ndarray, n: int) -> np.ndarray:
    """The rows of the `n` largest values (unordered)."""
    if len(values) <= n:
        return np.arange(len(values))
    return np.argpartition(-values, n - 1)[:n]
