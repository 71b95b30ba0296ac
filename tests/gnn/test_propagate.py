"""APPNP refinement of record vectors: the PyG operator against its closed form, and the query's refinement."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mmkg.gnn.propagate import propagate, refine_query


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_propagate_matches_the_appnp_recurrence() -> None:
    """H <- (1 - alpha) D^-1/2 (A + I) D^-1/2 H + alpha X over records and entities (entities start at 0)."""
    rng = np.random.default_rng(0)
    feats = _unit(rng.normal(size=(4, 8)).astype(np.float32))
    links = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 2], [0, 0]], np.float32))
    refined, _ = propagate(feats, links, alpha=0.3, hops=2)
    n = 6
    a = np.zeros((n, n), np.float32)
    a[:4, 4:] = links.toarray()
    a += a.T
    a += np.eye(n, dtype=np.float32)
    d = 1 / np.sqrt(a.sum(axis=1))
    norm = d[:, None] * a * d[None, :]
    x = np.vstack([feats, np.zeros((2, 8), np.float32)])
    h = x
    for _ in range(2):
        h = 0.7 * norm @ h + 0.3 * x
    np.testing.assert_allclose(refined, _unit(h[:4]), atol=1e-5)
    # records 0 and 1 share an entity: propagation pulls them together; record 3 has no link and stays put
    assert float(refined[0] @ refined[1]) > float(feats[0] @ feats[1])
    np.testing.assert_allclose(refined[3], feats[3], atol=1e-5)


def test_a_query_moves_toward_its_nearest_records() -> None:
    records = np.eye(3, dtype=np.float32)
    q = _unit(np.array([[1.0, 0.2, 0.0]], np.float32))
    refined = refine_query(q, records, np.zeros((0, 3), np.float32), alpha=0.5, neighbours=1)
    assert refined[0] @ records[0] > q[0] @ records[0]
    np.testing.assert_allclose(np.linalg.norm(refined, axis=1), 1.0, atol=1e-6)
    same = refine_query(q, records, np.zeros((0, 3), np.float32), alpha=1.0)
    np.testing.assert_allclose(same, q, atol=1e-6)
