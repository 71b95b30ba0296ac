"""Records in, graph and vectors out: batched, idempotent and resumable.

A record is marked `complete` on its Record node only after its nodes, edges and vectors are
durable, so a killed ingest redoes at most the batch it was in and, because every write is an
upsert keyed by content-derived ids, redoing it duplicates nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations, islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mmkg.encoders.base import Encoder
from mmkg.errors import BadImageError
from mmkg.graph import ids
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.ingest.entities import Entity, attribute_entities, extract_entities
from mmkg.ingest.images import load_image
from mmkg.ingest.records import Record, Skip
from mmkg.retrieval.index import VectorIndex
from mmkg.retrieval.vectors import Vectors
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_json

log = logging.getLogger(__name__)

MAX_IMAGE_SIDE = 1024
"""Decoded images are shrunk to this before encoding: encoders need far less, memory stays bounded."""
MAX_COOCCURRING = 30
"""Entities per record that take part in co-occurrence (attributes first): bounds pairs per record."""


@dataclass
class IngestReport:
    source: str
    ingested: int = 0
    already_present: int = 0
    skipped: list[Skip] = field(default_factory=list)
    new_images: int = 0
    new_texts: int = 0
    new_entities: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ingested": self.ingested,
            "already_present": self.already_present,
            "skipped": [{"item": s.item, "reason": s.reason} for s in self.skipped],
            "new_images": self.new_images,
            "new_texts": self.new_texts,
            "new_entities": self.new_entities,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class _Prepared:
    rid: str
    record: Record
    images: dict[int, tuple[str, Image.Image, Path, tuple[int, int]]]
    """Readable images by their position in `record.images`: (id, image, path, original size)."""
    texts: list[tuple[str, str, str, int | None]]
    """(id, kind, text, position of the one image it describes or None for all of them)."""

    def described(self, position: int | None) -> list[str]:
        if position is None:
            return [iid for iid, *_ in self.images.values()]
        return [self.images[position][0]] if position in self.images else []


class Ingestor:
    """Writes records into a graph store and the vector indexes, with entities and image tags."""

    def __init__(self, settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder) -> None:
        self.settings = settings
        self.store = store
        self.vectors = vectors
        self.encoder = encoder

    def run(
        self, records: Iterable[Record | Skip], source: str, total: int | None = None, progress: bool = True
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(source=source)
        bar = tqdm(total=total, desc=f"ingest {source}", unit="rec", disable=not progress)
        for batch in _batched(iter(records), self.settings.ingest_batch):
            usable: list[Record] = []
            for item in batch:
                if isinstance(item, Skip):
                    report.skipped.append(item)
                else:
                    usable.append(item)
            self._ingest_batch(usable, source, report)
            bar.update(len(batch))
        bar.close()
        if report.ingested:
            self.update_cooccurrence()
            self.tag_images(progress=progress)
            self.store.commit()
        report.seconds = time.perf_counter() - started
        atomic_write_json(Workspace(self.settings.home).last_ingest, report.to_json())
        return report

    # --- one batch -------------------------------------------------------------------------

    def _ingest_batch(self, records: Sequence[Record], source: str, report: IngestReport) -> None:
        rids = [ids.record_id(source, r.id) for r in records]
        existing = self.store.get_nodes(rids)
        prepared: list[_Prepared] = []
        seen: set[str] = set()
        for rid, record in zip(rids, records, strict=True):
            if rid in seen:
                report.skipped.append(Skip(record.id, "duplicate record id in this source"))
                continue
            seen.add(rid)
            node = existing.get(rid)
            if node is not None and node.props.get("complete"):
                report.already_present += 1
                continue
            item = self._prepare(rid, record, report)
            if item is not None:
                prepared.append(item)
        if not prepared:
            return

        text_rows = [t for p in prepared for t in p.texts]
        text_entities = extract_entities([text for _, _, text, _ in text_rows])
        entities_of_text = {row[0]: ents for row, ents in zip(text_rows, text_entities, strict=True)}

        nodes: dict[str, Node] = {}
        edges: list[Edge] = []
        entity_names: dict[str, Entity] = {}
        record_entities: dict[str, list[str]] = {}
        for p in prepared:
            attrs = attribute_entities(p.record.attributes)
            mentioned: list[str] = []
            for iid, _, path, (w, h) in p.images.values():
                nodes[iid] = Node(iid, Label.IMAGE, {"path": str(path), "width": w, "height": h, "record": p.rid})
                edges.append(Edge(p.rid, iid, Rel.HAS))
            for tid, kind, text, position in p.texts:
                nodes[tid] = Node(tid, Label.TEXT, {"text": text, "kind": kind, "record": p.rid})
                edges.append(Edge(p.rid, tid, Rel.HAS))
                for iid in p.described(position):
                    edges.append(Edge(tid, iid, Rel.DESCRIBES))
                for ent in entities_of_text[tid]:
                    eid = ids.entity_id(ent.name)
                    entity_names[eid] = ent
                    edges.append(Edge(tid, eid, Rel.MENTIONS, {"source": "text"}))
                    mentioned.append(eid)
            for ent in attrs:
                eid = ids.entity_id(ent.name)
                entity_names[eid] = ent
                if p.images:
                    for iid, *_ in p.images.values():
                        edges.append(Edge(iid, eid, Rel.DEPICTS, {"score": 1.0, "source": "attribute"}))
                else:
                    for tid, *_ in p.texts:
                        edges.append(Edge(tid, eid, Rel.MENTIONS, {"source": "attribute"}))
            attr_ids = [ids.entity_id(e.name) for e in attrs]
            record_entities[p.rid] = list(dict.fromkeys(attr_ids + mentioned))
            nodes[p.rid] = Node(
                p.rid,
                Label.RECORD,
                {
                    "source": source,
                    "source_id": p.record.id,
                    "attributes": [f"{k}:{v}" for k, v in p.record.attributes],
                    "complete": False,
                },
            )
        for eid, ent in entity_names.items():
            nodes[eid] = Node(eid, Label.ENTITY, {"name": ent.name, "kind": ent.kind})

        # Graph first (records still incomplete), then vectors, then mark complete.
        self.store.upsert_nodes(list(nodes.values()))
        self.store.upsert_edges(edges)
        report.new_images += self._add_image_vectors(prepared)
        report.new_texts += self._add_vectors(self.vectors.texts, {row[0]: row[2] for row in text_rows})
        report.new_entities += self._add_vectors(
            self.vectors.entities, {eid: entity_text(ent) for eid, ent in entity_names.items()}
        )
        self.vectors.save()
        self.store.upsert_nodes(
            [Node(p.rid, Label.RECORD, {"complete": True, "entities": record_entities[p.rid]}) for p in prepared]
        )
        self.store.commit()
        report.ingested += len(prepared)

    def _prepare(self, rid: str, record: Record, report: IngestReport) -> _Prepared | None:
        images: dict[int, tuple[str, Image.Image, Path, tuple[int, int]]] = {}
        for position, path in enumerate(record.images):
            try:
                img, data = load_image(path, self.settings.max_image_bytes, self.settings.max_image_pixels)
            except BadImageError as exc:
                report.skipped.append(Skip(str(path), str(exc)))
                continue
            size = img.size
            img.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
            images[position] = (ids.image_id(data), img, path, size)
        texts: list[tuple[str, str, str, int | None]] = []
        for field_ in record.texts:
            text = field_.text.strip()
            if text:
                texts.append((ids.text_id(rid, field_.kind, text), field_.kind, text, field_.image))
        if record.images and not images and not texts:
            report.skipped.append(Skip(record.id, "record has no readable image and no text"))
            return None
        if not images and not texts:
            report.skipped.append(Skip(record.id, "record has neither image nor text"))
            return None
        return _Prepared(rid, record, images, list(dict.fromkeys(texts)))

    def _add_image_vectors(self, prepared: Sequence[_Prepared]) -> int:
        candidates = {iid: img for p in prepared for iid, img, *_ in p.images.values()}
        have = self.vectors.images.present(list(candidates))
        new = {iid: img for iid, img in candidates.items() if iid not in have}
        if not new:
            return 0
        vecs = self.encoder.encode_images(list(new.values()), progress=len(new) > 512)
        return self.vectors.images.add(list(new), vecs)

    def _add_vectors(self, index: VectorIndex, texts: dict[str, str]) -> int:
        have = index.present(list(texts))
        new = {k: v for k, v in texts.items() if k not in have}
        if not new:
            return 0
        vecs = self.encoder.encode_texts(list(new.values()), progress=len(new) > 512)
        return index.add(list(new), vecs)

    # --- collection-wide passes ------------------------------------------------------------

    def update_cooccurrence(self) -> int:
        """Recount CO_OCCURS (count and PMI) from every complete record: idempotent by construction."""
        pair_counts: Counter[tuple[str, str]] = Counter()
        entity_counts: Counter[str] = Counter()
        n_records = 0
        for node in self.store.iter_nodes(Label.RECORD):
            ents = list(node.props.get("entities") or [])[:MAX_COOCCURRING]
            if not node.props.get("complete") or not ents:
                continue
            n_records += 1
            unique = sorted(set(ents))
            entity_counts.update(unique)
            pair_counts.update(combinations(unique, 2))
        edges = []
        for (a, b), count in pair_counts.items():
            pmi = math.log(count * n_records / (entity_counts[a] * entity_counts[b]))
            edges.append(Edge(a, b, Rel.CO_OCCURS, {"count": count, "pmi": round(pmi, 4)}))
        for chunk in _batched(iter(edges), 5000):
            self.store.upsert_edges(chunk)
        return len(edges)

    def tag_images(self, progress: bool = False) -> int:
        """Zero-shot tagging: link each image to the entity names whose vectors are closest to it.

        The vocabulary is every text-derived entity mentioned at least twice (one-off noun chunks
        are noise); attribute entities are excluded because records state those outright.
        """
        mention_counts: Counter[str] = Counter(e.dst for e in self.store.iter_edges(Rel.MENTIONS))
        candidates = [
            n.id
            for n in self.store.iter_nodes(Label.ENTITY)
            if n.props.get("kind") != "attribute" and mention_counts[n.id] >= 2
        ]
        encoded = self.vectors.entities.present(candidates)
        vocab = [eid for eid in candidates if eid in encoded]
        all_images = [n.id for n in self.store.iter_nodes(Label.IMAGE)]
        encoded = self.vectors.images.present(all_images)
        image_ids = [iid for iid in all_images if iid in encoded]
        if not vocab or not image_ids:
            return 0
        vocab_vecs = self.vectors.entities.get(vocab)
        k = min(self.settings.tag_top_k, len(vocab))
        written = 0
        for chunk in tqdm(list(_batched(iter(image_ids), 2048)), desc="tag images", disable=not progress):
            sims = self.vectors.images.get(chunk) @ vocab_vecs.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            edges = [
                Edge(iid, vocab[j], Rel.DEPICTS, {"score": round(float(sims[row, j]), 4), "source": "tag"})
                for row, iid in enumerate(chunk)
                for j in top[row]
                if sims[row, j] >= self.settings.tag_min_score
            ]
            self.store.upsert_edges(edges)
            written += len(edges)
        return written


def entity_text(entity: Entity) -> str:
    """What an entity's vector encodes: the value of an attribute (`navy blue`), else the name."""
    if entity.kind == "attribute" and ":" in entity.name:
        return entity.name.split(":", 1)[1]
    return entity.name


def _batched(it: Iterator[Any], n: int) -> Iterator[list[Any]]:
    while chunk := list(islice(it, n)):
        yield chunk
