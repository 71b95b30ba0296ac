"""The vectorised metrics against a brute-force pure-Python reference (full sort per query)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmkg.evaluation.metrics import (
    average_precisions,
    image_text_retrieval,
    mean_average_precision,
    ndcg_at_k,
    recall_at_k,
    recall_sum,
    relevance_from_pairs,
    relevant_ranks,
)

# --- reference: sort every query's candidates by the documented total order -----------------------


def _order(row: list[float], rel: list[bool]) -> list[int]:
    """Descending score; ties: non-relevant first, then lower index first (pessimistic, deterministic)."""
    return sorted(range(len(row)), key=lambda j: (-row[j], 1 if rel[j] else 0, j))


def _ref_metrics(scores: np.ndarray, relevant: np.ndarray, ks: tuple[int, ...], ndcg_k: int) -> dict[str, float]:
    n_q = scores.shape[0]
    hits = {k: 0 for k in ks}
    ap_sum = 0.0
    ndcg_sum = 0.0
    for q in range(n_q):
        row = [float(x) for x in scores[q]]
        rel = [bool(x) for x in relevant[q]]
        order = _order(row, rel)
        positions = [pos for pos, j in enumerate(order) if rel[j]]
        for k in ks:
            if positions[0] < k:
                hits[k] += 1
        ap_sum += sum((i + 1) / (p + 1) for i, p in enumerate(positions)) / len(positions)
        dcg = sum(1 / math.log2(p + 2) for p in positions if p < ndcg_k)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(positions), ndcg_k)))
        ndcg_sum += dcg / idcg
    out = {f"R@{k}": 100.0 * hits[k] / n_q for k in ks}
    out["mAP"] = 100.0 * ap_sum / n_q
    out[f"NDCG@{ndcg_k}"] = 100.0 * ndcg_sum / n_q
    return out


def _random_case(rng: np.random.Generator, n_q: int, n_c: int, max_rel: int, levels: int | None):
    if levels is None:
        scores = rng.standard_normal((n_q, n_c)).astype(np.float32)
    else:  # few distinct values: lots of ties, including ties between relevant items
        scores = rng.integers(0, levels, size=(n_q, n_c)).astype(np.float32) / levels
    relevant = np.zeros((n_q, n_c), dtype=bool)
    for q in range(n_q):
        m = int(rng.integers(1, max_rel + 1))
        relevant[q, rng.choice(n_c, size=m, replace=False)] = True
    return scores, relevant


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [None, 3, 7])
def test_matches_bruteforce_reference(seed: int, levels: int | None) -> None:
    rng = np.random.default_rng(seed)
    scores, relevant = _random_case(rng, n_q=37, n_c=53, max_rel=6, levels=levels)
    ref = _ref_metrics(scores, relevant, ks=(1, 5, 10), ndcg_k=10)
    rec = recall_at_k(scores, relevant, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert rec[k] == pytest.approx(ref[f"R@{k}"], abs=1e-9)
    assert mean_average_precision(scores, relevant) == pytest.approx(ref["mAP"], abs=1e-9)
    assert ndcg_at_k(scores, relevant, k=10) == pytest.approx(ref["NDCG@10"], abs=1e-9)


def test_average_precisions_are_each_querys_share_of_the_map() -> None:
    rng = np.random.default_rng(7)
    scores, relevant = _random_case(rng, n_q=25, n_c=40, max_rel=5, levels=5)
    ap = average_precisions(scores, relevant)
    for q in range(len(ap)):
        assert 100 * ap[q] == pytest.approx(_ref_metrics(scores[q : q + 1], relevant[q : q + 1], (1,), 10)["mAP"])
    assert 100 * ap.mean() == pytest.approx(mean_average_precision(scores, relevant))


def test_ranks_match_reference_positions() -> None:
    rng = np.random.default_rng(42)
    scores, relevant = _random_case(rng, n_q=20, n_c=30, max_rel=4, levels=4)
    ranks, counts = relevant_ranks(scores, relevant)
    for q in range(scores.shape[0]):
        order = _order(list(scores[q]), list(relevant[q]))
        expected = [pos for pos, j in enumerate(order) if relevant[q, j]]
        assert counts[q] == len(expected)
        assert list(ranks[q, : counts[q]]) == expected
        assert (ranks[q, counts[q] :] == scores.shape[1]).all()


def test_ties_are_pessimistic() -> None:
    # Every candidate scores the same: the relevant one goes after all the others.
    scores = np.zeros((3, 10), dtype=np.float32)
    relevant = np.zeros((3, 10), dtype=bool)
    relevant[0, 0] = relevant[1, 5] = relevant[2, 9] = True
    assert recall_at_k(scores, relevant, ks=(1, 9, 10)) == {1: 0.0, 9: 0.0, 10: 100.0}
    # Two relevant items tied: the lower index is ranked first, after the tied non-relevant ones.
    ranks, _ = relevant_ranks(np.array([[0.5, 0.9, 0.5, 0.5]]), np.array([[False, False, True, True]]))
    assert ranks.tolist() == [[2, 3]]


def test_perfect_and_worst_rankings() -> None:
    n = 8
    sim = np.eye(n, dtype=np.float32)
    assert recall_at_k(sim, np.eye(n, dtype=bool), ks=(1,)) == {1: 100.0}
    assert mean_average_precision(sim, np.eye(n, dtype=bool)) == pytest.approx(100.0)
    assert ndcg_at_k(sim, np.eye(n, dtype=bool)) == pytest.approx(100.0)
    assert recall_at_k(-sim, np.eye(n, dtype=bool), ks=(1, n - 1, n)) == {1: 0.0, n - 1: 0.0, n: 100.0}


def test_recall_sum_is_the_headline_the_image_caption_protocol_tunes_on() -> None:
    # query 0 finds its item first, query 1 sixth (of 12): R@1 50, R@5 50, R@10 100
    scores = np.tile(-np.arange(12, dtype=np.float32), (2, 1))
    relevant = np.zeros((2, 12), bool)
    relevant[0, 0] = relevant[1, 5] = True
    assert recall_at_k(scores, relevant) == {1: 50.0, 5: 50.0, 10: 100.0}
    assert recall_sum(scores, relevant) == pytest.approx(200.0)


def test_image_text_protocol_against_reference() -> None:
    rng = np.random.default_rng(3)
    n_images, per = 12, 5
    text_image = np.repeat(np.arange(n_images), per)
    rng.shuffle(text_image)
    sim = rng.standard_normal((n_images * per, n_images)).astype(np.float32)
    sim[np.arange(sim.shape[0]), text_image] += 1.0  # make it better than chance
    out = image_text_retrieval(sim, text_image)
    rel = relevance_from_pairs(text_image, n_images)
    t2i = _ref_metrics(sim, rel, ks=(1, 5, 10), ndcg_k=10)
    i2t = _ref_metrics(sim.T.copy(), rel.T.copy(), ks=(1, 5, 10), ndcg_k=10)
    for k in (1, 5, 10):
        assert out[f"t2i_R@{k}"] == pytest.approx(t2i[f"R@{k}"])
        assert out[f"i2t_R@{k}"] == pytest.approx(i2t[f"R@{k}"])
    assert out["t2i_mAP"] == pytest.approx(t2i["mAP"])
    assert out["i2t_mAP"] == pytest.approx(i2t["mAP"])
    assert out["t2i_NDCG@10"] == pytest.approx(t2i["NDCG@10"])
    assert out["i2t_NDCG@10"] == pytest.approx(i2t["NDCG@10"])
    expected_rsum = sum(t2i[f"R@{k}"] + i2t[f"R@{k}"] for k in (1, 5, 10))
    assert out["rsum"] == pytest.approx(expected_rsum)
    assert out["n_texts"] == n_images * per and out["n_images"] == n_images


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="no relevant"):
        recall_at_k(np.zeros((2, 3)), np.array([[True, False, False], [False, False, False]]))
    with pytest.raises(ValueError, match="NaN"):
        recall_at_k(np.array([[np.nan, 0.0]]), np.array([[True, False]]))
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(np.zeros((2, 3)), np.zeros((3, 2), dtype=bool))
    with pytest.raises(ValueError, match="outside"):
        relevance_from_pairs([0, 3], n_images=3)
