"""Ingest: readers turn a source into Records; the pipeline turns Records into graph and vectors."""
