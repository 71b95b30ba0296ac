"""Zero-shot image tags: written only above the score where, on this collection, they are mostly right."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from mmkg.collection import open_collection
from mmkg.graph.schema import Rel
from mmkg.ingest.detect import open_source
from mmkg.ingest.images import load_image
from mmkg.ingest.pipeline import TAG_PRECISION, Ingestor, tag_threshold
from mmkg.ingest.records import Record, TextField
from mmkg.retrieval.record_search import open_retriever
from mmkg.retrieval.search import Query
from mmkg.settings import Settings


def test_tags_respect_the_calibrated_threshold(home: Path, shared_data: Path, tmp_path: Path) -> None:
    settings = Settings.load(home=home)
    source = open_source(shared_data / "flickr8k" / "dev")
    records = [r for _, r in zip(range(40), source.records(), strict=False)]
    with open_collection(settings) as col:
        Ingestor(settings, col.store, col.vectors, col.encoder).run(records, source.name, progress=False)
        tags = [e for e in col.store.iter_edges(Rel.DEPICTS) if e.props.get("source") == "tag"]
    calibration = json.loads((home / "tag_calibration.json").read_text(encoding="utf-8"))
    assert calibration["target_precision"] == TAG_PRECISION and calibration["table"]
    threshold = calibration["threshold"]
    if threshold is None:  # no score at which tags are right often enough: none is written
        assert tags == []
    else:
        row = next(r for r in calibration["table"] if r["threshold"] == threshold)
        assert row["precision"] >= TAG_PRECISION
        assert tags and all(float(e.props["score"]) >= threshold for e in tags)


def test_a_catalog_whose_tags_are_wrong_gets_none(home: Path, fashion_subset, tmp_path: Path) -> None:
    """Flickr-trained vectors tag product photos with other products' words (under 10 % right on the fashion
    catalog, benchmarks/tag_precision.py): such tags are not written, and explanations cannot cite them."""
    settings = Settings.load(home=home)
    source = open_source(fashion_subset(tmp_path / "fashion", 60))
    with open_collection(settings) as col:
        Ingestor(settings, col.store, col.vectors, col.encoder).run(source.records(), source.name, progress=False)
        tags = [e for e in col.store.iter_edges(Rel.DEPICTS) if e.props.get("source") == "tag"]
    calibration = json.loads((home / "tag_calibration.json").read_text(encoding="utf-8"))
    assert calibration["threshold"] is None and tags == [] and tag_threshold(settings) is None
    with open_collection(settings, read_only=True) as col:  # nor does an image query get tags here
        image = load_image(next((tmp_path / "fashion" / "images").glob("*.jpg")))[0]
        _, entities = open_retriever(settings, col.store, col.vectors, col.encoder).prepare(Query(image=image))
    assert [e for e in entities if e.how != "predicts"] == []  # only the attribute probe's values, marked so


def test_an_image_query_gets_no_tags_where_none_were_measured(home: Path) -> None:
    """A collection of captions alone has no images whose tags could be checked against their own texts, so
    nothing says which tag scores are right: an image query over it is not tagged (its words would otherwise
    meet the captions' words through guesses)."""
    settings = Settings.load(home=home)
    records = [Record(f"c{i}", (), (TextField("caption", text),)) for i, text in
               enumerate(["a dog runs on the grass", "two dogs play in the snow", "a man rides a bike"])]
    with open_collection(settings) as col:
        Ingestor(settings, col.store, col.vectors, col.encoder).run(records, "captions", progress=False)
    assert not (home / "tag_calibration.json").exists() and tag_threshold(settings) is None
    with open_collection(settings, read_only=True) as col:
        image = Image.new("RGB", (64, 64), (90, 140, 60))
        _, entities = open_retriever(settings, col.store, col.vectors, col.encoder).prepare(Query(image=image))
    assert entities == []
