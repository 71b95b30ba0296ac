"""The `gnn` and `full` evaluation modes, beside the protocol's `encoder` mode.

* `gnn`: refined vectors, nearest neighbours only. Corpus items are refined in the graph; each query
  (a caption, an image) is refined inductively, attached to the entities the query linker finds for
  it, exactly as `mmkg search` refines a new query.
* `full`: refined vectors + graph expansion + fusion (retrieval/fusion.py), with the fusion weights
  saved by `mmkg train gnn` (tuned on a split of the training data, never on the data evaluated).

The graph is the protocol's no-leakage graph: no DESCRIBES or HAS link between a test caption and
its image. The model and the fusion weights come from training; nothing is fitted here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmkg.encoders.base import Encoder
from mmkg.evaluation.protocol import protocol_figures
from mmkg.gnn.data import build_hetero
from mmkg.gnn.refine import ENTITY, IMAGE, TEXT, TrainedGnn, refine_attached_queries
from mmkg.graph.store import GraphStore
from mmkg.retrieval.fusion import FusionParams, Signals, combine, fuse, params_for, search_weights, walk_scores
from mmkg.retrieval.graph_retriever import GraphState, query_signals
from mmkg.retrieval.query_entities import QueryLinker
from mmkg.retrieval.vectors import Vectors
from mmkg.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ModeInputs:
    """Everything the three modes need for one collection of images and captions: the retriever's own
    `GraphState` (refined vectors, walk matrix) and the queries, refined as search refines them."""

    state: GraphState
    image_rows: np.ndarray
    text_rows: np.ndarray
    img_enc: np.ndarray
    txt_enc: np.ndarray
    img_ref: np.ndarray
    txt_ref: np.ndarray
    qt_ref: np.ndarray
    qt_entities: list[list[tuple[str, float]]]
    qi_ref: np.ndarray
    qi_entities: list[list[tuple[str, float]]]

    @classmethod
    def build(
        cls,
        trained: TrainedGnn,
        store: GraphStore,
        vectors: Vectors,
        image_ids: Sequence[str],
        text_ids: Sequence[str],
        captions: Sequence[str],
        tag_top_k: int = 5,
        tag_min_score: float = 0.2,
    ) -> ModeInputs:
        state = GraphState.compute(trained, build_hetero(store, vectors))
        linker = QueryLinker(store, vectors.entities)
        image_rows = np.asarray([state.pos[IMAGE][i] for i in image_ids], dtype=np.int64)
        text_rows = np.asarray([state.pos[TEXT][t] for t in text_ids], dtype=np.int64)
        img_enc = state.encoder_vecs[IMAGE][image_rows]
        txt_enc = state.encoder_vecs[TEXT][text_rows]
        qt_entities = [[(e.id, e.score) for e in linker.for_text(c)] for c in captions]
        qi_entities = [[(e.id, e.score) for e in linker.for_vector(v, tag_top_k, tag_min_score)] for v in img_enc]
        epos = state.pos[ENTITY]
        qt_ref = refine_attached_queries(
            trained.model, state.states, epos, txt_enc, "text", [[e for e, _ in ents] for ents in qt_entities]
        )
        qi_ref = refine_attached_queries(
            trained.model, state.states, epos, img_enc, "image", [[e for e, _ in ents] for ents in qi_entities]
        )
        return cls(
            state=state,
            image_rows=image_rows,
            text_rows=text_rows,
            img_enc=img_enc,
            txt_enc=txt_enc,
            img_ref=state.refined_vecs[IMAGE][image_rows],
            txt_ref=state.refined_vecs[TEXT][text_rows],
            qt_ref=qt_ref,
            qt_entities=qt_entities,
            qi_ref=qi_ref,
            qi_entities=qi_entities,
        )

    def dense_scores(self, direction: str, refined: bool) -> np.ndarray:
        """Queries x targets similarities: t2i is captions x images, i2t images x captions."""
        if direction == "t2i":
            return self.qt_ref @ self.img_ref.T if refined else self.txt_enc @ self.img_enc.T
        return self.qi_ref @ self.txt_ref.T if refined else self.img_enc @ self.txt_enc.T

    def _direction(self, direction: str) -> tuple[np.ndarray, np.ndarray, list[list[tuple[str, float]]], np.ndarray,
                                                   np.ndarray, np.ndarray, str, str]:
        """(query refined, query encoder, query entities, target refined, target encoder, target graph rows,
        target kind, query kind) of one direction."""
        n_img = len(self.state.ids[IMAGE])
        if direction == "t2i":
            return (self.qt_ref, self.txt_enc, self.qt_entities, self.img_ref, self.img_enc, self.image_rows,
                    IMAGE, TEXT)
        return (self.qi_ref, self.img_enc, self.qi_entities, self.txt_ref, self.txt_enc, self.text_rows + n_img,
                TEXT, IMAGE)

    def signals(self, direction: str) -> Signals:
        """The fusion signals of every query against every target. Each query is new to the collection:
        its own node (a test caption, a test image) is left out of the neighbourhoods it is scored with."""
        q_ref, q_enc, ents, _, _, _, nt, qt = self._direction(direction)
        targets = self.image_rows if nt == IMAGE else self.text_rows
        twins = self.text_rows if qt == TEXT else self.image_rows
        return query_signals(self.state, targets, nt, "text" if qt == TEXT else "image", q_ref, q_enc, twins, ents)

    def walk(self, direction: str, params: FusionParams, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """(walk scores, seed mask) of every query against every target, as `fusion.walk_scores` gives them."""
        q_ref, _, ents, t_ref, _, rows, _, _ = self._direction(direction)
        walk = np.zeros((len(q_ref), len(t_ref)), np.float32)
        seeds = np.zeros((len(q_ref), len(t_ref)), bool)
        for lo in range(0, len(q_ref), chunk):
            hi = min(len(q_ref), lo + chunk)
            walk[lo:hi], seeds[lo:hi] = walk_scores(self.state.graph, rows, q_ref[lo:hi] @ t_ref.T, ents[lo:hi], params)
        return walk, seeds

    def full_scores(self, direction: str, params: FusionParams) -> np.ndarray:
        return combine(self.signals(direction), *self.walk(direction, params), params)


def graph_mode_figures(
    trained: TrainedGnn,
    store: GraphStore,
    vectors: Vectors,
    image_ids: Sequence[str],
    text_ids: Sequence[str],
    caption_owner: Sequence[int] | np.ndarray,
    captions: Sequence[str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """`{"gnn": figures, "full": figures}` for a protocol graph (figures shaped like the `encoder` mode's).

    `image_ids`/`text_ids` are the store ids of the test images and captions, `caption_owner[t]` the
    index in `image_ids` of caption t's image; `captions` (the caption strings, read from the store
    when omitted) are what the query linker parses, as it would parse a typed query.
    """
    owner = np.asarray(caption_owner, dtype=np.int64)
    if captions is None:
        nodes = store.get_nodes(list(text_ids))
        captions = [str(nodes[t].props.get("text", "")) for t in text_ids]
    s = settings or Settings()
    inputs = ModeInputs.build(trained, store, vectors, image_ids, text_ids, captions, s.tag_top_k, s.tag_min_score)
    out: dict[str, Any] = {
        "gnn": protocol_figures(inputs.dense_scores("t2i", True), inputs.dense_scores("i2t", True), owner),
    }
    t2i = inputs.full_scores("t2i", params_for(trained.fusion, "text"))
    i2t = inputs.full_scores("i2t", params_for(trained.fusion, "image"))
    out["full"] = protocol_figures(t2i, i2t, owner)
    out["full"]["fusion"] = dict(trained.fusion)
    return out


def catalog_figures(
    trained: TrainedGnn | None,
    settings: Settings,
    encoder: Encoder,
    data_dir: Path,
    home: Path,
    relevance_keys: Sequence[str] = ("articleType", "baseColour"),
    query_fraction: float = 0.2,
    max_products: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Catalog retrieval (the fashion set): mAP and NDCG@10 of the three modes (`encoder` alone without a GNN).

    Products are split (seeded) into a corpus, ingested into a fresh workspace at `home`, and
    held-out queries that are NOT in the graph. A query is a held-out product's name (text->image) or
    its photo (image->image); a corpus image is relevant when its product has the same values of
    `relevance_keys` (articleType and baseColour). Queries with no relevant corpus item are left out.

    The held-out queries are split again (seeded) into dev and test halves. `full` reports two
    settings: `full` with the fusion weights tuned on the catalog's dev queries (mAP), and
    `full_train_weights` with the weights `mmkg train gnn` tuned on its training split. Every figure
    is measured on the test half only.
    """
    from mmkg.evaluation.metrics import mean_average_precision, ndcg_at_k
    from mmkg.graph.memory import MemoryGraphStore
    from mmkg.ingest.catalog import CatalogSource
    from mmkg.ingest.images import load_image
    from mmkg.ingest.pipeline import Ingestor
    from mmkg.ingest.records import Record
    from mmkg.workspace import Workspace

    source = CatalogSource.open(Path(data_dir))
    records = [r for r in source.records() if isinstance(r, Record) and r.images and r.texts]
    if max_products:
        records = records[:max_products]
    rng = np.random.default_rng(seed)
    is_query = rng.random(len(records)) < query_fraction
    corpus = [r for r, q in zip(records, is_query, strict=True) if not q]
    queries = [r for r, q in zip(records, is_query, strict=True) if q]

    def key(rec: Record) -> tuple[str, ...] | None:
        attrs = dict(rec.attributes)
        vals = tuple(attrs.get(k, "") for k in relevance_keys)
        return vals if all(vals) else None

    ws = settings.replace(home=home, store="memory")
    Workspace(ws.home).ensure()
    vectors = Vectors.open(ws, encoder.dim, encoder.fingerprint)
    with MemoryGraphStore(Workspace(ws.home).graph_dir) as store:
        Ingestor(ws, store, vectors, encoder).run(corpus, source.name, total=len(corpus), progress=progress)
        from mmkg.graph import ids as graph_ids
        from mmkg.graph.schema import Rel

        corpus_ids: list[str] = []
        corpus_keys: list[tuple[str, ...] | None] = []
        for rec in corpus:
            has = store.neighbors(graph_ids.record_id(source.name, rec.id), [Rel.HAS], "out")
            for _, node in has:
                if node.label.value == IMAGE:
                    corpus_ids.append(node.id)
                    corpus_keys.append(key(rec))
                    break
        qkeys = [key(r) for r in queries]
        rel = np.array([[qk is not None and qk == ck for ck in corpus_keys] for qk in qkeys], dtype=bool)
        keep: np.ndarray = np.asarray(rel.any(axis=1), dtype=bool)
        queries = [q for i, q in enumerate(queries) if bool(keep[i])]
        rel = rel[keep]
        q_txt = encoder.encode_texts([q.texts[0].text for q in queries])
        q_img = encoder.encode_images(
            [load_image(q.images[0], settings.max_image_bytes, settings.max_image_pixels)[0] for q in queries]
        )
        state = GraphState.compute(trained, build_hetero(store, vectors))
        linker = QueryLinker(store, vectors.entities)
        rows = np.asarray([state.pos[IMAGE][i] for i in corpus_ids], dtype=np.int64)
        out: dict[str, Any] = {}
        epos = state.pos[ENTITY]
        dev = rng.random(len(queries)) < 0.5
        test = ~dev
        for direction, q_enc, kind in (("text->image", q_txt, "text"), ("image->image", q_img, "image")):
            scores = {"encoder": q_enc[test] @ state.encoder_vecs[IMAGE][rows].T}
            if trained is not None:
                if kind == "text":
                    ents = [[(e.id, e.score) for e in linker.for_text(q.texts[0].text)] for q in queries]
                else:
                    ents = [
                        [(e.id, e.score) for e in linker.for_vector(v, settings.tag_top_k, settings.tag_min_score)]
                        for v in q_enc
                    ]
                q_ref = refine_attached_queries(
                    trained.model, state.states, epos, q_enc, kind, [[e for e, _ in es] for es in ents]
                )
                signals = query_signals(state, rows, IMAGE, kind, q_ref, q_enc, entities=ents)
                part = {name: [e for e, keep in zip(ents, mask, strict=True) if keep] for name, mask in
                        (("dev", dev), ("test", test))}

                def walk(p: FusionParams, ents_dev: list[list[tuple[str, float]]] = part["dev"],
                         dev_refined: np.ndarray = signals.refined[dev]) -> tuple[np.ndarray, np.ndarray]:
                    return walk_scores(state.graph, rows, dev_refined, ents_dev, p)

                def dev_map(fused: np.ndarray) -> float:
                    return mean_average_precision(fused, rel[dev])

                tuned, _ = search_weights(signals.take(dev), walk, dev_map)
                test_signals = signals.take(test)
                scores["gnn"] = test_signals.refined
                scores["full"] = fuse(state.graph, rows, test_signals, part["test"], tuned)
                scores["full_train_weights"] = fuse(state.graph, rows, test_signals, part["test"],
                                                    params_for(trained.fusion, kind))
                out.setdefault("fusion", {})[direction] = tuned.to_json()
            for mode, sc in scores.items():
                out.setdefault(mode, {})[direction] = {
                    "mAP": round(mean_average_precision(sc, rel[test]), 2),
                    "ndcg@10": round(ndcg_at_k(sc, rel[test], 10), 2),
                }
        out["meta"] = {"corpus": len(corpus_ids), "queries": len(queries), "test_queries": int(test.sum()),
                       "relevance": list(relevance_keys)}
    return out
