"""Score fusion for the full pipeline, and the tuning of its weights on a split of the TRAINING data.

For a query q and a candidate c of the target kind:

    score(q, c) = w_refined * <q_gnn, c_gnn> + w_encoder * <q_enc, c_enc> + w_graph * walk(q -> c) / max_c walk
                - w_hub * hub(c) + w_echo_query * echo_query(q, c) + w_echo_target * echo_target(q, c)

where `walk` is the expansion mass (retrieval/expansion.py) from a start distribution that puts
`entity_share` of its mass on the query's entities (by their link score) and the rest on its `seeds`
nearest candidates by refined similarity (softmax at `seed_temperature`), and `hub` and the echoes
come from the collection's similarity neighbourhoods (retrieval/neighbourhood.py): the echo over
the query's modality, and over the target's. Candidates are the seeds and whatever the walk
reaches; nothing else is ranked. Weights are kept per query modality (`text`, `image`): text
queries carry exact entity mentions, image queries only their zero-shot tags.

The same batched function scores one query at search time and thousands at evaluation time, so
the figures `mmkg eval` reports are those of the code that answers `mmkg search`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
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


def start_matrix(
    graph: GraphIndex,
    seed_rows: np.ndarray,
    seed_scores: np.ndarray,
    entities: Sequence[Sequence[tuple[str, float]]],
    params: FusionParams,
) -> sp.csr_matrix:
    """Queries x graph-nodes start distribution: entity share on the query's entities, the rest on its seeds.

    `seed_rows[i]` are graph rows of query i's seeds (-1 for none), `seed_scores[i]` their similarities.
    """
    n_q = len(entities)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for i in range(n_q):
        ents = [(graph.pos[e], max(s, 1e-3)) for e, s in entities[i] if e in graph.pos]
        share = params.entity_share if ents else 0.0
        if ents:
            w = np.array([s for _, s in ents], dtype=np.float64)
            rows.append(np.full(len(ents), i))
            cols.append(np.array([r for r, _ in ents]))
            vals.append(share * w / w.sum())
        ok = seed_rows[i] >= 0
        if ok.any() and share < 1.0:
            z = seed_scores[i][ok] / params.seed_temperature
            p = np.exp(z - z.max())
            rows.append(np.full(int(ok.sum()), i))
            cols.append(seed_rows[i][ok])
            vals.append((1.0 - share) * p / p.sum())
    if not rows:
        return sp.csr_matrix((n_q, len(graph)), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_q, len(graph)),
    )


@dataclass
class Signals:
    """What fusion weighs, for a batch of queries (rows) and candidate targets (columns)."""

    refined: np.ndarray
    encoder: np.ndarray
    hub: np.ndarray | None = None
    """(targets,) hubness towards the query's modality."""
    echo_query: np.ndarray | None = None
    echo_target: np.ndarray | None = None


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
    candidate = seeds | (walk > 0) if params.w_graph > 0 else seeds
    return np.where(candidate, fused, fused - OUTSIDE).astype(np.float32)


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
    "w_encoder": (0.0, 0.3, 0.6),
    "w_graph": (0.0, 0.05, 0.1, 0.2),
    "entity_share": (0.25, 0.5, 0.75, 1.0),
    "w_hub": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5),
    "w_echo_query": (0.0, 0.3, 0.6, 1.0, 1.5),
    "w_echo_target": (0.0, 0.3, 0.6),
}


def tune_fusion(trained: TrainedGnn, tune: PairGraph, progress: bool = False) -> dict[str, Any]:
    """Grid-search the fusion weights per query modality on a tune graph (a split of TRAIN).

    Picks, for text queries, the weights with the best text->image R@1 and, for image queries,
    the best image->text R@1 (ties: the simpler weights, fewest and smallest graph terms). The
    signals and the walks (one per entity share) are computed once; the grid only re-weighs them.
    Returns the chosen weights and the tune-split figures of every mode.
    """
    from mmkg.evaluation.graph_modes import ModeInputs

    inputs = ModeInputs.build(trained, tune.store, tune.vectors, tune.image_ids, tune.text_ids, tune.captions)
    owner = tune.owner
    results: dict[str, Any] = {"grid": GRID}
    chosen: dict[str, dict[str, float]] = {}
    base = FusionParams()
    for direction, kind in (("t2i", "text"), ("i2t", "image")):
        signals = inputs.signals(direction)
        walks = {
            share: inputs.walk(direction, replace(base, w_graph=1.0, entity_share=share))
            for share in GRID["entity_share"]
        }
        no_walk = inputs.walk(direction, replace(base, w_graph=0.0))
        best: tuple[float, float, FusionParams] | None = None
        for w_g, share, w_enc, w_hub, w_eq, w_et in itertools.product(
            GRID["w_graph"], GRID["entity_share"], GRID["w_encoder"], GRID["w_hub"], GRID["w_echo_query"],
            GRID["w_echo_target"],
        ):
            if w_g == 0 and share != GRID["entity_share"][0]:
                continue
            params = replace(base, w_encoder=w_enc, w_graph=w_g, entity_share=share, w_hub=w_hub,
                             w_echo_query=w_eq, w_echo_target=w_et)
            walk, seeds = walks[share] if w_g > 0 else no_walk
            r1 = _r1(combine(signals, walk, seeds, params), owner, direction)
            key = (r1, -(w_g + w_enc + w_hub + w_eq + w_et))
            if best is None or key > (best[0], best[1]):
                best = (r1, key[1], params)
        assert best is not None
        chosen[kind] = best[2].to_json()
        results[f"tune_{direction}_R@1"] = best[0]
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
