"""mmkg: graph-based multimodal knowledge retrieval."""

__version__ = "0.1.0"
