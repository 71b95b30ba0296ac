"""Retrieval metrics from a score matrix and a relevance matrix, vectorised with numpy.

Conventions
-----------
* ``scores`` has one row per query and one column per candidate; higher is better.
* ``relevant`` is a boolean matrix of the same shape; every query needs at least one relevant
  candidate (a ``ValueError`` says which query has none).
* **Ties are broken pessimistically and deterministically.** Candidates are ranked by descending
  score; among candidates with exactly equal scores the non-relevant ones come first, and within
  the same relevance the lower column index comes first. So a tie never helps a relevant item,
  and an encoder that gives every candidate the same score gets Recall@K = 0 instead of a lucky
  figure that depends on the order of the collection. NaN scores are refused.
* Every figure is a percentage (0-100), averaged over queries.

Metrics
-------
* ``Recall@K`` (image-text retrieval sense): a query is a hit when *any* relevant candidate is among
  its top K. With one relevant candidate per query (text->image) this is the usual recall; for
  image->text (five relevant captions) it is the standard "hit if any of its captions is in the top K".
* ``mAP``: mean over queries of average precision over *all* relevant candidates.
* ``NDCG@K``: binary gains, ``1/log2(rank+2)`` discount (rank 0-based), normalised by the ideal DCG
  of that query (``min(#relevant, K)`` hits at the top).
* ``rsum``: the sum of Recall@1/5/10 in both directions (the usual headline figure).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "relevant_ranks",
    "recall_at_k",
    "mean_average_precision",
    "ndcg_at_k",
    "relevance_from_pairs",
    "image_text_retrieval",
]



def _check(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    r = np.asarray(relevant, dtype=bool)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-d (queries x candidates) matrix, got shape {s.shape}")
    if r.shape != s.shape:
        raise ValueError(f"relevance shape {r.shape} differs from scores shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number):
        raise ValueError("scores must be numeric")
    s = s.astype(np.float64, copy=False)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    counts = r.sum(axis=1)
    if s.shape[0] and (counts == 0).any():
        first = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"query {first} has no relevant candidate")
    return s, r


def relevant_ranks(scores: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based ranks of each query's relevant candidates, in ascending order.

    Returns ``(ranks, counts)``: ``ranks`` has shape (queries, max #relevant), padded with the number
    of candidates (a rank no real item has); ``counts[q]`` is how many relevant candidates query q has.
    Tie-breaking is the pessimistic order described in the module docstring: one stable sort per query
    by (score descending, non-relevant before relevant, index), whose positions are the ranks.
    """
    s, r = _check(scores, relevant)
    n_q, n_c = s.shape
    counts = r.sum(axis=1).astype(np.int64)
    m = int(counts.max()) if n_q else 0
    ranks = np.full((n_q, m), n_c, dtype=np.int64)
    if n_q == 0 or m == 0:
        return ranks, counts
    for i in range(n_q):
        order = np.lexsort((np.arange(n_c), r[i], -s[i]))  # last key first: score desc, then relevant last
        positions = np.flatnonzero(r[i][order])
        ranks[i, : len(positions)] = positions
    return ranks, counts


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Percentage of queries with at least one relevant candidate in the top K, for each K."""
    ranks, _ = relevant_ranks(scores, relevant)
    return _recall_from_ranks(ranks, ks)


def _recall_from_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    if ranks.shape[0] == 0:
        return {int(k): 0.0 for k in ks}
    best = ranks[:, 0]
    return {int(k): float(100.0 * np.mean(best < k)) for k in ks}


def _ap_from_ranks(ranks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    pos = np.arange(ranks.shape[1])[None, :]
    valid = pos < counts[:, None]
    precision = np.where(valid, (pos + 1) / (ranks + 1.0), 0.0)
    return np.asarray(precision.sum(axis=1) / counts, dtype=np.float64)


def _map_from_ranks(ranks: np.ndarray, counts: np.ndarray) -> float:
    return float(100.0 * _ap_from_ranks(ranks, counts).mean()) if ranks.shape[0] else 0.0


def _ndcg_from_ranks(ranks: np.ndarray, counts: np.ndarray, k: int) -> float:
    if ranks.shape[0] == 0:
        return 0.0
    pos = np.arange(ranks.shape[1])[None, :]
    valid = pos < counts[:, None]
    gains = np.where(valid & (ranks < k), 1.0 / np.log2(ranks + 2.0), 0.0)
    dcg = gains.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(counts, k)]
    return float(100.0 * np.mean(dcg / idcg))


def recall_sum(scores: np.ndarray, relevant: np.ndarray) -> float:
    """R@1 + R@5 + R@10 of one direction: the image-caption protocol's headline (half of its `rsum`)."""
    return float(sum(recall_at_k(scores, relevant, (1, 5, 10)).values()))


def mean_average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """mAP (percent) over all relevant candidates of each query."""
    ranks, counts = relevant_ranks(scores, relevant)
    return _map_from_ranks(ranks, counts)


def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """NDCG@K (percent) with binary gains."""
    ranks, counts = relevant_ranks(scores, relevant)
    return _ndcg_from_ranks(ranks, counts, k)


def relevance_from_pairs(text_image: Sequence[int] | np.ndarray, n_images: int) -> np.ndarray:
    """Boolean (texts x images) matrix: text t is relevant to image ``text_image[t]`` only."""
    ti = np.asarray(text_image, dtype=np.int64)
    if ti.ndim != 1:
        raise ValueError("text_image must be one image index per text")
    if ti.size and (ti.min() < 0 or ti.max() >= n_images):
        raise ValueError(f"text_image holds an image index outside 0..{n_images - 1}")
    rel = np.zeros((ti.size, n_images), dtype=bool)
    rel[np.arange(ti.size), ti] = True
    return rel


def image_text_retrieval(
    similarity: np.ndarray,
    text_image: Sequence[int] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    ndcg_k: int = 10,
) -> dict[str, float]:
    """The standard image-text retrieval protocol on a (texts x images) similarity matrix.

    ``text_image[t]`` is the index of the image that text t describes. Text->image: each text
    queries all images, one relevant. Image->text: each image queries all texts, its own texts
    relevant (hit if any is in the top K). Returns percentages keyed ``t2i_R@1``, ``i2t_R@5``,
    ``t2i_mAP``, ``i2t_NDCG@10``, ..., plus ``rsum`` (sum of all the recalls) and the counts.
    """
    sim = np.asarray(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (texts x images), got shape {sim.shape}")
    n_texts, n_images = sim.shape
    rel = relevance_from_pairs(text_image, n_images)
    if rel.shape[0] != n_texts:
        raise ValueError(f"{rel.shape[0]} text->image pairs for {n_texts} similarity rows")
    out: dict[str, float] = {}
    rsum = 0.0
    for direction, s, r in (("t2i", sim, rel), ("i2t", sim.T, rel.T)):
        ranks, counts = relevant_ranks(s, r)
        for k, v in _recall_from_ranks(ranks, ks).items():
            out[f"{direction}_R@{k}"] = v
            rsum += v
        out[f"{direction}_mAP"] = _map_from_ranks(ranks, counts)
        out[f"{direction}_NDCG@{ndcg_k}"] = _ndcg_from_ranks(ranks, counts, ndcg_k)
    out["rsum"] = rsum
    out["n_texts"] = float(n_texts)
    out["n_images"] = float(n_images)
    return out


def ranking_figures(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                    ndcg_k: int = 10) -> dict[str, float]:
    """R@K, mAP and NDCG@K (percent) of queries x candidates scores under any binary relevance."""
    ranks, counts = relevant_ranks(scores, relevant)
    out = {f"R@{k}": round(v, 2) for k, v in _recall_from_ranks(ranks, ks).items()}
    out["mAP"] = round(_map_from_ranks(ranks, counts), 2)
    out[f"ndcg@{ndcg_k}"] = round(_ndcg_from_ranks(ranks, counts, ndcg_k), 2)
    return out


def first_relevant_rank(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """(queries,) 0-based rank of each query's best-ranked relevant candidate."""
    ranks, _ = relevant_ranks(scores, relevant)
    return ranks[:, 0] if ranks.shape[1] else np.zeros(len(ranks), np.int64)


def average_precisions(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """(queries,) each query's average precision (0 to 1): its share of the mAP, so two systems can be compared
    query by query (benchmarks/paired_systems.py)."""
    return _ap_from_ranks(*relevant_ranks(scores, relevant))
