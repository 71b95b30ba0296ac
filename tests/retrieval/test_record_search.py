"""Search hits over multi-text records (radiology cases): titled by what names the case, and never merged with
another case that only shares its diagnosis; a catalog query that names a facet value through a synonym."""

from __future__ import annotations

from pathlib import Path

from mmkg.encoders.factory import create_encoder
from mmkg.evaluation.gallery import Gallery
from mmkg.ingest.images import load_image
from mmkg.ingest.records import Record, TextField
from mmkg.retrieval.record_search import RecordRetriever
from mmkg.retrieval.search import Query
from mmkg.settings import Settings
from mmkg.ui import logic


def _case(case_id: str, image: Path, caption: str, diagnosis: str, history: str) -> Record:
    texts = (TextField("caption", caption, image=0), TextField("diagnosis", diagnosis), TextField("history", history))
    return Record(case_id, (image,), texts, attributes=(("modality", "ct"),))


def test_a_case_is_titled_by_its_diagnosis_and_cases_sharing_one_are_both_listed(
        tmp_path: Path, trained_home: Path, shared_data: Path) -> None:
    """The title of a hit (CLI, API) and of its card (explorer) is the case's diagnosis, not whichever of its
    captions or history sorts first; two cases of subdural hematoma are two hits, though their titles read the
    same, while a case listed twice (every text the same) is shown once."""
    images = sorted((shared_data / "medpix2" / "images").glob("*.jpg"))[:4]
    cases = [
        _case("A", images[0], "Axial CT shows a crescent of blood", "Subdural hematoma",
              "Elderly man after a fall"),
        _case("B", images[1], "Noncontrast head CT with a mixed density collection", "Subdural hematoma",
              "Infant brought in with lethargy"),
        _case("A2", images[2], "Axial CT shows a crescent of blood", "Subdural hematoma",
              "Elderly man after a fall"),
        _case("C", images[3], "Kidney with a calculus", "Renal stone", "Flank pain"),
    ]
    settings = Settings.load(home=trained_home)
    encoder = create_encoder(settings)
    gallery = Gallery.ingest(cases, "cases", settings, encoder, tmp_path / "ws")
    try:
        retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
        hits = retriever.search(Query(text="subdural hematoma"), k=4)
        titles = [h.title for h in hits]
        assert titles.count("Subdural hematoma") == 2  # A or A2 (they read the same), and B
        assert {"Renal stone"} <= set(titles) and len(hits) == 3
        assert logic.record_titles(gallery.store, hits) == {h.id: h.title for h in hits}
    finally:
        gallery.close()


def test_an_explanation_names_a_text_of_several_lines_on_one_line(
        tmp_path: Path, trained_home: Path, shared_data: Path) -> None:
    """A case's findings span lines; a path that named them printed its text over several lines of the CLI."""
    images = sorted((shared_data / "medpix2" / "images").glob("*.jpg"))[:2]
    cases = [_case("A", images[0], "Findings:\nAxial CT shows a crescent of blood", "Subdural hematoma",
                   "Elderly man\nafter a fall"),
             _case("B", images[1], "Kidney with\na calculus", "Renal stone", "Flank pain\nfor a day")]
    settings = Settings.load(home=trained_home)
    encoder = create_encoder(settings)
    gallery = Gallery.ingest(cases, "cases", settings, encoder, tmp_path / "ws")
    try:
        retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
        hit = retriever.search(Query(text="crescent of blood"), k=1)[0]
        texts = [step.name for path in hit.explanation.paths for step in path if step.label == "Text"]
        assert texts and all("\n" not in name for name in texts), texts
        assert any(name.startswith("Findings: Axial CT shows a crescent") for name in texts), texts
    finally:
        gallery.close()


WATCHES = ["10707", "10315", "10706", "11229", "10138", "10317", "15281", "14538", "11179"]
"""Three gold watches, four silver ones, a kurti with a golden print and a watch with a golden frame."""


def test_golden_watch_finds_the_gold_watches_and_says_through_which_word(
        tmp_path: Path, fashion_subset, catalog_gallery) -> None:
    """No gold watch of the fashion catalog is named golden (five state the colour Gold); `golden watch` listed
    silver watches first. The query reads golden as WordNet's synonym gold, the facet value the catalog states,
    and the explanation says so."""
    folder = fashion_subset(tmp_path / "watches", len(WATCHES), WATCHES)
    gallery, encoder, _, _ = catalog_gallery(folder, tmp_path / "ws")
    try:
        retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
        hits = retriever.search(Query(text="golden watch"), k=3)
        assert all("baseColour:Gold" in h.attributes for h in hits), [h.title for h in hits]
        assert "golden (gold)" in hits[0].explanation.matched_words
        steps = [step.name for path in hits[0].explanation.paths for step in path]
        assert "baseColour:gold (a synonym of golden)" in steps, steps
    finally:
        gallery.close()


PUMA_WATCHES = ["10394", "10395", "10698", "10325", "10326", "10327", "10328"]
"""Two red Puma watches, a red Esprit watch and four black Puma watches."""


def test_a_watch_stating_another_colour_than_asked_loses_the_attribute_signal_and_says_so(
        tmp_path: Path, fashion_subset, catalog_gallery) -> None:
    """"red puma watch": the black Puma watches share the brand with the query, the red Esprit watch only the
    colour. On the attribute signal every red watch must come before every black one, the red Puma watches lead
    the list, and a black watch says that it states black where the query asked red (explanation and result
    card)."""
    folder = fashion_subset(tmp_path / "watches", len(PUMA_WATCHES), PUMA_WATCHES)
    gallery, encoder, _, _ = catalog_gallery(folder, tmp_path / "ws")
    try:
        retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
        hits = retriever.search(Query(text="red puma watch"), k=7)
        red = [h for h in hits if "baseColour:Red" in h.attributes]
        black = [h for h in hits if "baseColour:Black" in h.attributes]
        assert len(red) == 3 and len(black) == 4
        assert hits[0] in red and hits[1] in red, [h.title for h in hits]
        assert min(h.explanation.signals["attribute"] for h in red) > max(h.explanation.signals["attribute"]
                                                                          for h in black)
        for h in black:
            assert h.explanation.contradicted == [("baseColour:black", ["baseColour:red"])], h.explanation
            assert "states otherwise: baseColour:black (asked baseColour:red)" in h.explanation.lines()
            assert h.explanation.to_json()["contradicted"] == [{"states": "baseColour:black",
                                                                "asked": ["baseColour:red"]}]
            assert logic.short_why(h).endswith("(but states black)"), logic.short_why(h)
        assert all(h.explanation.contradicted == [] for h in red)
    finally:
        gallery.close()


def test_a_photo_query_links_the_attribute_values_predicted_for_it_and_says_so(
        tmp_path: Path, fashion_subset, catalog_gallery) -> None:
    """A photo states nothing, so image search read no attribute and took every hit's type and colour from the
    few products the photo resembles most. The collection's probe predicts the photo's values; the query links to
    them, marked predicted with their probability, and a hit that states one says so in its paths."""
    folder = fashion_subset(tmp_path / "catalog", 80)
    gallery, encoder, settings, records = catalog_gallery(folder, tmp_path / "ws", gallery_size=70)
    try:
        retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
        held_out = records[75]  # not in the gallery: the probe never saw it
        image = load_image(held_out.images[0], settings.max_image_bytes, settings.max_image_pixels)[0]
        qs, entities = retriever.prepare(Query(image=image))
        predicted = {e.name: e.score for e in entities if e.how == "predicts"}
        assert predicted and all(0.0 < p <= 1.0 for p in predicted.values())
        assert qs.entities[0] == [(e.id, e.score) for e in entities]
        category = {k: v for k, v in held_out.attributes}["masterCategory"]
        best = max((n for n in predicted if n.startswith("masterCategory:")), key=predicted.__getitem__)
        assert best.casefold() == f"masterCategory:{category}".casefold()
        hit = retriever.search(Query(image=image), k=1)[0]
        steps = [step.name for path in hit.explanation.paths for step in path]
        assert any("(predicted from the photo, " in s for s in steps), steps
    finally:
        gallery.close()


BELTS = ["14593", "14822", "14826", "14165", "14166", "10330", "10331", "14169", "14170", "14171"]
"""Black belts, two of them listed under one name three times and twice."""


def test_a_hit_is_never_explained_through_a_listing_of_itself(
        tmp_path: Path, fashion_subset, catalog_gallery) -> None:
    """A catalog lists one product several times under one name; a seed titled as the hit read `Solid Black Belts
    -SHARES-> black belt <-SHARES- Solid Black Belts`, which explains nothing."""
    folder = fashion_subset(tmp_path / "belts", len(BELTS), BELTS)
    gallery, encoder, _, _ = catalog_gallery(folder, tmp_path / "ws")
    try:
        retriever = RecordRetriever(gallery.settings, gallery.store, gallery.vectors, encoder, table=gallery.table)
        hits = retriever.search(Query(text="solid black belt"), k=5)
        seeded = [p for h in hits for p in h.explanation.paths if p[0].rel == "SIMILAR"]
        assert seeded, [h.explanation.paths for h in hits]
        for hit in hits:
            for path in hit.explanation.paths:
                if path[0].rel == "SIMILAR":
                    assert path[1].name != path[-1].name, path
    finally:
        gallery.close()
