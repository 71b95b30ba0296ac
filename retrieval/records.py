"""The collection by record: what each record (a product, a case, a photo with its captions) holds.

Search ranks records, not loose images or texts, because a record is what a user is looking for and
everything the graph knows about it counts: its images, its texts, its stated attributes, the entities
its texts mention and the tags predicted for its images. This table gathers that knowledge from the
graph store and the vector indexes once, as sparse incidence matrices and dense vector arrays, so a
query scores every record with a few matrix products.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from mmkg.encoders.colour import BINS, hue_share
from mmkg.graph.schema import Label, Node, Rel, title_order
from mmkg.graph.store import GraphStore
from mmkg.index.vectors import Vectors
from mmkg.ingest.negation import affirmed
from mmkg.retrieval.attribute_probe import AttributeProbe
from mmkg.retrieval.lexical import Bm25Index

log = logging.getLogger(__name__)


@dataclass
class RecordTable:
    """Records (rows) with their images, texts and entities (sparse incidence) and vectors."""

    ids: list[str]
    names: list[str]
    """The record's id in its source (a product id, a case id): what a user sees."""
    sources: list[str]
    attributes: list[list[str]]
    image_ids: list[str]
    image_paths: list[str]
    image_vecs: np.ndarray
    text_ids: list[str]
    text_strings: list[str]
    text_kinds: list[str]
    """What each text is (`name`, `caption`, `diagnosis`...): which of a record's texts names it."""
    text_vecs: np.ndarray
    entity_ids: list[str]
    entity_names: list[str]
    rec_image: sp.csr_matrix
    rec_text: sp.csr_matrix
    rec_entity: sp.csr_matrix
    """Stated knowledge: attributes and entities its texts mention (weight 1)."""
    rec_tag: sp.csr_matrix
    """Predicted knowledge: zero-shot image tags, weighted by their score."""
    attribute_entity: np.ndarray
    """(entities,) True for attribute entities (`colour:white`)."""
    bm25: Bm25Index = field(repr=False)
    image_colours: np.ndarray | None = None
    """(images, colour bins) each image's colour descriptor (encoders/colour.py); NaN rows (or None: all) for
    images ingested before descriptors were stored, which become zero rows with `has_colour` False."""
    pos: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pos = {rid: i for i, rid in enumerate(self.ids)}
        if self.image_colours is None:
            self.image_colours = np.full((len(self.image_ids), BINS), np.nan, np.float32)
        self.has_colour = ~np.isnan(self.image_colours).any(axis=1)
        self.image_colours = np.where(self.has_colour[:, None], self.image_colours, 0.0).astype(np.float32)
        self.entity_pos = {eid: i for i, eid in enumerate(self.entity_ids)}
        n_e = len(self.entity_ids)
        df = np.diff((self.rec_entity + self.rec_tag).tocsc().indptr) if n_e else np.zeros(0)
        self.idf = np.log((1.0 + len(self.ids)) / (1.0 + df)).astype(np.float32)
        self.record_image_vecs = _mean_rows(self.rec_image, self.image_vecs)
        self.record_text_vecs = _mean_rows(self.rec_text, self.text_vecs)
        self.has_image = np.diff(self.rec_image.indptr) > 0
        self.has_text = np.diff(self.rec_text.indptr) > 0

    @functools.cached_property
    def attribute_probe(self) -> AttributeProbe | None:
        """The probe of the records' stated attributes over their images (retrieval/attribute_probe.py), trained
        on first use and kept with the table (and so in its cache on disk)."""
        return AttributeProbe.fit(self.image_vecs, self.rec_image, self.rec_entity, self.entity_names,
                                  self.attribute_entity)

    def predicted_attributes(self, vectors: np.ndarray) -> list[list[tuple[str, str, float]]]:
        """Per image vector, (entity id, name, probability) of the attribute values the probe predicts for it."""
        probe = self.attribute_probe
        if probe is None:
            return [[] for _ in range(len(vectors))]
        return [[(self.entity_ids[c], self.entity_names[c], p) for c, p in row] for row in probe.predict(vectors)]

    @functools.cached_property
    def hue_share(self) -> float:
        """The mean share of hue in the images' colour descriptors (0 for greyscale photos, or none described)."""
        described = self.image_colours[self.has_colour]
        return float(hue_share(described).mean()) if len(described) else 0.0

    def record_vecs(self) -> np.ndarray:
        """One vector per record: its mean image vector, or its mean text vector when it has no image."""
        return np.where(self.has_image[:, None], self.record_image_vecs, self.record_text_vecs).astype(np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.image_vecs.shape[1] if len(self.image_vecs) else self.text_vecs.shape[1])

    def first_image(self, row: int) -> str | None:
        a, b = self.rec_image.indptr[row], self.rec_image.indptr[row + 1]
        return self.image_ids[self.rec_image.indices[a]] if b > a else None

    def texts_of(self, row: int) -> list[int]:
        return list(self.rec_text.indices[self.rec_text.indptr[row] : self.rec_text.indptr[row + 1]])

    def images_of(self, row: int) -> list[int]:
        return list(self.rec_image.indices[self.rec_image.indptr[row] : self.rec_image.indptr[row + 1]])

    def title_text(self, row: int) -> int | None:
        """The text that names the record (`graph.schema.title_order`: a product's name, a case's diagnosis)."""
        texts = self.texts_of(row)
        return min(texts, key=lambda j: title_order(self.text_kinds[j], self.text_strings[j])) if texts else None

    def title(self, row: int) -> str:
        j = self.title_text(row)
        return self.text_strings[j] if j is not None else self.names[row]

    def rows_with(self, entity_id: str) -> np.ndarray:
        """Records that state or mention an entity (filters use stated knowledge only)."""
        col = self.entity_pos.get(entity_id)
        if col is None:
            return np.empty(0, np.int64)
        return np.flatnonzero(self.rec_entity[:, col].toarray().ravel() > 0)

    @classmethod
    def build(cls, store: GraphStore, vectors: Vectors, records: Sequence[str] | None = None,
              hide_texts: Collection[str] = ()) -> RecordTable:
        """Gather the complete records of a store (or only `records`, by id) with their knowledge;
        `hide_texts` are left out (held-out pseudo-queries must not find their own words)."""
        wanted = set(records) if records is not None else None
        rec_nodes = [
            n for n in store.iter_nodes(Label.RECORD)
            if n.props.get("complete") and (wanted is None or n.id in wanted)
        ]
        rec_nodes.sort(key=lambda n: n.id)
        members = _members(store, {n.id: i for i, n in enumerate(rec_nodes)}, hide_texts)
        image_ids = sorted({i for _, i in members["img"]} & vectors.images.present([i for _, i in members["img"]]))
        text_ids = sorted({t for _, t in members["txt"]} & vectors.texts.present([t for _, t in members["txt"]]))
        ipos = {i: j for j, i in enumerate(image_ids)}
        tpos = {t: j for j, t in enumerate(text_ids)}
        image_nodes = store.get_nodes(image_ids)
        text_nodes = store.get_nodes(text_ids)

        entity_nodes = {n.id: n for n in store.iter_nodes(Label.ENTITY)}
        stated, tags = _knowledge(store, rec_nodes, members["img"], entity_nodes)
        entity_ids = sorted({e for s in stated.values() for e in s} | {e for _, e in tags})
        epos = {e: j for j, e in enumerate(entity_ids)}

        n_rec = len(rec_nodes)
        rec_image = _incidence([(r, ipos[i]) for r, i in members["img"] if i in ipos], n_rec, len(image_ids))
        rec_text = _incidence([(r, tpos[t]) for r, t in members["txt"] if t in tpos], n_rec, len(text_ids))
        rec_entity = _incidence([(r, epos[e]) for r, es in stated.items() for e in es], n_rec, len(entity_ids))
        tag_items = list(tags.items())
        rec_tag = _incidence(
            [(r, epos[e]) for (r, e), _ in tag_items], n_rec, len(entity_ids), [s for _, s in tag_items]
        )
        text_strings = [str(text_nodes[t].props.get("text", "")) if t in text_nodes else "" for t in text_ids]
        text_kinds = [str(text_nodes[t].props.get("kind", "")) if t in text_nodes else "" for t in text_ids]
        attributes = [list(n.props.get("attributes") or []) for n in rec_nodes]
        dim = vectors.images.dim
        return cls(
            ids=[n.id for n in rec_nodes],
            names=[str(n.props.get("source_id", n.id)) for n in rec_nodes],
            sources=[str(n.props.get("source", "")) for n in rec_nodes],
            attributes=attributes,
            image_ids=image_ids,
            image_paths=[str(image_nodes[i].props.get("path", "")) if i in image_nodes else "" for i in image_ids],
            image_vecs=_vecs(vectors.images.get(image_ids) if image_ids else None, dim),
            image_colours=_colours([image_nodes.get(i) for i in image_ids]),
            text_ids=text_ids,
            text_strings=text_strings,
            text_kinds=text_kinds,
            text_vecs=_vecs(vectors.texts.get(text_ids) if text_ids else None, dim),
            entity_ids=entity_ids,
            entity_names=[str(entity_nodes[e].props.get("name", e[4:])) for e in entity_ids],
            rec_image=rec_image,
            rec_text=rec_text,
            rec_entity=rec_entity,
            rec_tag=rec_tag,
            attribute_entity=np.array([entity_nodes[e].props.get("kind") == "attribute" for e in entity_ids], bool),
            bm25=Bm25Index(_documents(rec_text, text_strings, attributes),
                            facets={a.split(":", 1)[-1] for attrs in attributes for a in attrs}),
        )


def _members(store: GraphStore, rpos: dict[str, int], hide_texts: Collection[str]) -> dict[str, list[tuple[int, str]]]:
    """Each record's (row, image id) and (row, text id) pairs, from its HAS edges; `hide_texts` left out."""
    members: dict[str, list[tuple[int, str]]] = {"img": [], "txt": []}
    for edge in store.iter_edges(Rel.HAS):
        row = rpos.get(edge.src)
        if row is not None and edge.dst not in hide_texts:
            members["img" if edge.dst.startswith("img:") else "txt"].append((row, edge.dst))
    return members


def _knowledge(
    store: GraphStore,
    rec_nodes: Sequence[Node],
    image_members: Sequence[tuple[int, str]],
    entity_nodes: dict[str, Node],
) -> tuple[dict[int, set[str]], dict[tuple[int, str], float]]:
    """Per record row, the entities it states (attributes, entities its texts mention), and the zero-shot tags of
    its images that it does not state, each with its best score."""
    stated: dict[int, set[str]] = defaultdict(set)
    for row, node in enumerate(rec_nodes):
        stated[row].update(e for e in node.props.get("entities") or [] if e in entity_nodes)
    tags: dict[tuple[int, str], float] = {}
    image_rows: dict[str, list[int]] = defaultdict(list)
    for row, iid in image_members:
        image_rows[iid].append(row)
    for edge in store.iter_edges(Rel.DEPICTS):
        if edge.props.get("source") != "tag" or edge.dst not in entity_nodes:
            continue
        for row in image_rows.get(edge.src, ()):
            if edge.dst not in stated[row]:
                key = (row, edge.dst)
                tags[key] = max(tags.get(key, 0.0), float(edge.props.get("score", 0.0)))
    return stated, tags


def _incidence(
    pairs: Sequence[tuple[int, int]], n_rows: int, n_cols: int, values: Sequence[float] | None = None
) -> sp.csr_matrix:
    """A (rows, cols) sparse matrix with `values` at `pairs` (summed where a pair repeats), or 1 at each pair."""
    rows = np.fromiter((r for r, _ in pairs), np.int64, len(pairs))
    cols = np.fromiter((c for _, c in pairs), np.int64, len(pairs))
    vals = np.ones(len(pairs), np.float32) if values is None else np.asarray(values, np.float32)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n_rows, n_cols))
    m.sum_duplicates()
    if values is None:
        m.data[:] = 1.0
    return m


def _documents(rec_text: sp.csr_matrix, text_strings: Sequence[str], attributes: Sequence[list[str]]) -> list[str]:
    """Each record's words for BM25 (`record_words`)."""
    return [record_words([text_strings[j] for j in rec_text.indices[rec_text.indptr[row] : rec_text.indptr[row + 1]]],
                         attributes[row]) for row in range(rec_text.shape[0])]


def record_words(texts: Sequence[str], attributes: Sequence[str]) -> str:
    """A record's words as BM25 reads them: what its texts state (not what they negate: ingest/negation.py),
    then its attribute values."""
    return " ".join([affirmed(text) for text in texts] + [a.split(":", 1)[-1] for a in attributes])


def segment_max(member: sp.csr_matrix, item_scores: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """Per record (row of `member`), the best score among its items; `item_scores` is (queries, items)."""
    n_rec = member.shape[0]
    out = np.full((item_scores.shape[0], n_rec), empty, np.float32)
    counts = np.diff(member.indptr)
    has = counts > 0
    if not has.any():
        return out
    gathered = item_scores[:, member.indices]
    starts = member.indptr[:-1][has]
    out[:, has] = np.maximum.reduceat(gathered, starts, axis=1)
    return out


def _mean_rows(member: sp.csr_matrix, vecs: np.ndarray) -> np.ndarray:
    if member.shape[1] == 0:
        return np.zeros((member.shape[0], vecs.shape[1] if vecs.ndim == 2 else 0), np.float32)
    summed = np.asarray(member @ vecs, dtype=np.float32)
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return summed / np.maximum(norms, 1e-12)


def _colours(nodes: Sequence[Node | None]) -> np.ndarray:
    """(images, BINS) the stored colour descriptors; NaN where an image node has none (or a malformed one)."""
    out = np.full((len(nodes), BINS), np.nan, np.float32)
    for i, node in enumerate(nodes):
        value = node.props.get("colour") if node is not None else None
        if isinstance(value, list) and len(value) == BINS:
            out[i] = value
    return out


def _vecs(arr: np.ndarray | None, dim: int) -> np.ndarray:
    if arr is None or len(arr) == 0:
        return np.zeros((0, dim), np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)
