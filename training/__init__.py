"""Training the lit heads: frozen features from the cache, the contrastive loop, evaluation on a folder."""
