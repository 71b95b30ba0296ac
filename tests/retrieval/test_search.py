"""How a hit's explanation reads."""

from __future__ import annotations

from mmkg.retrieval.search import Explanation


def test_signals_that_scored_nothing_are_not_listed() -> None:
    """A contribution that prints as +0.00 (an image query's absent attribute, a text signal of -0.001) is not a
    reason the hit was found, so the signals line leaves it out; the scored ones keep their order by size."""
    lines = Explanation(signals={"text": -0.001, "image": 1.234, "attribute": 0.0, "graph_entity": -2.5}).lines()
    assert lines == ["signals: graph_entity -2.50, image +1.23"]
    assert Explanation(signals={"text": 0.0}).lines() == []
