"""Graph refinement of record vectors by APPNP message passing (PyTorch Geometric) over records and entities.

Each record starts from its own content in the shared space (its image and text vectors together); APPNP
(Klicpera et al., ICLR 2019: personalised-PageRank propagation, `H <- (1 - alpha) A H + alpha X`) then
passes messages record -> entity -> record along the stated (and, weaker, predicted) entity links, so a
record's refined vector also carries what the records it shares attributes with look like and say. The
operator has no weights to train; `alpha` (how much of itself a record keeps) and `hops` are tuned on a dev
split, like the fusion weights. A query is not in the graph: it is attached to its nearest records and
its entities, and refined by one step of the same rule (`refine_query`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.nn import APPNP


def propagate(features: np.ndarray, links: sp.csr_matrix, alpha: float, hops: int) -> tuple[np.ndarray, np.ndarray]:
    """(refined records, entity states): APPNP over the bipartite graph whose records have `features`
    (records x dim) and whose record -> entity links carry weights `links` (records x entities)."""
    n_r, n_e = links.shape
    if hops <= 0 or n_e == 0 or links.nnz == 0:
        return _unit(features), np.zeros((n_e, features.shape[1]), np.float32)
    coo = links.tocoo()
    src = np.concatenate([coo.row, coo.col + n_r])
    dst = np.concatenate([coo.col + n_r, coo.row])
    weight = np.concatenate([coo.data, coo.data]).astype(np.float32)
    x = torch.from_numpy(np.concatenate([features, np.zeros((n_e, features.shape[1]), np.float32)]))
    # The (symmetric) adjacency as a sparse matrix: PyG then multiplies by it instead of materialising one
    # message per edge (edges x dim floats: 6.5 GB per hop at 100k records, which got a search killed).
    n = n_r + n_e
    with warnings.catch_warnings(), torch.no_grad():  # torch's notes on its sparse tensors, not ours to act on
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        adjacency = torch.sparse_coo_tensor(torch.from_numpy(np.stack([dst, src]).astype(np.int64)),
                                            torch.from_numpy(weight), (n, n)).coalesce().to_sparse_csr()
        h = APPNP(K=hops, alpha=alpha)(x, adjacency).numpy()
    return _unit(h[:n_r]), h[n_r:]


def refine_query(query: np.ndarray, records: np.ndarray, entities: np.ndarray, alpha: float,
                 neighbours: int = 10, entity_weights: sp.csr_matrix | None = None, temperature: float = 0.05
                 ) -> np.ndarray:
    """Queries (rows of `query`) refined inductively: `alpha` of themselves, the rest the mean message of their
    `neighbours` nearest refined records (softmax at `temperature`) and of their entities' states."""
    sims = query @ records.T
    k = min(neighbours, records.shape[0])
    if k == 0:
        return _unit(query)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    z = np.take_along_axis(sims, top, axis=1) / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    message = np.einsum("qk,qkd->qd", p, records[top])
    if entity_weights is not None and entity_weights.shape[1] and len(entities):
        total = np.asarray(entity_weights.sum(axis=1)).reshape(-1, 1)
        has = total[:, 0] > 0
        ent_msg = np.asarray(entity_weights @ entities) / np.maximum(total, 1e-12)
        message = np.where(has[:, None], 0.5 * message + 0.5 * _unit(ent_msg), message)
    return _unit(alpha * query + (1.0 - alpha) * _unit(message))


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
