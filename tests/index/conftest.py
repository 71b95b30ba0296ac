"""Helpers for the index tests: whether a Milvus Lite folder is free (its in-process server stopped)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import pytest


def _lock_is_free(folder: Path) -> bool:
    """Whether no open Milvus Lite database, in this process or another, holds the folder's LOCK."""
    fd = os.open(folder / "LOCK", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def lock_is_free() -> Callable[[Path], bool]:
    """`lock_is_free(folder)`: whether no open Milvus Lite database, here or in another process, holds it."""
    return _lock_is_free
