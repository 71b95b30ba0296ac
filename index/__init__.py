"""Vector indexes: the VectorIndex seam and its FAISS and Neo4j backends, below every layer that searches."""
