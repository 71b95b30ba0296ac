"""Where things live inside a workspace (`MMKG_HOME`): one place, so no module invents a path."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def graph_dir(self) -> Path:
        return self.root / "graph"

    @property
    def index_dir(self) -> Path:
        return self.root / "index"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def last_ingest(self) -> Path:
        return self.root / "last_ingest.json"

    @property
    def revision_file(self) -> Path:
        """Bumped by every writer after each durable change: readers reload when it moves."""
        return self.root / "revision.json"

    @property
    def pending_file(self) -> Path:
        """Present while a write's collection-wide passes (co-occurrence, tags, cleanup) are owed."""
        return self.root / "pending_passes.json"

    def revision(self) -> int:
        try:
            return int(json.loads(self.revision_file.read_text("utf-8"))["revision"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def bump_revision(self) -> int:
        """Tell readers (the API server, the explorer) that the graph or the vectors changed."""
        rev = self.revision() + 1
        atomic_write_json(self.revision_file, {"revision": rev})
        return rev

    def ensure(self) -> Workspace:
        for d in (self.graph_dir, self.index_dir, self.models_dir, self.cache_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write-then-rename with fsync, so a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file or a folder (after a rename in it: the new entry) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, ensure_ascii=False).encode("utf-8"))
