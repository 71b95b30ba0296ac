"""Search latency of the three modes next to FAISS alone, on synthetic collections of 10k and 100k items.

    .venv/bin/python benchmarks/graph_search_latency.py [--sizes 10000 100000] [--queries 200] [--json]

A synthetic collection: N indexed images and N/2 captions, N/20 entities with Zipf popularity; each
image depicts 5 entities (scored like zero-shot tags), each caption mentions 3, entities co-occur
through captions. Vectors are noisy means of their entities' vectors (dim 256). The refiner has the
shipped architecture (random weights: the cost is the same). Each text query mentions 3 entities.

Timed per query, after warm-up, single process (torch and FAISS limited to 2 threads):
* `faiss`   FAISS alone: top-k over the encoder vectors (exact up to 100k, as the workspace index).
* `encoder` the graph retriever's encoder mode (FAISS top-k through the same ranker).
* `gnn`     inductive refinement of the query + FAISS top-k over refined vectors.
* `full`    `gnn` + 2-hop expansion from 50 seeds and the query's entities + fusion with every term on
            (encoder similarity, walk, hubness and both echoes from the similarity neighbourhoods).
Query encoding and entity linking are the same in every mode and left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import faiss
import numpy as np
import torch
from torch_geometric.data import HeteroData

from mmkg.gnn.data import EDGE_TYPES, GraphData, reverse_type
from mmkg.gnn.model import GnnConfig, GraphRefiner
from mmkg.gnn.refine import TrainedGnn
from mmkg.retrieval.fusion import FusionParams
from mmkg.retrieval.graph_retriever import GraphRanker, GraphState

DIM = 256


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(n_images: int, seed: int = 0) -> tuple[GraphData, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_texts, n_ent = n_images // 2, max(200, n_images // 20)
    pop = 1.0 / np.arange(1, n_ent + 1) ** 0.9
    pop /= pop.sum()
    ent_vec = _unit(rng.normal(size=(n_ent, DIM)))
    img_ent = rng.choice(n_ent, size=(n_images, 5), p=pop)
    txt_ent = rng.choice(n_ent, size=(n_texts, 3), p=pop)
    img_x = _unit(ent_vec[img_ent].mean(1) + 0.3 * rng.normal(size=(n_images, DIM)))
    txt_x = _unit(ent_vec[txt_ent].mean(1) + 0.3 * rng.normal(size=(n_texts, DIM)))
    data = HeteroData()
    data["Image"].x = torch.from_numpy(img_x)
    data["Text"].x = torch.from_numpy(txt_x)
    data["Entity"].x = torch.from_numpy(ent_vec)
    data["Record"].x = torch.zeros((0, DIM))
    for et in EDGE_TYPES:
        data[et].edge_index = torch.empty((2, 0), dtype=torch.long)
        data[et].edge_weight = torch.empty(0)

    def put(et: tuple[str, str, str], src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> None:
        ei = torch.from_numpy(np.unique(np.stack([src, dst]), axis=1))
        ew = torch.from_numpy(np.resize(w.astype(np.float32), ei.shape[1]))
        data[et].edge_index, data[et].edge_weight = ei, ew
        if reverse_type(et) != et:
            data[reverse_type(et)].edge_index, data[reverse_type(et)].edge_weight = ei.flip(0), ew

    put(("Image", "DEPICTS", "Entity"), np.repeat(np.arange(n_images), 5), img_ent.ravel(),
        rng.uniform(0.2, 0.5, n_images * 5))
    put(("Text", "MENTIONS", "Entity"), np.repeat(np.arange(n_texts), 3), txt_ent.ravel(), np.ones(n_texts * 3))
    a, b = txt_ent[:, [0, 0, 1]].ravel(), txt_ent[:, [1, 2, 2]].ravel()
    keep = a != b
    co = np.unique(np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep]]), axis=1)
    both = np.concatenate([co, co[::-1]], axis=1)
    data["Entity", "CO_OCCURS", "Entity"].edge_index = torch.from_numpy(both)
    data["Entity", "CO_OCCURS", "Entity"].edge_weight = torch.full((both.shape[1],), 0.5)
    ids = {
        "Image": [f"img:{i}" for i in range(n_images)],
        "Text": [f"txt:{i}" for i in range(n_texts)],
        "Entity": [f"ent:e{i}" for i in range(n_ent)],
        "Record": [],
    }
    has = {nt: np.ones(len(v), dtype=bool) for nt, v in ids.items()}
    q_ent = rng.choice(n_ent, size=(10_000, 3), p=pop)
    q_x = _unit(ent_vec[q_ent].mean(1) + 0.3 * rng.normal(size=(10_000, DIM)))
    return GraphData(data=data, ids=ids, has_vector=has), q_x, q_ent


def _pct(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p95_ms": round(float(np.percentile(a, 95)), 3)}


def bench(n: int, queries: int, k: int = 10) -> dict[str, Any]:
    t0 = time.perf_counter()
    gd, q_x, q_ent = synthetic(n)
    torch.manual_seed(0)
    model = GraphRefiner(GnnConfig(dim=DIM))
    for lin in model.out.values():
        torch.nn.init.normal_(lin.weight, std=0.02)
    fusion = {f"text.{key}": v for key, v in FusionParams(
        w_graph=0.1, w_encoder=0.3, w_hub=0.5, w_echo_query=0.6, w_echo_target=0.3).to_json().items()}
    trained = TrainedGnn(model.eval(), "synthetic", fusion=fusion)
    state = GraphState.compute(trained, gd)
    build_s = time.perf_counter() - t0
    flat = faiss.IndexFlatIP(DIM)
    flat.add(state.encoder_vecs["Image"])
    rankers = {m: GraphRanker(state, trained, m) for m in ("encoder", "gnn", "full")}  # type: ignore[arg-type]
    eids = state.ids["Entity"]
    out: dict[str, Any] = {"items": n, "texts": len(state.ids["Text"]), "entities": len(eids),
                           "edges": int(state.graph.transition.nnz), "build_s": round(build_s, 1)}
    warm = 20
    for mode in ("faiss", "encoder", "gnn", "full"):
        times: list[float] = []
        for i in range(queries + warm):
            q = q_x[i]
            ents = [(eids[e], 1.0) for e in q_ent[i]]
            start = time.perf_counter()
            if mode == "faiss":
                flat.search(q[None], k)
            else:
                r = rankers[mode]
                q_ref = r.refine(q, "text", [e for e, _ in ents])
                r.rank(q, q_ref, ents, "Image", k, None, "text")
            if i >= warm:
                times.append((time.perf_counter() - start) * 1000)
        out[mode] = _pct(times)
    out["full_over_faiss_p95"] = round(out["full"]["p95_ms"] / out["faiss"]["p95_ms"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    faiss.omp_set_num_threads(2)
    rows = [bench(n, args.queries) for n in args.sizes]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'items':>8} {'mode':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for row in rows:
        for mode in ("faiss", "encoder", "gnn", "full"):
            print(f"{row['items']:>8} {mode:>8} {row[mode]['p50_ms']:>8.2f} {row[mode]['p95_ms']:>8.2f}")
        print(f"{'':>8} full/faiss p95 = {row['full_over_faiss_p95']}x  (graph: {row['entities']} entities, "
              f"{row['edges']} walk edges, built in {row['build_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
