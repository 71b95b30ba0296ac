"""One benchmark run: held-out queries against a gallery of records, every system side by side.

A benchmark (catalog, MedPix, Flickr) supplies the ranker over its gallery (plus any background
knowledge in the graph), the query sets per direction, and which gallery records are relevant to each
query, at one or more relevance levels. Queries are split into dev and test halves (seeded): `full`'s
weights are tuned on dev (`Tuner`), every figure is measured on test.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mmkg.evaluation.metrics import average_precisions, first_relevant_rank, ranking_figures
from mmkg.evaluation.systems import NON_GRAPH, Tuner, baseline_scores, tune_full, tune_gnn
from mmkg.retrieval.ranker import QuerySet, RankingConfig, RankWeights, RecordRanker

log = logging.getLogger(__name__)


@dataclass
class Direction:
    """One query direction of a benchmark (`text->image`, `image->image`, ...)."""

    name: str
    queries: QuerySet
    labels: list[str]
    """What each query is, for the per-query output: its text, or its image path."""
    relevant: dict[str, np.ndarray]
    """Per relevance level (the first is the main one), queries x gallery columns."""
    target: str = "images"
    weights: RankWeights | None = None
    """Given weights for `full` (tuned elsewhere); None: tune on this direction's dev queries."""
    weights_without_graph: RankWeights | None = None
    """Given weights for `full_without_graph`, tuned with `full`'s."""
    dev_mask: np.ndarray | None = None
    """Which queries are dev (tuning) queries; None: a seeded random half."""


@dataclass
class BenchmarkResult:
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    """{system: {direction[@level]: {metric: value}}}"""
    per_query: list[dict[str, Any]] = field(default_factory=list)
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_directions(ranker: RecordRanker, columns: np.ndarray, column_ids: Sequence[str],
                   directions: Sequence[Direction], dev_fraction: float = 0.5, seed: int = 0,
                   extra_systems: dict[str, dict[str, np.ndarray]] | None = None) -> BenchmarkResult:
    """Score every system on every direction; figures on the test queries only.

    `extra_systems[direction][system]` adds precomputed scores (queries x columns) of other systems."""
    result = BenchmarkResult()
    for d in directions:
        rng = np.random.default_rng(seed)  # the same dev/test split of the queries in every direction
        keep = d.relevant[next(iter(d.relevant))].any(axis=1)
        n = int(keep.sum())
        if n == 0:
            log.warning("%s: no query has a relevant gallery item", d.name)
            continue
        idx = np.flatnonzero(keep)
        if d.weights is not None:
            is_dev = np.zeros(n, bool)
        elif d.dev_mask is not None:
            is_dev = np.asarray(d.dev_mask, bool)[idx]
        else:
            is_dev = (rng.random(len(d.queries)) < dev_fraction)[idx]
        dev, test = idx[is_dev], idx[~is_dev]
        main = next(iter(d.relevant))
        systems = baseline_scores(ranker, d.queries.take(test), columns, d.target)
        untuned = ranker.config.for_kind(d.queries.kind)
        weights, plain = d.weights, d.weights_without_graph
        if weights is None:
            tuner = Tuner(ranker, d.queries.take(dev), columns, d.relevant[main][dev])
            weights, dev_score, tuned_plain = tune_full(tuner, untuned)
            plain = tuned_plain if plain is None else plain
            result.tuned[d.name] = {"weights": weights.__dict__, "dev_mAP": round(dev_score, 2),
                                    "dev_queries": len(dev)}
        refined = replace(weights, gnn=1.0).only("gnn")
        if d.weights is None:
            refined = tune_gnn(tuner, weights)
            result.tuned[d.name]["gnn_propagation"] = {"gnn_alpha": refined.gnn_alpha, "gnn_hops": refined.gnn_hops}
        systems["gnn"] = ranker.score(d.queries.take(test), refined).fused[:, columns]
        systems["full_untuned"] = ranker.score(d.queries.take(test), untuned).fused[:, columns]
        systems["full"] = ranker.score(d.queries.take(test), weights).fused[:, columns]
        if plain is None:  # given weights and no dev split to tune on: the same weights with the graph off
            plain = weights.only(*NON_GRAPH)
        if d.name in result.tuned:
            result.tuned[d.name]["weights_without_graph"] = plain.__dict__
        systems["full_without_graph"] = ranker.score(d.queries.take(test), plain).fused[:, columns]
        for name, scores in (extra_systems or {}).get(d.name, {}).items():
            systems[name] = scores[test] if len(scores) == len(d.queries) else scores
        for system, scores in systems.items():
            for level, rel in d.relevant.items():
                key = d.name if level == main else f"{d.name}@{level}"
                has = rel[test].any(axis=1)  # a stricter level can leave a query with nothing relevant
                result.figures.setdefault(system, {})[key] = ranking_figures(scores[has], rel[test][has])
            ranks = first_relevant_rank(scores, d.relevant[main][test])
            ap = average_precisions(scores, d.relevant[main][test])
            top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
            for row, q in enumerate(test):
                result.per_query.append({"system": system, "direction": d.name, "query": d.labels[q],
                                         "rank": int(ranks[row]), "ap": round(float(ap[row]), 6),
                                         "top": [column_ids[c] for c in top[row]]})
        result.figures.setdefault("meta", {})[d.name] = {"queries": n, "dev": len(dev), "test": len(test)}
        if d.queries.kind == "image":  # test photos search tells are unlike every gallery photo
            result.figures["meta"][d.name]["unlike"] = int(ranker.unlike(d.queries.take(test)).sum())
    return result


def config_from(result: BenchmarkResult, kinds: dict[str, str], tuned_on: str) -> RankingConfig:
    """The RankingConfig holding the weights tuned per direction (`kinds`: direction -> query kind)."""
    chosen = {kinds[d]: RankWeights(**t["weights"]) for d, t in result.tuned.items() if d in kinds}
    base = RankingConfig()
    return RankingConfig(chosen.get("text", base.text), chosen.get("image", base.image), tuned_on,
                         {d: {k: v for k, v in t.items() if k.startswith("dev_")} for d, t in result.tuned.items()})
