"""Flickr layout: a folder of images and `captions.jsonl` (or `captions.csv`), one Record per image.

`captions.jsonl`: one object a line, `{"image": "images/x.jpg", "captions": ["...", ...]}`.
`captions.csv`: columns `image` and `caption`, one row per caption, rows of an image grouped.
A record's id is its image path relative to the folder (`images/x.jpg`): unique even across sub-folders.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkg.errors import UserInputError
from mmkg.ingest.csvfile import iter_rows, missing_columns_error, read_header
from mmkg.ingest.records import Record, Skip, TextField
from mmkg.ingest.source import collection_name, count_lines, usable_images

log = logging.getLogger(__name__)

JSONL_NAME = "captions.jsonl"
CSV_NAME = "captions.csv"
MAX_LINE_BYTES = 10_000_000
"""A JSONL line longer than this is refused before parsing: no caption line is that long."""


@dataclass
class FlickrSource:
    root: Path
    captions_file: Path
    name: str = ""
    _count: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or collection_name(self.root)

    @classmethod
    def open(cls, path: Path, name: str = "") -> FlickrSource:
        """`path` is the folder or its captions file."""
        root = path.parent if path.is_file() else path
        candidates = [path] if path.is_file() else [root / n for n in (JSONL_NAME, CSV_NAME) if (root / n).is_file()]
        captions = candidates[0] if candidates else None
        if captions is None:
            raise UserInputError(f"{root} has neither {JSONL_NAME} nor {CSV_NAME}")
        if captions.suffix.lower() == ".csv":
            header = read_header(captions)
            missing = [c for c in ("image", "caption") if c not in header]
            if missing:
                raise missing_columns_error(captions, missing, header, "captions CSV layout")
        return cls(root=root, captions_file=captions, name=name)

    def __len__(self) -> int:
        if self._count is None:
            if self.captions_file.suffix.lower() == ".csv":
                self._count = len(_group_csv(self.captions_file)[0])
            else:
                self._count = count_lines(self.captions_file)
        return self._count

    def records(self) -> Iterator[Record | Skip]:
        if self.captions_file.suffix.lower() == ".csv":
            yield from self._csv_records()
        else:
            yield from self._jsonl_records()

    def _record(self, image: str, captions: list[str], item: str, seen: dict[str, str]) -> Iterator[Record | Skip]:
        """The image's Record, keyed by its path inside the folder; a second listing of one image is a Skip."""
        root = self.root.resolve()
        paths, skips = usable_images(item, root, [image])
        yield from skips
        if not paths:
            return
        record_id = paths[0].relative_to(root).as_posix()
        if record_id in seen:
            yield Skip(item, f"image {record_id} already listed at {seen[record_id]}")
            return
        seen[record_id] = item
        texts = tuple(TextField("caption", c.strip()) for c in captions if c.strip())
        yield Record(id=record_id, images=paths, texts=texts, source=self.name)

    def _jsonl_records(self) -> Iterator[Record | Skip]:
        seen: dict[str, str] = {}
        try:
            f = self.captions_file.open("rb")
        except OSError as exc:
            raise UserInputError(f"cannot read {self.captions_file}: {exc.strerror or exc}") from exc
        with f:
            for number, raw in enumerate(f, 1):
                item = f"{self.captions_file.name}:{number}"
                parsed = _parse_line(raw, number)
                if parsed is None:
                    continue
                if isinstance(parsed, str):
                    yield Skip(item, parsed)
                else:
                    yield from self._record(*parsed, item, seen)

    def _csv_records(self) -> Iterator[Record | Skip]:
        groups, skips = _group_csv(self.captions_file)
        yield from skips
        seen: dict[str, str] = {}
        for image, (line, captions) in groups.items():
            yield from self._record(image, captions, f"{self.captions_file.name}:{line}", seen)


def _parse_line(raw: bytes, number: int) -> tuple[str, list[str]] | str | None:
    """(image, captions), or the reason the line is unusable, or None for a blank line."""
    if len(raw) > MAX_LINE_BYTES:
        return f"line too long ({len(raw)} bytes)"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"line is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    if number == 1:
        text = text.lstrip("\ufeff")
    if not text.strip():
        return None
    try:
        obj: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        return "missing 'image' (a path string)" if image is None else "'image' must be a non-empty string"
    captions = obj.get("captions", obj.get("caption"))
    if captions is None:
        return "missing 'captions'"
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        return "'captions' must be a list of strings"
    return image.strip(), captions


def _group_csv(path: Path) -> tuple[dict[str, tuple[int, list[str]]], list[Skip]]:
    """Captions grouped by image, in order of first appearance (rows of one image need not be adjacent)."""
    groups: dict[str, tuple[int, list[str]]] = {}
    skips: list[Skip] = []
    for row in iter_rows(path):
        if isinstance(row, Skip):
            skips.append(row)
            continue
        image = row.values["image"].strip()
        if not image:
            skips.append(Skip(f"{path.name}:{row.line}", "empty 'image'"))
            continue
        groups.setdefault(image, (row.line, []))[1].append(row.values["caption"])
    return groups, skips
