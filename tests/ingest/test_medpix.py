"""MedPix reader: the real MedPix 2.0 cases, normalised attributes, and a case with a missing image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmkg.errors import UserInputError
from mmkg.ingest.medpix import MedpixSource, diagnosis_names
from mmkg.ingest.records import Record, Skip


def split(items: list[Record | Skip]) -> tuple[list[Record], list[Skip]]:
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Skip)]


@pytest.fixture(scope="module")
def cases(data: Path) -> list[Record]:
    records, skips = split(list(MedpixSource.open(data / "medpix2").records()))
    assert not skips
    return records


def test_real_counts(cases: list[Record], data: Path) -> None:
    assert len(cases) == 671 == len(MedpixSource.open(data / "medpix2"))
    assert sum(len(c.images) for c in cases) == 2050
    assert sum(t.kind == "caption" for c in cases for t in c.texts) == 2050


def test_known_case(cases: list[Record], data: Path) -> None:
    case = next(c for c in cases if c.id == "MPX1009")
    images = data.resolve() / "medpix2" / "images"
    assert case.images == (images / "MPX1009_synpic46283.jpg", images / "MPX1009_synpic46295.jpg")
    captions = [(t.image, t.text) for t in case.texts if t.kind == "caption"]
    assert captions[0][0] == 0 and captions[0][1].startswith("The prostate is enlarged")
    assert captions[1][0] == 1 and captions[1][1].startswith("Bladder is prominent")
    kinds = {t.kind: t.text for t in case.texts if t.kind != "caption"}
    assert kinds["diagnosis"] == "Bladder Diverticulum"
    assert kinds["history"].startswith("73-year-old male with hematuria")
    assert kinds["findings"].startswith("Bladder with thickened wall")
    assert kinds["discussion"].startswith("Bladder diverticula most often occur")
    assert "title" not in kinds  # same words as the diagnosis
    assert all(t.image is None for t in case.texts if t.kind != "caption")
    assert set(case.attributes) >= {
        ("modality", "ct"),
        ("plane", "axial"),
        ("plane", "coronal"),
        ("location", "genitourinary"),
        ("sex", "male"),
        ("diagnosis", "bladder diverticulum"),
        ("acr", "8.9"),
    }
    assert case.meta == {"age": "73"}


def test_modalities_normalised_to_ct_and_mr(cases: list[Record]) -> None:
    values = {v for c in cases for k, v in c.attributes if k == "modality"}
    assert values == {"ct", "mr"}
    assert not [c for c in cases if ("sex", "n/a") in c.attributes]


def test_placeholders_are_not_texts(cases: list[Record]) -> None:
    texts = [t.text.casefold() for c in cases for t in c.texts]
    assert "n/a" not in texts and "please see factoid." not in texts


def test_diagnosis_names() -> None:
    assert diagnosis_names("1) Fronto-nasal encephalocele\n2) Colpocephaly") == [
        "fronto-nasal encephalocele",
        "colpocephaly",
    ]
    assert diagnosis_names("Diagnosis:   Meniscal tear.") == ["meniscal tear"]
    assert (
        diagnosis_names("Findings consistent with Eagle Syndrome in the proper clinical setting, as seen here.") == []
    )
    assert diagnosis_names("N/A") == [] and diagnosis_names(None) == []


def test_missing_image_keeps_the_rest_of_the_case(tmp_path: Path, data: Path) -> None:
    (tmp_path / "images").mkdir()
    shutil.copy(data / "medpix2" / "images" / "MPX1009_synpic46295.jpg", tmp_path / "images")
    descriptions = [
        {
            "Type": "CT",
            "U_id": "C1",
            "image": "MPX1009_synpic46283",
            "Description": {"Caption": "first", "Modality": "CT"},
        },
        {
            "Type": "CT",
            "U_id": "C1",
            "image": "MPX1009_synpic46295",
            "Description": {"Caption": "second", "Plane": None},
        },
        {"U_id": "C2"},
    ]
    cases = [
        {"U_id": "C1", "TAC": ["MPX1009_synpic46283", "MPX1009_synpic46295"], "MRI": [], "Case": {"Title": "T"}},
        {"U_id": "C3", "TAC": ["../../../etc/passwd"], "MRI": None, "Case": None},
        "not a case",
    ]
    (tmp_path / "Descriptions.json").write_text(json.dumps(descriptions))
    (tmp_path / "Case_topic.json").write_text(json.dumps(cases))
    records, skips = split(list(MedpixSource.open(tmp_path).records()))
    assert [r.id for r in records] == ["C1"]
    assert [(t.kind, t.text, t.image) for t in records[0].texts] == [("caption", "second", 0), ("title", "T", None)]
    assert {s.item: s.reason for s in skips} == {
        "Descriptions.json[2]": "entry without an 'image' name and a 'U_id'",
        "case C1": "image file not found: images/MPX1009_synpic46283.jpg",
        "case C3": "path leaves the collection folder: images/../../../etc/passwd.jpg",
        "Case_topic.json[2]": "entry without a 'U_id'",
    }


def test_unparseable_json_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "Descriptions.json").write_text("[")
    (tmp_path / "Case_topic.json").write_text("[]")
    with pytest.raises(UserInputError, match="Descriptions.json is not valid JSON"):
        list(MedpixSource.open(tmp_path).records())
