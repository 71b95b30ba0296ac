"""What every reader is: a named collection that streams Records and Skips, with a size for progress bars."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from mmkg.errors import UserInputError
from mmkg.ingest.images import check_image_paths
from mmkg.ingest.records import Record, Skip

_GENERIC_FOLDERS = {"train", "dev", "val", "valid", "validation", "test", "images", "data", "dataset"}


@runtime_checkable
class Source(Protocol):
    """A collection on disk. `name` goes into record ids, so it must not change between runs."""

    name: str
    root: Path

    def records(self) -> Iterator[Record | Skip]:
        """Every item of the collection, in file order, each a Record or the Skip that explains it."""
        ...

    def __len__(self) -> int:
        """Items `records()` will look at (lines, rows, images, cases): an estimate for a progress bar."""
        ...


def collection_name(folder: Path) -> str:
    """A stable, id-safe name from the folder: `fashion`; a split folder gets its parent: `flickr8k-dev`."""
    folder = folder.resolve()
    name = _slug(folder.name)
    if name in _GENERIC_FOLDERS and folder.parent != folder and _slug(folder.parent.name):
        name = f"{_slug(folder.parent.name)}-{name}"
    return name or "collection"


def _slug(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[^\w.-]+", "-", text).strip("-.")


def usable_images(item: str, root: Path, relatives: Sequence[str]) -> tuple[tuple[Path, ...], list[Skip]]:
    """A record's resolved image paths and the Skips for the refused ones; no usable image: one Skip, no paths.

    Missing files are caught here (one `stat` each, cheap next to decoding) rather than left to the
    loader, so the Skip names the source line and a many-image record keeps its good images.
    """
    paths, problems = check_image_paths(root, relatives)
    if not paths:
        return (), [Skip(item, "; ".join(problems) if problems else "no image path")]
    return paths, [Skip(item, problem) for problem in problems]


def count_lines(path: Path) -> int:
    """Newlines in a file, read in blocks: a cheap progress-bar total for line-based formats."""
    count = 0
    try:
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                count += block.count(b"\n")
    except OSError as exc:
        raise UserInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return count
