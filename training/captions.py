"""The image-caption pairs the lit heads learn from, read by the ingest's Flickr reader (`FlickrSource`).

A training folder is in the Flickr layout: ``captions.jsonl`` (or ``captions.csv``) naming images under it,
and optionally ``captions.<lang>.jsonl`` beside it (the same images, captions in another language).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmkg.errors import UserInputError
from mmkg.ingest.flickr import JSONL_NAME, FlickrSource
from mmkg.ingest.records import Record

BASE_CAPTIONS = JSONL_NAME


@dataclass(frozen=True)
class PairSet:
    """Images of a Flickr-layout folder and their captions (lines and images that could not be used are left
    out and listed in `skipped` as (where, why))."""

    paths: list[Path]
    captions: list[list[str]]
    skipped: list[tuple[str, str]]


def read_caption_pairs(data_dir: Path, max_images: int | None = None, name: str = BASE_CAPTIONS) -> PairSet:
    """The pairs of ``DIR/captions.jsonl`` (or another captions file there), the first `max_images` images
    that have a caption; bad lines, missing images and paths outside the folder are skipped, never fatal."""
    data_dir = Path(data_dir)
    index = data_dir / name
    if not index.is_file():
        raise UserInputError(f"no {name} in {data_dir} (expected the Flickr layout)")
    paths: list[Path] = []
    captions: list[list[str]] = []
    skipped: list[tuple[str, str]] = []
    for item in FlickrSource.open(index).records():
        if not isinstance(item, Record):
            skipped.append((item.item, item.reason))
            continue
        if not item.texts:
            skipped.append((item.id, "no caption"))
            continue
        paths.append(item.images[0])
        captions.append([field.text for field in item.texts])
        if max_images is not None and len(paths) >= max_images:
            break
    if not paths:
        raise UserInputError(f"no usable image-caption pairs in {index}")
    return PairSet(paths, captions, skipped)


def extra_caption_files(data_dir: Path) -> list[str]:
    """The ``captions.<lang>.jsonl`` files beside ``captions.jsonl``, by name."""
    return sorted(p.name for p in Path(data_dir).glob("captions.*.jsonl") if p.is_file())


def aligned_captions(data_dir: Path, name: str, paths: Sequence[Path]) -> list[list[str]]:
    """The captions a file gives each of `paths` (an empty list for an image it does not name)."""
    by_path: dict[Path, list[str]] = {}
    pairs = read_caption_pairs(data_dir, name=name)
    for path, caps in zip(pairs.paths, pairs.captions, strict=True):
        by_path.setdefault(path.resolve(), []).extend(caps)
    return [by_path.get(Path(p).resolve(), []) for p in paths]
