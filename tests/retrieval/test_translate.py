"""Chinese query words an English collection lacks count through their CC-CEDICT senses (retrieval/translate.py)."""

from __future__ import annotations

from pathlib import Path

from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.schema import Label, Node
from mmkg.index.faiss_index import FaissIndex
from mmkg.retrieval.lexical import Bm25Index, tokenize
from mmkg.retrieval.query_entities import QueryLinker
from mmkg.retrieval.translate import english_senses, facet_first, fit_sense, translations


def test_a_word_stands_for_its_first_senses_the_first_weighing_most() -> None:
    senses = english_senses("皮带")
    assert [s for s, _ in senses] == ["strap", "leather belt"]
    assert [w for _, w in senses] == [1.0, 0.5]
    assert english_senses("粉色")[0] == ("pink", 1.0)
    # not in CEDICT: read as its known parts of two characters or more (米色, beige, is not in it either)
    assert [s for s, _ in english_senses("米色皮带")] == ["strap", "leather belt"]


def test_only_words_the_collection_lacks_are_translated() -> None:
    assert set(translations("黑色皮带", lambda w: w == "黑色")) == {"皮带"}
    assert translations("藏青色T恤", lambda w: False)["T恤"] == [("T-shirt", 1.0)]  # a mixed-script word is one
    assert translations("黑色手提包", lambda w: False)["手提包"][0] == ("handbag", 1.0)  # CEDICT's (hand)bag
    assert translations("black belt", lambda w: False) == {}
    assert translations("黑色皮带", lambda w: True) == {}


def test_a_sense_that_names_a_facet_value_comes_first() -> None:
    """In a catalog that sells belts (and watches with straps), `皮带` reads as *leather belt* first."""
    belts = {"belt"}.__contains__
    assert translations("黑色皮带", lambda w: w == "黑色", belts)["皮带"] == [("leather belt", 1.0), ("strap", 0.5)]
    assert translations("黑色皮带", lambda w: w == "黑色")["皮带"] == [("strap", 1.0), ("leather belt", 0.5)]
    # senses pieced from a word's parts keep their order (米色皮带 is not in CEDICT)
    pieced = english_senses("米色皮带")
    assert facet_first("米色皮带", pieced, belts) == pieced == [("strap", 1.0), ("leather belt", 0.5)]
    index = Bm25Index(["Turtle Men Leather Black Belts", "ADIDAS Unisex Black Strap Black Watches"],
                      facets=["Belts", "Watches", "Black"])
    assert index.translations("黑色皮带")["皮带"][0] == ("leather belt", 1.0)
    scores = index.scores("黑色皮带")
    assert scores[0] > scores[1]


def test_a_character_left_over_counts_only_through_a_facet_value_it_names() -> None:
    """`白衬衫` (white shirt) and `红裙` (red skirt) are not in CEDICT: `衬衫` is, and the characters 白, 红, 裙
    count through their senses that name a facet value of the collection; 米 (rice) of `米色` names none."""
    facets = {"white", "red", "skirt"}.__contains__
    assert english_senses("白衬衫", facets) == [("white", 1.0), ("shirt", 1.0), ("blouse", 0.5)]
    assert english_senses("白衬衫") == [("shirt", 1.0), ("blouse", 0.5)]  # a collection without those facets
    assert translations("红裙", lambda w: False, facets)["红裙"] == [("red", 1.0), ("skirt", 1.0)]
    assert english_senses("米色皮带", facets) == english_senses("米色皮带")
    index = Bm25Index(["Gini and Jony Girls Solid Red Skirts", "Catwalk Women Red Flats", "Ant Kids Black Skirts"],
                      facets=["Skirts", "Flats", "Red", "Black"])
    scores = index.scores("红裙")
    assert scores.argmax() == 0 and scores[1] > 0 and scores[2] > 0


def test_a_compound_the_collection_lacks_is_read_as_its_known_tail() -> None:
    known = {"watch", "leather"}.__contains__
    assert fit_sense("wristwatch", known) == "watch"
    assert fit_sense("leather wristband", known) == "leather wristband"


def test_bm25_finds_english_records_for_a_chinese_query() -> None:
    index = Bm25Index(["Turtle Men Leather Black Belts", "Roadster Men Black Vest", "ADIDAS White Sports Shoes"])
    scores = index.scores("黑色皮带")
    assert scores.argmax() == 0 and scores[0] > scores[1] > scores[2] == 0
    assert index.matched_terms("黑色皮带", "Turtle Men Leather Black Belts") == ["黑色 (black)", "皮带 (leather belt)"]


def test_words_no_record_states_in_any_sense_are_named() -> None:
    """`perfume` in a catalog of belts and shoes is named; a word it states, or a Chinese word whose English
    sense it states, is not."""
    index = Bm25Index(["Turtle Men Leather Black Belts", "ADIDAS White Sports Shoes"])
    assert index.unmatched_words("black perfume for men") == ["perfume"]
    assert index.unmatched_words("黑色皮带") == []
    assert index.unmatched_words("黑色的香水") == ["香水"]  # perfume; 的 is a lone character
    assert index.unmatched_words("white shoes") == []
    assert index.unmatched_words("男士皮带") == []  # 男士: man, which the catalog states as Men


def test_a_query_without_a_word_is_named_whole() -> None:
    index = Bm25Index(["Turtle Men Leather Black Belts", "ADIDAS White Sports Shoes"])
    assert index.unmatched_words(" 😀👟 ") == ["😀👟"]
    assert index.unmatched_words("?!") == ["?!"]
    assert index.unmatched_words("shoes 👟") == []


def test_a_plural_the_stemmer_keeps_apart_meets_its_singular() -> None:
    index = Bm25Index(["Puma Men Black Shoes", "Nike Women White Shoes", "a child on a swing"])
    assert index.scores("shoes for a man").argmax() == 0 and index.scores("woman shoes").argmax() == 1
    assert index.scores("children").argmax() == 2 and tokenize("Men") == tokenize("man")


def test_a_collection_that_states_the_chinese_word_keeps_it() -> None:
    index = Bm25Index(["一条黑色皮带", "black belt"])
    scores = index.scores("黑色皮带")
    assert scores[0] > 0 and scores[1] == 0


def test_the_linker_reaches_english_entities_and_says_from_which_word(tmp_path: Path) -> None:
    store = MemoryGraphStore(tmp_path / "graph")
    names = [("articleType:belts", "attribute"), ("baseColour:black", "attribute"), ("狗", "concept")]
    store.upsert_nodes([Node(f"ent:{n}", Label.ENTITY, {"name": n, "kind": k}) for n, k in names])
    linker = QueryLinker(store, FaissIndex(dim=4))
    found = {e.name: e for e in linker.for_text("黑色皮带")}
    assert set(found) == {"articleType:belts", "baseColour:black"}
    # `leather belt`, CEDICT's second sense, names the facet articleType:belts, so it takes the first weight
    assert found["articleType:belts"].via == "皮带" and found["articleType:belts"].score == 1.0
    assert found["baseColour:black"].via == "黑色" and found["baseColour:black"].score == 1.0
    assert [(e.name, e.via) for e in linker.for_text("狗")] == [("狗", "")]
