"""The image–text retrieval protocol of DESIGN.md, run in a fresh temporary workspace.

No leakage: each test image and each test caption is ingested as a record of its own, so the
graph holds no DESCRIBES or HAS link between a caption and its image.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.evaluation.metrics import image_text_retrieval
from mmkg.graph import ids
from mmkg.graph.memory import MemoryGraphStore
from mmkg.graph.schema import Rel
from mmkg.graph.store import GraphStore
from mmkg.ingest.detect import detect_formats, open_source
from mmkg.ingest.pipeline import Ingestor
from mmkg.ingest.records import Record, TextField
from mmkg.retrieval.index import VectorIndex
from mmkg.retrieval.vectors import Vectors
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)


def split_pairs(records: list[Record]) -> tuple[list[Record], list[Record], list[int]]:
    """Image-only and caption-only records, and for each caption the index of its image."""
    image_records: list[Record] = []
    caption_records: list[Record] = []
    caption_owner: list[int] = []
    for rec in records:
        if not rec.images:
            continue
        image_records.append(Record(f"{rec.id}#image", rec.images[:1], source=rec.source))
        for j, field in enumerate(rec.texts):
            caption_records.append(Record(f"{rec.id}#caption{j}", (), (TextField(field.kind, field.text),)))
            caption_owner.append(len(image_records) - 1)
    return image_records, caption_records, caption_owner


def full_similarity(index: VectorIndex, queries: np.ndarray, order: list[str]) -> np.ndarray:
    """Scores of every query against every indexed item, columns in `order`, through the index itself."""
    column = {nid: j for j, nid in enumerate(order)}
    sims = np.full((len(queries), len(order)), -np.inf, dtype=np.float32)
    for i, row in enumerate(index.search(queries, len(order))):
        for nid, score in row:
            if nid in column:
                sims[i, column[nid]] = score
    return sims


def protocol_figures(t2i: np.ndarray, i2t: np.ndarray, caption_owner: np.ndarray) -> dict[str, Any]:
    """The report of one mode: t2i from the (captions x images) scores, i2t from the (images x captions) ones.

    The two matrices differ once a mode scores asymmetrically (graph expansion); `mAP` and
    `ndcg@10` at the top level are the means of the two directions.
    """
    forward = image_text_retrieval(t2i, caption_owner)
    backward = image_text_retrieval(i2t.T, caption_owner)
    out: dict[str, Any] = {}
    for direction, figures in (("t2i", forward), ("i2t", backward)):
        out[direction] = {
            key.split("_", 1)[1].replace("NDCG", "ndcg"): round(value, 2)
            for key, value in figures.items()
            if key.startswith(direction + "_")
        }
    out["rsum"] = round(sum(out[d][f"R@{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)), 2)
    out["mAP"] = round((out["t2i"]["mAP"] + out["i2t"]["mAP"]) / 2, 2)
    out["ndcg@10"] = round((out["t2i"]["ndcg@10"] + out["i2t"]["ndcg@10"]) / 2, 2)
    return out


@dataclass
class EvalWorkspace:
    """A leakage-free graph of test images and captions, and where each caption's image is."""

    settings: Settings
    store: GraphStore
    vectors: Vectors
    image_ids: list[str]
    text_ids: list[str]
    captions: list[str]
    caption_owner: np.ndarray


@contextmanager
def eval_workspace(
    records: list[Record], source: str, settings: Settings, encoder: Encoder, progress: bool = True
) -> Iterator[EvalWorkspace]:
    """Ingest the pairs apart (an image record, a record per caption) into a temporary workspace."""
    with tempfile.TemporaryDirectory(prefix="mmkg-eval-") as tmp:
        ws = settings.replace(home=Path(tmp), store="memory")
        Workspace(ws.home).ensure()
        image_records, caption_records, owner = split_pairs(records)
        vectors = Vectors.open(ws, encoder.dim, encoder.fingerprint)
        with MemoryGraphStore(Workspace(ws.home).graph_dir) as store:
            report = Ingestor(ws, store, vectors, encoder).run(
                [*image_records, *caption_records],
                source,
                total=len(image_records) + len(caption_records),
                progress=progress,
            )
            if report.skipped:
                first = report.skipped[0]
                raise UserInputError(
                    f"{len(report.skipped)} evaluation items were unusable (first: {first.item}: {first.reason}); "
                    "the protocol needs every pair"
                )
            image_ids = [
                store.neighbors(ids.record_id(source, rec.id), [Rel.HAS], "out")[0][1].id for rec in image_records
            ]
            captions = [rec.texts[0].text.strip() for rec in caption_records]
            text_ids = [
                ids.text_id(ids.record_id(source, rec.id), rec.texts[0].kind, text)
                for rec, text in zip(caption_records, captions, strict=True)
            ]
            yield EvalWorkspace(ws, store, vectors, image_ids, text_ids, captions, np.asarray(owner))


def evaluate(
    data: Path, settings: Settings, limit: int | None = None, encoder: Encoder | None = None, progress: bool = True
) -> dict[str, Any]:
    """`{"encoder": figures, "meta": {...}}`: the protocol on a Flickr-layout folder, or the catalog
    protocol (`graph_modes.catalog_figures`) on a catalog CSV folder such as the fashion set."""
    from mmkg.encoders.factory import create_encoder
    from mmkg.evaluation.graph_modes import catalog_figures, graph_mode_figures
    from mmkg.gnn.refine import load_gnn

    if detect_formats(data) == ["catalog"]:
        encoder = encoder or create_encoder(settings)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mmkg-eval-") as tmp:
            catalog = catalog_figures(load_gnn(settings, encoder, required=False), settings, encoder, data, Path(tmp),
                                      max_products=limit, progress=progress)
        catalog["meta"].update(data=str(data), encoder=encoder.fingerprint,
                               seconds=round(time.perf_counter() - started, 1))
        return catalog
    source = open_source(data, "flickr")
    records = [r for r in source.records() if isinstance(r, Record)]
    if limit is not None:
        records = records[:limit]
    if not records:
        raise UserInputError(f"no usable image-caption pairs in {data}")
    encoder = encoder or create_encoder(settings)  # the user's trained heads, from the user's workspace
    started = time.perf_counter()
    trained = load_gnn(settings, encoder, required=False)  # from the user's workspace, if trained
    with eval_workspace(records, source.name, settings, encoder, progress) as ev:
        t2i = full_similarity(ev.vectors.images, ev.vectors.texts.get(ev.text_ids), ev.image_ids)
        i2t = full_similarity(ev.vectors.texts, ev.vectors.images.get(ev.image_ids), ev.text_ids)
        result: dict[str, Any] = {"encoder": protocol_figures(t2i, i2t, ev.caption_owner)}
        if trained is not None:
            result.update(
                graph_mode_figures(
                    trained, ev.store, ev.vectors, ev.image_ids, ev.text_ids, ev.caption_owner, ev.captions, settings
                )
            )
        result["meta"] = {
            "data": str(data),
            "images": len(ev.image_ids),
            "captions": len(ev.text_ids),
            "encoder": encoder.fingerprint,
        }
    result["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    return result
