"""Fixtures for the ingest tests: the shared data (skipped where absent) and builders of small
collections, good and bad, in tmp_path. Bad inputs are real files written here, never mocks."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MMKG_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data() -> Path:
    """The shared data folder (read-only)."""
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA} (set MMKG_DATA)")
    return DATA


@pytest.fixture
def copy_images(data: Path) -> Callable[..., list[str]]:
    """copy_images(dest, n, prefix="images"): n real JPEGs copied into dest/prefix, paths relative to dest."""

    def copy(dest: Path, n: int, prefix: str = "images") -> list[str]:
        (dest / prefix).mkdir(parents=True, exist_ok=True)
        out = []
        for src in sorted((data / "flickr8k" / "dev" / "images").glob("*.jpg"))[:n]:
            shutil.copy(src, dest / prefix / src.name)
            out.append(f"{prefix}/{src.name}")
        return out

    return copy


def write_lines(path: Path, lines: list[object]) -> None:
    """One item a line: bytes written as they are, a str as UTF-8, anything else dumped as JSON."""
    with path.open("wb") as f:
        for line in lines:
            if not isinstance(line, bytes | str):
                line = json.dumps(line, ensure_ascii=False)
            f.write((line.encode("utf-8") if isinstance(line, str) else line) + b"\n")


@pytest.fixture
def lines_writer() -> Callable[[Path, list[object]], None]:
    return write_lines
