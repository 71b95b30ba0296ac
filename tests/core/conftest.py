"""A small trained workspace shared by the CLI tests: real weights, heads trained for seconds."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from mmkg.settings import Settings

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A workspace whose lit heads were trained on 64 Flickr8k train images (a smoke model, not a good one)."""
    from mmkg.encoders.lit_train import train_lit

    home = tmp_path_factory.mktemp("trained-home")
    train_lit(
        shared_data / "flickr8k" / "train",
        Settings.load(home=home),
        max_images=64,
        epochs=2,
        holdout=8,
        hflip=False,
        progress=False,
    )
    return home


@pytest.fixture
def home(tmp_path: Path, trained_home: Path) -> Path:
    """A fresh workspace holding only the trained heads (and the feature cache, to stay fast)."""
    target = tmp_path / "home"
    shutil.copytree(trained_home, target)
    return target


@pytest.fixture(scope="session")
def fashion_subset(shared_data: Path):  # type: ignore[no-untyped-def]
    """A factory: `fashion_subset(dest, n)` copies the first n products into a catalog folder of its own."""

    def make(dest: Path, n: int) -> Path:
        return _fashion_subset(shared_data, dest, n)

    return make


def _fashion_subset(shared_data: Path, dest: Path, n: int) -> Path:
    """The first n fashion products with their images, as a catalog folder of its own."""
    src = shared_data / "fashion"
    (dest / "images").mkdir(parents=True)
    with open(src / "products.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [row for _, row in zip(range(n), reader, strict=False)]
        fields = reader.fieldnames or []
    with open(dest / "products.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            shutil.copy(src / row["image"], dest / row["image"])
            writer.writerow(row)
    return dest
