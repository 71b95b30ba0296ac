"""Explanation paths: why a hit matched, as typed nodes and edges from the query to the hit.

Candidate paths, each scored by the product of its link strengths (query-entity link score, tag
confidence on DEPICTS, positive PMI on CO_OCCURS, dense similarity on the query's SIMILAR link):

1. query -MENTIONS/DEPICTS-> entity <-DEPICTS/MENTIONS- hit          (a shared entity)
2. query -> entity <-MENTIONS- text -DESCRIBES-> hit, or through the hit's record (HAS)
3. query -> entity -CO_OCCURS- entity <- hit                            (a related entity)
4. query -SIMILAR-> seed -> entity <- hit                               (what the nearest seed shows)
5. query -SIMILAR-> hit                                                 (dense similarity alone)

Every step after the query's own (which is virtual: the query is not in the graph) is a real edge of
the store, read through `GraphStore.neighbors`, so it can be checked and drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mmkg.graph.schema import Edge, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.retrieval.query_entities import QueryEntity
from mmkg.retrieval.search import Explanation, Step, display_name

ENTITY_LINKS = (Rel.DEPICTS, Rel.MENTIONS)
SIMILAR = "SIMILAR"


def _edge_strength(edge: Edge) -> float:
    if edge.type == Rel.DEPICTS:
        s = edge.props.get("score", 1.0)
        return float(s) if isinstance(s, int | float) else 1.0
    if edge.type == Rel.CO_OCCURS:
        pmi = edge.props.get("pmi", 0.0)
        return min(1.0, 0.25 + 0.25 * max(float(pmi) if isinstance(pmi, int | float) else 0.0, 0.0))
    return 1.0


def _step(node: Node, edge: Edge | None = None) -> Step:
    """A step at `node`; `edge` (if any) leads from it to the next node of the path."""
    if edge is None:
        return Step(node.id, node.label.value, display_name(node))
    return Step(node.id, node.label.value, display_name(node), edge.type.value, edge.src == node.id)


@dataclass
class QueryContext:
    """What every hit of one query is explained against (fetched once per query)."""

    label: str
    entities: list[QueryEntity]
    seeds: list[tuple[str, float]] = field(default_factory=list)
    _entity_nodes: dict[str, Node] = field(default_factory=dict)
    _cooccur: dict[str, list[tuple[Edge, Node]]] = field(default_factory=dict)
    _seed_links: dict[str, list[tuple[Edge, Node]]] = field(default_factory=dict)
    _seed_nodes: dict[str, Node] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        store: GraphStore,
        label: str,
        entities: Sequence[QueryEntity],
        seeds: Sequence[tuple[str, float]] = (),
        max_seeds: int = 3,
    ) -> QueryContext:
        ctx = cls(label=label, entities=list(entities), seeds=list(seeds)[:max_seeds])
        ctx._entity_nodes = store.get_nodes([e.id for e in ctx.entities])
        for e in ctx.entities:
            if e.id in ctx._entity_nodes:
                ctx._cooccur[e.id] = store.neighbors(e.id, [Rel.CO_OCCURS], "both")
        ctx._seed_nodes = store.get_nodes([s for s, _ in ctx.seeds])
        for sid, _ in ctx.seeds:
            if sid in ctx._seed_nodes:
                ctx._seed_links[sid] = store.neighbors(sid, list(ENTITY_LINKS), "out")
        return ctx

    def query_step(self, rel: str) -> Step:
        return Step("query", "Query", f"query {self.label}", rel, True)


def explain_node(
    store: GraphStore, ctx: QueryContext, node: Node, dense_score: float | None = None, max_paths: int = 3
) -> Explanation:
    """The best `max_paths` paths from the query to `node`, best first."""
    scored: list[tuple[float, list[Step]]] = []
    wanted = {e.id: e for e in ctx.entities if e.id in ctx._entity_nodes}
    hit_links = store.neighbors(node.id, list(ENTITY_LINKS), "out")
    linked = {other.id: (edge, other) for edge, other in hit_links}
    shared: list[str] = []
    # 1. shared entities
    for eid, (edge, ent) in linked.items():
        if eid in wanted:
            q = wanted[eid]
            shared.append(q.name)
            path = [ctx.query_step(q.how.upper()), _step(ent, edge), _step(node)]
            scored.append((q.score * _edge_strength(edge), path))
    # 2. through a describing text or the other members of the hit's record
    if len(scored) < max_paths and wanted:
        for route in _routes(store, node):
            middle = route[0][0]
            for edge2, ent in store.neighbors(middle.id, list(ENTITY_LINKS), "out"):
                if ent.id in wanted and ent.id not in linked:
                    q = wanted[ent.id]
                    path = [ctx.query_step(q.how.upper()), _step(ent, edge2)]
                    path += [_step(n, e) for n, e in route] + [_step(node)]
                    scored.append((0.8 ** len(route) * q.score * _edge_strength(edge2), path))
                    if q.name not in shared:
                        shared.append(q.name)
    # 3. related entities
    for eid, links in ctx._cooccur.items():
        q = wanted.get(eid)
        if q is None:
            continue
        for co_edge, other in links:
            hit = linked.get(other.id)
            if hit is not None and other.id not in wanted:
                edge, ent = hit
                path = [
                    ctx.query_step(q.how.upper()),
                    _step(ctx._entity_nodes[eid], co_edge),
                    _step(ent, edge),
                    _step(node),
                ]
                scored.append((0.5 * q.score * _edge_strength(co_edge) * _edge_strength(edge), path))
    # 4. through a nearest seed
    for sid, s_score in ctx.seeds:
        if sid == node.id or sid not in ctx._seed_nodes:
            continue
        for s_edge, ent in ctx._seed_links.get(sid, []):
            hit = linked.get(ent.id)
            if hit is not None:
                edge, _ = hit
                path = [ctx.query_step(SIMILAR), _step(ctx._seed_nodes[sid], s_edge), _step(ent, edge), _step(node)]
                scored.append((0.4 * max(s_score, 0.0) * _edge_strength(s_edge) * _edge_strength(edge), path))
    # 5. dense similarity
    if dense_score is not None:
        scored.append((0.3 * max(dense_score, 0.0), [ctx.query_step(SIMILAR), _step(node)]))
    scored.sort(key=lambda sp: -sp[0])
    seen: set[tuple[str, ...]] = set()
    paths: list[list[Step]] = []
    for _, path in scored:
        key = tuple(s.id for s in path)
        if key in seen:
            continue
        seen.add(key)
        paths.append(path)
        if len(paths) >= max_paths:
            break
    return Explanation(shared_entities=shared, paths=paths)


def _routes(store: GraphStore, node: Node, limit: int = 20) -> list[list[tuple[Node, Edge]]]:
    """Chains from a node that speaks for the hit to the hit, each step with the edge to the next:
    a describing text (or described image), or another member of the hit's record (a product's name)."""
    routes: list[list[tuple[Node, Edge]]] = [
        [(other, edge)] for edge, other in store.neighbors(node.id, [Rel.DESCRIBES], "both")[:limit]
    ]
    record_id = node.props.get("record")
    if isinstance(record_id, str):
        record = store.get_nodes([record_id]).get(record_id)
        if record is not None:
            members = store.neighbors(record_id, [Rel.HAS], "out")
            to_hit = next((e for e, m in members if m.id == node.id), None)
            if to_hit is not None:
                routes += [[(m, e), (record, to_hit)] for e, m in members[:limit] if m.id != node.id]
    return routes


def check_path(store: GraphStore, path: Sequence[Step]) -> bool:
    """True when each consecutive pair of stored nodes in `path` is joined by an edge of the named type."""
    for a, b in zip(path, path[1:], strict=False):
        if a.label == "Query":
            continue
        if a.rel is None:
            return False
        src, dst = (a.id, b.id) if a.forward else (b.id, a.id)
        if not any(e.dst == dst and e.type.value == a.rel for e, _ in store.neighbors(src, [Rel(a.rel)], "out")):
            return False
    return True
