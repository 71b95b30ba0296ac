"""NNN, Nearest Neighbor Normalization (Chowdhury et al., EMNLP 2024), with the `nnn-retrieval` library.

A training-free correction of contrastive retrieval: a gallery item's score is lowered by its mean
similarity to its k nearest reference queries, `score = q . g - alpha * mean_topk(bank . g)`. The reference
bank is the training collection's queries (never the test queries), so each test query is scored alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product

import faiss
import numpy as np
from nnn import FaissCPURetriever, NNNRanker

from mmkg.evaluation.metrics import mean_average_precision
from mmkg.retrieval.ranker import QuerySet
from mmkg.retrieval.records import RecordTable

ALPHAS = (0.25, 0.5, 0.75, 1.0)
KS = (16, 64, 256)


class NnnScorer:
    """NNN scores of queries against the gallery records (their one image, or their one text)."""

    def __init__(self, table: RecordTable, columns: np.ndarray, bank: np.ndarray, alpha: float = 0.5,
                 k: int = 64) -> None:
        self.alpha = alpha
        self.gallery = np.ascontiguousarray(table.record_vecs()[columns])
        bank = np.ascontiguousarray(bank, dtype=np.float32)
        d = self.gallery.shape[1]
        # nnn-retrieval 1.0.1 sets `nprobe` on its indexes, which faiss >= 1.9 refuses on a flat index (an IVF
        # index with one list is exact and takes it), and forgets a retrieval index passed in (set it here).
        self._quantizers = [faiss.IndexFlatIP(d), faiss.IndexFlatIP(d + 1)]
        retrieval_index = faiss.IndexIVFFlat(self._quantizers[1], d + 1, 1, faiss.METRIC_INNER_PRODUCT)
        retriever = FaissCPURetriever(
            d,
            reference_index=faiss.IndexIVFFlat(self._quantizers[0], d, 1, faiss.METRIC_INNER_PRODUCT),
            retrieval_index=retrieval_index,
        )
        retriever.retrieval_index = retrieval_index
        self.ranker = NNNRanker(retriever, self.gallery, bank, alternate_ks=min(k, len(bank)),
                                alternate_weight=alpha)

    def scores(self, queries: QuerySet) -> np.ndarray:
        """queries x gallery scores (every gallery item ranked by the library's own search)."""
        n = len(self.gallery)
        dist, idx = self.ranker.search(np.ascontiguousarray(queries.vectors, dtype=np.float32), n)
        out = np.full((len(queries), n), -np.inf, np.float32)
        np.put_along_axis(out, np.asarray(idx), np.asarray(dist, dtype=np.float32), axis=1)
        return out

    @classmethod
    def tune(cls, table: RecordTable, queries: QuerySet, columns: np.ndarray, relevant: np.ndarray,
             bank: np.ndarray, alphas: Sequence[float] = ALPHAS, ks: Sequence[int] = KS,
             metric: Callable[[np.ndarray, np.ndarray], float] = mean_average_precision) -> dict[str, float]:
        """The (alpha, k) with the best `metric` on dev queries (the one `full` is tuned on)."""
        best: tuple[float, dict[str, float]] = (-1.0, {"alpha": 0.5, "k": 64})
        for alpha, k in product(alphas, ks):
            s = metric(cls(table, columns, bank, alpha, k).scores(queries), relevant)
            if s > best[0]:
                best = (s, {"alpha": alpha, "k": k})
        return best[1]
