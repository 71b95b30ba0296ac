"""A query word also meets the related forms a collection states: WordNet's pertainyms, and the facet values among
the synonyms of its commonest adjective sense (retrieval/word_forms.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mmkg.retrieval import word_forms
from mmkg.retrieval.lexical import Bm25Index
from mmkg.retrieval.word_forms import adjective_synonyms, facet_words, phrase_synonyms, related_forms, singular

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


def test_a_phrase_wordnet_lists_as_one_noun_meets_the_words_of_its_synonyms() -> None:
    """`kidney stones` is WordNet's *kidney stone* (= urinary calculus, nephrolith, renal calculus); the stone
    case says `calculi` and `nephrolithiasis`, never `stone` nor `kidney`, which a horseshoe kidney case says."""
    assert "renal calculus" in phrase_synonyms(["kidney", "stones"]) == phrase_synonyms(["Kidney", "stone"])
    assert phrase_synonyms(["fracture", "femur"]) == () and phrase_synonyms(["stone"]) == ()
    cases = ["Renal calculi: nephrolithiasis on noncontrast CT.", "Horseshoe kidney: fused kidney, lower poles.",
             "Fracture of the femur."]
    index = Bm25Index(cases)
    assert index.related("kidney stones") == {"kidney": ["renal"], "kidney stones": ["calculus"]}
    stones, kidney = index.scores("kidney stones"), index.scores("kidney")
    assert stones[0] > kidney[0] > 0 and stones[1] == kidney[1] and stones[2] == 0  # `calculus` counts
    assert index.matched_terms("kidney stones", cases[0]) == ["kidney (renal)", "kidney stones (calculus)"]
    # a synonym's stopword is no form (`central sulcus`: *fissure of Rolando*; an empty form had crashed BM25)
    rolando = Bm25Index(["Gyri anterior to the fissure of Rolando.", "A central line."])
    assert rolando.related("central sulcus") == {"central sulcus": ["fissure", "rolando"]}
    assert rolando.scores("central sulcus")[0] > 0


def test_without_the_data_search_keeps_the_words_own_forms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture,
                                                           request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("MMKG_WORDNET", str(tmp_path / "missing.jar"))
    word_forms._singulars.cache_clear()  # read once per process: read again without the data, and after the test
    request.addfinalizer(word_forms._singulars.cache_clear)
    assert singular("emboli") == "emboli" and singular("Women") == "woman"
    with caplog.at_level(logging.WARNING, logger=word_forms.__name__):
        assert related_forms("femur") == ()
    assert "WordNet is not readable" in caplog.text
    assert Bm25Index(CASES).scores("fracture of the femur")[0] == Bm25Index(CASES).scores("fracture")[0]


def test_an_adjective_reads_as_the_synonyms_of_its_commonest_sense_only() -> None:
    assert "gold" in adjective_synonyms("golden") and "red" in adjective_synonyms("Crimson")
    assert adjective_synonyms("dark") == ()  # `black` is in a later sense (evil), which is not read
    assert adjective_synonyms("watch") == () and adjective_synonyms("qwertyuiop") == ()


def test_a_word_that_is_no_facet_meets_the_facet_value_its_synonym_names() -> None:
    """`golden watch` in a catalog whose colour facet says Gold and whose names never say golden: the gold watch
    first, counted as if the query said gold; a kurti whose name says golden still matches its own word."""
    docs = ["Esprit Women Gold Watch Gold", "Esprit Women Silver Watch Silver", "Vishudh Golden Print Kurti"]
    index = Bm25Index(docs, facets=["Gold", "Silver", "Watches"])
    scores = index.scores("golden watch")
    assert scores.argmax() == 0 and scores[0] > scores[1] > 0
    assert index.related("golden watch") == {"golden": ["gold"]}
    assert index.matched_terms("golden watch", docs[0]) == ["watch", "golden (gold)"]
    np.testing.assert_allclose(scores, Bm25Index(docs).scores("gold golden watch"), rtol=1e-5)
    assert Bm25Index(docs).related("golden watch") == {}  # without facets, no synonyms
    assert Bm25Index(["red top", "crimson top"], facets=["Red", "Crimson"]).related("crimson top") == {}


def test_a_noun_meets_the_facet_values_of_its_synonyms_and_broader_words() -> None:
    """Where the collection never says purse, sneakers or lady, a shopper's `purse` is the catalog's handbag (a
    synonym), `sneakers` are shoes and a `lady` a woman (the broader word of the commonest sense, at half weight);
    a word that is a facet value itself keeps to it, and so does one the collection states (MedPix's `lesion` is
    no Pathology category, the catalog's `vest` no waistcoat)."""
    facets = {"handbag", "shoe", "woman", "sweater", "pathology"}
    is_facet, unknown = facets.__contains__, lambda _: False
    assert [(f.value, f.how) for f in facet_words("purse", is_facet, unknown)] == [("handbag", "a synonym of")]
    assert facet_words("Sneakers", is_facet, unknown) == [("shoe", "a broader word for", 0.5)]
    assert [f.value for f in facet_words("lady", is_facet, unknown)] == ["woman"]
    assert facet_words("shoe", is_facet, unknown) == [] and facet_words("trainers", is_facet, unknown) == []
    assert [f.value for f in facet_words("lesion", is_facet, unknown)] == ["pathology"]
    assert facet_words("lesion", is_facet, lambda w: w == "lesion") == []
    assert facet_words("vest", {"waistcoat"}.__contains__, lambda w: w == "vest") == []  # an undershirt there
    docs = ["Nike Men White Sports Shoes", "Nike Men White Tshirts"]
    index = Bm25Index(docs, facets=["Shoes", "Tshirts", "White"])
    assert index.scores("white sneakers").argmax() == 0
    assert index.matched_terms("white sneakers", docs[0]) == ["white", "sneakers (shoe)"]
    assert index.unmatched_words("white sneakers") == []


def test_a_hyphenated_compound_meets_its_closed_form() -> None:
    """`yellow t-shirt kids`: the catalog's one yellow kids' T-shirt is named `... Yellow Tshirts`; read as `t` and
    `shirt`, the query met only the men's `T-shirt`s, and now it meets the kids' one first. A query written closed
    (`tshirt`) meets a name written with the hyphen, and a shirt is no T-shirt."""
    names = ["ADIDAS Kids Boys Printed Yellow Tshirts", "Basics Men Yellow Polo T-shirt", "Roadster Men Yellow Shirts"]
    index = Bm25Index(names)
    assert index.scores("yellow t-shirt kids").argmax() == 0
    closed = index.scores("tshirt")
    assert closed[0] > 0 and closed[1] > 0 and closed[2] == 0
    assert index.matched_terms("yellow t-shirt kids", names[0]) == ["yellow", "t-shirt", "kids"]
    assert index.matched_terms("yellow t-shirt", names[1]) == ["yellow", "t-shirt"]
    assert index.matched_terms("yellow t-shirt", names[2]) == ["yellow", "shirt"]  # what BM25 credited it with


def test_two_words_the_collection_writes_as_one_meet_it() -> None:
    """`hand bag`: the catalog sells `Handbags`; read as `hand` and `bag`, the query found bags of every kind and
    hand cream before them. Two query words close up only where the collection states the word they make."""
    names = ["Murcia Women Black Handbags", "Timberland Unisex Olive Bags", "Belkin Unisex Black Messenger Bag",
             "Nivea Hand Cream", "Lotus Hand Cream"]
    index = Bm25Index(names)
    scores = index.scores("hand bag")
    assert scores.argmax() == 0 and scores[1] > 0 and scores[3] > 0
    assert index.matched_terms("black hand bag", names[0]) == ["black", "hand bag"]
    assert index.matched_terms("black hand bag", names[1]) == ["bag"]
    assert index.scores("hand cream").argmax() in (3, 4)  # no `handcream`: the words as written
    only_bags = Bm25Index(names[:3])
    assert only_bags.unmatched_words("hand bag") == []  # stated, closed up: no "No record contains 'hand'"
    assert only_bags.unmatched_words("hand mirror") == ["hand", "mirror"]


def test_a_record_that_writes_two_words_meets_the_one_word_its_collection_uses() -> None:
    """The catalog names Benetton's `Sweat Shirts` and ADIDAS's `Sweatshirts`: a shopper's `sweatshirt` must find
    both, and says which word met them; a pair the collection never writes closed up (`hand cream`) stays apart."""
    names = ["Benetton Women Black Sweat Shirts", "ADIDAS Men Grey Sweatshirts", "Roadster Men Yellow Shirts",
             "Nivea Hand Cream"]
    index = Bm25Index(names)
    scores = index.scores("sweatshirt")
    assert scores[0] > 0 and scores[1] > 0 and scores[2] == 0
    assert index.matched_terms("black sweatshirt", names[0]) == ["black", "sweatshirt"]
    assert index.scores("handcream").max() == 0


def test_an_irregular_plural_meets_its_singular() -> None:
    """Latin and Greek plurals (WordNet's exception list), which no stemmer folds; a plural of two singulars
    (`bases`: base, basis) stays as it is, and a regular one is left to the stemmer."""
    assert [singular(w) for w in ("Metastases", "emboli", "vertebrae", "men", "women", "scarves")] == [
        "metastasis", "embolus", "vertebra", "man", "woman", "scarf"]
    assert singular("bases") == "bases" and singular("shoes") == "shoes"
    cases = ["Pulmonary embolus in the right lower lobe.", "Hepatic metastasis of a colon cancer.", "Rib fracture."]
    index = Bm25Index(cases)
    assert index.scores("pulmonary emboli").argmax() == 0 and index.scores("liver metastases").argmax() == 1
    assert index.unmatched_words("multiple metastases") == ["multiple"]
