"""Format detection on the real collections, and the clear errors where a layout is unknown or ambiguous."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmkg.errors import UserInputError
from mmkg.ingest.catalog import CatalogSource
from mmkg.ingest.coco import CocoSource
from mmkg.ingest.detect import detect_formats, open_source
from mmkg.ingest.flickr import FlickrSource
from mmkg.ingest.medpix import MedpixSource
from mmkg.ingest.source import Source, collection_name


@pytest.mark.parametrize(
    ("folder", "kind", "name"),
    [
        ("flickr8k/dev", FlickrSource, "flickr8k-dev"),
        ("flickr8k/dev/captions.jsonl", FlickrSource, "flickr8k-dev"),
        ("fashion", CatalogSource, "fashion"),
        ("fashion/products.csv", CatalogSource, "fashion"),
        ("coco-mini", CocoSource, "coco-mini"),
        ("medpix2", MedpixSource, "medpix2"),
    ],
)
def test_detects_each_shared_collection(data: Path, folder: str, kind: Any, name: str) -> None:
    source = open_source(data / folder)
    assert isinstance(source, Source)
    assert type(source) is kind
    assert source.name == name
    assert source.root.resolve() == (data / folder.split("/captions")[0].split("/products")[0]).resolve()


def test_parent_folder_is_not_guessed_but_hinted(data: Path) -> None:
    with pytest.raises(UserInputError, match=r"sub-folders dev, train do.*--format flickr\|catalog\|coco\|medpix"):
        open_source(data / "flickr8k")


def test_ambiguous_layout_lists_the_choices(tmp_path: Path) -> None:
    (tmp_path / "captions.jsonl").write_text("")
    (tmp_path / "products.csv").write_text("id,image\n")
    assert detect_formats(tmp_path) == ["flickr", "catalog"]
    with pytest.raises(UserInputError, match=r"several layouts \(flickr, catalog\).*--format"):
        open_source(tmp_path)
    assert isinstance(open_source(tmp_path, format="catalog"), CatalogSource)


def test_explicit_format_and_name(data: Path) -> None:
    source = open_source(data / "fashion", format="catalog", name="shop")
    assert source.name == "shop"


def test_unknown_format_lists_choices(data: Path) -> None:
    with pytest.raises(UserInputError, match="unknown format 'xml'; choose one of: flickr, catalog, coco, medpix"):
        open_source(data / "fashion", format="xml")


def test_mapping_only_for_catalogs(data: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="--mapping applies to the catalog format only"):
        open_source(data / "coco-mini", mapping=tmp_path / "m.json")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="source not found"):
        open_source(tmp_path / "nothing")


def test_wrong_explicit_format_is_a_user_error(data: Path) -> None:
    with pytest.raises(UserInputError, match="MedPix layout"):
        open_source(data / "coco-mini", format="medpix")
    with pytest.raises(UserInputError, match="COCO layout"):
        open_source(data / "medpix2", format="coco")


def test_collection_names(tmp_path: Path) -> None:
    assert collection_name(tmp_path / "My Photos") == "my-photos"
    assert collection_name(tmp_path / "museum" / "test") == "museum-test"
