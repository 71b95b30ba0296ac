"""COCO reader: the real coco-mini collection, and broken annotation files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mmkg.ingest.coco import CocoSource
from mmkg.ingest.records import Record, Skip


def split(items: list[Record | Skip]) -> tuple[list[Record], list[Skip]]:
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Skip)]


def test_real_coco_mini(data: Path) -> None:
    source = CocoSource.open(data / "coco-mini")
    records, skips = split(list(source.records()))
    assert (len(records), len(skips), len(source), source.name) == (159, 0, 159, "coco-mini")
    assert sum(r.meta["split"] == "train2017" for r in records) == 80
    assert all(len(r.texts) == 5 for r in records)
    r139 = next(r for r in records if r.id == "139")
    assert r139.images == ((data / "coco-mini" / "val2017" / "000000000139.jpg").resolve(),)
    assert r139.texts[0].text == "A woman stands in the dining area at the table."
    assert ("category", "person") in r139.attributes and ("category", "dining table") in r139.attributes
    assert ("supercategory", "furniture") in r139.attributes


def make_coco(root: Path, data: Path, captions: object, instances: object | None = None) -> None:
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    shutil.copy(data / "coco-mini" / "val2017" / "000000000139.jpg", root / "val2017" / "a.jpg")
    (root / "annotations" / "captions_val2017.json").write_text(
        captions if isinstance(captions, str) else json.dumps(captions)
    )
    if instances is not None:
        (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))


def test_broken_caption_file_is_one_skip(tmp_path: Path, data: Path) -> None:
    make_coco(tmp_path, data, '{"images": [')
    records, skips = split(list(CocoSource.open(tmp_path).records()))
    assert not records
    assert skips[0].item == "captions_val2017.json" and "not valid JSON" in skips[0].reason


def test_bad_entries_are_skipped_rest_read(tmp_path: Path, data: Path) -> None:
    captions = {
        "images": [
            {"id": 1, "file_name": "a.jpg"},
            {"id": 2},
            {"id": 3, "file_name": "../../etc/passwd"},
            {"id": 4, "file_name": "gone.jpg"},
        ],
        "annotations": [{"image_id": 1, "caption": "a cat"}, {"image_id": 1}],
    }
    instances = {
        "images": [],
        "categories": [{"id": 17, "name": "cat", "supercategory": "animal"}],
        "annotations": [{"image_id": 1, "category_id": 17}, {"image_id": 1, "category_id": 99}],
    }
    make_coco(tmp_path, data, captions, instances)
    records, skips = split(list(CocoSource.open(tmp_path).records()))
    assert [(r.id, [t.text for t in r.texts], r.attributes) for r in records] == [
        ("1", ["a cat"], (("category", "cat"), ("supercategory", "animal")))
    ]
    reasons = {s.item: s.reason for s in skips}
    assert reasons["captions_val2017.json:images[1]"] == "image entry without an id and a file_name"
    assert reasons["captions_val2017.json:annotations[1]"] == "caption annotation without image_id or text"
    assert "leaves the collection folder" in reasons["captions_val2017.json:image 3"]
    assert reasons["captions_val2017.json:image 4"] == "image file not found: val2017/gone.jpg"
    assert "1 instance annotation(s)" in reasons["instances_val2017.json"]
