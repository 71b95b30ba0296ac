"""Which attributes make a catalog product relevant: found by name in any catalog, or given."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import cast

import pytest

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.evaluation.catalog import catalog_benchmark, relevance_keys
from mmkg.ingest.records import Record
from mmkg.settings import Settings


def _records(*attrs: dict[str, str]) -> list[Record]:
    return [Record(str(i), (), (), attributes=tuple(a.items())) for i, a in enumerate(attrs)]


def test_the_fashion_columns_are_found_by_name() -> None:
    """The finest kind column (articleType has more values than subCategory and masterCategory) and the colour."""
    rows = _records(
        {"masterCategory": "Apparel", "subCategory": "Topwear", "articleType": "Tshirts", "baseColour": "White",
         "gender": "Men"},
        {"masterCategory": "Apparel", "subCategory": "Topwear", "articleType": "Shirts", "baseColour": "Blue",
         "gender": "Women"},
        {"masterCategory": "Footwear", "subCategory": "Shoes", "articleType": "Sports Shoes", "baseColour": "White",
         "gender": "Men"},
    )
    assert relevance_keys(rows) == ({"type": "articleType", "colour": "baseColour"}, {"gender": "gender"})


def test_another_catalog_s_names_are_found_too() -> None:
    rows = _records({"Category": "Vase", "Color": "blue", "Era": "Ming"}, {"Category": "Bowl", "Color": "red"})
    assert relevance_keys(rows) == ({"type": "Category", "colour": "Color"}, {})


def test_a_catalog_without_them_is_told_what_to_name() -> None:
    rows = _records({"artist": "Hokusai", "medium": "woodblock"})
    with pytest.raises(UserInputError, match=r"--relevance KEY\[,KEY\] \(its attributes: artist, medium\)"):
        relevance_keys(rows)
    assert relevance_keys(rows, ["medium"]) == ({"medium": "medium"}, {})
    with pytest.raises(UserInputError, match="no attribute era in this catalog"):
        relevance_keys(rows, ["era"])


def test_a_catalog_whose_every_row_is_skipped_says_why(tmp_path: Path, shared_data: Path) -> None:
    """Not 'no column names a kind or a colour': the rows were never read, and the first reason says why."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(shared_data / "fashion" / "images" / "10000.jpg", outside / "10000.jpg")
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "images").symlink_to(outside)
    (folder / "items.csv").write_text("SKU,Photo,Title,Colour,Category\n"
                                      "10000,images/10000.jpg,Palm Tree Girls White Skirts,White,Skirts\n")
    with pytest.raises(UserInputError, match=r"no product of .* has both an image and a text: 1 row skipped, the "
                                             r"first for path leaves the collection folder through a symbolic link"):
        catalog_benchmark(folder, Settings(home=tmp_path / "ws"), cast(Encoder, None), tmp_path / "ws")
