"""`mmkg tune`: the fusion weights search uses, tuned on a dev split of the collection being served.

* `--data DIR` (a labelled folder: catalog, MedPix, Flickr layout with `--knowledge`): the benchmark's
  own dev split tunes the weights (the test split is scored too, and reported beside them).
* no `--data`: the workspace's own collection, self-supervised. A sample of records become known-item
  pseudo-queries: the text that names a record (its name, its title) with that text held out of the index must
  find its record. Only text-query weights are tuned this way; image-query weights keep their defaults,
  since a record's own photo cannot be held out without removing what an image query matches.

The weights are saved in the workspace (`models/ranking.json`) with what they were tuned on.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmkg.collection import open_collection
from mmkg.encoders.factory import create_encoder
from mmkg.errors import UserInputError
from mmkg.evaluation.benchmark import config_from
from mmkg.evaluation.catalog import catalog_benchmark
from mmkg.evaluation.flickr import flickr_benchmark
from mmkg.evaluation.medpix import medpix_benchmark
from mmkg.evaluation.protocol import benchmark_kind
from mmkg.evaluation.systems import Tuner, tune_full
from mmkg.retrieval.query_entities import QueryLinker
from mmkg.retrieval.ranker import QuerySet, RankingConfig, RecordRanker
from mmkg.retrieval.record_search import ranking_path
from mmkg.retrieval.records import RecordTable
from mmkg.settings import Settings
from mmkg.workspace import Workspace

log = logging.getLogger(__name__)

KINDS = {
    "catalog": {"text->image": "text", "image->image": "image"},
    "medpix": {"text->case": "text", "image->case": "image"},
    "flickr": {"t2i": "text", "i2t": "image"},
}
PSEUDO_QUERIES = 500


def tune_workspace(settings: Settings, data: Path | None = None, knowledge: Path | None = None,
                   progress: bool = True, relevance: Sequence[str] | None = None) -> RankingConfig:
    config = tune_on_benchmark(settings, data, knowledge, progress, relevance) if data else tune_self(settings)
    config.save(ranking_path(settings))
    return config


def tune_on_benchmark(settings: Settings, data: Path, knowledge: Path | None, progress: bool,
                      relevance: Sequence[str] | None = None) -> RankingConfig:
    encoder = create_encoder(settings)
    kind = benchmark_kind(data)
    with tempfile.TemporaryDirectory(prefix="mmkg-tune-") as tmp:
        home = Path(tmp)
        if kind == "catalog":
            _, result = catalog_benchmark(data, settings, encoder, home, progress=progress, relevance=relevance)
        elif kind == "medpix":
            _, result = medpix_benchmark(data, settings, encoder, home, progress=progress)
        else:
            if knowledge is None:
                raise UserInputError("tuning on an image-caption folder needs --knowledge TRAIN_DIR (its holdout "
                                     "is the dev split)")
            _, result = flickr_benchmark(data, settings, encoder, home, knowledge, progress=progress,
                                         cache_dir=Workspace(Path(settings.home)).root / "eval-cache")
    if not result.tuned:
        raise UserInputError(f"{data} gave no dev queries to tune on")
    return config_from(result, KINDS[kind], f"the dev split of {data}")


def tune_self(settings: Settings, n: int = PSEUDO_QUERIES, seed: int = 0) -> RankingConfig:
    """Text weights from known-item pseudo-queries on the workspace's own records (module docstring)."""
    with open_collection(settings, read_only=True) as col:
        full = RecordTable.build(col.store, col.vectors)
        rows = np.flatnonzero(full.has_text & full.has_image)
        if len(rows) < 20:
            raise UserInputError(f"the workspace holds {len(rows)} records with a text and an image: too few to "
                                 "tune on (ingest a collection first, or tune with --data)")
        pick = np.random.default_rng(seed).choice(rows, size=min(n, len(rows)), replace=False)
        titles = [full.title_text(int(r)) for r in pick]  # each record's name asks for it, held out of it
        assert all(j is not None for j in titles), "every picked record has a text"
        held = [full.text_ids[j] for j in titles if j is not None]
        texts = [full.text_strings[j] for j in titles if j is not None]
        table = RecordTable.build(col.store, col.vectors, hide_texts=set(held))
        linker = QueryLinker(col.store, col.vectors.entities, table.bm25.states)
        queries = QuerySet("text", col.encoder.encode_texts(texts), texts,
                           [[(e.id, e.score) for e in linker.for_text(t)] for t in texts])
    relevant = np.zeros((len(pick), len(table)), bool)
    relevant[np.arange(len(pick)), [table.pos[full.ids[int(r)]] for r in pick]] = True
    start = RankingConfig.load(ranking_path(settings))
    columns = np.flatnonzero(table.has_image)
    tuner = Tuner(RecordRanker(table, start), queries, columns, relevant[:, columns])
    weights, score, _ = tune_full(tuner, start.text)
    log.info("self-tuned text weights: %s (pseudo-query mAP %.2f)", weights, score)
    return RankingConfig(weights, start.image, f"{len(pick)} known-item pseudo-queries of the workspace's records",
                         {"pseudo_query_mAP": round(score, 2)})
