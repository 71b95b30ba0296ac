"""Linking a query to the graph's entities: attribute values named in the text, spaCy entities, image tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.schema import Label, Node
from mmkg.index.faiss_index import FaissIndex
from mmkg.retrieval.query_entities import QueryLinker, _key, concept_terms


def linker(tmp_path: Path) -> tuple[QueryLinker, FaissIndex]:
    store = MemoryGraphStore(tmp_path / "graph")
    names = [
        ("baseColour:white", "attribute"),
        ("articleType:sports shoes", "attribute"),
        ("gender:men", "attribute"),
        ("articleType:shirts", "attribute"),
        ("dog", "concept"),
        ("狗", "concept"),
        ("雪地", "concept"),
    ]
    store.upsert_nodes([Node(f"ent:{n}", Label.ENTITY, {"name": n, "kind": k}) for n, k in names])
    index = FaissIndex(dim=4)
    index.add([f"ent:{n}" for n, _ in names], np.eye(len(names), 4, dtype=np.float32) + 0.01)
    return QueryLinker(store, index), index


def _linker_over(tmp_path: Path, names: list[tuple[str, str]], **kwargs: Any) -> QueryLinker:
    """A linker over a graph of these (name, kind) entities alone."""
    store = MemoryGraphStore(tmp_path / "graph")
    store.upsert_nodes([Node(f"ent:{n}", Label.ENTITY, {"name": n, "kind": k}) for n, k in names])
    return QueryLinker(store, FaissIndex(dim=4), **kwargs)


def test_attribute_values_are_found_in_the_text_plurals_folded(tmp_path: Path) -> None:
    link, _ = linker(tmp_path)
    found = {e.id for e in link.for_text("White sports shoe for MEN")}
    assert found == {"ent:baseColour:white", "ent:articleType:sports shoes", "ent:gender:men"}
    assert all(e.how == "mentions" for e in link.for_text("white"))


def test_spacy_entities_count_only_when_the_graph_holds_them(tmp_path: Path) -> None:
    link, _ = linker(tmp_path)
    assert {e.id for e in link.for_text("a brown dog runs on the beach")} == {"ent:dog"}


def test_chinese_queries_link_to_the_chinese_entities_the_graph_holds(tmp_path: Path) -> None:
    link, _ = linker(tmp_path)
    assert {e.name for e in link.for_text("一只狗在雪地里奔跑")} == {"狗", "雪地"}
    assert {e.name for e in link.for_text("狗")} == {"狗"}
    assert {e.name for e in link.for_text("a dog 在雪地里")} == {"dog", "雪地"}
    assert all(e.how == "mentions" for e in link.for_text("雪地上的狗"))


def test_hostile_queries_link_to_nothing_and_do_not_fail(tmp_path: Path) -> None:
    link, _ = linker(tmp_path)
    for text in ['"}) MATCH (n) DETACH DELETE n //', "平静的湖面上的一只天鹅", "🙂🙂", "   "]:
        assert link.for_text(text) == []


def test_a_measurement_in_a_caption_links_no_code_or_year(tmp_path: Path) -> None:
    """MedPix states each case's ACR code (`acr:4.5`, `acr:8.9`): a caption's "narrowed to 4.5 mm" or "8-9 mm"
    must not link to the cases of those codes, nor "2011" to a catalog's year; the words beside them still link."""
    store = MemoryGraphStore(tmp_path / "graph")
    names = ["acr:4.5", "acr:8.9", "year:2011", "location:trachea"]
    store.upsert_nodes([Node(f"ent:{n}", Label.ENTITY, {"name": n, "kind": "attribute"}) for n in names])
    index = FaissIndex(dim=4)
    index.add([f"ent:{n}" for n in names], np.eye(4, dtype=np.float32))
    link = QueryLinker(store, index)
    assert {e.id for e in link.for_text("The trachea is narrowed to 4.5 mm, 8-9 mm below the cords (2011)")} == {
        "ent:location:trachea"}


def test_image_queries_take_the_nearest_entity_names_above_a_score(tmp_path: Path) -> None:
    link, _ = linker(tmp_path)
    query = np.array([0.0, 0.0, 1.0, 0.0], dtype=np.float32)
    tags = link.for_vector(query, k=3, min_score=0.6)  # the uniform "dog" row scores exactly 0.5
    assert [t.id for t in tags] == ["ent:gender:men"] and tags[0].how == "depicts" and tags[0].score > 0.9


def test_plurals_fold_to_the_word_a_query_names() -> None:
    assert _key("Watches") == _key("watch") and _key("Dresses") == _key("dress") and _key("masses") == ("mass",)
    assert _key("ties") == ("tie",) and _key("headaches") == ("headache",) and _key("accessories") == ("accessory",)


def test_an_adjective_links_to_the_facet_value_its_synonym_names(tmp_path: Path) -> None:
    """`golden watch`: no facet says golden, the colour facet says Gold, which WordNet's commonest sense of golden
    lists as a synonym: the query links to it (and to the mention `gold`) as if it said gold, and says through
    which word. A word that is a facet value itself (`red`) keeps its own reading."""
    names = [("baseColour:Gold", "attribute"), ("baseColour:Red", "attribute"), ("articleType:Watches", "attribute"),
             ("gold", "concept"), ("golden print", "concept")]
    link = _linker_over(tmp_path, names)
    found = {e.name: e for e in link.for_text("golden watch")}
    assert set(found) == {"articleType:Watches", "baseColour:Gold", "gold"}
    assert (found["baseColour:Gold"].via, found["baseColour:Gold"].via_how) == ("golden", "a synonym of")
    assert found["baseColour:Gold"].score == 1.0 and found["articleType:Watches"].via == ""
    assert {e.name for e in link.for_text("red watch")} == {"baseColour:Red", "articleType:Watches"}
    assert {e.name for e in link.for_text("a large watch")} == {"articleType:Watches"}  # `big`: no facet here


def test_a_noun_links_the_facet_value_of_its_broader_word(tmp_path: Path) -> None:
    """`sneakers` names no entity; WordNet's broader word for a sneaker is a shoe, the catalog's subCategory
    Shoes: linked at half weight, through `sneakers`. A Chinese word's English sense that the graph does not
    name (女士: *lady*, *madam*) counts the same way (a madam is a woman). Where the collection's texts say
    `sneakers`, the word keeps to its own sense there."""
    names = [("subCategory:Shoes", "attribute"), ("gender:Women", "attribute"), ("baseColour:White", "attribute")]
    link = _linker_over(tmp_path, names)
    found = {e.name: e for e in link.for_text("white sneakers")}
    assert set(found) == {"subCategory:Shoes", "baseColour:White"}
    shoes = found["subCategory:Shoes"]
    assert (shoes.via, shoes.via_how, shoes.score) == ("sneakers", "a broader word for", 0.5)
    assert "gender:Women" in {e.name for e in link.for_text("女士鞋")}
    stated = _linker_over(tmp_path / "stated", names, states=lambda word: word == "sneakers")  # a brand, say
    assert {e.name for e in stated.for_text("white sneakers")} == {"baseColour:White"}


def test_a_hyphenated_compound_links_to_the_facet_value_written_closed(tmp_path: Path) -> None:
    """The catalog's type is `Tshirts`, its names say `T-shirt`: both are one concept, which `t-shirt`, `tshirt`
    and `t shirt` all name; `shirt` alone does not."""
    names = [("articleType:Tshirts", "attribute"), ("articleType:Shirts", "attribute"), ("polo t-shirt", "concept")]
    link = _linker_over(tmp_path, names)
    assert concept_terms("articleType:Tshirts", True) == concept_terms("t-shirt", False) == ("tshirt",)
    assert "articleType:Tshirts" in {e.name for e in link.for_text("yellow t-shirt")}
    assert {e.name for e in link.for_text("polo tshirt")} == {"articleType:Tshirts", "polo t-shirt"}
    assert "polo t-shirt" in {e.name for e in link.for_text("polo t shirt")}
    assert {e.name for e in link.for_text("white shirt")} == {"articleType:Shirts"}


def test_a_hyphenated_compound_never_links_one_of_its_parts(tmp_path: Path) -> None:
    """`t-shirt` is not a shirt, `x-ray` not a ray, `non-contrast` the opposite of contrast: a part of a compound
    links only together with the rest of it (`non contrast`, written apart, is the same entity)."""
    names = [("articleType:Tshirts", "attribute"), ("articleType:Shirts", "attribute"), ("ray", "concept"),
             ("contrast", "concept"), ("non contrast", "concept"), ("chest x ray", "concept")]
    link = _linker_over(tmp_path, names)
    assert {e.name for e in link.for_text("white t-shirt")} == {"articleType:Tshirts"}
    assert {e.name for e in link.for_text("chest x-ray")} == {"chest x ray"}
    assert {e.name for e in link.for_text("non-contrast ct")} == {"non contrast"}
    assert {e.name for e in link.for_text("contrast and a ray")} == {"contrast", "ray"}


def test_two_query_words_link_to_the_one_word_the_graph_names(tmp_path: Path) -> None:
    """`hand bag` names the catalog's type `Handbags` (and `bag` its type `Bags`, as before)."""
    names = [("articleType:Handbags", "attribute"), ("articleType:Bags", "attribute")]
    link = _linker_over(tmp_path, names)
    assert {e.name for e in link.for_text("black hand bags")} == {"articleType:Handbags", "articleType:Bags"}
    assert {e.name for e in link.for_text("hand cream")} == set()
