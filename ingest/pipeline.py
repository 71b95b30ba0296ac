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

import hashlib
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import combinations, islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from mmkg.encoders.base import Encoder
from mmkg.errors import BadImageError, UserInputError
from mmkg.graph import ids
from mmkg.graph.schema import Edge, Label, Node, Rel
from mmkg.graph.store import GraphStore
from mmkg.index.base import VectorIndex
from mmkg.index.vectors import Vectors
from mmkg.ingest.entities import Entity, attribute_entities, extract_entities
from mmkg.ingest.images import load_image, read_image_bytes
from mmkg.ingest.records import Record, Skip
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_json

log = logging.getLogger(__name__)

MAX_IMAGE_SIDE = 1024
"""Decoded images are shrunk to this before encoding: encoders need far less, memory stays bounded."""
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


@dataclass
class _Prepared:
    rid: str
    record: Record
    images: dict[int, tuple[str, Image.Image, Path, tuple[int, int]]]
    """Readable images by their position in `record.images`: (id, image, path, original size)."""
    texts: list[tuple[str, str, str, int | None]]
    """(id, kind, text, position of the one image it describes or None for all of them)."""

    def described(self, position: int | None) -> list[str]:
        if position is None:
            return [iid for iid, *_ in self.images.values()]
        return [self.images[position][0]] if position in self.images else []


class Ingestor:
    """Writes records into a graph store and the vector indexes, with entities and image tags."""

    def __init__(self, settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder) -> None:
        self.settings = settings
        self.store = store
        self.vectors = vectors
        self.encoder = encoder
        self._touched_entities: set[str] = set()

    def run(
        self,
        records: Iterable[Record | Skip],
        source: str,
        total: int | None = None,
        progress: bool = True,
        sync: bool = False,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> IngestReport:
        """Ingest `records` of `source`. `sync`: then delete the source's records it no longer holds.
        `on_progress(done, total)` is called after each batch (the API's job progress)."""
        started = time.perf_counter()
        report = IngestReport(source=source)
        owed = self._passes_owed()
        held: set[str] = set()
        unattributed = 0
        done = 0
        bar = tqdm(total=total, desc=f"ingest {source}", unit="rec", disable=not progress)
        for batch in _batched(iter(records), self.settings.ingest_batch):
            usable: list[Record] = []
            for item in batch:
                if isinstance(item, Skip):
                    report.skipped.append(item)
                    if item.record is None:
                        unattributed += 1
                    else:
                        held.add(ids.record_id(source, item.record))
                else:
                    usable.append(item)
                    held.add(ids.record_id(source, item.id))
            self._ingest_batch(usable, source, report)
            bar.update(len(batch))
            done += len(batch)
            if on_progress is not None:
                on_progress(done, total)
        bar.close()
        if sync:
            report.deleted = self._sync(source, held, unattributed)
        if report.ingested or report.updated or report.deleted or owed:
            self.refresh_derived(progress=progress, all_entities=owed)
        report.seconds = time.perf_counter() - started
        atomic_write_json(Workspace(self.settings.home).last_ingest, report.to_json())
        return report

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

    def _ingest_batch(self, records: Sequence[Record], source: str, report: IngestReport) -> None:
        rids = [ids.record_id(source, r.id) for r in records]
        existing = self.store.get_nodes(rids)
        prepared: list[_Prepared] = []
        hashes: dict[str, str] = {}
        replaced: list[str] = []
        changed: set[str] = set()
        seen: set[str] = set()
        for rid, record in zip(rids, records, strict=True):
            if rid in seen:
                report.skipped.append(Skip(record.id, "duplicate record id in this source"))
                continue
            seen.add(rid)
            digest = record_hash(record, self.settings.max_image_bytes)
            node = existing.get(rid)
            if node is not None and node.props.get("complete") and node.props.get("content_hash") == digest:
                report.already_present += 1
                continue
            item = self._prepare(rid, record, report)
            if item is None:
                continue  # unusable now: an older version, if any, stays (bad input loses nothing)
            prepared.append(item)
            hashes[rid] = digest
            if node is not None:  # changed at the source, or left incomplete by a killed run
                replaced.append(rid)
                if node.props.get("complete"):
                    changed.add(rid)
        if not prepared:
            return
        self._owe_passes()

        text_rows = [t for p in prepared for t in p.texts]
        text_entities = extract_entities([text for _, _, text, _ in text_rows])
        entities_of_text = {row[0]: ents for row, ents in zip(text_rows, text_entities, strict=True)}

        nodes: dict[str, Node] = {}
        edges: list[Edge] = []
        entity_names: dict[str, Entity] = {}
        record_entities: dict[str, list[str]] = {}
        for p in prepared:
            attrs = attribute_entities(p.record.attributes)
            mentioned: list[str] = []
            for iid, _, path, (w, h) in p.images.values():
                nodes[iid] = Node(iid, Label.IMAGE, {"path": str(path), "width": w, "height": h, "record": p.rid})
                edges.append(Edge(p.rid, iid, Rel.HAS))
            for tid, kind, text, position in p.texts:
                nodes[tid] = Node(tid, Label.TEXT, {"text": text, "kind": kind, "record": p.rid})
                edges.append(Edge(p.rid, tid, Rel.HAS))
                for iid in p.described(position):
                    edges.append(Edge(tid, iid, Rel.DESCRIBES))
                for ent in entities_of_text[tid]:
                    eid = ids.entity_id(ent.name)
                    entity_names[eid] = ent
                    edges.append(Edge(tid, eid, Rel.MENTIONS, {"source": "text"}))
                    mentioned.append(eid)
            for ent in attrs:
                eid = ids.entity_id(ent.name)
                entity_names[eid] = ent
                if p.images:
                    for iid, *_ in p.images.values():
                        edges.append(Edge(iid, eid, Rel.DEPICTS, {"score": 1.0, "source": "attribute"}))
                else:
                    for tid, *_ in p.texts:
                        edges.append(Edge(tid, eid, Rel.MENTIONS, {"source": "attribute"}))
            attr_ids = [ids.entity_id(e.name) for e in attrs]
            record_entities[p.rid] = list(dict.fromkeys(attr_ids + mentioned))
            nodes[p.rid] = Node(
                p.rid,
                Label.RECORD,
                {
                    "source": source,
                    "source_id": p.record.id,
                    "attributes": [f"{k}:{v}" for k, v in p.record.attributes],
                    "complete": False,
                },
            )
        for eid, ent in entity_names.items():
            nodes[eid] = Node(eid, Label.ENTITY, {"name": ent.name, "kind": ent.kind})

        # Graph first (records still incomplete; an old version deleted in the same commit), then
        # vectors, then mark complete; vectors of nodes the new version dropped go last.
        gone = self._remove_records(replaced, keep=nodes) if replaced else set()
        self.store.upsert_nodes(list(nodes.values()))
        self.store.upsert_edges(edges)
        report.new_images += self._add_image_vectors(prepared)
        report.new_texts += self._add_vectors(self.vectors.texts, {row[0]: row[2] for row in text_rows})
        report.new_entities += self._add_vectors(
            self.vectors.entities, {eid: entity_text(ent) for eid, ent in entity_names.items()}
        )
        self.vectors.save()
        self.store.upsert_nodes(
            [
                Node(
                    p.rid,
                    Label.RECORD,
                    {"complete": True, "entities": record_entities[p.rid], "content_hash": hashes[p.rid]},
                )
                for p in prepared
            ]
        )
        self.store.commit()
        self._drop_vectors(gone)
        if replaced:
            self._drop_search_caches()
        Workspace(self.settings.home).bump_revision()
        report.updated += len(changed)
        report.ingested += len(prepared) - len(changed)

    def _prepare(self, rid: str, record: Record, report: IngestReport) -> _Prepared | None:
        images: dict[int, tuple[str, Image.Image, Path, tuple[int, int]]] = {}
        for position, path in enumerate(record.images):
            try:
                img, data = load_image(path, self.settings.max_image_bytes, self.settings.max_image_pixels)
            except BadImageError as exc:
                report.skipped.append(Skip(str(path), str(exc)))
                continue
            size = img.size
            img.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
            images[position] = (ids.image_id(data), img, path, size)
        texts: list[tuple[str, str, str, int | None]] = []
        for field_ in record.texts:
            text = field_.text.strip()
            if text:
                texts.append((ids.text_id(rid, field_.kind, text), field_.kind, text, field_.image))
        if record.images and not images and not texts:
            report.skipped.append(Skip(record.id, "record has no readable image and no text"))
            return None
        if not images and not texts:
            report.skipped.append(Skip(record.id, "record has neither image nor text"))
            return None
        return _Prepared(rid, record, images, list(dict.fromkeys(texts)))

    def _add_image_vectors(self, prepared: Sequence[_Prepared]) -> int:
        candidates = {iid: img for p in prepared for iid, img, *_ in p.images.values()}
        have = self.vectors.images.present(list(candidates))
        new = {iid: img for iid, img in candidates.items() if iid not in have}
        if not new:
            return 0
        vecs = self.encoder.encode_images(list(new.values()), progress=len(new) > 512)
        return self.vectors.images.add(list(new), vecs)

    def _add_vectors(self, index: VectorIndex, texts: dict[str, str]) -> int:
        have = index.present(list(texts))
        new = {k: v for k, v in texts.items() if k not in have}
        if not new:
            return 0
        vecs = self.encoder.encode_texts(list(new.values()), progress=len(new) > 512)
        return index.add(list(new), vecs)

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
    """The score above which zero-shot tags are trusted in this workspace: its calibrated threshold (None: no
    score is; then an image query gets no tags either), or the configured minimum before any calibration."""
    path = tag_calibration_path(settings)
    if not path.is_file():
        return settings.tag_min_score
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("threshold")
    except (OSError, ValueError, AttributeError):
        return settings.tag_min_score
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


def record_hash(record: Record, max_image_bytes: int) -> str:
    """What a record says, as a digest: texts, attributes, and each image's path and bytes.

    Stored on the Record node; a re-ingest compares it to tell an edited record from an unchanged one.
    An unreadable image enters as its error, so a record that stays broken the same way stays unchanged.
    """
    images: list[str] = []
    for path in record.images:
        try:
            images.append(f"{path}\x1f{ids.image_id(read_image_bytes(path, max_image_bytes))}")
        except BadImageError as exc:
            images.append(f"{path}\x1fbad: {exc}")
    content = {
        "texts": [[t.kind, t.text.strip(), t.image] for t in record.texts],
        "attributes": [list(a) for a in record.attributes],
        "images": images,
    }
    return hashlib.sha256(json.dumps(content, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def entity_text(entity: Entity) -> str:
    """What an entity's vector encodes: the value of an attribute (`navy blue`), else the name."""
    if entity.kind == "attribute" and ":" in entity.name:
        return entity.name.split(":", 1)[1]
    return entity.name


def _batched(it: Iterator[Any], n: int) -> Iterator[list[Any]]:
    while chunk := list(islice(it, n)):
        yield chunk
