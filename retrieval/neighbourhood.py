"""The collection's similarity neighbourhoods: what `full` mode adds to the typed graph.

For every image and text of a collection, and for each kind of item (images, texts), the
retriever keeps the item's nearest items of that kind (a kNN graph over the refined vectors, built
once per state of the graph with FAISS). Two fusion signals come from it (retrieval/fusion.py):

* `hub(c)`: the mean similarity of candidate c to its `HUB_K` nearest items of the *query's*
  modality. An item close to everything ("a hub") wins many queries by default; subtracting its
  hubness is cross-domain similarity local scaling (CSLS, Lample et al. 2018).
* `echo(q, c)`: how similar the query is to c's nearest neighbours of one kind (softmax-weighted by
  their closeness to c). With the query's own modality as the bank it asks "does the query look
  like what this image is usually described as?"; with the target's modality it asks "does the
  query also match this caption's near-duplicates?" (database-side augmentation).

A query that is itself an item of the collection (an image of it, a caption of it) is never its
own evidence: its row is left out of the neighbour lists it is scored with (`twin`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import faiss
import numpy as np

HUB_K = 20
"""Neighbours averaged into an item's hubness."""
ECHO_M = 3
"""Neighbours an echo listens to (one more is kept, to stand in for a query's twin)."""
ECHO_TEMPERATURE = 0.05
KINDS = ("Image", "Text")
EXACT_MAX = 20_000
"""Banks up to this size are searched exactly; larger ones through HNSW (approximate lists are enough here)."""


def knn(items: np.ndarray, bank: np.ndarray, k: int, exact_max: int, same: bool) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, rows) of each item's k nearest bank rows by inner product, best first.

    `same`: items and bank are the same set, so an item is not its own neighbour."""
    k_eff = min(k + int(same), len(bank))
    if k_eff == 0 or len(items) == 0:
        return np.zeros((len(items), 0), np.float32), np.zeros((len(items), 0), np.int64)
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    index: faiss.Index
    if len(bank) <= exact_max:
        index = faiss.IndexFlatIP(bank.shape[1])
    else:
        hnsw = faiss.IndexHNSWFlat(bank.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = max(64, 2 * k_eff)
        index = hnsw
    index.add(bank)
    sims, rows = index.search(np.ascontiguousarray(items, dtype=np.float32), k_eff)
    if same:  # drop each item itself (wherever it landed), keep k
        self_hit = rows == np.arange(len(items))[:, None]
        order = np.argsort(self_hit, axis=1, kind="stable")[:, :k]
        sims, rows = np.take_along_axis(sims, order, 1), np.take_along_axis(rows, order, 1)
    return sims[:, :k].astype(np.float32), rows[:, :k].astype(np.int64)


@dataclass
class Neighbourhoods:
    """Per (target kind, bank kind): each target's hubness and its nearest bank rows."""

    hub: dict[tuple[str, str], np.ndarray]
    rows: dict[tuple[str, str], np.ndarray]
    sims: dict[tuple[str, str], np.ndarray]

    @classmethod
    def compute(cls, vecs: Mapping[str, np.ndarray], exact_max: int = EXACT_MAX) -> Neighbourhoods:
        hub, rows, sims = {}, {}, {}
        k = max(HUB_K, ECHO_M + 1)
        for nt in KINDS:
            for bank in KINDS:
                s, r = knn(vecs[nt], vecs[bank], k, exact_max, same=nt == bank)
                key = (nt, bank)
                hub[key] = s[:, :HUB_K].mean(axis=1).astype(np.float32) if s.shape[1] else np.zeros(len(s), np.float32)
                rows[key], sims[key] = r[:, : ECHO_M + 1], s[:, : ECHO_M + 1]
        return cls(hub, rows, sims)

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for (nt, bank), h in self.hub.items():
            out[f"nb_hub_{nt}_{bank}"] = h
            out[f"nb_rows_{nt}_{bank}"] = self.rows[(nt, bank)]
            out[f"nb_sims_{nt}_{bank}"] = self.sims[(nt, bank)]
        return out

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray]) -> Neighbourhoods:
        keys = [(nt, bank) for nt in KINDS for bank in KINDS]
        return cls(
            {key: z[f"nb_hub_{key[0]}_{key[1]}"] for key in keys},
            {key: z[f"nb_rows_{key[0]}_{key[1]}"] for key in keys},
            {key: z[f"nb_sims_{key[0]}_{key[1]}"] for key in keys},
        )

    def echo(
        self, nt: str, bank: str, targets: np.ndarray, queries: np.ndarray, bank_vecs: np.ndarray,
        twins: np.ndarray | None = None,
    ) -> np.ndarray:
        """Queries x targets echo scores.

        `targets`: rows of kind `nt`; `queries`: query vectors; `bank_vecs`: the vectors of kind
        `bank`; `twins[q]`: the bank row that is query q itself (-1: none). Only the bank rows that
        the targets list are touched, so one query costs O(targets), not O(collection).
        """
        rows = self.rows[(nt, bank)][targets]  # (t, m+1)
        sims = self.sims[(nt, bank)][targets]
        n_q = len(queries)
        if rows.shape[1] == 0 or len(targets) == 0:
            return np.zeros((n_q, len(targets)), np.float32)
        if twins is None:  # nobody to leave out: the first ECHO_M neighbours
            rows, sims = rows[:, :ECHO_M], sims[:, :ECHO_M]
        w = np.exp((sims - sims[:, :1]) / ECHO_TEMPERATURE)[None]  # (1, t, m)
        if twins is not None:
            keep = rows[None, :, :] != np.asarray(twins)[:, None, None]
            keep &= np.cumsum(keep, axis=2) <= ECHO_M  # the first ECHO_M that are not the query
            w = np.where(keep, w, 0.0)
        w = w / np.maximum(w.sum(axis=2, keepdims=True), 1e-12)
        heard = (queries @ bank_vecs[rows.ravel()].T).reshape(n_q, *rows.shape)
        return (w * heard).sum(axis=2).astype(np.float32)
