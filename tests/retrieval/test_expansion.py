"""The single-query expansion path gives what the batched sparse path gives."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mmkg.retrieval.expansion import GraphIndex


@pytest.mark.parametrize("beam", [0, 5, 50])
def test_one_query_path_matches_the_batched_path(beam: int) -> None:
    rng = np.random.default_rng(1)
    n, m = 300, 3000
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    g = GraphIndex.from_edges([f"n{i}" for i in range(n)], np.zeros(n, np.int8), np.r_[src, dst], np.r_[dst, src],
                              rng.uniform(0.1, 1.0, 2 * m).astype(np.float32), max_fanout=12)
    for _ in range(5):
        cols = rng.choice(n, 20, replace=False)
        start = sp.csr_matrix((rng.uniform(0, 1, 20).astype(np.float32), (np.zeros(20, int), cols)), shape=(1, n))
        for hops in (1, 2):
            one = g.expand(start, hops=hops, beam=beam).mass.toarray()
            batched = g._expand_sparse(start, hops, beam, 0.5).toarray()
            np.testing.assert_allclose(one, batched, rtol=1e-5, atol=1e-7)
            assert one.sum() > 0
