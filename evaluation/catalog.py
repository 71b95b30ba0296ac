"""The catalog benchmark (a product CSV such as the fashion set): text->product and image->product.

Products are split (seeded) into a gallery, ingested into a fresh workspace, and held-out products whose
name (text query) or photo (image query) searches the gallery; the held-out products are never in the
graph. A gallery product is relevant when it has the same `relevance` attribute values as the query's
product (articleType and baseColour), and at the strict level also the same `strict` ones (gender).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmkg.encoders.base import Encoder
from mmkg.evaluation.benchmark import BenchmarkResult, Direction, run_directions
from mmkg.evaluation.gallery import Gallery, image_queries, text_queries
from mmkg.ingest.catalog import CatalogSource
from mmkg.ingest.records import Record
from mmkg.settings import Settings

log = logging.getLogger(__name__)

RELEVANCE = ("articleType", "baseColour")
STRICT = ("gender",)


def catalog_benchmark(data_dir: Path, settings: Settings, encoder: Encoder, home: Path,
                      query_fraction: float = 0.2, max_products: int | None = None, seed: int = 0,
                      progress: bool = False) -> tuple[dict[str, Any], BenchmarkResult]:
    source = CatalogSource.open(Path(data_dir))
    records = [r for r in source.records() if isinstance(r, Record) and r.images and r.texts]
    if max_products:
        records = records[:max_products]
    rng = np.random.default_rng(seed)
    is_query = rng.random(len(records)) < query_fraction
    gallery_recs = [r for r, q in zip(records, is_query, strict=True) if not q]
    queries = [r for r, q in zip(records, is_query, strict=True) if q]
    gallery = Gallery.ingest(gallery_recs, source.name, settings, encoder, home, progress)
    columns = gallery.columns(source.name, [r.id for r in gallery_recs])
    g_attrs = [dict(r.attributes) for r in gallery_recs]
    q_attrs = [dict(r.attributes) for r in queries]
    levels = {"type+colour": RELEVANCE, "type+colour+gender": RELEVANCE + STRICT}
    relevant = {name: _same(q_attrs, g_attrs, keys) for name, keys in levels.items()}
    t_queries = text_queries(gallery, encoder, [q.texts[0].text for q in queries])
    i_queries = image_queries(gallery, encoder, [q.images[0] for q in queries], settings)
    labels_text = [q.texts[0].text for q in queries]
    labels_image = [_relative(q.images[0], source.root) for q in queries]
    directions = [
        Direction("text->image", t_queries, labels_text, relevant),
        Direction("image->image", i_queries, labels_image, relevant),
    ]
    result = run_directions(gallery.ranker, columns, [gallery.table.ids[c] for c in columns], directions, seed=seed)
    meta = {"protocol": "catalog", "gallery": len(columns), "queries": len(queries),
            "relevance": {"main": f"same {' and '.join(RELEVANCE)}",
                          "strict": f"same {' and '.join(RELEVANCE + STRICT)}"},
            "split": "held-out products, half of them dev (tuning full), half test (every figure)"}
    return meta, result


def _same(q_attrs: Sequence[dict[str, str]], g_attrs: Sequence[dict[str, str]], keys: Sequence[str]) -> np.ndarray:
    def key(a: dict[str, str]) -> tuple[str, ...] | None:
        vals = tuple(a.get(k, "").casefold() for k in keys)
        return vals if all(vals) else None

    gk = [key(a) for a in g_attrs]
    return np.array([[qk is not None and qk == k for k in gk] for qk in (key(a) for a in q_attrs)], dtype=bool)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
