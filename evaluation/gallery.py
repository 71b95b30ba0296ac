"""A benchmark's gallery: records ingested into a workspace of their own, and queries prepared as search does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmkg.encoders.base import Encoder
from mmkg.encoders.colour import colour_descriptor
from mmkg.errors import UserInputError
from mmkg.graph import ids
from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.store import GraphStore
from mmkg.index.vectors import Vectors
from mmkg.ingest.images import load_image
from mmkg.ingest.pipeline import Ingestor
from mmkg.ingest.records import Record
from mmkg.retrieval.query_entities import QueryLinker
from mmkg.retrieval.ranker import QuerySet, RankingConfig, RecordRanker
from mmkg.retrieval.record_search import image_query_entities
from mmkg.retrieval.records import RecordTable
from mmkg.settings import Settings
from mmkg.workspace import Workspace


@dataclass
class Gallery:
    """The graph, vectors, record table and ranker of a benchmark's workspace (memory store)."""

    settings: Settings
    store: GraphStore
    vectors: Vectors
    table: RecordTable
    ranker: RecordRanker
    linker: QueryLinker

    @classmethod
    def ingest(cls, records: Sequence[Record], source: str, settings: Settings, encoder: Encoder, home: Path,
               progress: bool = False, extra: Sequence[tuple[Sequence[Record], str]] = (),
               config: RankingConfig | None = None) -> Gallery:
        """Ingest `records` (and `extra` (records, source) collections, such as background knowledge) into
        `home`; an item that cannot be ingested is an error, since the protocol needs every one."""
        ws = settings.replace(home=Path(home), store="memory")
        Workspace(ws.home).ensure()
        vectors = Vectors.open(ws, encoder.dim, encoder.fingerprint)
        store = MemoryGraphStore(Workspace(ws.home).graph_dir)
        for recs, name in [(records, source), *extra]:
            report = Ingestor(ws, store, vectors, encoder).run(list(recs), name, total=len(recs), progress=progress)
            if report.skipped:
                first = report.skipped[0]
                raise UserInputError(f"{len(report.skipped)} benchmark items were unusable "
                                     f"(first: {first.item}: {first.reason}); the protocol needs every one")
        table = RecordTable.build(store, vectors)
        return cls(ws, store, vectors, table, RecordRanker(table, config),
                   QueryLinker(store, vectors.entities, table.bm25.states))

    def columns(self, source: str, record_ids: Sequence[str]) -> np.ndarray:
        """Table rows of these records of `source`, in order."""
        pos = self.table.pos
        missing = [r for r in record_ids if ids.record_id(source, r) not in pos]
        if missing:
            raise UserInputError(f"{len(missing)} gallery records are not in the benchmark graph (first: {missing[0]})")
        return np.asarray([pos[ids.record_id(source, r)] for r in record_ids], dtype=np.int64)

    def close(self) -> None:
        self.store.close()


def text_queries(gallery: Gallery, encoder: Encoder, texts: Sequence[str]) -> QuerySet:
    """Text queries as `mmkg search` prepares them: encoded, linked to the entities they mention."""
    vecs = encoder.encode_texts(list(texts)) if texts else np.zeros((0, encoder.dim), np.float32)
    ents = [[(e.id, e.score) for e in gallery.linker.for_text(t)] for t in texts]
    return QuerySet("text", vecs, list(texts), ents)


def image_queries(gallery: Gallery, encoder: Encoder, paths: Sequence[Path], settings: Settings) -> QuerySet:
    """Image queries as `mmkg search --image` prepares them: encoded, linked to the attribute values predicted for
    them and their trusted zero-shot tags."""
    images = [load_image(p, settings.max_image_bytes, settings.max_image_pixels)[0] for p in paths]
    vecs = encoder.encode_images(images) if images else np.zeros((0, encoder.dim), np.float32)
    ents = [[(e.id, e.score) for e in found]
            for found in image_query_entities(gallery.table, gallery.linker, vecs, gallery.settings)]
    colours = np.stack([colour_descriptor(im) for im in images]) if images else None
    return QuerySet("image", vecs, None, ents, colours)
