"""A CSV catalog (products, artworks, ...): one Record per row, columns mapped by a `Mapping`.

Image paths are relative to the CSV's folder. Empty or null values (`NA`, `n/a`, ...) are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from mmkg.errors import UserInputError
from mmkg.ingest.csvfile import Row, iter_rows, missing_columns_error, read_header
from mmkg.ingest.mapping import Mapping, infer_mapping
from mmkg.ingest.records import Record, Skip, TextField
from mmkg.ingest.source import collection_name, count_lines, usable_images

log = logging.getLogger(__name__)

INFER_SAMPLE_ROWS = 200


@dataclass
class CatalogSource:
    csv_path: Path
    mapping: Mapping
    name: str = ""
    root: Path = field(init=False)
    _count: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = self.csv_path.parent
        self.name = self.name or collection_name(self.root)

    @classmethod
    def open(cls, path: Path, mapping: Mapping | Path | None = None, name: str = "") -> CatalogSource:
        """`path` is the CSV or a folder holding exactly one; the mapping is checked against the header now."""
        csv_path = _find_csv(path)
        header = read_header(csv_path)
        if isinstance(mapping, Mapping):
            chosen = mapping
        elif mapping is not None:
            chosen = Mapping.load(Path(mapping))
        else:
            rows = (r.values for r in iter_rows(csv_path) if isinstance(r, Row))
            chosen = infer_mapping(header, list(islice(rows, INFER_SAMPLE_ROWS)), file=csv_path.name)
            log.info("inferred mapping for %s: %s", csv_path.name, chosen.to_dict())
        missing = chosen.missing(header)
        if missing:
            raise missing_columns_error(csv_path, missing, header, "mapping")
        return cls(csv_path=csv_path, mapping=chosen, name=name)

    def __len__(self) -> int:
        if self._count is None:
            self._count = max(count_lines(self.csv_path) - 1, 0)
        return self._count

    def records(self) -> Iterator[Record | Skip]:
        m = self.mapping
        root = self.root.resolve()
        seen: dict[str, int] = {}
        for row in iter_rows(self.csv_path):
            if isinstance(row, Skip):
                yield row
                continue
            item = f"{self.csv_path.name}:{row.line}"
            values = row.values
            cells = [values[c] for c in m.images if not m.is_null(values[c])]
            images = [p.strip() for cell in cells for p in _split(cell, m.image_separator) if p.strip()]
            if not images:
                yield Skip(item, f"no image path in column {', '.join(m.images)}")
                continue
            rid = values[m.id].strip() if m.id else images[0]
            if m.id and m.is_null(rid):
                yield Skip(item, f"empty id in column {m.id}")
                continue
            if rid in seen:
                yield Skip(item, f"duplicate id {rid!r} (first at line {seen[rid]})", record=rid)
                continue
            seen[rid] = row.line
            texts = tuple(TextField(kind, values[c].strip()) for c, kind in m.texts if not m.is_null(values[c]))
            attributes = tuple(
                (key, " ".join(values[c].split())) for c, key in m.attributes if not m.is_null(values[c])
            )
            paths, skips = usable_images(item, root, images)
            yield from (Skip(s.item, s.reason, record=rid) for s in skips)
            if paths:
                yield Record(id=rid, images=paths, texts=texts, attributes=attributes, source=self.name)


def _split(value: str, separator: str | None) -> list[str]:
    return value.split(separator) if separator else [value]


def _find_csv(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(p for p in path.glob("*.csv") if p.is_file())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise UserInputError(f"{path} must hold exactly one .csv file for the catalog format (found: {listed})")
    return found[0]
