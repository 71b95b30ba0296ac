"""The GraphStore contract: every backend passes these, through the interface only."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.graph.store import GraphStore

Reopen = Callable[[GraphStore], GraphStore]

CYPHER = '"}) MATCH (n) DETACH DELETE n //'
ODD_ENTITY = "ent:`a`:b"
UNICODE = "naïve café — 東京 🐕 עברית\nline two\t'single' \"double\" \\back\\slash {brace} $param"


def img(i: int, **props: object) -> Node:
    return Node(f"img:{i}", Label.IMAGE, dict(props))


def txt(i: int, **props: object) -> Node:
    return Node(f"txt:{i}", Label.TEXT, dict(props))


def ent(name: str, **props: object) -> Node:
    return Node(f"ent:{name}", Label.ENTITY, dict(props))


def rec(i: int, **props: object) -> Node:
    return Node(f"rec:{i}", Label.RECORD, dict(props))


def edge_keys(edges: object) -> set[tuple[str, str, str]]:
    return {(e.src, e.dst, str(e.type)) for e in edges}  # type: ignore[attr-defined]


def totals(store: GraphStore) -> tuple[int, int]:
    nodes, edges = store.counts()
    return sum(nodes.values()), sum(edges.values())


@pytest.fixture
def small(store: GraphStore) -> GraphStore:
    """Two records: rec:1 holds img:1 and txt:1; rec:2 holds img:2, txt:2 and shares img:1.

    txt:1 describes img:1 and mentions dog and ball; txt:2 mentions dog; img:1 depicts dog (0.9) and
    ball (0.4); img:2 depicts cat; dog and ball co-occur (count 3).
    """
    store.upsert_nodes(
        [rec(1), rec(2), img(1), img(2), txt(1, text="a dog with a ball"), txt(2, text="a dog"), ent("dog")]
        + [ent("ball"), ent("cat")]
    )
    store.upsert_edges(
        [
            Edge("rec:1", "img:1", Rel.HAS),
            Edge("rec:1", "txt:1", Rel.HAS),
            Edge("rec:2", "img:2", Rel.HAS),
            Edge("rec:2", "txt:2", Rel.HAS),
            Edge("rec:2", "img:1", Rel.HAS),
            Edge("txt:1", "img:1", Rel.DESCRIBES),
            Edge("txt:1", "ent:dog", Rel.MENTIONS),
            Edge("txt:1", "ent:ball", Rel.MENTIONS),
            Edge("txt:2", "ent:dog", Rel.MENTIONS),
            Edge("img:1", "ent:dog", Rel.DEPICTS, {"score": 0.9}),
            Edge("img:1", "ent:ball", Rel.DEPICTS, {"score": 0.4}),
            Edge("img:2", "ent:cat", Rel.DEPICTS, {"score": 0.7}),
            Edge("ent:ball", "ent:dog", Rel.CO_OCCURS, {"count": 3}),
        ]
    )
    store.commit()
    return store


# ---------------------------------------------------------------- upserts


def test_empty_counts_have_every_key(store: GraphStore) -> None:
    nodes, edges = store.counts()
    assert nodes == {label.value: 0 for label in Label}
    assert edges == {rel.value: 0 for rel in Rel}


def test_counts(small: GraphStore) -> None:
    nodes, edges = small.counts()
    assert nodes == {"Image": 2, "Text": 2, "Entity": 3, "Record": 2}
    assert edges == {"DESCRIBES": 1, "MENTIONS": 3, "DEPICTS": 3, "HAS": 5, "CO_OCCURS": 1}


def test_writing_the_same_thing_twice_changes_nothing(small: GraphStore) -> None:
    before = small.counts()
    nodes = [small.get_nodes([f"img:{i}"])[f"img:{i}"] for i in (1, 2)]
    edges = list(small.iter_edges(Rel.DEPICTS))
    small.upsert_nodes(nodes)
    small.upsert_nodes(nodes)
    small.upsert_edges(edges)
    small.upsert_edges(edges)
    small.commit()
    assert small.counts() == before
    assert {e.key: e.props for e in small.iter_edges(Rel.DEPICTS)} == {e.key: e.props for e in edges}


def test_node_props_are_merged(store: GraphStore) -> None:
    store.upsert_nodes([img(1, a=1, b="two")])
    store.upsert_nodes([img(1, b="three", c=[1, 2])])
    store.commit()
    assert store.get_nodes(["img:1"])["img:1"].props == {"a": 1, "b": "three", "c": [1, 2]}
    assert store.counts()[0]["Image"] == 1


def test_edge_props_are_replaced(store: GraphStore) -> None:
    store.upsert_nodes([img(1), ent("dog")])
    store.upsert_edges([Edge("img:1", "ent:dog", Rel.DEPICTS, {"score": 0.5, "source": "zero-shot"})])
    store.upsert_edges([Edge("img:1", "ent:dog", Rel.DEPICTS, {"score": 0.8})])
    store.commit()
    (edge,) = list(store.iter_edges(Rel.DEPICTS))
    assert edge.key == ("img:1", "ent:dog", Rel.DEPICTS)
    assert edge.props == {"score": 0.8}
    assert store.counts()[1]["DEPICTS"] == 1


def test_property_types_survive(store: GraphStore, reopen: Reopen) -> None:
    props = {"s": "x", "n": 7, "f": 0.25, "b": True, "no": False, "ls": ["a", "b"], "li": [1, 2], "lf": [0.5]}
    store.upsert_nodes([img(1, **props)])
    store.commit()
    store = reopen(store)
    got = store.get_nodes(["img:1"])["img:1"].props
    assert got == props
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in props.items()}


def test_get_nodes_and_existing_ids(small: GraphStore) -> None:
    got = small.get_nodes(["img:1", "nope", "ent:dog"])
    assert set(got) == {"img:1", "ent:dog"}
    assert got["ent:dog"].label is Label.ENTITY
    assert got["txt:1" if "txt:1" in got else "img:1"].id == "img:1"
    assert small.existing_ids(["rec:1", "rec:9", "txt:2"]) == {"rec:1", "txt:2"}


def test_edge_to_missing_node_is_refused_and_writes_nothing(store: GraphStore) -> None:
    store.upsert_nodes([img(1), ent("dog")])
    good = Edge("img:1", "ent:dog", Rel.DEPICTS, {"score": 0.5})
    with pytest.raises(ValueError, match="ent:ghost"):
        store.upsert_edges([good, Edge("img:1", "ent:ghost", Rel.DEPICTS, {"score": 0.5})])
    store.commit()
    assert store.counts()[1]["DEPICTS"] == 0
    assert store.get_nodes(["ent:ghost"]) == {}


@pytest.mark.parametrize(
    "edge",
    [
        Edge("img:1", "txt:1", Rel.DESCRIBES),  # reversed: DESCRIBES is Text -> Image
        Edge("txt:1", "img:1", Rel.MENTIONS),  # MENTIONS goes to an Entity
        Edge("rec:1", "ent:dog", Rel.HAS),  # a Record holds images and texts only
        Edge("img:1", "ent:dog", Rel.CO_OCCURS),
    ],
    ids=lambda e: f"{e.type}:{e.src}->{e.dst}",
)
def test_edge_with_wrong_endpoint_labels_is_refused(store: GraphStore, edge: Edge) -> None:
    store.upsert_nodes([img(1), txt(1), rec(1), ent("dog")])
    with pytest.raises(ValueError):
        store.upsert_edges([edge])
    store.commit()
    assert sum(store.counts()[1].values()) == 0


def test_co_occurs_is_stored_once_per_pair(store: GraphStore) -> None:
    store.upsert_nodes([ent("a"), ent("b")])
    store.upsert_edges([Edge("ent:b", "ent:a", Rel.CO_OCCURS, {"count": 1})])
    store.upsert_edges([Edge("ent:a", "ent:b", Rel.CO_OCCURS, {"count": 2})])
    store.upsert_edges([Edge("ent:b", "ent:a", Rel.CO_OCCURS, {"count": 5})])
    store.commit()
    (edge,) = list(store.iter_edges(Rel.CO_OCCURS))
    assert (edge.src, edge.dst) == ("ent:a", "ent:b")
    assert edge.props == {"count": 5}


# ---------------------------------------------------------------- reads


def test_neighbors_direction_and_type_filters(small: GraphStore) -> None:
    both = small.neighbors("img:1")
    assert edge_keys(e for e, _ in both) == {
        ("rec:1", "img:1", "HAS"),
        ("rec:2", "img:1", "HAS"),
        ("txt:1", "img:1", "DESCRIBES"),
        ("img:1", "ent:dog", "DEPICTS"),
        ("img:1", "ent:ball", "DEPICTS"),
    }
    for edge, other in both:
        assert other.id == (edge.dst if edge.src == "img:1" else edge.src)
    out = small.neighbors("img:1", direction="out")
    assert {(n.id, e.props["score"]) for e, n in out} == {("ent:dog", 0.9), ("ent:ball", 0.4)}
    assert {n.label for _, n in out} == {Label.ENTITY}
    inbound = small.neighbors("img:1", rels=[Rel.HAS], direction="in")
    assert {n.id for _, n in inbound} == {"rec:1", "rec:2"}
    assert small.neighbors("img:1", rels=[Rel.MENTIONS]) == []
    assert small.neighbors("no:such") == []


def test_co_occurs_neighbours_from_either_end(small: GraphStore) -> None:
    assert [n.id for _, n in small.neighbors("ent:dog", rels=[Rel.CO_OCCURS])] == ["ent:ball"]
    assert [n.id for _, n in small.neighbors("ent:ball", rels=[Rel.CO_OCCURS])] == ["ent:dog"]
    assert [n.id for _, n in small.neighbors("ent:ball", rels=[Rel.CO_OCCURS], direction="out")] == ["ent:dog"]
    assert small.neighbors("ent:ball", rels=[Rel.CO_OCCURS], direction="in") == []


def test_subgraph_hops(small: GraphStore) -> None:
    zero = small.subgraph(["ent:cat"], hops=0)
    assert {n.id for n in zero.nodes} == {"ent:cat"} and zero.edges == ()
    one = small.subgraph(["ent:cat"], hops=1)
    assert {n.id for n in one.nodes} == {"ent:cat", "img:2"}
    assert edge_keys(one.edges) == {("img:2", "ent:cat", "DEPICTS")}
    two = small.subgraph(["ent:cat"], hops=2)
    assert {n.id for n in two.nodes} == {"ent:cat", "img:2", "rec:2"}
    three = small.subgraph(["ent:cat"], hops=3)
    assert {n.id for n in three.nodes} == {"ent:cat", "img:2", "rec:2", "txt:2", "img:1"}
    # The edges among the nodes, not only those walked: img:1 is reached from rec:2 alone,
    # yet nothing else links it inside this node set.
    assert edge_keys(three.edges) == {
        ("img:2", "ent:cat", "DEPICTS"),
        ("rec:2", "img:2", "HAS"),
        ("rec:2", "txt:2", "HAS"),
        ("rec:2", "img:1", "HAS"),
    }


def test_subgraph_returns_the_edges_among_its_nodes(small: GraphStore) -> None:
    sub = small.subgraph(["txt:1"], hops=1)
    assert {n.id for n in sub.nodes} == {"txt:1", "rec:1", "img:1", "ent:dog", "ent:ball"}
    assert edge_keys(sub.edges) == {
        ("rec:1", "img:1", "HAS"),
        ("rec:1", "txt:1", "HAS"),
        ("txt:1", "img:1", "DESCRIBES"),
        ("txt:1", "ent:dog", "MENTIONS"),
        ("txt:1", "ent:ball", "MENTIONS"),
        ("img:1", "ent:dog", "DEPICTS"),
        ("img:1", "ent:ball", "DEPICTS"),
        ("ent:ball", "ent:dog", "CO_OCCURS"),
    }
    assert all(n.label for n in sub.nodes)


def test_subgraph_type_filter_and_seeds(small: GraphStore) -> None:
    sub = small.subgraph(["img:1", "ghost"], hops=2, rels=[Rel.DEPICTS])
    assert {n.id for n in sub.nodes} == {"img:1", "ent:dog", "ent:ball"}
    assert edge_keys(sub.edges) == {("img:1", "ent:dog", "DEPICTS"), ("img:1", "ent:ball", "DEPICTS")}
    multi = small.subgraph(["ent:cat", "ent:ball"], hops=1, rels=[Rel.DEPICTS, Rel.CO_OCCURS])
    assert {n.id for n in multi.nodes} == {"ent:cat", "img:2", "ent:ball", "img:1", "ent:dog"}
    assert small.subgraph(["ghost"], hops=2).nodes == ()


def test_subgraph_fanout_keeps_the_heaviest_edges(store: GraphStore) -> None:
    """A hub entity depicted by ten images: a cap of 3 follows the three highest scores."""
    store.upsert_nodes([ent("hub")] + [img(i) for i in range(10)])
    store.upsert_edges([Edge(f"img:{i}", "ent:hub", Rel.DEPICTS, {"score": i / 10}) for i in range(10)])
    store.commit()
    sub = store.subgraph(["ent:hub"], hops=1, max_fanout=3)
    assert {n.id for n in sub.nodes} == {"ent:hub", "img:9", "img:8", "img:7"}
    assert edge_keys(sub.edges) == {(f"img:{i}", "ent:hub", "DEPICTS") for i in (7, 8, 9)}
    assert len(store.subgraph(["ent:hub"], hops=1).nodes) == 11


def test_subgraph_fanout_ranks_co_occurs_by_count(store: GraphStore) -> None:
    store.upsert_nodes([ent("hub"), ent("a"), ent("b"), ent("c"), ent("d")])
    store.upsert_edges(
        [
            Edge("ent:hub", "ent:a", Rel.CO_OCCURS, {"count": 2}),
            Edge("ent:b", "ent:hub", Rel.CO_OCCURS, {"count": 50}),
            Edge("ent:hub", "ent:c", Rel.CO_OCCURS, {"count": 7}),
            Edge("ent:c", "ent:d", Rel.CO_OCCURS, {"count": 1}),
        ]
    )
    store.commit()
    assert {n.id for n in store.subgraph(["ent:hub"], hops=1, max_fanout=2).nodes} == {"ent:hub", "ent:b", "ent:c"}
    two = store.subgraph(["ent:hub"], hops=2, max_fanout=1)
    assert {n.id for n in two.nodes} == {"ent:hub", "ent:b"}  # b's heaviest neighbour is hub, already in


def test_shortest_paths(small: GraphStore) -> None:
    # txt:2 -> img:1: via rec:2 (HAS, HAS) or via ent:dog (MENTIONS, DEPICTS), both two hops.
    paths = small.shortest_paths("txt:2", "img:1", max_hops=4, limit=5)
    assert len(paths) == 2
    assert {tuple(n.id for n in p.nodes) for p in paths} == {
        ("txt:2", "rec:2", "img:1"),
        ("txt:2", "ent:dog", "img:1"),
    }
    for p in paths:
        assert len(p) == 2 and p.nodes[0].id == "txt:2" and p.nodes[-1].id == "img:1"
        for a, e, b in zip(p.nodes, p.edges, p.nodes[1:], strict=False):
            assert {e.src, e.dst} == {a.id, b.id}  # edges keep their stored direction
    via_dog = next(p for p in paths if p.nodes[1].id == "ent:dog")
    assert edge_keys(via_dog.edges) == {("txt:2", "ent:dog", "MENTIONS"), ("img:1", "ent:dog", "DEPICTS")}
    assert via_dog.edges[1].props == {"score": 0.9}
    (first,) = small.shortest_paths("txt:2", "img:1", limit=1)
    assert first.nodes[1].id == "ent:dog"  # a stable order: by node ids along the path


def test_shortest_paths_bounds(small: GraphStore) -> None:
    assert small.shortest_paths("txt:2", "img:1", max_hops=1) == []
    (p,) = small.shortest_paths("ent:cat", "txt:2", max_hops=3)
    assert [n.id for n in p.nodes] == ["ent:cat", "img:2", "rec:2", "txt:2"]
    assert small.shortest_paths("ent:cat", "txt:2", max_hops=2) == []
    assert small.shortest_paths("ent:cat", "ghost") == []
    small.upsert_nodes([ent("island")])
    assert small.shortest_paths("ent:cat", "ent:island", max_hops=6) == []
    (same,) = small.shortest_paths("ent:cat", "ent:cat")
    assert [n.id for n in same.nodes] == ["ent:cat"] and same.edges == ()


def test_iteration(small: GraphStore) -> None:
    assert {n.id for n in small.iter_nodes(Label.IMAGE)} == {"img:1", "img:2"}
    assert {n.id for n in small.iter_nodes(Label.ENTITY)} == {"ent:dog", "ent:ball", "ent:cat"}
    assert {n.props["text"] for n in small.iter_nodes(Label.TEXT)} == {"a dog with a ball", "a dog"}
    assert all(n.label is Label.RECORD for n in small.iter_nodes(Label.RECORD))
    depicts = {e.key: e.props for e in small.iter_edges(Rel.DEPICTS)}
    assert depicts == {
        ("img:1", "ent:dog", Rel.DEPICTS): {"score": 0.9},
        ("img:1", "ent:ball", Rel.DEPICTS): {"score": 0.4},
        ("img:2", "ent:cat", Rel.DEPICTS): {"score": 0.7},
    }
    assert len(list(small.iter_edges(Rel.HAS))) == 5


# ---------------------------------------------------------------- delete_record


def test_delete_record_keeps_shared_nodes_and_drops_orphans(small: GraphStore) -> None:
    # rec:1 alone holds txt:1; img:1 is shared with rec:2; ball is linked only through txt:1 and img:1.
    small.upsert_nodes([ent("lonely")])
    small.upsert_edges([Edge("txt:1", "ent:lonely", Rel.MENTIONS)])
    removed = small.delete_record("rec:1")
    small.commit()
    assert removed == 3  # rec:1, txt:1, ent:lonely
    assert small.get_nodes(["rec:1", "txt:1", "ent:lonely"]) == {}
    assert set(small.get_nodes(["img:1", "ent:dog", "ent:ball", "rec:2", "txt:2"])) == {
        "img:1",
        "ent:dog",
        "ent:ball",  # still depicted by img:1
        "rec:2",
        "txt:2",
    }
    assert small.neighbors("img:1", rels=[Rel.DESCRIBES]) == []
    assert {n.id for _, n in small.neighbors("img:1", rels=[Rel.HAS])} == {"rec:2"}
    nodes, edges = small.counts()
    assert nodes == {"Image": 2, "Text": 1, "Entity": 3, "Record": 1}
    assert edges == {"DESCRIBES": 0, "MENTIONS": 1, "DEPICTS": 3, "HAS": 3, "CO_OCCURS": 1}


def test_delete_record_removes_everything_it_alone_held(small: GraphStore, reopen: Reopen) -> None:
    assert small.delete_record("rec:1") == 2  # rec:1, txt:1
    removed = small.delete_record("rec:2")
    small.commit()
    # rec:2, then img:1 (no longer shared), img:2, txt:2, then cat; dog and ball keep their CO_OCCURS edge.
    assert removed == 5
    store = reopen(small)
    assert {n.id for n in store.iter_nodes(Label.ENTITY)} == {"ent:dog", "ent:ball"}
    assert totals(store) == (2, 1)


def test_delete_unknown_record(small: GraphStore) -> None:
    before = small.counts()
    assert small.delete_record("rec:404") == 0
    assert small.delete_record("img:1") == 0  # not a record
    assert small.counts() == before


def test_delete_edges_removes_only_those_edges(small: GraphStore, reopen: Reopen) -> None:
    before_nodes, before_edges = small.counts()
    removed = small.delete_edges(
        [
            ("ent:dog", "ent:ball", Rel.CO_OCCURS),  # given the other way round: still the one pair
            ("img:1", "ent:ball", Rel.DEPICTS),
            ("img:1", "ent:ball", Rel.DEPICTS),  # twice: removed once
            ("img:2", "ent:dog", Rel.DEPICTS),  # never existed
            ("txt:404", "img:1", Rel.DESCRIBES),  # unknown node
        ]
    )
    small.commit()
    assert removed == 2
    store = reopen(small)
    nodes, edges = store.counts()
    assert nodes == before_nodes
    assert edges == {**before_edges, "CO_OCCURS": 0, "DEPICTS": before_edges["DEPICTS"] - 1}
    assert {n.id for _, n in store.neighbors("img:1", rels=[Rel.DEPICTS])} == {"ent:dog"}
    assert {n.id for _, n in store.neighbors("txt:1", rels=[Rel.MENTIONS])} == {"ent:dog", "ent:ball"}


def test_delete_isolated_removes_only_nodes_without_edges(small: GraphStore, reopen: Reopen) -> None:
    small.upsert_nodes([ent("alone"), ent("also alone")])
    small.commit()
    small.delete_edges([("ent:ball", "ent:dog", Rel.CO_OCCURS)])
    gone = small.delete_isolated(["ent:alone", "ent:dog", "ent:ball", "ent:404", "ent:alone"])
    small.commit()
    assert gone == ["ent:alone"]  # dog and ball are still mentioned and depicted
    store = reopen(small)
    assert store.get_nodes(["ent:alone", "ent:also alone"]).keys() == {"ent:also alone"}


def test_a_deleted_record_and_its_derived_edges_leave_no_trace(small: GraphStore, reopen: Reopen) -> None:
    """What the ingest pipeline does on a delete: the record, then its stale derived edges, then the
    entities nothing links any more."""
    small.delete_record("rec:2")
    small.delete_edges([("ent:ball", "ent:dog", Rel.CO_OCCURS)])
    small.delete_isolated(["ent:dog", "ent:ball", "ent:cat"])
    small.commit()
    store = reopen(small)
    assert {n.id for label in Label for n in store.iter_nodes(label)} == {
        "rec:1", "img:1", "txt:1", "ent:dog", "ent:ball",
    }
    assert {e.key for rel in Rel for e in store.iter_edges(rel)} == {
        ("rec:1", "img:1", Rel.HAS),
        ("rec:1", "txt:1", Rel.HAS),
        ("txt:1", "img:1", Rel.DESCRIBES),
        ("txt:1", "ent:dog", Rel.MENTIONS),
        ("txt:1", "ent:ball", Rel.MENTIONS),
        ("img:1", "ent:dog", Rel.DEPICTS),
        ("img:1", "ent:ball", Rel.DEPICTS),
    }


# ---------------------------------------------------------------- hostile strings, durability


def test_cypher_looking_and_unicode_strings_are_stored_verbatim(small: GraphStore, reopen: Reopen) -> None:
    before_nodes, before_edges = small.counts()
    odd = Node(ODD_ENTITY, Label.ENTITY, {"name": CYPHER, "alias": [CYPHER, UNICODE], UNICODE: CYPHER})
    cypher_id = Node("ent:" + CYPHER, Label.ENTITY, {"name": UNICODE})
    small.upsert_nodes([odd, cypher_id, txt(9, text=UNICODE, kind=CYPHER)])
    small.upsert_edges(
        [
            Edge("txt:9", ODD_ENTITY, Rel.MENTIONS, {"span": CYPHER}),
            Edge("txt:9", "ent:" + CYPHER, Rel.MENTIONS),
            Edge(ODD_ENTITY, "ent:" + CYPHER, Rel.CO_OCCURS, {"count": 1, "note": UNICODE}),
        ]
    )
    small.commit()
    small = reopen(small)
    nodes, edges = small.counts()
    assert nodes == {**before_nodes, "Entity": before_nodes["Entity"] + 2, "Text": before_nodes["Text"] + 1}
    assert edges == {
        **before_edges,
        "MENTIONS": before_edges["MENTIONS"] + 2,
        "CO_OCCURS": before_edges["CO_OCCURS"] + 1,
    }
    got = small.get_nodes([ODD_ENTITY, "ent:" + CYPHER, "txt:9", "img:1"])
    assert got[ODD_ENTITY].props == {"name": CYPHER, "alias": [CYPHER, UNICODE], UNICODE: CYPHER}
    assert got["ent:" + CYPHER].props == {"name": UNICODE}
    assert got["txt:9"].props == {"text": UNICODE, "kind": CYPHER}
    assert "img:1" in got  # the injection deleted nothing
    spans = {n.id: e.props for e, n in small.neighbors("txt:9", rels=[Rel.MENTIONS])}
    assert spans == {ODD_ENTITY: {"span": CYPHER}, "ent:" + CYPHER: {}}
    (co,) = [e for e in small.iter_edges(Rel.CO_OCCURS) if e.src != "ent:ball"]
    assert (co.src, co.dst) == tuple(sorted([ODD_ENTITY, "ent:" + CYPHER]))
    assert co.props == {"count": 1, "note": UNICODE}
    (path,) = small.shortest_paths(ODD_ENTITY, "ent:" + CYPHER)
    assert [n.id for n in path.nodes] == [ODD_ENTITY, "ent:" + CYPHER]


def test_committed_writes_survive_reopen(small: GraphStore, reopen: Reopen) -> None:
    expected_counts = small.counts()
    expected_nodes = {n.id: n.props for label in Label for n in small.iter_nodes(label)}
    expected_edges = {e.key: e.props for rel in Rel for e in small.iter_edges(rel)}
    store = reopen(small)
    assert store.counts() == expected_counts
    assert {n.id: n.props for label in Label for n in store.iter_nodes(label)} == expected_nodes
    assert {e.key: e.props for rel in Rel for e in store.iter_edges(rel)} == expected_edges
    store.upsert_nodes([img(1, seen=True)])
    store.delete_record("rec:1")
    store.commit()
    store = reopen(store)
    assert store.get_nodes(["img:1"])["img:1"].props == {"seen": True}
    assert store.get_nodes(["rec:1", "txt:1"]) == {}
