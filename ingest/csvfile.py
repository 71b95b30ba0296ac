"""Streaming CSV rows that survive bad lines: invalid UTF-8, NUL bytes, ragged rows become Skips."""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmkg.errors import UserInputError
from mmkg.ingest.records import Skip

MAX_FIELD_CHARS = 1_000_000
"""A field longer than this (often an unclosed quote swallowing the file) is a bad row, not a crash."""

_UNDECODABLE = re.compile("[\udc80-\udcff]")
"""Bytes that were not UTF-8, as `surrogateescape` keeps them: one such character marks the row bad."""

csv.field_size_limit(min(MAX_FIELD_CHARS, sys.maxsize))


@dataclass(frozen=True)
class Row:
    line: int
    """Line number (1-based) where the row starts in the file."""
    values: dict[str, str]


def read_header(path: Path) -> list[str]:
    """The header row; an unreadable or empty file is the user's mistake, said in one line."""
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            header = next(csv.reader(f), None)
    except OSError as exc:
        raise UserInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except csv.Error as exc:
        raise UserInputError(f"{path.name}: header is not valid CSV: {exc}") from exc
    if not header or not any(h.strip() for h in header):
        raise UserInputError(f"{path.name} is empty or has no header row")
    if _UNDECODABLE.search("".join(header)):
        raise UserInputError(f"{path.name}: header is not valid UTF-8")
    return [h.strip() for h in header]


def iter_rows(path: Path) -> Iterator[Row | Skip]:
    """Data rows as {column: value}, streamed. Each bad row is a Skip named `file:line`, the rest go on.

    The file is decoded with `surrogateescape`, so a line of invalid UTF-8 is caught in its own row
    (quoted multi-line fields stay intact) instead of stopping the whole file.
    """
    header = read_header(path)
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Skip(f"{path.name}:{start}", f"malformed CSV row: {exc}")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            item = f"{path.name}:{start}"
            bad = next((m for f_ in fields if (m := _UNDECODABLE.search(f_))), None)
            if bad is not None:
                byte = ord(bad.group()) - 0xDC00
                yield Skip(item, f"line is not valid UTF-8 (byte 0x{byte:02x})")
                continue
            if len(fields) != len(header):
                yield Skip(item, f"row has {len(fields)} fields, the header has {len(header)}")
                continue
            yield Row(start, dict(zip(header, fields, strict=True)))


def missing_columns_error(path: Path, missing: Sequence[str], header: Sequence[str], what: str) -> UserInputError:
    """The one-line message for a column the user named that the file does not have."""
    names = ", ".join(repr(m) for m in missing)
    plural = "s" if len(missing) > 1 else ""
    return UserInputError(
        f"column{plural} {names} named in the {what} not found in {path.name}; its columns are: {', '.join(header)}"
    )
