"""The one search path that `mmkg search` and the HTTP API share, so both return the same hit objects.

No FastAPI here: the CLI imports this module. `Searcher.search` is a thin adapter over the graph
retriever (`open_retriever(...).search(...)` and `Hit.to_json()`); a new ranker is plugged in
here, once, for both callers.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from mmkg.collection import Collection
from mmkg.errors import UserInputError
from mmkg.graph.schema import Label, Rel
from mmkg.retrieval.search import DenseRetriever, Query

TARGETS = ("images", "texts")


class Searcher:
    """Search, explain, similar items and item details over one opened collection.

    Retrievers are built once per mode and kept (the graph state they load is the expensive part);
    calls are serialised, because the retrievers and the embedded store are not thread-safe.
    """

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._retrievers: dict[str | None, Any] = {}
        self._lock = threading.RLock()
        self._hit_maker: Any = None

    def retriever(self, mode: str | None = None) -> Any:
        from mmkg.retrieval.record_search import open_retriever  # torch: loaded on the first search

        with self._lock:
            if mode not in self._retrievers:
                col = self.collection
                self._retrievers[mode] = open_retriever(col.settings, col.store, col.vectors, col.encoder, mode)
            return self._retrievers[mode]

    def search(
        self,
        query: Query,
        k: int = 10,
        target: str = "images",
        mode: str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The hits, best first, as `mmkg search --json` prints them under `results`."""
        with self._lock:
            hits = self.retriever(mode).search(query, k=k, target=target, where=dict(where) if where else None)
            return [h.to_json() for h in hits]

    def answer(
        self,
        query: Query,
        label: str,
        k: int = 10,
        target: str = "images",
        mode: str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """What `mmkg search --json` prints and `POST /search` returns: the hits, the query's words that no record
        states, and whether the query photo is unlike every image of the collection (then the hits are only near:
        `retrieval.search.unmatched_note`, `UNLIKE_NOTE`)."""
        with self._lock:
            hits = self.search(query, k=k, target=target, mode=mode, where=where)
            retriever = self.retriever(mode)
            return {"query": label, "target": target, "results": hits,
                    "unmatched_words": retriever.unmatched_words(query),
                    "unlike_collection": retriever.unlike_collection(query)}

    def explain(self, query: Query, result_id: str, mode: str | None = None) -> dict[str, Any]:
        with self._lock:
            return dict(self.retriever(mode).explain(query, result_id).to_json())

    def similar(self, item_id: str, k: int = 10, target: str | None = None) -> list[dict[str, Any]]:
        """The items nearest to a stored one by its stored vector (nothing is re-encoded), itself left out."""
        if k < 1:
            raise UserInputError("k must be at least 1")
        with self._lock:
            node = self.collection.store.get_nodes([item_id]).get(item_id)
            if node is None or node.label not in (Label.IMAGE, Label.TEXT):
                raise LookupError(f"no image or text with id {item_id!r}")
            own = self.collection.vectors.images if node.label is Label.IMAGE else self.collection.vectors.texts
            if item_id not in own:
                raise LookupError(f"{item_id!r} has no stored vector")
            target = target or ("images" if node.label is Label.IMAGE else "texts")
            if target not in TARGETS:
                raise UserInputError(f"unknown target {target!r}: choose images or texts")
            index = self.collection.vectors.images if target == "images" else self.collection.vectors.texts
            scored = [(i, s) for i, s in index.search(own.get([item_id]), k + 1)[0] if i != item_id][:k]
            hits = self._dense().hits(Query(text=f"similar to {item_id}"), scored, [])
            return [h.to_json() for h in hits]

    def _dense(self) -> Any:
        """Turns (id, score) pairs into hits the way every retriever does (record, attributes, path or text)."""
        if self._hit_maker is None:
            col = self.collection
            self._hit_maker = DenseRetriever(col.settings, col.store, col.vectors, col.encoder)
        return self._hit_maker

    def item(self, item_id: str) -> dict[str, Any]:
        """One node as an application shows it: its properties, its record, its entities."""
        with self._lock:
            store = self.collection.store
            node = store.get_nodes([item_id]).get(item_id)
            if node is None:
                raise LookupError(f"no item with id {item_id!r}")
            out: dict[str, Any] = {"id": node.id, "label": node.label.value, "props": node.props}
            if node.label in (Label.IMAGE, Label.TEXT):
                holders = sorted(n.id for _, n in store.neighbors(node.id, [Rel.HAS], "in"))
                out["records"] = holders
                entities = store.neighbors(node.id, [Rel.DEPICTS, Rel.MENTIONS], "out")
                out["entities"] = [
                    {"id": n.id, "name": n.props.get("name", n.id), "rel": e.type.value, **e.props} for e, n in entities
                ]
            elif node.label is Label.RECORD:
                out["members"] = [
                    {"id": n.id, "label": n.label.value} for _, n in store.neighbors(node.id, [Rel.HAS], "out")
                ]
            return out

