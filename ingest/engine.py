"""Ingest engines: what turns a stream of records into batches of loaded records for the writer.

The writer (`Ingestor`) owns the store and the indexes and is the only one to touch them; an engine only
does the work that needs neither: reading image files and, for the Ray engine, decoding, entities and
vectors on its workers. The local engine reads the next batch on a thread while the writer encodes this one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Protocol

from mmkg.graph import ids
from mmkg.ingest.batch import Loaded, read_record
from mmkg.ingest.records import Record, Skip
from mmkg.settings import Settings

KnownDigests = Callable[[Sequence[str]], dict[str, str]]
"""Record ids -> the content digest of those stored complete (asked on the writer's thread)."""


class Engine(Protocol):
    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...

    def batches(
        self, records: Iterable[Record | Skip], source: str, known: KnownDigests
    ) -> Iterator[list[Loaded | Skip]]:
        """The items in source order, `settings.ingest_batch` at a time, each Record loaded."""
        ...


class LocalEngine:
    """Reads the next batch (image bytes and content digests) on a thread while the writer works on this one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def batches(
        self, records: Iterable[Record | Skip], source: str, known: KnownDigests
    ) -> Iterator[list[Loaded | Skip]]:
        it = iter(records)

        def next_batch() -> list[Loaded | Skip]:
            return [self.load(item, source) for item in islice(it, self.settings.ingest_batch)]

        with ThreadPoolExecutor(1, thread_name_prefix="mmkg-read") as reader:
            ahead = reader.submit(next_batch)
            while batch := ahead.result():
                ahead = reader.submit(next_batch)
                yield batch

    def load(self, item: Record | Skip, source: str) -> Loaded | Skip:
        if isinstance(item, Skip):
            return item
        return Loaded(read_record(item, ids.record_id(source, item.id), self.settings.max_image_bytes))
