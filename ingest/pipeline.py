"""Records in, graph and vectors out: batched, idempotent, resumable, and in step with the source.

A record is marked `complete` on its Record node, with the hash of its content, only after its nodes,
edges and vectors are durable, so a killed ingest redoes at most the batch it was in and, because
every write is an upsert keyed by content-derived ids, redoing it duplicates nothing.

A record whose content changed (or that a killed run left incomplete) is replaced: the old Record
and what it alone held are deleted and the new version written, in the same commit on the embedded
store. Vectors of nodes that went are removed after that commit, so a crash leaves at worst vectors
without a node (never searched: hits come from the graph) that the next write sweeps away. The
collection-wide passes (co-occurrence, zero-shot tags, unlinked entities) run after any change; a
marker file says they are owed, so a run killed before them makes the next run do them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from itertools import combinations, islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.graph import ids
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.index.base import VectorIndex
from mmkg.index.vectors import Vectors
from mmkg.ingest.batch import (
    BatchGraph,
    Decoded,
    Loaded,
    Prepared,
    build_graph,
    decode_record,
    entity_text,
    prepare_record,
    read_record,
)
from mmkg.ingest.encoding import EncodePool, Pending
from mmkg.ingest.engine import Engine, LocalEngine
from mmkg.ingest.entities import Entity, extract_entities
from mmkg.ingest.records import Record, Skip
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_json

log = logging.getLogger(__name__)

TAG_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)
TAG_PRECISION = 0.5
"""A zero-shot tag is written only at scores where, on this collection, tags are right at least this often."""
TAG_MIN_CHECKED = 50
"""Fewer checkable tags than this at a threshold: too few to trust its precision."""
MAX_COOCCURRING = 30
"""Entities per record that take part in co-occurrence (attributes first): bounds pairs per record."""


@dataclass
class IngestReport:
    source: str
    ingested: int = 0
    already_present: int = 0
    updated: int = 0
    """Records whose content changed at the source: replaced."""
    deleted: list[str] = field(default_factory=list)
    """Record ids removed by `--sync` (the source no longer holds them)."""
    skipped: list[Skip] = field(default_factory=list)
    new_images: int = 0
    new_texts: int = 0
    new_entities: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ingested": self.ingested,
            "already_present": self.already_present,
            "updated": self.updated,
            "deleted": self.deleted,
            "skipped": [{"item": s.item, "reason": s.reason} for s in self.skipped],
            "new_images": self.new_images,
            "new_texts": self.new_texts,
            "new_entities": self.new_entities,
            "seconds": round(self.seconds, 2),
        }


class Ingestor:
    """Writes records into a graph store and the vector indexes, with entities and image tags."""

    def __init__(self, settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder) -> None:
        self.settings = settings
        self.store = store
        self.vectors = vectors
        self.encoder = encoder
        self._touched_entities: set[str] = set()
        self._pool: EncodePool | None = None

    def run(
        self,
        records: Iterable[Record | Skip],
        source: str,
        total: int | None = None,
        progress: bool = True,
        sync: bool = False,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> IngestReport:
        """Ingest `records` of `source` with the configured engine (`settings.ingest_engine`). `sync`: then
        delete the source's records it no longer holds. `on_progress(done, total)` is called after each batch
        (the API's job progress)."""
        started = time.perf_counter()
        report = IngestReport(source=source)
        owed = self._passes_owed()
        held: set[str] = set()
        unattributed = 0
        done = 0
        bar = tqdm(total=total, desc=f"ingest {source}", unit="rec", disable=not progress)
        with self._engine() as engine, EncodePool(self.encoder, self.settings.ingest_threads()) as self._pool:
            for batch in engine.batches(records, source, self.known_digests):
                usable: list[Loaded] = []
                for item in batch:
                    if isinstance(item, Skip):
                        report.skipped.append(item)
                        if item.record is None:
                            unattributed += 1
                        else:
                            held.add(ids.record_id(source, item.record))
                    else:
                        usable.append(item)
                        held.add(item.read.rid)
                self._ingest_batch(usable, source, report)
                bar.update(len(batch))
                done += len(batch)
                if on_progress is not None:
                    on_progress(done, total)
        self._pool = None
        bar.close()
        if sync:
            report.deleted = self._sync(source, held, unattributed)
        if report.ingested or report.updated or report.deleted or owed:
            self.refresh_derived(progress=progress, all_entities=owed)
        report.seconds = time.perf_counter() - started
        atomic_write_json(Workspace(self.settings.home).last_ingest, report.to_json())
        return report

    def _engine(self) -> AbstractContextManager[Engine]:
        if self.settings.ingest_engine == "ray":
            from mmkg.ingest.ray_engine import RayEngine  # ray: imported for this engine only

            return RayEngine(self.settings)
        return LocalEngine(self.settings)

    def known_digests(self, rids: Sequence[str]) -> dict[str, str]:
        """The content digest of each of `rids` that is stored complete (an engine may skip reading those)."""
        return {
            rid: str(node.props["content_hash"])
            for rid, node in self.store.get_nodes(list(rids)).items()
            if node.props.get("complete") and node.props.get("content_hash")
        }

    def _sync(self, source: str, held: set[str], unattributed: int) -> list[str]:
        """Delete the records of `source` it no longer holds; refuse when that cannot be told safely."""
        stale = sorted(
            n.id for n in self.store.iter_nodes(Label.RECORD) if n.props.get("source") == source and n.id not in held
        )
        if not stale:
            return []
        if not held:
            raise UserInputError(
                f"--sync: the source {source!r} yielded no usable record, so all {len(stale)} of its records would "
                "be deleted; refusing (check the path; `mmkg delete` removes records one by one)"
            )
        if unattributed:
            raise UserInputError(
                f"--sync: {unattributed} item(s) of {source!r} could not be read (see `skipped`), so whether "
                f"{len(stale)} record(s) left the source cannot be told; nothing was deleted. Fix those items, "
                "or remove records with `mmkg delete`"
            )
        self.delete_records(stale, refresh=False)
        return stale

    # --- deleting --------------------------------------------------------------------------

    def delete_records(self, record_ids: Sequence[str], refresh: bool = True) -> list[str]:
        """Delete records (their texts, their images no other record holds, their vectors, their entities
        nothing else links), then recompute the derived edges. Returns the ids that were deleted."""
        wanted = list(dict.fromkeys(record_ids))
        present = [rid for rid, n in self.store.get_nodes(wanted).items() if n.label is Label.RECORD]
        if not present:
            return []
        self._owe_passes()
        for chunk in _batched(iter(present), self.settings.ingest_batch):
            removed = self._remove_records(chunk)
            self.store.commit()
            self._drop_vectors(removed)
            Workspace(self.settings.home).bump_revision()
        if refresh:
            self.refresh_derived(progress=False)
        return present

    def _remove_records(self, record_ids: Sequence[str], keep: Iterable[str] = ()) -> set[str]:
        """Delete records from the graph (uncommitted); the ids of every node that went, except `keep`."""
        touched: set[str] = set()
        images: set[str] = set()
        for rid in record_ids:
            touched.add(rid)
            for _, child in self.store.neighbors(rid, [Rel.HAS], "out"):
                touched.add(child.id)
                if child.label is Label.IMAGE:
                    images.add(child.id)
                for _, other in self.store.neighbors(child.id, [Rel.MENTIONS, Rel.DEPICTS], "out"):
                    touched.add(other.id)
            self.store.delete_record(rid)
        self._touched_entities.update(t for t in touched if t.startswith("ent:"))
        left = self.store.get_nodes(sorted(images))
        gone_records = set(record_ids)
        for iid, node in left.items():  # a shared image that named a deleted record now names one that holds it
            if node.props.get("record") in gone_records:
                holders = sorted(n.id for _, n in self.store.neighbors(iid, [Rel.HAS], "in"))
                if holders:
                    self.store.upsert_nodes([Node(iid, Label.IMAGE, {"record": holders[0]})])
        return touched - self.store.existing_ids(sorted(touched)) - set(keep)

    def _drop_vectors(self, node_ids: Iterable[str]) -> None:
        gone = sorted(node_ids)
        if not gone:
            return
        for index in self.vectors:
            index.remove(gone)
        self.vectors.save()

    # --- derived edges ---------------------------------------------------------------------

    def refresh_derived(self, progress: bool = False, all_entities: bool = False) -> None:
        """Co-occurrence, zero-shot tags and unlinked entities, recomputed from the records as they are
        now; then vectors without a node are swept. `all_entities`: look at every entity (recovery)."""
        self._owe_passes()
        removed_edges: list[tuple[str, str, Rel]] = []
        self.update_cooccurrence(removed=removed_edges)
        self.tag_images(progress=progress, removed=removed_edges)
        candidates = set(self._touched_entities)
        candidates.update(end for src, dst, _ in removed_edges for end in (src, dst) if end.startswith("ent:"))
        if all_entities:
            candidates.update(n.id for n in self.store.iter_nodes(Label.ENTITY))
        gone = self.store.delete_isolated(sorted(candidates))
        self.store.commit()
        self._touched_entities.clear()
        self._drop_vectors(gone)
        self.sweep_vectors()
        self._drop_search_caches()
        Workspace(self.settings.home).pending_file.unlink(missing_ok=True)
        Workspace(self.settings.home).bump_revision()

    def _drop_search_caches(self) -> None:
        """The retrievers cache what they derive from the graph keyed by node and edge counts: an update that
        keeps the counts (a colour changed) must not be served from them."""
        index_dir = Workspace(self.settings.home).index_dir
        for cached in (index_dir / "gnn" / "state.json", index_dir / "records.pkl"):
            cached.unlink(missing_ok=True)

    def sweep_vectors(self) -> int:
        """Remove vectors whose node is gone (what a crash between a graph commit and a vector save leaves)."""
        swept = 0
        for index in self.vectors:
            listing = getattr(index, "ids", None)
            if listing is None:
                continue
            held = list(listing())
            orphans = set(held) - self.store.existing_ids(held)
            if orphans:
                swept += index.remove(sorted(orphans))
        if swept:
            log.info("removed %d vectors whose nodes are gone", swept)
            self.vectors.save()
        return swept

    def _owe_passes(self) -> None:
        ws = Workspace(self.settings.home)
        if not ws.pending_file.exists():
            atomic_write_json(ws.pending_file, {"since": time.time()})

    def _passes_owed(self) -> bool:
        return Workspace(self.settings.home).pending_file.exists()

    # --- one batch -------------------------------------------------------------------------

    def _ingest_batch(self, items: Sequence[Loaded], source: str, report: IngestReport) -> None:
        """Triage against the store, prepare, then write: the graph, the vectors, and last the `complete` marks."""
        verdicts = self._triage(items)
        prepared, hashes, replaced, changed = self._prepare_batch(items, verdicts, report)
        if not prepared:
            return
        self._owe_passes()
        given = {k: v for item in items for k, v in item.vectors.items()}
        # Image batches start on the encoding threads first; spaCy runs here meanwhile, and the text towers
        # start after it (a model's first load imports modules, which two threads must not do at once).
        images = self._new_vectors(
            self.vectors.images, {im.iid: im.image for p in prepared for im in p.images.values()}, given, self._images
        )
        graph = build_graph(prepared, source, self._entities(prepared, items))
        texts = self._new_vectors(
            self.vectors.texts, {tid: text for p in prepared for tid, _, text, _ in p.texts}, given, self._texts
        )
        entities = self._new_vectors(
            self.vectors.entities, {eid: entity_text(ent) for eid, ent in graph.entities.items()}, given, self._texts
        )
        added = self._write_batch(graph, hashes, replaced, [images, texts, entities])
        report.new_images += added[0]
        report.new_texts += added[1]
        report.new_entities += added[2]
        report.updated += len(changed)
        report.ingested += len(prepared) - len(changed)

    def _triage(self, items: Sequence[Loaded]) -> list[str | Node | None]:
        """Per item: "duplicate" (its id came earlier in the batch), "present" (stored complete with the same
        content), else the stored node it replaces (None: new)."""
        existing = self.store.get_nodes([item.read.rid for item in items])
        verdicts: list[str | Node | None] = []
        seen: set[str] = set()
        for item in items:
            rid = item.read.rid
            node = existing.get(rid)
            if rid in seen:
                verdicts.append("duplicate")
            elif node is not None and node.props.get("complete") and node.props.get("content_hash") == item.read.digest:
                verdicts.append("present")
            else:
                verdicts.append(node)
            seen.add(rid)
        return verdicts

    def _prepare_batch(
        self, items: Sequence[Loaded], verdicts: Sequence[str | Node | None], report: IngestReport
    ) -> tuple[list[Prepared], dict[str, str], list[str], set[str]]:
        """The records to write, their digests, those that replace a stored version, and those of them that were
        complete (changed at the source); Skips and already-present records reported in source order."""
        todo = [item for item, verdict in zip(items, verdicts, strict=True) if not isinstance(verdict, str)]
        for item, decoded in zip(todo, self._map(self._decode, todo), strict=True):
            item.decoded = decoded
        prepared: list[Prepared] = []
        hashes: dict[str, str] = {}
        replaced: list[str] = []
        changed: set[str] = set()
        for item, verdict in zip(items, verdicts, strict=True):
            if verdict == "duplicate":
                report.skipped.append(Skip(item.read.record.id, "duplicate record id in this source"))
                continue
            if verdict == "present":
                report.already_present += 1
                continue
            assert item.decoded is not None and not isinstance(verdict, str)
            ready, skips = prepare_record(item.read, item.decoded)
            report.skipped.extend(skips)
            if ready is None:
                continue  # unusable now: an older version, if any, stays (bad input loses nothing)
            prepared.append(ready)
            hashes[ready.rid] = item.read.digest
            if verdict is not None:  # changed at the source, or left incomplete by a killed run
                replaced.append(ready.rid)
                if verdict.props.get("complete"):
                    changed.add(ready.rid)
        return prepared, hashes, replaced, changed

    def _decode(self, item: Loaded) -> Decoded:
        """The item's decoded images: the engine's, else decoded here (read again where the engine dropped the
        bytes because the record looked unchanged)."""
        if item.decoded is not None:
            return item.decoded
        read = item.read
        if read.record.images and not read.blobs:
            item.read = read = read_record(read.record, read.rid, self.settings.max_image_bytes)
        return decode_record(read, self.settings.max_image_pixels)

    def _entities(self, prepared: Sequence[Prepared], items: Sequence[Loaded]) -> dict[str, list[Entity]]:
        """Entities of each text of the batch: the engine's, else extracted here (spaCy, batched)."""
        found: dict[str, list[Entity]] = {}
        for item in items:
            found.update(item.entities or {})
        rows = [(tid, text) for p in prepared for tid, _, text, _ in p.texts if tid not in found]
        extracted = extract_entities([text for _, text in rows])
        found.update({tid: ents for (tid, _), ents in zip(rows, extracted, strict=True)})
        return found

    def _new_vectors(
        self, index: VectorIndex, candidates: dict[str, Any], given: dict[str, np.ndarray], encode: Callable[..., Any]
    ) -> tuple[VectorIndex, list[str], Callable[[], np.ndarray]]:
        """The ids `index` lacks and a callable giving their vectors: the engine's, the rest being encoded now
        (started at once on the encoding threads; the callable waits for them)."""
        have = index.present(list(candidates))
        new = [k for k in candidates if k not in have]
        missing = [k for k in new if k not in given]
        pending = encode([candidates[k] for k in missing])

        def vectors() -> np.ndarray:
            computed = dict(zip(missing, pending.result(), strict=True))
            rows = [given[k] if k in given else computed[k] for k in new]
            return np.asarray(rows, dtype=np.float32).reshape(len(new), -1)

        return index, new, vectors

    def _write_batch(
        self,
        graph: BatchGraph,
        hashes: dict[str, str],
        replaced: list[str],
        vectors: Sequence[tuple[VectorIndex, list[str], Callable[[], np.ndarray]]],
    ) -> list[int]:
        """Graph first (records still incomplete; an old version deleted in the same commit), then vectors, then
        mark complete; vectors of nodes the new version dropped go last. Returns the vectors added per index."""
        gone = self._remove_records(replaced, keep=graph.nodes) if replaced else set()
        self.store.upsert_nodes(list(graph.nodes.values()))
        self.store.upsert_edges(graph.edges)
        added = [index.add(new, compute()) if new else 0 for index, new, compute in vectors]
        self.vectors.save()
        self.store.upsert_nodes(
            [
                Node(rid, Label.RECORD, {"complete": True, "entities": entities, "content_hash": hashes[rid]})
                for rid, entities in graph.record_entities.items()
            ]
        )
        self.store.commit()
        self._drop_vectors(gone)
        if replaced:
            self._drop_search_caches()
        Workspace(self.settings.home).bump_revision()
        return added

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        return self._pool.map(fn, items) if self._pool is not None else [fn(item) for item in items]

    def _images(self, images: list[Image.Image | None]) -> Pending:
        return self._encoding_pool().images([im for im in images if im is not None])

    def _texts(self, texts: list[str]) -> Pending:
        return self._encoding_pool().texts(texts)

    def _encoding_pool(self) -> EncodePool:
        if self._pool is None:  # a batch written outside `run` (none today): one thread, started for it
            self._pool = EncodePool(self.encoder, 1).__enter__()
        return self._pool

    # --- collection-wide passes ------------------------------------------------------------

    def update_cooccurrence(self, removed: list[tuple[str, str, Rel]] | None = None) -> int:
        """Recount CO_OCCURS (count and PMI) from every complete record: idempotent by construction.
        Pairs no record holds any more are deleted (and appended to `removed`)."""
        pair_counts: Counter[tuple[str, str]] = Counter()
        entity_counts: Counter[str] = Counter()
        n_records = 0
        for node in self.store.iter_nodes(Label.RECORD):
            ents = list(node.props.get("entities") or [])[:MAX_COOCCURRING]
            if not node.props.get("complete") or not ents:
                continue
            n_records += 1
            unique = sorted(set(ents))
            entity_counts.update(unique)
            pair_counts.update(combinations(unique, 2))
        edges = []
        for (a, b), count in pair_counts.items():
            pmi = math.log(count * n_records / (entity_counts[a] * entity_counts[b]))
            edges.append(Edge(a, b, Rel.CO_OCCURS, {"count": count, "pmi": round(pmi, 4)}))
        stale = [
            e.key for e in self.store.iter_edges(Rel.CO_OCCURS) if tuple(sorted((e.src, e.dst))) not in pair_counts
        ]
        if stale:
            self.store.delete_edges(stale)
            if removed is not None:
                removed.extend(stale)
        for chunk in _batched(iter(edges), 5000):
            self.store.upsert_edges(chunk)
        return len(edges)

    def tag_images(self, progress: bool = False, removed: list[tuple[str, str, Rel]] | None = None) -> int:
        """Zero-shot tagging: link each image to the entity names whose vectors are closest to it.

        The vocabulary is every text-derived entity mentioned at least twice (one-off noun chunks
        are noise); attribute entities are excluded because records state those outright. Tag edges
        that no longer hold (the vocabulary shrank after a delete, or grew past them) are deleted
        and appended to `removed`.
        """
        old_tags = {e.key for e in self.store.iter_edges(Rel.DEPICTS) if e.props.get("source") == "tag"}
        kept: set[tuple[str, str, Rel]] = set()
        written = self._write_tags(progress, kept)
        stale = sorted(old_tags - kept)
        if stale:
            self.store.delete_edges(stale)
            if removed is not None:
                removed.extend(stale)
        return written

    def _write_tags(self, progress: bool, kept: set[tuple[str, str, Rel]]) -> int:
        mention_counts: Counter[str] = Counter(e.dst for e in self.store.iter_edges(Rel.MENTIONS))
        candidates = [
            n.id
            for n in self.store.iter_nodes(Label.ENTITY)
            if n.props.get("kind") != "attribute" and mention_counts[n.id] >= 2
        ]
        encoded = self.vectors.entities.present(candidates)
        vocab = [eid for eid in candidates if eid in encoded]
        all_images = [n.id for n in self.store.iter_nodes(Label.IMAGE)]
        encoded = self.vectors.images.present(all_images)
        image_ids = [iid for iid in all_images if iid in encoded]
        if not vocab or not image_ids:
            return 0
        vocab_vecs = self.vectors.entities.get(vocab)
        k = min(self.settings.tag_top_k, len(vocab))
        proposed: list[tuple[str, str, float]] = []
        for chunk in tqdm(list(_batched(iter(image_ids), 2048)), desc="tag images", disable=not progress):
            sims = self.vectors.images.get(chunk) @ vocab_vecs.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            proposed += [(iid, vocab[j], float(sims[row, j])) for row, iid in enumerate(chunk) for j in top[row]
                         if sims[row, j] >= self.settings.tag_min_score]
        threshold = self.calibrate_tags(proposed)
        edges = [Edge(iid, eid, Rel.DEPICTS, {"score": round(score, 4), "source": "tag"})
                 for iid, eid, score in proposed if threshold is not None and score >= threshold]
        for chunk_edges in _batched(iter(edges), 5000):
            self.store.upsert_edges(chunk_edges)
        kept.update(e.key for e in edges)
        return len(edges)

    def calibrate_tags(self, proposed: Sequence[tuple[str, str, float]]) -> float | None:
        """The lowest score at which a zero-shot tag is right at least TAG_PRECISION of the time, None when no
        score is (then no tag is written). Ground truth: a tag is right when a text of the image's own record
        mentions the tagged entity; only images whose record has a text are checked. Saved in the workspace."""
        record_of: dict[str, list[str]] = defaultdict(list)  # image -> its records
        texts_of: dict[str, list[str]] = defaultdict(list)  # record -> its texts
        for edge in self.store.iter_edges(Rel.HAS):
            if edge.dst.startswith("img:"):
                record_of[edge.dst].append(edge.src)
            else:
                texts_of[edge.src].append(edge.dst)
        mentions: dict[str, set[str]] = defaultdict(set)
        for edge in self.store.iter_edges(Rel.MENTIONS):
            mentions[edge.src].add(edge.dst)
        checked: list[tuple[float, bool]] = []
        for iid, eid, score in proposed:
            texts = [t for r in record_of.get(iid, ()) for t in texts_of.get(r, ())]
            if texts:
                checked.append((score, any(eid in mentions.get(t, ()) for t in texts)))
        chosen: float | None = None
        table = []
        for t in TAG_THRESHOLDS:
            kept = [ok for s, ok in checked if s >= t]
            precision = sum(kept) / len(kept) if kept else 0.0
            table.append({"threshold": t, "checked": len(kept), "precision": round(precision, 3)})
            if chosen is None and len(kept) >= TAG_MIN_CHECKED and precision >= TAG_PRECISION:
                chosen = t
        atomic_write_json(tag_calibration_path(self.settings),
                          {"threshold": chosen, "target_precision": TAG_PRECISION, "table": table})
        log.info("zero-shot tags: threshold %s (precision table %s)", chosen, table)
        return chosen


def tag_calibration_path(settings: Settings) -> Path:
    return Workspace(Path(settings.home)).root / "tag_calibration.json"


def tag_threshold(settings: Settings) -> float | None:
    """The score above which zero-shot tags are trusted in this workspace: its calibrated threshold, None when no
    score is or none was measured (then an image query gets no tags either). A collection of texts alone (captions,
    notes) is never calibrated, and there an image query's unmeasured tags, matched against the words of the
    captions, held coco-mini's untuned image->caption R@1 at 27.0 against the encoder's 34.6 (35.2 without them)."""
    path = tag_calibration_path(settings)
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("threshold") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return None if value is None else max(float(value), settings.tag_min_score)


@dataclass
class Resolved:
    """Record ids a user named, resolved: found, not found, and ambiguous (with the candidates)."""

    found: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)


def resolve_record_ids(store: GraphStore, given: Sequence[str], source: str | None = None) -> Resolved:
    """Map what a user typed to Record ids: the internal `rec:SOURCE:ID`, or the source's own id (a catalog's
    product id, a Flickr image name), narrowed to one source with `source` when two sources share an id."""
    out = Resolved()
    internal = store.get_nodes([g for g in given if g.startswith("rec:")])
    by_source_id: dict[str, list[str]] = {}
    wanted = {g for g in given if g not in internal}
    if wanted:
        for node in store.iter_nodes(Label.RECORD):
            sid = str(node.props.get("source_id", ""))
            if sid in wanted and (source is None or node.props.get("source") == source):
                by_source_id.setdefault(sid, []).append(node.id)
    for g in dict.fromkeys(given):
        node = internal.get(g)
        if node is not None and node.label is Label.RECORD:
            out.found.append(g)
            continue
        matches = sorted(by_source_id.get(g, []))
        if len(matches) == 1:
            out.found.append(matches[0])
        elif matches:
            out.ambiguous[g] = matches
        else:
            out.missing.append(g)
    out.found = list(dict.fromkeys(out.found))
    return out


def _batched(it: Iterator[Any], n: int) -> Iterator[list[Any]]:
    while chunk := list(islice(it, n)):
        yield chunk
