"""The Retriever seam and the dense retriever: encoder + FAISS seeds, explained by shared entities."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.graph.schema import Label, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.index.vectors import Vectors
from mmkg.retrieval.query_entities import QueryEntity, QueryLinker
from mmkg.settings import Settings

Target = Literal["images", "texts"]
MAX_QUERY_CHARS = 2000


@dataclass(frozen=True)
class Query:
    text: str | None = None
    image: Image.Image | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.image is None):
            raise UserInputError("a query is either a text or an image")
        if self.text is not None and not self.text.strip():
            raise UserInputError("the query text is empty")
        if self.text is not None and len(self.text) > MAX_QUERY_CHARS:
            raise UserInputError(f"the query text is longer than {MAX_QUERY_CHARS} characters")

    @property
    def label(self) -> str:
        return repr(self.text) if self.text is not None else "the query image"


@dataclass(frozen=True)
class Step:
    """One node of an explanation path, with the edge that leads to the next node."""

    id: str
    label: str
    name: str
    rel: str | None = None
    forward: bool = True
    """True when the edge to the next node points from this node to it."""


@dataclass
class Explanation:
    shared_entities: list[str] = field(default_factory=list)
    paths: list[list[Step]] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    """Each signal's contribution to the score (weight x standardised score)."""
    matched_words: list[str] = field(default_factory=list)
    """The query's words the record contains (the lexical signal)."""
    contradicted: list[tuple[str, list[str]]] = field(default_factory=list)
    """Each value the record states against the query's, with the values the query asked (`baseColour:black`,
    [`baseColour:red`]): what the attribute signal took off."""

    def lines(self) -> list[str]:
        out = []
        parts = sorted(((k, v) for k, v in self.signals.items() if round(v, 2)), key=lambda kv: -abs(kv[1]))
        if parts:  # a signal that would print as +0.00 scored nothing
            out.append("signals: " + ", ".join(f"{k} {v:+.2f}" for k, v in parts))
        if self.matched_words:
            out.append("words: " + ", ".join(self.matched_words))
        if self.contradicted:
            out.append("states otherwise: " + "; ".join(f"{value} (asked {' or '.join(asked)})"
                                                        for value, asked in self.contradicted))
        return out + [render_path(p) for p in self.paths]

    def to_json(self) -> dict[str, Any]:
        return {
            "signals": self.signals,
            "matched_words": self.matched_words,
            "shared_entities": self.shared_entities,
            "contradicted": [{"states": value, "asked": asked} for value, asked in self.contradicted],
            "paths": [[s.__dict__ for s in p] for p in self.paths],
            "text": self.lines(),
        }


@dataclass
class Hit:
    id: str
    score: float
    kind: Literal["image", "text"]
    path: str | None = None
    text: str | None = None
    record: str | None = None
    attributes: list[str] = field(default_factory=list)
    explanation: Explanation = field(default_factory=Explanation)
    title: str | None = None
    """The record's first text (a product's name, a case's diagnosis), shown beside an image hit."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "score": round(self.score, 4), "kind": self.kind}
        if self.kind == "image":
            out["path"] = self.path
        else:
            out["text"] = self.text
        out["record"] = self.record
        out["title"] = self.title
        out["attributes"] = self.attributes
        out["explanation"] = self.explanation.to_json()
        return out


def render_path(steps: list[Step]) -> str:
    """`query mentions *white* <-DEPICTS- image 10003.jpg`: readable, arrows in stored direction."""
    parts: list[str] = []
    for step in steps:
        parts.append(step.name if step.label == "Query" else f"{step.label.lower()} *{step.name}*")
        if step.rel is not None:
            parts.append(f"-{step.rel}->" if step.forward else f"<-{step.rel}-")
    return " ".join(parts)


def display_name(node: Node) -> str:
    props = node.props
    if node.label == Label.IMAGE:
        return Path(str(props.get("path", node.id))).name
    if node.label == Label.TEXT:
        text = str(props.get("text", ""))
        return text if len(text) <= 60 else text[:57] + "..."
    if node.label == Label.RECORD:
        return str(props.get("source_id", node.id))
    return str(props.get("name", node.id))


class Retriever(ABC):
    @abstractmethod
    def search(self, query: Query, k: int = 10, target: Target = "images") -> list[Hit]: ...

    def unmatched_words(self, query: Query) -> list[str]:
        """The query's words that nothing in the collection states (none, for a retriever that cannot tell)."""
        return []

    def unlike_collection(self, query: Query) -> bool:
        """Whether the query photo is unlike every image of the collection (never, for a retriever that cannot
        tell): its hits then match it only loosely."""
        return False


def unmatched_note(words: list[str]) -> str:
    """What a user is told when the collection never states some query words: hits are then near, not exact."""
    return (f"No record contains {', '.join(repr(w) for w in words)}: the results match "
            f"{'it' if len(words) == 1 else 'them'} only by meaning and look.")


UNLIKE_NOTE = ("This photo is unlike every photo in the collection (its nearest is less alike than 99 % of the "
               "collection's photos are to theirs): the results match it only loosely.")
"""What a user is told above the hits of such a photo (a street scene asked of a catalog's product shots)."""


class DenseRetriever(Retriever):
    """Nearest neighbours of the query vector; each hit explained by the entities it shares with the query."""

    def __init__(self, settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder) -> None:
        self.settings = settings
        self.store = store
        self.vectors = vectors
        self.encoder = encoder
        self.linker = QueryLinker(store, vectors.entities)

    def encode(self, query: Query) -> np.ndarray:
        if query.text is not None:
            return self.encoder.encode_texts([query.text])[0]
        assert query.image is not None
        return self.encoder.encode_images([query.image])[0]

    def query_entities(self, query: Query, vector: np.ndarray) -> list[QueryEntity]:
        if query.text is not None:
            return self.linker.for_text(query.text)
        return self.linker.for_vector(vector, self.settings.tag_top_k, self.settings.tag_min_score)

    def search(self, query: Query, k: int = 10, target: Target = "images") -> list[Hit]:
        if k < 1:
            raise UserInputError("k must be at least 1")
        if target not in ("images", "texts"):
            raise UserInputError(f"unknown target {target!r}: choose images or texts")
        index = self.vectors.images if target == "images" else self.vectors.texts
        if len(index) == 0:
            raise UserInputError("the workspace holds no vectors yet: run `mmkg ingest PATH` first")
        vector = self.encode(query)
        seeds = index.search(vector.reshape(1, -1), k)[0]
        return self.hits(query, seeds, self.query_entities(query, vector))

    def hits(self, query: Query, scored: list[tuple[str, float]], entities: list[QueryEntity]) -> list[Hit]:
        nodes = self.store.get_nodes([nid for nid, _ in scored])
        records = self.store.get_nodes(sorted({str(n.props["record"]) for n in nodes.values() if "record" in n.props}))
        out: list[Hit] = []
        for nid, score in scored:
            node = nodes.get(nid)
            if node is None:
                continue
            record = records.get(str(node.props.get("record", "")))
            hit = Hit(
                id=nid,
                score=float(score),
                kind="image" if node.label == Label.IMAGE else "text",
                path=str(node.props.get("path")) if node.label == Label.IMAGE else None,
                text=str(node.props.get("text")) if node.label == Label.TEXT else None,
                record=record.id if record else None,
                attributes=list(record.props.get("attributes", [])) if record else [],
            )
            hit.explanation = self.explain_shared(query, node, entities)
            out.append(hit)
        return out

    def explain_shared(self, query: Query, node: Node, entities: list[QueryEntity]) -> Explanation:
        """Paths query -> entity <- ... <- hit for every query entity the hit reaches in one or two hops."""
        wanted = {e.id: e for e in entities}
        if not wanted:
            return Explanation()
        query_step_name = f"query {query.label}"
        paths: dict[str, list[Step]] = {}
        hit_step = Step(node.id, node.label.value, display_name(node))
        for edge, other in self.store.neighbors(node.id, [Rel.DEPICTS, Rel.MENTIONS], "out"):
            if other.id in wanted and other.id not in paths:
                paths[other.id] = self._path(query_step_name, wanted[other.id], edge.type, [hit_step])
        bridge = Rel.DESCRIBES
        direction: Literal["in", "out"] = "in" if node.label == Label.IMAGE else "out"
        onward = Rel.MENTIONS if node.label == Label.IMAGE else Rel.DEPICTS
        for edge, middle in self.store.neighbors(node.id, [bridge], direction):
            if len(paths) == len(wanted):
                break
            for edge2, other in self.store.neighbors(middle.id, [onward], "out"):
                if other.id in wanted and other.id not in paths:
                    mid = Step(middle.id, middle.label.value, display_name(middle), bridge.value, edge.src == middle.id)
                    paths[other.id] = self._path(query_step_name, wanted[other.id], edge2.type, [mid, hit_step])
        return Explanation(shared_entities=[wanted[e].name for e in paths], paths=list(paths.values()))

    @staticmethod
    def _path(query_name: str, entity: QueryEntity, rel: str, tail: list[Step]) -> list[Step]:
        start = Step("query", "Query", query_name, entity.how.upper(), True)
        ent = Step(entity.id, "Entity", entity.name, str(rel), False)
        return [start, ent, *tail]
