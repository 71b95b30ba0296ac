"""The Ray Data ingest engine: records are read, decoded, parsed and encoded on Ray workers; the writer (the
driver, the only process that touches the store and the indexes) gets them back in source order and writes
them in the same batches, with the same code, as the local engine.

    records (driver) -> Ray Data: an actor pool, each actor holding the towers and spaCy loaded:
        read image files, digest, decode, entities, image / text / entity vectors
    -> driver, in order: triage against the store, graph and index writes, `complete` marks

A record the store already holds complete with the same content is read and digested on a worker but
neither decoded nor encoded, so a re-run or a resume after a kill redoes only what is missing. Without
`ray_address` a local Ray is started with `ingest_workers` (default: all) cores and shut down afterwards;
with it, the ingest joins that cluster, whose workers must see the collection's files and the workspace's
trained model at the same paths.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from mmkg.errors import UserInputError
from mmkg.graph import ids
from mmkg.ingest.batch import Loaded, decode_record, entity_text, read_record, record_texts
from mmkg.ingest.engine import KnownDigests
from mmkg.ingest.entities import Entity, attribute_entities, extract_entities
from mmkg.ingest.records import Record, Skip
from mmkg.settings import Settings

log = logging.getLogger(__name__)

DIGEST_LOOKUP = 10_000
"""Record ids per store lookup of known digests."""


class RayEngine:
    """Ray Data under the writer: joins `settings.ray_address`, or starts (and then stops) a local Ray."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._started = False

    def __enter__(self) -> RayEngine:
        import ray  # Ray: imported for this engine only

        logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-dataset INFO lines are noise here
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                                       "log_to_driver": False}
            try:
                if self.settings.ray_address:
                    ray.init(address=self.settings.ray_address, **options)
                else:
                    ray.init(num_cpus=self.settings.ingest_threads(), **options)
            except Exception as exc:  # Ray raises a bare Exception when its node times out starting (under load)
                where = self.settings.ray_address or "a local Ray"
                raise UserInputError(f"cannot start the Ray ingest engine on {where}: {exc}") from exc
            self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray  # Ray: imported for this engine only

            ray.shutdown()
            self._started = False

    def workers(self) -> int:
        """Encoder actors: `ingest_workers`, or one per CPU of the cluster."""
        import ray  # Ray: imported for this engine only

        return self.settings.ingest_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))

    def batches(
        self, records: Iterable[Record | Skip], source: str, known: KnownDigests
    ) -> Iterator[list[Loaded | Skip]]:
        items = list(records)
        rows = self._rows(items, source, known)
        stream = self._loaded(rows)
        size = self.settings.ingest_batch
        # Ray Data's iterator is run to its end (or closed, on an error) here, so that its executor threads stop
        # before `ray.shutdown`: a thread that calls into Ray after the shutdown makes Ray end the whole process
        # (`_exit(1)` after "The core worker process is not initialized yet or already shutdown"), which killed
        # a test run once, under load, right after a Ray ingest.
        try:
            for start in range(0, len(items), size):
                yield [item if isinstance(item, Skip) else next(stream) for item in items[start : start + size]]
            assert next(stream, None) is None, "Ray Data returned more records than it was given"
        finally:
            stream.close()

    def _rows(self, items: list[Record | Skip], source: str, known: KnownDigests) -> list[dict[str, Any]]:
        """One row per Record, in source order: the record, its id and the digest stored for it (if complete)."""
        records = [(item, ids.record_id(source, item.id)) for item in items if isinstance(item, Record)]
        digests: dict[str, str] = {}
        for start in range(0, len(records), DIGEST_LOOKUP):
            digests.update(known([rid for _, rid in records[start : start + DIGEST_LOOKUP]]))
        return [
            {"seq": seq, "item": pickle.dumps((record, rid, digests.get(rid)))}
            for seq, (record, rid) in enumerate(records)
        ]

    def _loaded(self, rows: list[dict[str, Any]]) -> Iterator[Loaded]:
        if not rows:
            return
        import ray  # Ray: imported for this engine only

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        dataset = ray.data.from_items(rows).map_batches(
            RayEncoder,
            fn_constructor_args=(self.settings,),
            batch_size=self.settings.ray_batch,
            compute=ray.data.ActorPoolStrategy(size=self.workers()),
            num_cpus=1,
            batch_format="numpy",
        )
        for row in dataset.iter_rows():
            yield pickle.loads(row["item"])


class RayEncoder:
    """A Ray Data actor: loads the encoder once and turns batches of records into Loaded items."""

    def __init__(self, settings: Settings) -> None:
        # Imported in the actor's own process, which is where the towers load (not on the driver).
        import ray
        import torch

        from mmkg.encoders.factory import create_encoder

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        torch.set_num_threads(max(1, int(cpus)))  # the CPUs Ray gave this actor, no more
        self.settings = settings
        self.encoder = create_encoder(settings)
        self.entity_vectors: dict[str, np.ndarray] = {}
        """Entity vectors this actor computed already: attribute values recur in every batch."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loaded = [self._load(*pickle.loads(blob)) for blob in batch["item"]]
        self._enrich([item for item in loaded if item.decoded is not None])
        return {"seq": batch["seq"], "item": np.array([pickle.dumps(item) for item in loaded], dtype=object)}

    def _load(self, record: Record, rid: str, known: str | None) -> Loaded:
        read = read_record(record, rid, self.settings.max_image_bytes)
        if read.digest == known:  # stored complete and unchanged: the writer will count it, nothing more
            read.blobs = []
            return Loaded(read)
        return Loaded(read, decode_record(read, self.settings.max_image_pixels))

    def _enrich(self, items: list[Loaded]) -> None:
        """Entities of every text, and vectors of every image, text and entity of `items`."""
        texts = {tid: text for item in items for tid, _, text, _ in record_texts(item.read.rid, item.read.record)}
        found = dict(zip(texts, extract_entities(list(texts.values())), strict=True))
        images = {im.iid: im.image for item in items for im in (item.decoded.images.values() if item.decoded else ())}
        image_vectors = dict(zip(images, self.encoder.encode_images(list(images.values())), strict=True))
        text_vectors = dict(zip(texts, self.encoder.encode_texts(list(texts.values())), strict=True))
        owned = [record_texts(item.read.rid, item.read.record) for item in items]
        linked = [
            [e for tid, *_ in own for e in found[tid]] + attribute_entities(item.read.record.attributes)
            for item, own in zip(items, owned, strict=True)
        ]
        entity_vectors = self._entity_vectors([e for ents in linked for e in ents])
        for item, own, ents in zip(items, owned, linked, strict=True):
            item.entities = {tid: found[tid] for tid, *_ in own}
            assert item.decoded is not None
            for im in item.decoded.images.values():
                item.vectors[im.iid] = image_vectors[im.iid]
                im.image = None  # the pixels need not travel back
            item.vectors.update({tid: text_vectors[tid] for tid, *_ in own})
            item.vectors.update({eid: entity_vectors[eid] for eid in (ids.entity_id(e.name) for e in ents)})

    def _entity_vectors(self, entities: list[Entity]) -> dict[str, np.ndarray]:
        wanted = {ids.entity_id(e.name): entity_text(e) for e in entities}
        new = {eid: text for eid, text in wanted.items() if eid not in self.entity_vectors}
        if new:
            self.entity_vectors.update(zip(new, self.encoder.encode_texts(list(new.values())), strict=True))
        return {eid: self.entity_vectors[eid] for eid in wanted}
