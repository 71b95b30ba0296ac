"""`mmkg eval`: the benchmark that fits the folder, every system side by side, each query scored alone.

* a Flickr-layout folder (`captions.jsonl`) or a COCO folder: the image-caption protocol (evaluation/flickr.py);
* a catalog CSV folder: the catalog protocol (evaluation/catalog.py);
* a MedPix folder: image->case and text->case lookup (evaluation/medpix.py).

Every benchmark runs in a workspace of its own (temporary unless `workdir` is given); only background
knowledge that is the same from run to run (a training collection) is kept in the user's workspace,
under `eval-cache/`, so a second run does not ingest it again.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmkg.encoders.base import Encoder
from mmkg.encoders.factory import create_encoder
from mmkg.evaluation.benchmark import BenchmarkResult
from mmkg.evaluation.catalog import catalog_benchmark
from mmkg.evaluation.flickr import flickr_benchmark
from mmkg.evaluation.medpix import medpix_benchmark
from mmkg.ingest.detect import detect_formats
from mmkg.settings import Settings
from mmkg.workspace import Workspace

PAIR_DIRECTIONS = ("t2i", "i2t")


def benchmark_kind(data: Path) -> str:
    formats = detect_formats(data)
    if "medpix" in formats:
        return "medpix"
    if formats == ["catalog"]:
        return "catalog"
    return "flickr"


def evaluate(data: Path, settings: Settings, limit: int | None = None, encoder: Encoder | None = None,
             progress: bool = True, captions: str = "captions.jsonl", knowledge: Path | None = None,
             workdir: Path | None = None, per_query: Path | None = None, relevance: Sequence[str] | None = None
             ) -> dict[str, Any]:
    """`{system: figures, ..., "meta": {...}, "tuned": {...}}` for the benchmark that fits `data`."""
    encoder = encoder or create_encoder(settings)
    started = time.perf_counter()
    kind = benchmark_kind(data)
    with tempfile.TemporaryDirectory(prefix="mmkg-eval-") as tmp:
        home = Path(workdir) if workdir else Path(tmp)
        if kind == "catalog":
            meta, result = catalog_benchmark(data, settings, encoder, home, max_products=limit, progress=progress,
                                             relevance=relevance)
        elif kind == "medpix":
            meta, result = medpix_benchmark(data, settings, encoder, home, limit=limit, progress=progress)
        else:
            cache = Workspace(Path(settings.home)).root / "eval-cache"
            meta, result = flickr_benchmark(data, settings, encoder, home, knowledge, captions, limit, progress,
                                            cache_dir=cache)
    out = pair_shape(result) if kind == "flickr" else dict(result.figures)
    meta.update(data=str(data), encoder=encoder.fingerprint, seconds=round(time.perf_counter() - started, 1),
                queries_per_direction=out.pop("meta", {}))
    out["meta"] = meta
    out["tuned"] = result.tuned
    if per_query is not None:
        write_per_query(result, per_query)
    return out


def pair_shape(result: BenchmarkResult) -> dict[str, Any]:
    """Image-caption figures in their usual shape: `{system: {"t2i", "i2t", "rsum", "mAP", "ndcg@10"}}`."""
    out: dict[str, Any] = {}
    for system, figs in result.figures.items():
        if system == "meta":
            out[system] = figs
            continue
        entry: dict[str, Any] = {d: figs[d] for d in PAIR_DIRECTIONS if d in figs}
        if all(d in entry for d in PAIR_DIRECTIONS):
            entry["rsum"] = round(sum(entry[d][f"R@{k}"] for d in PAIR_DIRECTIONS for k in (1, 5, 10)), 2)
            entry["mAP"] = round(sum(entry[d]["mAP"] for d in PAIR_DIRECTIONS) / 2, 2)
            entry["ndcg@10"] = round(sum(entry[d]["ndcg@10"] for d in PAIR_DIRECTIONS) / 2, 2)
        out[system] = entry
    return out


def write_per_query(result: BenchmarkResult, path: Path) -> None:
    """One JSON line per system, direction and query: its text or image path, first relevant rank, top 5."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in result.per_query:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
