"""Attach a query to the graph: the entities a text query mentions or an image query depicts."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmkg.graph import ids
from mmkg.graph.schema import Label
from mmkg.graph.store import GraphStore
from mmkg.index.base import VectorIndex
from mmkg.ingest.entities import extract_entities
from mmkg.retrieval.translate import WORD, translations
from mmkg.retrieval.word_forms import FacetWord, closed_up, facet_words, singular

MAX_NGRAM = 4
COMPOUND_OR_WORD = re.compile(r"\w+(?:[-\u2010]\w+)*")
"""A word, or words joined by hyphens: the groups whose tokens `_readings` splits apart."""


@dataclass(frozen=True)
class QueryEntity:
    id: str
    name: str
    how: str
    """`mentions` (text query), `depicts` (an image query's zero-shot tag) or `predicts` (an attribute value the
    collection's probe predicts for a query photo: retrieval/attribute_probe.py)."""
    score: float = 1.0
    via: str = ""
    """The query's own word this entity stands for, when it was linked through it: a Chinese word it translates
    (retrieval/translate.py) or an adjective it is a synonym of (`golden` -> baseColour:Gold)."""
    via_how: str = "translated from"


def _stem(token: str) -> str:
    """Crude plural folding so `shoes` meets `shoe`, `watches` meets `watch` (a catalog's articleType:Watches was
    `watche`, which no query for a watch named), `masses` meets `mass` and `accessories` meets `accessory`; enough
    for matching names. An irregular plural keeps its own key (BM25 folds it: `word_forms.singular`): with `men`
    and `man` one concept, the catalog's gender counted through three entities of the query's one word, and
    tuned dev mAP of catalog text queries fell 78.76 -> 77.49."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 4 and token.endswith(("sses", "ches", "shes", "xes")) and not token.endswith("aches"):
        return token[:-2]  # (`headaches` is `headache`)
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def _key(text: str) -> tuple[str, ...]:
    """The words of `text`, a hyphenated compound closed up into one (`t-shirt` is `tshirt`, as the catalog's
    type `Tshirts` is: retrieval/word_forms.py)."""
    return _readings(text)[0]


def _readings(text: str) -> list[tuple[str, ...]]:
    """`_key`, then, where it has a compound, the words with the compound's parts apart (`t`, `shirt`): the query
    `t shirt` still meets the mention `t-shirt`."""
    normal = ids.normalize_name(text)
    return list(dict.fromkeys(tuple(_stem(t) for t in re.findall(r"\w+", words))
                              for words in (closed_up(normal), normal)))


def _singular(key: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(singular(t) for t in key)


def concept_terms(name: str, is_attribute: bool) -> tuple[str, ...]:
    """The words an entity stands for, with an attribute's key dropped: `articleType:Heels` and the mention
    `heels` both stand for `heel`, so a record that states the one covers a query that names the other (and
    `articleType:Tshirts` and the mention `t-shirt` both stand for `tshirt`)."""
    return _key(name.split(":", 1)[1] if is_attribute and ":" in name else name)


class QueryLinker:
    """Finds a query's entities: spaCy entities of the query that the graph holds, attribute values
    named in the query (`white`, `sports shoes`, `men`), or, for an image, its nearest entity names.

    A name of numbers alone (a case's ACR code `acr:4.5`, a product's `year:2011`) is never linked from a query's
    words: a caption's measurements named them (`narrowed to 4.5 mm` linked to the cases coded 4.5, `9.5 X 8.9` to
    two codes), and a number in a query is a size, a count or a model far more often than a stated code. BM25
    still matches it (`lexical`)."""

    def __init__(self, store: GraphStore, entity_index: VectorIndex,
                 states: Callable[[str], bool] | None = None) -> None:
        """`states(word)`: whether the collection's texts state a word (`Bm25Index.states`); without it, whether
        an entity's name does."""
        self.store = store
        self.entity_index = entity_index
        self._states = states or (lambda w: set(_key(w)) <= self._words)
        self._by_key: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        self._facets: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        """The attribute values alone (`baseColour:Gold` under `gold`)."""
        self._facets_singular: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        """The same under their singular key (`gender:Women` under `woman`), which a facet word names."""
        self._words: set[str] = set()
        """Every word of an entity's name: the words the collection states."""
        for node in store.iter_nodes(Label.ENTITY):
            name = str(node.props.get("name", node.id[4:]))
            is_attribute = node.props.get("kind") == "attribute"
            for key in _readings(name.split(":", 1)[1] if is_attribute and ":" in name else name):
                if key and not all(t.isdigit() for t in key):  # numbers alone: see the class docstring
                    self._by_key.setdefault(key, []).append((node.id, name))
                    self._words.update(key)
                    if is_attribute:
                        self._facets.setdefault(key, []).append((node.id, name))
                        self._facets_singular.setdefault(_singular(key), []).append((node.id, name))

    def _named(self, text: str) -> list[tuple[str, str]]:
        """(entity id, name) of the entities whose words `text` names, longest first in each of its `_readings`.
        A hyphenated compound's parts are read only together: `t-shirt` names the entity `t shirt`, never
        `shirt` (articleType:Shirts, a type that the T-shirts then contradicted), nor `x-ray` the entity `ray`,
        nor `non-contrast` the entity `contrast`."""
        closed, *split = _readings(text)
        readings = [(closed, None), (self._closed_up(closed), None)]
        if split:
            sizes = [len(re.findall(r"\w+", group)) for group in COMPOUND_OR_WORD.findall(ids.normalize_name(text))]
            readings.append((split[0], set(itertools.accumulate(sizes, initial=0))))
        hits = [hit for tokens, bounds in readings for n in range(min(MAX_NGRAM, len(tokens)), 0, -1)
                for start in range(len(tokens) - n + 1)
                if bounds is None or {start, start + n} <= bounds
                for hit in self._by_key.get(tokens[start : start + n], [])]
        return list(dict.fromkeys(hits))

    def _closed_up(self, tokens: tuple[str, ...]) -> tuple[str, ...]:
        """`tokens` with two neighbours closed up where the graph names the one word they make (`hand bag`:
        the type `Handbags`)."""
        out: list[str] = []
        i = 0
        while i < len(tokens):
            joined = _stem(tokens[i] + tokens[i + 1]) if i + 1 < len(tokens) else ""
            if joined and (joined,) in self._by_key and tokens[i].isalpha() and tokens[i + 1].isalpha():
                out.append(joined)
                i += 2
            else:
                out.append(tokens[i])
                i += 1
        return tuple(out)

    def for_text(self, text: str) -> list[QueryEntity]:
        found: dict[str, QueryEntity] = {}
        for eid, name in self._named(text):
            found.setdefault(eid, QueryEntity(eid, name, "mentions"))
        senses_of = translations(text, lambda w: _key(w) in self._by_key, lambda w: _key(w) in self._facets)
        for word, senses in senses_of.items():
            for sense, weight in senses:  # a sense the graph does not name counts through its facet words
                hits = [(eid, name, 1.0) for eid, name in self._named(sense)] or [
                    (eid, name, facet.weight) for _, facet, eid, name in self._facet_words(sense)]
                for eid, name, share in hits:
                    if eid not in found or found[eid].score < weight * share:
                        found[eid] = QueryEntity(eid, name, "mentions", weight * share, via=word)
        for word, facet, eid, name in self._facet_words(text):
            found.setdefault(eid, QueryEntity(eid, name, "mentions", facet.weight, via=word, via_how=facet.how))
        named: dict[str, str] = {}
        for ent in extract_entities([text])[0]:
            if ids.entity_id(ent.name) not in found:
                named.setdefault(ids.entity_id(ent.name), ent.name)
        known = self.store.get_nodes(list(named)) if named else {}  # one store round trip for all of them
        for eid, name in named.items():
            if eid in known:
                found[eid] = QueryEntity(eid, name, "mentions")
        return list(found.values())

    def _facet_words(self, text: str) -> list[tuple[str, FacetWord, str, str]]:
        """(query word, facet word, entity id, name) of the facet values that a query word names through a synonym
        or a broader word, where it names none itself (`facet_words`): `golden watch` finds the catalog's
        baseColour:Gold, which no product name spells `golden` (it found silver watches). Only a stated facet
        value links: a facet is what a shopper asks for, and the commonest sense is the likely reading."""
        is_facet = lambda w: _singular(_key(w)) in self._facets_singular  # noqa: E731
        return [(word, facet, eid, name) for word in dict.fromkeys(w.casefold() for w in WORD.findall(text))
                for facet in facet_words(word, is_facet, self._states)
                for eid, name in self._named_facet(facet.value)]

    def _named_facet(self, word: str) -> list[tuple[str, str]]:
        """The facet values `word` names, in any number, and what else it names (`gold`: baseColour:Gold and the
        mention `gold`; `woman`: gender:Women)."""
        return list(dict.fromkeys(self._facets_singular[_singular(_key(word))] + self._by_key.get(_key(word), [])))

    def for_vector(self, vector: np.ndarray, k: int, min_score: float) -> list[QueryEntity]:
        if len(self.entity_index) == 0:
            return []
        hits = self.entity_index.search(vector.reshape(1, -1), k)[0]
        keep = [(eid, s) for eid, s in hits if s >= min_score]
        nodes = self.store.get_nodes([eid for eid, _ in keep])
        return [
            QueryEntity(eid, str(nodes[eid].props.get("name", eid)), "depicts", float(s))
            for eid, s in keep
            if eid in nodes
        ]
