"""The data model of DESIGN.md: node labels, edge types and the value types that carry them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Label(StrEnum):
    IMAGE = "Image"
    TEXT = "Text"
    ENTITY = "Entity"
    RECORD = "Record"


class Rel(StrEnum):
    DESCRIBES = "DESCRIBES"  # Text -> Image
    MENTIONS = "MENTIONS"  # Text -> Entity
    DEPICTS = "DEPICTS"  # Image -> Entity, property `score`
    HAS = "HAS"  # Record -> Image | Text
    CO_OCCURS = "CO_OCCURS"  # Entity -> Entity (stored once, src < dst), property `count`


# Which labels each edge type joins: the store checks writes against it.
EDGE_ENDPOINTS: dict[Rel, tuple[frozenset[Label], frozenset[Label]]] = {
    Rel.DESCRIBES: (frozenset({Label.TEXT}), frozenset({Label.IMAGE})),
    Rel.MENTIONS: (frozenset({Label.TEXT}), frozenset({Label.ENTITY})),
    Rel.DEPICTS: (frozenset({Label.IMAGE}), frozenset({Label.ENTITY})),
    Rel.HAS: (frozenset({Label.RECORD}), frozenset({Label.IMAGE, Label.TEXT})),
    Rel.CO_OCCURS: (frozenset({Label.ENTITY}), frozenset({Label.ENTITY})),
}

TITLE_KINDS = ("name", "productDisplayName", "title", "diagnosis", "caption", "description")
"""Text kinds that name a record, best first: a product's name, a case's title or else its diagnosis (MedPix drops
a title that repeats the diagnosis), a photo's caption. A case's history or discussion never names it."""


def title_order(kind: str, text: str) -> tuple[int, str]:
    """Sort key of a record's texts for its title: by `TITLE_KINDS`, then by the words (stable across stores)."""
    return (TITLE_KINDS.index(kind) if kind in TITLE_KINDS else len(TITLE_KINDS), text)


WEIGHT_PROPERTY: dict[str, str] = {Rel.DEPICTS.value: "score", Rel.CO_OCCURS.value: "count"}
"""The property that weighs an edge of each type (any other edge weighs 1): the one rule by which both stores rank
neighbours. Keyed by the type's plain string, as the stores hold it."""


def edge_weight(rel: str, props: Props) -> float:
    """How strongly an edge binds its ends (`WEIGHT_PROPERTY`); a missing or non-numeric weight counts 1."""
    key = WEIGHT_PROPERTY.get(rel)
    if key is None:
        return 1.0
    value = props.get(key, 1.0)
    return float(value) if isinstance(value, int | float) else 1.0


Props = dict[str, Any]
"""Node and edge properties: str, int, float, bool, or lists of them (what both stores hold)."""


@dataclass(frozen=True)
class Node:
    id: str
    label: Label
    props: Props = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    type: Rel
    props: Props = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str, Rel]:
        return (self.src, self.dst, self.type)


@dataclass(frozen=True)
class Path:
    """An alternating walk node, edge, node, ... as found by a store (edges keep their stored direction)."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def __len__(self) -> int:
        return len(self.edges)


@dataclass(frozen=True)
class Subgraph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


_SCALARS = (str, int, float, bool)


def check_props(props: Any, owner: Node | Edge | str) -> Props:
    """A validated copy of a node's or an edge's properties (`Props`); a ValueError names `owner` (a node, an
    edge, or its description) and the offending property."""
    if not isinstance(props, dict):
        raise ValueError(f"{describe(owner)}: properties must be a dict, got {type(props).__name__}")
    out: Props = {}
    for key, value in props.items():
        if not isinstance(key, str):
            raise ValueError(f"{describe(owner)}: property names must be strings, got {key!r}")
        if isinstance(value, _SCALARS):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
            out[key] = list(value)
        else:
            raise ValueError(f"{describe(owner)}: property {key!r} must be str, int, float, bool or a list of them")
    return out


def describe(owner: Node | Edge | str) -> str:
    """How an error names a node or an edge."""
    if isinstance(owner, Node):
        return f"node {owner.id!r}"
    if isinstance(owner, Edge):
        return f"{owner.type} edge {owner.src!r} -> {owner.dst!r}"
    return owner
