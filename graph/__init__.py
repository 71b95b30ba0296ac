"""The knowledge graph: schema, the GraphStore interface and its backends."""
