"""What a text says is absent (`no free air`) is neither a word BM25 matches nor an entity it mentions
(ingest/negation.py)."""

from __future__ import annotations

from mmkg.ingest.entities import extract_entities
from mmkg.ingest.negation import affirmed, negated_spans
from mmkg.retrieval.lexical import Bm25Index
from mmkg.retrieval.records import record_words


def test_a_negation_blanks_the_words_it_rules_out_and_no_more() -> None:
    text = "There is no evidence of free air in the abdomen, but a dilated appendix."
    kept = affirmed(text)
    assert len(kept) == len(text)  # offsets kept
    assert "free air" not in kept and "evidence" not in kept
    assert "abdomen" in kept and "dilated appendix" in kept  # a place closes the scope; so does punctuation
    assert "shirt" not in affirmed("A man without a shirt is running") and "running" in affirmed(
        "A man without a shirt is running")
    assert "grass" in affirmed("A dog with no leash runs on the grass")
    assert "fracture" not in affirmed("Negative for fracture; positive for effusion")
    assert "effusion" in affirmed("Negative for fracture; positive for effusion")


def test_pseudo_negations_and_names_negate_nothing() -> None:
    assert negated_spans("No change in the size of the mass.") == []
    assert negated_spans("Not only a fracture but also a dislocation") == []
    assert negated_spans("Nike Men No Show Socks") == []  # a Title Case name, not a statement
    assert negated_spans("Puma Men Vintage No.1 Logo Blue Tshirts") == []
    assert negated_spans("") == []


def test_a_negated_finding_is_not_an_entity_of_its_text() -> None:
    (ents,) = extract_entities(["There is no evidence of free air. A dilated appendix is seen."])
    names = {e.name for e in ents}
    assert "free air" not in names and "air" not in names
    assert "appendix" in names


def test_bm25_finds_the_case_that_states_a_finding_not_the_one_that_rules_it_out() -> None:
    cases = [record_words(["There is no free air. Inflamed appendix."], ["modality:ct"]),
             record_words(["Pneumoperitoneum: free air under the diaphragm."], ["modality:ct"]),
             record_words(["Normal chest."], ["modality:ct"])]
    index = Bm25Index(cases)
    scores = index.scores("free air")
    assert scores[1] > 0 and scores[0] == 0
    assert index.matched_terms("free air", cases[0]) == [] and index.matched_terms("free air", cases[1]) == [
        "free", "air"]
