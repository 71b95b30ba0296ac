"""Graph neural refinement of encoder vectors.

- `mmkg.gnn.data`: `build_hetero(store, vectors) -> GraphData` (a PyG HeteroData with reverse edges).
- `mmkg.gnn.sampler`: `HeteroNeighborSampler`, neighbour sampling without pyg-lib / torch-sparse.
- `mmkg.gnn.model`: `GraphRefiner`, residual SAGE/GAT message passing in `HeteroConv` layers.
- `mmkg.gnn.train`: `train_gnn(data_dir, settings, encoder)`, what `mmkg train gnn --data DIR` runs.
- `mmkg.gnn.refine`: `load_gnn(settings, encoder)`, whole-graph inference and inductive refinement.
- `mmkg.gnn.pairs`: image–caption collections ingested under the no-leakage protocol.
"""
