"""Retrieval: vector indexes, seeds, graph expansion, fusion and explanations."""
