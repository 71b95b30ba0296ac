"""COCO: `annotations/captions_<split>.json` (+ `instances_<split>.json`), one Record per annotated image.

Images are looked for in `<root>/<split>/` (COCO's own layout), else `<root>/images/<split>/`, else
`<root>/images/`. Object categories become attributes `category:dog` and `supercategory:animal`;
boxes are not used. Each JSON file is parsed whole (COCO files are single JSON documents); a file
that cannot be parsed is one Skip and the other splits are still read. Image files that no
annotation lists are ignored (and counted in the log).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkg.errors import UserInputError
from mmkg.ingest.mapping import IMAGE_EXTENSIONS
from mmkg.ingest.records import Record, Skip, TextField
from mmkg.ingest.source import collection_name, usable_images

log = logging.getLogger(__name__)


@dataclass
class CocoSource:
    root: Path
    name: str = ""
    _count: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = self.name or collection_name(self.root)

    @classmethod
    def open(cls, path: Path, name: str = "") -> CocoSource:
        source = cls(root=path, name=name)
        if not source.caption_files():
            raise UserInputError(f"{path} has no annotations/captions_*.json (COCO layout)")
        return source

    def caption_files(self) -> list[Path]:
        return sorted(p for p in (self.root / "annotations").glob("captions_*.json") if p.is_file())

    def __len__(self) -> int:
        """Counts `"file_name"` occurrences in the caption files: a progress total without parsing them."""
        if self._count is None:
            count = 0
            for path in self.caption_files():
                with path.open("rb") as f:
                    tail = b""
                    while block := f.read(1 << 20):
                        count += (tail + block).count(b'"file_name"')
                        tail = block[-10:]
            self._count = count
        return self._count

    def records(self) -> Iterator[Record | Skip]:
        seen: dict[str, str] = {}
        root = self.root.resolve()
        for captions_file in self.caption_files():
            split = captions_file.stem.removeprefix("captions_")
            yield from self._split_records(root, split, captions_file, seen)

    def _split_records(
        self, root: Path, split: str, captions_file: Path, seen: dict[str, str]
    ) -> Iterator[Record | Skip]:
        data = _load(captions_file)
        if isinstance(data, Skip):
            yield data
            return
        images, bad = _images(data, captions_file.name)
        yield from bad
        captions: dict[Any, list[str]] = defaultdict(list)
        for n, ann in enumerate(_list(data, "annotations")):
            if not (isinstance(ann, dict) and isinstance(ann.get("caption"), str) and "image_id" in ann):
                yield Skip(f"{captions_file.name}:annotations[{n}]", "caption annotation without image_id or text")
                continue
            captions[ann["image_id"]].append(ann["caption"])
        categories, skips = _categories(self.root / "annotations" / f"instances_{split}.json")
        yield from skips
        folder = _image_folder(self.root, split)
        listed = {img["file_name"] for img in images}
        for img in images:
            rid = str(img["id"])
            item = f"{captions_file.name}:image {rid}"
            if rid in seen:
                yield Skip(item, f"image id {rid} already read from {seen[rid]}")
                continue
            seen[rid] = captions_file.name
            paths, skips = usable_images(item, root, [f"{folder}{img['file_name']}"])
            yield from skips
            if not paths:
                continue
            texts = tuple(TextField("caption", c.strip()) for c in captions.get(img["id"], []) if c.strip())
            names = categories.get(img["id"], [])
            attributes = tuple(("category", c) for c, _ in names) + tuple(
                ("supercategory", s) for s in dict.fromkeys(s for _, s in names if s)
            )
            meta = {"split": split, "file_name": img["file_name"]}
            yield Record(id=rid, images=paths, texts=texts, attributes=attributes, source=self.name, meta=meta)
        _log_unlisted(self.root / folder, listed)


def _load(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return Skip(path.name, f"not valid JSON: {exc}")
    except OSError as exc:
        return Skip(path.name, f"cannot read: {exc.strerror or exc}")
    if not isinstance(data, dict):
        return Skip(path.name, "expected a COCO JSON object with 'images' and 'annotations'")
    return data


def _categories(path: Path) -> tuple[dict[Any, list[tuple[str, str]]], list[Skip]]:
    """{image id: [(category, supercategory)...]} in order of first box, and Skips for what was unusable."""
    if not path.is_file():
        return {}, []
    data = _load(path)
    if isinstance(data, Skip):
        return {}, [data]
    names: dict[Any, tuple[str, str]] = {}
    for cat in _list(data, "categories"):
        if isinstance(cat, dict) and isinstance(cat.get("name"), str) and "id" in cat:
            names[cat["id"]] = (cat["name"].strip(), str(cat.get("supercategory") or "").strip())
    by_image: dict[Any, dict[tuple[str, str], None]] = defaultdict(dict)
    unknown = 0
    for ann in _list(data, "annotations"):
        if isinstance(ann, dict) and ann.get("category_id") in names and "image_id" in ann:
            by_image[ann["image_id"]][names[ann["category_id"]]] = None
        else:
            unknown += 1
    reason = f"{unknown} instance annotation(s) without a known category or image_id"
    return {image: list(cats) for image, cats in by_image.items()}, [Skip(path.name, reason)] if unknown else []


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _images(data: dict[str, Any], file: str) -> tuple[list[dict[str, Any]], list[Skip]]:
    good: list[dict[str, Any]] = []
    bad: list[Skip] = []
    for n, img in enumerate(_list(data, "images")):
        if isinstance(img, dict) and isinstance(img.get("file_name"), str) and isinstance(img.get("id"), int | str):
            good.append(img)
        else:
            bad.append(Skip(f"{file}:images[{n}]", "image entry without an id and a file_name"))
    return good, bad


def _image_folder(root: Path, split: str) -> str:
    """The folder prefix (relative to root, with a trailing slash) where this split's images are."""
    for prefix in (f"{split}/", f"images/{split}/", "images/"):
        if (root / prefix).is_dir():
            return prefix
    return ""


def _log_unlisted(folder: Path, listed: set[str]) -> None:
    if not folder.is_dir():
        return
    unlisted = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.name not in listed)
    if unlisted:
        log.info("%s: %d image file(s) that no annotation lists were not read", folder, unlisted)
