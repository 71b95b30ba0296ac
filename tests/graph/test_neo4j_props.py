"""Property values Neo4j cannot hold as they are come back exactly as the embedded store returns them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.neo4j_store import JSON_PREFIX, Neo4jGraphStore, _decode, _encode
from mmkg.graph.schema import Edge, Label, Node, Rel

AWKWARD: dict[str, Any] = {
    "mixed_numbers": [1, 2.5],  # Neo4j would store [1.0, 2.5]
    "mixed_types": [True, 1, "x"],  # Neo4j refuses mixed lists
    "huge": 2**70,  # beyond 64 bits
    "surrogate": "a\udcffb",  # not valid UTF-8
    "nested_surrogate": ["ok", "\ud800"],
    "empty": [],
    "id": "a property named id",  # must not clobber the node's key
    JSON_PREFIX + "x": "looks encoded",
    "nan_list": [1.5, float("inf")],
    "plain": "kept plain",
}


def typed(value: Any) -> Any:
    """Value with types spelled out, so 1 == 1.0 == True do not hide a change of type."""
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


def test_encoding_round_trips_without_a_server() -> None:
    stored = _encode(AWKWARD, merge=False, reserved=frozenset({"id"}))
    assert stored["plain"] == "kept plain" and stored["empty"] == []
    assert "id" not in stored and "huge" not in stored  # both went to their __json__ form
    assert {k: typed(v) for k, v in _decode(stored).items()} == {k: typed(v) for k, v in AWKWARD.items()}


@pytest.mark.neo4j
def test_maps_are_refused_like_the_embedded_store(neo4j_store: Neo4jGraphStore, tmp_path: Path) -> None:
    bad = [Node("img:1", Label.IMAGE, {"m": {"a": 1}})]
    with MemoryGraphStore(tmp_path / "g") as memory:
        for store in (memory, neo4j_store):
            with pytest.raises(ValueError, match="property 'm' must be str, int, float, bool or a list of them"):
                store.upsert_nodes(bad)
            assert store.counts()[0]["Image"] == 0


@pytest.mark.neo4j
def test_awkward_values_match_the_embedded_store(neo4j_store: Neo4jGraphStore, tmp_path: Path) -> None:
    with MemoryGraphStore(tmp_path / "g") as memory:
        for store in (memory, neo4j_store):
            store.upsert_nodes([Node("img:1", Label.IMAGE, dict(AWKWARD)), Node("ent:a", Label.ENTITY)])
            store.upsert_edges([Edge("img:1", "ent:a", Rel.DEPICTS, {"score": 0.5, **AWKWARD})])
            store.commit()
        want_node = memory.get_nodes(["img:1"])["img:1"].props
        (want_edge,) = list(memory.iter_edges(Rel.DEPICTS))
    got_node = neo4j_store.get_nodes(["img:1"])["img:1"].props
    (got_edge,) = list(neo4j_store.iter_edges(Rel.DEPICTS))
    assert {k: typed(v) for k, v in got_node.items()} == {k: typed(v) for k, v in want_node.items()}
    assert {k: typed(v) for k, v in got_edge.props.items()} == {k: typed(v) for k, v in want_edge.props.items()}


@pytest.mark.neo4j
def test_a_value_changing_form_leaves_no_stale_copy(neo4j_store: Neo4jGraphStore) -> None:
    neo4j_store.upsert_nodes([Node("img:1", Label.IMAGE, {"v": [1, 2.5]})])  # stored encoded
    neo4j_store.upsert_nodes([Node("img:1", Label.IMAGE, {"v": [1, 2]})])  # now plain
    assert neo4j_store.get_nodes(["img:1"])["img:1"].props == {"v": [1, 2]}
    neo4j_store.upsert_nodes([Node("img:1", Label.IMAGE, {"v": 2**64})])  # encoded again
    assert neo4j_store.get_nodes(["img:1"])["img:1"].props == {"v": 2**64}
