"""Score fusion for the full pipeline, and the tuning of its weights on a split of the TRAINING data.

For a query q and a candidate c of the target kind:

    score(q, c) = w_refined * <q_gnn, c_gnn> + w_encoder * <q_enc, c_enc> + w_graph * walk(q -> c) / max_c walk
                - w_hub * hub(c) + w_echo_query * echo_query(q, c) + w_echo_target * echo_target(q, c)
                + w_entity * shared(q, c)

where `walk` is the expansion mass (retrieval/expansion.py) from a start distribution that puts
`entity_share` of its mass on the query's entities (by their link score) and the rest on its `seeds`
nearest candidates by refined similarity (softmax at `seed_temperature`), and `hub` and the echoes
come from the collection's similarity neighbourhoods (retrieval/neighbourhood.py): the echo over
the query's modality, and over the target's; `shared` is the IDF-weighted share of the query's
entities that the candidate has, directly or through its record (a catalog's attributes).
Candidates are the seeds, whatever the walk reaches and the items sharing most of the query's
entities; nothing else is ranked. Weights are kept per query modality (`text`, `image`): text
queries carry exact entity mentions, image queries only their zero-shot tags.

Search (`GraphRanker.rank`) and evaluation score with the same signals and the same `combine`
(a test checks they agree), so the figures `mmkg eval` reports are those of `mmkg search`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from mmkg.retrieval.expansion import GraphIndex

if TYPE_CHECKING:
    from mmkg.gnn.pairs import PairGraph
    from mmkg.gnn.refine import TrainedGnn

log = logging.getLogger(__name__)

OUTSIDE = 1000.0
"""Subtracted from the score of a candidate neither seeded nor reached, so it ranks after every candidate."""


@dataclass(frozen=True)
class FusionParams:
    w_refined: float = 1.0
    w_encoder: float = 0.0
    w_graph: float = 0.1
    entity_share: float = 0.5
    seeds: int = 50
    seed_temperature: float = 0.05
    hops: int = 2
    beam: int = 256
    decay: float = 0.5
    max_reached: int = 300
    """At most this many targets reached by the walk (the heaviest) join the seeds as candidates."""
    w_hub: float = 0.0
    w_echo_query: float = 0.0
    w_echo_target: float = 0.0
    w_entity: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> FusionParams:
        if not obj:
            return cls()
        fields = cls.__dataclass_fields__
        vals: dict[str, Any] = {
            k: (int(v) if fields[k].type in ("int", int) else float(v)) for k, v in obj.items() if k in fields
        }
        return cls(**vals)


def start_entries(
    graph: GraphIndex,
    seed_rows: np.ndarray,
    seed_scores: np.ndarray,
    entities: Sequence[tuple[str, float]],
    params: FusionParams,
) -> tuple[np.ndarray, np.ndarray]:
    """One query's start distribution as (graph rows, mass): `entity_share` of the mass on its entities
    (by link score), the rest on its seeds (`seed_rows`, -1 for none; softmax of `seed_scores`)."""
    ents = [(graph.pos[e], max(s, 1e-3)) for e, s in entities if e in graph.pos]
    share = params.entity_share if ents else 0.0
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    if ents:
        w = np.array([s for _, s in ents], dtype=np.float64)
        cols.append(np.array([r for r, _ in ents], dtype=np.int64))
        vals.append(share * w / w.sum())
    ok = seed_rows >= 0
    if ok.any() and share < 1.0:
        z = seed_scores[ok] / params.seed_temperature
        p = np.exp(z - z.max())
        cols.append(seed_rows[ok].astype(np.int64))
        vals.append((1.0 - share) * p / p.sum())
    if not cols:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(cols), np.concatenate(vals).astype(np.float32)


def start_matrix(
    graph: GraphIndex,
    seed_rows: np.ndarray,
    seed_scores: np.ndarray,
    entities: Sequence[Sequence[tuple[str, float]]],
    params: FusionParams,
) -> sp.csr_matrix:
    """Queries x graph-nodes start distributions (`start_entries` of each query, as rows)."""
    parts = [start_entries(graph, seed_rows[i], seed_scores[i], entities[i], params) for i in range(len(entities))]
    rows = np.concatenate([np.full(len(c), i) for i, (c, _) in enumerate(parts)]) if parts else np.empty(0, int)
    cols = np.concatenate([c for c, _ in parts]) if parts else np.empty(0, np.int64)
    vals = np.concatenate([v for _, v in parts]) if parts else np.empty(0, np.float32)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(entities), len(graph)))


@dataclass
class Signals:
    """What fusion weighs, for a batch of queries (rows) and candidate targets (columns)."""

    refined: np.ndarray
    encoder: np.ndarray
    hub: np.ndarray | None = None
    """(targets,) hubness towards the query's modality."""
    echo_query: np.ndarray | None = None
    echo_target: np.ndarray | None = None
    shared: np.ndarray | None = None
    """Queries x targets: the IDF-weighted share of the query's entities the target has."""

    def take(self, queries: np.ndarray) -> Signals:
        """The signals of some of the queries (a boolean mask or row indices)."""
        pick = lambda a: a[queries] if a is not None else None  # noqa: E731
        return Signals(self.refined[queries], self.encoder[queries], self.hub, pick(self.echo_query),
                       pick(self.echo_target), pick(self.shared))


def walk_scores(
    graph: GraphIndex,
    target_rows: np.ndarray,
    refined_sims: np.ndarray,
    entities: Sequence[Sequence[tuple[str, float]]],
    params: FusionParams,
) -> tuple[np.ndarray, np.ndarray]:
    """(walk mass on each target, scaled to a maximum of 1 per query; seed mask), queries x targets.

    `target_rows[j]` is the graph row of target j; the seeds are each query's `params.seeds` best
    targets by `refined_sims`, and the walk starts from them and the query's entities."""
    n_q, n_t = refined_sims.shape
    s = min(params.seeds, n_t)
    seed_idx = np.argpartition(-refined_sims, s - 1, axis=1)[:, :s] if s < n_t else np.tile(np.arange(n_t), (n_q, 1))
    seeds = np.zeros((n_q, n_t), dtype=bool)
    np.put_along_axis(seeds, seed_idx, True, axis=1)
    if params.w_graph <= 0:
        return np.zeros((n_q, n_t), np.float32), seeds
    seed_scores = np.take_along_axis(refined_sims, seed_idx, axis=1)
    start = start_matrix(graph, target_rows[seed_idx], seed_scores, entities, params)
    mass = graph.expand(start, hops=params.hops, beam=params.beam, decay=params.decay).mass
    g = mass[:, target_rows].toarray() if len(target_rows) else np.zeros((n_q, 0))
    if params.max_reached < n_t:
        cut = -np.partition(-g, params.max_reached - 1, axis=1)[:, params.max_reached - 1 : params.max_reached]
        g = np.where(g >= np.maximum(cut, 1e-30), g, 0.0)
    top = g.max(axis=1, keepdims=True)
    return np.where(top > 0, g / np.maximum(top, 1e-12), 0.0).astype(np.float32), seeds


def combine(signals: Signals, walk: np.ndarray, seeds: np.ndarray, params: FusionParams) -> np.ndarray:
    """Fused scores; a target neither seeded nor reached by the walk gets its score minus OUTSIDE."""
    fused = params.w_refined * signals.refined + params.w_encoder * signals.encoder + params.w_graph * walk
    if signals.hub is not None and params.w_hub:
        fused = fused - params.w_hub * signals.hub[None, :]
    if signals.echo_query is not None and params.w_echo_query:
        fused = fused + params.w_echo_query * signals.echo_query
    if signals.echo_target is not None and params.w_echo_target:
        fused = fused + params.w_echo_target * signals.echo_target
    if signals.shared is not None and params.w_entity:
        fused = fused + params.w_entity * signals.shared
    candidate = seeds | (walk > 0) if params.w_graph > 0 else seeds
    if signals.shared is not None and params.w_entity:
        candidate = candidate | top_mask(signals.shared, params.max_reached)
    return np.where(candidate, fused, fused - OUTSIDE).astype(np.float32)


def top_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, the (at most) k largest positive entries: the targets an entity signal adds as candidates."""
    values = np.atleast_2d(values)
    mask = values > 0
    if values.shape[1] > k:
        idx = np.argpartition(-values, k - 1, axis=1)[:, :k]
        top = np.zeros_like(mask)
        np.put_along_axis(top, idx, True, axis=1)
        mask &= top
    return mask


def fuse(
    graph: GraphIndex,
    target_rows: np.ndarray,
    signals: Signals,
    entities: Sequence[Sequence[tuple[str, float]]],
    params: FusionParams,
) -> np.ndarray:
    """Fused scores (queries x targets): the walk from seeds and entities, then `combine`."""
    walk, seeds = walk_scores(graph, target_rows, signals.refined, entities, params)
    return combine(signals, walk, seeds, params)


# --- tuning on a split of the training data -----------------------------------------------


GRID: dict[str, Sequence[float]] = {
    "w_encoder": (0.0, 0.3, 0.6, 1.0),
    "w_graph": (0.0, 0.05, 0.1, 0.2),
    "entity_share": (0.25, 0.5, 0.75, 1.0),
    "w_hub": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
    "w_echo_query": (0.0, 0.3, 0.6, 1.0, 1.5),
    "w_echo_target": (0.0, 0.3, 0.6, 1.0),
    "w_entity": (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3.0),
}


def search_weights(
    signals: Signals,
    walk: Callable[[FusionParams], tuple[np.ndarray, np.ndarray]],
    score: Callable[[np.ndarray], float],
    base: FusionParams | None = None,
    rounds: int = 4,
) -> tuple[FusionParams, float]:
    """Coordinate ascent over `GRID`: each weight in turn takes its best value with the others fixed,
    until a round changes nothing. `walk(params)` gives (walk scores, seed mask), computed once per
    entity share; `score(fused)` is the figure to maximise. Ties keep the current value, so a weight
    leaves zero only when it helps. Returns the weights and their score."""
    walks: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def evaluate(p: FusionParams) -> float:
        key = p.entity_share if p.w_graph > 0 else -1.0
        if key not in walks:
            walks[key] = walk(p)
        return score(combine(signals, *walks[key], p))

    best = base or FusionParams(w_graph=0.0)
    best_score = evaluate(best)
    for _ in range(rounds):
        changed = False
        for name, values in GRID.items():
            for v in values:
                trial = FusionParams.from_json({**best.to_json(), name: v})
                if trial == best:
                    continue
                s = evaluate(trial)
                if s > best_score + 1e-9:
                    best, best_score, changed = trial, s, True
        if not changed:
            break
    return best, best_score


def tune_fusion(trained: TrainedGnn, tune: PairGraph, progress: bool = False) -> dict[str, Any]:
    """Tune the fusion weights per query modality on a tune graph (a split of TRAIN).

    Text queries maximise text->image R@1, image queries image->text R@1 (`search_weights`).
    Returns the chosen weights and the tune-split figures of every mode.
    """
    from mmkg.evaluation.graph_modes import ModeInputs

    inputs = ModeInputs.build(trained, tune.store, tune.vectors, tune.image_ids, tune.text_ids, tune.captions)
    owner = tune.owner
    results: dict[str, Any] = {"grid": GRID}
    chosen: dict[str, dict[str, float]] = {}
    for direction, kind in (("t2i", "text"), ("i2t", "image")):

        def walk(p: FusionParams, direction: str = direction) -> tuple[np.ndarray, np.ndarray]:
            return inputs.walk(direction, p)

        def r1_of(fused: np.ndarray, direction: str = direction) -> float:
            return _r1(fused, owner, direction)

        params, r1 = search_weights(inputs.signals(direction), walk, r1_of)
        chosen[kind] = params.to_json()
        results[f"tune_{direction}_R@1"] = r1
        results[f"tune_{direction}_R@1_gnn"] = _r1(inputs.dense_scores(direction, refined=True), owner, direction)
        results[f"tune_{direction}_R@1_encoder"] = _r1(inputs.dense_scores(direction, refined=False), owner, direction)
        log.info("fusion %s: %s", direction, results)
    results["weights"] = {f"{kind}.{k}": v for kind, p in chosen.items() for k, v in p.items()}
    return results


def params_for(weights: Mapping[str, float], kind: str) -> FusionParams:
    """The tuned FusionParams of a query modality (`text` or `image`) from a flat saved mapping."""
    prefix = f"{kind}."
    return FusionParams.from_json({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)})


def _r1(scores: np.ndarray, owner: np.ndarray, direction: str) -> float:
    """R@1 in percent; `scores` is queries x targets (t2i: texts x images, i2t: images x texts)."""
    top = scores.argmax(axis=1)
    if direction == "t2i":
        return float(np.mean(top == owner) * 100)
    return float(np.mean(owner[top] == np.arange(len(scores))) * 100)
