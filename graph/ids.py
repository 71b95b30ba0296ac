"""Stable, content-derived node ids: ingesting the same thing twice yields the same ids."""

from __future__ import annotations

import hashlib
import unicodedata


def _digest(*parts: str | bytes, n: int = 20) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:n]


def image_id(content: bytes) -> str:
    """An image is identified by its bytes: the same photo under two names is one node."""
    return "img:" + _digest(content)


def text_id(record_id: str, kind: str, text: str) -> str:
    """A text is identified by what it says and whose it is (the same caption on two records is two texts)."""
    return "txt:" + _digest(record_id, kind, text)


def record_id(source: str, source_id: str) -> str:
    return f"rec:{source}:{source_id}"


def normalize_name(name: str) -> str:
    """Entity names: NFKC, lower case, single spaces. Scripts other than Latin pass through unchanged."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def entity_id(name: str) -> str:
    """Entities are readable: `ent:dog`, `ent:colour:navy blue`."""
    return "ent:" + normalize_name(name)
