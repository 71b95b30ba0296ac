"""The GraphStore seam: every backend (embedded networkx, Neo4j) implements this and passes one contract suite."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Literal

from mmkg.graph.schema import Edge, Label, Node, Path, Rel, Subgraph

Direction = Literal["out", "in", "both"]


class GraphStore(ABC):
    """A property graph of Image, Text, Entity and Record nodes.

    Writes are upserts keyed by node id and by (src, dst, type) for edges, so writing the same
    thing twice changes nothing. `commit()` is the durability point: after it returns, what was
    written survives a crash.
    """

    @abstractmethod
    def upsert_nodes(self, nodes: Sequence[Node]) -> None:
        """Create nodes, or merge the given properties into existing ones.

        Property values are str, int, float, bool or lists of them, stored verbatim (any Unicode, any
        Cypher-looking text); anything else is a ValueError. A node keeps its label: upserting its id
        under another label is a ValueError.
        """

    @abstractmethod
    def upsert_edges(self, edges: Sequence[Edge]) -> None:
        """Create edges, or replace the properties of existing ones. Both endpoints must exist.

        The whole batch is checked before anything is written: a missing endpoint, or endpoint labels
        that EDGE_ENDPOINTS does not allow for the type, is a ValueError naming the edge. CO_OCCURS is
        stored once per unordered pair, as src < dst, whichever way round it was given.
        """

    @abstractmethod
    def get_nodes(self, ids: Sequence[str]) -> dict[str, Node]:
        """The nodes among `ids` that exist, by id."""

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return set(self.get_nodes(ids))

    @abstractmethod
    def neighbors(
        self, node_id: str, rels: Iterable[Rel] | None = None, direction: Direction = "both"
    ) -> list[tuple[Edge, Node]]:
        """Edges at `node_id` (filtered by type and direction), each with the node at its other end."""

    @abstractmethod
    def subgraph(
        self, seeds: Sequence[str], hops: int = 2, rels: Iterable[Rel] | None = None, max_fanout: int | None = None
    ) -> Subgraph:
        """The nodes within `hops` of any seed (edges taken in either direction) and the edges among them.

        Edges among them means every edge of the allowed types joining two returned nodes, walked or
        not. Seeds that do not exist are ignored. `max_fanout` caps how many neighbours of one node are
        followed, so a hub entity does not pull in the whole graph: a node's neighbours are ranked by
        the weight of the heaviest edge to each (DEPICTS `score`, CO_OCCURS `count`, else 1; ties by
        id) and the first `max_fanout` are taken, already-visited ones included.
        """

    @abstractmethod
    def shortest_paths(self, src: str, dst: str, max_hops: int = 4, limit: int = 3) -> list[Path]:
        """Up to `limit` shortest paths from src to dst, edges taken in either direction.

        Only paths of the minimal length (at most `max_hops`), ordered by the node ids along them, then
        by their edges. [] when either end is missing or no path is that short; src == dst gives one
        path of length 0.
        """

    @abstractmethod
    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(nodes by label, edges by type), every label and type present with 0 where empty."""

    @abstractmethod
    def iter_nodes(self, label: Label) -> Iterator[Node]:
        """Every node of one label (order unspecified)."""

    @abstractmethod
    def iter_edges(self, rel: Rel) -> Iterator[Edge]:
        """Every edge of one type (order unspecified)."""

    @abstractmethod
    def delete_record(self, record_id: str) -> int:
        """Remove a record, the images and texts no other record holds, and entities left unlinked.

        Edges at removed nodes go with them. An entity goes only if that leaves it with no edge at all
        (one that still co-occurs with another stays). Returns how many nodes were removed (0 when no
        Record has this id).
        """

    @abstractmethod
    def delete_edges(self, keys: Sequence[tuple[str, str, Rel]]) -> int:
        """Remove the edges with these (src, dst, type) keys; missing ones are ignored. Nodes stay.

        CO_OCCURS keys match whichever way round they are given (it is stored once per pair). Derived
        edges (co-occurrence counts, zero-shot tags) are recomputed after a delete, and this is how the
        ones that no longer hold are taken away. Returns how many edges were removed.
        """

    @abstractmethod
    def delete_isolated(self, ids: Sequence[str]) -> list[str]:
        """Remove those of `ids` that exist and have no edge at all; returns their ids.

        What is left of an entity once the records that linked it are gone and the derived edges were
        recomputed: a node no edge reaches can never be found or explained, so it goes.
        """

    @abstractmethod
    def commit(self) -> None:
        """Make everything written so far durable."""

    def close(self) -> None:
        """Commit and release the store; closing twice is harmless."""
        self.commit()

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
