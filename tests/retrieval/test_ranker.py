"""The record ranking engine on a small real catalog: each query scored alone, baselines against
brute-force references, record-level hits without repeats, explanations that name their signals."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image

from mmkg.encoders.colour import BINS, colour_descriptor
from mmkg.evaluation.gallery import Gallery, image_queries, text_queries
from mmkg.evaluation.systems import baseline_scores
from mmkg.retrieval.lexical import Bm25Index, tokenize
from mmkg.retrieval.ranker import (
    DEFAULT_IMAGE,
    DEFAULT_TEXT,
    SIGNALS,
    QuerySet,
    RankingConfig,
    RankWeights,
    RecordRanker,
    closest_signal,
    for_unlike,
    reciprocal_rank_fusion,
)
from mmkg.retrieval.record_search import RecordRetriever
from mmkg.retrieval.records import RecordTable
from mmkg.retrieval.search import Query

TEXTS = ["Nike Men White Sports Shoes", "Puma women black running shoes", "Levis men blue jeans",
         "white cotton tshirt for men", "black leather belt"]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, fashion_subset, catalog_gallery) -> Iterator[tuple]:
    root = tmp_path_factory.mktemp("ranker")
    gallery, encoder, settings, records = catalog_gallery(fashion_subset(root / "fashion", 60), root / "ws", 50)
    try:
        yield gallery, encoder, settings, records[50:]
    finally:
        gallery.close()


def _all_systems(gallery: Gallery, queries, columns: np.ndarray) -> dict[str, np.ndarray]:
    out = baseline_scores(gallery.ranker, queries, columns, "images")
    out["full"] = gallery.ranker.score(queries).fused[:, columns]
    out["full_graph_heavy"] = gallery.ranker.score(queries, RankWeights(graph_entity=2, graph_image=2,
                                                                        graph_text=2, seeds=3)).fused[:, columns]
    return out


def test_each_query_is_scored_alone(catalog: tuple) -> None:
    """With the gallery fixed, changing the other queries leaves every query's scores identical, in every
    system: alone, in a batch, or in a batch of other queries."""
    gallery, encoder, settings, held_out = catalog
    columns = np.flatnonzero(gallery.table.has_image)
    texts = TEXTS + [r.texts[0].text for r in held_out]
    batch = _all_systems(gallery, text_queries(gallery, encoder, texts), columns)
    other = _all_systems(gallery, text_queries(gallery, encoder, texts[2:4] + ["red dress", "a"]), columns)
    for i, text in enumerate(texts):
        alone = _all_systems(gallery, text_queries(gallery, encoder, [text]), columns)
        for system, scores in alone.items():
            np.testing.assert_allclose(batch[system][i], scores[0], rtol=1e-5, atol=1e-5, err_msg=system)
    for system in batch:
        np.testing.assert_allclose(batch[system][2:4], other[system][:2], rtol=1e-5, atol=1e-5, err_msg=system)
    images = image_queries(gallery, encoder, [r.images[0] for r in held_out], settings)
    full = gallery.ranker.score(images).fused
    for i in range(len(images)):
        np.testing.assert_allclose(full[i], gallery.ranker.score(images.take([i])).fused[0], rtol=1e-5, atol=1e-5)


def test_bm25_matches_the_lucene_formula() -> None:
    """Lucene's BM25 (since Lucene 8 without the constant (k1 + 1) factor, which changes no ranking)."""
    docs = ["white sports shoes", "black shoes shoes", "blue jeans for men", "white shirt"]
    index = Bm25Index(docs)
    toks = [tokenize(d) for d in docs]
    avg = sum(map(len, toks)) / len(toks)
    k1, b = 1.5, 0.75
    for query in ("white shoes", "jeans", "red"):
        expect = []
        for d in toks:
            s = 0.0
            for term in set(tokenize(query)):
                df = sum(term in t for t in toks)
                if df == 0:
                    continue
                idf = math.log(1 + (len(toks) - df + 0.5) / (df + 0.5))
                tf = d.count(term)
                s += idf * tf / (tf + k1 * (1 - b + b * len(d) / avg))
            expect.append(s)
        np.testing.assert_allclose(index.scores(query), expect, rtol=1e-4, atol=1e-6, err_msg=query)


def test_dense_baselines_match_brute_force(catalog: tuple) -> None:
    """encoder = the query's cosine to the record's image; dense_text = its best cosine to the record's texts;
    both standardised per query (a monotone map: the same ranking as the raw cosines)."""
    gallery, encoder, _, _ = catalog
    t = gallery.table
    columns = np.flatnonzero(t.has_image)
    queries = text_queries(gallery, encoder, TEXTS)
    systems = baseline_scores(gallery.ranker, queries, columns, "images")
    for i, q in enumerate(queries.vectors):
        img = np.array([max(float(t.image_vecs[j] @ q) for j in t.images_of(r)) for r in columns])
        txt = np.array([max(float(t.text_vecs[j] @ q) for j in t.texts_of(r)) for r in columns])
        for name, raw in (("encoder", img), ("dense_text", txt)):
            z = (raw - raw.mean()) / raw.std()
            np.testing.assert_allclose(systems[name][i], z, rtol=1e-4, atol=1e-4, err_msg=name)
        expect_bm25 = np.array([t.bm25.scores(TEXTS[i])[r] for r in columns])
        assert np.array_equal(np.argsort(-systems["bm25"][i], kind="stable"), np.argsort(-expect_bm25, kind="stable"))


def test_reciprocal_rank_fusion_matches_its_definition() -> None:
    a = np.array([[3.0, 1.0, 2.0]])
    b = np.array([[1.0, 2.0, 3.0]])
    expect = [1 / 61 + 1 / 63, 1 / 63 + 1 / 62, 1 / 62 + 1 / 61]
    np.testing.assert_allclose(reciprocal_rank_fusion([a, b])[0], expect, rtol=1e-6)


def test_search_returns_records_once_with_their_signals(catalog: tuple) -> None:
    gallery, encoder, settings, _ = catalog
    retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
    hits = retriever.search(Query(text="white shoes for men"), k=10)
    records = [h.record for h in hits]
    assert len(records) == len(set(records)) and len({h.id for h in hits}) == len(hits)
    top = hits[0]
    assert top.kind == "image" and top.title and top.explanation.signals
    assert set(top.explanation.signals) <= set(SIGNALS)
    assert abs(sum(top.explanation.signals.values()) - top.score) < 1e-3
    texts = retriever.search(Query(text="white shoes for men"), k=5, target="texts")
    assert all(h.kind == "text" and h.text for h in texts) and len({h.text for h in texts}) == len(texts)
    encoder_only = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, mode="encoder",
                                   table=gallery.table).search(Query(text="white shoes for men"), k=3)
    assert all(set(h.explanation.signals) == {"image"} for h in encoder_only)
    gnn_only = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, mode="gnn",
                               table=gallery.table).search(Query(text="white shoes for men"), k=3)
    assert all(set(h.explanation.signals) == {"gnn"} for h in gnn_only)


def test_filters_keep_only_records_that_state_the_value(catalog: tuple) -> None:
    gallery, encoder, _, _ = catalog
    retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
    hits = retriever.search(Query(text="shoes"), k=5, where={"gender": "Women"})
    assert hits and all("gender:Women" in h.attributes for h in hits)


def test_candidate_search_scores_candidates_exactly(catalog: tuple) -> None:
    """Above `exact_max` records one search scores a candidate set (HNSW nearest rows, moments for the z-scores);
    forced on the small catalog, where every record is a candidate, it gives the exact scores and ranking."""
    gallery, encoder, settings, held_out = catalog
    columns = np.flatnonzero(gallery.table.has_image)
    texts = text_queries(gallery, encoder, TEXTS)
    images = image_queries(gallery, encoder, [r.images[0] for r in held_out[:3]], settings)
    config = gallery.ranker.config
    with_hub = replace(config, text=replace(config.text, hub=0.5, graph_image=0.5),
                       image=replace(config.image, hub=0.5, hub_k=16, graph_image=0.5, graph_text=0.5))
    for queries, cfg in itertools.product((texts, images), (config, with_hub)):
        exact_ranker = RecordRanker(gallery.table, cfg)
        forced = RecordRanker(gallery.table, cfg, exact_max=0)
        for i in range(len(queries)):
            one = queries.take([i])
            exact = exact_ranker.score(one)
            fast = forced.search_scores(one, within=columns)
            assert set(forced.timings) >= {"sparse", "dense", "final"}
            np.testing.assert_allclose(fast.fused[0][columns], exact.fused[0][columns], rtol=1e-4, atol=1e-4)
            for name, values in exact.signals.items():
                np.testing.assert_allclose(fast.signals[name][0][columns], values[0][columns], rtol=1e-4, atol=1e-4)
            assert sorted(fast.seeds[0]) == sorted(exact.seeds[0])


def _table_of(records: dict[str, list[str]], attributes: set[str]) -> RecordTable:
    """A RecordTable of records with only names and entities (no images or texts): enough for the entity signals."""
    entities = sorted({e for es in records.values() for e in es})
    names = list(records)
    rec_entity = sp.csr_matrix(
        (np.ones(sum(map(len, records.values())), np.float32),
         ([i for i, es in enumerate(records.values()) for _ in es],
          [entities.index(e) for es in records.values() for e in es])),
        shape=(len(names), len(entities)))
    empty = sp.csr_matrix((len(names), 0), dtype=np.float32)
    return RecordTable(
        ids=[f"rec:{n}" for n in names], names=names, sources=["t"] * len(names),
        attributes=[[e for e in es if e in attributes] for es in records.values()],
        image_ids=[], image_paths=[], image_vecs=np.zeros((0, 4), np.float32),
        text_ids=[], text_strings=[], text_kinds=[], text_vecs=np.zeros((0, 4), np.float32),
        entity_ids=[f"ent:{e.casefold()}" for e in entities], entity_names=entities,
        rec_image=empty, rec_text=empty, rec_entity=rec_entity,
        rec_tag=sp.csr_matrix((len(names), len(entities)), dtype=np.float32),
        attribute_entity=np.array([e in attributes for e in entities]), bm25=Bm25Index(names))


def test_a_stated_attribute_and_a_mention_of_the_same_word_are_one_concept() -> None:
    """"black heels" links to the mentions *black heel* and *heel* and to the attributes baseColour:Black and
    articleType:Heels. A product that states both attributes covers the query as fully as one whose name says
    "black heels"; a brown heel covers only its kind; the mention and the attribute are not two rewards."""
    attributes = {"baseColour:Black", "baseColour:Brown", "articleType:Heels"}
    table = _table_of({
        "named": ["black heel", "heel", "baseColour:Black", "articleType:Heels"],
        "stated": ["baseColour:Black", "articleType:Heels"],
        "brown": ["heel", "brown heel", "baseColour:Brown", "articleType:Heels"],
        "other": ["baseColour:Brown"],
    }, attributes)
    query = [[(f"ent:{e.casefold()}", 1.0) for e in ("black heel", "heel", "baseColour:Black", "articleType:Heels")]]
    share = RecordRanker(table).entity_share(query, tag_weight=0.0)[0]
    named, stated, brown, other = share
    assert named == pytest.approx(1.0) and stated == pytest.approx(1.0)
    assert 0 < brown < stated and other == 0


def test_a_photos_several_names_for_one_word_are_one_guess() -> None:
    """Two entity names guessed near a photo of a belt (`belt`, `belts`) both stand for `belt`. In a text query
    each name the user's words give counts, so `belt` weighs twice what `black` does; for a photo they are one
    guess, and the colour a record covers weighs as much as the belt (equal IDFs: one record each)."""
    table = _table_of({"belt": ["belt", "belts"], "black": ["black"]}, set())
    names = [[(f"ent:{e}", 1.0) for e in ("belt", "belts", "black")]]
    ranker = RecordRanker(table)
    assert ranker.entity_share(names, tag_weight=0.0)[0] == pytest.approx([2 / 3, 1 / 3])
    assert ranker.entity_share(names, tag_weight=0.0, guessed=True)[0] == pytest.approx([1 / 2, 1 / 2])
    photo = QuerySet("image", np.zeros((1, 4), np.float32), None, names)
    assert ranker.attribute_fit(photo, tag_weight=0.0)[0] == pytest.approx([1 / 2, 1 / 2])


def test_a_record_stating_another_value_of_a_named_attribute_ranks_below_one_that_says_nothing() -> None:
    """"red watch" names baseColour:Red. A black watch of the brand the query also names shares more of the query's
    rarer words than a red watch, and a watch whose colour is not stated covers as much as the black one: the
    black watch states a colour the shopper did not ask for, so on the attribute signal it must come after both.
    A record that has the query's entity `red` covers the concept, whatever colour it states, and one whose words
    say red (a two-tone "red black" watch stating black) contradicts nothing; a photo's predicted values are
    guesses, so an image query's attribute signal is the coverage alone."""
    attributes = {"baseColour:Red", "baseColour:Black", "articleType:Watches"}
    table = _table_of({
        "red": ["baseColour:Red", "articleType:Watches"],
        "black_puma": ["baseColour:Black", "articleType:Watches", "puma"],
        "unstated": ["articleType:Watches", "puma"],
        "named_red": ["red", "baseColour:Black", "articleType:Watches"],
        "red black": ["baseColour:Black", "articleType:Watches"],
    }, attributes)
    entities = [[(f"ent:{e.casefold()}", 1.0) for e in ("baseColour:Red", "red", "articleType:Watches", "puma")]]
    ranker = RecordRanker(table)
    text = QuerySet("text", np.zeros((1, 4), np.float32), ["puma red watch"], entities)
    red, black_puma, unstated, named_red, two_tone = ranker.attribute_fit(text, tag_weight=0.0)[0]
    share = ranker.entity_share(entities, tag_weight=0.0)[0]
    assert share[1] == pytest.approx(share[2])  # coverage alone cannot tell them apart
    assert black_puma < unstated and black_puma < red
    assert named_red == pytest.approx(share[3])  # covered by its name: nothing contradicted
    assert two_tone == pytest.approx(share[4]) and black_puma < two_tone
    assert ranker.contradictions(entities[0], 1) == [("baseColour:Black", ["baseColour:Red"])]
    assert ranker.contradictions(entities[0], 4) == []
    photo = QuerySet("image", np.zeros((1, 4), np.float32), None, entities)
    assert np.allclose(ranker.attribute_fit(photo, tag_weight=0.0)[0], share)


def test_an_attribute_records_list_several_values_of_contradicts_nothing() -> None:
    """A radiology case lists the planes of the images it holds: a case stating only `coronal` may well have been
    imaged axially too, so "axial CT" must not count it as contradicting `axial` when many cases state several
    planes; a one-value attribute (the region) still contradicts."""
    attributes = {"plane:axial", "plane:coronal", "region:chest", "region:head"}
    table = _table_of({
        "both": ["plane:axial", "plane:coronal", "region:chest"],
        "coronal": ["plane:coronal", "region:chest"],
        "axial": ["plane:axial", "region:head"],
        "also_both": ["plane:axial", "plane:coronal", "region:head"],
    }, attributes)
    entities = [[(f"ent:{e.casefold()}", 1.0) for e in ("plane:axial", "region:chest")]]
    conflict = RecordRanker(table).entity_conflict(entities)[0]
    both, coronal, axial, also_both = conflict
    assert coronal == 0 and both == 0  # half the cases list two planes: a listed plane excludes none
    assert axial > 0 and also_both > 0  # they state the head, not the chest


def test_an_attribute_whose_values_are_each_one_records_own_contradicts_nothing() -> None:
    """A radiology case's diagnosis is free text, nearly every case's its own: "sacral fracture" linking to one
    case's diagnosis must not count every other case, each stating its own diagnosis, as contradicting it (its
    images may well show one), while a facet the cases share (the region) still contradicts."""
    attributes = {"diagnosis:sacral fracture", "diagnosis:pelvic hematoma", "diagnosis:stress reaction",
                  "diagnosis:osteoporosis", "region:pelvis", "region:head"}
    table = _table_of({
        "fracture": ["diagnosis:sacral fracture", "region:pelvis"],
        "hematoma": ["diagnosis:pelvic hematoma", "region:pelvis"],
        "stress": ["diagnosis:stress reaction", "region:pelvis"],
        "skull": ["diagnosis:osteoporosis", "region:head"],
    }, attributes)
    entities = [[(f"ent:{e.casefold()}", 1.0) for e in ("diagnosis:sacral fracture", "region:pelvis")]]
    fracture, hematoma, stress, skull = RecordRanker(table).entity_conflict(entities)[0]
    assert fracture == hematoma == stress == 0
    assert skull > 0


def test_a_value_that_fits_any_asked_value_contradicts_nothing() -> None:
    """A unisex shoe is a shoe for men, and a multicoloured one may be red: "red shoes for men" must not count
    them as contradicting `men` or `red` (nor say so in the explanation), while a women's shoe and a black one
    still contradict."""
    attributes = {"gender:Men", "gender:Women", "gender:Unisex", "baseColour:Red", "baseColour:Black",
                  "baseColour:Multi"}
    table = _table_of({
        "unisex": ["gender:Unisex", "baseColour:Red", "shoe"],
        "multi": ["gender:Men", "baseColour:Multi", "shoe"],
        "women": ["gender:Women", "baseColour:Red", "shoe"],
        "black": ["gender:Men", "baseColour:Black", "shoe"],
    }, attributes)
    entities = [[(f"ent:{e.casefold()}", 1.0) for e in ("gender:Men", "baseColour:Red", "shoe")]]
    ranker = RecordRanker(table)
    unisex, multi, women, black = ranker.entity_conflict(entities)[0]
    assert unisex == 0 and multi == 0
    assert women > 0 and black > 0
    assert ranker.contradictions(entities[0], 0) == [] and ranker.contradictions(entities[0], 1) == []
    assert ranker.contradictions(entities[0], 2) == [("gender:Women", ["gender:Men"])]


def test_the_graph_does_not_vouch_for_a_record_that_contradicts_the_query() -> None:
    """"red dress": the one red dress is the best seed and spreads its kind to the pink dresses, which are also
    like each other; graph expansion must not lift a pink dress over it (a pink dress states another colour than
    the one asked), in a full scoring and in a single search over candidates alike. A photo's query keeps the
    graph's support whatever the records state (its values are guesses)."""
    attributes = {"baseColour:Red", "baseColour:Pink", "articleType:Dresses", "season:Summer"}
    table = _table_of({
        "red": ["baseColour:Red", "articleType:Dresses"],
        "pink1": ["baseColour:Pink", "articleType:Dresses", "season:Summer", "ruffle"],
        "pink2": ["baseColour:Pink", "articleType:Dresses", "season:Summer", "ruffle"],
        "pink3": ["baseColour:Pink", "articleType:Dresses", "season:Summer", "ruffle"],
        **{f"belt{i}": ["belt", f"buckle{i}"] for i in range(6)},
    }, attributes)
    entities = [[(f"ent:{e.casefold()}", 1.0) for e in ("baseColour:Red", "articleType:Dresses")]]
    weights = RankWeights(lexical=0.0, text=0.0, image=0.0, attribute=1.0, gnn=0.0, graph_entity=2.0,
                          graph_image=0.0, graph_text=0.0, seeds=4, temperature=1.0, contradicted_graph=0.0)
    text = QuerySet("text", np.zeros((1, 4), np.float32), ["red dress"], entities)
    for ranker in (RecordRanker(table), RecordRanker(table, exact_max=0)):
        scored = ranker.search_scores(text, weights)
        assert int(np.argmax(scored.fused[0])) == 0
        assert (scored.signals["graph_entity"][0, 1:4] <= 0).all()
    photo = QuerySet("image", np.zeros((1, 4), np.float32), None, entities)
    assert (RecordRanker(table).score(photo, weights).signals["graph_entity"][0, 1:4] > 0).all()


def test_a_seed_gets_from_itself_what_its_nearest_other_record_gets_from_it() -> None:
    """Graph expansion must not echo a seed back to itself. The query's best record (`odd`) holds most of the
    seeds' weight and shares nothing with the other seeds: on graph_entity it scores what its nearest other record
    (`twin`, not a seed) gets from it, not its own profile at its own weight (it had scored the collection's highest
    graph signal whatever the other seeds said). A seed whose nearest other record is its duplicate (`p1`) keeps
    its value: no penalty either."""
    table = _table_of({
        "odd": ["boerhaave", "oesophagus"], "twin": ["boerhaave", "perforation"],
        "p1": ["pneumothorax", "chest"], "p2": ["pneumothorax", "chest"], "p3": ["pneumothorax", "chest"],
        "far": ["kidney"],
    }, attributes=set())
    stage1 = np.array([[4.0, -1.0, 1.0, 1.0, 1.0, -2.0]], np.float32)
    weights = RankWeights(graph_entity=1.0, graph_image=0.0, graph_text=0.0, seeds=4, temperature=1.0)
    ranker = RecordRanker(table)
    query = QuerySet("text", np.zeros((1, 4), np.float32), ["pneumothorax"], [[]])
    graph, seeds, p = ranker.graph_signals(query, stage1, weights)
    odd, twin, p1, p2, p3, far = graph["graph_entity"][0]
    assert sorted(seeds[0]) == [0, 2, 3, 4] and p[0].max() > 0.8  # `odd` holds most of the seeds' weight
    assert odd == pytest.approx(twin) and far < p1 == pytest.approx(p2) == pytest.approx(p3)
    prof = ranker._entity_profiles(0.0)[0].toarray()
    assert ranker.echo("graph_entity", np.array([0, 2]), weights) == pytest.approx([prof[0] @ prof[1] - 1.0, 0.0])


def test_an_image_query_uses_what_the_collection_holds() -> None:
    """With no images in the collection, an image query's own-modality weight goes to the cross-modal text
    signal; with no stated attributes, it does not expand through the entities of the records it resembles.
    Text queries keep their weights."""
    image_w = RankWeights(text=0.25, image=1.0, graph_entity=1.0)
    bare = RecordRanker(_table_of({"a": ["dog"], "b": ["grass"]}, attributes=set()))
    w = bare.weights_for("image", image_w)
    assert (w.text, w.image, w.graph_entity) == (1.25, 0.0, 0.0)
    assert bare.weights_for("image", w) == w and bare.weights_for("text", image_w) == image_w
    stated = RecordRanker(_table_of({"a": ["colour:Black"], "b": ["colour:Brown"]}, {"colour:Black", "colour:Brown"}))
    assert stated.weights_for("image", image_w).graph_entity == 1.0


def test_the_hub_signal_lowers_a_record_that_is_near_every_text() -> None:
    """NNN's correction as a signal: the image `hub` sits near all of the collection's texts, so a text query
    that is only roughly like it, and more like one other record, finds that record first once `hub` counts.
    With the image signal at weight 1 and `hub` at alpha, the fused score is NNN's `q . g - alpha * degree(g)`,
    standardised by the query's own spread of `q . g`."""
    unit = lambda v: (np.asarray(v, np.float32) / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    images = np.stack([unit([1, 0, 0, 0]), unit([0, 1, 0, 0]), unit([0, 0, 1, 0]), unit([1, 1, 1, 0.2])])
    texts = np.stack([unit([1, 0, 0, 0.1]), unit([0, 1, 0, 0.1]), unit([0, 0, 1, 0.1]), unit([0, 0, 0, 1])])
    n = len(images)
    eye = sp.identity(n, np.float32, format="csr")
    names = ["a", "b", "c", "hub"]
    table = RecordTable(
        ids=[f"rec:{x}" for x in names], names=names, sources=["t"] * n, attributes=[[] for _ in names],
        image_ids=[f"img:{x}" for x in names], image_paths=[f"{x}.jpg" for x in names], image_vecs=images,
        text_ids=[f"txt:{x}" for x in names], text_strings=names, text_kinds=["name"] * n,
        text_vecs=texts, entity_ids=[], entity_names=[],
        rec_image=eye, rec_text=eye, rec_entity=sp.csr_matrix((n, 0), dtype=np.float32),
        rec_tag=sp.csr_matrix((n, 0), dtype=np.float32), attribute_entity=np.zeros(0, bool), bm25=Bm25Index(names))
    ranker = RecordRanker(table)
    penalty = ranker.hub_penalty("text", k=3)
    assert penalty.argmin() == 3 and np.isclose(penalty.mean(), 0.0, atol=1e-6)
    query = QuerySet("text", unit([0.9, 0.5, 0.4, 0])[None, :])
    plain = ranker.score(query, RankWeights().only("image")).fused[0]
    corrected = ranker.score(query, RankWeights(hub=1.0, hub_k=3).only("image", "hub")).fused[0]
    assert plain.argmax() == 3 and corrected.argmax() == 0
    raw = images @ query.vectors[0]
    degree = np.sort(images @ texts.T, axis=1)[:, -3:].mean(axis=1)
    nnn = raw - 1.0 * (degree - degree.mean())
    np.testing.assert_allclose(corrected, (nnn - raw.mean()) / raw.std(), atol=1e-5)


def test_a_chinese_query_finds_the_english_product_it_asks_for(catalog: tuple) -> None:
    """白色运动鞋 (white sports shoes) on the English catalog: the one white sports shoe comes first, through the
    English senses of its words, and the explanation says which words were translated."""
    gallery, encoder, _, _ = catalog
    retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
    top = retriever.search(Query(text="白色运动鞋"), k=3)[0]
    assert top.title == "Reebok Men Raceon White Sports Shoes"
    assert {"白色 (white)", "运动鞋 (sports shoes)"} <= set(top.explanation.matched_words)
    assert any("translated from 运动鞋" in step.name for path in top.explanation.paths for step in path)


def test_weights_saved_before_hub_took_nnn_units_take_the_default_hub() -> None:
    """A config of version 1 weighed `hub` in z-units: it keeps its other weights and a hub it switched off."""
    old = RankingConfig.from_json({"text": {"hub": 0.25, "hub_k": 16, "lexical": 2.0}, "image": {"hub": 0.0},
                                   "tuned_on": "fashion dev"})
    assert (old.text.hub, old.text.hub_k, old.text.lexical) == (DEFAULT_TEXT.hub, DEFAULT_TEXT.hub_k, 2.0)
    assert old.image.hub == 0.0 and old.tuned_on == "fashion dev"
    assert RankingConfig.from_json(old.to_json()) == old
    assert RankingConfig.from_json(replace(old, text=replace(old.text, hub=0.6)).to_json()).text.hub == 0.6


def test_a_weight_saved_before_it_existed_takes_its_modalitys_default() -> None:
    """A workspace tuned before `closest` existed keeps its tuned weights and gains the default `closest`."""
    saved = RankingConfig(replace(DEFAULT_TEXT, lexical=2.0), replace(DEFAULT_IMAGE, attribute=1.0), "fashion dev")
    obj = saved.to_json()
    for kind in ("text", "image"):
        del obj[kind]["closest"]
    old = RankingConfig.from_json(obj)
    assert old == saved and old.image.closest == DEFAULT_IMAGE.closest > 0


def test_an_image_query_reads_the_texts_only_of_records_without_an_image() -> None:
    """A product with a photo answers a photo with that photo: its name's cross-modal similarity does not score it
    (it picked the wrong seeds: a formal shoe's photo found sandals). A caption without an image has only its text,
    and keeps it. A text query reads every record's texts. The candidate search agrees with the exact one."""
    unit = lambda v: (np.asarray(v, np.float32) / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    names = ["shoe", "sandal", "caption a", "caption b"]
    images = np.stack([unit([1, 0, 0, 0]), unit([0, 1, 0, 0])])
    texts = np.stack([unit([0, 1, 0.2, 0]), unit([1, 0, 0.2, 0]), unit([1, 0, 0, 0.3]), unit([0, 1, 0, 0.3])])
    n = len(names)
    rec_image = sp.csr_matrix((np.ones(2, np.float32), ([0, 1], [0, 1])), shape=(n, 2))
    table = RecordTable(
        ids=[f"rec:{x}" for x in names], names=names, sources=["t"] * n, attributes=[[] for _ in names],
        image_ids=["img:shoe", "img:sandal"], image_paths=["shoe.jpg", "sandal.jpg"], image_vecs=images,
        text_ids=[f"txt:{x}" for x in names], text_strings=names, text_kinds=["name"] * n, text_vecs=texts,
        entity_ids=[], entity_names=[], rec_image=rec_image, rec_text=sp.identity(n, np.float32, format="csr"),
        rec_entity=sp.csr_matrix((n, 0), dtype=np.float32), rec_tag=sp.csr_matrix((n, 0), dtype=np.float32),
        attribute_entity=np.zeros(0, bool), bm25=Bm25Index(names))
    weights = RankWeights(text=1.0, image=1.0).only("text", "image")
    photo = QuerySet("image", unit([1, 0, 0, 0])[None, :])
    for ranker in (RecordRanker(table), RecordRanker(table, exact_max=0)):
        scored = ranker.search_scores(photo, weights)
        text = scored.signals["text"][0]
        assert text[0] == 0 and text[1] == 0  # the photographed products: no text signal
        assert text[2] > 0 > text[3]  # the captions: the one like the photo first
        assert scored.fused[0].argmax() == 0  # the shoe's own look, not the sandal's name ("shoe"-like text)
    words = RecordRanker(table).score(QuerySet("text", unit([1, 0, 0.2, 0])[None, :]), weights).signals["text"][0]
    assert words[1] == words.max() and np.count_nonzero(words) == n


def test_closest_credits_the_nearest_images_by_rank_and_the_same_picture_alike() -> None:
    raw = np.array([[0.9, 0.5, np.nan, 0.9, 0.7, 0.1]], np.float32)
    got = closest_signal(raw)[0]
    np.testing.assert_allclose(got, [1.0, 1 / 4, 0.0, 1.0, 1 / 3, 1 / 5])  # two copies of a picture share rank 1


def test_a_photo_of_a_record_finds_that_record_before_its_look_alike() -> None:
    """A shopper's photo of a product in the catalog (here a slightly changed copy of its picture) must find that
    product first. Its look-alike states the brand and type predicted for the photo, which the attribute signal
    rewards, and the photo's own product beats it on the image signal by a fraction of a z-unit: untuned, without
    `closest`, the look-alike came first. Exact and candidate search agree."""
    unit = lambda v: (np.asarray(v, np.float32) / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    rng = np.random.default_rng(0)
    own = unit(rng.normal(size=16))
    look = unit(own + 0.4 * unit(rng.normal(size=16)))
    images = np.stack([own, look, *[unit(rng.normal(size=16)) for _ in range(40)]])
    names = ["own", "look", *[f"other {i}" for i in range(40)]]
    stated = ([["colour:White"], ["colour:White", "brand:Nike", "type:Tshirts"]]
              + [["colour:Black", "brand:Nike", "type:Tshirts"]] * 20
              + [["colour:Black", "brand:Puma", "type:Shoes"]] * 20)
    entities = sorted({e for es in stated for e in es})
    n = len(names)
    eye = sp.identity(n, np.float32, format="csr")
    rec_entity = sp.csr_matrix((np.ones(sum(map(len, stated)), np.float32),
                                ([i for i, es in enumerate(stated) for _ in es],
                                 [entities.index(e) for es in stated for e in es])), shape=(n, len(entities)))
    table = RecordTable(
        ids=[f"rec:{x}" for x in names], names=names, sources=["t"] * n, attributes=stated,
        image_ids=[f"img:{x}" for x in names], image_paths=[f"{x}.jpg" for x in names], image_vecs=images,
        text_ids=[], text_strings=[], text_kinds=[], text_vecs=np.zeros((0, 16), np.float32),
        entity_ids=[f"ent:{e.casefold()}" for e in entities], entity_names=entities,
        rec_image=eye, rec_text=sp.csr_matrix((n, 0), dtype=np.float32), rec_entity=rec_entity,
        rec_tag=sp.csr_matrix((n, len(entities)), dtype=np.float32), attribute_entity=np.ones(len(entities), bool),
        bm25=Bm25Index(names))
    photo = unit(own + 0.15 * unit(rng.normal(size=16)))
    predicted = [[(f"ent:{e.casefold()}", 0.9) for e in ("brand:Nike", "type:Tshirts", "colour:White")]]
    query = QuerySet("image", photo[None, :], None, predicted)
    ranker = RecordRanker(table)
    assert names[int(ranker.score(query, replace(DEFAULT_IMAGE, closest=0.0)).fused[0].argmax())] == "look"
    for searcher in (ranker, RecordRanker(table, exact_max=0)):
        scored = searcher.search_scores(query, DEFAULT_IMAGE)
        assert names[int(scored.fused[0].argmax())] == "own"
        assert scored.signals["closest"][0][:2].tolist() == [1.0, 0.5]


def test_a_photo_finds_the_look_alike_of_its_own_colour_first() -> None:
    """The encoder's vector hardly sees colour: a green kurta's photo lay nearer a white kurta than a green one,
    and its first page was white kurtas. The `colour` signal compares the photos' colour descriptors: the green
    look-alike comes first. An image stored without a descriptor (ingested before they existed) is absent from
    the signal, not a mismatch. Exact and candidate search agree."""
    unit = lambda v: (np.asarray(v, np.float32) / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    rng = np.random.default_rng(1)
    kurta = unit(rng.normal(size=16))
    white, green = unit(kurta + 0.30 * unit(rng.normal(size=16))), unit(kurta + 0.45 * unit(rng.normal(size=16)))
    names = ["white", "green", "undescribed", *[f"other {i}" for i in range(30)]]
    images = np.stack([white, green, unit(kurta + 0.5 * unit(rng.normal(size=16))),
                       *[unit(rng.normal(size=16)) for _ in range(30)]])

    def shot(rgb: tuple[int, int, int]) -> np.ndarray:
        image = Image.new("RGB", (90, 120), (255, 255, 255))
        image.paste(Image.new("RGB", (50, 80), rgb), (20, 20))
        return colour_descriptor(image)

    palette = [(200, 30, 30), (30, 30, 200), (220, 200, 30), (20, 20, 20)]
    colours = np.stack([shot((245, 245, 245)), shot((40, 160, 50)), np.full(BINS, np.nan, np.float32),
                        *[shot(palette[i % 4]) for i in range(30)]])
    n = len(names)
    table = RecordTable(
        ids=[f"rec:{x}" for x in names], names=names, sources=["t"] * n, attributes=[[] for _ in names],
        image_ids=[f"img:{x}" for x in names], image_paths=[f"{x}.jpg" for x in names], image_vecs=images,
        text_ids=[], text_strings=[], text_kinds=[], text_vecs=np.zeros((0, 16), np.float32),
        entity_ids=[], entity_names=[], rec_image=sp.identity(n, np.float32, format="csr"),
        rec_text=sp.csr_matrix((n, 0), dtype=np.float32), rec_entity=sp.csr_matrix((n, 0), dtype=np.float32),
        rec_tag=sp.csr_matrix((n, 0), dtype=np.float32), attribute_entity=np.zeros(0, bool),
        bm25=Bm25Index(names), image_colours=colours)
    query = QuerySet("image", unit(kurta + 0.1 * unit(rng.normal(size=16)))[None, :], None, [],
                     shot((35, 150, 45))[None, :])
    ranker = RecordRanker(table)
    blind = ranker.score(query, replace(DEFAULT_IMAGE, colour=0.0))
    assert names[int(blind.fused[0].argmax())] == "white" and "colour" not in blind.signals
    for searcher in (ranker, RecordRanker(table, exact_max=0)):
        scored = searcher.search_scores(query, DEFAULT_IMAGE)
        assert names[int(scored.fused[0].argmax())] == "green"
        colour = scored.signals["colour"][0]
        assert colour[1] > colour[0] and colour[2] == 0.0


def test_photos_without_hue_are_not_compared_by_colour() -> None:
    """Radiographs are grey: their descriptors hold brightness alone, which lowered MedPix's photo search. A
    collection whose photos have no hue scores image queries without `colour`; one in colour keeps it."""
    rng = np.random.default_rng(2)
    n = 12
    vecs = rng.normal(size=(n, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

    def table_of(photos: list[Image.Image]) -> RecordTable:
        names = [f"case {i}" for i in range(n)]
        return RecordTable(
            ids=[f"rec:{x}" for x in names], names=names, sources=["t"] * n, attributes=[[] for _ in names],
            image_ids=[f"img:{i}" for i in range(n)], image_paths=[""] * n, image_vecs=vecs,
            text_ids=[], text_strings=[], text_kinds=[], text_vecs=np.zeros((0, 8), np.float32),
            entity_ids=[], entity_names=[], rec_image=sp.identity(n, np.float32, format="csr"),
            rec_text=sp.csr_matrix((n, 0), dtype=np.float32), rec_entity=sp.csr_matrix((n, 0), dtype=np.float32),
            rec_tag=sp.csr_matrix((n, 0), dtype=np.float32), attribute_entity=np.zeros(0, bool),
            bm25=Bm25Index(names), image_colours=np.stack([colour_descriptor(p) for p in photos]))

    grey = [Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8), mode="L") for _ in range(n)]
    coloured = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), mode="RGB") for _ in range(n)]
    query = QuerySet("image", vecs[:1], None, [], colour_descriptor(grey[0])[None, :])
    for photos, compared in ((grey, False), (coloured, True)):
        ranker = RecordRanker(table_of(photos))
        assert (ranker.weights_for("image").colour > 0) is compared
        assert ("colour" in ranker.score(query).signals) is compared


def _product_shots(stated: bool = False) -> tuple[RecordTable, np.ndarray, np.ndarray]:
    """Twenty kinds of product, two shots of each (each kind stating an attribute when `stated`), with a new shot of
    one kind and a street scene like none."""
    unit = lambda v: (np.asarray(v, np.float32) / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    rng = np.random.default_rng(2)
    kinds = [unit(rng.normal(size=32)) for _ in range(20)]
    images = np.stack([unit(k + 0.3 * unit(rng.normal(size=32))) for k in kinds for _ in range(2)])  # pairs
    n = len(images)
    names = [f"product {i}" for i in range(n)]
    table = RecordTable(
        ids=[f"rec:{i}" for i in range(n)], names=names, sources=["t"] * n, attributes=[[] for _ in names],
        image_ids=[f"img:{i}" for i in range(n)], image_paths=[f"{i}.jpg" for i in range(n)], image_vecs=images,
        text_ids=[], text_strings=[], text_kinds=[], text_vecs=np.zeros((0, 32), np.float32),
        entity_ids=[], entity_names=[], rec_image=sp.identity(n, np.float32, format="csr"),
        rec_text=sp.csr_matrix((n, 0), dtype=np.float32), rec_entity=sp.csr_matrix((n, 0), dtype=np.float32),
        rec_tag=sp.csr_matrix((n, 0), dtype=np.float32), attribute_entity=np.zeros(0, bool), bm25=Bm25Index(names))
    if stated:
        kinds_of = np.arange(n) // 2
        table = replace(table, entity_ids=[f"ent:kind:{k}" for k in range(20)], entity_names=[f"kind:{k}" for k in
                                                                                             range(20)],
                        attributes=[[f"kind:{k}"] for k in kinds_of], attribute_entity=np.ones(20, bool),
                        rec_entity=sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), kinds_of)), shape=(n, 20)),
                        rec_tag=sp.csr_matrix((n, 20), dtype=np.float32))
    return table, unit(kinds[3] + 0.3 * unit(rng.normal(size=32))), unit(rng.normal(size=32))


def test_a_photo_unlike_every_image_of_the_collection_is_told_apart() -> None:
    """A street scene asked of a catalog's product shots lies farther from every image than the collection's own
    images lie from their nearest other record: its hits match it only loosely, and search says so. Exact and
    index-backed likeness agree."""
    table, product_shot, scene = _product_shots()
    images = table.image_vecs
    exact, indexed = RecordRanker(table), RecordRanker(table, exact_max=0)
    floor = exact.image_floor()
    assert 0.7 < floor < 0.95 and indexed.image_floor() == pytest.approx(floor, abs=1e-5)
    for ranker in (exact, indexed):
        likeness = ranker.image_likeness(np.stack([product_shot, scene, images[5]]))
        assert likeness[0] > floor > likeness[1]
        assert likeness[2] == pytest.approx(1.0)  # one of the collection's own images


def test_a_photo_unlike_the_collection_is_ranked_by_its_look_alone() -> None:
    """On a collection that states attributes, what the other signals read from such a photo (the attribute probe's
    predictions, graph expansion's seeds) is extrapolated from product shots it does not resemble: it is ranked by its
    image similarity alone, in a batch as in a single search above `exact_max`. A photo like the collection keeps
    every signal, and the `gnn` mode's weights stay as they are. A collection without stated attributes (captioned
    photos) ranks it as any photo: there it is ranked by its look already, and flickr8k/dev's photos against the
    encoder's own training photos fell below the floor for 87 of 1,000 (without their NNN correction, R@1 33.9 <
    NNN's 34.0)."""
    plain = RecordRanker(_product_shots()[0])
    table, product_shot, scene = _product_shots(stated=True)
    queries = QuerySet("image", np.stack([product_shot, scene]))
    assert plain.unlike(queries).tolist() == [False, True] and not plain.ranked_by_look(queries).any()
    for ranker in (RecordRanker(table), RecordRanker(table, exact_max=0)):
        assert ranker.unlike(queries).tolist() == [False, True] == ranker.ranked_by_look(queries).tolist()
        scored = ranker.score(queries)
        np.testing.assert_allclose(scored.fused[1], scored.signals["image"][1], rtol=1e-6)
        assert not np.allclose(scored.fused[0], scored.signals["image"][0])  # closest and hub count for it
        single = ranker.search_scores(queries.take([1]))
        found = np.isfinite(single.fused[0])
        np.testing.assert_allclose(single.fused[0][found], single.signals["image"][0][found], rtol=1e-6)
    refined = RankWeights(gnn=1.0).only("gnn")
    assert for_unlike(refined) == refined and for_unlike(RankWeights()) == RankWeights().only("image", "text", "colour")
