"""Image–caption collections as graphs under the no-leakage protocol, for training and tuning.

Each image and each caption becomes a record of its own (as `mmkg eval` does), so the graph holds no
DESCRIBES or HAS link between a caption and its image: the pairing is supervision, never structure.
Training on graphs built this way means the model sees at training time exactly the kind of graph
it is evaluated on.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.graph import ids
from mmkg.graph.schema import Rel
from mmkg.graph.store import GraphStore
from mmkg.ingest.records import Record, TextField
from mmkg.retrieval.vectors import Vectors
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class PairGraph:
    """A graph of separately ingested images and captions, with the pairing kept aside."""

    settings: Settings
    store: GraphStore
    vectors: Vectors
    image_ids: list[str]
    text_ids: list[str]
    owner: np.ndarray
    """For each caption (row of `text_ids`), the index of its image in `image_ids`."""
    captions: list[str]

    def close(self) -> None:
        self.store.close()


def split_records(records: Sequence[Record]) -> tuple[list[Record], list[Record], list[int]]:
    """Image-only and caption-only records, and for each caption the index of its image."""
    image_records: list[Record] = []
    caption_records: list[Record] = []
    owner: list[int] = []
    for rec in records:
        if not rec.images or not rec.texts:
            continue
        image_records.append(Record(f"{rec.id}#image", rec.images[:1], source=rec.source))
        for j, f in enumerate(rec.texts):
            caption_records.append(Record(f"{rec.id}#caption{j}", (), (TextField(f.kind, f.text),)))
            owner.append(len(image_records) - 1)
    return image_records, caption_records, owner


def read_pairs(data_dir: Path) -> tuple[str, list[Record]]:
    from mmkg.ingest.flickr import FlickrSource

    source = FlickrSource.open(data_dir)
    records = [r for r in source.records() if isinstance(r, Record) and r.images and r.texts]
    if not records:
        raise UserInputError(f"no usable image-caption pairs in {data_dir}")
    return source.name, records


def encoder_holdout(encoder: Encoder, records: Sequence[Record]) -> list[int] | None:
    """Indices of the records whose images the encoder's heads were NOT trained on, if it says so.

    The `lit` trainer sets aside `holdout` training images chosen by hashing their file names with
    its seed (`mmkg.encoders.lit_train._holdout_split`, reproduced here); tuning the GNN's fusion on
    exactly those images means tuning on vectors that behave like unseen data, not on the heads'
    own training pairs (whose similarities are inflated by fitting).
    """
    config = getattr(encoder, "config", None)
    if not isinstance(config, dict):
        return None
    training = config.get("training") or {}
    hp = training.get("hyperparams") or {}
    n_holdout = int(training.get("holdout_images") or 0)
    if n_holdout <= 0 or "seed" not in hp or str(training.get("data", "")) == "":
        return None
    keys = [r.images[0].name for r in records]
    if int(training.get("images", -1)) != len(keys):
        return None  # trained on another selection of images: the hashes would not line up
    ranks = np.argsort([hashlib.sha256(f"{hp['seed']}:{k}".encode()).hexdigest() for k in keys], kind="stable")
    return sorted(int(i) for i in ranks[:n_holdout])


def split_train(
    records: Sequence[Record], tune_fraction: float, seed: int = 0, tune_rows: Sequence[int] | None = None
) -> tuple[list[Record], list[Record]]:
    """(fit, tune): a split of the TRAINING records; the tune part picks epochs and fusion weights.

    `tune_rows` (e.g. the encoder's own holdout) fixes the tune part; otherwise it is a seeded random
    `tune_fraction` of the records."""
    if tune_rows is not None:
        chosen = set(tune_rows)
        return [r for i, r in enumerate(records) if i not in chosen], [records[i] for i in sorted(chosen)]
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_tune = max(1, int(round(len(records) * tune_fraction))) if tune_fraction > 0 else 0
    tune = sorted(order[:n_tune])
    fit = sorted(order[n_tune:])
    return [records[i] for i in fit], [records[i] for i in tune]


def ingest_pairs(
    records: Sequence[Record], source_name: str, home: Path, settings: Settings, encoder: Encoder, progress: bool = True
) -> PairGraph:
    """Ingest `records` split per the protocol into a fresh embedded workspace at `home`."""
    from mmkg.graph.memory import MemoryGraphStore
    from mmkg.ingest.pipeline import Ingestor

    ws = settings.replace(home=home, store="memory")
    Workspace(ws.home).ensure()
    image_records, caption_records, owner = split_records(records)
    vectors = Vectors.open(ws, encoder.dim, encoder.fingerprint)
    store = MemoryGraphStore(Workspace(ws.home).graph_dir)
    report = Ingestor(ws, store, vectors, encoder).run(
        [*image_records, *caption_records], source_name, total=len(image_records) + len(caption_records),
        progress=progress,
    )
    if report.skipped:
        log.warning("%d items skipped while ingesting pairs (first: %s: %s)", len(report.skipped),
                    report.skipped[0].item, report.skipped[0].reason)
    image_ids: list[str] = []
    keep_image: list[bool] = []
    for rec in image_records:
        has = store.neighbors(ids.record_id(source_name, rec.id), [Rel.HAS], "out")
        keep_image.append(bool(has))
        image_ids.append(has[0][1].id if has else "")
    text_ids: list[str] = []
    captions: list[str] = []
    new_owner: list[int] = []
    remap = np.cumsum(keep_image) - 1
    for rec, o in zip(caption_records, owner, strict=True):
        if not keep_image[o]:
            continue
        text = rec.texts[0].text.strip()
        text_ids.append(ids.text_id(ids.record_id(source_name, rec.id), rec.texts[0].kind, text))
        captions.append(text)
        new_owner.append(int(remap[o]))
    image_ids = [i for i, k in zip(image_ids, keep_image, strict=True) if k]
    return PairGraph(ws, store, vectors, image_ids, text_ids, np.asarray(new_owner, dtype=np.int64), captions)
