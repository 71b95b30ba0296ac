"""Open a source by path: the reader is chosen from the layout when it is unambiguous, else by `--format`.

Layouts recognised in a folder (or from the file given):
- `flickr`:  `captions.jsonl` or `captions.csv`
- `medpix`:  `Descriptions.json` and `Case_topic.json`
- `coco`:    `annotations/captions_*.json`
- `catalog`: exactly one other `.csv` (or the `.csv` file itself)
"""

from __future__ import annotations

from pathlib import Path

from mmkg.errors import UserInputError
from mmkg.ingest.catalog import CatalogSource
from mmkg.ingest.coco import CocoSource
from mmkg.ingest.flickr import CSV_NAME, JSONL_NAME, FlickrSource
from mmkg.ingest.medpix import CASES, DESCRIPTIONS, MedpixSource
from mmkg.ingest.source import Source

FORMATS = ("flickr", "catalog", "coco", "medpix")


def open_source(path: Path, format: str | None = None, mapping: Path | None = None, name: str = "") -> Source:
    """The reader for `path`. `name` overrides the collection name (default: from the folder name)."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"source not found: {path}")
    if format is not None and format not in FORMATS:
        raise UserInputError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}")
    if format is None:
        found = detect_formats(path)
        if len(found) != 1:
            raise UserInputError(_cannot_tell(path, found))
        format = found[0]
    if mapping is not None and format != "catalog":
        raise UserInputError(f"--mapping applies to the catalog format only, not {format}")
    if format == "catalog":
        return CatalogSource.open(path, mapping, name=name)
    if path.is_file():
        if format == "flickr":
            return FlickrSource.open(path, name=name)
        raise UserInputError(f"the {format} format reads a folder; give {path.parent} instead of {path.name}")
    if format == "flickr":
        return FlickrSource.open(path, name=name)
    if format == "coco":
        return CocoSource.open(path, name=name)
    return MedpixSource.open(path, name=name)


def detect_formats(path: Path) -> list[str]:
    """Every format whose layout `path` matches (one means it is unambiguous)."""
    if path.is_file():
        suffix = path.suffix.lower()
        if path.name == CSV_NAME or suffix == ".jsonl":
            return ["flickr"]
        return ["catalog"] if suffix == ".csv" else []
    found = []
    if (path / JSONL_NAME).is_file() or (path / CSV_NAME).is_file():
        found.append("flickr")
    if (path / DESCRIPTIONS).is_file() and (path / CASES).is_file():
        found.append("medpix")
    if any((path / "annotations").glob("captions_*.json")):
        found.append("coco")
    if len([p for p in path.glob("*.csv") if p.name != CSV_NAME and p.is_file()]) == 1:
        found.append("catalog")
    return found


def _cannot_tell(path: Path, found: list[str]) -> str:
    choices = "--format " + "|".join(FORMATS)
    if found:
        return f"{path} matches several layouts ({', '.join(found)}); choose one with {choices}"
    hint = ""
    if path.is_dir():
        inner = [p.name for p in sorted(path.iterdir()) if p.is_dir() and len(detect_formats(p)) == 1]
        if inner:
            hint = f"; its sub-folders {', '.join(inner)} do, give one of them"
    return f"cannot tell the format of {path}: no known layout found{hint}; or choose one with {choices}"
