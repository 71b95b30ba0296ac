"""A query word also meets the related forms a collection states: WordNet's pertainyms (retrieval/word_forms.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mmkg.retrieval import word_forms
from mmkg.retrieval.lexical import Bm25Index
from mmkg.retrieval.word_forms import related_forms

CASES = [
    "Non-displaced transverse fracture of right femoral neck.",
    "Salter-Harris fracture of the distal tibia.",
    "Renal infarct.",
    "Isle of Man ferry accident.",
]


def test_an_adjective_and_the_noun_it_pertains_to_are_related_both_ways() -> None:
    assert "femoral" in related_forms("femur") and "femur" in related_forms("femoral")
    assert "renal" in related_forms("Kidney") and "kidney" in related_forms("renal")
    assert "hepatic" in related_forms("liver")
    assert related_forms("man") == ()  # `Manx` pertains to the Isle of Man, a proper name
    assert related_forms("fracture") == () and related_forms("qwertyuiop") == ()


def test_a_query_for_the_femur_finds_the_case_that_states_femoral() -> None:
    index = Bm25Index(CASES)
    scores = index.scores("fracture of the femur")
    assert scores.argmax() == 0 and scores[0] > scores[1] > 0
    assert index.scores("kidney infarct").argmax() == 2
    assert index.matched_terms("fracture of the femur", CASES[0]) == ["fracture", "femur (femoral)"]
    assert index.matched_terms("fracture of the femur", CASES[1]) == ["fracture"]
    assert index.unmatched_words("femur fracture") == []  # stated, as `femoral`
    assert index.unmatched_words("fracture of the knee") == ["knee"]


def test_a_word_the_collection_states_is_not_counted_twice() -> None:
    index = Bm25Index(["femoral femur", "femur"])
    assert index.related("femur femoral") == {}
    assert index.related("femur") == {"femur": ["femoral"]}


def test_without_the_data_search_keeps_the_words_own_forms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MMKG_WORDNET", str(tmp_path / "missing.jar"))
    with caplog.at_level(logging.WARNING, logger=word_forms.__name__):
        assert related_forms("femur") == ()
    assert "WordNet is not readable" in caplog.text
    assert Bm25Index(CASES).scores("fracture of the femur")[0] == Bm25Index(CASES).scores("fracture")[0]
