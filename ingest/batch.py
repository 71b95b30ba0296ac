"""A record's way into the graph, step by step and with no store: read, decode, prepare, and the nodes and
edges a batch adds. Both ingest engines run these steps (the local one on its threads, the Ray one in its
workers), so they build the same graph from the same records.

Each image file is read once: its bytes give the image its id, enter the record's content digest, and are
decoded; a record whose digest matches the stored one is never decoded at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mmkg.encoders.colour import COLOUR_VERSION, colour_descriptor
from mmkg.errors import BadImageError
from mmkg.graph import ids
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.ingest.entities import EXTRACTION_VERSION, Entity, attribute_entities
from mmkg.ingest.images import decode_image, read_image_bytes
from mmkg.ingest.records import Record, Skip

MAX_IMAGE_SIDE = 1024
"""Decoded images are shrunk to this before encoding: encoders need far less, memory stays bounded."""

COLOUR_DIGITS = 4
"""Decimals a stored colour descriptor keeps: its 52 values stay small on the node."""

TextRow = tuple[str, str, str, int | None]
"""(text id, kind, text, position of the one image it describes or None for all of them)."""


@dataclass
class ReadRecord:
    """A record with its image files read: what the digest needs, and what decoding will need."""

    record: Record
    rid: str
    digest: str
    blobs: list[bytes | str]
    """Per image position: its bytes, or why they could not be read. Emptied once decoded."""


@dataclass
class DecodedImage:
    iid: str
    image: Image.Image | None
    """None once encoded by a worker (the pixels need not travel back)."""
    path: Path
    size: tuple[int, int]
    """Width and height as stored, before shrinking."""
    colour: list[float]
    """Its colour descriptor (encoders/colour.py), rounded: stored on the Image node."""


@dataclass
class Decoded:
    images: dict[int, DecodedImage]
    """Readable images by their position in `record.images`."""
    skips: list[Skip]
    """The images that could not be read or decoded, in order."""


@dataclass
class Loaded:
    """What an engine hands the writer for one record: read, and where the engine did that work already,
    decoded, its texts' entities, and vectors. Whatever is missing the writer computes itself."""

    read: ReadRecord
    decoded: Decoded | None = None
    entities: dict[str, list[Entity]] | None = None
    """Entities of each text, by text id."""
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    """Vectors by node id (images, texts, entities)."""


@dataclass
class Prepared:
    rid: str
    record: Record
    images: dict[int, DecodedImage]
    texts: list[TextRow]

    def described(self, position: int | None) -> list[str]:
        if position is None:
            return [im.iid for im in self.images.values()]
        return [self.images[position].iid] if position in self.images else []


@dataclass
class BatchGraph:
    """The nodes and edges a batch of prepared records adds, and what each record mentions."""

    nodes: dict[str, Node]
    edges: list[Edge]
    entities: dict[str, Entity]
    """Every entity the batch links, by id."""
    record_entities: dict[str, list[str]]
    """Per record: its attribute entities, then the entities its texts mention."""


def read_record(record: Record, rid: str, max_bytes: int) -> ReadRecord:
    """Read every image file of `record` once and digest what the record says."""
    blobs: list[bytes | str] = []
    for path in record.images:
        try:
            blobs.append(read_image_bytes(path, max_bytes))
        except BadImageError as exc:
            blobs.append(str(exc))
    return ReadRecord(record, rid, content_digest(record, blobs), blobs)


def content_digest(record: Record, blobs: Sequence[bytes | str]) -> str:
    """What a record says, as a digest: texts, attributes, each image's path and bytes, and the versions of
    the entity extraction and the colour descriptor that read it.

    Stored on the Record node; a re-ingest compares it to tell an edited record from an unchanged one.
    An unreadable image enters as its error, so a record that stays broken the same way stays unchanged.
    A workspace ingested before the extraction (or the descriptor) changed gets the new entities (colours) on its
    next ingest (its images are not encoded again: their vectors are kept by content), instead of keeping the old
    ones for good.
    """
    images = [
        f"{path}\x1f{ids.image_id(blob)}" if isinstance(blob, bytes) else f"{path}\x1fbad: {blob}"
        for path, blob in zip(record.images, blobs, strict=True)
    ]
    content = {
        "texts": [[t.kind, t.text.strip(), t.image] for t in record.texts],
        "attributes": [list(a) for a in record.attributes],
        "images": images,
        "extraction": EXTRACTION_VERSION,
        "colour": COLOUR_VERSION,
    }
    return hashlib.sha256(json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def record_hash(record: Record, max_image_bytes: int) -> str:
    """The content digest of a record as it is on disk now."""
    return read_record(record, "", max_image_bytes).digest


def decode_record(read: ReadRecord, max_pixels: int) -> Decoded:
    """Decode each readable image (shrunk to MAX_IMAGE_SIDE); the bytes are released."""
    images: dict[int, DecodedImage] = {}
    skips: list[Skip] = []
    for position, (path, blob) in enumerate(zip(read.record.images, read.blobs, strict=True)):
        if isinstance(blob, str):
            skips.append(Skip(str(path), blob))
            continue
        try:
            img = decode_image(blob, max_pixels, name=str(path))
        except BadImageError as exc:
            skips.append(Skip(str(path), str(exc)))
            continue
        size = img.size
        img.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        colour = [round(float(v), COLOUR_DIGITS) for v in colour_descriptor(img)]
        images[position] = DecodedImage(ids.image_id(blob), img, path, size, colour)
    read.blobs = []
    return Decoded(images, skips)


def record_texts(rid: str, record: Record) -> list[TextRow]:
    """The record's non-empty texts with their ids, without repeats."""
    texts: list[TextRow] = []
    for field_ in record.texts:
        text = field_.text.strip()
        if text:
            texts.append((ids.text_id(rid, field_.kind, text), field_.kind, text, field_.image))
    return list(dict.fromkeys(texts))


def prepare_record(read: ReadRecord, decoded: Decoded) -> tuple[Prepared | None, list[Skip]]:
    """The record ready to write, or None when nothing of it is usable; the Skips to report either way."""
    skips = list(decoded.skips)
    texts = record_texts(read.rid, read.record)
    if not decoded.images and not texts:
        why = "record has no readable image and no text" if read.record.images else "record has neither image nor text"
        return None, [*skips, Skip(read.record.id, why)]
    return Prepared(read.rid, read.record, decoded.images, texts), skips


def build_graph(prepared: Sequence[Prepared], source: str, entities_of_text: dict[str, list[Entity]]) -> BatchGraph:
    """Image, Text, Entity and (incomplete) Record nodes, and HAS, DESCRIBES, MENTIONS and DEPICTS edges."""
    graph = BatchGraph({}, [], {}, {})
    for p in prepared:
        _add_record(graph, p, source, entities_of_text)
    for eid, ent in graph.entities.items():
        graph.nodes[eid] = Node(eid, Label.ENTITY, {"name": ent.name, "kind": ent.kind})
    return graph


def _add_record(graph: BatchGraph, p: Prepared, source: str, entities_of_text: dict[str, list[Entity]]) -> None:
    nodes, edges = graph.nodes, graph.edges
    attrs = attribute_entities(p.record.attributes)
    mentioned: list[str] = []
    for im in p.images.values():
        w, h = im.size
        nodes[im.iid] = Node(im.iid, Label.IMAGE, {"path": str(im.path), "width": w, "height": h, "record": p.rid,
                                                     "colour": im.colour})
        edges.append(Edge(p.rid, im.iid, Rel.HAS))
    for tid, kind, text, position in p.texts:
        nodes[tid] = Node(tid, Label.TEXT, {"text": text, "kind": kind, "record": p.rid})
        edges.append(Edge(p.rid, tid, Rel.HAS))
        for iid in p.described(position):
            edges.append(Edge(tid, iid, Rel.DESCRIBES))
        for ent in entities_of_text[tid]:
            eid = ids.entity_id(ent.name)
            graph.entities[eid] = ent
            edges.append(Edge(tid, eid, Rel.MENTIONS, {"source": "text"}))
            mentioned.append(eid)
    for ent in attrs:
        eid = ids.entity_id(ent.name)
        graph.entities[eid] = ent
        if p.images:
            for im in p.images.values():
                edges.append(Edge(im.iid, eid, Rel.DEPICTS, {"score": 1.0, "source": "attribute"}))
        else:
            for tid, *_ in p.texts:
                edges.append(Edge(tid, eid, Rel.MENTIONS, {"source": "attribute"}))
    attr_ids = [ids.entity_id(e.name) for e in attrs]
    graph.record_entities[p.rid] = list(dict.fromkeys(attr_ids + mentioned))
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


def entity_text(entity: Entity) -> str:
    """What an entity's vector encodes: the value of an attribute (`navy blue`), else the name."""
    if entity.kind == "attribute" and ":" in entity.name:
        return entity.name.split(":", 1)[1]
    return entity.name
