"""A catalog's column mapping: which column is the id, the image(s), the texts and the attributes.

Configuration, not code: a new catalog needs a JSON file, not a reader. The JSON (`--mapping FILE`):

    {"id": "id",
     "images": ["image"],                      // or "image": "image"; paths relative to the CSV's folder
     "texts": {"productDisplayName": "name"},  // column -> text kind; a list means kind = column name
     "attributes": ["gender", "baseColour"],   // or {"baseColour": "colour"} to rename the key
     "null_values": ["", "NA"],                // optional: values that mean "no value" (case-insensitive)
     "image_separator": "|"}                   // optional: several paths in one cell

Inferred when no mapping is given (`infer_mapping`), by this rule:
1. id: the first column named id, record_id, item_id, product_id, sku, uid or key (case, `_`, `-`
   and spaces ignored); none: the image path is the id.
2. images: columns whose name has the word image/img/photo/picture/file/filename/path; none: the
   columns whose sampled values all end in an image extension; still none: an error asking for a mapping.
3. texts: columns whose name has the word name/title/caption/description/desc/text/summary/comment/
   notes (kind: that word, `desc` read as description), or whose sampled values average 6+ words
   (kind: the column name, lower case).
4. attributes: every other column, except ones whose values are nearly all distinct (over 90% of 20+
   sampled values: identifiers, prices, free text) that would make one-record entities.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmkg.errors import UserInputError

DEFAULT_NULLS = frozenset({"", "na", "n/a", "nan", "null", "none", "-"})
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif")

_ID_NAMES = ["id", "recordid", "itemid", "productid", "sku", "uid", "key"]
_IMAGE_WORDS = {"image", "images", "img", "photo", "picture", "file", "filename", "path", "filepath"}
_TEXT_WORDS = {
    "name": "name",
    "title": "title",
    "caption": "caption",
    "description": "description",
    "desc": "description",
    "text": "text",
    "summary": "summary",
    "comment": "comment",
    "notes": "notes",
}
_KEYS = {"id", "image", "images", "texts", "attributes", "null_values", "image_separator"}


@dataclass(frozen=True)
class Mapping:
    images: tuple[str, ...]
    """Columns holding image paths, relative to the CSV's folder."""
    id: str | None = None
    """Column holding the record id; None: the (first) image path is the id."""
    texts: tuple[tuple[str, str], ...] = ()
    """(column, text kind)."""
    attributes: tuple[tuple[str, str], ...] = ()
    """(column, attribute key): the key is the column name unless renamed."""
    null_values: frozenset[str] = field(default=DEFAULT_NULLS)
    image_separator: str | None = None

    def columns(self) -> list[str]:
        cols = ([self.id] if self.id else []) + list(self.images)
        cols += [c for c, _ in self.texts] + [c for c, _ in self.attributes]
        return list(dict.fromkeys(cols))

    def missing(self, header: Sequence[str]) -> list[str]:
        return [c for c in self.columns() if c not in header]

    def is_null(self, value: str | None) -> bool:
        return value is None or value.strip().casefold() in self.null_values

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "images": list(self.images),
            "texts": dict(self.texts),
            "attributes": [c for c, _ in self.attributes]
            if all(c == k for c, k in self.attributes)
            else dict(self.attributes),
            "null_values": sorted(self.null_values),
        }
        if self.image_separator:
            out["image_separator"] = self.image_separator
        return out

    @classmethod
    def from_dict(cls, data: Any, origin: str = "mapping") -> Mapping:
        """Validate a parsed JSON mapping; every mistake is one UserInputError naming `origin`."""
        if not isinstance(data, dict):
            raise UserInputError(f"{origin}: expected a JSON object")
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise UserInputError(f"{origin}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
        images = data.get("images", data.get("image"))
        if isinstance(images, str):
            images = [images]
        if not _str_list(images) or not images:
            raise UserInputError(f"{origin}: 'images' must name at least one column (a string or a list of strings)")
        id_col = data.get("id")
        if id_col is not None and not (isinstance(id_col, str) and id_col):
            raise UserInputError(f"{origin}: 'id' must be a column name")
        nulls = data.get("null_values", sorted(DEFAULT_NULLS))
        if not _str_list(nulls):
            raise UserInputError(f"{origin}: 'null_values' must be a list of strings")
        separator = data.get("image_separator")
        if separator is not None and not (isinstance(separator, str) and separator):
            raise UserInputError(f"{origin}: 'image_separator' must be a non-empty string")
        return cls(
            images=tuple(images),
            id=id_col,
            texts=_pairs(data.get("texts", {}), origin, "texts", lambda c: c.lower()),
            attributes=_pairs(data.get("attributes", []), origin, "attributes", lambda c: c),
            null_values=frozenset(v.strip().casefold() for v in nulls),
            image_separator=separator,
        )

    @classmethod
    def load(cls, path: Path) -> Mapping:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UserInputError(f"mapping file not found: {path}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"cannot read mapping file {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise UserInputError(f"mapping file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
        return cls.from_dict(data, origin=f"mapping file {path.name}")


def infer_mapping(header: Sequence[str], sample: Sequence[dict[str, str]], file: str = "the CSV") -> Mapping:
    """The documented rule (module docstring) applied to a header and the first rows."""
    words = {c: _words(c) for c in header}
    squashed = {c: "".join(words[c]) for c in header}
    id_col = next((c for name in _ID_NAMES for c in header if squashed[c] == name), None)
    images = [c for c in header if c != id_col and words[c] & _IMAGE_WORDS]
    if not images:
        images = [c for c in header if c != id_col and _all_image_paths(v.get(c, "") for v in sample)]
    if not images:
        raise UserInputError(
            f"cannot tell which column of {file} holds image paths (columns: {', '.join(header)}); "
            "name it in a mapping file (--mapping)"
        )
    texts: list[tuple[str, str]] = []
    attributes: list[tuple[str, str]] = []
    for col in header:
        if col == id_col or col in images:
            continue
        values = [v[col].strip() for v in sample if v.get(col, "").strip().casefold() not in DEFAULT_NULLS]
        keyword = next((_TEXT_WORDS[w] for w in reversed(_word_list(col)) if w in _TEXT_WORDS), None)
        if keyword is not None:
            texts.append((col, keyword))
        elif values and sum(len(v.split()) for v in values) / len(values) >= 6:
            texts.append((col, col.lower()))
        elif len(values) >= 20 and len(set(values)) > 0.9 * len(values):
            continue
        else:
            attributes.append((col, col))
    return Mapping(images=tuple(images), id=id_col, texts=tuple(texts), attributes=tuple(attributes))


def _word_list(column: str) -> list[str]:
    """`productDisplayName` -> [product, display, name]; `image_path` -> [image, path]."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", column)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def _words(column: str) -> set[str]:
    return set(_word_list(column))


def _all_image_paths(values: Any) -> bool:
    seen = [v.strip().lower() for v in values if v and v.strip()]
    return bool(seen) and all(v.endswith(IMAGE_EXTENSIONS) for v in seen)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _pairs(value: Any, origin: str, key: str, default: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        return tuple(value.items())
    if _str_list(value):
        return tuple((c, default(c)) for c in value)
    raise UserInputError(f"{origin}: '{key}' must be a list of column names or an object column -> name")
