"""Graph neural refinement of encoder vectors.

- `mmkg.gnn.propagate`: APPNP message passing (PyTorch Geometric) over record -> entity links, and the
  inductive refinement of a query that is not in the graph.
"""
