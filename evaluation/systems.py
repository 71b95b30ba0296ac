"""The systems every benchmark compares, scored by the one ranking engine on the same split.

* `encoder`: the query's dense similarity to the candidate's image (to its text when the candidates are
  texts): the encoder alone.
* `bm25`: lexical BM25 over the record's texts and attribute values (text queries only).
* `dense_text`: the query's dense similarity to the record's texts.
* `hybrid`: reciprocal-rank fusion of bm25, dense_text and the image encoder: the hybrid search users get
  from txtai or Weaviate.
* `gnn`: the graph-refined vectors alone (gnn/propagate.py), with their own propagation settings tuned on the same
  dev queries (`tune_gnn`; where weights come tuned from elsewhere, `full`'s).
* `full`: mmkg: every signal of `retrieval/ranker.py`, graph expansion included, with weights tuned on a
  dev split of the collection (never on the queries scored).
* `full_untuned`: the same engine with its default weights: what search does right after `mmkg ingest`.
* `full_without_graph`: the same engine with graph expansion and the refined vectors pinned off, its other
  weights tuned on the same dev queries as `full`'s: `full` minus it is what the graph adds.

Each system's scores of one query depend on that query, the gallery and the knowledge graph only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mmkg.evaluation.metrics import mean_average_precision
from mmkg.retrieval.ranker import (
    BASE_SIGNALS,
    GRAPH_SIGNALS,
    SIGNALS,
    QuerySet,
    RankWeights,
    RecordRanker,
    fuse,
    fuse_unlike,
    reciprocal_rank_fusion,
)

TARGET_SIGNAL = {"images": "image", "texts": "text"}


def baseline_scores(ranker: RecordRanker, queries: QuerySet, columns: np.ndarray, target: str
                    ) -> dict[str, np.ndarray]:
    """queries x columns scores of the plain (non-graph) systems."""
    base = ranker.score(queries, RankWeights().only(*BASE_SIGNALS)).signals
    out: dict[str, np.ndarray] = {"encoder": base[TARGET_SIGNAL[target]][:, columns]}
    has_text = bool(ranker.table.has_text[columns].any())  # a gallery of bare images has no words to match
    if "lexical" in base and has_text:
        out["bm25"] = base["lexical"][:, columns]
    if target == "images" and has_text and ranker.table.text_vecs.shape[0]:
        out["dense_text"] = ranker.text_similarity(queries)[:, columns]
    parts = [out[s] for s in ("bm25", "dense_text", "encoder") if s in out]
    if len(parts) > 1:
        out["hybrid"] = reciprocal_rank_fusion(parts)
    return out


@dataclass
class Tuner:
    """Coordinate ascent over `RankWeights` on dev queries, reusing the signals that did not change."""

    ranker: RecordRanker
    queries: QuerySet
    columns: np.ndarray
    relevant: np.ndarray
    metric: Callable[[np.ndarray, np.ndarray], float] = mean_average_precision

    def __post_init__(self) -> None:
        self._base: dict[tuple[float, float, int, int], dict[str, np.ndarray]] = {}
        self._graph: dict[tuple[Any, ...], tuple[dict[str, np.ndarray], np.ndarray]] = {}
        self._unlike = self.ranker.ranked_by_look(self.queries)  # as `score` ranks them

    def fused(self, w: RankWeights) -> np.ndarray:
        w = self.ranker.weights_for(self.queries.kind, w)
        key_base = (w.tag_weight, w.gnn_alpha, w.gnn_hops, w.hub_k)
        if key_base not in self._base:
            self._base[key_base] = self.ranker.base_signals(self.queries, RankWeights(**{**w.__dict__, "gnn": 1.0,
                                                                                           "hub": 1.0}))
        base = self._base[key_base]
        n_q, n_r = len(self.queries), len(self.ranker.table)
        stage1 = fuse(base, w, BASE_SIGNALS, n_q, n_r)
        if not w.uses_graph():
            return fuse_unlike(stage1, base, self._unlike, w)[:, self.columns]
        key = (*(getattr(w, s) for s in BASE_SIGNALS), w.seeds, w.temperature, w.tag_weight, w.gnn_alpha, w.gnn_hops,
               w.hub_k, w.contradicted_graph, *(bool(getattr(w, s)) for s in GRAPH_SIGNALS))
        if key not in self._graph:
            wide = RankWeights(**{**w.__dict__, **{s: 1.0 if getattr(w, s) else 0.0 for s in GRAPH_SIGNALS}})
            graph, _, _ = self.ranker.graph_signals(self.queries, stage1, wide)
            self._graph.clear()  # one graph pass at a time is all coordinate ascent revisits
            self._graph[key] = (graph, stage1)
        graph, stage1 = self._graph[key]
        return fuse_unlike(stage1 + fuse(graph, w, GRAPH_SIGNALS, n_q, n_r), base, self._unlike, w)[:, self.columns]

    def score(self, w: RankWeights) -> float:
        return self.metric(self.fused(w), self.relevant)

    def tune(self, start: RankWeights, grid: dict[str, Sequence[float]] | None = None, rounds: int = 3
             ) -> tuple[RankWeights, float]:
        """Each weight in turn takes its best grid value with the others fixed, until a round changes nothing.
        Ties keep the current value, so a weight moves only when it helps on the dev queries.

        An image query's own `image` weight stays as given (the default 1): the others count relative to it.
        Tuned for mAP alone, `full` on the fashion catalog's dev photos dropped the photo's similarity (weight 0)
        and ranked by the attribute values predicted for it, so the products of the predicted type and colour
        came in catalog order, whatever they looked like. On MedPix it dropped it too, and test R@5 fell to 33.3
        (48.6 untuned). Its `closest` weight stays as given too: a benchmark's dev photos are held out of the
        gallery, so none asks for a record the gallery holds, and mAP over them cannot see what `closest` is for
        (a photo of a product finding that product: benchmarks/known_item.py)."""
        grid = grid or GRID
        best, best_score = start, self.score(start)
        usable = {s for s in SIGNALS if self._available(s)}
        if self.queries.kind == "image":
            usable.discard("image")  # a photo is ranked by its look (docstring)
            usable.discard("closest")  # no dev query asks for a record in the gallery: known-item search
        for _ in range(rounds):
            changed = False
            for name, values in grid.items():
                if name in SIGNALS and name not in usable:
                    continue
                for v in values:
                    trial = RankWeights(**{**best.__dict__, name: type(getattr(best, name))(v)})
                    if trial == best:
                        continue
                    s = self.score(trial)
                    if s > best_score + 1e-6:
                        best, best_score, changed = trial, s, True
            if not changed:
                break
        return self.ranker.weights_for(self.queries.kind, best), best_score  # as they score: what is saved, shown

    def _available(self, signal: str) -> bool:
        if signal in GRAPH_SIGNALS:
            return True
        if not len(self.queries):
            return False
        everything = self.ranker.weights_for(self.queries.kind, RankWeights(hub=1.0, colour=1.0))
        return signal in self.ranker.base_signals(self.queries.take([0]), everything)


NON_GRAPH = tuple(s for s in BASE_SIGNALS if s != "gnn")
"""The signals `full_without_graph` keeps: graph expansion and the refined vectors are pinned off."""


def tune_without_graph(tuner: Tuner, start: RankWeights) -> tuple[RankWeights, float]:
    """The engine's best weights without the graph from `start` (its graph switched off), and their dev score."""
    grid = {k: v for k, v in GRID.items() if k in NON_GRAPH or k in ("hub_k", "tag_weight")}
    return tuner.tune(start.only(*NON_GRAPH), grid)


def tune_full(tuner: Tuner, start: RankWeights) -> tuple[RankWeights, float, RankWeights]:
    """`full`'s weights, their dev score, and `full_without_graph`'s. Coordinate ascent climbs from two starts,
    `start` and the best weights without the graph with the graph switched on at `start`'s weights, and keeps the
    better on the dev queries (`start`'s on a tie). From one start a small change in a signal could send it
    down another path: MedPix text, twenty-seventh session, to weights 0.57 dev mAP below what it had found
    before. The second start also holds the graph to what it adds on dev to the engine's best without it.
    `full_without_graph` climbs from two starts too, `start` and `full`'s weights, each with the graph switched
    off: the graph's share is measured against a baseline searched as hard as `full`."""
    plain, plain_score = tune_without_graph(tuner, start)
    with_graph = replace(plain, **{s: getattr(start, s) for s in ("gnn", *GRAPH_SIGNALS)})
    weights, score = max((tuner.tune(s) for s in (start, with_graph)), key=lambda tuned: tuned[1])
    plain = max((plain, plain_score), tune_without_graph(tuner, weights), key=lambda tuned: tuned[1])[0]
    return weights, score, plain


def tune_gnn(tuner: Tuner, weights: RankWeights) -> RankWeights:
    """The refined vectors alone, at the propagation settings (`gnn_alpha`, `gnn_hops`) best for them on the dev
    queries. `full` tunes these for its fusion, where `gnn` may weigh little: on the fashion catalog it chose
    alpha 0.8 (a record keeps 80 % of itself), and `gnn` alone then measured the refiner barely refining."""
    return tuner.tune(replace(weights, gnn=1.0).only("gnn"), {k: GRID[k] for k in ("gnn_alpha", "gnn_hops")})[0]


GRID: dict[str, Sequence[float]] = {
    "lexical": (0.0, 0.25, 0.5, 1.0, 2.0),
    "text": (0.0, 0.25, 0.5, 1.0, 2.0),
    "image": (0.0, 0.25, 0.5, 1.0, 2.0),
    "colour": (0.0, 0.25, 0.5, 1.0, 2.0),
    "attribute": (0.0, 0.25, 0.5, 1.0, 2.0),
    "gnn": (0.0, 0.25, 0.5, 1.0, 2.0),
    "gnn_alpha": (0.2, 0.5, 0.8),
    "gnn_hops": (1, 2, 3),
    "graph_entity": (0.0, 0.25, 0.5, 1.0, 2.0),
    "graph_image": (0.0, 0.25, 0.5, 1.0, 2.0),
    "graph_text": (0.0, 0.25, 0.5, 1.0, 2.0),
    "seeds": (5, 10, 20, 50),
    "temperature": (0.25, 0.5, 1.0, 2.0),
    "tag_weight": (0.0, 0.25, 0.5),
    "hub": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
    "hub_k": (16, 64, 256),
    "contradicted_graph": (0.0, 0.5, 1.0),
}
"""The values tuning tries for each weight."""

