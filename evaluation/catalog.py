"""The catalog benchmark (a product CSV such as the fashion set): text->product and image->product.

Products are split (seeded) into a gallery, ingested into a fresh workspace, and held-out products whose
name (text query) or photo (image query) searches the gallery; the held-out products are never in the
graph. A gallery product is relevant when it states the same values as the query's product for the
relevance attributes: its kind and its colour (the fashion set's articleType and baseColour), and at the
strict level also its gender. Another catalog names these columns otherwise, so they are found by name
(`relevance_keys`) or given (`mmkg eval --relevance KEY,KEY`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.evaluation.benchmark import BenchmarkResult, Direction, run_directions
from mmkg.evaluation.gallery import Gallery, image_queries, text_queries
from mmkg.ingest.catalog import CatalogSource
from mmkg.ingest.records import Record, Skip
from mmkg.settings import Settings

log = logging.getLogger(__name__)

KIND = re.compile(r"type|categor|class|kind", re.IGNORECASE)
COLOUR = re.compile(r"colou?r", re.IGNORECASE)
GENDER = re.compile(r"^(gender|sex)$", re.IGNORECASE)


def relevance_keys(records: Sequence[Record], given: Sequence[str] | None = None
                   ) -> tuple[dict[str, str], dict[str, str]]:
    """The relevance and strict attribute keys, each under the name its level is reported by: `given`, else the
    catalog's finest kind column (`type`: most values among those named type, category, class or kind) and
    colour column (`colour`), with `gender` (or sex) at the strict level."""
    values: dict[str, set[str]] = {}
    for r in records:
        for k, v in r.attributes:
            values.setdefault(k, set()).add(v.casefold())
    if given:
        missing = [k for k in given if k not in values]
        if missing:
            raise UserInputError(f"no attribute {', '.join(missing)} in this catalog (it has: "
                                 f"{', '.join(sorted(values)) or 'none'})")
        return {k: k for k in given}, {}
    finest = lambda pattern: max((k for k in values if pattern.search(k)), key=lambda k: len(values[k]),  # noqa: E731
                                 default=None)
    main = {role: key for role, key in (("type", finest(KIND)), ("colour", finest(COLOUR))) if key}
    if not main:
        raise UserInputError("the catalog benchmark judges a hit by the attributes it shares with the query's product, "
                             "and no column of this catalog names a kind or a colour; name them with --relevance "
                             f"KEY[,KEY] (its attributes: {', '.join(sorted(values)) or 'none'})")
    gender = next((k for k in values if GENDER.match(k)), None)
    return main, ({"gender": gender} if gender else {})


def catalog_benchmark(data_dir: Path, settings: Settings, encoder: Encoder, home: Path,
                      query_fraction: float = 0.2, max_products: int | None = None, seed: int = 0,
                      progress: bool = False, relevance: Sequence[str] | None = None
                      ) -> tuple[dict[str, Any], BenchmarkResult]:
    source = CatalogSource.open(Path(data_dir))
    read = list(source.records())
    records = [r for r in read if isinstance(r, Record) and r.images and r.texts]
    if not records:
        skips = [r for r in read if isinstance(r, Skip)]
        rows = f"{len(skips)} row{'s' * (len(skips) != 1)}"
        why = f": {rows} skipped, the first for {skips[0].reason}" if skips else ""
        raise UserInputError(f"no product of {data_dir} has both an image and a text{why}")
    if max_products:
        records = records[:max_products]
    main, strict = relevance_keys(records, relevance)
    rng = np.random.default_rng(seed)
    is_query = rng.random(len(records)) < query_fraction
    gallery_recs = [r for r, q in zip(records, is_query, strict=True) if not q]
    queries = [r for r, q in zip(records, is_query, strict=True) if q]
    gallery = Gallery.ingest(gallery_recs, source.name, settings, encoder, home, progress)
    columns = gallery.columns(source.name, [r.id for r in gallery_recs])
    g_attrs = [dict(r.attributes) for r in gallery_recs]
    q_attrs = [dict(r.attributes) for r in queries]
    named = [main, {**main, **strict}] if strict else [main]
    levels = {"+".join(keys): tuple(keys.values()) for keys in named}
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
            "relevance": {level: f"same {' and '.join(keys.values())}"
                          for level, keys in zip(("main", "strict"), named, strict=False)},
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
