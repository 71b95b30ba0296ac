"""The one ranking engine: every signal about a record, fused, with graph expansion by pseudo-relevance.

For a query q and a record r (retrieval/records.py), the signals are

* `lexical`: BM25 of q's words over r's texts and attribute values (text queries only);
* `text`: the best dense similarity of q to one of r's texts (for an image query, only a record without an image
  is scored by its texts: `RecordRanker.text_members`);
* `image`: the best dense similarity of q to one of r's images;
* `colour`: how alike the colours of an image query and of r's best image are (the Bhattacharyya coefficient of
  their colour descriptors, encoders/colour.py): the encoder's vector hardly sees colour;
* `closest`: an image query's credit, 1 / rank, to the records of its `CLOSEST_K` nearest images, so that a
  photo of a record in the collection finds that record (`closest_signal`);
* `attribute`: the IDF-weighted share of q's concepts that r states (attributes, mentions; a stated
  attribute and a mention of the same word are one concept), predicted image tags counting `tag_weight`
  of a stated one;
* `gnn`: the similarity of the graph-refined query and record vectors (gnn/propagate.py: APPNP message
  passing over record -> entity links; the query attached to its nearest records and its entities);
* `hub`: minus the record's hubness for queries of this modality: the mean similarity of its vector to its
  `hub_k` nearest items of that modality in the collection (the collection's own texts stand in for text
  queries). A record near everything (a hub of the embedding space) otherwise tops unrelated queries; this is
  the correction of NNN (Chowdhury et al., EMNLP 2024), with the collection as its reference queries, and it
  depends on the record and the collection only, never on other queries. It is measured in the units of the
  query's own spread of similarities, so that `hub` at weight alpha beside `image` at 1 is NNN at alpha;
* `graph_entity`, `graph_image`, `graph_text`: graph expansion. The query's best records by the
  signals above are its seeds (`seeds`, softmax weights at `temperature`); each record then scores by
  how much it shares with them: their entities (IDF-weighted cosine over record -> entity edges), their
  images and their texts (cosine to the seeds' mean image / text vector). A seed counts, in place of its
  likeness to itself, its likeness to its nearest other record (`RecordRanker.echo`). A record can thus be found
  through what its neighbours in the graph state, not only through its own words or pixels, and an
  image query reaches the attributes of the products it resembles.

Each signal but `closest` is standardised per query over the collection (z-score: a query's scores depend only on the
query and the collection searched, never on other queries) and the fused score is their weighted sum.
Weights are kept per query modality (`text`, `image`) in a `RankingConfig`, tuned on a dev split of the
collection being served and saved in its workspace. Search, the explorer and `mmkg eval` all score
through `RecordRanker.score`, so what eval reports is what users get.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mmkg.gnn.propagate import propagate, refine_query
from mmkg.retrieval.candidates import PER_SIGNAL, DenseSignal, best_rows, standardise_rows
from mmkg.retrieval.query_entities import concept_terms
from mmkg.retrieval.records import RecordTable, segment_max
from mmkg.workspace import atomic_write_json

log = logging.getLogger(__name__)

BASE_SIGNALS = ("lexical", "text", "image", "colour", "closest", "attribute", "gnn", "hub")
GRAPH_SIGNALS = ("graph_entity", "graph_image", "graph_text")
SIGNALS = BASE_SIGNALS + GRAPH_SIGNALS
CLOSEST_K = 10
"""How many of an image query's nearest images the `closest` signal credits."""
CHUNK = 256
"""Queries scored together: bounds memory at CHUNK x records floats per signal."""
UNLIKE_PERCENTILE = 1.0
"""A photo is unlike the collection when its best likeness to the collection's images is below this percentile of
the collection's own images' likeness to their nearest other record (`RecordRanker.image_floor`). Fashion catalog
(4,887 product shots): that percentile is 0.688, while 99 % of 300 flickr8k street photos come no nearer than 0.589."""
FLOOR_SAMPLE = 1000
"""At most this many of the collection's images (a fixed random sample) measure `image_floor`."""
UNLIKE_SIGNALS = ("image", "text", "colour")
"""What ranks a photo unlike the collection (`RecordRanker.unlike`): its likeness to each record's image (to the texts
of a record without one, a caption) and its colours, as they weigh for a photo like the collection. What the other
signals read from such a photo is extrapolated from photos it does not resemble: the attribute probe's predictions,
graph expansion's seeds, the refined vectors' links. Street photos asked of the fashion catalog
(benchmarks/street_photos.py, 152 flickr8k/dev photos, halves A / B by position): a product of the kind the photo
shows in the first ten for 15.8 / 15.8 % ranked by every signal, 36.8 / 31.6 % by the image alone, 40.8 / 36.8 % by
image and colour, 35.5 / 35.5 % with `hub` too (precision@10 10.1 / 10.8, 13.7 / 14.2, 15.5 / 16.6, 10.0 / 10.1;
chance 13.1): chosen on half A."""
EXACT_MAX = 20_000
"""Up to this many records one search scores every record; above, a candidate set (retrieval/candidates.py)."""
MIN_HUE_SHARE = 0.02
"""Below this mean share of hue in a collection's photos, `colour` is off for it: greyscale photos (MedPix's
radiographs: 0.000 over 300 of them; fashion 0.469, flickr8k 0.534, coco 0.485) leave it only a histogram of
brightness, which on MedPix's dev images lowered mAP (23.6 -> 21.9 at weight 1) where the catalog's colours
raised it."""
MULTI_VALUED = 0.1
"""An attribute that more than this share of the records stating it state several values of contradicts nothing
(`RecordRanker._states`)."""
LABEL_LIKE = 0.5
"""An attribute more than this share of whose statements are of a value no other record states is a label, not a
facet, and contradicts nothing (`RecordRanker._states`)."""
ANY_VALUES = frozenset({"unisex", "all", "any", "both", "mixed", "assorted", "various", "multiple", "multi",
                        "multicolor", "multicolour", "multicolored", "multicoloured"})
"""Values (case ignored) that fit whatever value of their attribute a query asks for: a unisex shoe is a shoe for
men, a multicoloured one may well be red, so stating one contradicts nothing (`RecordRanker._states`)."""
HUB_BANK = 8_192
"""At most this many of the collection's items (a fixed random sample above it) measure each record's hubness:
one pass of records x HUB_BANK dot products, once per process and query modality, when `hub` is on (0.7 s for
the 5,000-product fashion catalog on this 2-core machine; linear in records: docs/scaling.md)."""


@dataclass(frozen=True)
class RankWeights:
    """Fusion weights of one query modality; zero switches a signal off."""

    lexical: float = 1.0
    text: float = 1.0
    image: float = 1.0
    colour: float = 0.0
    attribute: float = 1.0
    gnn: float = 0.5
    graph_entity: float = 0.5
    graph_image: float = 0.5
    graph_text: float = 0.5
    seeds: int = 10
    temperature: float = 1.0
    tag_weight: float = 0.0
    """What a predicted image tag counts beside a stated attribute (0 until a dev split says otherwise): a tag is
    the encoder's own image-text similarity restated, so it adds noise, not evidence, to the image signal (untuned
    flickr8k/dev text->image R@1 11.84 at 0.5, 19.42 at 0; catalogs write no tags at all). Tags still show, marked
    predicted, in the graph and the explorer."""
    gnn_alpha: float = 0.5
    gnn_hops: int = 2
    hub: float = 0.0
    hub_k: int = 64
    contradicted_graph: float = 1.0
    """The share of its positive graph signals a record keeps when it contradicts a text query (`vouched`)."""
    closest: float = 0.0
    """An image query only: what the record with the nearest image earns on top of its `image` z-score, in z-units
    (1 / rank for the `CLOSEST_K` nearest; `closest_signal`)."""

    def uses_graph(self) -> bool:
        return any(getattr(self, s) for s in GRAPH_SIGNALS)

    def only(self, *signals: str) -> RankWeights:
        """These weights with every other signal switched off."""
        return replace(self, **{s: (getattr(self, s) if s in signals else 0.0) for s in SIGNALS})


DEFAULT_TEXT = RankWeights(gnn=0.0, graph_image=0.0, hub=0.75, contradicted_graph=0.0)
"""A text query's untuned weights: every signal of the record itself, and graph expansion through the seeds'
entities and words. The seeds' look (`graph_image`) and the refined vectors (`gnn`) are off: scored on the dev
queries of three collections (fashion catalog, MedPix cases, the flickr8k training holdout), dropping both
gave dev mAP 52.0 / 22.0 / 46.5 against 51.2 / 22.3 / 42.8 with them at 0.5, the best of six candidates by
the product of the three ratios. `hub` at 0.75 (k 64; NNN's alpha, in the units of `hub_signal`) gives
51.8 / 23.1 / 50.8 against 51.4 / 22.9 / 47.7 without it, the best of nine hub candidates by the same product
(1.0 at k 256: 51.9 / 23.2 / 50.4). A record that contradicts the query keeps none of its graph support
(`contradicted_graph` 0; `benchmarks/default_weights.py`): dev mAP 66.6 / 24.4 against 61.3 / 24.5 keeping half
and 54.5 / 24.6 keeping all (fashion / MedPix; flickr8k states no attributes, so nothing contradicts there). A
collection's own `mmkg tune` switches them back on where its dev split says so."""
DEFAULT_IMAGE = RankWeights(lexical=0.0, text=0.25, image=1.0, colour=1.0, attribute=0.25, gnn=0.5,
                            graph_entity=1.0, graph_image=0.0, graph_text=0.0, seeds=5, temperature=0.5, hub=0.75,
                            closest=0.5)
"""An image query's own modality leads (its similarity to the record's image; `text` scores only the records
without one, a caption gallery's captions: `RecordRanker.text_members`, and a collection without images gives the
image weight to it: `RecordRanker.weights_for`), and the stated attributes of the few records it resembles most
(graph_entity) carry the rest: cross-modal text similarity from an encoder trained on other photos is weak
evidence on its own. The refined vectors (`gnn`) help here on every dev split (switched off: fashion
image->image 26.3 -> 25.7, MedPix 15.2 -> 15.1, flickr8k image->text 34.5 -> 32.3); the seeds' mean look
(`graph_image`) restates the image signal (switched off: 26.6, 15.4, 34.5). `hub` at 0.75 (k 64): dev mAP
25.3 / 18.0 / 40.8 against 25.0 / 16.9 / 37.7 without it, the best of nine hub candidates by the product of the
ratios (1.0 at k 256: 25.1 / 18.4 / 39.8). `attribute` reads the values the collection's attribute probe predicts
for the photo (retrieval/attribute_probe.py); at 0.25 it took dev mAP from 28.0 / 18.3 (off) to 33.1 / 21.3 (fashion,
MedPix; flickr8k states no attributes), R@10 57.4 -> 61.2 / 62.9 -> 60.7. A higher weight buys mAP with the first
page (at 1.0: 37.3 / 23.8, R@10 58.7 / 56.2), which a collection's own `mmkg tune` may choose. `closest` at 0.5
lets a photo of a record in the collection find that record (benchmarks/known_item.py's 300 catalog photos as stored
/ degraded, ranked against every record, first: 84.0 / 61.3 % at 0, 92.3 / 72.3 at 0.25, 95.0 / 77.7 at 0.5, 97.0 /
82.7 at 1, 98.0 / 84.3 at 2) for a little of category search (dev mAP fashion / MedPix 32.7 / 23.9 at 0, 32.2 /
23.7 at 0.25, 31.8 / 23.6 at 0.5, 30.5 / 23.1 at 1, 28.8 / 21.9 at 2; fashion R@1 38.0, 37.8, 37.0, 32.4, 29.8).
`colour` (the photos' colour descriptors) at 1: fashion dev mAP 31.8 -> 41.8, R@1 37.0 -> 49.0, R@10 59.9 -> 70.0 (a
green kurta's photo had listed ten white kurtas: the seeds' colour spread over the page); MedPix's grey radiographs
23.6 -> 21.9, R@10 58.4 -> 62.9 (at 0.25: 36.1 / 23.1, at 0.5: 39.2 / 22.8, at 2: 42.2 / 20.1), so it is off where
photos have no hue (`MIN_HUE_SHARE`); flickr8k's caption gallery has no images to compare. The best of four by the
product of the ratios."""

CONFIG_VERSION = 2
"""2: `hub` counts in units of the query's spread of similarities (NNN's alpha). A config saved before keeps its
other weights and takes the defaults' `hub` where it had one (its weight meant something else)."""


@dataclass(frozen=True)
class RankingConfig:
    """The weights search uses, per query modality, and where they were tuned (saved in the workspace)."""

    text: RankWeights = DEFAULT_TEXT
    image: RankWeights = DEFAULT_IMAGE
    tuned_on: str = "defaults (untuned)"
    figures: dict[str, Any] = field(default_factory=dict)

    def for_kind(self, kind: str) -> RankWeights:
        return self.text if kind == "text" else self.image

    def to_json(self) -> dict[str, Any]:
        return {"version": CONFIG_VERSION, "text": asdict(self.text), "image": asdict(self.image),
                "tuned_on": self.tuned_on, "figures": self.figures}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RankingConfig:
        names = set(RankWeights.__dataclass_fields__)
        # a weight saved before it existed takes its modality's default
        pick = lambda d, default: replace(default, **{k: v for k, v in (d or {}).items() if k in names})  # noqa: E731
        text, image = pick(obj.get("text"), DEFAULT_TEXT), pick(obj.get("image"), DEFAULT_IMAGE)
        if int(obj.get("version", 1)) < 2 and (text.hub or image.hub):
            log.warning("ranking weights saved by an older mmkg: their hub weights now take the defaults "
                        "(run `mmkg tune` to tune them again)")
            text = replace(text, hub=DEFAULT_TEXT.hub, hub_k=DEFAULT_TEXT.hub_k) if text.hub else text
            image = replace(image, hub=DEFAULT_IMAGE.hub, hub_k=DEFAULT_IMAGE.hub_k) if image.hub else image
        return cls(text, image, str(obj.get("tuned_on", "")), dict(obj.get("figures") or {}))

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> RankingConfig:
        """The saved config, or the untuned defaults when none was saved."""
        if not path.is_file():
            return cls()
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))


@dataclass
class QuerySet:
    """Queries of one modality, as the encoder and the query linker see them."""

    kind: str
    """`text` or `image`."""
    vectors: np.ndarray
    texts: list[str] | None = None
    entities: list[list[tuple[str, float]]] = field(default_factory=list)
    """Per query, its (entity id, link score) pairs."""
    colours: np.ndarray | None = None
    """(queries, colour bins) an image query's colour descriptors (encoders/colour.py)."""

    def __len__(self) -> int:
        return len(self.vectors)

    def take(self, rows: Sequence[int] | np.ndarray) -> QuerySet:
        idx = np.asarray(rows, dtype=np.int64)
        return QuerySet(self.kind, self.vectors[idx], [self.texts[i] for i in idx] if self.texts else None,
                        [self.entities[i] for i in idx] if self.entities else [],
                        self.colours[idx] if self.colours is not None else None)


@dataclass
class Scored:
    """Standardised signals (queries x records) and the fused score under one set of weights."""

    signals: dict[str, np.ndarray]
    fused: np.ndarray
    seeds: np.ndarray
    """(queries, seeds) record rows of each query's graph seeds (empty without graph expansion)."""
    seed_weights: np.ndarray


class RecordRanker:
    """Scores queries against every record of a `RecordTable` (see the module docstring)."""

    def __init__(self, table: RecordTable, config: RankingConfig | None = None, exact_max: int = EXACT_MAX) -> None:
        self.table = table
        self.config = config or RankingConfig()
        self.exact_max = exact_max
        self._knowledge_cache: dict[float, sp.csr_matrix] = {}
        self._have_cache: dict[float, sp.csr_matrix] = {}
        self._profile_cache: dict[float, tuple[sp.csr_matrix, sp.csr_matrix]] = {}
        self._terms_cache: list[tuple[str, ...]] | None = None
        self._states_cache: dict[str, np.ndarray] = {}
        self._says_cache: dict[str, np.ndarray] = {}
        self._refined_cache: dict[tuple[float, int, float], tuple[np.ndarray, np.ndarray]] = {}
        self._dense_cache: dict[object, DenseSignal] = {}
        self._hub_cache: dict[tuple[str, int], np.ndarray] = {}
        self._echo_cache: dict[tuple[str, float], np.ndarray] = {}
        self._text_members_image: sp.csr_matrix | None = None
        self._image_floor: float | None = None
        self.timings: dict[str, float] = {}
        """Seconds per stage of the last candidate search (`sparse`, `dense`, `graph`, `final`): for benchmarks."""

    def weights_for(self, kind: str, weights: RankWeights | None = None) -> RankWeights:
        """The weights a query of this modality scores with (the config's unless given), fitted to what the
        collection holds. An image query's own modality is the record's image; a collection with no images
        (captions, notes) answers it with its texts instead, so there the image weight goes to the cross-modal
        text signal. An image query reaches entities only through the records it resembles (graph_entity), which
        is worth it for stated attributes (a catalog's type and colour) but not for words picked out of captions:
        on flickr8k/dev's caption gallery that expansion took image->text R@1 from 33.0 to 12.4. Photos without
        hue (radiographs: `MIN_HUE_SHARE`) are not compared by `colour`."""
        w = weights or self.config.for_kind(kind)
        if kind != "image":
            return w
        if w.image and not self.table.has_image.any():
            w = replace(w, text=w.text + w.image, image=0.0)
        if w.graph_entity and not self.table.attribute_entity.any():
            w = replace(w, graph_entity=0.0)
        if w.colour and self.table.hue_share < MIN_HUE_SHARE:
            w = replace(w, colour=0.0)
        return w

    # --- signals ----------------------------------------------------------------------------

    def base_signals(self, queries: QuerySet, weights: RankWeights) -> dict[str, np.ndarray]:
        """The standardised `BASE_SIGNALS` of every query against every record (missing: absent key)."""
        t = self.table
        tag_weight = weights.tag_weight
        out: dict[str, np.ndarray] = {}
        q = queries.vectors.astype(np.float32)
        spread: dict[str, np.ndarray] = {}
        if t.image_vecs.shape[0]:
            raw_image = segment_max(t.rec_image, q @ t.image_vecs.T)
            out["image"], spread["image"] = _standardise_spread(raw_image)
            if queries.kind == "image":
                out["closest"] = closest_signal(raw_image)
        if queries.colours is not None and weights.colour:
            out["colour"] = _standardise(self.colour_likeness(queries.colours))
        if t.text_vecs.shape[0]:
            members = self.text_members(queries.kind)
            out["text"], spread["text"] = _standardise_spread(segment_max(members, q @ t.text_vecs.T))
        if queries.texts is not None:
            out["lexical"] = _standardise(np.stack([t.bm25.scores(s) for s in queries.texts]) if len(queries)
                                          else np.zeros((0, len(t)), np.float32))
        if queries.entities and len(t.entity_ids):
            out["attribute"] = _standardise(self.attribute_fit(queries, tag_weight))
        if weights.gnn:
            out["gnn"] = _standardise(self.gnn_scores(queries, weights))
        if weights.hub and spread:
            out["hub"] = self.hub_signal(queries.kind, weights.hub_k, spread)
        return out

    def colour_likeness(self, colours: np.ndarray) -> np.ndarray:
        """(queries, records) the best likeness of each query's colours to one of a record's images (NaN: no
        image of the record has a colour descriptor)."""
        t = self.table
        likeness = colours.astype(np.float32) @ t.image_colours.T
        likeness[:, ~t.has_colour] = -np.inf
        best = segment_max(t.rec_image, likeness)
        return np.where(np.isfinite(best), best, np.nan).astype(np.float32)

    def image_likeness(self, vecs: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """(n,) each vector's best similarity to an image of the collection, outside record `skip[i]` where given
        (-inf where there is none). Above `exact_max` records, among the image index's nearest (as candidates are)."""
        t = self.table
        vecs = vecs.astype(np.float32)
        out = np.full(len(vecs), -np.inf, np.float32)
        if not t.image_vecs.shape[0]:
            return out
        if len(t) <= self.exact_max:
            for lo in range(0, len(vecs), CHUNK):
                best = segment_max(t.rec_image, vecs[lo : lo + CHUNK] @ t.image_vecs.T, empty=-np.inf)
                if skip is not None:
                    best[np.arange(len(best)), skip[lo : lo + CHUNK]] = -np.inf
                out[lo : lo + CHUNK] = best.max(axis=1)
            return out
        sig = self._dense_signal("image", self.config.image)[0]
        for i, v in enumerate(vecs):
            near = sig.nearest(v, 4)
            near = near[near != skip[i]] if skip is not None else near
            if len(near):
                out[i] = np.nanmax(sig.raw(v, near))
        return out

    def image_floor(self) -> float:
        """The likeness below which a photo is unlike every image of the collection: `UNLIKE_PERCENTILE` of the
        collection's images' likeness to their nearest other record (-inf with fewer than two records with images).
        A photo below it (a street scene asked of product shots) gets answers by a loose likeness, which search
        says (`RecordRetriever.unlike_collection`): ranked as usual, a flickr8k photo of a man with a backpack
        listed ten pairs of socks."""
        if self._image_floor is None:
            likeness = self.own_likeness() if self.table.has_image.sum() >= 2 else np.empty(0)
            self._image_floor = float(np.percentile(likeness, UNLIKE_PERCENTILE)) if len(likeness) else -math.inf
        return self._image_floor

    def own_likeness(self) -> np.ndarray:
        """The likeness of the collection's images (a fixed sample of `FLOOR_SAMPLE`) to their nearest other
        record: what `image_floor` takes its percentile of (benchmarks/unlike_floor.py weighs other floors)."""
        t = self.table
        owner = np.asarray(t.rec_image.argmax(axis=0)).ravel()  # an image's (first) record
        n = t.image_vecs.shape[0]
        rows = np.sort(np.random.default_rng(0).choice(n, min(n, FLOOR_SAMPLE), replace=False))
        likeness = self.image_likeness(t.image_vecs[rows], skip=owner[rows])
        return likeness[np.isfinite(likeness)]

    def unlike(self, queries: QuerySet) -> np.ndarray:
        """(n,) which queries are photos unlike every image of the collection: their best likeness to one is below
        `image_floor`. Search says they match only loosely; where the collection states attributes they are also
        ranked by `for_unlike`'s weights (`ranked_by_look`)."""
        if queries.kind != "image" or not len(queries):
            return np.zeros(len(queries), bool)
        return self.image_likeness(queries.vectors) < self.image_floor()

    def ranked_by_look(self, queries: QuerySet) -> np.ndarray:
        """(n,) the queries `for_unlike`'s weights rank: photos unlike the collection, where it states attributes. There
        the attribute probe's predictions and the seeds' attributes would rank such a photo, extrapolated from photos
        it does not resemble; a collection without stated attributes (captioned photos) ranks it by its look already.
        On flickr8k/dev, whose photos lie farther from the encoder's own training photos than those lie from each
        other, 87 of 1,000 fell below the floor, and ranked by `for_unlike` they left image->text R@1 at 33.9, below
        NNN's 34.0 in the same run."""
        if not self.table.attribute_entity.any():
            return np.zeros(len(queries), bool)
        return self.unlike(queries)

    def text_members(self, kind: str) -> sp.csr_matrix:
        """Records x texts that the `text` signal reads for a query of this modality. A text query reads every
        record's texts. An image query reads only the texts of records without an image (a caption, a note): a
        record with an image answers it with that image, and its name's cross-modal similarity, from an encoder
        trained on other photos, is noise that picked the wrong seeds for graph expansion (fashion dev,
        image->image with the default weights: a black formal shoe's photo found five sandals, a white shirt's
        grey jackets; reading only image-less records' texts took dev mAP 25.3 -> 27.4, R@1 29.6 -> 32.9,
        R@10 52.1 -> 55.6; MedPix dev image->case mAP 18.0 -> 18.2, R@10 58.4 -> 60.1, R@1 30.3 -> 27.0)."""
        if kind == "text":
            return self.table.rec_text
        if self._text_members_image is None:
            without_image = (~self.table.has_image).astype(np.float32)
            self._text_members_image = (sp.diags(without_image) @ self.table.rec_text).tocsr()
            self._text_members_image.eliminate_zeros()
        return self._text_members_image

    def text_similarity(self, queries: QuerySet) -> np.ndarray:
        """(queries, records) the standardised best cosine of each query to a record's texts, for every record
        whatever the query's modality: the dense-text baseline (`text` reads an image query otherwise)."""
        q = queries.vectors.astype(np.float32)
        return _standardise(segment_max(self.table.rec_text, q @ self.table.text_vecs.T))

    def hub_signal(self, kind: str, k: int, spread: dict[str, np.ndarray]) -> np.ndarray:
        """(queries, records) the `hub` signal: a record's centred hubness (`hub_penalty`) in units of the spread
        (per-query std) of the query's raw similarity to that record's own vector (its image's, or its text's
        without one). Beside the standardised `image` signal at weight 1, `hub` at weight alpha then ranks exactly
        as NNN's `q . g - alpha * degree(g)` does; a hubness in z-units of its own over-corrects the queries whose
        similarities are spread narrowly (flickr8k holdout text->image R@1: NNN 36.24, the z-unit `hub` at its best
        weight 35.60). `spread`: the per-query std of the raw `image` and/or `text` signal."""
        image = spread["image"] if "image" in spread else spread["text"]
        text = spread.get("text", image)
        per_record = np.where(self.table.has_image[None, :], image.reshape(-1, 1), text.reshape(-1, 1))
        centred = self.hub_penalty(kind, k)[None, :]
        return np.where(per_record > 1e-6, centred / np.maximum(per_record, 1e-6), 0.0).astype(np.float32)

    def hub_penalty(self, kind: str, k: int) -> np.ndarray:
        """(records,) minus each record's hubness for queries of this modality, centred (cached): the mean of its
        `k` best similarities to the collection's items of that modality (all zero without any)."""
        key = (kind, k)
        if key not in self._hub_cache:
            t = self.table
            bank = t.text_vecs if kind == "text" else t.image_vecs
            if len(bank) > HUB_BANK:
                bank = bank[np.sort(np.random.default_rng(0).choice(len(bank), HUB_BANK, replace=False))]
            degree = np.zeros(len(t), np.float32)
            if len(bank):
                k = min(k, len(bank))
                vecs = t.record_vecs()
                for lo in range(0, len(t), 2048):
                    sims = vecs[lo : lo + 2048] @ bank.T
                    degree[lo : lo + 2048] = np.partition(sims, -k, axis=1)[:, -k:].mean(axis=1)
            self._hub_cache[key] = (degree.mean() - degree).astype(np.float32)
        return self._hub_cache[key]

    def refined(self, weights: RankWeights) -> tuple[np.ndarray, np.ndarray]:
        """(refined record vectors, entity states) under these propagation settings (cached)."""
        key = (weights.gnn_alpha, weights.gnn_hops, weights.tag_weight)
        if key not in self._refined_cache:
            t = self.table
            features = t.record_image_vecs + t.record_text_vecs
            links = (self._knowledge(weights.tag_weight) @ sp.diags(t.idf)).tocsr()
            self._refined_cache[key] = propagate(features, links, weights.gnn_alpha, weights.gnn_hops)
        return self._refined_cache[key]

    def gnn_scores(self, queries: QuerySet, weights: RankWeights) -> np.ndarray:
        """Queries x records: refined query . refined record (raw cosines)."""
        records, entities = self.refined(weights)
        links = self._query_links(queries.entities) if queries.entities else None
        q = refine_query(queries.vectors.astype(np.float32), records, entities, weights.gnn_alpha,
                         entity_weights=links)
        return q @ records.T

    def _query_links(self, entities: Sequence[Sequence[tuple[str, float]]]) -> sp.csr_matrix:
        t = self.table
        rows, cols, vals = [], [], []
        for i, ents in enumerate(entities):
            for e, s in ents:
                if e in t.entity_pos and s > 0:
                    rows.append(i)
                    cols.append(t.entity_pos[e])
                    vals.append(s * float(t.idf[t.entity_pos[e]]))
        return sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)), shape=(len(entities), len(t.entity_ids)))

    def attribute_fit(self, queries: QuerySet, tag_weight: float) -> np.ndarray:
        """Queries x records: the `attribute` signal before standardising, what a record covers of the query's
        concepts, less what it contradicts of a text query's (`entity_conflict`). A photo's values are the probe's
        guesses, several per attribute: a record would contradict most of them, and a guess is no reason to put a
        record stating otherwise last (a photo's own product, stating only its colour, fell behind a look-alike)."""
        share = self.entity_share(queries.entities, tag_weight, guessed=queries.kind != "text")
        return share - self.entity_conflict(queries.entities) if queries.kind == "text" else share

    def _concepts(self, entities: Sequence[tuple[str, float]], guessed: bool = False
                  ) -> list[tuple[str, float, list[int]]]:
        """One query's concepts: each term, its share of the query's IDF weight and the entity columns that stand
        for it (`entity_share`). A term weighs the IDF of every entity of a text query that stands for it; of a
        photo's (`guessed`), the best of the entity names and the best of the attribute values guessed for it:
        three names near a photo of a belt (`belt`, `leather belt`, `black belt`) are one guess, not three (tuned
        dev mAP of photo queries: catalog 46.96 -> 47.27, MedPix 26.62 -> 27.43; taken so for text queries too,
        78.76 -> 78.03 and 32.40 -> 32.27)."""
        t = self.table
        weight: dict[tuple[str, bool], float] = {}
        cols: dict[str, list[int]] = {}
        for e, s in entities:
            col = t.entity_pos.get(e)
            if col is None or s <= 0:
                continue
            for term in self._terms()[col]:
                key, w = (term, bool(t.attribute_entity[col])), s * float(t.idf[col])
                weight[key] = max(weight.get(key, 0.0), w) if guessed else weight.get(key, 0.0) + w
                cols.setdefault(term, []).append(col)
        term_weight: dict[str, float] = {}
        for (term, _), w in weight.items():
            term_weight[term] = term_weight.get(term, 0.0) + w
        total = sum(term_weight.values())
        return [(term, term_weight[term] / total, term_cols) for term, term_cols in cols.items()
                if total > 0 and term_weight[term] > 0]

    def entity_share(self, entities: Sequence[Sequence[tuple[str, float]]], tag_weight: float,
                     guessed: bool = False) -> np.ndarray:
        """Queries x records: the IDF-weighted share of each query's concepts that a record covers.

        A concept is a word the query's entities stand for (`concept_terms`); a record covers it when it has
        any of the query's entities that stand for it. So `black heels` is fully covered by a product that
        states baseColour:Black and articleType:Heels, as by one named "black heels": the stated attribute and
        the mention `heel` are one concept, which the record needs only one of. A concept weighs the IDF of
        every query entity that stands for it, so what the collection states as a facet (a mention and an
        attribute) weighs more than a word only mentioned (on the fashion catalog's dev queries this beat the
        best single entity's IDF: tuned mAP 64.9 vs 60.3, and a plain share of entities: 59.1)."""
        have = self._have_t(tag_weight)
        out = np.zeros((len(entities), len(self.table)), np.float32)
        for i, ents in enumerate(entities):
            for _, share, cols in self._concepts(ents, guessed):  # covered: the best of the record's links for the term
                out[i] += share * have[cols].max(axis=0).toarray().ravel()
        return out

    def entity_conflict(self, entities: Sequence[Sequence[tuple[str, float]]]) -> np.ndarray:
        """Queries x records: the share of each query's concepts that a record contradicts: the query names a value
        of an attribute (`red` is a baseColour), and the record states another value of it, none of the query's
        entities for that concept, and not its word (a two-tone "Red Black Watch" stating black is red too). Saying
        nothing is not saying otherwise: a black watch is a worse answer to "red watch" than a watch whose colour is
        not stated, and coverage alone ranked them level, so a rarer word the black one shared (its brand) put it
        first. Only stated values contradict; a predicted tag never does."""
        out = np.zeros((len(entities), len(self.table)), np.float32)
        for i, ents in enumerate(entities):
            for term, share, cols in self._concepts(ents):
                against = self._against(term, cols)
                if against is not None:
                    out[i] += share * against
        return out

    def _against(self, term: str, cols: list[int]) -> np.ndarray | None:
        """Which records contradict the concept `term` (`entity_conflict`); None when it names no attribute."""
        keys = self._keys(cols)
        if not keys:
            return None
        states = np.logical_or.reduce([self._states(k) for k in keys])
        has = self._have_t(0.0)[cols].max(axis=0).toarray().ravel() > 0
        return states & ~has & ~self._says(term)

    def _says(self, term: str) -> np.ndarray:
        """Which records' words (texts and attribute values) contain `term`: looked up once per term, since a
        search asks again for each hit it explains (`contradictions`)."""
        if term not in self._says_cache:
            self._says_cache[term] = self.table.bm25.scores(term) > 0
        return self._says_cache[term]

    def contradictions(self, entities: Sequence[tuple[str, float]], row: int) -> list[tuple[str, list[str]]]:
        """What record `row` contradicts of one text query's concepts (`entity_conflict`), for its explanation:
        each value it states, with the values of that attribute the query names."""
        t = self.table
        stated = sorted(t.rec_entity[row].indices)
        out = []
        for term, _, cols in self._concepts(entities):
            against = self._against(term, cols)
            if against is not None and against[row]:
                keys = self._keys(cols)
                asked = [t.entity_names[c] for c in cols if t.attribute_entity[c]]
                out += [(t.entity_names[c], asked) for c in stated
                        if t.attribute_entity[c] and t.entity_names[c].split(":", 1)[0] in keys]
        return out

    def _keys(self, cols: Sequence[int]) -> set[str]:
        """The attributes the entity columns `cols` are values of (`baseColour` for baseColour:Red)."""
        t = self.table
        return {t.entity_names[c].split(":", 1)[0] for c in cols if t.attribute_entity[c]}

    def _states(self, key: str) -> np.ndarray:
        """Which records state some value of attribute `key` other than one of `ANY_VALUES`, where the attribute
        is a facet: none where more than `MULTI_VALUED` of the records stating it state several values (such a
        list is what the record happened to record, a radiology case the planes of the images it holds, and
        another plane does not say the asked one is missing), and none where it is a label (`LABEL_LIKE`: a
        radiology case's free-text diagnosis is its own, and another one does not say the case shows nothing
        the query names)."""
        if key not in self._states_cache:
            t = self.table
            cols = [c for c, (name, attr) in enumerate(zip(t.entity_names, t.attribute_entity, strict=True))
                    if attr and name.split(":", 1)[0] == key]
            stated = t.rec_entity[:, cols] > 0
            count = np.asarray(stated.sum(axis=1)).ravel()
            several = (count > 1).sum() / max(int((count > 0).sum()), 1)
            per_value = np.asarray(stated.sum(axis=0)).ravel()
            unique = per_value[per_value == 1].sum() / max(int(per_value.sum()), 1)
            specific = [i for i, c in enumerate(cols)
                        if t.entity_names[c].split(":", 1)[1].strip().casefold() not in ANY_VALUES]
            states = np.asarray(stated[:, specific].sum(axis=1)).ravel() > 0
            self._states_cache[key] = states & (several <= MULTI_VALUED) & (unique <= LABEL_LIKE)
        return self._states_cache[key]

    def _terms(self) -> list[tuple[str, ...]]:
        """Each entity's concept terms (its own id when it has no words)."""
        if self._terms_cache is None:
            t = self.table
            self._terms_cache = [concept_terms(name, bool(attr)) or (eid,) for eid, name, attr
                                 in zip(t.entity_ids, t.entity_names, t.attribute_entity, strict=True)]
        return self._terms_cache

    def _knowledge(self, tag_weight: float) -> sp.csr_matrix:
        """Records x entities: stated links plus `tag_weight` x predicted ones (what every entity signal reads)."""
        if tag_weight not in self._knowledge_cache:
            t = self.table
            self._knowledge_cache[tag_weight] = (t.rec_entity + tag_weight * t.rec_tag).tocsr()
        return self._knowledge_cache[tag_weight]

    def _have_t(self, tag_weight: float) -> sp.csr_matrix:
        """Entities x records: stated knowledge plus `tag_weight` x predicted (kept transposed: the rows of a
        query's entities are then a cheap slice that touches only their records)."""
        if tag_weight not in self._have_cache:
            self._have_cache[tag_weight] = self._knowledge(tag_weight).T.tocsr()
        return self._have_cache[tag_weight]

    def _entity_profiles(self, tag_weight: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Records x entities, IDF-weighted and L2-normalised: what graph_entity compares (and its transpose)."""
        if tag_weight not in self._profile_cache:
            t = self.table
            m = self._knowledge(tag_weight) @ sp.diags(t.idf)
            norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
            prof = (sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m).tocsr()
            self._profile_cache[tag_weight] = (prof, prof.T.tocsr())
        return self._profile_cache[tag_weight]

    def graph_signals(self, queries: QuerySet, stage1: np.ndarray, weights: RankWeights
                      ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Standardised graph-expansion signals from each query's seeds (its best records by `stage1`), without
        support for a record that contradicts the query (`vouched`)."""
        t = self.table
        n_q, n_r = stage1.shape
        m = min(weights.seeds, n_r)
        if m == 0 or n_q == 0:
            return {}, np.zeros((n_q, 0), np.int64), np.zeros((n_q, 0), np.float32)
        seeds = np.argpartition(-stage1, m - 1, axis=1)[:, :m] if m < n_r else np.tile(np.arange(n_r), (n_q, 1))
        top = np.take_along_axis(stage1, seeds, axis=1)
        p = seed_weights(top, weights.temperature)
        start = sp.csr_matrix((p.ravel(), (np.repeat(np.arange(n_q), m), seeds.ravel())), shape=(n_q, n_r))
        rows = np.arange(n_q)[:, None]
        raw: dict[str, np.ndarray] = {}
        if weights.graph_entity and len(t.entity_ids):
            prof, prof_t = self._entity_profiles(weights.tag_weight)
            raw["graph_entity"] = np.asarray(((start @ prof) @ prof_t).todense(), dtype=np.float32)
        for name, on in (("graph_image", weights.graph_image and t.image_vecs.shape[0]),
                         ("graph_text", weights.graph_text and t.text_vecs.shape[0])):
            if on:
                vecs, present = self._graph_vectors(name)
                raw[name] = _masked((start @ vecs) @ vecs.T, present)
        for name, values in raw.items():
            values[rows, seeds] += p * self.echo(name, seeds.ravel(), weights).reshape(seeds.shape)
        graph = {name: _standardise(values) for name, values in raw.items()}
        return self.vouched(graph, queries, weights.contradicted_graph), seeds, p

    def vouched(self, graph: dict[str, np.ndarray], queries: QuerySet, keep: float) -> dict[str, np.ndarray]:
        """The graph signals with only the share `keep` of their support for a record that contradicts a text
        query (`entity_conflict`): what the graph says is that a record is like the query's best records, and a
        record whose own stated values rule out what the query asks is no answer for being like them. "red dress
        for women" had the catalog's one red dress fourth: as the best seed it spread its kind, audience and
        season to the pink dresses, which outscored it on `graph_entity` (+8.8 against +5.9) while stating pink."""
        if keep == 1 or not graph or queries.kind != "text" or not queries.entities or not len(self.table.entity_ids):
            return graph
        ruled_out = self.entity_conflict(queries.entities) > 0
        return {name: np.where(ruled_out & (values > 0), keep * values, values).astype(np.float32)
                for name, values in graph.items()}

    def echo(self, name: str, rows: np.ndarray, weights: RankWeights) -> np.ndarray:
        """What graph signal `name` owes each record of `rows` as a seed: its likeness to its nearest other
        record minus its likeness to itself (the seed's echo, taken out).

        A record scores by its likeness to the seeds' weighted centre, and a seed's centre holds itself at its own
        weight, which at the default temperature is most of it: the best seed took the collection's highest graph
        signal whatever the other seeds said (MedPix, `pneumothorax on chest x-ray`: Boerhaave's syndrome first on
        graph_entity +12.2, while its explanation showed paths through the other seeds). Taking the echo out
        entirely (scoring a seed by the other seeds alone) penalised it instead: its near duplicates kept its
        weight and overtook it, and a catalog photo found its own product first 15 % of the time, not 91 %.
        Counting its nearest other record in place of itself gives a seed what its closest neighbour gets from it:
        no advantage, no penalty. Dev queries, against the echo: MedPix text->case tuned mAP 28.0 -> 30.9, R@1
        28.7 -> 42.1 (untuned mAP 23.5 -> 24.7), image->case untuned 21.6 -> 23.9 (tuned 25.9 -> 26.1); fashion
        level (text 65.1 -> 65.0, image 41.7 -> 41.6). The echo had favoured the query's best match, so a catalog's
        own photo finds its product first a little less often (91 % -> 84 %: benchmarks/known_item.py).

        Above `exact_max` records a dense signal's nearest other record comes from its HNSW index (as candidates
        do), whoever asks, so that a search and `score` still agree."""
        t = self.table
        key = (name, weights.tag_weight if name == "graph_entity" else 0.0)
        cache = self._echo_cache.setdefault(key, np.full(len(t), np.nan, np.float32))
        todo = np.unique(rows[np.isnan(cache[rows])])
        if name != "graph_entity" and len(t) > self.exact_max:
            vecs, present = self._graph_vectors(name)
            sig = self._dense_signal(name, weights)[0]
            for row in todo:
                near = sig.nearest(vecs[row], 8)
                sims = sig.raw(vecs[row], near[near != row])
                found = present[row] and bool(np.isfinite(sims).any())
                cache[row] = float(np.nanmax(sims)) - float(vecs[row] @ vecs[row]) if found else 0.0
            return cache[rows]
        step = max(1, min(CHUNK, 2**24 // max(len(t), 1)))  # at most 16M similarities at a time
        for lo in range(0, len(todo), step):
            part = todo[lo : lo + step]
            sims = self._likeness(name, part, weights)
            at = np.arange(len(part))
            own = sims[at, part].copy()
            sims[at, part] = -np.inf
            nearest = sims.max(axis=1)
            cache[part] = np.where(np.isfinite(nearest) & np.isfinite(own), nearest - own, 0.0)
        return cache[rows]

    def _graph_vectors(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The record vectors graph signal `name` compares (`graph_image`, `graph_text`), and who has one."""
        t = self.table
        return (t.record_image_vecs, t.has_image) if name == "graph_image" else (t.record_text_vecs, t.has_text)

    def _likeness(self, name: str, rows: np.ndarray, weights: RankWeights) -> np.ndarray:
        """(rows, records) what graph signal `name` compares between records (-inf where one has nothing)."""
        if name == "graph_entity":
            prof, prof_t = self._entity_profiles(weights.tag_weight)
            return np.asarray((prof[rows] @ prof_t).todense(), dtype=np.float32)
        vecs, present = self._graph_vectors(name)
        return np.where(present[None, :], vecs[rows] @ vecs.T, -np.inf).astype(np.float32)

    # --- fusion -----------------------------------------------------------------------------

    def score(self, queries: QuerySet, weights: RankWeights | None = None) -> Scored:
        """Signals and fused scores of every query against every record (queries scored independently)."""
        w = self.weights_for(queries.kind, weights)
        parts = [self._score_chunk(queries.take(np.arange(lo, min(lo + CHUNK, len(queries)))), w)
                 for lo in range(0, len(queries), CHUNK)]
        if not parts:
            empty = np.zeros((0, len(self.table)), np.float32)
            return Scored({}, empty, np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32))
        names = set().union(*(p.signals for p in parts))
        return Scored(
            {s: np.concatenate([p.signals[s] for p in parts]) for s in names if all(s in p.signals for p in parts)},
            np.concatenate([p.fused for p in parts]),
            np.concatenate([p.seeds for p in parts]),
            np.concatenate([p.seed_weights for p in parts]),
        )

    def search_scores(self, queries: QuerySet, weights: RankWeights | None = None,
                      within: np.ndarray | None = None, least: int = 10) -> Scored:
        """One query's scores for a search. Up to `exact_max` records: `score`. Above: over a candidate set
        (retrieval/candidates.py) holding at least `least` of the rows `within` (every row when None) where
        they exist; a candidate scores exactly as in `score`, any other record has fused -inf and NaN signals."""
        w = self.weights_for(queries.kind, weights)
        if len(queries) != 1 or len(self.table) <= self.exact_max:
            return self.score(queries, w)
        return self._score_candidates(queries, w, within, least)

    def _dense_signal(self, name: str, weights: RankWeights) -> tuple[DenseSignal, tuple[object, ...]]:
        """The dense signal `name` (`image`, `text`, `image_text`, `gnn`, `graph_image`, `graph_text`), built once."""
        t = self.table
        key: tuple[object, ...] = (name,) if name != "gnn" else (name, weights.gnn_alpha, weights.gnn_hops,
                                                                 weights.tag_weight)
        if key not in self._dense_cache:
            if name == "image":
                sig = DenseSignal.build(t.rec_image, t.image_vecs)
            elif name == "text":
                sig = DenseSignal.build(t.rec_text, t.text_vecs)
            elif name == "image_text":  # an image query's `text`: image-less records only (one index when all are)
                sig = DenseSignal.build(self.text_members("image"), t.text_vecs,
                                        like=self._dense_signal("text", weights)[0])
            elif name == "gnn":
                sig = DenseSignal.build(sp.identity(len(t), np.float32, format="csr"), self.refined(weights)[0])
            else:
                vecs, present = self._graph_vectors(name)
                sig = DenseSignal.build(sp.diags(present.astype(np.float32), format="csr"), vecs,
                                        like=self._dense_signal(name.removeprefix("graph_"), weights)[0])
            self._dense_cache[key] = sig
        return self._dense_cache[key], key

    def prepare_search(self, weights: RankWeights) -> None:
        """Build what fast single searches need (the candidate indexes) now rather than on the first search."""
        if len(self.table) <= self.exact_max:
            return
        t = self.table
        names = [n for n, on in (("image", t.image_vecs.shape[0]), ("text", t.text_vecs.shape[0]),
                                 ("image_text", t.text_vecs.shape[0] and not t.has_image.all()),
                                 ("gnn", weights.gnn), ("graph_image", weights.graph_image and t.image_vecs.shape[0]),
                                 ("graph_text", weights.graph_text and t.text_vecs.shape[0])) if on]
        for name in names:
            self._dense_signal(name, weights)[0].ensure_index()

    def _score_candidates(self, queries: QuerySet, w: RankWeights, within: np.ndarray | None, least: int) -> Scored:
        t = self.table
        clock = [time.perf_counter()]

        def lap(stage: str) -> None:
            clock.append(time.perf_counter())
            self.timings[stage] = clock[-1] - clock[-2]

        n = len(t)
        q = queries.vectors[0].astype(np.float32)
        full: dict[str, np.ndarray] = {}  # sparse signals: exact over every record (cheap)
        if queries.texts is not None:
            full["lexical"] = _standardise(t.bm25.scores(queries.texts[0])[None, :])[0]
        if queries.entities and len(t.entity_ids):
            full["attribute"] = _standardise(self.attribute_fit(queries, w.tag_weight))[0]
        if queries.colours is not None and w.colour:
            full["colour"] = _standardise(self.colour_likeness(queries.colours))[0]
        lap("sparse")
        dense: dict[str, tuple[DenseSignal, np.ndarray]] = {}
        if t.image_vecs.shape[0]:
            dense["image"] = (self._dense_signal("image", w)[0], q)
        if t.text_vecs.shape[0]:
            dense["text"] = (self._dense_signal("text" if queries.kind == "text" else "image_text", w)[0], q)
        if w.gnn:
            sig = self._dense_signal("gnn", w)[0]
            links = self._query_links(queries.entities) if queries.entities else None
            records, entities = self.refined(w)
            # The query's nearest refined records exactly (one pass): refined records of near-identical products
            # are near-identical, and an approximate search that misses one changes every gnn score.
            refined = refine_query(q[None, :], records, entities, w.gnn_alpha, entity_weights=links)[0]
            dense["gnn"] = (sig, refined)
        nearest = {name: sig.nearest(v, PER_SIGNAL) for name, (sig, v) in dense.items()}
        pools = [best_rows(v, PER_SIGNAL) for v in full.values()] + list(nearest.values())
        if queries.kind == "image" and "image" in dense:  # its records are among the image signal's nearest
            raw_image = np.full((1, n), np.nan, np.float32)
            raw_image[0, nearest["image"]] = dense["image"][0].raw(q, nearest["image"])
            full["closest"] = closest_signal(raw_image)[0]
        cand = np.unique(np.concatenate(pools)) if pools else np.arange(n)
        moments = {name: sig.moments(v) for name, (sig, v) in dense.items()}
        spread = {s: np.array([moments[s][1]], np.float32) for s in ("image", "text") if s in moments}
        if w.hub and spread:  # it reorders candidates, and finds none
            full["hub"] = self.hub_signal(queries.kind, w.hub_k, spread)[0]
        stage1 = self._fused_at(cand, full, dense, moments, w)
        lap("dense")

        seeds = np.zeros((1, 0), np.int64)
        seed_w = np.zeros((1, 0), np.float32)
        echoed: dict[str, np.ndarray] = {}
        m = min(w.seeds, len(cand))
        if w.uses_graph() and m:
            top = np.argpartition(-stage1, m - 1)[:m] if m < len(cand) else np.arange(len(cand))
            seeds = cand[top][None, :]
            seed_w = seed_weights(stage1[top], w.temperature)[None, :]
            start = sp.csr_matrix((seed_w[0], (np.zeros(m, np.int64), seeds[0])), shape=(1, n))
            if w.graph_entity and len(t.entity_ids):
                prof, prof_t = self._entity_profiles(w.tag_weight)
                raw = np.asarray(((start @ prof) @ prof_t).todense(), np.float32)[0]
                raw[seeds[0]] += seed_w[0] * self.echo("graph_entity", seeds[0], w)
                full["graph_entity"] = _standardise(raw[None, :])[0]
                pools.append(best_rows(full["graph_entity"], PER_SIGNAL))
            for name, on in (("graph_image", w.graph_image and t.image_vecs.shape[0]),
                             ("graph_text", w.graph_text and t.text_vecs.shape[0])):
                if on:
                    vecs = self._graph_vectors(name)[0]
                    sig = self._dense_signal(name, w)[0]
                    centre = (start @ vecs)[0].astype(np.float32)
                    dense[name] = (sig, centre)
                    pools.append(sig.nearest(centre, PER_SIGNAL))
                    at = sig.raw(centre, seeds[0])
                    echoed[name] = at + seed_w[0] * self.echo(name, seeds[0], w)
                    moments[name] = _moments_replaced(sig.moments(centre), sig.present, at, echoed[name])
            cand = np.unique(np.concatenate(pools))
        lap("graph")
        if within is not None and len(np.intersect1d(cand, within, assume_unique=True)) < least:
            cand = np.union1d(cand, within)
        signals: dict[str, np.ndarray] = {s: v[None, :] for s, v in full.items()}
        for name, (sig, v) in dense.items():
            full_row = np.full(n, np.nan, np.float32)
            full_row[cand] = standardise_rows(sig.raw(v, cand), *moments[name])
            if name in echoed:  # a seed's value without its echo (`echo`)
                full_row[seeds[0]] = standardise_rows(echoed[name], *moments[name])
            signals[name] = full_row[None, :]
        signals.update(self.vouched({s: signals[s] for s in GRAPH_SIGNALS if s in signals}, queries,
                                    w.contradicted_graph))
        at = {s: v[:, cand] for s, v in signals.items()}
        fused = np.full((1, n), -np.inf, np.float32)
        if self.ranked_by_look(queries)[0]:
            w = for_unlike(w)
        fused[0, cand] = fuse(at, w, BASE_SIGNALS, 1, len(cand))[0]
        if w.uses_graph():  # summed in the order `score` sums them, so the floats agree
            fused[0, cand] += fuse(at, w, GRAPH_SIGNALS, 1, len(cand))[0]
        lap("final")
        return Scored(signals, fused, seeds, seed_w)

    @staticmethod
    def _fused_at(rows: np.ndarray, full: dict[str, np.ndarray], dense: dict[str, tuple[DenseSignal, np.ndarray]],
                  moments: dict[str, tuple[float, float]], w: RankWeights) -> np.ndarray:
        """The weighted sum of the base signals at `rows` (dense ones standardised by the collection's moments)."""
        at = {s: v[rows][None, :] for s, v in full.items()}
        for name, (sig, v) in dense.items():
            at[name] = standardise_rows(sig.raw(v, rows), *moments[name])[None, :]
        return fuse(at, w, BASE_SIGNALS, 1, len(rows))[0]

    def _score_chunk(self, queries: QuerySet, w: RankWeights) -> Scored:
        signals = self.base_signals(queries, w)
        stage1 = fuse(signals, w, BASE_SIGNALS, len(queries), len(self.table))
        seeds = np.zeros((len(queries), 0), np.int64)
        seed_w = np.zeros((len(queries), 0), np.float32)
        fused = stage1
        if w.uses_graph():
            graph, seeds, seed_w = self.graph_signals(queries, stage1, w)
            signals.update(graph)
            fused = stage1 + fuse(graph, w, GRAPH_SIGNALS, len(queries), len(self.table))
        return Scored(signals, fuse_unlike(fused, signals, self.ranked_by_look(queries), w), seeds, seed_w)


def fuse(signals: dict[str, np.ndarray], weights: RankWeights, names: Sequence[str], n_q: int, n_r: int) -> np.ndarray:
    """The weighted sum of the named standardised signals (absent ones count zero)."""
    out = np.zeros((n_q, n_r), np.float32)
    for name in names:
        wt = getattr(weights, name)
        if wt and name in signals:
            out += wt * signals[name]
    return out


def for_unlike(weights: RankWeights) -> RankWeights:
    """The weights of a photo unlike the collection (`RecordRanker.unlike`): `UNLIKE_SIGNALS` alone, where these
    weights count the photo's look (the `gnn` and `encoder` modes' weights stay as they are)."""
    return weights.only(*UNLIKE_SIGNALS) if weights.image else weights


def fuse_unlike(fused: np.ndarray, signals: dict[str, np.ndarray], far: np.ndarray, weights: RankWeights
                ) -> np.ndarray:
    """`fused` (queries x records), the rows `far` (`RecordRanker.ranked_by_look`) fused again by `for_unlike`."""
    if far.any():
        fused[far] = fuse({s: v[far] for s, v in signals.items()}, for_unlike(weights), SIGNALS, int(far.sum()),
                          fused.shape[1])
    return fused


def closest_signal(raw: np.ndarray) -> np.ndarray:
    """(queries, records) 1 / rank for each query's `CLOSEST_K` records of highest raw similarity, 0 elsewhere
    (NaN: absent). Why: a photo of a product in the collection must find that product first, and the z-scored
    `image` signal cannot tell it: its own photo beats a look-alike by 0.3-0.5 z, which the attributes and graph
    expansion of the look-alikes outweigh. Asked with 300 of the fashion catalog's photos as stored and degraded
    (resized to 2/3, JPEG quality 60; benchmarks/known_item.py), untuned `full` put the photo's product first 84.0
    % / 61.3 % of the time, the image encoder alone 100 % / 85.7 %."""
    filled = np.where(np.isnan(raw), -np.inf, raw)
    k = min(CLOSEST_K, raw.shape[1])
    out = np.zeros(raw.shape, np.float32)
    if k == 0:
        return out
    top = np.argpartition(-filled, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(filled, top, axis=1)
    ahead = (values[:, None, :] > values[:, :, None]).sum(axis=2)  # tied records (the same picture) share a rank
    credit = np.where(np.isfinite(values), 1.0 / (1.0 + ahead), 0.0).astype(np.float32)
    np.put_along_axis(out, top, credit, axis=1)
    return out


def seed_weights(top: np.ndarray, temperature: float) -> np.ndarray:
    """The softmax, at `temperature`, of the seeds' stage-one scores (along the last axis)."""
    z = top / max(temperature, 1e-6)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def _moments_replaced(moments: tuple[float, float], count: int, old: np.ndarray, new: np.ndarray
                      ) -> tuple[float, float]:
    """(mean, std) of `count` values after the values `old` are replaced by `new` (NaN: absent in both)."""
    mean, std = moments
    ok = ~np.isnan(old)
    if count == 0 or not ok.any():
        return mean, std
    a, b = old[ok].astype(np.float64), new[ok].astype(np.float64)
    total = count * mean + float((b - a).sum())
    second = count * (std * std + mean * mean) + float((b * b - a * a).sum())
    mean = total / count
    return mean, math.sqrt(max(second / count - mean * mean, 0.0))


def reciprocal_rank_fusion(score_sets: Sequence[np.ndarray], k: int = 60) -> np.ndarray:
    """RRF (Cormack et al. 2009) of several queries x items score matrices: sum of 1 / (k + rank)."""
    out: np.ndarray | None = None
    for scores in score_sets:
        order = np.argsort(-scores, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
        part = 1.0 / (k + 1.0 + ranks)
        out = part if out is None else out + part
    assert out is not None, "RRF needs at least one score matrix"
    return out.astype(np.float32)


def _standardise(raw: np.ndarray) -> np.ndarray:
    """Per query (row): z-scores over the records where the signal exists (NaN: absent, scored 0)."""
    return _standardise_spread(raw)[0]


def _standardise_spread(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_standardise`'s z-scores and each row's std (its spread)."""
    raw = np.asarray(raw, dtype=np.float32)
    present = ~np.isnan(raw)
    cnt = np.maximum(present.sum(axis=1, keepdims=True), 1)
    filled = np.where(present, raw, 0.0)
    mean = filled.sum(axis=1, keepdims=True) / cnt
    var = (np.where(present, raw - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / cnt
    std = np.sqrt(var)
    z = np.where(present, (filled - mean) / np.maximum(std, 1e-6), 0.0)
    return np.where(std > 1e-6, z, 0.0).astype(np.float32), std[:, 0].astype(np.float32)


def _masked(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=np.float32).copy()
    out[:, ~present] = np.nan
    return out
