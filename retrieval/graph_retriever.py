"""The graph retriever: GNN-refined seeds, graph expansion, fusion, filters and explanation paths.

Modes (as `mmkg search --mode` and `mmkg eval` name them):

* `encoder`: encoder vectors, nearest neighbours (the dense baseline, with filters).
* `gnn`: the query is refined inductively (attached to its entities) and matched against the
  collection's refined vectors.
* `full`: `gnn` seeds + bounded graph expansion from the seeds and the query's entities, fused
  with the tuned weights saved by `mmkg train gnn` (retrieval/fusion.py).

The collection's refined vectors, hidden states and walk matrix are computed once per state of the
graph and cached in the workspace (`index/gnn/`), keyed by the model's fingerprint and the store's
node and edge counts; new nodes are refined by the trained model when the cache is rebuilt (the
model is inductive: nothing is retrained).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import scipy.sparse as sp
import torch

from mmkg.encoders.base import Encoder
from mmkg.errors import UserInputError
from mmkg.gnn.data import GraphData, build_hetero
from mmkg.gnn.query_refiner import QueryRefiner
from mmkg.gnn.refine import (
    ENTITY,
    IMAGE,
    RECORD,
    REV_DEPICTS,
    REV_MENTIONS,
    TEXT,
    RefinedGraph,
    TrainedGnn,
    load_gnn,
    refine_attached_queries,
)
from mmkg.graph import ids as graph_ids
from mmkg.graph.schema import Label
from mmkg.graph.store import GraphStore
from mmkg.retrieval.expansion import LABEL_CODE, GraphIndex
from mmkg.retrieval.explain import QueryContext, explain_node
from mmkg.retrieval.fusion import FusionParams, Signals, combine, params_for, start_entries, top_mask
from mmkg.retrieval.neighbourhood import Neighbourhoods
from mmkg.retrieval.query_entities import QueryEntity
from mmkg.retrieval.record_search import RecordRetriever
from mmkg.retrieval.search import DenseRetriever, Explanation, Hit, Query, Target
from mmkg.retrieval.vectors import Vectors
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

Mode = Literal["encoder", "gnn", "full"]
MODES: tuple[str, ...] = ("encoder", "gnn", "full")
FILTER_EXACT_MAX = 50_000
"""A filter that keeps at most this many items is answered by scoring every one of them exactly."""
CACHE_VERSION = 2


@dataclass
class GraphState:
    """A collection as the graph retriever sees it: ids, encoder and refined vectors, the walk matrix."""

    ids: dict[str, list[str]]
    pos: dict[str, dict[str, int]]
    encoder_vecs: dict[str, np.ndarray]
    refined_vecs: dict[str, np.ndarray]
    states: list[dict[str, torch.Tensor]]
    graph: GraphIndex
    membership: dict[str, sp.csr_matrix]
    """`Entity->Image` and `Entity->Text` incidence (an item with the entity, or in a record whose
    other member has it): what filters select."""
    neighbours: Neighbourhoods
    """Each image's and text's nearest images and texts by refined vector (the similarity graph)."""

    def shared_entities(self, nt: str, entities: Sequence[Sequence[tuple[str, float]]]) -> sp.csr_matrix:
        """Queries x `nt` items: the IDF-weighted share of each query's entities (by link score) that an
        item has, directly or through its record (1 when it has them all)."""
        m = self.membership[nt]
        epos = self.pos[ENTITY]
        idf = np.log((1.0 + m.shape[1]) / (1.0 + np.diff(m.indptr)))
        rows, cols, vals = [], [], []
        for i, ents in enumerate(entities):
            w = {epos[e]: max(score, 0.0) * idf[epos[e]] for e, score in ents if e in epos}
            total = sum(w.values())
            for col, v in w.items():
                if total > 0:
                    rows.append(i)
                    cols.append(col)
                    vals.append(v / total)
        q = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(len(entities), m.shape[0]))
        return (q @ m).tocsr()

    @classmethod
    def compute(cls, trained: TrainedGnn | None, data: GraphData, max_fanout: int = 64) -> GraphState:
        if trained is not None:
            refined = RefinedGraph.compute(trained, data)
            refined_vecs = refined.refined
            states = refined.states
        else:
            refined_vecs = {nt: data.data[nt].x.numpy() for nt in data.ids}
            states = []
        graph = graph_index_from_data(data, max_fanout)
        refined = {nt: np.ascontiguousarray(refined_vecs[nt]) for nt in (IMAGE, TEXT)}
        return cls(
            ids=data.ids,
            pos=data.index,
            encoder_vecs={nt: np.ascontiguousarray(data.data[nt].x.numpy()) for nt in (IMAGE, TEXT)},
            refined_vecs=refined,
            states=states,
            graph=graph,
            membership=_membership(data),
            neighbours=Neighbourhoods.compute(refined),
        )

    def save(self, folder: Path, key: str) -> None:
        import io

        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {}
        for nt in (IMAGE, TEXT):
            arrays[f"enc_{nt}"] = self.encoder_vecs[nt]
            arrays[f"ref_{nt}"] = self.refined_vecs[nt]
        for i, layer in enumerate(self.states):
            for nt, t in layer.items():
                arrays[f"state{i}_{nt}"] = t.numpy()
        t = self.graph.transition.tocsr()
        arrays.update(t_data=t.data, t_indices=t.indices, t_indptr=t.indptr, labels=self.graph.labels)
        for name, m in self.membership.items():
            m = m.tocsr()
            arrays.update({f"m_{name}_data": m.data, f"m_{name}_indices": m.indices, f"m_{name}_indptr": m.indptr})
            arrays[f"m_{name}_shape"] = np.asarray(m.shape)
        arrays.update(self.neighbours.to_arrays())
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(folder / "state.npz", buf.getvalue())
        atomic_write_json(
            folder / "state.json",
            {"key": key, "ids": self.ids, "layers": len(self.states), "max_fanout": self.graph.max_fanout},
        )

    @classmethod
    def load(cls, folder: Path, key: str) -> GraphState | None:
        meta_path, npz_path = folder / "state.json", folder / "state.npz"
        if not meta_path.is_file() or not npz_path.is_file():
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key:
            return None
        z = np.load(npz_path)
        ids_: dict[str, list[str]] = meta["ids"]
        all_ids = [nid for nt in (IMAGE, TEXT, ENTITY, RECORD) for nid in ids_[nt]]
        n = len(all_ids)
        transition = sp.csr_matrix((z["t_data"], z["t_indices"], z["t_indptr"]), shape=(n, n))
        states = [
            {nt: torch.from_numpy(z[f"state{i}_{nt}"]) for nt in (IMAGE, TEXT, ENTITY, RECORD)}
            for i in range(int(meta["layers"]))
        ]
        membership = {
            name: sp.csr_matrix(
                (z[f"m_{name}_data"], z[f"m_{name}_indices"], z[f"m_{name}_indptr"]),
                shape=tuple(z[f"m_{name}_shape"]),
            )
            for name in (IMAGE, TEXT)
        }
        return cls(
            ids=ids_,
            pos={nt: {nid: i for i, nid in enumerate(v)} for nt, v in ids_.items()},
            encoder_vecs={nt: z[f"enc_{nt}"] for nt in (IMAGE, TEXT)},
            refined_vecs={nt: z[f"ref_{nt}"] for nt in (IMAGE, TEXT)},
            states=states,
            graph=GraphIndex(all_ids, z["labels"], transition, int(meta["max_fanout"])),
            membership=membership,
            neighbours=Neighbourhoods.from_arrays(z),
        )


def graph_index_from_data(data: GraphData, max_fanout: int = 64) -> GraphIndex:
    """The walk matrix over every node, from the forward relations of a HeteroData (both directions)."""
    order = (IMAGE, TEXT, ENTITY, RECORD)
    offset: dict[str, int] = {}
    all_ids: list[str] = []
    labels: list[np.ndarray] = []
    for nt in order:
        offset[nt] = len(all_ids)
        all_ids += data.ids[nt]
        labels.append(np.full(len(data.ids[nt]), LABEL_CODE[Label(nt)], dtype=np.int8))
    src, dst, w = [], [], []
    for et in data.data.edge_types:
        s, r, d = et
        if r.startswith("rev_"):
            continue
        ei = data.data[et].edge_index.numpy()
        if ei.shape[1] == 0:
            continue
        ew = data.data[et].edge_weight.numpy()
        a, b = ei[0] + offset[s], ei[1] + offset[d]
        if r == "CO_OCCURS":  # stored in both directions already
            src.append(a)
            dst.append(b)
            w.append(ew)
        else:
            src += [a, b]
            dst += [b, a]
            w += [ew, ew]
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.empty(0, dt)  # noqa: E731
    return GraphIndex.from_edges(
        all_ids,
        np.concatenate(labels) if labels else np.empty(0, np.int8),
        cat(src, np.int64),
        cat(dst, np.int64),
        cat(w, np.float32),
        max_fanout,
    )


def _membership(data: GraphData) -> dict[str, sp.csr_matrix]:
    n_e, n_r = data.num_nodes(ENTITY), data.num_nodes(RECORD)
    n = {IMAGE: data.num_nodes(IMAGE), TEXT: data.num_nodes(TEXT)}

    def mat(et: tuple[str, str, str], shape: tuple[int, int], flip: bool = False) -> sp.csr_matrix:
        if et not in data.data.edge_types:
            return sp.csr_matrix(shape, dtype=np.float32)
        ei = data.data[et].edge_index.numpy()
        r, c = (ei[1], ei[0]) if flip else (ei[0], ei[1])
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=shape)

    e_items = {
        IMAGE: mat((IMAGE, "DEPICTS", ENTITY), (n_e, n[IMAGE]), flip=True),
        TEXT: mat((TEXT, "MENTIONS", ENTITY), (n_e, n[TEXT]), flip=True),
    }
    r_items = {IMAGE: mat((RECORD, "HAS", IMAGE), (n_r, n[IMAGE])), TEXT: mat((RECORD, "HAS", TEXT), (n_r, n[TEXT]))}
    e_rec = e_items[IMAGE] @ r_items[IMAGE].T + e_items[TEXT] @ r_items[TEXT].T
    out = {}
    for nt in (IMAGE, TEXT):
        m = e_items[nt] + e_rec @ r_items[nt]
        m.data[:] = 1.0
        out[nt] = m.tocsr()
    return out


def state_key(store: GraphStore, trained: TrainedGnn | None, encoder: Encoder) -> str:
    nodes, edges = store.counts()
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "model": trained.fingerprint if trained else None,
            "encoder": encoder.fingerprint,
            "nodes": nodes,
            "edges": edges,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def open_state(
    settings: Settings,
    store: GraphStore,
    vectors: Vectors,
    encoder: Encoder,
    trained: TrainedGnn | None,
    cache: bool = True,
) -> GraphState:
    folder = Workspace(settings.home).index_dir / "gnn"
    key = state_key(store, trained, encoder)
    if cache:
        state = GraphState.load(folder, key)
        if state is not None:
            return state
    state = GraphState.compute(trained, build_hetero(store, vectors, dim=encoder.dim))
    if cache:
        try:
            state.save(folder, key)
        except OSError as exc:  # a read-only workspace still answers, it just recomputes next time
            log.warning("could not cache the refined graph in %s: %s", folder, exc)
    return state


class GraphRetriever(DenseRetriever):
    """`Retriever.search` over refined vectors, graph expansion and fusion, with filters and explanations."""

    def __init__(
        self,
        settings: Settings,
        store: GraphStore,
        vectors: Vectors,
        encoder: Encoder,
        trained: TrainedGnn | None = None,
        mode: Mode = "full",
        state: GraphState | None = None,
        cache: bool = True,
    ) -> None:
        if mode not in MODES:
            raise UserInputError(f"unknown mode {mode!r}: choose {', '.join(MODES)}")
        super().__init__(settings, store, vectors, encoder)
        self.mode = mode
        self.trained = trained if trained is not None or mode == "encoder" else load_gnn(settings, encoder)
        self.state = state or open_state(
            settings, store, vectors, encoder, self.trained if mode != "encoder" else None, cache
        )
        self.ranker = GraphRanker(self.state, self.trained, mode, settings.exact_index_max)

    # --- public API -----------------------------------------------------------------------

    def search(
        self, query: Query, k: int = 10, target: Target = "images", where: Mapping[str, str] | None = None
    ) -> list[Hit]:
        if k < 1:
            raise UserInputError("k must be at least 1")
        nt = self._target_type(target)
        if not self.state.ids[nt]:
            raise UserInputError("the workspace holds no vectors yet: run `mmkg ingest PATH` first")
        q_enc, entities, q_ref = self._prepare(query)
        ranked, seeds = self.ranker.rank(q_enc, q_ref, [(e.id, e.score) for e in entities], nt, k, where,
                                         _kind(query))
        ctx = QueryContext.build(self.store, query.label, entities, seeds)
        hits = self.hits(query, ranked, entities)
        dense = dict(seeds)
        for hit in hits:
            node = self.store.get_nodes([hit.id]).get(hit.id)
            if node is not None:
                hit.explanation = explain_node(self.store, ctx, node, dense.get(hit.id))
        return hits

    def explain(self, query: Query, result_id: str, target: Target | None = None) -> Explanation:
        """The explanation paths from `query` to one item (any image or text of the collection)."""
        node = self.store.get_nodes([result_id]).get(result_id)
        if node is None or node.label not in (Label.IMAGE, Label.TEXT):
            raise UserInputError(f"no image or text with id {result_id!r} in this workspace")
        nt = node.label.value
        q_enc, entities, q_ref = self._prepare(query)
        q = q_ref if q_ref is not None else q_enc
        vecs = self.state.refined_vecs[nt] if q_ref is not None else self.state.encoder_vecs[nt]
        row = self.state.pos[nt][result_id]
        _, seeds = self.ranker.rank(q_enc, q_ref, [(e.id, e.score) for e in entities], nt, 3, None, _kind(query))
        ctx = QueryContext.build(self.store, query.label, entities, seeds)
        return explain_node(self.store, ctx, node, float(vecs[row] @ q), max_paths=5)

    def refine_query(self, query: Query) -> np.ndarray:
        """The vector this retriever matches `query` with (refined, or the encoder's in encoder mode)."""
        q_enc, _, q_ref = self._prepare(query)
        return q_ref if q_ref is not None else q_enc

    # --- internals ------------------------------------------------------------------------

    @staticmethod
    def _target_type(target: str) -> str:
        if target not in ("images", "texts"):
            raise UserInputError(f"unknown target {target!r}: choose images or texts")
        return IMAGE if target == "images" else TEXT

    def _prepare(self, query: Query) -> tuple[np.ndarray, list[QueryEntity], np.ndarray | None]:
        q_enc = self.encode(query)
        entities = self.query_entities(query, q_enc)
        q_ref = self.ranker.refine(q_enc, _kind(query), [e.id for e in entities])
        return q_enc, entities, q_ref

    def filter_rows(self, nt: str, where: Mapping[str, str]) -> np.ndarray:
        return self.ranker.filter_rows(nt, where)


class GraphRanker:
    """The store-free core of graph retrieval: query refinement, seeds, expansion, fusion, filters."""

    def __init__(
        self, state: GraphState, trained: TrainedGnn | None, mode: Mode = "full", exact_max: int = 100_000
    ) -> None:
        self.state = state
        self.exact_max = exact_max
        self.trained = trained
        self.mode = mode
        self._faiss: dict[tuple[str, bool], faiss.Index] = {}
        self._fast: dict[str, QueryRefiner | None] = {}
        if trained is not None and mode != "encoder":
            for kind, nt, rel in (("text", TEXT, REV_MENTIONS), ("image", IMAGE, REV_DEPICTS)):
                self._fast[kind] = QueryRefiner.compile(trained.model, nt, rel)
            self._states_np = [{nt: t.numpy() for nt, t in layer.items()} for layer in state.states]

    def refine(self, q_enc: np.ndarray, kind: str, entity_ids: Sequence[str]) -> np.ndarray | None:
        """The query's refined vector (None in encoder mode): attached to its entities, refined inductively."""
        if self.mode == "encoder" or self.trained is None:
            return None
        fast = self._fast.get(kind)
        if fast is not None:
            epos = self.state.pos[ENTITY]
            rows = [epos[e] for e in dict.fromkeys(entity_ids) if e in epos]
            return fast.refine(q_enc, rows, self._states_np, ENTITY)
        return refine_attached_queries(
            self.trained.model, self.state.states, self.state.pos[ENTITY], q_enc[None], kind, [list(entity_ids)]
        )[0]

    def _index(self, nt: str, refined: bool) -> faiss.Index:
        key = (nt, refined)
        if key not in self._faiss:
            vecs = (self.state.refined_vecs if refined else self.state.encoder_vecs)[nt]
            index: faiss.Index
            if len(vecs) <= self.exact_max:
                index = faiss.IndexFlatIP(vecs.shape[1])
            else:  # the same rule as the workspace's own indexes: exact up to a size, then HNSW
                hnsw = faiss.IndexHNSWFlat(vecs.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
                hnsw.hnsw.efSearch = 128
                index = hnsw
            index.add(np.ascontiguousarray(vecs, dtype=np.float32))
            self._faiss[key] = index
        return self._faiss[key]

    def filter_rows(self, nt: str, where: Mapping[str, str]) -> np.ndarray:
        """Rows of `nt` items that have every `key=value` (an attribute entity `key:value`, or any
        entity by name with `entity=NAME`), directly or through their record."""
        rows: np.ndarray | None = None
        epos = self.state.pos[ENTITY]
        for key, value in where.items():
            name = value if key in ("entity", "entities") else f"{key}:{value}"
            eid = graph_ids.entity_id(name)
            if eid not in epos:
                raise UserInputError(f"nothing in this workspace has {key}={value}{self._filter_hint(key)}")
            members = self.state.membership[nt].getrow(epos[eid]).indices
            rows = members if rows is None else np.intersect1d(rows, members)
        return np.sort(rows) if rows is not None else np.empty(0, np.int64)

    def _filter_hint(self, key: str) -> str:
        prefix = graph_ids.normalize_name(key) + ":"
        values = sorted(e[4 + len(prefix) :] for e in self.state.ids[ENTITY] if e.startswith("ent:" + prefix))
        if values:
            return f" (known {key} values: {', '.join(values[:12])}{', ...' if len(values) > 12 else ''})"
        keys = sorted({e[4:].split(":", 1)[0] for e in self.state.ids[ENTITY] if ":" in e[4:]})
        return f" (known keys: {', '.join(keys[:20])}, or entity=NAME)" if keys else " (try entity=NAME)"

    def rank(
        self,
        q_enc: np.ndarray,
        q_ref: np.ndarray | None,
        entities: Sequence[tuple[str, float]],
        nt: str,
        k: int,
        where: Mapping[str, str] | None,
        kind: str,
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """(ranked (id, score) top-k, seeds (id, dense score)) for one query.

        `q_ref` is None in encoder mode; `entities` are the query's (entity id, link score) pairs,
        `kind` the query modality (`text` or `image`) whose tuned fusion weights apply."""
        use_ref = q_ref is not None
        q = q_ref if q_ref is not None else q_enc
        vecs = self.state.refined_vecs[nt] if use_ref else self.state.encoder_vecs[nt]
        ids_ = self.state.ids[nt]
        params = params_for(self.trained.fusion, kind) if self.trained is not None else FusionParams()
        n_seeds = max(params.seeds, k) if self.mode == "full" else k
        allowed: np.ndarray | None = None
        if where:
            allowed = self.filter_rows(nt, where)
            if len(allowed) == 0:
                return [], []
        if allowed is not None and len(allowed) <= FILTER_EXACT_MAX:
            cand = allowed
            sims = vecs[cand] @ q
        else:
            want = n_seeds if allowed is None else min(len(ids_), n_seeds * 20)
            scores, idx = self._index(nt, use_ref).search(q[None].astype(np.float32), min(want, len(ids_)))
            keep = idx[0] >= 0
            cand, sims = idx[0][keep].astype(np.int64), scores[0][keep]
            if allowed is not None:
                ok = np.isin(cand, allowed)
                cand, sims = cand[ok], sims[ok]
        order = np.argsort(-sims, kind="stable")
        seed_rows, seed_sims = cand[order[:n_seeds]], sims[order[:n_seeds]]
        seeds = [(ids_[r], float(s)) for r, s in zip(seed_rows, seed_sims, strict=True)]
        if self.mode != "full" or self.trained is None:
            return seeds[:k], seeds
        # Full: expansion from the seeds and the query's entities over the walk matrix.
        offset = 0 if nt == IMAGE else len(self.state.ids[IMAGE])
        reached: np.ndarray = np.empty(0, np.int64)
        g_vals: np.ndarray = np.empty(0, np.float32)
        if params.w_graph > 0:
            graph = self.state.graph
            cols, vals = graph.expand_one(*start_entries(graph, seed_rows + offset, seed_sims, entities, params),
                                          hops=params.hops, beam=params.beam, decay=params.decay)
            in_type = (cols >= offset) & (cols < offset + len(ids_))
            reached, g_vals = cols[in_type] - offset, vals[in_type]
            if allowed is not None:
                ok = np.isin(reached, allowed)
                reached, g_vals = reached[ok], g_vals[ok]
            if len(reached) > params.max_reached:
                cut = -np.partition(-g_vals, params.max_reached - 1)[params.max_reached - 1]
                keep = g_vals >= max(cut, 1e-30)
                reached, g_vals = reached[keep], g_vals[keep]
        walked = reached
        shared: np.ndarray | None = None
        if params.w_entity > 0:
            shared = self.state.shared_entities(nt, [list(entities)]).toarray()[0]
            if allowed is not None:
                shared[np.setdiff1d(np.arange(len(shared)), allowed)] = 0.0
            reached = np.union1d(reached, np.flatnonzero(top_mask(shared, params.max_reached)[0]))
        cand_rows = np.union1d(seed_rows, reached)
        walk = np.zeros((1, len(cand_rows)), np.float32)
        if len(g_vals):
            walk[0, np.searchsorted(cand_rows, walked)] = g_vals / max(float(g_vals.max()), 1e-12)
        signals = query_signals(self.state, cand_rows, nt, kind, q[None], q_enc[None], only=params)
        if shared is not None:
            signals.shared = shared[cand_rows][None]
        fused = combine(signals, walk, np.ones_like(walk, bool), params)[0]
        top = np.argsort(-fused, kind="stable")[:k]
        return [(ids_[cand_rows[i]], float(fused[i])) for i in top], seeds


def query_signals(
    state: GraphState,
    rows: np.ndarray,
    nt: str,
    kind: str,
    q_ref: np.ndarray,
    q_enc: np.ndarray,
    twins: np.ndarray | None = None,
    entities: Sequence[Sequence[tuple[str, float]]] | None = None,
    only: FusionParams | None = None,
) -> Signals:
    """The fusion signals of queries (refined `q_ref`, encoder `q_enc`, modality `kind`) against the `nt`
    items at `rows`. `twins[i]`: the row of query i's own item in the collection, -1 for none (an item is
    never evidence for itself); `entities[i]`: query i's (entity id, link score) pairs, for `shared`.
    `only`: compute just the signals these weights use (search); None computes all (tuning)."""
    qt = TEXT if kind == "text" else IMAGE
    nb, vecs = state.neighbours, state.refined_vecs

    def wanted(weight: str) -> bool:
        return only is None or getattr(only, weight) != 0

    return Signals(
        refined=q_ref @ vecs[nt][rows].T,
        encoder=q_enc @ state.encoder_vecs[nt][rows].T if wanted("w_encoder") else np.zeros((len(q_ref), len(rows))),
        hub=nb.hub[(nt, qt)][rows] if wanted("w_hub") else None,
        echo_query=nb.echo(nt, qt, rows, q_ref, vecs[qt], twins) if wanted("w_echo_query") else None,
        echo_target=(nb.echo(nt, nt, rows, q_ref, vecs[nt], twins if nt == qt else None)
                     if wanted("w_echo_target") else None),
        shared=(state.shared_entities(nt, entities)[:, rows].toarray()
                if entities is not None and wanted("w_entity") else None),
    )


def _kind(query: Query) -> str:
    return "text" if query.text is not None else "image"


def open_graph_retriever(
    settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder, mode: str | None = None
) -> RecordRetriever:
    """The retriever `mmkg search/explain`, the API and the explorer use: the one ranking engine
    (retrieval/record_search.py) in mode `full` (default), `gnn` or `encoder`."""
    return RecordRetriever(settings, store, vectors, encoder, mode=mode or "full")
