"""The schema's rules that both stores follow: property values and edge weights."""

from __future__ import annotations

import pytest

from mmkg.graph.schema import Edge, Label, Node, Rel, check_props, describe, edge_weight


def test_properties_are_copied_and_lists_normalised() -> None:
    props = {"name": "red", "count": 3, "score": 0.5, "ok": True, "tags": ("a", "b")}
    checked = check_props(props, "node 'x'")
    assert checked == {**props, "tags": ["a", "b"]} and checked is not props


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ([1, 2], "properties must be a dict"),
        ({1: "x"}, "property names must be strings"),
        ({"m": {"nested": 1}}, "property 'm' must be str, int, float, bool or a list of them"),
        ({"m": [1, None]}, "property 'm' must be str"),
    ],
)
def test_bad_properties_name_their_owner(props: object, message: str) -> None:
    with pytest.raises(ValueError, match=f"^node 'img:1': {message}"):
        check_props(props, Node("img:1", Label.IMAGE))
    with pytest.raises(ValueError, match=f"^DEPICTS edge 'img:1' -> 'ent:red': {message}"):
        check_props(props, Edge("img:1", "ent:red", Rel.DEPICTS))


def test_describe() -> None:
    assert describe("a thing") == "a thing"


def test_edge_weight_is_the_score_or_count_else_one() -> None:
    assert edge_weight(Rel.DEPICTS.value, {"score": 0.25}) == 0.25
    assert edge_weight(Rel.CO_OCCURS.value, {"count": 7}) == 7.0
    assert edge_weight(Rel.HAS.value, {"score": 0.25}) == 1.0
    assert edge_weight(Rel.DEPICTS.value, {}) == 1.0
    assert edge_weight(Rel.DEPICTS.value, {"score": "high"}) == 1.0
