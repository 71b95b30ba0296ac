"""Search over records: `Retriever.search` on the one ranking engine, with explanations that tell the truth.

A hit is a record (a product, a case, a photo with its captions) shown through its best item of the target
kind (its image for `images`, its best-matching text for `texts`) and titled by the text that names it (a
product's name, a case's diagnosis); a record whose image, or whose texts, are identical to one already listed
is skipped (two cases with one diagnosis are two cases; two listings of one product are one). Each hit lists the
signals that scored it with their contributions (weight x standardised score), and the paths behind the
contributing ones:

* attribute: `query mentions *white* <-DEPICTS- image *10003.jpg*` (a predicted tag says so);
* graph: `query -SIMILAR-> record *seed* -SHARES-> entity *articleType:sports shoes*`, the seed being one
  of the query's best records whose entities (or image, or texts) the hit shares.

SIMILAR (vector similarity) and SHARES (both records state the entity) are derived steps; every other
step is an edge of the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from mmkg.encoders.base import Encoder
from mmkg.encoders.colour import colour_descriptor
from mmkg.errors import UserInputError
from mmkg.graph import ids as graph_ids
from mmkg.graph.store import GraphStore
from mmkg.index.vectors import Vectors
from mmkg.ingest.pipeline import tag_threshold
from mmkg.retrieval.query_entities import QueryEntity, QueryLinker
from mmkg.retrieval.ranker import (
    GRAPH_SIGNALS,
    SIGNALS,
    QuerySet,
    RankingConfig,
    RankWeights,
    RecordRanker,
    Scored,
    for_unlike,
)
from mmkg.retrieval.records import RecordTable, record_words
from mmkg.retrieval.search import Explanation, Hit, Query, Retriever, Step, Target
from mmkg.settings import Settings
from mmkg.workspace import Workspace, atomic_write_bytes

log = logging.getLogger(__name__)

RANKING_FILE = "ranking.json"
TABLE_VERSION = 12
"""Bumped when what a cached table holds changes (4: BM25 leaves out what a text negates; 5: BM25 knows the facet
values, which a query adjective reaches through a synonym; 6: the attribute probe; 7: BM25 knows the facet
values' stemmed words, which order a Chinese word's senses; 8: BM25 reads a hyphenated compound closed up too; 9:
and two words closed up where the collection writes them as one; 10: the images' colour descriptors; 11:
the table keeps which images have one, `has_colour`; 12: BM25 reads an irregular plural as its singular, and
knows the facet values whole)."""
MODES = ("full", "gnn", "encoder")


def image_query_entities(table: RecordTable, linker: QueryLinker, vectors: np.ndarray, settings: Settings
                         ) -> list[list[QueryEntity]]:
    """Per query photo, the attribute values the collection's probe predicts for it (retrieval/attribute_probe.py),
    and its zero-shot tags where the collection's own tags are trusted (`tag_threshold`); a value both name keeps
    its predicted probability."""
    threshold = tag_threshold(settings)  # an image query's tags are trusted no more than the collection's
    out = []
    for vec, predicted in zip(vectors, table.predicted_attributes(vectors), strict=True):
        found = {eid: QueryEntity(eid, name, "predicts", p) for eid, name, p in predicted}
        tags = [] if threshold is None else linker.for_vector(vec, settings.tag_top_k, threshold)
        out.append(list(found.values()) + [e for e in tags if e.id not in found])
    return out


def ranking_path(settings: Settings) -> Path:
    """Where `mmkg tune` saves the fusion weights that search uses."""
    return Workspace(Path(settings.home)).models_dir / RANKING_FILE


def open_table(settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder, cache: bool = True
               ) -> RecordTable:
    """The workspace's record table, cached on disk per state of the graph: its revision (bumped by every write,
    an edit that keeps the counts included), node and edge counts, and the encoder."""
    nodes, edges = store.counts()
    revision = Workspace(Path(settings.home)).revision()
    key = hashlib.sha256(json.dumps({"v": TABLE_VERSION, "enc": encoder.fingerprint, "n": nodes, "e": edges,
                                     "rev": revision, "vec": [len(i) for i in vectors]},
                                    sort_keys=True).encode()).hexdigest()[:24]
    path = Workspace(Path(settings.home)).index_dir / "records.pkl"
    if cache and path.is_file():
        try:
            with path.open("rb") as fh:
                saved_key, table = pickle.load(fh)  # our own workspace file, written below
            if saved_key == key:
                return table  # type: ignore[no-any-return]
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
            log.warning("rebuilding the record table (%s)", exc)
    table = RecordTable.build(store, vectors)
    _ = table.attribute_probe  # trained now, so that the cache holds it
    if cache:
        try:
            atomic_write_bytes(path, pickle.dumps((key, table), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError as exc:  # a read-only workspace still answers; it rebuilds next time
            log.warning("could not cache the record table in %s: %s", path, exc)
    return table


class RecordRetriever(Retriever):
    """Ranks the workspace's records for a text or image query. Modes: `full` (every signal), `gnn` (the
    graph-refined vectors alone), `encoder` (the encoder's vector of the target kind alone)."""

    def __init__(self, settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder,
                 mode: str = "full", config: RankingConfig | None = None, table: RecordTable | None = None) -> None:
        if mode not in MODES:
            raise UserInputError(f"unknown mode {mode!r}: choose {', '.join(MODES)}")
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self.mode = mode
        self.table = table if table is not None else open_table(settings, store, vectors, encoder)
        self.ranker = RecordRanker(self.table, config or RankingConfig.load(ranking_path(settings)))
        for kind in ("text", "image"):  # a large collection's candidate indexes: built now, not on a user's search
            self.ranker.prepare_search(self.weights(kind, "images"))
        self.linker = QueryLinker(store, vectors.entities, self.table.bm25.states)
        self._last_photo: tuple[Image.Image, np.ndarray] | None = None
        """The last query photo and its vector: `unlike_collection` asks about the photo just searched."""

    # --- public API -------------------------------------------------------------------------

    def search(self, query: Query, k: int = 10, target: Target = "images",
               where: Mapping[str, str] | None = None) -> list[Hit]:
        if k < 1:
            raise UserInputError("k must be at least 1")
        if target not in ("images", "texts"):
            raise UserInputError(f"unknown target {target!r}: choose images or texts")
        if len(self.table) == 0:
            raise UserInputError("the workspace holds no records yet: run `mmkg ingest PATH` first")
        qs, entities = self.prepare(query)
        return self.ranked(qs, entities, k, target, where)

    def ranked(self, qs: QuerySet, entities: list[QueryEntity], k: int, target: Target,
               where: Mapping[str, str] | None = None) -> list[Hit]:
        """The hits of a query already prepared (`prepare`): what `search` does once the query is encoded."""
        weights = self.query_weights(qs, target)
        rows = self.candidates(target, where)
        scored = self.ranker.search_scores(qs, weights, within=rows, least=k)
        rows = rows[np.isfinite(scored.fused[0][rows])]  # on a large collection only candidates are scored
        order = rows[np.argsort(-scored.fused[0][rows], kind="stable")]
        hits: list[Hit] = []
        shown: set[str] = set()
        for row in order:
            hit = self._hit(int(row), qs, scored, target)
            keys = {hit.id, self._reads(int(row)) or hit.id}
            if keys & shown:  # the same image, or a record that reads the same, is shown once
                continue
            shown |= keys
            hit.explanation = self.explain_row(int(row), qs, scored, weights, entities)
            hits.append(hit)
            if len(hits) == k:
                break
        return hits

    def unmatched_words(self, query: Query) -> list[str]:
        return [] if query.text is None else self.table.bm25.unmatched_words(query.text)

    def unlike_collection(self, query: Query) -> bool:
        if query.image is None:
            return False
        return bool(self.ranker.unlike(QuerySet("image", self._photo_vector(query.image)))[0])

    def _photo_vector(self, image: Image.Image) -> np.ndarray:
        if self._last_photo is None or self._last_photo[0] is not image:
            self._last_photo = (image, self.encoder.encode_images([image]))
        return self._last_photo[1]

    def explain(self, query: Query, result_id: str, target: Target | None = None) -> Explanation:
        """Why one record (by record id, source id, or the id of one of its images or texts) scores as it does."""
        row = self.row_of(result_id)
        qs, entities = self.prepare(query)
        nt: Target = target or ("images" if self.table.has_image[row] else "texts")
        weights = self.query_weights(qs, nt)
        scored = self.ranker.search_scores(qs, weights, within=np.array([row]), least=1)
        return self.explain_row(row, qs, scored, weights, entities)

    def prepare(self, query: Query) -> tuple[QuerySet, list[QueryEntity]]:
        """The query as the ranker takes it: its vector, its text, the entities it links to."""
        if query.text is not None:
            vec = self.encoder.encode_texts([query.text])
            entities = self.linker.for_text(query.text)
            return QuerySet("text", vec, [query.text], [[(e.id, e.score) for e in entities]]), entities
        assert query.image is not None
        vec = self._photo_vector(query.image)
        entities = image_query_entities(self.table, self.linker, vec, self.settings)[0]
        return QuerySet("image", vec, None, [[(e.id, e.score) for e in entities]],
                        colour_descriptor(query.image)[None, :]), entities

    def weights(self, kind: str, target: str) -> RankWeights:
        w = self.ranker.weights_for(kind)
        if self.mode == "encoder":
            return w.only("image" if target == "images" else "text")
        if self.mode == "gnn":
            return replace(w, gnn=1.0).only("gnn")
        return w

    def query_weights(self, qs: QuerySet, target: str) -> RankWeights:
        """The weights this one query scores with, as the ranker applies them: a photo unlike a collection that states
        attributes is ranked by its look (`for_unlike`), and its explanation then shows that alone."""
        w = self.weights(qs.kind, target)
        return for_unlike(w) if self.ranker.ranked_by_look(qs)[0] else w

    def candidates(self, target: str, where: Mapping[str, str] | None) -> np.ndarray:
        t = self.table
        mask = t.has_image.copy() if target == "images" else t.has_text.copy()
        for key, value in (where or {}).items():
            name = value if key in ("entity", "entities") else f"{key}:{value}"
            rows = t.rows_with(graph_ids.entity_id(name))
            if len(rows) == 0:
                raise UserInputError(f"nothing in this workspace has {key}={value}{self._filter_hint(key)}")
            keep = np.zeros(len(t), bool)
            keep[rows] = True
            mask &= keep
        return np.flatnonzero(mask)

    def row_of(self, result_id: str) -> int:
        t = self.table
        if result_id in t.pos:
            return t.pos[result_id]
        for i, name in enumerate(t.names):
            if name == result_id:
                return i
        for member, item_ids in ((t.rec_image, t.image_ids), (t.rec_text, t.text_ids)):
            if result_id in item_ids:
                col = item_ids.index(result_id)
                owners = member[:, col].nonzero()[0]
                if len(owners):
                    return int(owners[0])
        raise UserInputError(f"no record, image or text with id {result_id!r} in this workspace")

    # --- hits and explanations ---------------------------------------------------------------

    def _reads(self, row: int) -> str:
        """What the record says, all its texts, as a key: records that read the same are shown once."""
        t = self.table
        return " | ".join(sorted(" ".join(t.text_strings[j].casefold().split()) for j in t.texts_of(row)))

    def _hit(self, row: int, qs: QuerySet, scored: Scored, target: str) -> Hit:
        t = self.table
        q = qs.vectors[0]
        attrs = list(t.attributes[row])
        if target == "images":
            imgs = t.images_of(row)
            best = max(imgs, key=lambda j: float(t.image_vecs[j] @ q))
            return Hit(id=t.image_ids[best], score=float(scored.fused[0][row]), kind="image",
                       path=t.image_paths[best], record=t.ids[row], attributes=attrs, title=t.title(row))
        texts = t.texts_of(row)
        best = max(texts, key=lambda j: float(t.text_vecs[j] @ q))
        return Hit(id=t.text_ids[best], score=float(scored.fused[0][row]), kind="text", text=t.text_strings[best],
                   record=t.ids[row], attributes=attrs, title=t.title(row))

    def explain_row(self, row: int, qs: QuerySet, scored: Scored, weights: RankWeights,
                    entities: list[QueryEntity]) -> Explanation:
        t = self.table
        contributions = {s: round(float(getattr(weights, s) * scored.signals[s][0][row]), 4)
                         for s in SIGNALS if getattr(weights, s) and s in scored.signals}
        groups: list[tuple[float, list[list[Step]]]] = []  # (what the signal lent, its paths): the most first
        shared: list[str] = []
        query_name = "query " + (repr(qs.texts[0]) if qs.texts else "image")
        if contributions.get("attribute", 0.0) > 0:
            stated = set(t.rec_entity[row].indices)
            tagged = set(t.rec_tag[row].indices)
            found = [(ent, t.entity_pos[ent.id]) for ent in entities if ent.id in t.entity_pos]
            found = [(ent, col) for ent, col in found if col in stated or col in tagged]
            found.sort(key=lambda ec: -ec[0].score * float(t.idf[ec[1]]))  # as `entity_share` weighs them
            shared = [ent.name for ent, _ in found]
            groups.append((contributions["attribute"], [self._entity_path(query_name, ent, row, col not in stated)
                                                        for ent, col in found]))
        contradicted: list[tuple[str, list[str]]] = []
        if "attribute" in contributions and qs.kind == "text" and qs.entities:
            contradicted = self.ranker.contradictions(qs.entities[0], row)
        graph = sum(max(contributions.get(s, 0.0), 0.0) for s in GRAPH_SIGNALS)
        if graph > 0 and scored.seeds.shape[1]:
            groups.append((graph, self._seed_paths(query_name, row, scored, contributions)))
        paths = [p for _, group in sorted(groups, key=lambda g: -g[0]) for p in group]
        lexical = []
        if contributions.get("lexical", 0.0) > 0 and qs.texts:
            lexical = t.bm25.matched_terms(qs.texts[0], record_words([t.text_strings[j] for j in t.texts_of(row)],
                                                                     t.attributes[row]))
        unique: list[list[Step]] = []
        for p in paths:
            if p not in unique:
                unique.append(p)
        return Explanation(shared_entities=shared, paths=unique, signals=contributions, matched_words=lexical,
                           contradicted=contradicted)

    def _entity_path(self, query_name: str, ent: QueryEntity, row: int, predicted: bool) -> list[Step]:
        t = self.table
        name = ent.name + (f" ({ent.via_how} {ent.via})" if ent.via else "")
        name += f" (predicted from the photo, {ent.score:.0%})" if ent.how == "predicts" else ""
        name += " (predicted tag)" if predicted else ""
        start = Step("query", "Query", query_name, ent.how.upper(), True)
        if t.has_image[row] and (predicted or t.attribute_entity[t.entity_pos[ent.id]]):
            j = t.images_of(row)[0]
            return [start, Step(ent.id, "Entity", name, "DEPICTS", False),
                    Step(t.image_ids[j], "Image", Path(t.image_paths[j]).name)]
        texts = t.texts_of(row)
        words = ent.name.split(":", 1)[-1].casefold()
        j = next((j for j in texts if words in t.text_strings[j].casefold()), texts[0] if texts else None)
        if j is None:
            return [start, Step(ent.id, "Entity", name, "HAS", False), Step(t.ids[row], "Record", t.names[row])]
        text = t.text_strings[j]
        return [start, Step(ent.id, "Entity", name, "MENTIONS", False),
                Step(t.text_ids[j], "Text", _short(text))]

    def _seed_paths(self, query_name: str, row: int, scored: Scored, contributions: dict[str, float],
                    most: int = 2) -> list[list[Step]]:
        """The seeds that lent this record the most graph score, and what it shares with each."""
        t = self.table
        seeds, weights = scored.seeds[0], scored.seed_weights[0]
        order = np.argsort(-weights)
        mine = set(t.rec_entity[row].indices)
        out: list[list[Step]] = []
        # Seeds that read the same (a catalog's repeated product) are shown once, and a seed titled as the hit not
        # at all: "Solid Black Belts -SHARES-> black belt <-SHARES- Solid Black Belts" explains nothing.
        shown = {t.title(row)}
        for j in order:
            seed = int(seeds[j])
            if seed == row or t.title(seed) in shown:
                continue
            shown.add(t.title(seed))
            start = Step("query", "Query", query_name, "SIMILAR", True)
            seed_step = Step(t.ids[seed], "Record", _short(t.title(seed)), "SHARES", True)
            common = [c for c in t.rec_entity[seed].indices if c in mine]
            if contributions.get("graph_entity", 0.0) > 0 and common:
                best = max(common, key=lambda c: float(t.idf[c]))
                out.append([start, seed_step, Step(t.entity_ids[best], "Entity", t.entity_names[best], "SHARES",
                                                   False), Step(t.ids[row], "Record", _short(t.title(row)))])
            elif contributions.get("graph_image", 0.0) > 0 and t.has_image[seed] and t.has_image[row]:
                sim = float(t.record_image_vecs[seed] @ t.record_image_vecs[row])
                out.append([start, Step(t.ids[seed], "Record", _short(t.title(seed)), f"LOOKS_LIKE {sim:.2f}", True),
                            Step(t.ids[row], "Record", _short(t.title(row)))])
            elif contributions.get("graph_text", 0.0) > 0 and t.has_text[seed] and t.has_text[row]:
                sim = float(t.record_text_vecs[seed] @ t.record_text_vecs[row])
                out.append([start, Step(t.ids[seed], "Record", _short(t.title(seed)), f"READS_LIKE {sim:.2f}", True),
                            Step(t.ids[row], "Record", _short(t.title(row)))])
            if len(out) == most:
                break
        return out

    def _filter_hint(self, key: str) -> str:
        prefix = "ent:" + graph_ids.normalize_name(key) + ":"
        values = sorted(e[len(prefix):] for e in self.table.entity_ids if e.startswith(prefix))
        if values:
            return f" (known {key} values: {', '.join(values[:12])}{', ...' if len(values) > 12 else ''})"
        keys = sorted({e[4:].split(":", 1)[0] for e in self.table.entity_ids if ":" in e[4:]})
        return f" (known keys: {', '.join(keys[:20])}, or entity=NAME)" if keys else " (try entity=NAME)"


def _short(text: str, n: int = 60) -> str:
    """`text` on one line of at most `n` characters: a case's findings span several lines, and an explanation
    path is read as one."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def open_retriever(settings: Settings, store: GraphStore, vectors: Vectors, encoder: Encoder,
                   mode: str | None = None) -> RecordRetriever:
    """The retriever `mmkg search/explain`, the API and the explorer use, in mode `full` (default), `gnn` or
    `encoder`."""
    return RecordRetriever(settings, store, vectors, encoder, mode=mode or "full")
