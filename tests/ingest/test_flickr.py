"""Flickr layout reader: the real Flickr8k splits, and every bad line as its own case."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mmkg.errors import UserInputError
from mmkg.ingest.flickr import FlickrSource
from mmkg.ingest.records import Record, Skip

CYPHER = '"}) MATCH (n) DETACH DELETE n //'


def split(items: list[Record | Skip]) -> tuple[list[Record], list[Skip]]:
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Skip)]


def test_real_dev_split(data: Path) -> None:
    source = FlickrSource.open(data / "flickr8k" / "dev")
    records, skips = split(list(source.records()))
    assert (len(records), len(skips), len(source)) == (1000, 0, 1000)
    assert source.name == "flickr8k-dev"
    first = records[0]
    assert first.id == "images/2090545563_a4e66ec76b.jpg"
    assert first.images == ((data / "flickr8k" / "dev" / "images" / "2090545563_a4e66ec76b.jpg").resolve(),)
    assert [t.kind for t in first.texts] == ["caption"] * 5
    assert first.texts[1].text == "Two girls play on a skateboard in a courtyard ."
    assert first.source == "flickr8k-dev"
    assert all(len(r.texts) == 5 for r in records)


def test_real_train_split(data: Path) -> None:
    source = FlickrSource.open(data / "flickr8k" / "train")
    records, skips = split(list(source.records()))
    assert (len(records), len(skips)) == (6000, 0)
    assert len({r.id for r in records}) == 6000


@pytest.fixture
def collection(tmp_path: Path, copy_images: Callable[..., list[str]]) -> tuple[Path, list[str]]:
    return tmp_path, copy_images(tmp_path, 3)


def read(folder: Path) -> tuple[list[Record], list[Skip]]:
    return split(list(FlickrSource.open(folder).records()))


def good(image: str) -> dict[str, object]:
    return {"image": image, "captions": ["a dog runs", "a brown dog"]}


def test_invalid_utf8_line_is_skipped(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    lines_writer(
        root / "captions.jsonl", [good(images[0]), b'{"image": "x.jpg", "captions": ["caf\xe9"]}', good(images[1])]
    )
    records, skips = read(root)
    assert [r.id for r in records] == images[:2]
    assert [s.item for s in skips] == ["captions.jsonl:2"]
    assert "not valid UTF-8" in skips[0].reason and "0xe9" in skips[0].reason


def test_invalid_json_line_is_skipped(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    lines_writer(root / "captions.jsonl", [good(images[0]), '{"image": "images/a.jpg", "captions": [', good(images[1])])
    records, skips = read(root)
    assert len(records) == 2
    assert skips[0].item == "captions.jsonl:2" and "not valid JSON" in skips[0].reason


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ({"captions": ["a dog"]}, "missing 'image'"),
        ({"image": "IMAGE"}, "missing 'captions'"),
        ({"image": 42, "captions": ["a dog"]}, "'image' must be a non-empty string"),
        ({"image": "IMAGE", "captions": ["a dog", 7]}, "list of strings"),
        ({"image": "IMAGE", "captions": {"a": "b"}}, "list of strings"),
        (["IMAGE", "a dog"], "expected a JSON object"),
    ],
)
def test_missing_keys_and_wrong_types_are_skipped(
    collection: tuple[Path, list[str]], lines_writer: Callable, line: object, reason: str
) -> None:
    root, images = collection
    if isinstance(line, dict) and line.get("image") == "IMAGE":
        line["image"] = images[2]
    elif isinstance(line, list):
        line[0] = images[2]
    lines_writer(root / "captions.jsonl", [good(images[0]), line, good(images[1])])
    records, skips = read(root)
    assert [r.id for r in records] == images[:2]
    assert len(skips) == 1 and skips[0].item == "captions.jsonl:2" and reason in skips[0].reason


def test_path_leaving_the_folder_is_skipped(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    lines_writer(root / "captions.jsonl", [good("../../../etc/passwd"), good("/etc/passwd"), good(images[0])])
    records, skips = read(root)
    assert [r.id for r in records] == [images[0]]
    assert [s.item for s in skips] == ["captions.jsonl:1", "captions.jsonl:2"]
    assert all("leaves the collection folder" in s.reason for s in skips)


def test_symlink_out_of_the_folder_is_skipped(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    (root / "images" / "escape.jpg").symlink_to(Path(__file__).resolve())
    lines_writer(root / "captions.jsonl", [good("images/escape.jpg"), good(images[0])])
    records, skips = read(root)
    assert len(records) == 1 and "leaves the collection folder through a symbolic link" in skips[0].reason


def test_missing_image_is_skipped(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    lines_writer(root / "captions.jsonl", [good("images/nope.jpg"), good(images[0])])
    records, skips = read(root)
    assert len(records) == 1
    assert skips == [Skip("captions.jsonl:1", "image file not found: images/nope.jpg")]


def test_cypher_looking_caption_is_kept_verbatim(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    lines_writer(root / "captions.jsonl", [{"image": images[0], "captions": [CYPHER, "' OR 1=1 --"]}])
    records, skips = read(root)
    assert not skips
    assert [t.text for t in records[0].texts] == [CYPHER, "' OR 1=1 --"]


def test_repeated_image_blank_lines_and_bom(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    first = b"\xef\xbb\xbf" + json.dumps(good(images[0])).encode()
    lines_writer(root / "captions.jsonl", [first, "", "   ", good("./" + images[0]), good(images[1])])
    records, skips = read(root)
    assert [r.id for r in records] == images[:2]
    assert len(skips) == 1 and skips[0].item == "captions.jsonl:4" and "already listed" in skips[0].reason


def test_empty_captions_are_dropped_not_the_image(collection: tuple[Path, list[str]], lines_writer: Callable) -> None:
    root, images = collection
    lines_writer(root / "captions.jsonl", [{"image": images[0], "captions": ["", "  ", "a cat"]}])
    records, _ = read(root)
    assert [t.text for t in records[0].texts] == ["a cat"]


def test_captions_csv_groups_rows_and_skips_bad_utf8(tmp_path: Path, copy_images: Callable) -> None:
    images = copy_images(tmp_path, 2)
    rows = [
        b"image,caption",
        f"{images[0]},a dog runs".encode(),
        f'{images[1]},"a cat, sleeping"'.encode(),
        f"{images[0]},a brown dog".encode(),
        f"{images[1]},caf\xe9 au lait".encode("latin-1"),
    ]
    (tmp_path / "captions.csv").write_bytes(b"\n".join(rows) + b"\n")
    source = FlickrSource.open(tmp_path)
    records, skips = split(list(source.records()))
    assert len(source) == 2
    assert [(r.id, [t.text for t in r.texts]) for r in records] == [
        (images[0], ["a dog runs", "a brown dog"]),
        (images[1], ["a cat, sleeping"]),
    ]
    assert skips == [Skip("captions.csv:5", "line is not valid UTF-8 (byte 0xe9)")]


def test_captions_csv_without_caption_column_names_columns(tmp_path: Path) -> None:
    (tmp_path / "captions.csv").write_text("image,text\nimages/a.jpg,a dog\n")
    with pytest.raises(UserInputError, match=r"'caption'.*columns are: image, text"):
        FlickrSource.open(tmp_path)
