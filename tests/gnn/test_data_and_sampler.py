"""HeteroData from a real GraphStore, and neighbour sampling without pyg-lib/torch-sparse."""

from __future__ import annotations

import numpy as np
import torch

from mmkg.gnn.data import EDGE_TYPES, build_hetero, reverse_type
from mmkg.gnn.sampler import HeteroNeighborSampler


def test_hetero_shapes_features_and_reverse_edges(world):
    g = build_hetero(world.store, world.vectors)
    d = g.data
    assert d["Image"].x.shape == (12, 16) and d["Text"].x.shape == (12, 16)
    assert d["Entity"].x.shape == (7, 16) and d["Record"].x.shape == (24, 16)
    row = g.index["Image"][world.images[3]]
    assert torch.allclose(d["Image"].x[row], torch.from_numpy(world.vectors.images.get([world.images[3]])[0]))
    assert set(EDGE_TYPES) <= set(d.edge_types)
    n_depicts = sum(1 for _ in world.store.iter_edges("DEPICTS"))
    assert d["Image", "DEPICTS", "Entity"].edge_index.shape[1] == n_depicts
    for et in EDGE_TYPES:
        rev = reverse_type(et)
        fwd = {tuple(e) for e in d[et].edge_index.T.tolist()}
        back = {tuple(e[::-1]) for e in d[rev].edge_index.T.tolist()}
        assert fwd == back, et
    # CO_OCCURS is stored once and becomes symmetric
    co = d["Entity", "CO_OCCURS", "Entity"].edge_index
    assert co.shape[1] == 2 * sum(1 for _ in world.store.iter_edges("CO_OCCURS"))
    # a record's feature is the normalised mean of its members
    assert torch.allclose(d["Record"].x.norm(dim=1), torch.ones(24), atol=1e-5)


def test_sampler_seeds_first_fanout_and_real_edges(world):
    g = build_hetero(world.store, world.vectors)
    sampler = HeteroNeighborSampler(g.data, [2, 1], seed=1)
    seeds = {"Image": [0, 5], "Text": [3]}
    batch = sampler.sample(seeds)
    assert batch.n_id["Image"][:2].tolist() == [0, 5] and batch.n_id["Text"][:1].tolist() == [3]
    assert batch.num_seeds == {"Image": 2, "Text": 1, "Entity": 0, "Record": 0}
    for et in batch.data.edge_types:
        ei = batch.data[et].edge_index
        if ei.shape[1] == 0:
            continue
        glob = torch.stack([batch.n_id[et[0]][ei[0]], batch.n_id[et[2]][ei[1]]])
        real = {tuple(e) for e in g.data[et].edge_index.T.tolist()}
        assert {tuple(e) for e in glob.T.tolist()} <= real, et
        # at most fanout[0] incoming edges of one relation per seed
        dst_counts = np.bincount(ei[1].numpy())
        if et[2] == "Image":
            assert dst_counts[:2].max(initial=0) <= 2
    # the sampled subgraph feeds the same features
    assert torch.equal(batch.data["Image"].x, g.data["Image"].x[batch.n_id["Image"]])
    # the sampler leaves no state behind: the same call gives a same-shaped batch
    again = sampler.sample(seeds)
    assert again.n_id["Image"][:2].tolist() == [0, 5]
