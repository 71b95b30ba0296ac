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
