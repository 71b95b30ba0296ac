"""What every reader yields: a Record (a product, a case, an image with captions) or a Skip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TextField:
    kind: str
    """What the text is: caption, title, name, finding, diagnosis, description..."""
    text: str
    image: int | None = None
    """Index into `Record.images` of the one image this text describes (a MedPix caption);
    None: the text is about the whole record and so describes each of its images."""


@dataclass(frozen=True)
class Record:
    id: str
    """Stable within its source (a product id, a case id, an image file name)."""
    images: tuple[Path, ...]
    texts: tuple[TextField, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()
    """(key, value) pairs that become entities `key:value` (colour:navy blue, modality:ct)."""
    source: str = ""
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Skip:
    """An item a reader or the pipeline could not use, and why: reported, never fatal to the batch."""

    item: str
    reason: str
    record: str | None = None
    """The source's id of the record this is about, where the reader knows it: that record is still in the
    source (a `--sync` must not delete it for a bad image)."""
