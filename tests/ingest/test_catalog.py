"""CSV catalog reader and its column mapping: the real fashion catalog, mapping files, bad rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mmkg.errors import UserInputError
from mmkg.ingest.catalog import CatalogSource
from mmkg.ingest.mapping import Mapping, infer_mapping
from mmkg.ingest.records import Record, Skip, TextField

FASHION_ATTRIBUTES = ["gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage"]


def split(items: list[Record | Skip]) -> tuple[list[Record], list[Skip]]:
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Skip)]


def test_real_fashion_catalog_with_inferred_mapping(data: Path) -> None:
    source = CatalogSource.open(data / "fashion")
    assert source.mapping.id == "id"
    assert source.mapping.images == ("image",)
    assert source.mapping.texts == (("productDisplayName", "name"),)
    assert [c for c, _ in source.mapping.attributes] == FASHION_ATTRIBUTES
    records, skips = split(list(source.records()))
    assert (len(records), len(skips), len(source), source.name) == (5000, 0, 5000, "fashion")
    first = records[0]
    assert first.id == "10000"
    assert first.images == ((data / "fashion" / "images" / "10000.jpg").resolve(),)
    assert first.texts == (TextField("name", "Palm Tree Girls Sp Jace Sko White Skirts"),)
    assert dict(first.attributes) == {
        "gender": "Women",
        "masterCategory": "Apparel",
        "subCategory": "Bottomwear",
        "articleType": "Skirts",
        "baseColour": "White",
        "season": "Summer",
        "year": "2011",
        "usage": "Casual",
    }


def test_real_fashion_na_usage_is_dropped(data: Path) -> None:
    records, _ = split(list(CatalogSource.open(data / "fashion").records()))
    assert not [r for r in records if ("usage", "NA") in r.attributes]
    assert sum(1 for r in records if "usage" not in dict(r.attributes)) == 7


def test_mapping_from_json_file(data: Path, tmp_path: Path) -> None:
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(
        json.dumps(
            {
                "id": "id",
                "image": "image",
                "texts": {"productDisplayName": "title"},
                "attributes": {"baseColour": "colour"},
            }
        )
    )
    source = CatalogSource.open(data / "fashion" / "products.csv", mapping_file)
    record = next(r for r in source.records() if isinstance(r, Record))
    assert record.texts == (TextField("title", "Palm Tree Girls Sp Jace Sko White Skirts"),)
    assert record.attributes == (("colour", "White"),)
    assert Mapping.from_dict(source.mapping.to_dict()) == source.mapping


def test_missing_column_in_mapping_names_it_and_the_columns(data: Path, tmp_path: Path) -> None:
    mapping_file = tmp_path / "mapping.json"
    mapping_file.write_text(json.dumps({"id": "id", "images": ["image"], "attributes": ["colour", "gender"]}))
    with pytest.raises(UserInputError) as err:
        CatalogSource.open(data / "fashion", mapping_file)
    message = str(err.value)
    assert "'colour'" in message and "products.csv" in message
    assert "id, image, productDisplayName, gender, masterCategory" in message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"id": "id"}', "'images' must name at least one column"),
        ('{"images": ["image"], "colour": ["x"]}', "unknown key(s) colour"),
        ('{"images": ["image"], "texts": [1, 2]}', "'texts' must be"),
        ("[]", "expected a JSON object"),
    ],
)
def test_bad_mapping_file_is_a_clear_user_error(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(content)
    with pytest.raises(UserInputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        Mapping.load(path)


def test_mapping_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="mapping file not found"):
        Mapping.load(tmp_path / "nope.json")


def write_catalog(folder: Path, images: list[str], extra_rows: list[bytes]) -> Path:
    rows = [b"sku,picture,title,colour,price"]
    rows += [f"{n},{img},Red Cotton Shirt {n},red,{10 + n}".encode() for n, img in enumerate(images)]
    path = folder / "catalog.csv"
    path.write_bytes(b"\n".join(rows + extra_rows) + b"\n")
    return path


def test_csv_line_with_invalid_utf8_is_skipped(tmp_path: Path, copy_images: Callable) -> None:
    images = copy_images(tmp_path, 2)
    write_catalog(
        tmp_path,
        images,
        [b"7," + images[0].encode() + b",Caf\xe9 Shirt,blue,3", b"8," + images[1].encode() + b",Blue Shirt,blue,4"],
    )
    records, skips = split(list(CatalogSource.open(tmp_path).records()))
    assert [r.id for r in records] == ["0", "1", "8"]
    assert skips == [Skip("catalog.csv:4", "line is not valid UTF-8 (byte 0xe9)")]


def test_ragged_duplicate_and_imageless_rows_are_skipped(tmp_path: Path, copy_images: Callable) -> None:
    images = copy_images(tmp_path, 1)
    extra = [
        b"5," + images[0].encode() + b",Too Many,red,1,surplus",
        b"0," + images[0].encode() + b",Same Id,red,1",
        b"6,,No Image,red,1",
        b"9,images/missing.jpg,Missing,red,1",
        b"10,../outside.jpg,Outside,red,1",
    ]
    write_catalog(tmp_path, images, extra)
    records, skips = split(list(CatalogSource.open(tmp_path).records()))
    assert [r.id for r in records] == ["0"]
    reasons = {s.item: s.reason for s in skips}
    assert reasons == {
        "catalog.csv:3": "row has 6 fields, the header has 5",
        "catalog.csv:4": "duplicate id '0' (first at line 2)",
        "catalog.csv:5": "no image path in column picture",
        "catalog.csv:6": "image file not found: images/missing.jpg",
        "catalog.csv:7": "path leaves the collection folder: ../outside.jpg",
    }


def test_inferred_mapping_on_another_header(tmp_path: Path, copy_images: Callable) -> None:
    images = copy_images(tmp_path, 2)
    write_catalog(tmp_path, images, [])
    source = CatalogSource.open(tmp_path / "catalog.csv")
    assert source.mapping.id == "sku"
    assert source.mapping.images == ("picture",)
    assert source.mapping.texts == (("title", "title"),)
    assert dict(source.mapping.attributes) == {"colour": "colour", "price": "price"}
    record = next(r for r in source.records() if isinstance(r, Record))
    assert record.attributes == (("colour", "red"), ("price", "10"))


def test_inference_rules_without_id_and_with_long_texts() -> None:
    header = ["file", "notes_field", "blurb", "serial", "colour"]
    sample = [
        {
            "file": f"{n}.png",
            "notes_field": "x",
            "blurb": "a long free text of many words here",
            "serial": str(n),
            "colour": "red",
        }
        for n in range(30)
    ]
    mapping = infer_mapping(header, sample)
    assert mapping.id is None and mapping.images == ("file",)
    assert ("blurb", "blurb") in mapping.texts and ("notes_field", "notes") in mapping.texts
    assert [c for c, _ in mapping.attributes] == ["colour"]  # serial: all distinct, an identifier


def test_no_image_column_is_a_user_error() -> None:
    with pytest.raises(UserInputError, match="cannot tell which column"):
        infer_mapping(["id", "name"], [{"id": "1", "name": "a"}])


def test_image_column_found_by_its_values() -> None:
    mapping = infer_mapping(["id", "img_src"], [{"id": "1", "img_src": "x/1.JPG"}])
    assert mapping.images == ("img_src",)


def test_empty_attribute_values_are_dropped(tmp_path: Path, copy_images: Callable) -> None:
    images = copy_images(tmp_path, 1)
    (tmp_path / "c.csv").write_text(f"id,image,name,colour,size\n1,{images[0]},Shirt,,  N/A \n")
    record = next(iter(CatalogSource.open(tmp_path).records()))
    assert isinstance(record, Record) and record.attributes == ()


def test_folder_with_two_csvs_needs_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,image\n")
    (tmp_path / "b.csv").write_text("id,image\n")
    with pytest.raises(UserInputError, match="exactly one .csv"):
        CatalogSource.open(tmp_path)


def test_empty_csv_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_bytes(b"")
    with pytest.raises(UserInputError, match="empty"):
        CatalogSource.open(tmp_path)
